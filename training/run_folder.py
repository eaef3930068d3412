"""The run folder: the only output of training, written the same way for every family.

    RUN/config.yaml          the config as run (kept as first written: a resume records what it changed in the log)
    RUN/train_log.jsonl      one JSON record per logged step, validation and resume
    RUN/metrics.json         the final metrics (always valid JSON: a non-finite value is an error naming it)
    RUN/model.safetensors    the selected weights (best on valid, or the last)
    RUN/model.json           the envelope {format, family, config, model_spec, metadata, stats}: how to rebuild
    RUN/*.png                plots
    RUN/checkpoint/state.pt  the whole training state, to resume exactly

Every file is written to a temporary name and renamed. A folder that already holds a run is never reused silently:
it is refused unless the run resumes it or asks to overwrite it.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .._files import atomic_write
from ..checkpoint import load_state, load_weights, save_state, save_weights

__all__ = ["RunFolder", "ENVELOPE_FORMAT", "read_envelope", "check_finite"]

ENVELOPE_FORMAT = 1  # model.json's layout; a run folder of another (or none) is refused by read_envelope


def check_finite(tree: Any, where: str, path: str = "") -> None:
    """Raise a ValueError naming the first NaN/Inf in nested mappings and lists of numbers (``where: key.sub[2]``)."""
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            check_finite(v, where, f"{path}.{k}" if path else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            check_finite(v, where, f"{path}[{i}]")
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise ValueError(
            f"{where}: {path} is {tree}: a non-finite metric (the model's output or the data hold NaN/Inf there)"
        )


def read_envelope(run_dir: str | Path) -> dict[str, Any]:
    """``model.json`` of a run folder; a folder without one, or of an older layout, is a one-line error."""
    run_dir = Path(run_dir)
    path = run_dir / "model.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: not a run folder (no model.json); expected a folder that `pdeforge train` or train.py wrote"
        )
    envelope = json.loads(path.read_text())
    if envelope.get("format") != ENVELOPE_FORMAT or "family" not in envelope:
        raise ValueError(
            f"{path}: a run folder of an older pdeforge (model.json has no 'format': "
            f"{ENVELOPE_FORMAT} envelope naming its family); retrain it, or load its weights with "
            "pdeforge.checkpoint.load_any_weights"
        )
    return envelope


class RunFolder:
    """One run's folder. ``start`` claims it (fresh, resumed or overwritten); only the main process writes."""

    def __init__(self, path: str | Path, *, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self.log: list[dict[str, Any]] = []
        self._fresh: dict[str, Any] | None = None  # the config of a fresh run, written by create()

    # -- claiming the folder --------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint" / "state.pt"

    def holds_a_run(self) -> bool:
        return self.path.is_dir() and any((self.path / n).exists() for n in ("config.yaml", "checkpoint", "model.json"))

    def start(self, config: Mapping[str, Any], *, resume: bool, overwrite: bool, safe: set[str]) -> dict | None:
        """Claim the folder for ``config`` (a plain nested mapping). Fresh: refuse a folder that holds a run unless
        ``overwrite`` (its old contents go at :meth:`create`). ``resume``: load the checkpoint, refuse a
        config that differs from the one it was started with in any key outside ``safe`` (dotted keys), log the safe
        keys that changed, and return the checkpoint (None for a fresh start)."""
        if resume:
            if not self.checkpoint_path.is_file():
                raise FileNotFoundError(
                    f"--run.resume {self.path}: no checkpoint to continue "
                    f"({self.checkpoint_path} not found); start the run without --run.resume"
                )
            state = load_state(self.checkpoint_path)
            then = _flatten(state["config"])
            now = _flatten(config)
            differ = sorted(k for k in set(then) | set(now) if k not in safe and then.get(k) != now.get(k))
            if differ:
                raise ValueError(
                    f"--run.resume {self.path}: the run was started with other options ("
                    + ", ".join(f"{k} {then.get(k)!r} there, {now.get(k)!r} now" for k in differ)
                    + "); resume with the same options, or start a new run folder (--run.init_from "
                    "can start from its weights)"
                )
            self.log = [dict(r) for r in state["log"]]
            changed = {k: now.get(k) for k in sorted(set(then) | set(now)) if then.get(k) != now.get(k)}
            self.log.append(
                {"step": int(state["counters"]["step"]), "event": "resume", **({"changed": changed} if changed else {})}
            )
            return state
        if self.path.exists() and not self.path.is_dir():  # --run.overwrite replaces a run folder, never a file
            raise FileExistsError(f"--run.run_dir {self.path}: a file, not a run folder; choose another --run.run_dir")
        # only the writer (the main process) claims the folder: under DDP the others may find it claimed already
        if self.writer and self.holds_a_run() and not overwrite:
            raise FileExistsError(
                f"{self.path}: a run folder already holds a run; resume it with --run.resume "
                f"{self.path}, replace it with --run.overwrite true, or choose another "
                "--run.run_dir"
            )
        self._fresh = dict(config)
        return None

    def create(self) -> None:
        """Write a fresh run's folder once its data and model are made (a run refused before leaves no folder, and
        an overwritten run stays until then): clear an old run, write ``config.yaml``."""
        if self._fresh is None or not self.writer:
            return
        if self.holds_a_run():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_text("config.yaml", yaml.safe_dump(self._fresh, sort_keys=False))
        self._fresh = None

    # -- writing --------------------------------------------------------------------------------------------
    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            atomic_write(self.path / name, lambda tmp: tmp.write_text(text))

    def record(self, entry: Mapping[str, Any]) -> None:
        """Add one record to the log (written out by :meth:`flush_log`)."""
        self.log.append(dict(entry))

    def flush_log(self) -> None:
        self.write_text("train_log.jsonl", "".join(json.dumps(r) + "\n" for r in self.log))

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        check_finite(metrics, str(self.path / "metrics.json"))
        self.write_text("metrics.json", json.dumps(metrics, indent=1, allow_nan=False))

    def save_model(self, weights: Mapping[str, torch.Tensor], envelope: Mapping[str, Any]) -> None:
        """``model.safetensors`` and ``model.json`` (the envelope, with ``format`` added)."""
        if self.writer:
            save_weights(self.path / "model.safetensors", weights)
            self.write_text("model.json", json.dumps({"format": ENVELOPE_FORMAT, **envelope}, indent=1))

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        if self.writer:
            save_state(self.checkpoint_path, {**state, "log": self.log})
            self.flush_log()

    def plot_path(self, name: str) -> Path:
        return self.path / name

    def load_model_weights(self) -> dict[str, torch.Tensor]:
        return load_weights(self.path / "model.safetensors")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{dotted key: value}``."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out
