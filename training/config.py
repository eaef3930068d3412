"""One config grammar for every family: typed dataclasses with sections, a YAML file, ``--section.key value``.

A config is a dataclass whose fields are options (declared with :func:`option`, which carries the one-line doc,
the allowed choices and the bounds as data) or sections (declared with :func:`section`, each a dataclass of its
own). Every family's config has the same ``run`` (:class:`RunSection`) and ``data`` (:class:`DataSection`, or a
subclass adding the family's view options) sections.

Values in the file and on the command line are read as YAML scalars and lists, with YAML 1.2's numbers: ``1e-3``
is a number (PyYAML alone reads it as a string). ``--model.args.n_modes 8`` sets one key inside a mapping option.
An unknown key is refused naming the closest valid one; every problem of a config is reported at once, each
naming where it came from (the file's key or the ``--option``). No torch here: a typo costs a second, not a load.

Examples:
    The config of ``configs/fno_burgers.yaml`` (the field-operator family's), with two options set on top:

    >>> from pdeforge.operators.field import OperatorConfig
    >>> overrides = ["--optim.lr", "1e-3", "--run.loggers", "[tensorboard]"]
    >>> cfg = load_config(OperatorConfig, "configs/fno_burgers.yaml", overrides)
    >>> cfg.optim.lr, cfg.run.loggers, cfg.model.name
    (0.001, ['tensorboard'], 'fno')
    >>> load_config(OperatorConfig, "configs/fno_burgers.yaml", ["--optim.lrr", "1e-3"])
    Traceback (most recent call last):
    pdeforge.training.config.ConfigError: --optim.lrr: unknown option; did you mean --optim.lr?
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "option",
    "section",
    "RunSection",
    "DataSection",
    "OptimSection",
    "load_config",
    "build_config",
    "config_to_dict",
    "config_help",
    "parse_overrides",
    "read_yaml",
    "parse_value",
    "resume_safe_keys",
    "flat_items",
]


class ConfigError(ValueError):
    """A config that does not fit its dataclass; the message lists every problem, one clause each."""


def option(
    default: Any,
    doc: str,
    *,
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    positive: bool = False,
    resume_safe: bool = False,
) -> Any:
    """A config option: its default, a one-line ``doc`` (shown by ``--help``), the allowed ``choices``, a lower bound
    ``min`` or ``positive`` (> 0). ``resume_safe``: the option may change when a run is resumed (it does not change
    what is computed: where, how fast, how often to save)."""
    meta = {
        "doc": doc,
        "choices": tuple(choices) if choices is not None else None,
        "min": min,
        "positive": positive,
        "resume_safe": resume_safe,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """A section of options: a field holding the dataclass ``cls`` (its defaults unless the config says otherwise)."""
    return field(default_factory=cls, metadata={"doc": doc, "section": True})


# ------------------------------------------------------------------------------------------------------------
# the sections every family shares
# ------------------------------------------------------------------------------------------------------------
@dataclass
class RunSection:
    """Where a run writes, how it starts and how it is saved: the same for every family."""

    run_dir: str = option("", "the run folder (default: runs/<config file name>)")
    seed: int = option(0, "seed of the initial weights, the data order and every random draw", min=0)
    device: str = option("auto", "auto (cuda if available) | cpu | cuda | cuda:N", resume_safe=True)
    resume: str = option("", "a run folder to continue exactly where its checkpoint stopped", resume_safe=True)
    overwrite: bool = option(False, "replace the run folder if it exists (refused otherwise)", resume_safe=True)
    init_from: str = option("", "a run folder or weights file to start from (fine-tuning)")
    max_steps: int = option(
        0, "stop after this many optimiser steps (0: the config's budget); for smoke runs", min=0, resume_safe=True
    )
    checkpoint_every: int = option(
        0, "optimiser steps between checkpoints (0: at the end of each epoch)", min=0, resume_safe=True
    )
    loggers: list = option(
        [],
        "experiment trackers to log to: any of tensorboard, wandb, mlflow (the extra of each must be installed)",
        resume_safe=True,
    )
    progress: bool = option(True, "a progress bar over the optimiser steps", resume_safe=True)
    threads: int = option(0, "torch CPU threads (0: torch's default)", min=0, resume_safe=True)
    deterministic: bool = option(False, "torch.use_deterministic_algorithms (slower, bit-reproducible on GPUs)")
    ensemble: int = option(
        1,
        "train this many members with seeds seed, seed+1, ... into RUN/members/<k>/ (RUN/ensemble.json)",
        min=1,
        resume_safe=True,  # a member is one run (ensemble 1); runs saved before the option existed still resume
    )


@dataclass
class DataSection:
    """What a family trains on: a dataset root, or a ``pdeforge generate`` preset made once into the cache."""

    root: str = option("", "a dataset root (ROOT/data/{train,valid,test}/*.hdf5, ROOT/stats.yaml); empty: the preset")
    preset: str = option("", "a `pdeforge generate` preset, generated once into the cache when root is empty")
    preset_options: dict = option({}, "the preset's options: n_trajectories, resolution, seed, and its own fields")
    storage_options: dict = option(
        {},
        "a URL root's fsspec options (e.g. {endpoint_url: ..., anon: true}), passed to every open under it; saved with "
        "the run's config: keep credentials in the environment (AWS_*, HF_TOKEN), not here",
    )


@dataclass
class OptimSection:
    """The optimiser (AdamW) and its schedule (linear warm-up, then cosine decay to 0, stepped per optimiser step)."""

    steps: int = option(0, "optimiser steps (0: epochs x steps per epoch)", min=0)
    epochs: int = option(1, "passes over the training data (when steps is 0)", min=1)
    batch_size: int = option(32, "samples per micro-batch and process", min=1)
    lr: float = option(1e-3, "peak learning rate", positive=True)
    betas: list = option([0.9, 0.999], "AdamW's betas")
    weight_decay: float = option(0.0, "AdamW's decoupled weight decay", min=0)
    warmup: float = option(0.05, "fraction of the steps with linear warm-up", min=0)
    schedule: str = option(
        "cosine", "learning-rate schedule after the warm-up", choices=("cosine", "constant", "exponential")
    )
    decay_rate: float = option(0.9, "schedule exponential: the factor per decay_every steps", positive=True)
    decay_every: int = option(1000, "schedule exponential: steps per decay_rate factor", min=1)
    grad_clip: float = option(1.0, "max gradient norm (0: off)", min=0)
    grad_accum: int = option(1, "micro-batches per optimiser step", min=1)
    amp: str = option(
        "none",
        "mixed precision: bf16 (CUDA or a recent CPU) | fp16 (CUDA, with a GradScaler)",
        choices=("none", "bf16", "fp16"),
    )
    eval_every: int = option(0, "optimiser steps between validations (0: at the end of each epoch)", min=0)
    patience: int = option(0, "early stopping: validations without improvement (0: off)", min=0)


# ------------------------------------------------------------------------------------------------------------
# reading YAML with YAML 1.2's numbers
# ------------------------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with numbers as YAML 1.2 writes them (``1e-3``, ``2E5``: floats, not strings), and a key
    given twice in one mapping refused (PyYAML keeps the last silently; YAML 1.2 says keys are unique)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in first:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (first on line {first[key] + 1}): give it once",
                    key_node.start_mark,
                )
            first.setdefault(key, key_node.start_mark.line)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping; a missing file, bad YAML or a file that is not a mapping is a ConfigError
    naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file (expected a YAML file, e.g. configs/fno_burgers.yaml)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); expected a YAML config") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of options (key: value), found a {type(loaded).__name__}")
    return loaded


def parse_value(text: str) -> Any:
    """A command-line value read as a YAML scalar or list (``1e-3``: a number, ``[a, b]``: a list, ``true``: a bool);
    text YAML cannot read stays text."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else text
    except yaml.YAMLError:
        return text


