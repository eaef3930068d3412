"""Data for scOT training: named data sources (generated once into the cache), the all-pairs views, channel groups,
the masked loss and the evaluation (median relative L1, Poseidon's metric)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...datasets import TrajectoryDataset, load_stats
from ...datasets import AllPairsDataset
from ._loss import LOSS_EPS, median_relative_l1
from ._model import ScOT


def data_sources() -> dict[str, Any]:
    """Named data sources, written out here: `pdeforge generate` presets and variants of them.

    - ``ns_lognormal``: decaying 2D Navier-Stokes (vorticity), log-normal spectrum initial data (the preset);
    - ``ns_grf``: the same PDE from Gaussian-random-field vorticity (exponent 4), a second initial-condition family;
    - ``ns_blobs``: the same PDE from Gaussian vortex blobs (an unseen family);
    - ``kolmogorov``: forced Kolmogorov flow with drag (a different PDE, same vorticity field; after the preset's
      warm-up onto the attractor).
    """
    from ...solvers import GaussianBlobs, GaussianRandomField, Normalization
    from ...solvers.generate import PRESETS, with_overrides

    # Snapshots every 0.05 time units up to t = 0.4 (the presets store every 0.2 up to 5): at the presets' spacing
    # the fields decorrelate within a few snapshots (the relative L1 error of persistence u(t) = u(0) passes 100%
    # at t = 0.8 for Kolmogorov flow, t = 1.6 for the log-normal NS data), too far for a CPU-sized model.
    short = dict(save_every=5, n_snapshots=9)
    ns = with_overrides(PRESETS["navier_stokes_2d"], **short)
    amp = Normalization(scale_by="std", amplitude=2.0)
    return {
        "ns_lognormal": ns,
        "ns_grf": with_overrides(ns, name="ns_grf_2d", initial_condition=GaussianRandomField(exponent=4.0, normalization=amp)),
        "ns_blobs": with_overrides(ns, name="ns_blobs_2d", initial_condition=GaussianBlobs(n_blobs=6, width=0.02, normalization=amp)),
        "kolmogorov": with_overrides(PRESETS["kolmogorov_2d"], **short),
    }


def resolve_data(entry: str, n_trajectories: int, resolution: int, seed: int, progress: bool = False) -> Path:
    """A dataset root: ``entry`` itself when it is a folder, else the named source generated into
    ``$PDEFORGE_CACHE/datasets`` (default ``~/.cache/pdeforge``) once."""
    if Path(entry).is_dir():
        return Path(entry)
    sources = data_sources()
    if entry not in sources:
        raise SystemExit(f"data entry {entry!r} is neither a dataset folder nor a source; sources: {sorted(sources)}")
    from ...solvers.generate import generate

    cache = Path(os.environ.get("PDEFORGE_CACHE", Path.home() / ".cache" / "pdeforge"))
    preset = sources[entry]
    root = cache / "datasets" / f"scot-{entry}-n{n_trajectories}-r{resolution}-s{seed}-t{preset.n_snapshots}x{preset.dt_save:g}"
    if not (root / "stats.yaml").exists():
        print(f"generating {entry} ({n_trajectories} trajectories at {resolution}^2) into {root} (once; cached)")
        generate(preset, root, n_trajectories=n_trajectories, resolution=resolution, seed=seed, progress=progress)
    return root


def open_split(root: Path, split: str, normalization: str, max_trajectories: int = 0) -> TrajectoryDataset:
    """The trajectories of one split, normalised with the root's train statistics."""
    norm = normalization or None
    stats = load_stats(root / "stats.yaml") if norm else None
    return TrajectoryDataset(root, 1, 1, 1, split=split, normalization=norm, stats=stats,
                             max_trajectories=max_trajectories or None)


def selection(n_steps: int, stride: int, n_snapshots: int = 0) -> list[int]:
    """Stored indices 0, stride, 2 stride, ... <= n_steps - 1, the first ``n_snapshots`` of them (0: all)."""
    sel = list(range(0, n_steps, stride))
    if n_snapshots:
        if n_snapshots < 2 or n_snapshots > len(sel):
            raise SystemExit(f"n_snapshots should be in 2..{len(sel)} for {n_steps} stored snapshots at stride {stride}, "
                             f"got {n_snapshots}")
        sel = sel[:n_snapshots]
    return sel


def channel_groups(channels: Sequence[str]) -> list[int]:
    """Boundaries of the loss groups: one group per field, the components of a vector field together
    (``velocity_x, velocity_y``), e.g. ``(rho, velocity_x, velocity_y, p) -> [0, 1, 3, 4]``."""
    def base(name: str) -> str:
        stem, _, suffix = name.rpartition("_")
        return stem if stem and suffix in ("x", "y", "z", "xx", "xy", "yx", "yy") else name

    bounds = [0]
    for k in range(1, len(channels)):
        if base(channels[k]) != base(channels[k - 1]):
            bounds.append(k)
    return bounds + [len(channels)]


