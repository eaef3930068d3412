"""Steady 2D Darcy flow ``-div(a grad u) = f`` on the unit square with ``u = 0`` on the boundary.

Grid (the FNO convention, Li et al. 2021, "Fourier neural operator for parametric PDEs"): ``s x s`` nodes
*including* the boundary, ``x_i = i h``, ``h = 1 / (s - 1)``, ``i = 0 .. s - 1``; arrays ``(B, 1, s, s)``
indexed ``[b, 0, i_y, i_x]``. FNO's data use ``s = 421`` (subsampled to 85, 141, 211); every ``s >= 3`` works.

Discretisation: the cell-centred finite-volume 5-point scheme on the control volume ``h x h`` around each
interior node, with the coefficient on a face taken as the harmonic mean of its two nodes,
``a_{i+1/2} = 2 a_i a_{i+1} / (a_i + a_{i+1})`` (the exact flux of a 1D piecewise-constant medium):

    (1/h^2) sum_{nb} a_{face} (u_P - u_{nb}) = f_P   at every interior node P,   u = 0 on the boundary.

The matrix is a symmetric M-matrix (positive diagonal, non-positive off-diagonals, irreducibly diagonally
dominant), so ``f >= 0`` gives ``u >= 0`` (discrete maximum principle) and the scheme is second order for
smooth ``a``. Solvers: ``"direct"`` (scipy sparse LU per sample, CPU) or ``"cg"`` (batched Jacobi-
preconditioned conjugate gradients in torch, matrix-free, any device).

Coefficients: ``ThresholdCoefficient`` (FNO: ``a = 12`` where a Gaussian random field ``psi ~ N(0,
(-Laplace + 9)^{-2})`` with Neumann conditions is >= 0, else ``3``; with ``f = 1``) and
``LogNormalCoefficient`` (``a = exp(psi)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

__all__ = [
    "NeumannGaussianRandomField",
    "ThresholdCoefficient",
    "LogNormalCoefficient",
    "solve_darcy",
    "darcy_samples",
]


@dataclass(frozen=True)
class NeumannGaussianRandomField:
    """``psi ~ N(0, tau^{2 alpha - 2} (-Laplace + tau^2)^{-alpha})`` on ``[0, 1]^2``, zero Neumann conditions.

    Karhunen-Loeve sum over cosine eigenfunctions ``phi_k = c_k1 c_k2 cos(pi k1 x) cos(pi k2 y)`` (``c_0 = 1``,
    ``c_k = sqrt 2``) with standard deviations ``tau^{alpha-1} (pi^2 |k|^2 + tau^2)^{-alpha/2}`` and the
    constant mode removed, as FNO's ``GRF.m`` (defaults ``alpha = 2``, ``tau = 3``). ``n_modes`` per axis
    (default: the resolution); with a fixed ``n_modes`` a seed gives the same field at every resolution.
    """

    alpha: float = 2.0
    tau: float = 3.0
    n_modes: int | None = None

    def sample(self, n: int, resolution: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, resolution, resolution)`` float64 samples at the nodes ``x_i = i / (resolution - 1)``."""
        k_max = self.n_modes or resolution
        k = torch.arange(k_max, dtype=torch.float64)
        std = self.tau ** (self.alpha - 1) * (math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + self.tau**2) ** (
            -self.alpha / 2
        )
        std[0, 0] = 0.0
        xi = torch.randn(n, k_max, k_max, generator=generator, dtype=torch.float64)
        x = torch.linspace(0.0, 1.0, resolution, dtype=torch.float64)
        basis = torch.cos(math.pi * x[:, None] * k[None, :])  # (s, K)
        basis[:, 1:] *= math.sqrt(2.0)
        return basis @ (std * xi) @ basis.T  # [b, y, x] with k1 along y


