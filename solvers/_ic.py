"""Random initial conditions on a periodic :class:`Grid`.

Each is a small frozen dataclass called as ``ic(grid, batch, generator) -> (B, C, *grid.shape)``. Random
numbers are drawn on the CPU from the given ``torch.Generator`` (float64) and only then moved, so one seed
gives the same fields on every device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._grid import Grid


@dataclass(frozen=True, kw_only=True)
class Normalization:
    """Post-processing of a drawn field, per sample and channel, in this order.

    Attributes:
        zero_mean: subtract the spatial mean.
        scale_by: ``"max"`` divides by ``max |u|``, ``"std"`` by the standard deviation, ``None`` keeps it.
        amplitude: multiply by this afterwards.
    """

    zero_mean: bool = True
    scale_by: str | None = "max"
    amplitude: float = 1.0

    def __call__(self, u: Tensor) -> Tensor:
        dims = tuple(range(2, u.ndim))
        if self.zero_mean:
            u = u - u.mean(dim=dims, keepdim=True)
        if self.scale_by == "max":
            u = u / u.abs().amax(dim=dims, keepdim=True).clamp_min(1e-300)
        elif self.scale_by == "std":
            u = u / u.std(dim=dims, keepdim=True).clamp_min(1e-300)
        elif self.scale_by is not None:
            raise ValueError(f"scale_by must be 'max', 'std' or None, got {self.scale_by!r}")
        return self.amplitude * u


class AbstractInitialCondition(ABC):
    """A random field generator; subclasses implement ``draw`` in float64 on the CPU."""

    channels: int
    normalization: Normalization

    @abstractmethod
    def draw(self, grid: Grid, batch: int, generator: torch.Generator | None) -> Tensor:
        """Raw float64 CPU fields ``(B, C, *grid.shape)`` before normalisation."""

    def __call__(
        self,
        grid: Grid,
        batch: int,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Draw ``batch`` fields, ``(B, C, *grid.shape)``, in ``dtype`` on ``device``."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"pass a CPU torch.Generator (got one on {generator.device}): numbers are drawn on the CPU "
                "so that a seed gives the same field on every device"
            )
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        u = self.normalization(self.draw(grid, batch, generator))
        return u.to(device=device, dtype=dtype)


def _spectral_noise(grid: Grid, batch: int, channels: int, generator) -> Tensor:
    """Complex white noise in rfftn layout, ``(B, C, *spectral_shape)``."""
    shape = (batch, channels, *grid.spectral_shape)
    re = torch.randn(shape, generator=generator, dtype=torch.float64)
    im = torch.randn(shape, generator=generator, dtype=torch.float64)
    return torch.complex(re, im)


def _integer_modes(grid: Grid) -> tuple[Tensor, ...]:
    return tuple(k * length / (2 * math.pi) for k, length in zip(grid.wavenumbers(), grid.length))


def _to_physical(u_hat: Tensor, grid: Grid) -> Tensor:
    return torch.fft.irfftn(u_hat, s=grid.shape, dim=tuple(range(-grid.ndim, 0)))


@dataclass(frozen=True, kw_only=True)
class RandomFourierSeries(AbstractInitialCondition):
    """A random truncated Fourier series: Gaussian coefficients on integer modes ``max_d |m_d| <= max_wavenumber``,

    amplitudes ``|m|^(-decay)`` (``decay = 0``: flat).
    """

    max_wavenumber: int = 5
    decay: float = 0.0
    channels: int = 1
    normalization: Normalization = field(default_factory=Normalization)

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        m = _integer_modes(grid)
        keep = torch.ones(grid.spectral_shape, dtype=torch.bool)
        for md in m:
            keep = keep & (md.abs() <= self.max_wavenumber)
        mag = torch.sqrt(sum(md**2 for md in m)).clamp_min(1.0) ** (-self.decay)
        return _to_physical(_spectral_noise(grid, batch, self.channels, generator) * keep * mag, grid)


@dataclass(frozen=True, kw_only=True)
class GaussianRandomField(AbstractInitialCondition):
    """A Gaussian random field with power-law spectrum: Fourier amplitudes ``(1 + |m|^2)^(-exponent / 2)``

    on integer modes ``m`` (larger ``exponent``, smoother field).
    """

    exponent: float = 3.0
    channels: int = 1
    normalization: Normalization = field(default_factory=lambda: Normalization(scale_by="std"))

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        m2 = sum(md**2 for md in _integer_modes(grid))
        amp = (1.0 + m2) ** (-self.exponent / 2)
        return _to_physical(_spectral_noise(grid, batch, self.channels, generator) * amp, grid)


@dataclass(frozen=True, kw_only=True)
class DiffusedNoise(AbstractInitialCondition):
    """White noise diffused for a time: ``exp(-intensity |k|^2)`` applied to Gaussian noise (angular ``k``)."""

    intensity: float = 1e-3
    channels: int = 1
    normalization: Normalization = field(default_factory=Normalization)

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        noise = torch.randn((batch, self.channels, *grid.shape), generator=generator, dtype=torch.float64)
        k2 = sum(k**2 for k in grid.wavenumbers())
        return _to_physical(
            torch.fft.rfftn(noise, dim=tuple(range(-grid.ndim, 0))) * torch.exp(-self.intensity * k2), grid
        )


@dataclass(frozen=True, kw_only=True)
class RandomDiscontinuities(AbstractInitialCondition):
    """Piecewise-constant fields: a sum of ``n_boxes`` periodic axis-aligned boxes with random corners,

    extents and uniform heights in ``[-1, 1]`` (intervals in 1D: random jumps).
    """

    n_boxes: int = 3
    channels: int = 1
    normalization: Normalization = field(default_factory=lambda: Normalization(zero_mean=False))

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        shape = (batch, self.channels, self.n_boxes, grid.ndim)
        start = torch.rand(shape, generator=generator, dtype=torch.float64)
        width = torch.rand(shape, generator=generator, dtype=torch.float64) * 0.5 + 0.1
        height = 2 * torch.rand((batch, self.channels, self.n_boxes), generator=generator, dtype=torch.float64) - 1
        u = torch.zeros((batch, self.channels, *grid.shape), dtype=torch.float64)
        xs = [x / length for x, length in zip(grid.mesh(), grid.length)]  # unit-periodic coordinates
        for j in range(self.n_boxes):
            inside = torch.ones_like(u, dtype=torch.bool)
            for d, x in enumerate(xs):
                s = start[:, :, j, d].reshape(batch, self.channels, *[1] * grid.ndim)
                w = width[:, :, j, d].reshape(batch, self.channels, *[1] * grid.ndim)
                inside = inside & (torch.remainder(x - s, 1.0) < w)
            u = u + height[:, :, j].reshape(batch, self.channels, *[1] * grid.ndim) * inside
        return u


@dataclass(frozen=True, kw_only=True)
class GaussianBlobs(AbstractInitialCondition):
    """A sum of ``n_blobs`` periodic Gaussians ``h exp(-|x - x_0|^2 / (2 (width L)^2))`` with random centres and

    heights ``h`` uniform in ``[0.5, 1]`` (distances taken to the nearest periodic image).
    """

    n_blobs: int = 3
    width: float = 0.05
    channels: int = 1
    normalization: Normalization = field(default_factory=lambda: Normalization(zero_mean=False))

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        centre = torch.rand((batch, self.channels, self.n_blobs, grid.ndim), generator=generator, dtype=torch.float64)
        height = 0.5 + 0.5 * torch.rand((batch, self.channels, self.n_blobs), generator=generator, dtype=torch.float64)
        view = (batch, self.channels, *[1] * grid.ndim)
        u = torch.zeros((batch, self.channels, *grid.shape), dtype=torch.float64)
        for j in range(self.n_blobs):
            r2 = 0.0
            for d, (x, length) in enumerate(zip(grid.mesh(), grid.length)):
                dist = torch.remainder(x / length - centre[:, :, j, d].reshape(view) + 0.5, 1.0) - 0.5
                r2 = r2 + (dist * length) ** 2
            scale = self.width * max(grid.length)
            u = u + height[:, :, j].reshape(view) * torch.exp(-r2 / (2 * scale**2))
        return u


@dataclass(frozen=True, kw_only=True)
class LogNormalVorticity(AbstractInitialCondition):
    """A 2D vorticity field for decaying turbulence with a log-normal energy spectrum

    ``E(k) ~ exp(-log(k / peak_wavenumber)^2 / (2 sigma^2))`` and random phases; the vorticity spectrum is
    ``|w_k|^2 ~ k E(k)`` (``|w|^2 = k^2 |u|^2`` spread over a shell of circumference ``2 pi k``).
    """

    peak_wavenumber: float = 4.0
    sigma: float = 0.5
    channels: int = 1
    normalization: Normalization = field(default_factory=lambda: Normalization(scale_by="std"))

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        if grid.ndim != 2:
            raise ValueError(f"LogNormalVorticity is a 2D field, got a {grid.ndim}D grid")
        k = torch.sqrt(sum(md**2 for md in _integer_modes(grid)))
        safe = k.clamp_min(1e-12)
        energy = torch.exp(-(torch.log(safe / self.peak_wavenumber) ** 2) / (2 * self.sigma**2)) * (k > 0)
        amp = torch.sqrt(safe * energy)
        return _to_physical(_spectral_noise(grid, batch, self.channels, generator) * amp, grid)


@dataclass(frozen=True, kw_only=True)
class ChannelAffine(AbstractInitialCondition):
    """Build a C-channel state from a 1-channel field ``g``: channel ``c`` is ``offset[c] + scale[c] * g``.

    Examples: Gray-Scott ``(u, v) = (1 - g / 2, g / 4)`` is ``scale=(-0.5, 0.25), offset=(1, 0)`` over
    :class:`GaussianBlobs`; a wave at rest ``(u, u_t) = (g, 0)`` is ``scale=(1, 0), offset=(0, 0)``.
    """

    base: AbstractInitialCondition
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    normalization: Normalization = field(default_factory=lambda: Normalization(zero_mean=False, scale_by=None))

    @property
    def channels(self) -> int:  # type: ignore[override]
        return len(self.scale)

    def draw(self, grid: Grid, batch: int, generator) -> Tensor:
        if self.base.channels != 1 or len(self.offset) != len(self.scale):
            raise ValueError("ChannelAffine needs a 1-channel base and as many offsets as scales")
        g = self.base(grid, batch, generator)
        view = (1, len(self.scale), *[1] * grid.ndim)
        scale = torch.tensor(self.scale, dtype=torch.float64).reshape(view)
        offset = torch.tensor(self.offset, dtype=torch.float64).reshape(view)
        return offset + scale * g