def masked_scot_loss(pred: Tensor, target: Tensor, mask: Tensor, groups: Sequence[int]) -> Tensor:
    """Poseidon's relative L1 loss per channel group over the channels that exist (``mask``):

        loss = mean_g  mean_{m=1}|pred_g - target_g| / (mean_{m=1}|target_g| + 1e-10),

    the means running over the unmasked (sample, channel) pairs of group g and space; groups masked in the whole
    batch are skipped. Without masked channels this is `scot_loss(pred, target, groups)`.

    Shapes: pred, target (B, C, *space); mask (B, C) bool.
    """
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask should be (B, C) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    m = mask.to(pred.dtype).reshape(mask.shape + (1,) * (pred.dim() - 2))
    n_space = pred[0, 0].numel()
    terms = []
    for a, b in zip(groups[:-1], groups[1:]):
        count = m[:, a:b].sum() * n_space
        if count == 0:
            continue
        err = ((pred[:, a:b] - target[:, a:b]).abs() * m[:, a:b]).sum() / count
        norm = (target[:, a:b].abs() * m[:, a:b]).sum() / count
        terms.append(err / (norm + LOSS_EPS))
    if not terms:
        raise ValueError("every channel of the batch is masked: nothing to train on")
    return torch.stack(terms).mean()


def _own(view: AllPairsDataset, fields: Tensor) -> Tensor:
    """Layout channels -> the dataset's own channels, in physical units."""
    return view.dataset.denormalize(fields[:, view.channel_index])


def _device(model: ScOT) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_pairs(model: ScOT, view: AllPairsDataset, batch_size: int = 32) -> dict[str, Tensor]:
    """Direct predictions u(t_i), lead -> u(t_j) for every sample of ``view``, in physical units of the dataset's own
    channels: ``pred``, ``target`` (N, C_own, *space) and ``output_index`` (N,), on the CPU (the model predicts on
    its device)."""
    model.eval()
    device = _device(model)
    preds, targets, outs = [], [], []
    for start in range(0, len(view), batch_size):
        batch = [view[k] for k in range(start, min(start + batch_size, len(view)))]
        x = torch.stack([s["input_fields"] for s in batch]).to(device)
        lead = torch.stack([s["lead_time"] for s in batch]).to(device)
        preds.append(_own(view, model(x, lead).cpu()))
        targets.append(_own(view, torch.stack([s["output_fields"] for s in batch])))
        outs.append(torch.stack([s["output_index"] for s in batch]))
    return {"pred": torch.cat(preds), "target": torch.cat(targets), "output_index": torch.cat(outs)}


@torch.no_grad()
def rollout_final(model: ScOT, view: AllPairsDataset, batch_size: int = 32) -> dict[str, Tensor]:
    """Autoregressive prediction of the last selected snapshot from the first, stepping over the selection with
    the model's lead ``lead(i, i + 1)`` (how a next-step-trained model reaches the final time); on the CPU, as
    `predict_pairs`."""
    model.eval()
    device = _device(model)
    n_traj, sel = view.n_trajectories, view.snapshots
    mask = view.channel_mask[None, :, None, None].to(device)
    preds, targets = [], []
    for start in range(0, n_traj, batch_size):
        trajs = range(start, min(start + batch_size, n_traj))
        data = [view.dataset.read(t, [int(sel[0]), int(sel[-1])])["fields"] for t in trajs]
        x = view.pad(torch.stack([d[0] for d in data])).to(device)
        for i in range(len(sel) - 1):
            x = model(x, torch.full((x.shape[0],), view.lead_time(i, i + 1), device=device))
            x = torch.where(mask, x, torch.zeros_like(x))
        preds.append(_own(view, x.cpu()))
        targets.append(view.dataset.denormalize(torch.stack([d[1] for d in data])))
    return {"pred": torch.cat(preds), "target": torch.cat(targets)}


def median_error(pred: Tensor, target: Tensor, channels: Sequence[str]) -> float:
    """Poseidon's metric in percent: per channel group, the median over samples of the relative L1 error; then the
    mean over groups."""
    return float(median_relative_l1(pred.double(), target.double(), channel_groups(channels)).mean())


def final_time_error(model: ScOT, ds: TrajectoryDataset, snapshots: Sequence[int], channels: Sequence[str],
                     pairing: str) -> float:
    """Median relative L1 (%) of u(t_first) -> u(t_last) over the trajectories of ``ds``: directly at lead 1, or by
    rollout over the selection for a model trained on ``pairing="next"``."""
    if pairing == "next":
        out = rollout_final(model, AllPairsDataset(ds, snapshots, pairing="next", channels=channels))
    else:
        out = predict_pairs(model, AllPairsDataset(ds, [snapshots[0], snapshots[-1]], pairing="from_first", channels=channels))
    return median_error(out["pred"], out["target"], ds.metadata.field_names)


def lead_time_errors(model: ScOT, ds: TrajectoryDataset, targets: Sequence[int], span: float,
                     channels: Sequence[str]) -> dict[int, tuple[float, float]]:
    """Median relative L1 (%) of u(t_0) -> u(t_k) for stored indices ``k`` in ``targets``, leads in training units
    (``span``): {k: (lead, error)}."""
    view = AllPairsDataset(ds, [0, *targets], pairing="from_first", channels=channels, span=span)
    out = predict_pairs(model, view)
    res = {}
    for j, k in enumerate(targets, start=1):
        sel = out["output_index"] == k
        res[int(k)] = (view.lead_time(0, j), median_error(out["pred"][sel], out["target"][sel], ds.metadata.field_names))
    return res
