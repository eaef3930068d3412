"""Tasks and evaluation shared by ``train.py`` and ``pdeforge evaluate``.

A *task* turns a dataset into (model input, target) windows and a prediction back into fields:

- ``next_step``: ``n_steps_input`` frames -> the next ``n_steps_output`` frames (``dt_stride`` apart); evaluated
  one step ahead and by autoregressive rollout over whole test trajectories (per-step error curves).
- ``operator``: a one-shot map. On steady data (one snapshot, e.g. Darcy) constant fields -> solution; on
  time-dependent data u(t) -> u(t + dt_stride * dt) from every start (``windows="all"``) or only from t = 0
  (``windows="first"``: u0 -> u(T), the FNO paper's Burgers task).

Metrics are computed in physical units (predictions and targets denormalised); initial frames are never counted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from . import metrics as M
from .checkpoint import load_weights
from .datasets import TrajectoryDataset

__all__ = ["make_dataset", "split_metrics", "rollout_metrics", "load_run", "evaluate_run", "METRIC_NAMES"]

METRIC_NAMES = ("rel_l2", "rel_l1", "rmse", "nrmse", "max_error", "crmse", "vrmse")


def make_dataset(cfg: Mapping[str, Any], split: str, *, stats: dict | None = None, rollout: bool = False,
                 max_trajectories: int | None = None, n_steps_output: int | None = None) -> TrajectoryDataset:
    """The dataset of ``split`` for the task in ``cfg`` (keys of train.py's Config)."""
    norm = cfg["normalization"] or None
    probe = TrajectoryDataset(cfg["data"], split=split, n_steps_input=0, n_steps_output=1)
    steady = probe.n_steps == 1
    common = dict(split=split, normalization=norm, stats=stats, max_trajectories=max_trajectories or None)
    if cfg["task"] == "operator":
        if steady:
            return TrajectoryDataset(cfg["data"], n_steps_input=0, n_steps_output=1, **common)
        if cfg.get("windows", "all") == "first":
            stride = cfg["dt_stride"] or (probe.n_steps - 1)
            return TrajectoryDataset(cfg["data"], n_steps_input=1, dt_stride=stride, full_trajectory=True, **common)
        return TrajectoryDataset(cfg["data"], n_steps_input=1, n_steps_output=1, dt_stride=cfg["dt_stride"], **common)
    if cfg["task"] != "next_step":
        raise ValueError(f"task should be 'next_step' or 'operator', got {cfg['task']!r}")
    if steady:
        raise ValueError(f"{cfg['data']}: one snapshot per trajectory (steady data): use task='operator'")
    if rollout:
        return TrajectoryDataset(cfg["data"], n_steps_input=cfg["n_steps_input"], dt_stride=cfg["dt_stride"], full_trajectory=True, **common)
    n_out = n_steps_output or cfg["n_steps_output"]
    return TrajectoryDataset(cfg["data"], n_steps_input=cfg["n_steps_input"], n_steps_output=n_out, dt_stride=cfg["dt_stride"], **common)


def to_device(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _model_outputs(model, batch: Mapping[str, Tensor]) -> Tensor:
    return model.forward_batch(batch)


@torch.no_grad()
def split_metrics(model: torch.nn.Module, dataset: TrajectoryDataset, device: torch.device, batch_size: int = 32,
                  max_batches: int | None = None) -> dict[str, float]:
    """One-shot metrics (mean over windows) in physical units: rel L2/L1, RMSE, nRMSE, max, cRMSE, VRMSE, fRMSE bands."""
    model.eval()
    n_dims = dataset.metadata.n_spatial_dims
    sums: dict[str, float] = {}
    count = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = to_device(batch, device)
        pred = dataset.denormalize(_model_outputs(model, batch).float())
        target = dataset.denormalize(batch["output_fields"])
        values = {name: getattr(M, name)(pred, target, n_dims, reduction="sample") for name in METRIC_NAMES}
        shells = min(dataset.metadata.resolution) // 2
        for band, (lo, _) in M.FOURIER_BANDS.items():
            if lo < shells:  # a band needs wavenumbers the grid resolves
                values[f"frmse_{band}"] = M.frmse(pred, target, n_dims, band=band, domain_lengths=dataset.metadata.domain_lengths, reduction="sample")
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        count += pred.shape[0]
    return {k: v / max(count, 1) for k, v in sums.items()} | {"n_samples": count}


@torch.no_grad()
def rollout(model: torch.nn.Module, sample: Mapping[str, Tensor], n_out_total: int) -> Tensor:
    """Autoregressive prediction (normalised space): ``(B, n_out_total, C, *space)`` from the input frames."""
    frames = sample["input_fields"]
    n_in = frames.shape[1]
    preds = []
    produced = 0
    while produced < n_out_total:
        step = dict(sample)
        step["input_fields"] = frames[:, -n_in:]
        out = _model_outputs(model, step).float()
        preds.append(out)
        produced += out.shape[1]
        frames = torch.cat([frames, out], dim=1)
    return torch.cat(preds, dim=1)[:, :n_out_total]


@torch.no_grad()
def rollout_metrics(model: torch.nn.Module, dataset: TrajectoryDataset, device: torch.device, max_steps: int | None = None,
                    batch_size: int = 8) -> dict[str, Any]:
    """Rollout over whole trajectories (``full_trajectory`` dataset): per-step rel L2 / nRMSE / correlation curves
    (mean over trajectories), their means, and the high-correlation duration (time until correlation < 0.8)."""
    model.eval()
    n_dims = dataset.metadata.n_spatial_dims
    curves: dict[str, Tensor] = {}
    durations = []
    count = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = to_device(batch, device)
        target = batch["output_fields"]
        n = target.shape[1] if max_steps is None else min(max_steps, target.shape[1])
        pred = dataset.denormalize(rollout(model, batch, n))
        target = dataset.denormalize(target[:, :n])
        per = {
            "rel_l2": M.rel_l2(pred, target, n_dims, reduction="none").mean(-1),
            "nrmse": M.nrmse(pred, target, n_dims, reduction="none").mean(-1),
            "correlation": M.correlation(pred, target, n_dims, reduction="none").mean(-1),
        }
        for k, v in per.items():  # (B, T)
            curves[k] = curves.get(k, 0) + v.sum(0)
        durations.append(M.high_correlation_duration(pred, target, n_dims, dt=dataset.metadata.dt, reduction="sample"))
        count += pred.shape[0]
    out: dict[str, Any] = {"steps": int(next(iter(curves.values())).shape[0]) if curves else 0, "dt": dataset.metadata.dt}
    for k, v in curves.items():
        c = (v / count).cpu()
        out[f"{k}_per_step"] = [float(x) for x in c]
        out[f"{k}_mean"] = float(c.mean())
    if durations:
        out["high_correlation_duration"] = float(torch.cat(durations).mean())
    return out


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """(model, saved info) from a run folder: ``model.json`` (spec, config, stats) + ``model.safetensors``."""
    from .operators import build_from_spec

    run_dir = Path(run_dir)
    info_path = run_dir / "model.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no model.json); expected the folder train.py wrote")
    info = json.loads(info_path.read_text())
    model = build_from_spec(info["model_spec"])
    state = load_weights(run_dir / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{run_dir / 'model.safetensors'}: weights do not fit the model in model.json (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.to(device), info


def evaluate_run(run_dir: str | Path, data: str | None = None, split: str = "test", device: str = "cpu") -> dict[str, Any]:
    """Recompute a run's metrics from its saved weights (``pdeforge evaluate``)."""
    model, info = load_run(run_dir, device)
    cfg = dict(info["config"])
    if data:
        cfg["data"] = data
    dev = torch.device(device)
    ds = make_dataset(cfg, split, stats=info.get("stats"))
    out: dict[str, Any] = {split: split_metrics(model, ds, dev)}
    if cfg["task"] == "next_step":
        out["rollout"] = rollout_metrics(model, make_dataset(cfg, split, stats=info.get("stats"), rollout=True), dev,
                                         max_steps=cfg.get("rollout_steps") or None)
    return out


def finite_or_raise(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(where)
    return value
