"""Plots people would rather look at than read: trajectories, training curves, predictions, rollout errors.

The ``plot_*`` functions write a PNG (or GIF) and return its path; :func:`prediction_figure` returns the figure
(for a notebook) that :func:`plot_prediction` writes. matplotlib runs headless (Agg). Panels that are compared share
one colour scale (:func:`colour_limits`: truth and prediction of a field, snapshots of one field over time), an error
has its own scale, symmetric about 0; every axis is labelled, in physical coordinates where they are known. Field
images draw NaN and Inf in `NONFINITE_COLOUR` (a colour the diverging colormap never uses) and count them in the
title: drawn as a colour of the scale, a NaN would pass for a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_file",
    "plot_trajectory",
    "plot_losses",
    "plot_prediction",
    "prediction_figure",
    "plot_rollout_error",
    "colour_limits",
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


def colour_limits(*arrays: np.ndarray, symmetric: bool | None = None) -> tuple[float, float]:
    """One colour scale ``(vmin, vmax)`` for panels that are compared: it covers the finite values of every array.

    ``symmetric``: ``(-m, m)`` with ``m`` the largest magnitude (for errors and signed fields on a diverging colour
    map); None: symmetric when the values take both signs, ``(min, max)`` otherwise. No finite value: ``(0, 1)``; a
    constant: a small range around it.
    """
    finite = [a[np.isfinite(a)] for a in (np.asarray(x, dtype=float) for x in arrays)]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(0)
    if not values.size:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if symmetric or (symmetric is None and lo < 0 < hi):
        lo, hi = -max(-lo, hi), max(-lo, hi)
    if hi == lo:
        pad = abs(hi) * 1e-6 or 1e-12
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _extent(coords: Sequence[np.ndarray]) -> tuple[float, ...]:
    """imshow's extent for cell-centred coordinates: each axis from its first to its last cell's edge."""
    out: list[float] = []
    for c in coords:
        c = np.asarray(c, dtype=float)
        half = (c[-1] - c[0]) / (len(c) - 1) / 2 if len(c) > 1 else 0.5
        out += [float(c[0] - half), float(c[-1] + half)]
    return tuple(out)


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
            fig.colorbar(im, ax=ax, label=names[c])
    elif n_dims == 2:
        if out.suffix == ".gif":
            return _gif(fields, time, coords, names, out, title)
        idx = np.unique(np.linspace(0, fields.shape[0] - 1, min(n_snapshots, fields.shape[0])).round().astype(int))
        fig, axes = plt.subplots(
            C, len(idx), figsize=(2.8 * len(idx) + 1, 2.7 * C), squeeze=False, layout="constrained"
        )
        for c in range(C):
            lo, hi = _finite_range(fields.data[:, c])
            for j, t in enumerate(idx):
                ax = axes[c, j]
                im = ax.imshow(fields[t, c].T, origin="lower", cmap=cmap, vmin=lo, vmax=hi, extent=_extent(coords[:2]))
                ax.set_xlabel("x", fontsize=8), ax.set_ylabel("y", fontsize=8), ax.tick_params(labelsize=7)
                ax.set_title(f"{names[c]}  t={time[t]:.3g}", fontsize=9)
            fig.colorbar(im, ax=list(axes[c]), shrink=0.8, label=names[c])
    else:
        raise ValueError(f"plotting supports 1D and 2D fields, got {n_dims}D (shape {fields.shape})")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)


def _gif(
    fields: np.ma.MaskedArray,
    time: np.ndarray,
    coords: Sequence[np.ndarray],
    names: Sequence[str],
    out: Path,
    title: str,
) -> Path:
    """``fields (T, C, X, Y)``, NaN/Inf masked, as an animation over time."""
    plt = pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    C = fields.shape[1]
    fig, axes = plt.subplots(1, C, figsize=(3.2 * C, 3.2), squeeze=False)
    ims = []
    for c in range(C):
        lo, hi = _finite_range(fields.data[:, c])
        im = axes[0, c].imshow(
            fields[0, c].T, origin="lower", cmap=field_colormap(), vmin=lo, vmax=hi, extent=_extent(coords[:2])
        )
        axes[0, c].set_xlabel("x"), axes[0, c].set_ylabel("y")
        fig.colorbar(im, ax=axes[0, c], shrink=0.8, label=names[c])
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
    log: Sequence[dict],
    out: Path,
    loss_label: str = "train loss",
    valid_label: str = "valid (selection metric)",
    ylabel: str | None = None,
) -> Path:
    """Training loss per logged step and the validation metric per validation (the run skeleton's log records
    ``loss`` and ``valid``), log scale. The labels name what each curve is (the family's loss and selection metric);
    ``ylabel`` says what the axis holds (default: the labels of the curves drawn, joined)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    train = [(r["step"], r["loss"]) for r in log if "loss" in r]
    valid = [(r["step"], r["valid"]) for r in log if "valid" in r]
    if train:
        ax.plot(*zip(*train), lw=0.8, label=loss_label)
    if valid:
        ax.plot(*zip(*valid), "o-", label=valid_label)
    drawn = [label for label, points in ((loss_label, train), (valid_label, valid)) if points]
    ax.set_yscale("log"), ax.set_xlabel("optimiser step"), ax.grid(alpha=0.3)
    ax.set_ylabel(ylabel or "; ".join(drawn) or loss_label)
    if train or valid:
        ax.legend()
    return save_figure(fig, out)


def plot_prediction(
    inp: np.ndarray | None,
    truth: np.ndarray,
    pred: np.ndarray,
    names: Sequence[str],
    out: Path,
    **options: Any,
) -> Path:
    """Write :func:`prediction_figure` (the same arguments, and its keyword ``options``) to ``out``."""
    return save_figure(prediction_figure(inp, truth, pred, names, **options), out)


def prediction_figure(
    inp: np.ndarray | None,
    truth: np.ndarray,
    pred: np.ndarray,
    names: Sequence[str],
    *,
    input_names: Sequence[str] | None = None,
    coords: Mapping[str, np.ndarray] | None = None,
    time: float | None = None,
    input_time: float | None = None,
    title: str = "",
) -> Figure:
    """One sample: input, truth, prediction and error (prediction - truth), as a matplotlib figure.

    Arguments:
        inp: the model's input ``(C_in, *space)`` (its last frame, or the constant fields), or None.
        truth, pred: ``(C, *space)``, one output frame, in physical units; ``names``: their ``C`` channel names.
        input_names: the channels of ``inp`` (default ``names``: the same fields, drawn on the same scale as the
            truth; other names, e.g. a Darcy coefficient, get a scale of their own).
        coords: ``{axis name: 1D coordinates}`` per spatial axis (e.g. ``{"x": x, "y": y}``); None: grid indices.
        time, input_time: the times of the output frame and of the input, for the titles.
        title: the figure's title.

    1D: each field against x (input, truth, prediction), its error beside. 2D: one row per field; truth and
    prediction (and an input of the same field) share one colour scale covering both (:func:`colour_limits`), the
    error a scale of its own, symmetric about 0; colour bars labelled, axes in physical coordinates.
    """
    plt = pyplot()
    C, n_dims = truth.shape[0], truth.ndim - 1
    if n_dims not in (1, 2):
        raise ValueError(f"plot_prediction: expected 1D or 2D fields (C, *space), got shape {truth.shape}")
    if pred.shape != truth.shape:
        raise ValueError(f"plot_prediction: prediction {pred.shape} and truth {truth.shape} differ in shape")
    input_names = list(names if input_names is None else input_names)
    same_input = inp is not None and input_names == list(names)
    if coords is None:
        coords = {f"axis {i} (grid index)": np.arange(n) for i, n in enumerate(truth.shape[1:])}
    dims, axes_coords = list(coords), [np.asarray(c) for c in coords.values()]
    at = f", t={time:.4g}" if time is not None else ""
    in_at = f", t={input_time:.4g}" if input_time is not None else ""
    error = pred - truth
    if n_dims == 1:
        x = axes_coords[0]
        extra = int(inp is not None and not same_input)  # an input of other quantities: a column of its own
        fig, axes = plt.subplots(C, 2 + extra, figsize=(5 * (2 + extra), 3 * C), squeeze=False)
        for c in range(C):
            if extra:
                ax = axes[c, 0]
                for k, name in enumerate(input_names):
                    ax.plot(x, inp[k], label=name)
                ax.set(title=f"input{in_at}", xlabel=dims[0], ylabel=", ".join(input_names))
                ax.legend(fontsize=8)
            ax = axes[c, extra]
            if same_input:
                ax.plot(x, inp[c], color="0.6", label=f"input{in_at}")
            ax.plot(x, truth[c], "k", label="truth"), ax.plot(x, pred[c], "r--", label="prediction")
            note = nonfinite_note(pred[c])
            ax.set(title=f"{names[c]}{at}" + (f"  ({note})" if note else ""), xlabel=dims[0], ylabel=names[c])
            ax.legend(fontsize=8)
            ax = axes[c, extra + 1]
            ax.plot(x, error[c], "r"), ax.axhline(0.0, color="0.7", lw=0.6)
            ax.set(title=f"{names[c]} error{at}", xlabel=dims[0], ylabel=f"{names[c]}: prediction - truth")
    else:
        extent = _extent(axes_coords)
        cols = [("input", inp), ("truth", truth), ("prediction", pred), ("error", error)]
        cols = [(t, a) for t, a in cols if a is not None]
        fig, axes = plt.subplots(C, len(cols), figsize=(3.4 * len(cols), 3 * C), squeeze=False)
        cmap = field_colormap()
        for c in range(C):
            shared = [truth[c], pred[c]] + ([inp[c]] if same_input and c < inp.shape[0] else [])
            for j, (kind, a) in enumerate(cols):
                ax = axes[c, j]
                if kind == "input" and not same_input:  # other quantities (a coefficient): a scale of their own
                    if c >= a.shape[0]:
                        ax.axis("off")
                        continue
                    what, label, lim = input_names[c], input_names[c], colour_limits(a[c])
                elif kind == "error":
                    lim = colour_limits(a[c], symmetric=True)
                    what, label = f"{names[c]} error", f"{names[c]}: prediction - truth"
                else:
                    what, label, lim = f"{names[c]} {kind}", names[c], colour_limits(*shared)
                im = ax.imshow(
                    np.ma.masked_invalid(a[c]).T, origin="lower", cmap=cmap, vmin=lim[0], vmax=lim[1], extent=extent
                )
                note = nonfinite_note(a[c])
                when = in_at if kind == "input" else at
                ax.set_title(f"{what}{when}" + (f"\n({note})" if note else ""), fontsize=9)
                ax.set_xlabel(dims[0], fontsize=8), ax.set_ylabel(dims[1], fontsize=8), ax.tick_params(labelsize=7)
                fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rollout_error(curves: dict, dt: float, out: Path) -> Path:
    """Per-step rollout rel L2 (and correlation) against time."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    err = curves.get("rel_l2_per_step", [])
    t = dt * (1 + np.arange(len(err)))
    ax.plot(t, err, "o-", ms=3, label="rel L2")
    ax.set_xlabel("lead time t (after the last input frame)"), ax.set_ylabel("rel L2 (physical units)", color="C0")
    ax.grid(alpha=0.3)
    if "correlation_per_step" in curves:
        ax2 = ax.twinx()
        ax2.plot(t, curves["correlation_per_step"], "g.-", ms=3, label="correlation")
        ax2.set_ylabel("correlation", color="g"), ax2.set_ylim(-0.05, 1.05)
    ax.set_title("autoregressive rollout on test trajectories")
    return save_figure(fig, out)