def parse_overrides(argv: Sequence[str]) -> list[tuple[str, Any]]:
    """``["--optim.lr", "1e-3", "--run.seed=2"]`` as ``[("optim.lr", 0.001), ("run.seed", 2)]``; anything else is a
    ConfigError saying the grammar."""
    pairs, i = [], 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError(f"{arg!r}: expected --key value or --section.key value (e.g. --optim.lr 1e-3)")
        if "=" in arg:
            key, _, text = arg[2:].partition("=")
            i += 1
        elif i + 1 < len(argv):
            key, text = arg[2:], argv[i + 1]
            i += 2
        else:
            raise ConfigError(f"{arg}: expected a value after it (e.g. {arg} 1)")
        value = parse_value(text)
        if isinstance(value, dict) and any(v is None and ":" in str(k) for k, v in value.items()):
            raise ConfigError(  # YAML reads {n_modes:4} as the key 'n_modes:4' without a value
                f"--{key} {text!r}: write a space after each colon of a mapping (e.g. {{n_modes: 4}})"
            )
        pairs.append((key, value))
    return pairs


# ------------------------------------------------------------------------------------------------------------
# building and checking
# ------------------------------------------------------------------------------------------------------------
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _is_section(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("section"))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def flat_items(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, type]]:
    """Every option of a config class as ``(dotted key, field, its type)``, sections expanded, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if _is_section(f):
            out += flat_items(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, f, hints[f.name]))
    return out


def _type_problem(value: Any, tp: Any) -> str | None:
    """``"expected ..."`` if ``value`` does not fit the annotation ``tp``; None if it does."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        problems = [_type_problem(value, a) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if tp is Any:
        return None
    base = origin or tp
    if base is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if base is str:
        return None if isinstance(value, str) else "expected a string"
    if base in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return "expected a list (e.g. [1, 2])"
        args = typing.get_args(tp)
        if args and args[-1] is not Ellipsis:
            for item in value:
                if (p := _type_problem(item, args[0])) is not None:
                    return f"item {item!r}: {p}"
        return None
    if base is dict:
        return None if isinstance(value, dict) else "expected a mapping (e.g. {key: value})"
    return None if isinstance(value, base) else f"expected {getattr(base, '__name__', base)}"


