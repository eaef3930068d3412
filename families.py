"""The model families, listed once, and what works on any of them: train a config, load or evaluate a run.

    pdeforge train configs/tsm_kolmogorov.yaml --run.max_steps 2 --run.run_dir runs/smoke
    run = pdeforge.load_run("runs/smoke")        # run.model, run.config, run.metadata, run.envelope
    pdeforge evaluate runs/smoke                 # the run's metrics recomputed from its saved weights

A config names its family (``family: tsm``); a config without one is the field-operator family of ``train.py``.
This module is an entry point: it imports the families, and nothing below it imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FAMILIES",
    "family_class",
    "config_class",
    "family_name",
    "load_family_config",
    "train",
    "load_run",
    "evaluate_run",
    "LoadedRun",
]

#: family name -> (module, family class, config class): every family of pdeforge, written out here
FAMILIES: dict[str, tuple[str, str, str]] = {
    "operator": ("pdeforge.operators.field", "FieldOperatorFamily", "OperatorConfig"),
    "tsm": ("pdeforge.operators.tsm", "TSMFamily", "TSMRunConfig"),
    "noda": ("pdeforge.operators.noda", "NODAFamily", "NODARunConfig"),
    "scot": ("pdeforge.operators.scot", "ScOTFamily", "ScOTRunConfig"),
    "pinn": ("pdeforge.pinns", "PINNFamily", "PINNConfig"),
}


def _entry(name: str, where: str) -> tuple[str, str, str]:
    if name not in FAMILIES:
        raise ValueError(f"{where}: family {name!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_class(name: str, where: str = "config") -> type:
    """The family class called ``name``; an unknown name is a ValueError listing the families."""
    module, cls, _ = _entry(name, where)
    return getattr(importlib.import_module(module), cls)


def config_class(name: str, where: str = "config") -> type:
    """The config class of the family called ``name`` (for a family whose package loads lazily, without torch)."""
    module, _, cls = _entry(name, where)
    return getattr(importlib.import_module(module), cls)


def family_name(path: str | Path | None) -> str:
    """The family a config file names (``family:``; none: ``operator``)."""
    from .training.config import read_yaml

    return read_yaml(path).get("family", "operator") if path is not None else "operator"


def load_family_config(path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[type, Any]:
    """(family class, its config) from a YAML file (``family:`` names the family; none: ``operator``) and
    ``--section.key value`` overrides. The config is checked before the family's code is imported."""
    from .training.config import load_config

    where = str(path) if path is not None else "config"
    name = family_name(path)
    config = load_config(config_class(name, where), path, overrides)
    return family_class(name, where), config


def train(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``pdeforge train PATH [overrides]``: the run of any family's config; returns its metrics."""
    from .training.config import parse_overrides
    from .training.loop import fit

    resume = dict(parse_overrides(overrides)).get("run.resume")
    if path is None and resume:  # continue a run as it was configured: its own config.yaml, then the overrides
        path = Path(str(resume)) / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"--run.resume {resume}: not a run folder (no config.yaml); expected a folder "
                "that `pdeforge train` or train.py wrote"
            )
    family, config = load_family_config(path, overrides)
    if path is not None and not config.run.run_dir and not config.run.resume:  # runs/<config name>
        config.run.run_dir = str(Path("runs") / Path(path).stem)
    return fit(family, config, where=str(path) if path is not None else "config")


@dataclass
class LoadedRun:
    """A trained run: ``model`` (eval mode, its selected weights), ``config`` (the family's config dataclass),
    ``metadata`` (the DatasetMetadata the model was built for; None for a family without a dataset, PINNs),
    ``family`` (the class) and the raw ``envelope`` (model.json)."""

    model: Any
    config: Any
    metadata: Any
    family: type
    envelope: dict[str, Any]


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Rebuild the model of any family's run folder from ``model.json`` and ``model.safetensors``."""
    from ._device import check_device, resolve_device
    from .checkpoint import load_weights
    from .training.config import build_config
    from .training.run_folder import read_envelope

    check_device(device, "load_run")
    run_dir = Path(run_dir)
    envelope = read_envelope(run_dir)
    family = family_class(envelope["family"], str(run_dir / "model.json"))
    config = build_config(family.config_class, envelope["config"], where=str(run_dir / "model.json"))
    model = family.rebuild(envelope)
    weights = load_weights(run_dir / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{run_dir / 'model.safetensors'}: the weights do not fit the model model.json describes "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.to(resolve_device(device)).eval()
    meta = envelope.get("metadata")
    if meta:
        from .datasets import DatasetMetadata

        meta = DatasetMetadata.from_dict(meta)
    return LoadedRun(model, config, meta or None, family, envelope)


def evaluate_run(
    run_dir: str | Path, *, data: str | None = None, splits: Sequence[str] = ("valid", "test"), device: str = "cpu"
) -> dict[str, Any]:
    """The metrics of a run's saved weights on ``splits``, recomputed as training computed them (``data``: another
    dataset root of the same fields)."""
    from ._device import resolve_device
    from .training.loop import Environment

    run = load_run(run_dir, device)
    config = run.config
    if data is not None:
        config.data.root = data
    family = run.family(config, Environment(resolve_device(device)))
    family.prepare()
    return {split: family.evaluate(run.model, split) for split in splits}
