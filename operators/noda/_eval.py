"""NODA's evaluation: whole trajectories rolled out from their first frame, once per arrival rate, and the plots.

The metric of a rollout is the rel L2 of the analysis state at each step, averaged over the trajectories; the
table reads it as ``long_horizon_rel_l2`` (mean over the last ``long_fraction`` of the horizon), ``final_rel_l2``,
``max_rel_l2`` and ``first_step_rel_l2``. A baseline run (a model mapping one frame to the next) is rolled out on the
same trajectories from the same first frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...datasets import DatasetMetadata, ObservationView, TrajectoryDataset
from ...metrics import rel_l2
from ...plots import colour_limits, pyplot, save_figure
from ._model import NODA

__all__ = [
    "rollout",
    "rollout_errors",
    "baseline_errors",
    "curve_table",
    "load_baseline",
    "plot_errors",
    "plot_snapshot",
]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def rollout(model: NODA, view: ObservationView, indices: list[int], horizon: int) -> dict[str, Tensor]:
    """Trajectories ``indices`` of ``view`` rolled out ``horizon`` steps from their first frame, each with its own
    measurements, as one batch on the model's device: ``truth``, ``forecast``, ``analysis``, each
    (B, horizon + 1, C, *space) on the CPU (frame 0: the initial state)."""
    samples = [view[i] for i in indices]
    device = _device_of(model)
    truth = torch.stack([s["fields"][: horizon + 1] for s in samples]).to(device)
    obs = torch.stack([s["observations"][1 : horizon + 1] for s in samples]).to(device)
    mask = torch.stack([s["mask"] for s in samples]).to(device)
    arrived = torch.stack([s["arrived"][1 : horizon + 1] for s in samples]).to(device)
    out = model(truth[:, 0], horizon, obs, mask, arrived)
    first = truth[:, :1]
    return {
        "truth": truth.cpu(),
        "forecast": torch.cat([first, out["forecast"]], 1).cpu(),
        "analysis": torch.cat([first, out["analysis"]], 1).cpu(),
    }


def rollout_errors(model: NODA, view: ObservationView, horizon: int | None = None, batch_size: int = 64) -> Tensor:
    """Rel L2 of the analysis state per step, averaged over the view's trajectories: (horizon,) float64 on the CPU
    (``horizon`` None: the whole trajectories); ``batch_size`` trajectories roll out together."""
    T = len(view.frames) - 1 if horizon is None else int(horizon)
    total = torch.zeros(T, dtype=torch.float64)
    for lo in range(0, len(view), batch_size):
        out = rollout(model, view, list(range(lo, min(len(view), lo + batch_size))), T)
        err = rel_l2(out["analysis"][:, 1:], out["truth"][:, 1:], model.n_spatial_dims, reduction="none")
        total += err.mean(-1).double().sum(0)
    return total / len(view)


@torch.no_grad()
def baseline_errors(
    model: nn.Module, family: str, dataset: TrajectoryDataset, horizon: int, batch_size: int = 64
) -> Tensor:
    """Rel L2 per step of a baseline run's model rolled out without measurements from each trajectory's first
    frame, averaged over the trajectories: (horizon,) float64. ``family`` "noda": its forecast; any other: a model
    mapping ``(B, 1, C, *space)`` to the next frame ``(B, 1, C, *space)`` (a FieldOperator of one frame in and out)."""
    n = dataset.n_spatial_dims
    frames = range(0, dataset.n_steps, dataset.dt_stride)[: horizon + 1]
    device = _device_of(model)
    total = torch.zeros(horizon, dtype=torch.float64)
    for lo in range(0, len(dataset.trajectories), batch_size):
        ids = range(lo, min(len(dataset.trajectories), lo + batch_size))
        truth = torch.stack([dataset.read(i, frames)["fields"] for i in ids]).to(device)
        if family == "noda":
            pred = model(truth[:, 0], horizon)["forecast"]
        else:
            state, steps = truth[:, :1], []
            for _ in range(horizon):
                state = model(state)[:, -1:]
                steps.append(state[:, 0])
            pred = torch.stack(steps, 1)
        err = rel_l2(pred, truth[:, 1:], n, reduction="none")
        total += err.mean(-1).double().sum(0).cpu()
    return total / len(dataset.trajectories)


def load_baseline(
    run_dir: str, metadata: DatasetMetadata, device: torch.device, where: str = "noda"
) -> tuple[nn.Module, str]:
    """The model of the baseline run ``run_dir`` and its family's name; a run of other fields or another grid, or
    one that does not map one frame to the next in physical units, is a ValueError naming ``eval.baseline_run``."""
    from ...families import load_run

    try:
        run = load_run(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{where}: eval.baseline_run {run_dir}: {e}") from None
    meta = run.envelope.get("metadata") or {}
    theirs = (tuple(meta.get("field_names") or ()), tuple(meta.get("resolution") or ()))
    ours = (tuple(metadata.field_names), tuple(metadata.resolution))
    if theirs != ours:
        raise ValueError(
            f"{where}: eval.baseline_run {run_dir}: fields/resolution {theirs} differ from this run's "
            f"{ours}; train the baseline on the same data"
        )
    layout = getattr(run.model, "layout", None)
    if run.envelope["family"] != "noda":
        if (
            layout is None
            or (layout.n_steps_input, layout.n_steps_output) != (1, 1)
            or layout.n_scalars
            or layout.n_constant_fields
        ):
            raise ValueError(
                f"{where}: eval.baseline_run {run_dir}: expected a model of one frame in and one out "
                f"(a next_step run with one input frame), got {layout}"
            )
        if run.envelope.get("stats"):
            raise ValueError(
                f"{where}: eval.baseline_run {run_dir}: the model works on normalised fields; train the "
                "baseline without normalisation so both roll out in physical units"
            )
    return run.model.to(device).eval(), run.envelope["family"]


def curve_table(curves: Mapping[str, Tensor], long_fraction: float) -> tuple[dict[str, dict[str, float]], int]:
    """The table of each curve (module docstring) and the number of steps the long horizon spans."""
    horizon = len(next(iter(curves.values())))
    tail = max(1, int(math.ceil(long_fraction * horizon)))
    table = {
        name: {
            "long_horizon_rel_l2": float(c[-tail:].mean()),
            "final_rel_l2": float(c[-1]),
            "max_rel_l2": float(c.max()),
            "first_step_rel_l2": float(c[0]),
        }
        for name, c in curves.items()
    }
    return table, tail


def plot_errors(curves: Mapping[str, list[float]], dt: float, out: Path) -> None:
    """Rel L2 against time, one line per arrival rate (the baseline dashed)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        t = dt * (1 + np.arange(len(c)))
        ax.plot(t, c, "k--" if name == "baseline" else "-", label=name.replace("noda_alpha_", "NODA alpha="))
    ax.set_xlabel("time t since the first frame"), ax.set_ylabel("rel L2 of the analysis state")
    ax.set_yscale("log"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    ax.set_title("rollout error on test trajectories")
    save_figure(fig, out)


def plot_snapshot(panels: list[tuple[str, Tensor]], meta: DatasetMetadata, out: Path) -> None:
    """Truth, forecast and assimilated state of one trajectory, channel 0: space-time diagrams (1D) or the last frame
    (2D); each panel (T + 1, C, *space), on one colour scale covering every panel, in physical coordinates."""
    plt = pyplot()
    name = meta.field_names[0]
    lengths = meta.domain_lengths
    if meta.n_spatial_dims == 1:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels) + 1, 4), sharey=True, squeeze=False)
        lo, hi = colour_limits(*(a[:, 0].numpy() for _, a in panels))
        for ax, (title, a) in zip(axes[0], panels):
            im = ax.imshow(
                a[:, 0].numpy(),
                aspect="auto",
                origin="lower",
                cmap="RdBu_r",
                vmin=lo,
                vmax=hi,
                extent=(0, lengths[0], 0, meta.dt * (a.shape[0] - 1)),
            )
            ax.set_title(title), ax.set_xlabel(meta.spatial_dims[0]), ax.set_ylabel("time t")
    else:
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels) + 1, 4), squeeze=False)
        lo, hi = colour_limits(*(a[-1, 0].numpy() for _, a in panels))
        for ax, (title, a) in zip(axes[0], panels):
            im = ax.imshow(
                a[-1, 0].numpy().T,
                origin="lower",
                cmap="RdBu_r",
                vmin=lo,
                vmax=hi,
                extent=(0, lengths[0], 0, lengths[1]),
            )
            ax.set_title(f"{title}, t={meta.dt * (a.shape[0] - 1):g}", fontsize=9)
            ax.set_xlabel(meta.spatial_dims[0]), ax.set_ylabel(meta.spatial_dims[1])
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label=name)
    save_figure(fig, out)


def summary_line(metrics: Mapping[str, Any]) -> str:
    """Long-horizon rel L2 on test for each curve."""
    table = metrics["test"]["table"]
    return "test long-horizon rel L2: " + ", ".join(
        f"{k.replace('noda_alpha_', 'alpha=')} {v['long_horizon_rel_l2']:.4g}" for k, v in table.items()
    )
