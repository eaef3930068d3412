"""NODA's training samples: windows read lazily through :class:`TrajectoryDataset`, each with its own measurements.

A window is ``L = spinup + unroll + 1`` frames ``dt_stride`` snapshots apart (the dataset's windows of 1 input and
``L - 1`` output frames). An epoch visits every window once, in an order fixed by ``(seed, epoch)``; the window at
position ``p`` of the epoch draws everything random about it (its arrival rate, arrivals, sensors, noise, perturbed
start) from ``numpy.random.default_rng([seed, epoch, p])``. So a sample depends on nothing but its position: a
resumed run, and every process of a DDP run (each takes its slice of each global batch), draw the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...datasets import ObservationConfig, TrajectoryDataset, draw_observations
from ._config import NODAData, ObservationSection, WindowSection

__all__ = ["open_windows", "WindowSampler"]


def open_windows(root: Path, data: NODAData, split: str, length: int, where: str = "noda") -> TrajectoryDataset:
    """The ``split``'s windows of ``length`` frames (``max_trajectories`` applies to the train split only); trajectories
    too short for them are a ValueError naming the options to change."""
    try:
        return TrajectoryDataset(
            root,
            1,
            length - 1,
            data.dt_stride,
            split=split,
            max_trajectories=(data.max_trajectories or None) if split == "train" else None,
        )
    except ValueError as e:
        if "too few" not in str(e):
            raise
        raise ValueError(
            f"{where}: window.spinup + window.unroll + 1 = {length} frames {data.dt_stride} snapshot(s) "
            f"apart do not fit the {split} trajectories ({e}); use a shorter window or a smaller "
            "data.dt_stride"
        ) from None


class WindowSampler:
    """The training batches of one dataset: windows with their measurements (module docstring)."""

    def __init__(
        self, dataset: TrajectoryDataset, observations: ObservationSection, window: WindowSection, seed: int
    ) -> None:
        self.dataset = dataset
        self.observations = observations
        self.window = window
        self.seed = seed
        self.n_frames = len(range(0, dataset.n_steps, dataset.dt_stride))  # frames a perturbed start may come from

    def __len__(self) -> int:
        return len(self.dataset)

    def order(self, epoch: int) -> np.ndarray:
        """The windows of ``epoch`` in the order they are visited."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def sample(self, epoch: int, position: int, index: int) -> dict[str, Tensor]:
        """Window ``index`` as the ``position``-th sample of ``epoch``: ``start (C, *S)`` (the state the recursion
        starts from), ``truth (L-1, C, *S)`` (frames 1..L-1), ``observations (L-1, C, *S)``, ``mask (1, *S)``,
        ``arrived (L-1,)`` bool."""
        w, obs = self.window, self.observations
        item = self.dataset[index]
        frames = torch.cat([item["input_fields"], item["output_fields"]])  # (L, C, *S)
        rng = np.random.default_rng([self.seed, epoch, position])
        alpha = float(rng.uniform(0, w.alpha_max))
        alpha *= float(rng.random() >= 0.25)  # a quarter of the windows learn pure prediction
        drawn = draw_observations(
            frames, ObservationConfig(alpha=alpha, mask=obs.mask, fraction=obs.fraction, noise=obs.noise), rng
        )
        start = frames[0]
        if w.perturb and alpha > 0:
            other = self.dataset.read(
                int(rng.integers(len(self.dataset.trajectories))),
                [int(rng.integers(self.n_frames)) * self.dataset.dt_stride],
            )["fields"][0]
            start = start + float(rng.uniform(0, w.perturb)) * (other - start)
        return {
            "start": start,
            "truth": frames[1:],
            "observations": drawn["observations"][1:],
            "mask": drawn["mask"],
            "arrived": drawn["arrived"][1:],
        }

    def batch(self, epoch: int, positions: range, order: np.ndarray) -> dict[str, Tensor]:
        """The samples at ``positions`` of ``epoch``, stacked along a batch axis."""
        samples = [self.sample(epoch, p, int(order[p])) for p in positions]
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
