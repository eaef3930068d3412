"""Ensembles of any family: N members trained by one command with seeds ``seed, seed + 1, ...``, the baseline a
probabilistic model must beat (a deep ensemble, Lakshminarayanan et al., NeurIPS 2017).

    pdeforge train configs/fno_burgers.yaml --run.ensemble 4 --run.run_dir runs/fno_ens
    pdeforge evaluate runs/fno_ens        # the ensemble mean's metrics, CRPS, spread-skill, and each member's own

The ensemble's folder ``RUN`` holds ``members/<k>/``, each a complete run folder (its ``config.yaml`` says
``run.seed = seed + k``, ``run.ensemble = 1``; :func:`pdeforge.load_run` loads one as any run), and
``ensemble.json``: ``{"format", "family", "seeds", "members" (paths relative to RUN), "member_metrics", "metrics"}``.
The members are trained one after the other; ``--run.resume`` takes a member's folder, not the ensemble's.

The ensemble's metrics (:func:`evaluate_members`) are computed on the task's windows of each split (one prediction
per window, in physical units; no autoregressive rollout), from the members' predictions stacked on axis 0
(``(M, B, T_out, C, *space)``), with :func:`pdeforge.metrics.evaluate_ensemble`: every point metric of the ensemble
mean, the fair CRPS, the spread-skill ratio and the energy score. A family without predictions in physical units
(``LoadedRun.predict``: the field-operator family has them) reports its members' own metrics only.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._files import atomic_write

__all__ = ["ENSEMBLE_FILE", "LoadedEnsemble", "is_ensemble", "read_ensemble", "fit_ensemble", "evaluate_members"]

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = 1


def is_ensemble(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is an ensemble's folder (it holds ``ensemble.json``)."""
    return (Path(run_dir) / ENSEMBLE_FILE).is_file()


def read_ensemble(run_dir: str | Path) -> dict[str, Any]:
    """``RUN/ensemble.json``, its members' folders checked to exist."""
    path = Path(run_dir) / ENSEMBLE_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not an ensemble record ({e})") from None
    if record.get("format") != ENSEMBLE_FORMAT or not record.get("members"):
        raise ValueError(f"{path}: expected an ensemble record of format {ENSEMBLE_FORMAT} with its members")
    missing = [m for m in record["members"] if not (Path(run_dir) / m / "model.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: member folders without model.json: {', '.join(missing)}")
    return record


def member_config(config: Any, k: int, root: Path) -> Any:
    """Member ``k``'s config: ``run.seed + k``, one run (``run.ensemble = 1``) in ``root/members/<k>``."""
    member = copy.deepcopy(config)
    member.run.seed = config.run.seed + k
    member.run.ensemble = 1
    member.run.run_dir = str(root / "members" / str(k))
    return member


def fit_ensemble(
    family_class: type,
    config: Any,
    *,
    where: str = "config",
    fit: Callable[..., dict[str, Any]] | None = None,
    evaluate: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``config.run.ensemble`` members of ``family_class`` into ``RUN/members/<k>`` and write
    ``RUN/ensemble.json``; ``evaluate(RUN)`` (the entry point's ensemble evaluation) adds the ensemble's metrics.
    Returns ``{"members": [each member's metrics], **the ensemble's metrics}``.

    A folder that holds a run or an ensemble is refused unless ``run.overwrite`` (then it is removed before the
    first member trains); ``run.resume`` is refused (resume a member's folder instead).
    """
    from .loop import fit as fit_one

    fit = fit_one if fit is None else fit
    run = config.run
    n = int(run.ensemble)
    if run.resume:
        raise ValueError(
            f"--run.resume {run.resume} with --run.ensemble {n}: an ensemble is not resumed as a whole; resume a "
            "member's folder (RUN/members/<k>) with --run.resume alone"
        )
    root = Path(run.run_dir or Path("runs") / family_class.name)
    main = int(os.environ.get("RANK", "0")) == 0
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"--run.run_dir {root}: a file, not a folder; choose another --run.run_dir")
    holds = root.is_dir() and any(
        (root / n_).exists() for n_ in (ENSEMBLE_FILE, "members", "model.json", "config.yaml")
    )
    if holds and not run.overwrite:
        raise FileExistsError(
            f"{root}: the folder already holds a run or an ensemble; replace it with --run.overwrite true, or choose "
            "another --run.run_dir"
        )
    if holds and main:
        shutil.rmtree(root)
    members = [member_config(config, k, root) for k in range(n)]
    metrics = []
    for k, member in enumerate(members):
        if main:
            print(f"ensemble {root}: member {k + 1}/{n} (seed {member.run.seed})")
        metrics.append(fit(family_class, member, where=f"{where} (ensemble member {k})"))
    record = {
        "format": ENSEMBLE_FORMAT,
        "family": family_class.name,
        "seeds": [m.run.seed for m in members],
        "members": [f"members/{k}" for k in range(n)],
        "member_metrics": metrics,
    }
    if main:
        _write_record(root, record)
        if evaluate is not None:
            record["metrics"] = evaluate(root)
            _write_record(root, record)
            print(f"ensemble folder: {root}")
    return {"members": metrics, **record.get("metrics", {})}


def _write_record(root: Path, record: dict[str, Any]) -> None:
    atomic_write(root / ENSEMBLE_FILE, lambda tmp: tmp.write_text(json.dumps(record, indent=1, allow_nan=False)))


@dataclass
class LoadedEnsemble:
    """A trained ensemble: ``members`` (each a loaded run, as :func:`pdeforge.load_run` gives it), ``run_dir`` and
    the ``record`` (``ensemble.json``). ``config``, ``metadata``, ``family`` are the first member's (the same for
    all but the seed); :meth:`dataset` and :meth:`loader` give the samples the members are evaluated on."""

    members: list[Any]
    run_dir: Path
    record: dict[str, Any]

    @property
    def config(self) -> Any:
        return self.members[0].config

    @property
    def metadata(self) -> Any:
        return self.members[0].metadata

    @property
    def family(self) -> type:
        return self.members[0].family

    @property
    def models(self) -> list[Any]:
        return [m.model for m in self.members]

    def dataset(self, split: str = "test", data: str | Path | None = None) -> Any:
        return self.members[0].dataset(split, data)

    def loader(self, split: str = "test", batch_size: int = 32, data: str | Path | None = None) -> Any:
        return self.members[0].loader(split, batch_size, data)

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """The members' predictions stacked on a new axis 0: ``(M, B, T_out, C, *space)`` in physical units (the
        member axis first, as :mod:`pdeforge.metrics`' ensemble scores take it by default)."""
        return torch.stack([m.predict(batch) for m in self.members], dim=0)


def evaluate_members(
    ensemble: LoadedEnsemble,
    splits: Sequence[str],
    member_metrics: Sequence[dict[str, Any]],
    data: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Per split: the ensemble's metrics (see the module docstring) and ``"members"``, each member's own metrics
    (``member_metrics``, as the family evaluates a run) of that split."""
    from ..metrics import evaluate_ensemble

    out: dict[str, Any] = {}
    for split in splits:
        out[split] = {}
        if hasattr(ensemble.family, "predict_physical"):
            preds, truths = [], []
            with torch.no_grad():
                for batch in ensemble.loader(split, batch_size, data):
                    preds.append(ensemble.predict(batch).cpu())
                    truths.append(batch["output_fields"])
            n_dims = ensemble.metadata.n_spatial_dims
            out[split] = evaluate_ensemble(torch.cat(preds, dim=1), torch.cat(truths).to(preds[0].dtype), n_dims)
        out[split]["members"] = [m[split] for m in member_metrics]
    return out
