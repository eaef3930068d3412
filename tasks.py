"""Tasks: what a field-to-field model is asked to do with a dataset, as objects.

A task builds the dataset views of a split, says how many frames the model takes and gives, turns a batch into
the model's prediction and its target (for training), and evaluates a model on a split:

- :class:`OperatorTask`: a one-shot map. On steady data (one snapshot, e.g. Darcy) constant fields -> solution; on
  time-dependent data u(t) -> u(t + dt_stride dt) from every start (``windows="all"``) or only from t = 0
  (``windows="first"``: u0 -> u(T), the FNO paper's Burgers task; ``dt_stride=0`` means the last snapshot).
- :class:`NextStepTask`: ``n_steps_input`` frames -> the next ``n_steps_output`` frames (``dt_stride`` apart),
  trained with ``pushforward`` unrolled calls (gradient through the last; Brandstetter et al. 2022), evaluated one
  step ahead and by autoregressive rollout over whole trajectories (per-step error curves).

Metrics are computed in physical units (predictions and targets denormalised); input frames are never counted.
A task knows no model class: it calls ``model.forward_batch(batch)`` (``(B, T_out, C, *space)``) and
``net(input_fields, constant_fields, scalars)``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from . import metrics as M
from .datasets import TrajectoryDataset

__all__ = [
    "AbstractTask",
    "OperatorTask",
    "NextStepTask",
    "FirstWindows",
    "split_metrics",
    "rollout",
    "rollout_metrics",
    "to_device",
    "train_batches",
    "METRIC_NAMES",
]

METRIC_NAMES = ("rel_l2", "rel_l1", "rmse", "nrmse", "max_error", "crmse", "vrmse")


def to_device(batch: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_batches(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    epoch: int,
    start: int,
    seed: int,
    device: torch.device,
    world: int = 1,
    rank: int = 0,
    num_workers: int = 0,
) -> Iterator[dict[str, Tensor]]:
    """The training batches of ``epoch`` on process ``rank`` of ``world``, from batch ``start`` on (an exact resume
    within an epoch), on ``device``: a ``DistributedSampler``'s shuffle of ``dataset`` (seeded by ``seed`` and the
    epoch, the last incomplete batch dropped), the same order for a given seed whatever the family.

    The loader's own seed (of its workers) comes from a generator seeded by ``seed`` and the epoch, not from torch's
    global one: a resume, which makes a new loader mid-epoch, then leaves the global random stream (a diffusion
    loss's noise and times) exactly where the uninterrupted run has it."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(sampler)[start * batch_size :],
        drop_last=True,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch),
    )
    for batch in loader:
        yield to_device(batch, device)


@dataclass(frozen=True)
class Views:
    """Where a task's datasets come from: the root, its normalisation and the train statistics."""

    root: str | Path
    normalization: str | None = None
    stats: dict | None = None

    def open(self, split: str, **kw: Any) -> TrajectoryDataset:
        return TrajectoryDataset(
            self.root, split=split, normalization=self.normalization or None, stats=self.stats, **kw
        )