def _closest(key: str, known: Iterable[str], dashes: bool = False) -> str:
    """``"; did you mean KEY?"`` with the valid key nearest ``key`` (as ``--KEY`` for a command-line option)."""
    known = list(known)
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not near:  # a key in the wrong section: the same last part
        near = [k for k in known if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]][:1]
    return f"; did you mean {'--' if dashes else ''}{near[0]}?" if near else ""


def build_config(
    cls: type, values: Mapping[str, Any], *, sources: Mapping[str, str] | None = None, where: str = "config"
) -> Any:
    """``cls`` filled from the nested mapping ``values``; every problem (an unknown key, a wrong type, a value out of
    range or not among the choices) in one ConfigError. ``sources[dotted key]`` names where a value came from (an
    ``--option``), else the key is named as ``where: key``. A config class with a static ``upgrade_values(values)``
    reads the options of its earlier versions through it (a run folder written before a rename still loads)."""
    sources = dict(sources or {})
    problems: list[str] = []
    known = [k for k, _, _ in flat_items(cls)]
    if hasattr(cls, "upgrade_values"):
        values = cls.upgrade_values(values)

    def name(key: str) -> str:
        return sources.get(key) or f"{where}: {key}"

    def build(kind: type, given: Mapping[str, Any], prefix: str, base: Any = None) -> Any:
        """``kind`` from ``given`` over ``base`` (a section's default: the family's own defaults for it)."""
        hints = typing.get_type_hints(kind)
        fields = _fields(kind)
        kwargs = {}
        for key, value in given.items():
            dotted = prefix + str(key)
            f = fields.get(key)
            if f is None:
                problems.append(f"{name(dotted)}: unknown option{_closest(dotted, known, dotted in sources)}")
                continue
            if _is_section(f):
                if not isinstance(value, Mapping):
                    problems.append(f"{name(dotted)} {value!r}: expected a section (a mapping of its options)")
                    continue
                kwargs[key] = build(hints[key], value, dotted + ".", f.default_factory())
                continue
            problem = _type_problem(value, hints[key])
            meta = f.metadata
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if problem is None and meta.get("choices") and value not in meta["choices"]:
                problem = f"expected one of {', '.join(map(repr, meta['choices']))}"
            elif problem is None and number and meta.get("min") is not None and value < meta["min"]:
                problem = f"expected >= {meta['min']}"
            elif problem is None and number and meta.get("positive") and not value > 0:
                problem = "expected > 0"
            if problem:
                problems.append(f"{name(dotted)} {value!r}: {problem}")
            else:
                kwargs[key] = float(value) if hints[key] is float and isinstance(value, int) else copy.deepcopy(value)
        try:
            return dataclasses.replace(base, **kwargs) if base is not None else kind(**kwargs)
        except TypeError as e:  # a required field without a value
            problems.append(f"{where}: {prefix or ''}{e}")
            return None

    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, found a {type(values).__name__}")
    built = build(cls, values, "")
    if problems:
        raise ConfigError("; ".join(problems))
    return built


