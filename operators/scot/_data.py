"""Data for scOT training: the datasets of a mixture (dataset roots, or presets made once into the cache), the
all-pairs views, channel groups, the masked loss (also across DDP processes) and the evaluation (median relative L1,
Poseidon's metric)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from ...datasets import AllPairsDataset, TrajectoryDataset, load_stats, stats_path
from ...training.data import dataset_root
from ._loss import LOSS_EPS, median_relative_l1
from ._model import ScOT
from ._run_config import SOURCE_KEYS


def source_entries(data: Any) -> list[dict[str, Any]]:
    """The datasets of a ``data`` section as mappings ``{root, preset, preset_options, storage_options}``:
    ``data.sources``, or the section's own root / preset (and storage_options) when it lists none. A root may be a URL
    (`pdeforge.datasets._remote`), read with its entry's ``storage_options``. An entry that is not such a mapping is
    a ValueError naming it."""
    own_options = dict(getattr(data, "storage_options", None) or {})
    if not data.sources:
        return [
            {
                "root": data.root,
                "preset": data.preset,
                "preset_options": dict(data.preset_options),
                "storage_options": own_options,
            }
        ]
    if data.root or data.preset or own_options:
        raise ValueError(
            "data: expected data.sources or data.root / data.preset, not both (a source's storage_options go in "
            "its entry: {root: URL, storage_options: {...}})"
        )
    entries = []
    for i, entry in enumerate(data.sources):
        where = f"data.sources[{i}]"
        if not isinstance(entry, dict) or not entry or set(entry) - set(SOURCE_KEYS):
            raise ValueError(
                f"{where} {entry!r}: expected a mapping {{root: PATH}} or {{preset: NAME, preset_options: {{...}}}}}}"
            )
        if not isinstance(entry.get("preset_options", {}), dict):
            raise ValueError(
                f"{where}.preset_options {entry['preset_options']!r}: expected a mapping of the preset's options"
            )
        if not isinstance(entry.get("storage_options") or {}, dict):
            raise ValueError(
                f"{where}.storage_options {entry['storage_options']!r}: expected a mapping of fsspec options for "
                "its URL root (e.g. {anon: true})"
            )
        entries.append(
            {
                "root": str(entry.get("root", "")),
                "preset": str(entry.get("preset", "")),
                "preset_options": dict(entry.get("preset_options", {})),
                "storage_options": dict(entry.get("storage_options") or {}),
            }
        )
    return entries


def resolve_sources(data: Any, *, progress: bool = True, env: Any = None) -> list[Path | str]:
    """The dataset root of every entry of :func:`source_entries`, through `pdeforge.training.data.dataset_root` (a
    preset is generated once into the cache; under DDP by the main process while the others wait): a local root as
    an absolute path, a URL as it is, its entry's ``storage_options`` set for it in this process (the datasets
    :func:`open_split` makes hold them from then on, DataLoader workers included)."""
    roots = []
    for i, entry in enumerate(source_entries(data)):
        where = f"scot: data.sources[{i}]" if data.sources else "scot"
        roots.append(dataset_root(SimpleNamespace(**entry), where=where, progress=progress, env=env))
    return roots


def source_labels(datasets: Sequence[TrajectoryDataset]) -> list[str]:
    """One name per dataset of a mixture: its dataset name, with ``[i]`` added where two share it."""
    names = [d.metadata.dataset_name for d in datasets]
    return [n if names.count(n) == 1 else f"{n}[{i}]" for i, n in enumerate(names)]


def open_split(
    root: Path | str,
    split: str,
    normalization: str,
    max_trajectories: int = 0,
    storage_options: dict | None = None,
) -> TrajectoryDataset:
    """The trajectories of one split of a dataset root (a path or a URL), normalised with the root's train
    statistics. A URL root is read with ``storage_options`` (default: those set for it, as :func:`resolve_sources`
    does for each source), which the dataset holds."""
    norm = normalization or None
    stats = load_stats(stats_path(root), storage_options) if norm else None
    return TrajectoryDataset(
        root,
        1,
        1,
        1,
        split=split,
        normalization=norm,
        stats=stats,
        max_trajectories=max_trajectories or None,
        storage_options=storage_options,
    )


def selection(n_steps: int, stride: int, n_snapshots: int = 0) -> list[int]:
    """Stored indices 0, stride, 2 stride, ... <= n_steps - 1, the first ``n_snapshots`` of them (0: all)."""
    sel = list(range(0, n_steps, stride))
    if n_snapshots:
        if n_snapshots < 2 or n_snapshots > len(sel):
            raise ValueError(
                f"data.n_snapshots {n_snapshots}: expected 2..{len(sel)} for {n_steps} stored snapshots "
                f"at data.stride {stride}"
            )
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


def _group_sums(pred: Tensor, target: Tensor, mask: Tensor, groups: Sequence[int]) -> Tensor:
    """Per channel group g: (count of unmasked values, sum |pred - target| over them, sum |target| over them) as a
    (3, G) tensor; only the error sum carries a gradient."""
    m = mask.to(pred.dtype).reshape(mask.shape + (1,) * (pred.dim() - 2))
    n_space = pred[0, 0].numel()
    rows = []
    for a, b in zip(groups[:-1], groups[1:]):
        rows.append(
            torch.stack(
                [
                    m[:, a:b].sum() * n_space,
                    ((pred[:, a:b] - target[:, a:b]).abs() * m[:, a:b]).sum(),
                    (target[:, a:b].abs() * m[:, a:b]).sum(),
                ]
            )
        )
    return torch.stack(rows, dim=1)


def masked_scot_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    groups: Sequence[int],
    all_reduce: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Poseidon's relative L1 loss per channel group over the channels that exist (``mask``):

        loss = mean_g  mean_{m=1}|pred_g - target_g| / (mean_{m=1}|target_g| + 1e-10),

    the means running over the unmasked (sample, channel) pairs of group g and space; groups masked in the whole
    batch are skipped. Without masked channels this is `scot_loss(pred, target, groups)`.

    The loss is a ratio of sums over the batch, not a mean of per-sample terms, so under DDP the average of each
    process's own loss is not the loss of the combined batch. ``all_reduce`` (a sum over the processes of a tensor,
    e.g. ``torch.distributed.all_reduce``) makes it so: the counts and normalisers are summed over the processes, the
    value is the combined batch's loss on every process, and the gradient is ``world`` times this process's share, so
    that DDP's average of the gradients is the combined batch's gradient.

    Shapes: pred, target (B, C, *space); mask (B, C) bool.
    """
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask should be (B, C) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    if all_reduce is not None:
        return _combined_loss(pred, target, mask, groups, all_reduce)
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


