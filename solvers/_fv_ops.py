"""Periodic MAC (staggered) grid and its discrete operators, shared by the finite-volume NS solver.

Layout (the convention of every ``_fv_*`` module and of :mod:`pdeforge.solvers.fv`): a velocity is a tensor
``(B, 2, N, N)``; axis -2 is x (index ``i``), axis -1 is y (index ``j``), as in the spectral ``Grid`` and
jax-cfd; the periodic domain is ``[0, L)^2`` with ``h = L / N``. Like jax-cfd's offsets ``(1, 0.5)`` and
``(0.5, 1)``:

- channel 0, ``u``, lives on x-faces: ``u[..., i, j]`` at ``((i + 1) h, (j + 1/2) h)``;
- channel 1, ``v``, lives on y-faces: ``v[..., i, j]`` at ``((i + 1/2) h, (j + 1) h)``;
- pressure and divergence live at cell centres ``((i + 1/2) h, (j + 1/2) h)``;
- vorticity lives at cell corners ``((i + 1) h, (j + 1) h)``.

Divergence ``D u = (u_i - u_{i-1}) / h + (v_j - v_{j-1}) / h`` and gradient ``G p = ((p_{i+1} - p_i) / h,
(p_{j+1} - p_j) / h)`` are adjoint up to sign, and ``D G`` has the Fourier symbol
``-(4 / h^2) (sin^2(pi m_x / N) + sin^2(pi m_y / N))``: the same symbol as the 5-point Laplacian, which is
what makes the FFT projection exact to round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

X_AXIS = -2
Y_AXIS = -1


@dataclass(frozen=True)
class StaggeredGrid:
    """A periodic square MAC grid of ``n x n`` cells on ``[0, length)^2`` (default ``2 pi``)."""

    n: int
    length: float = 2 * math.pi

    def __post_init__(self) -> None:
        if self.n < 4:
            raise ValueError(f"StaggeredGrid needs n >= 4 cells per side, got n={self.n}")

    @property
    def h(self) -> float:
        return self.length / self.n

    def coordinates(
        self, offset: tuple[float, float], dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x, y)`` each ``(N, N)`` at ``((i + offset[0]) h, (j + offset[1]) h)``, indexed ``[i, j]``."""
        idx = torch.arange(self.n, dtype=torch.float64, device=device)
        x = (idx + offset[0]) * self.h
        y = (idx + offset[1]) * self.h
        xx, yy = torch.meshgrid(x, y, indexing="ij")
        return xx.to(dtype), yy.to(dtype)

    def laplacian_symbol(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
        """Symbol of the 5-point Laplacian on the ``rfft2`` frequencies, shape ``(N, N // 2 + 1)``, <= 0."""
        mx = torch.fft.fftfreq(self.n, d=1.0 / self.n, dtype=torch.float64, device=device)
        my = torch.fft.rfftfreq(self.n, d=1.0 / self.n, dtype=torch.float64, device=device)
        sx = torch.sin(math.pi * mx / self.n) ** 2
        sy = torch.sin(math.pi * my / self.n) ** 2
        return (-(4.0 / self.h**2) * (sx[:, None] + sy[None, :])).to(dtype)


def check_velocity(velocity: Tensor, grid: StaggeredGrid, name: str = "velocity") -> None:
    """Raise a clear error unless ``velocity`` is ``(B, 2, N, N)`` on ``grid``."""
    n = grid.n
    if velocity.ndim != 4 or velocity.shape[1] != 2 or velocity.shape[-2:] != (n, n):
        hint = " add a batch axis with v[None]" if velocity.ndim == 3 else ""
        raise ValueError(
            f"expected {name} of shape (B, 2, {n}, {n}) (channel 0 = u on x-faces, 1 = v on "
            f"y-faces), got {tuple(velocity.shape)}{hint}"
        )


def forward_diff(f: Tensor, axis: int, h: float) -> Tensor:
    """``(f[k + 1] - f[k]) / h`` along ``axis`` (periodic): moves a value half a cell forward."""
    return (torch.roll(f, -1, dims=axis) - f) / h


def backward_diff(f: Tensor, axis: int, h: float) -> Tensor:
    """``(f[k] - f[k - 1]) / h`` along ``axis`` (periodic): moves a value half a cell backward."""
    return (f - torch.roll(f, 1, dims=axis)) / h


def forward_average(f: Tensor, axis: int) -> Tensor:
    """``(f[k] + f[k + 1]) / 2`` along ``axis``: linear interpolation half a cell forward."""
    return 0.5 * (f + torch.roll(f, -1, dims=axis))


def divergence(velocity: Tensor, h: float) -> Tensor:
    """Discrete MAC divergence at cell centres: ``(B, 2, N, N) -> (B, N, N)``."""
    return backward_diff(velocity[:, 0], X_AXIS, h) + backward_diff(velocity[:, 1], Y_AXIS, h)


def gradient(p: Tensor, h: float) -> Tensor:
    """Discrete gradient of a cell-centred ``(B, N, N)`` onto the faces: ``(B, 2, N, N)``."""
    return torch.stack([forward_diff(p, X_AXIS, h), forward_diff(p, Y_AXIS, h)], dim=1)


def laplacian(f: Tensor, h: float) -> Tensor:
    """5-point Laplacian of every channel, any staggering (periodic)."""
    return (torch.roll(f, 1, -1) + torch.roll(f, -1, -1) + torch.roll(f, 1, -2) + torch.roll(f, -1, -2) - 4 * f) / h**2


def vorticity(velocity: Tensor, grid: StaggeredGrid) -> Tensor:
    """Vorticity ``w = dv/dx - du/dy`` at cell corners ``((i + 1) h, (j + 1) h)``.

    Args:
        velocity: ``(B, 2, N, N)`` staggered velocity.
    Returns:
        ``(B, 1, N, N)``; its mean is exactly zero on the periodic grid.
    """
    check_velocity(velocity, grid)
    h = grid.h
    w = forward_diff(velocity[:, 1], X_AXIS, h) - forward_diff(velocity[:, 0], Y_AXIS, h)
    return w[:, None]


def to_cell_centres(velocity: Tensor) -> Tensor:
    """Average the face velocities to cell centres (collocated ``(B, 2, N, N)``, for plots and spectra)."""
    u = 0.5 * (velocity[:, 0] + torch.roll(velocity[:, 0], 1, X_AXIS))
    v = 0.5 * (velocity[:, 1] + torch.roll(velocity[:, 1], 1, Y_AXIS))
    return torch.stack([u, v], dim=1)


def velocity_from_streamfunction(psi: Tensor, h: float) -> Tensor:
    """Discretely divergence-free velocity ``u = d psi / dy``, ``v = -d psi / dx`` from a corner-located
    streamfunction ``psi (B, N, N)``; the MAC divergence of the result is zero to round-off."""
    u = backward_diff(psi, Y_AXIS, h)
    v = -backward_diff(psi, X_AXIS, h)
    return torch.stack([u, v], dim=1)


def downsample_staggered(velocity: Tensor, factor: int) -> Tensor:
    """Coarsen a staggered velocity by face averaging (jax-cfd's ``downsample_staggered_velocity``).

    The coarse x-face ``I`` coincides with fine x-face ``f I + f - 1``; the coarse ``u`` there is the mean of
    the ``f`` fine ``u`` on that face (and likewise for ``v``). The coarse flux through each coarse face is
    then the fine flux, so ``D_coarse(downsample(u)) = block mean of D_fine(u)``: divergence-free stays
    divergence-free.

    Args:
        velocity: ``(B, 2, N, N)`` with ``N`` divisible by ``factor``.
        factor: integer coarsening factor.
    Returns:
        ``(B, 2, N / factor, N / factor)``.
    """
    if velocity.ndim != 4 or velocity.shape[1] != 2:
        raise ValueError(f"expected a staggered velocity (B, 2, N, N), got {tuple(velocity.shape)}")
    n = velocity.shape[-1]
    if factor < 1 or n % factor or velocity.shape[-2] != n:
        raise ValueError(
            f"cannot downsample a {tuple(velocity.shape[-2:])} grid by factor {factor}: "
            f"expected a square grid with a side divisible by the factor"
        )
    m, f = n // factor, factor
    b = velocity.shape[0]
    # Split each axis into (coarse index, offset inside the block): [b, c, I, fi, J, fj].
    blocks = velocity.reshape(b, 2, m, f, m, f)
    u = blocks[:, 0, :, f - 1, :, :].mean(dim=-1)  # last fine x-face of the block, mean over y
    v = blocks[:, 1, :, :, :, f - 1].mean(dim=2)  # last fine y-face of the block, mean over x
    return torch.stack([u, v], dim=1)


def energy_spectrum(velocity: Tensor, grid: StaggeredGrid) -> Tensor:
    """Radially binned kinetic-energy spectrum ``E(k)``, ``k = 0 .. N/2``, summed over shells.

    Each component is transformed on its own staggered grid (the half-cell offset only changes phases, and
    averaging to cell centres would damp high ``k`` by ``cos^2(k h / 2)``). Shell ``k`` holds the integer
    wavenumbers ``k - 1/2 <= |m| < k + 1/2``; the corner modes ``|m| > N/2 + 1/2`` are dropped, so
    ``sum_k E(k) <= mean(u^2 + v^2) / 2`` with equality up to those corners (Parseval).

    Returns:
        ``(B, N // 2 + 1)`` in the dtype of the input.
    """
    check_velocity(velocity, grid)
    n = grid.n
    uh = torch.fft.fft2(velocity, norm="forward")
    density = 0.5 * (uh.abs() ** 2).sum(dim=1)  # (B, N, N)
    m = torch.fft.fftfreq(n, d=1.0 / n, device=velocity.device, dtype=torch.float64)
    kmag = torch.sqrt(m[:, None] ** 2 + m[None, :] ** 2)
    shell = torch.round(kmag).long().clamp(max=n // 2 + 1)
    out = torch.zeros(velocity.shape[0], n // 2 + 2, dtype=density.dtype, device=velocity.device)
    out.index_add_(1, shell.flatten(), density.reshape(velocity.shape[0], -1))
    return out[:, : n // 2 + 1]
