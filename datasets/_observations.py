"""`ObservationView`: sparse, noisy, intermittent measurements of whole trajectories, for data assimilation.

The measurement model is the one of NODA (Singh et al., "Semilinear neural operators: a unified recursive
framework for prediction and data assimilation", ICLR 2024)::

    y_k = C z_k + eta_k,   observed only when a_k = 1,   a_k ~ Bernoulli(alpha)

with ``C`` a spatial selection (a mask ``m``: a random subset of the grid points or regularly spaced sensors) and
``eta_k ~ N(0, (noise * rms_c)^2)`` Gaussian noise of relative level ``noise`` (``rms_c``: the root mean square of
channel ``c`` over the whole trajectory). Everything random is drawn from a generator seeded by
``(seed, trajectory)``, so a view is reproducible and does not depend on the order samples are asked for.
Built on :meth:`TrajectoryDataset.read`; fields come back exactly as the dataset reads them (normalised or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ._dataset import TrajectoryDataset

__all__ = ["ObservationConfig", "ObservationView", "MASKS"]

MASKS = ("random", "regular")


@dataclass(frozen=True)
class ObservationConfig:
    """How measurements are taken.

    Attributes:
        alpha: probability that a measurement arrives at a step (Bernoulli per step); step 0 (the initial state)
            never carries one. 0: no measurement ever; 1: one at every step.
        mask: ``"random"`` (a random subset of grid points, fixed along the trajectory) or ``"regular"`` (sensors
            every ``round(1 / fraction)`` points along each axis, with a random offset per trajectory).
        fraction: share of grid points observed, in (0, 1]. ``"regular"`` rounds the stride per axis, so in 2D it
            observes about ``fraction`` of the points (stride ``round(fraction ** -1/d)`` per axis).
        noise: relative noise level (standard deviation as a fraction of each channel's trajectory rms).
        seed: base seed; trajectory ``j`` uses ``numpy.random.default_rng([seed, j])``.
    """

    alpha: float = 0.25
    mask: str = "random"
    fraction: float = 1.0
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha should be a probability in [0, 1], got {self.alpha!r}")
        if self.mask not in MASKS:
            raise ValueError(f"mask should be one of {MASKS}, got {self.mask!r}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction should be in (0, 1] (share of grid points observed), got {self.fraction!r}")
        if self.noise < 0:
            raise ValueError(f"noise should be a relative level >= 0, got {self.noise!r}")


def draw_observations(
    fields: torch.Tensor, config: ObservationConfig, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """Measurements of one trajectory ``fields (T, C, *space)`` under ``config``, drawn from ``rng``.

    Returns ``observations (T, C, *space)`` (``mask * (fields + eta)``, zero where nothing is observed or nothing
    arrived), ``mask (1, *space)`` (1.0 at observed points, the same for every step and channel), ``arrived (T,)``
    (bool, ``arrived[0]`` is False) and ``noise_std (C,)``.
    """
    if fields.ndim < 3:
        raise ValueError(f"fields: expected (T, C, *space), got {tuple(fields.shape)}")
    T, C, space = fields.shape[0], fields.shape[1], tuple(fields.shape[2:])
    # draw in a fixed order (arrivals, mask, noise) so every quantity is reproducible on its own terms
    arrived = rng.random(T) < config.alpha
    arrived[0] = False
    mask = _mask(space, config, rng)
    axes = tuple(i for i in range(fields.ndim) if i != 1)
    rms = fields.double().pow(2).mean(dim=axes).sqrt()  # (C,)
    std = config.noise * rms
    eta = torch.from_numpy(rng.standard_normal((T, C, *space))) * std.reshape(1, C, *(1,) * len(space))
    m = torch.from_numpy(mask).to(fields.dtype)[None]  # (1, *space)
    a = torch.from_numpy(arrived).to(fields.dtype).reshape(T, 1, *(1,) * len(space))
    obs = (fields + eta.to(fields.dtype)) * m * a
    return {"observations": obs, "mask": m, "arrived": torch.from_numpy(arrived), "noise_std": std.to(fields.dtype)}


def _mask(space: tuple[int, ...], config: ObservationConfig, rng: np.random.Generator) -> np.ndarray:
    n = int(np.prod(space))
    if config.mask == "random":
        k = max(1, int(round(config.fraction * n)))
        flat = np.zeros(n, dtype=bool)
        flat[rng.choice(n, size=k, replace=False)] = True
        return flat.reshape(space)
    stride = max(1, int(round(config.fraction ** (-1.0 / len(space)))))
    mask = np.ones(space, dtype=bool)
    for axis, size in enumerate(space):
        offset = int(rng.integers(stride))
        keep = np.zeros(size, dtype=bool)
        keep[offset::stride] = True
        mask &= keep.reshape([-1 if i == axis else 1 for i in range(len(space))])
    return mask


class ObservationView(Dataset):
    """Whole trajectories with their measurements, one sample per trajectory of ``dataset``.

    Arguments:
        dataset: the underlying :class:`TrajectoryDataset`; its ``dt_stride`` sets the step between frames
            (frames ``0, s, 2s, ...`` of the stored time axis).
        alpha, mask, fraction, noise, seed: see :class:`ObservationConfig` (or pass ``config=``).
        n_frames: use only the first ``n_frames`` frames (default all).

    A sample: ``fields (T, C, *space)`` (truth), ``observations (T, C, *space)``, ``mask (1, *space)``,
    ``arrived (T,)`` bool, ``noise_std (C,)``, ``time (T,)``, ``grid``, ``trajectory`` (int64).
    """

    def __init__(
        self,
        dataset: TrajectoryDataset,
        alpha: float = 0.25,
        mask: str = "random",
        fraction: float = 1.0,
        noise: float = 0.0,
        seed: int = 0,
        *,
        config: ObservationConfig | None = None,
        n_frames: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(dataset, TrajectoryDataset):
            raise TypeError(f"dataset: expected a TrajectoryDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.config = config or ObservationConfig(alpha=alpha, mask=mask, fraction=fraction, noise=noise, seed=seed)
        frames = np.arange(0, dataset.n_steps, dataset.dt_stride)
        if n_frames is not None:
            if not 2 <= n_frames <= len(frames):
                raise ValueError(
                    f"n_frames should be in [2, {len(frames)}] (frames available with dt_stride={dataset.dt_stride}), "
                    f"got {n_frames}"
                )
            frames = frames[:n_frames]
        self.frames = frames
        self.metadata = dataset.metadata

    def __len__(self) -> int:
        return len(self.dataset.trajectories)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"trajectory {index} outside 0..{len(self) - 1}")
        index %= len(self)
        sample = self.dataset.read(index, self.frames)
        rng = np.random.default_rng([self.config.seed, index])
        out = {"fields": sample["fields"], "time": sample["time"], "trajectory": torch.tensor(index)}
        if "grid" in sample:
            out["grid"] = sample["grid"]
        out.update(draw_observations(sample["fields"], self.config, rng))
        return out