def _set(tree: dict, cls: type, key: str, value: Any, source: str) -> None:
    """Set the dotted ``key`` in the nested mapping ``tree``, creating sections as needed; a key past an option that
    is a mapping (``model.args.n_modes``) sets one entry of that mapping."""
    parts = key.split(".")
    kind: type | None = cls
    node = tree
    for i, part in enumerate(parts[:-1]):
        f = _fields(kind).get(part) if kind is not None and dataclasses.is_dataclass(kind) else None
        if f is not None and _is_section(f):
            kind = typing.get_type_hints(kind)[part]
        elif f is not None or kind is None:  # an option holding a mapping: the rest are keys inside it
            if f is not None and node.get(part) is None:
                node[part] = copy.deepcopy(_default(f))
            kind = None
        else:
            return _unknown(cls, key, source)
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])} is {child!r}, not a section of options")
        node = child
    node[parts[-1]] = value


def _unknown(cls: type, key: str, source: str) -> None:
    raise ConfigError(f"{source}: unknown option{_closest(key, [k for k, _, _ in flat_items(cls)], True)}")


def load_config(
    cls: type, path: str | Path | None = None, overrides: Sequence[str] = (), *, values: Mapping[str, Any] | None = None
) -> Any:
    """``cls`` from its defaults, then the YAML file ``path`` (or the mapping ``values``), then ``overrides``
    (``--section.key value`` pairs, see :func:`parse_overrides`)."""
    tree = copy.deepcopy(dict(values or {})) if path is None else read_yaml(path)
    where = str(path) if path is not None else "config"
    sources, problems = {}, []
    for key, value in parse_overrides(overrides):
        try:
            _set(tree, cls, key, value, f"--{key}")
            sources[key] = f"--{key}"
        except ConfigError as e:
            problems.append(str(e))
    try:
        built = build_config(cls, tree, sources=sources, where=where)
    except ConfigError as e:
        problems.append(str(e))
    if problems:
        raise ConfigError("; ".join(problems))
    return built


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested mappings (what ``config.yaml`` holds; :func:`build_config` reads it back)."""
    return dataclasses.asdict(config)


def resume_safe_keys(cls: type) -> set[str]:
    """The dotted keys that may differ between a run and its resumption."""
    return {k for k, f, _ in flat_items(cls) if f.metadata.get("resume_safe")}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    base = origin or tp
    return {
        bool: "bool",
        int: "int",
        float: "float",
        str: "str",
        list: "list",
        tuple: "list",
        dict: "mapping",
        type(None): "null",
    }.get(base, getattr(base, "__name__", str(base)))


def config_help(cls: type) -> str:
    """Every option of ``cls``: ``--section.key TYPE  doc (default ...; one of ...)``, section by section."""
    lines, current = [], None
    hints = typing.get_type_hints(cls)
    defaults = dataclasses.asdict(cls())
    docs = {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}
    for key, f, tp in flat_items(cls):
        head = key.split(".")[0] if "." in key else ""
        if head != current:
            current = head
            doc = docs.get(head, "") if head else ""
            if head:
                doc = doc or (hints[head].__doc__ or "").strip().splitlines()[0]
            lines.append(f"\n{head or 'top level'}:{'  ' + doc if doc else ''}")
        value = defaults
        for part in key.split("."):
            value = value[part]
        extra = [f"default {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
        if f.metadata.get("choices"):
            extra.append("one of " + ", ".join(map(str, f.metadata["choices"])))
        lines.append(f"  --{key} {_type_name(tp).upper()}\n      {f.metadata.get('doc', '')} ({'; '.join(extra)})")
    return "\n".join(lines).lstrip("\n")
