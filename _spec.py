"""Checking a config's values against the dataclass that takes them (no torch here: ``train.py`` checks options
before it imports torch). A YAML file or a ``--key value`` on the command line can hold anything; a wrong key, type,
range or choice is refused here with one message naming it, before a DNS or a training starts."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

__all__ = ["check_fields", "field_problems"]


def check_fields(schema: type | Mapping[str, Any], values: Mapping[str, Any], where: str, *,
                 ignored: Iterable[str] = (), at_least: Mapping[str, float] = {}, positive: Iterable[str] = (),
                 choices: Mapping[str, Iterable[Any]] = {}) -> dict[str, Any]:
    """``values`` (less the ``ignored`` keys) if they fit ``schema`` (a dataclass, or a mapping of each key to its
    default); else one ValueError listing every problem (see :func:`field_problems`), each as
    ``where: key value: expected ...``.
    """
    ignored = set(ignored)
    kept = {k: v for k, v in values.items() if k not in ignored}
    problems = field_problems(schema, kept, at_least=at_least, positive=positive, choices=choices)
    if problems:
        raise ValueError(f"{where}: " + f"; {where}: ".join(
            text if key == "" else f"{key} {text}" for key, text in problems.items()))
    return kept


def field_problems(schema: type | Mapping[str, Any], values: Mapping[str, Any], *, at_least: Mapping[str, float] = {},
                   positive: Iterable[str] = (), choices: Mapping[str, Iterable[Any]] = {}) -> dict[str, str]:
    """``{key: "value: expected ..."}`` for each value that does not fit (key ``""``: the unknown keys).

    The expected type is the default's (fields without a default, or defaulting to None, take anything but are
    still checked against ``at_least``/``positive``/``choices``); an int fits a float field, a list a tuple field,
    None any field whose default is None. ``at_least``: the smallest allowed value per key; ``positive``: keys that
    must be > 0; ``choices``: the allowed values per key.
    """
    if isinstance(schema, Mapping):
        defaults = dict(schema)
    else:
        defaults = {f.name: (f.default if f.default is not dataclasses.MISSING
                             else f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
                    for f in dataclasses.fields(schema)}
    problems: dict[str, str] = {}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        problems[""] = f"unknown key(s) {unknown}; known: {sorted(defaults)}"
    positive = set(positive)
    for key, value in values.items():
        if key not in defaults:
            continue
        default = defaults[key]
        if default is not None and not _fits(value, type(default)):
            problems[key] = f"{value!r}: expected {_name(type(default))} (the default is {default!r})"
        elif key in choices and value not in tuple(choices[key]):
            problems[key] = f"{value!r}: expected one of {', '.join(map(repr, choices[key]))}"
        elif key in at_least and _number(value) and value < at_least[key]:
            problems[key] = f"{value!r}: expected >= {at_least[key]}"
        elif key in positive and _number(value) and not value > 0:
            problems[key] = f"{value!r}: expected > 0"
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fits(value: Any, want: type) -> bool:
    if want is bool:
        return isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if want is float:
        return _number(value)
    if want in (tuple, list):
        return isinstance(value, (tuple, list))
    return isinstance(value, want)


def _name(want: type) -> str:
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string", tuple: "a list",
            list: "a list", dict: "a mapping"}.get(want, want.__name__)
