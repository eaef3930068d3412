"""Plots people would rather look at than read: trajectories, training curves, predictions, rollout errors.

All functions write a PNG (or GIF) and return its path; matplotlib runs headless (Agg). Field images draw NaN and
Inf in `NONFINITE_COLOUR` (a colour the diverging colormap never uses) and count them in the title: drawn as a
colour of the scale, a NaN would pass for a value.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._files import atomic_write

__all__ = [
    "plot_file",
    "plot_trajectory",
    "plot_losses",
    "plot_prediction",
    "plot_rollout_error",
    "pyplot",
    "save_figure",
    "field_colormap",
    "nonfinite_note",
    "NONFINITE_COLOUR",
]


NONFINITE_COLOUR = "lime"  # NaN/Inf in field images: far from every colour of RdBu_r


def field_colormap():
    """The diverging colormap of field images, with NaN/Inf (masked values) drawn in `NONFINITE_COLOUR`."""
    import matplotlib

    return matplotlib.colormaps["RdBu_r"].with_extremes(bad=NONFINITE_COLOUR)


def _finite_range(a: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values of ``a``; (0, 1) if it has none (a colour scale still needs a range)."""
    finite = a[np.isfinite(a)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def nonfinite_note(a: np.ndarray) -> str:
    """``"3 NaN, 1 Inf of 4096 values (lime)"`` for a title; ``""`` when every value is finite."""
    n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    if not n_nan and not n_inf:
        return ""
    parts = [f"{n_nan} NaN"] * bool(n_nan) + [f"{n_inf} Inf"] * bool(n_inf)
    return f"{', '.join(parts)} of {a.size} values ({NONFINITE_COLOUR})"


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Write ``fig`` to ``out`` atomically (the format from its extension) and close it."""
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    pyplot().close(fig)
    return out


def _check_image_suffix(out: Path) -> None:
    """Refuse an output name matplotlib cannot write (before any work), naming the formats it can."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = {"gif", *FigureCanvasBase.get_supported_filetypes()}
    if out.suffix.lstrip(".").lower() not in formats:
        raise ValueError(
            f"--out {out}: cannot write a {out.suffix or 'suffix-less'} file; "
            f"use .png or .gif (2D: an animation), or one of {', '.join(sorted(formats))}"
        )


def plot_trajectory(
    fields: np.ndarray,
    time: np.ndarray,
    coords: Sequence[np.ndarray],
    names: Sequence[str],
    out: Path,
    title: str = "",
    n_snapshots: int = 6,
) -> Path:
    """``fields (T, C, *space)``: 1D -> a space-time image per channel; 2D -> a row of snapshots per channel.

    A ``.gif`` output animates 2D fields over time instead.
    """
    plt = pyplot()
    n_dims = fields.ndim - 2
    C = fields.shape[1]
    note = nonfinite_note(fields)
    title = f"{title}  ({note})" if title and note else title or note
    fields = np.ma.masked_invalid(fields)  # masked values take the colormap's "bad" colour
    cmap = field_colormap()
    if n_dims == 1:
        fig, axes = plt.subplots(1, C, figsize=(5 * C, 4), squeeze=False)
        for c in range(C):
            ax = axes[0, c]
            x = coords[0]
            lo, hi = _finite_range(fields.data[:, c])
            im = ax.imshow(
                fields[:, c],
                aspect="auto",
                origin="lower",
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                extent=(x[0], x[-1], time[0], time[-1] if len(time) > 1 else time[0] + 1),
            )
            ax.set_xlabel("x"), ax.set_ylabel("t"), ax.set_title(names[c])
            fig.colorbar(im, ax=ax)
    elif n_dims == 2:
        if out.suffix == ".gif":
            return _gif(fields, time, names, out, title)
        idx = np.unique(np.linspace(0, fields.shape[0] - 1, min(n_snapshots, fields.shape[0])).round().astype(int))
        fig, axes = plt.subplots(C, len(idx), figsize=(2.6 * len(idx) + 1, 2.6 * C), squeeze=False)
        for c in range(C):
            lo, hi = _finite_range(fields.data[:, c])
            for j, t in enumerate(idx):
                ax = axes[c, j]
                im = ax.imshow(fields[t, c].T, origin="lower", cmap=cmap, vmin=lo, vmax=hi)
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_title(f"{names[c]}  t={time[t]:.3g}", fontsize=9)
            fig.colorbar(im, ax=list(axes[c]), shrink=0.8)
    else:
        raise ValueError(f"plotting supports 1D and 2D fields, got {n_dims}D (shape {fields.shape})")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)


def _gif(fields: np.ma.MaskedArray, time: np.ndarray, names: Sequence[str], out: Path, title: str) -> Path:
    """``fields (T, C, X, Y)``, NaN/Inf masked, as an animation over time."""
    plt = pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    C = fields.shape[1]
    fig, axes = plt.subplots(1, C, figsize=(3.2 * C, 3.2), squeeze=False)
    ims = []
    for c in range(C):
        lo, hi = _finite_range(fields.data[:, c])
        im = axes[0, c].imshow(fields[0, c].T, origin="lower", cmap=field_colormap(), vmin=lo, vmax=hi)
        axes[0, c].set_xticks([]), axes[0, c].set_yticks([])
        fig.colorbar(im, ax=axes[0, c], shrink=0.8)
        ims.append(im)

    def update(t):
        for c, im in enumerate(ims):
            im.set_data(fields[t, c].T)
            axes[0, c].set_title(f"{names[c]}  t={time[t]:.3g}", fontsize=9)
        return ims

    if title:
        fig.suptitle(title)
    anim = FuncAnimation(fig, update, frames=fields.shape[0])
    atomic_write(out, lambda tmp: anim.save(tmp, writer=PillowWriter(fps=6)))
    plt.close(fig)
    return out