def _combined_loss(
    pred: Tensor, target: Tensor, mask: Tensor, groups: Sequence[int], all_reduce: Callable[[Tensor], Tensor]
) -> Tensor:
    """`masked_scot_loss` of the batch combined over the processes (see there)."""
    own = _group_sums(pred, target, mask, groups)
    total = all_reduce(own.detach().clone())
    world = all_reduce(torch.ones((), dtype=pred.dtype, device=pred.device))
    kept = total[0] > 0
    if not bool(kept.any()):
        raise ValueError("every channel of the batch is masked: nothing to train on")
    count, norm = total[0][kept], total[2][kept] / total[0][kept]
    scale = 1.0 / (count * (norm + LOSS_EPS) * int(kept.sum()))  # d loss / d (error sum of group g)
    value = (total[1][kept] * scale).sum()
    share = world * (own[1][kept] * scale).sum()
    return value + (share - share.detach())


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


def final_time_error(
    model: ScOT, ds: TrajectoryDataset, snapshots: Sequence[int], channels: Sequence[str], pairing: str
) -> float:
    """Median relative L1 (%) of u(t_first) -> u(t_last) over the trajectories of ``ds``: directly at lead 1, or by
    rollout over the selection for a model trained on ``pairing="next"``."""
    if pairing == "next":
        out = rollout_final(model, AllPairsDataset(ds, snapshots, pairing="next", channels=channels))
    else:
        out = predict_pairs(
            model, AllPairsDataset(ds, [snapshots[0], snapshots[-1]], pairing="from_first", channels=channels)
        )
    return median_error(out["pred"], out["target"], ds.metadata.field_names)


def lead_time_errors(
    model: ScOT, ds: TrajectoryDataset, targets: Sequence[int], span: float, channels: Sequence[str]
) -> dict[int, tuple[float, float]]:
    """Median relative L1 (%) of u(t_0) -> u(t_k) for stored indices ``k`` in ``targets``, leads in training units
    (``span``): {k: (lead, error)}."""
    view = AllPairsDataset(ds, [0, *targets], pairing="from_first", channels=channels, span=span)
    out = predict_pairs(model, view)
    res = {}
    for j, k in enumerate(targets, start=1):
        sel = out["output_index"] == k
        res[int(k)] = (
            view.lead_time(0, j),
            median_error(out["pred"][sel], out["target"][sel], ds.metadata.field_names),
        )
    return res
