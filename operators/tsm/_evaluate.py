"""TSM's evaluation and plots: vorticity correlation with the reference and high-correlation duration, for the model
and for the coarse solver it starts from.

Each model rolls out from frame ``history - 1`` of every trajectory of a split (every ``stride``-th frame) to its
end. Metric: Pearson correlation of the vorticity with the reference per step; the high-correlation duration is the
time until it drops below ``threshold`` (:func:`pdeforge.metrics.high_correlation_duration`), per trajectory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...metrics import correlation, high_correlation_duration
from ...plots import colour_limits, pyplot, save_figure
from ...solvers import fv
from ._models import AbstractStencilModel

__all__ = ["vorticity_rollout", "score", "correlation_plot", "snapshot_plot"]


def vorticity_rollout(velocity: Tensor, grid: fv.StaggeredGrid) -> Tensor:
    """``(B, T, 2, N, N) -> (B, T, 1, N, N)`` vorticity at the cell corners."""
    b, t = velocity.shape[:2]
    return fv.vorticity(velocity.flatten(0, 1), grid).unflatten(0, (b, t))


@torch.no_grad()
def score(model: AbstractStencilModel, inputs: Tensor, targets: Tensor, threshold: float) -> dict[str, Any]:
    """Roll ``model`` out from ``inputs (B, H, 2, N, N)`` for the ``T`` steps of ``targets (B, T, 2, N, N)`` and
    compare vorticities (on one CPU thread: a CPU rollout's rounding depends on the thread count). Returns
    ``{"duration": (B,), "corr": (T,) mean over trajectories, "pred": (B, T, 2, N, N)}`` on the CPU."""
    device = next((p.device for p in model.parameters()), inputs.device)
    inputs, targets = inputs.to(device), targets.to(device)
    threads = torch.get_num_threads()
    try:  # one CPU thread: the same numbers whatever the process's thread count (pdeforge evaluate = training's)
        torch.set_num_threads(1)
        pred = model.rollout(inputs, targets.shape[1])
    finally:
        torch.set_num_threads(threads)
    grid = model.solver.grid
    w_pred, w_true = vorticity_rollout(pred, grid), vorticity_rollout(targets, grid)
    corr = correlation(w_pred, w_true, 2, reduction="none")[..., 0]
    duration = high_correlation_duration(w_pred, w_true, 2, model.dt, threshold, reduction="sample")
    return {"duration": duration.cpu(), "corr": corr.mean(0).cpu(), "pred": pred.cpu()}


def correlation_plot(curves: dict[str, list[float]], dt: float, threshold: float, out: Path) -> None:
    """Mean vorticity correlation against time, one line per model, the threshold dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot([dt * (1 + k) for k in range(len(c))], c, label=name)
    ax.axhline(threshold, color="k", lw=0.8, ls="--")
    ax.set_xlabel("lead time t"), ax.set_ylabel("vorticity correlation with the reference"), ax.set_ylim(-0.1, 1.02)
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, out)


def snapshot_plot(snaps: dict[str, Tensor], t_snap: float, out: Path, length: float = 2 * math.pi) -> None:
    """Vorticity fields ``(N, N)`` side by side (x right, y up, on ``[0, length)^2``), on one colour scale that
    covers every panel, symmetric about 0."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.4 * len(snaps) + 1, 3.2), squeeze=False)
    lo, hi = colour_limits(*(w.numpy() for w in snaps.values()), symmetric=True)
    for ax, (name, w) in zip(axes[0], snaps.items()):
        im = ax.imshow(w.T.numpy(), origin="lower", cmap="RdBu_r", vmin=lo, vmax=hi, extent=(0.0, length, 0.0, length))
        ax.set_title(f"{name}, t = {t_snap:.2f}", fontsize=9), ax.set_xlabel("x"), ax.set_ylabel("y")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="vorticity")
    save_figure(fig, out)