class AbstractTask(abc.ABC):
    """A task: dataset views, the model's frame counts, prediction vs target, evaluation."""

    @abc.abstractmethod
    def dataset(
        self, views: Views, split: str, *, training: bool = False, max_trajectories: int | None = None
    ) -> TrajectoryDataset:
        """The windows of ``split`` (``training``: the training windows, e.g. longer for a pushforward)."""

    @abc.abstractmethod
    def frames(self, dataset: TrajectoryDataset) -> tuple[int, int]:
        """(frames in, frames out) of the model for ``dataset``."""

    @abc.abstractmethod
    def prediction_and_target(
        self, net: torch.nn.Module, model: torch.nn.Module, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The training prediction through ``net`` (the wrapped model) and its target, both normalised."""

    def evaluate(
        self, model: torch.nn.Module, views: Views, split: str, device: torch.device, batch_size: int = 32
    ) -> dict[str, Any]:
        """One-step metrics of ``split`` in physical units (:func:`split_metrics`)."""
        return split_metrics(model, self.dataset(views, split), device, batch_size=batch_size)


def _net_call(net: torch.nn.Module, model: torch.nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    lay = model.layout
    return net(
        batch.get("input_fields") if lay.n_steps_input else None,
        batch.get("constant_fields") if lay.n_constant_fields else None,
        batch.get("scalars") if lay.n_scalars else None,
    )


class FirstWindows(torch.utils.data.Dataset):
    """The first window (from t = 0) of each trajectory of a window dataset: ``u0 -> u(dt_stride dt)``, one sample
    per trajectory, with the dataset's metadata and normalisation."""

    def __init__(self, windows: TrajectoryDataset) -> None:
        self.windows = windows
        self.metadata, self.denormalize = windows.metadata, windows.denormalize
        self.n_steps_input, self.dt_stride = windows.n_steps_input, windows.dt_stride

    def __len__(self) -> int:
        return len(self.windows.trajectories)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"trajectory {index} of {len(self)}")
        return self.windows[index * self.windows.windows_per_trajectory]


@dataclass(frozen=True)
class OperatorTask(AbstractTask):
    """u(t) -> u(t + dt_stride dt) (``windows="all"``) or u0 -> u(dt_stride dt) (``"first"``; 0: the last snapshot);
    constant fields -> solution on steady data."""

    windows: str = "all"
    dt_stride: int = 10

    def __post_init__(self) -> None:
        if self.windows not in ("all", "first"):
            raise ValueError(f"task.windows {self.windows!r}: expected 'all' or 'first'")
        if self.dt_stride == 0 and self.windows != "first":
            raise ValueError("task.dt_stride 0: expected >= 1 (0, the last snapshot, is for windows first)")

    def dataset(
        self, views: Views, split: str, *, training: bool = False, max_trajectories: int | None = None
    ) -> TrajectoryDataset:
        probe = views.open(split, n_steps_input=0, n_steps_output=1)
        common = {"max_trajectories": max_trajectories or None}
        if probe.n_steps == 1:  # steady data: constant fields -> the solution
            return views.open(split, n_steps_input=0, n_steps_output=1, **common)
        stride = self.dt_stride or (probe.n_steps - 1)
        windows = views.open(split, n_steps_input=1, n_steps_output=1, dt_stride=stride, **common)
        return FirstWindows(windows) if self.windows == "first" else windows

    def frames(self, dataset: TrajectoryDataset) -> tuple[int, int]:
        return (0 if dataset.n_steps_input == 0 else 1), 1

    def prediction_and_target(self, net, model, batch):
        return _net_call(net, model, batch), batch["output_fields"]


@dataclass(frozen=True)
class NextStepTask(AbstractTask):
    """``n_steps_input`` frames -> the next ``n_steps_output``; trained with ``pushforward`` calls, evaluated one step
    ahead and by rollout over whole trajectories (``rollout_steps``: at most this many frames; 0: all)."""

    n_steps_input: int = 1
    n_steps_output: int = 1
    dt_stride: int = 1
    pushforward: int = 1
    rollout_steps: int = 0

    def dataset(
        self, views: Views, split: str, *, training: bool = False, max_trajectories: int | None = None
    ) -> TrajectoryDataset:
        probe = views.open(split, n_steps_input=0, n_steps_output=1)
        if probe.n_steps == 1:
            raise ValueError(f"{views.root}: one snapshot per trajectory (steady data): use task.kind operator")
        n_out = self.n_steps_output * (self.pushforward if training else 1)
        return views.open(
            split,
            n_steps_input=self.n_steps_input,
            n_steps_output=n_out,
            dt_stride=self.dt_stride,
            max_trajectories=max_trajectories or None,
        )

    def rollout_dataset(self, views: Views, split: str) -> TrajectoryDataset:
        return views.open(split, n_steps_input=self.n_steps_input, dt_stride=self.dt_stride, full_trajectory=True)

    def frames(self, dataset: TrajectoryDataset) -> tuple[int, int]:
        return self.n_steps_input, self.n_steps_output

    def prediction_and_target(self, net, model, batch):
        target = batch["output_fields"]
        if self.pushforward > 1:  # unroll without gradient, then one differentiated call on the model's own frames
            n_in = self.n_steps_input
            with torch.no_grad():
                frames = batch["input_fields"]
                for _ in range(self.pushforward - 1):
                    frames = torch.cat([frames, model.forward_batch(dict(batch, input_fields=frames[:, -n_in:]))], 1)
            batch = dict(batch, input_fields=frames[:, -n_in:].detach())
            target = target[:, -self.n_steps_output :]
        return _net_call(net, model, batch), target

    def evaluate(self, model, views, split, device, batch_size=32):
        out = super().evaluate(model, views, split, device, batch_size)
        out["rollout"] = rollout_metrics(
            model, self.rollout_dataset(views, split), device, max_steps=self.rollout_steps or None
        )
        return out