@dataclass(frozen=True)
class ThresholdCoefficient:
    """Piecewise-constant ``a = high`` where ``psi >= 0``, else ``low`` (FNO Darcy: 12 and 3)."""

    high: float = 12.0
    low: float = 3.0
    field: NeumannGaussianRandomField = field(default_factory=NeumannGaussianRandomField)

    def sample(self, n: int, resolution: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, 1, s, s)`` float64 coefficients."""
        psi = self.field.sample(n, resolution, generator)
        return torch.where(psi >= 0, self.high, self.low).to(torch.float64)[:, None]


@dataclass(frozen=True)
class LogNormalCoefficient:
    """Log-normal ``a = exp(scale * psi)``."""

    scale: float = 1.0
    field: NeumannGaussianRandomField = field(default_factory=NeumannGaussianRandomField)

    def sample(self, n: int, resolution: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, 1, s, s)`` float64 coefficients."""
        return torch.exp(self.scale * self.field.sample(n, resolution, generator))[:, None]


def _face_coefficients(a: Tensor) -> tuple[Tensor, Tensor]:
    """Harmonic means on the faces: along x ``(B, s, s - 1)`` and along y ``(B, s - 1, s)``."""
    ax = 2 * a[..., :, :-1] * a[..., :, 1:] / (a[..., :, :-1] + a[..., :, 1:])
    ay = 2 * a[..., :-1, :] * a[..., 1:, :] / (a[..., :-1, :] + a[..., 1:, :])
    return ax, ay


def _interior_stencil(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """West, east, south, north face coefficients of every interior node, each ``(B, s - 2, s - 2)``."""
    ax, ay = _face_coefficients(a)
    west, east = ax[:, 1:-1, :-1], ax[:, 1:-1, 1:]
    south, north = ay[:, :-1, 1:-1], ay[:, 1:, 1:-1]
    return west, east, south, north


def _apply(stencil: tuple[Tensor, ...], u: Tensor) -> Tensor:
    """``h^2`` times the operator on interior values ``u (B, m, m)`` (zero boundary values)."""
    west, east, south, north = stencil
    up = torch.nn.functional.pad(u, (1, 1, 1, 1))
    c = up[:, 1:-1, 1:-1]
    return (
        west * (c - up[:, 1:-1, :-2])
        + east * (c - up[:, 1:-1, 2:])
        + south * (c - up[:, :-2, 1:-1])
        + north * (c - up[:, 2:, 1:-1])
    )


def _assemble(stencil: tuple[np.ndarray, ...]) -> sp.csc_matrix:
    """Sparse ``h^2 A`` of one sample from its interior stencil arrays ``(m, m)``."""
    west, east, south, north = stencil
    m = west.shape[0]
    idx = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [idx.ravel()], [idx.ravel()], [(west + east + south + north).ravel()]
    for coef, di, dj in ((west, 0, -1), (east, 0, 1), (south, -1, 0), (north, 1, 0)):
        ii, jj = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        ni, nj = ii + di, jj + dj
        inside = (ni >= 0) & (ni < m) & (nj >= 0) & (nj < m)
        rows.append(idx[inside])
        cols.append(idx[ni[inside], nj[inside]])
        vals.append(-coef[inside])
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m,) * 2)


def _solve_direct(stencil: tuple[Tensor, ...], rhs: Tensor) -> Tensor:
    arrays = [s.detach().cpu().double().numpy() for s in stencil]
    b = rhs.detach().cpu().double().numpy()
    out = np.empty_like(b)
    for k in range(b.shape[0]):
        matrix = _assemble(tuple(s[k] for s in arrays))
        out[k] = spla.splu(matrix, permc_spec="COLAMD").solve(b[k].ravel()).reshape(b.shape[1:])
    return torch.from_numpy(out)


def _solve_cg(stencil: tuple[Tensor, ...], rhs: Tensor, tol: float, max_iter: int) -> Tensor:
    """Batched Jacobi-preconditioned CG; stops when every ``|r| <= tol |b|``."""
    inv_diag = 1.0 / sum(stencil)
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).sum(dim=(1, 2))
    b_norm = rhs.flatten(1).norm(dim=1).clamp(min=torch.finfo(rhs.dtype).tiny)
    for _ in range(max_iter):
        if bool((r.flatten(1).norm(dim=1) <= tol * b_norm).all()):
            return x
        ap = _apply(stencil, p)
        alpha = rz / (p * ap).sum(dim=(1, 2)).clamp(min=torch.finfo(rhs.dtype).tiny)
        x = x + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * ap
        z = inv_diag * r
        rz_new = (r * z).sum(dim=(1, 2))
        p = z + (rz_new / rz.clamp(min=torch.finfo(rhs.dtype).tiny))[:, None, None] * p
        rz = rz_new
    residual = (r.flatten(1).norm(dim=1) / b_norm).max().item()
    raise RuntimeError(
        f"solve_darcy(method='cg') did not reach tol={tol} in {max_iter} iterations "
        f"(relative residual {residual:.2e}); raise max_iter or use method='direct'"
    )


