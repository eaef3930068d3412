"""All-pairs (lead-time) view of trajectories, with channel padding and masking for dataset mixtures.

Poseidon (Herde et al. 2024, "Poseidon: Efficient Foundation Models for PDEs", Sec. 2, "all2all training") trains
the operator ``(u(t_i), t_j - t_i) -> u(t_j)`` on every ordered pair ``t_i <= t_j`` of the selected snapshots of a
trajectory: ``n`` snapshots give ``n (n + 1) / 2`` pairs (the identity pairs ``i = j`` included), so a trajectory
yields quadratically many samples instead of the ``n - 1`` of next-step training. The lead time is normalised to
``[0, 1]`` by the time span of the selection::

    lead(i, j) = (t_j - t_i) / (t_last - t_first).

Mixtures of datasets with different fields share one channel layout (Poseidon pads every dataset to
``(rho, u, v, p)`` and masks the pressure of incompressible data): each view places its channels at their named
positions of ``channels``, fills the others with zeros and returns ``channel_mask`` (``True`` where the channel
exists), which the loss uses to ignore the padded channels.

Everything is read through `TrajectoryDataset.read`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ._dataset import TrajectoryDataset
from ._metadata import DatasetMetadata

__all__ = ["AllPairsDataset", "AllPairsMixture", "channel_union", "PAIRINGS"]

# How snapshot pairs are formed from the n selected snapshots of a trajectory, written out once:
#   "all":        every (i, j) with i <= j             -> n (n + 1) / 2 pairs (Poseidon's all2all)
#   "next":       (i, i + 1)                           -> n - 1 pairs (next-step training, rolled out at test)
#   "from_first": (0, j) for j >= 1                    -> n - 1 pairs (initial condition to every later time)
PAIRINGS = ("all", "next", "from_first")


def _pairs(n: int, pairing: str) -> list[tuple[int, int]]:
    if pairing == "all":
        return [(i, j) for i in range(n) for j in range(i, n)]
    if pairing == "next":
        return [(i, i + 1) for i in range(n - 1)]
    if pairing == "from_first":
        return [(0, j) for j in range(1, n)]
    raise ValueError(f"pairing should be one of {PAIRINGS}, got {pairing!r}")


def channel_union(metadatas: Sequence[DatasetMetadata]) -> tuple[str, ...]:
    """The channel names of several datasets in order of first appearance: the shared layout of a mixture."""
    out: list[str] = []
    for m in metadatas:
        out += [c for c in m.field_names if c not in out]
    return tuple(out)


class AllPairsDataset(Dataset):
    """Pairs ``(u(t_i), u(t_j))``, ``t_i <= t_j``, of the selected snapshots of every trajectory of ``dataset``.

    Arguments:
        dataset: the trajectories (its normalisation, split and ``max_trajectories`` apply; its window shape
            does not matter).
        snapshots: stored time indices to select, increasing (default: all ``dataset.n_steps``). ``stride`` is
            the shorthand ``range(0, n_steps, stride)``.
        pairing: ``"all"`` (default), ``"next"`` or ``"from_first"`` (see `PAIRINGS`).
        channels: the channel layout of a mixture (see `channel_union`); default the dataset's own channels.
        span: time the lead is normalised by (default the selection's ``t_last - t_first``); give it to query
            lead times on another selection in the units of training.

    A sample is a dict, channels first: ``input_fields (C, *space)`` = u(t_i), ``output_fields (C, *space)`` =
    u(t_j), ``lead_time ()`` = (t_j - t_i) / span, ``channel_mask (C,)`` bool, ``trajectory``, ``input_index``,
    ``output_index`` (stored time indices, int64), ``constant_fields`` / ``scalars`` when the dataset has them.
    ``len = n_trajectories * n_pairs`` with ``n_pairs = n (n + 1) / 2`` for ``"all"``.
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        snapshots: Sequence[int] | None = None,
        *,
        stride: int | None = None,
        pairing: str = "all",
        channels: Sequence[str] | None = None,
        span: float | None = None,
    ) -> None:
        super().__init__()
        if snapshots is not None and stride is not None:
            raise ValueError("give snapshots or stride, not both")
        if stride is not None:
            if not isinstance(stride, int) or stride < 1:
                raise ValueError(f"stride should be an int >= 1, got {stride!r}")
            snapshots = range(0, dataset.n_steps, stride)
        sel = np.arange(dataset.n_steps) if snapshots is None else np.asarray(list(snapshots), dtype=np.int64)
        if sel.ndim != 1 or sel.size < 2:
            raise ValueError(f"select at least 2 snapshots, got {sel.tolist()}")
        if sel.min() < 0 or sel.max() >= dataset.n_steps or np.any(np.diff(sel) <= 0):
            raise ValueError(f"snapshots should increase within 0..{dataset.n_steps - 1}, got {sel.tolist()}")
        self.dataset = dataset
        self.snapshots = sel
        self.pairing = pairing
        self.pairs = _pairs(len(sel), pairing)
        t = np.asarray(dataset.files[0].time, dtype=np.float64)[sel]
        self.times = t
        self.span = float(t[-1] - t[0]) if span is None else float(span)
        if not self.span > 0:
            raise ValueError(f"span should be > 0, got {self.span}")
        own = dataset.metadata.field_names
        self.channels = tuple(own if channels is None else channels)
        missing = [c for c in own if c not in self.channels]
        if missing:
            raise ValueError(
                f"channel layout {list(self.channels)} lacks the dataset's channel(s) {missing}: "
                "build it with channel_union over every dataset of the mixture"
            )
        self.channel_index = torch.tensor([self.channels.index(c) for c in own])
        self.channel_mask = torch.zeros(len(self.channels), dtype=torch.bool)
        self.channel_mask[self.channel_index] = True

    @property
    def metadata(self) -> DatasetMetadata:
        return self.dataset.metadata

    @property
    def n_trajectories(self) -> int:
        return len(self.dataset.trajectories)

    def lead_time(self, i: int, j: int) -> float:
        """Normalised lead of the pair of selected snapshots ``(i, j)``."""
        return float(self.times[j] - self.times[i]) / self.span

    def __len__(self) -> int:
        return self.n_trajectories * len(self.pairs)

    def pad(self, fields: torch.Tensor) -> torch.Tensor:
        """Place the dataset's channels in the layout: ``(..., C_own, *space) -> (..., C, *space)`` (zeros elsewhere);
        ``fields`` has its channel axis at ``-1 - n_spatial_dims``."""
        axis = fields.dim() - 1 - self.dataset.n_spatial_dims
        shape = list(fields.shape)
        shape[axis] = len(self.channels)
        out = fields.new_zeros(shape)
        out.index_copy_(axis, self.channel_index, fields)
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} out of range for {len(self)} pairs")
        traj, k = divmod(index, len(self.pairs))
        i, j = self.pairs[k]
        data = self.dataset.read(traj, [int(self.snapshots[i]), int(self.snapshots[j])])
        fields = self.pad(data["fields"])  # (2, C, *space); i == j reads one snapshot twice
        sample = {
            "input_fields": fields[0],
            "output_fields": fields[-1],
            "lead_time": torch.tensor(self.lead_time(i, j), dtype=torch.float32),
            "channel_mask": self.channel_mask.clone(),
            "trajectory": torch.tensor(traj),
            "input_index": torch.tensor(int(self.snapshots[i])),
            "output_index": torch.tensor(int(self.snapshots[j])),
        }
        for key in ("constant_fields", "scalars"):
            if key in data:
                sample[key] = data[key]
        return sample

    def __repr__(self) -> str:
        return (
            f"AllPairsDataset({self.metadata.dataset_name!r}, {self.n_trajectories} trajectories x {len(self.pairs)} "
            f"{self.pairing} pairs of snapshots {self.snapshots.tolist()}, channels {list(self.channels)})"
        )


class AllPairsMixture(Dataset):
    """Several `AllPairsDataset` views with one channel layout and resolution, concatenated; samples also carry
    ``dataset (int64)``, the index of the view they come from."""

    def __init__(self, views: Sequence[AllPairsDataset]) -> None:
        super().__init__()
        views = list(views)
        if not views:
            raise ValueError("a mixture needs at least one AllPairsDataset")
        for v in views[1:]:
            if v.channels != views[0].channels:
                raise ValueError(
                    f"channel layouts differ: {list(views[0].channels)} vs {list(v.channels)}; "
                    "build every view with channels=channel_union([...metadata])"
                )
            if v.metadata.resolution != views[0].metadata.resolution:
                raise ValueError(f"resolutions differ: {views[0].metadata.resolution} vs {v.metadata.resolution}")
        self.views = views
        self.channels = views[0].channels
        self.offsets = np.cumsum([0] + [len(v) for v in views]).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} out of range for {len(self)} pairs")
        d = bisect.bisect_right(self.offsets, index) - 1
        sample = self.views[d][index - self.offsets[d]]
        sample["dataset"] = torch.tensor(d)
        return sample
