"""TSM's views of a dataset root of staggered velocities (the ``kolmogorov_fv_2d`` preset's layout: the order-1
field ``velocity``, ``velocity_x`` on the x-faces and ``velocity_y`` on the y-faces of the MAC grid, read back
channels first as the solver's ``(2, N, N)``).

- training windows: ``history + unroll`` solver steps, each ``stride`` frames, from any start frame
  (:class:`pdeforge.datasets.TrajectoryDataset` windows), drawn in an order fixed by (seed, epoch) and dealt to the
  DDP processes;
- evaluation: every trajectory of a split whole, every ``stride``-th frame (the dataset's full-trajectory view).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...datasets import TrajectoryDataset
from ...solvers import fv

__all__ = ["WindowSampler", "data_fingerprint", "training_windows", "split_trajectories", "flow_of", "train_moments"]


def training_windows(
    root: Path, history: int, unroll: int, stride: int, max_trajectories: int = 0
) -> TrajectoryDataset:
    """Windows of ``history`` input and ``unroll`` target solver steps of the train split."""
    return TrajectoryDataset(
        root, history, unroll, stride, split="train", fields=("velocity",), max_trajectories=max_trajectories or None
    )


def split_trajectories(
    root: Path, split: str, history: int, stride: int, max_trajectories: int = 0
) -> tuple[Tensor, Tensor]:
    """``(inputs (B, history, 2, N, N), targets (B, T, 2, N, N))``: each trajectory of ``split`` at every
    ``stride``-th frame, its first ``history`` solver steps and all after them."""
    ds = TrajectoryDataset(
        root,
        history,
        1,
        stride,
        split=split,
        fields=("velocity",),
        full_trajectory=True,
        max_trajectories=max_trajectories or None,
    )
    samples = [ds[i] for i in range(len(ds))]
    return (torch.stack([s["input_fields"] for s in samples]), torch.stack([s["output_fields"] for s in samples]))


def train_moments(root: Path, stride: int, max_trajectories: int = 0) -> tuple[float, float]:
    """``(std, variance)`` of every velocity value of the train split at every ``stride``-th frame: the network's
    input scale and the loss's normaliser."""
    ds = TrajectoryDataset(
        root, 1, 1, stride, split="train", fields=("velocity",), max_trajectories=max_trajectories or None
    )
    times = np.arange(0, ds.n_steps, stride)
    every = torch.stack([ds.read(t, times)["fields"] for t in range(len(ds.trajectories))])
    return float(every.std()), float(every.var())


def data_fingerprint(root: Path) -> str:
    """A short SHA-256 of every split's velocities (shapes and float32 bytes): which data a run was trained and
    scored on, whatever the folder is called."""
    h = hashlib.sha256()
    for split in ("train", "valid", "test"):
        ds = TrajectoryDataset(root, 1, 1, split=split, fields=("velocity",))
        for t in range(len(ds.trajectories)):
            frames = ds.read(t, np.arange(ds.n_steps))["fields"]
            h.update(repr((split, tuple(frames.shape))).encode())
            h.update(frames.numpy().tobytes())
    return h.hexdigest()[:16]


def flow_of(parameters: dict) -> fv.FlowParameters:
    """The solver's physics from the dataset's parameters (``reynolds``, ``drag``; the preset's ``sin(4 y)``
    forcing)."""
    return fv.FlowParameters(
        viscosity=1.0 / parameters["reynolds"], drag=parameters["drag"], forcing=fv.KolmogorovFVPreset().forcing
    )


class WindowSampler:
    """The windows of each epoch in an order fixed by ``(seed, epoch)``; process ``rank`` of ``world`` takes the
    ``rank``-th ``batch_size`` of every ``world * batch_size`` (the same windows, in the same batches, as one process
    with the combined batch)."""

    def __init__(self, n_windows: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n_windows, batch_size, seed, rank, world

    def __len__(self) -> int:
        """Batches per epoch and process (a last incomplete combined batch is left out)."""
        return self.n // (self.batch_size * self.world)

    def order(self, epoch: int) -> Tensor:
        seeds = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
        g = torch.Generator().manual_seed(int(seeds[0]) << 32 | int(seeds[1]))
        return torch.randperm(self.n, generator=g)

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[int]]:
        """This process's window indices of batches ``start ..`` of ``epoch``."""
        order, b, w = self.order(epoch), self.batch_size, self.world
        for k in range(start, len(self)):
            yield order[k * b * w + self.rank * b : k * b * w + (self.rank + 1) * b].tolist()