def solve_darcy(
    a: Tensor,
    f: float | Tensor = 1.0,
    method: Literal["direct", "cg"] = "direct",
    tol: float = 1e-10,
    max_iter: int = 20000,
) -> Tensor:
    """Solve ``-div(a grad u) = f`` on ``[0, 1]^2``, ``u = 0`` on the boundary (scheme: module docstring).

    Args:
        a: coefficient at the nodes, ``(B, 1, s, s)``, positive; ``h = 1 / (s - 1)``.
        f: source, a number or ``(B, 1, s, s)`` at the nodes (boundary values unused).
        method: ``"direct"`` (sparse LU per sample on the CPU, computed in float64) or ``"cg"`` (batched
            Jacobi-PCG in torch on ``a``'s device and dtype, to relative residual ``tol``).
    Returns:
        ``u (B, 1, s, s)`` in ``a``'s dtype and device, zero on the boundary.
    """
    if a.ndim != 4 or a.shape[1] != 1 or a.shape[-1] != a.shape[-2] or a.shape[-1] < 3:
        hint = " add batch and channel axes with a[None, None]" if a.ndim == 2 else ""
        raise ValueError(f"expected a of shape (B, 1, s, s) with s >= 3, got {tuple(a.shape)}{hint}")
    if not bool((a > 0).all()):
        raise ValueError(f"the coefficient a must be positive everywhere, min is {a.min().item():.3g}")
    s = a.shape[-1]
    h = 1.0 / (s - 1)
    if isinstance(f, Tensor):
        if f.shape != a.shape:
            raise ValueError(f"expected f of shape {tuple(a.shape)} like a, got {tuple(f.shape)}")
        rhs = h**2 * f[:, 0, 1:-1, 1:-1].to(a.dtype)
    else:
        rhs = torch.full((a.shape[0], s - 2, s - 2), h**2 * float(f), dtype=a.dtype, device=a.device)
    if method == "direct":
        stencil = _interior_stencil(a[:, 0].double())
        interior = _solve_direct(stencil, rhs.double()).to(dtype=a.dtype, device=a.device)
    elif method == "cg":
        interior = _solve_cg(_interior_stencil(a[:, 0]), rhs, tol, max_iter)
    else:
        raise ValueError(f"method must be 'direct' or 'cg', got {method!r}")
    return torch.nn.functional.pad(interior, (1, 1, 1, 1))[:, None]


def darcy_samples(
    n: int,
    resolution: int = 85,
    generator: torch.Generator | None = None,
    coefficient: ThresholdCoefficient | LogNormalCoefficient = ThresholdCoefficient(),
    f: float = 1.0,
    method: Literal["direct", "cg"] = "direct",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Preset ``darcy_2d``: ``n`` pairs ``(a, u)``, each ``(n, 1, s, s)`` on the FNO node grid.

    Defaults as the FNO Darcy benchmark: ``a`` thresholded Gaussian random field (12 / 3, ``alpha = 2``,
    ``tau = 3``), ``f = 1``, ``s = 85`` (FNO solves at 421 and subsamples; here each resolution is solved
    directly). The coefficient is drawn in float64 from ``generator`` on the CPU; the solve runs in float64
    (``"direct"``) and the outputs are cast to ``dtype`` on ``device``.
    """
    if n < 1 or resolution < 3:
        raise ValueError(f"need n >= 1 and resolution >= 3, got n={n}, resolution={resolution}")
    a = coefficient.sample(n, resolution, generator)
    if method == "cg" and device is not None:
        a = a.to(device)
    u = solve_darcy(a, f, method=method)
    return a.to(dtype=dtype, device=device), u.to(dtype=dtype, device=device)