def plot_file(
    path: str | os.PathLike,
    trajectory: int = 0,
    out: str | os.PathLike | None = None,
    field: str | None = None,
    split: str = "test",
) -> Path:
    """``pdeforge plot``: one trajectory of a file, a folder of files or a dataset root (its ``split``; trajectories
    numbered across the files), with field names, time stamps and colour bars. ``out`` defaults to
    ``FILE.trajI.png`` next to a file, ``FOLDER/SPLIT_trajI.png`` inside a folder or root."""
    from .datasets import TrajectoryDataset

    path = Path(path)
    root = path.is_dir() and (path / "data").is_dir()
    if out is not None:
        _check_image_suffix(Path(out))
    # NaN/Inf are read as stored: the plot shows where they are, which an error could only name
    ds = TrajectoryDataset(
        path, split=split if root else None, n_steps_input=0, n_steps_output=1, cache_small=False, allow_nonfinite=True
    )
    if not 0 <= trajectory < len(ds.trajectories):
        where = f"{path} ({split} split)" if root else str(path)
        raise IndexError(
            f"{where}: trajectory {trajectory} out of range (there are {len(ds.trajectories)}, numbered from 0)"
        )
    data = ds.read(trajectory, range(ds.n_steps))
    names = list(ds.metadata.field_names)
    fields = data["fields"].numpy()
    if field is not None:
        if field not in names:
            raise ValueError(f"{path}: no channel {field!r}; channels are {names}")
        fields, names = fields[:, [names.index(field)]], [field]
    if "constant_fields" in data and field is None:
        const = data["constant_fields"].numpy()[None].repeat(fields.shape[0], 0)
        fields = np.concatenate([const, fields], axis=1)
        names = list(ds.metadata.constant_field_names) + names
    coords = [np.asarray(c) for c in ds.files[0].coords]
    if out:
        target = Path(out)
    elif path.is_dir():
        target = path / f"{split if root else path.name}_traj{trajectory}.png"
    else:
        target = path.with_suffix(f".traj{trajectory}.png")
    return plot_trajectory(
        fields,
        data["time"].numpy(),
        coords,
        names,
        target,
        title=f"{ds.metadata.dataset_name}  trajectory {trajectory}",
    )


def plot_losses(
    log: Sequence[dict], out: Path, loss_label: str = "train loss", valid_label: str = "valid (selection metric)"
) -> Path:
    """Training loss per logged step and the validation metric per validation (the run skeleton's log records
    ``loss`` and ``valid``), log scale."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    train = [(r["step"], r["loss"]) for r in log if "loss" in r]
    valid = [(r["step"], r["valid"]) for r in log if "valid" in r]
    if train:
        ax.plot(*zip(*train), lw=0.8, label=loss_label)
    if valid:
        ax.plot(*zip(*valid), "o-", label=valid_label)
    ax.set_yscale("log"), ax.set_xlabel("optimiser step"), ax.set_ylabel("loss / metric"), ax.grid(alpha=0.3)
    if train or valid:
        ax.legend()
    return save_figure(fig, out)


def plot_prediction(
    inp: np.ndarray | None, truth: np.ndarray, pred: np.ndarray, names: Sequence[str], out: Path
) -> Path:
    """One sample: input, truth, prediction, error. Arrays ``(C, *space)`` (first output frame)."""
    plt = pyplot()
    C, n_dims = truth.shape[0], truth.ndim - 1
    cols = [("input", inp), ("truth", truth), ("prediction", pred), ("error", pred - truth)]
    cols = [(t, a) for t, a in cols if a is not None]
    if n_dims == 1:
        fig, axes = plt.subplots(C, 2, figsize=(10, 3 * C), squeeze=False)
        for c in range(C):
            ax = axes[c, 0]
            if inp is not None and c < inp.shape[0]:
                ax.plot(inp[c], color="0.6", label="input")
            ax.plot(truth[c], "k", label="truth"), ax.plot(pred[c], "r--", label="prediction")
            ax.set_title(names[c]), ax.legend(fontsize=8)
            axes[c, 1].plot(pred[c] - truth[c], "r"), axes[c, 1].set_title(f"{names[c]} error")
    else:
        fig, axes = plt.subplots(C, len(cols), figsize=(3 * len(cols), 3 * C), squeeze=False)
        for c in range(C):
            for j, (title, a) in enumerate(cols):
                if c >= a.shape[0]:
                    axes[c, j].axis("off")
                    continue
                im = axes[c, j].imshow(a[c].T, origin="lower", cmap="RdBu_r")
                (
                    axes[c, j].set_title(f"{names[c]} {title}", fontsize=9),
                    axes[c, j].set_xticks([]),
                    axes[c, j].set_yticks([]),
                )
                fig.colorbar(im, ax=axes[c, j], shrink=0.8)
    return save_figure(fig, out)


def plot_rollout_error(curves: dict, dt: float, out: Path) -> Path:
    """Per-step rollout rel L2 (and correlation) against time."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    err = curves.get("rel_l2_per_step", [])
    t = dt * (1 + np.arange(len(err)))
    ax.plot(t, err, "o-", ms=3, label="rel L2")
    ax.set_xlabel("time"), ax.set_ylabel("rel L2"), ax.grid(alpha=0.3)
    if "correlation_per_step" in curves:
        ax2 = ax.twinx()
        ax2.plot(t, curves["correlation_per_step"], "g.-", ms=3, label="correlation")
        ax2.set_ylabel("correlation", color="g"), ax2.set_ylim(-0.05, 1.05)
    ax.set_title("autoregressive rollout on test trajectories")
    return save_figure(fig, out)
