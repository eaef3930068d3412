"""The PINN family's plots: the solution over space-time, and each loss term per iteration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ..plots import colour_limits, pyplot, save_figure

__all__ = ["plot_space_time", "plot_loss_terms"]


def plot_space_time(
    panels: Mapping[str, Tensor], extent: tuple[float, float, float, float], out: Path, field: str = "u"
) -> Path:
    """Heat maps of ``(nt, nx)`` fields side by side, time across and space up; ``extent`` is ``(t0, t1, x0, x1)``.
    A panel named ``|error|`` gets a sequential colour map from 0; the others share one colour scale covering all of
    them (:func:`pdeforge.plots.colour_limits`), so that the prediction and the reference compare by eye. ``field``
    names the colour bars."""
    fig, axes = pyplot().subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, layout="constrained")
    lo, hi = colour_limits(*(d.numpy() for t, d in panels.items() if t != "|error|"))
    for ax, (title, data) in zip(axes[0], panels.items()):
        error = title == "|error|"
        scale = {"vmin": 0.0, "vmax": colour_limits(data.numpy())[1]} if error else {"vmin": lo, "vmax": hi}
        im = ax.imshow(
            data.T.numpy(), origin="lower", aspect="auto", extent=extent, cmap="viridis" if error else "RdBu_r", **scale
        )
        ax.set(title=title, xlabel="t", ylabel="x")
        fig.colorbar(im, ax=ax, label=f"|{field} error|" if error else field)
    return save_figure(fig, out)


def plot_loss_terms(history: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Each ``loss_*`` term of the records (``phase`` adam, then lbfgs, whose steps continue after Adam's) against
    the iteration, log scale."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    offset = 0
    for phase in ("adam", "lbfgs"):
        recs = [r for r in history if r.get("phase") == phase]
        for key in sorted({k for r in recs for k in r if k.startswith("loss_")}):
            ax.semilogy(
                [offset + r["step"] for r in recs if key in r],
                [r[key] for r in recs if key in r],
                label=f"{key[5:]} ({phase})",
            )
        if recs and phase == "adam":
            offset = recs[-1]["step"] + 1
    ax.set(xlabel="iteration (Adam, then L-BFGS)", ylabel="loss term")
    if ax.lines:
        ax.legend(fontsize=7)
    return save_figure(fig, out)