@torch.no_grad()
def split_metrics(
    model: torch.nn.Module,
    dataset: TrajectoryDataset,
    device: torch.device,
    batch_size: int = 32,
    max_batches: int | None = None,
) -> dict[str, float]:
    """One-shot metrics (mean over windows) in physical units: rel L2/L1, RMSE, nRMSE, max, cRMSE, VRMSE, fRMSE
    bands."""
    model.eval()
    n_dims = dataset.metadata.n_spatial_dims
    sums: dict[str, float] = {}
    count = 0
    for i, batch in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
        if max_batches is not None and i >= max_batches:
            break
        batch = to_device(batch, device)
        pred = dataset.denormalize(model.forward_batch(batch).float())
        target = dataset.denormalize(batch["output_fields"])
        values = {name: getattr(M, name)(pred, target, n_dims, reduction="sample") for name in METRIC_NAMES}
        shells = min(dataset.metadata.resolution) // 2
        for band, (lo, _) in M.FOURIER_BANDS.items():
            if lo < shells:  # a band needs wavenumbers the grid resolves
                values[f"frmse_{band}"] = M.frmse(
                    pred, target, n_dims, band=band, domain_lengths=dataset.metadata.domain_lengths, reduction="sample"
                )
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        count += pred.shape[0]
    return {k: v / max(count, 1) for k, v in sums.items()} | {"n_samples": count}


@torch.no_grad()
def rollout(model: torch.nn.Module, sample: Mapping[str, Tensor], n_out_total: int) -> Tensor:
    """Autoregressive prediction (normalised space): ``(B, n_out_total, C, *space)`` from the input frames."""
    frames = sample["input_fields"]
    n_in = frames.shape[1]
    preds, produced = [], 0
    while produced < n_out_total:
        out = model.forward_batch(dict(sample, input_fields=frames[:, -n_in:])).float()
        preds.append(out)
        produced += out.shape[1]
        frames = torch.cat([frames, out], dim=1)
    return torch.cat(preds, dim=1)[:, :n_out_total]


@torch.no_grad()
def rollout_metrics(
    model: torch.nn.Module,
    dataset: TrajectoryDataset,
    device: torch.device,
    max_steps: int | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Rollout over whole trajectories (a full-trajectory dataset): per-step rel L2 / nRMSE / correlation curves
    (mean over trajectories), their means, and the high-correlation duration (time until correlation < 0.8)."""
    model.eval()
    n_dims = dataset.metadata.n_spatial_dims
    step_dt = dataset.metadata.dt * dataset.dt_stride  # the time between two predicted frames
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
        durations.append(M.high_correlation_duration(pred, target, n_dims, dt=step_dt, reduction="sample"))
        count += pred.shape[0]
    out: dict[str, Any] = {"steps": int(next(iter(curves.values())).shape[0]) if curves else 0, "dt": step_dt}
    for k, v in curves.items():
        c = (v / count).cpu()
        out[f"{k}_per_step"] = [float(x) for x in c]
        out[f"{k}_mean"] = float(c.mean())
    if durations:
        out["high_correlation_duration"] = float(torch.cat(durations).mean())
    return out
