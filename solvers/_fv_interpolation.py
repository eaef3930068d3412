"""Face-value interpolation for the finite-volume advection: the seam where a learned stencil plugs in.

The advection of velocity component ``u_j`` is written in flux (divergence) form,

    (u . grad) u_j = sum_d  d/dx_d (u_d u_j)        (valid since div u = 0),

and discretised as ``sum_d backward_diff_d(F_jd)`` with the flux ``F_jd = a_jd * q_jd`` stored at the
location of ``u_j`` moved half a cell forward along ``d``:

========  =========================  ==============================================
 (j, d)    flux location             which cell point
========  =========================  ==============================================
 (u, x)    ``((i + 3/2) h, (j + 1/2) h)``  centre of cell ``i + 1``
 (u, y)    ``((i + 1) h, (j + 1) h)``      corner ``(i, j)``
 (v, x)    ``((i + 1) h, (j + 1) h)``      corner ``(i, j)``
 (v, y)    ``((i + 1/2) h, (j + 3/2) h)``  centre of cell ``j + 1``
========  =========================  ==============================================

At each of these four flux locations two face values are needed: ``q_jd``, the *advected* quantity
``u_j`` interpolated there, and ``a_jd``, the *advecting* velocity ``u_d`` interpolated there. An
interpolation module is any ``nn.Module`` whose ``forward(velocity) -> FaceValues`` takes the current
staggered velocity ``(B, 2, N, N)`` and returns both, as tensors ``(B, 2, 2, N, N)`` indexed
``[b, j, d, x, y]`` (``j``: advected component, ``d``: flux direction, 0 = x, 1 = y).

This mirrors the learned interpolation of Kochkov et al. (2021, PNAS, "Machine learning-accelerated
computational fluid dynamics") and the temporal-stencil model of Sun et al. (2023, ICML, "A neural PDE
solver with temporal stencil modeling"): a network reads the velocity, predicts for every flux location a
4x4 stencil of weights (one stencil per ``(j, d)`` pair and per kind, advected / advecting, constrained to
sum to one for first-order accuracy), and applies it to the neighbouring ``u_j`` or ``u_d`` values. The
4x4 neighbourhood of a flux location is gathered with :func:`stencil_patches`. Gradients flow from the
rollout loss through the solver into the module's parameters.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._fv_ops import X_AXIS, Y_AXIS, forward_average

_AXES = (X_AXIS, Y_AXIS)  # flux direction d = 0 (x), 1 (y) -> tensor axis


class FaceValues(NamedTuple):
    """Face values at the four flux locations, each ``(B, 2, 2, N, N)`` indexed ``[b, j, d, x, y]``."""

    advected: Tensor
    advecting: Tensor


def linear_advecting_velocity(velocity: Tensor) -> Tensor:
    """Advecting velocity ``u_d`` at flux location ``(j, d)`` by linear interpolation, ``(B, 2, 2, N, N)``.

    For ``j == d`` it is the forward average of ``u_d`` along ``d``; for ``j != d`` (the corners) the forward
    average of ``u_d`` along ``j``'s own direction.
    """
    u, v = velocity[:, 0], velocity[:, 1]
    rows = [
        [forward_average(u, X_AXIS), forward_average(v, X_AXIS)],  # j = u: a_ux = u at centre, a_uy = v at corner
        [forward_average(u, Y_AXIS), forward_average(v, Y_AXIS)],  # j = v: a_vx = u at corner, a_vy = v at centre
    ]
    return torch.stack([torch.stack(r, dim=1) for r in rows], dim=1)


def linear_advected(velocity: Tensor) -> Tensor:
    """Advected ``u_j`` at flux location ``(j, d)``: the forward average of ``u_j`` along ``d``."""
    return torch.stack(
        [torch.stack([forward_average(velocity[:, j], ax) for ax in _AXES], dim=1) for j in range(2)], dim=1
    )


def stencil_patches(field: Tensor, size: int = 4) -> Tensor:
    """Periodic ``size x size`` neighbourhoods of every point: ``(..., N, N) -> (..., size, size, N, N)``.

    ``out[..., p, q, i, j] = field[..., i + p - size/2 + 1, j + q - size/2 + 1]`` (``i`` along x, ``j`` along y):
    for ``size = 4`` the offsets
    ``-1, 0, 1, 2`` along each axis, i.e. the 4x4 points around the face half a cell forward of ``(i, j)``.
    A learned module contracts these with predicted weights (one stencil per flux location and kind).

    A view of one periodically padded copy (two ``unfold``s), not ``size^2`` shifted copies: the learned solvers
    call this at every Runge-Kutta stage, and on small grids the cost is the number of operations launched.
    """
    n1, n2 = field.shape[-2:]
    lo, hi = size // 2 - 1, size // 2  # points before and after: offsets -lo .. hi
    padded = torch.nn.functional.pad(field.reshape(-1, 1, n1, n2), (lo, hi, lo, hi), mode="circular")[:, 0]
    patches = padded.unfold(1, n1, 1).unfold(2, n2, 1)  # [m, p, q, i, j] = padded[m, p + i, q + j]
    return patches.reshape(*field.shape[:-2], size, size, n1, n2)  # a view: the leading axes were flattened


class AbstractInterpolation(nn.Module):
    """Base of the face-value modules: ``forward(velocity (B, 2, N, N)) -> FaceValues``."""

    @abstractmethod
    def forward(self, velocity: Tensor) -> FaceValues: ...


class LinearInterpolation(AbstractInterpolation):
    """Second-order central scheme: both face values by linear interpolation (energy conserving in space)."""

    def forward(self, velocity: Tensor) -> FaceValues:
        return FaceValues(linear_advected(velocity), linear_advecting_velocity(velocity))


def _van_leer_face(q: Tensor, a: Tensor, axis: int) -> Tensor:
    """Van Leer limited upwind value of ``q`` at the face forward of each point along ``axis``.

    With upwind value ``q_U``, downwind ``q_D`` and far-upwind ``q_UU`` (chosen by the sign of ``a``),
    ``q_face = q_U + phi(r) (q_D - q_U) / 2`` with ``r = (q_U - q_UU) / (q_D - q_U)`` and van Leer's limiter
    ``phi(r) = (r + |r|) / (1 + |r|)`` (van Leer 1974), which reduces to the harmonic-mean form
    ``q_U + (q_U - q_UU)(q_D - q_U) / (q_D - q_UU)`` when the two slopes agree in sign, else ``q_U``.
    """
    q_m1 = torch.roll(q, 1, axis)
    q_p1 = torch.roll(q, -1, axis)
    q_p2 = torch.roll(q, -2, axis)

    def limited(up: Tensor, far: Tensor, down: Tensor) -> Tensor:
        s_up, s_down = up - far, down - up
        prod = s_up * s_down
        positive = prod > 0
        denom = torch.where(positive, s_up + s_down, torch.ones_like(prod))
        return up + torch.where(positive, prod / denom, torch.zeros_like(prod))

    return torch.where(a >= 0, limited(q, q_m1, q_p1), limited(q_p1, q_p2, q))


class VanLeerInterpolation(AbstractInterpolation):
    """TVD upwind scheme: advected values van Leer limited upwind, advecting velocity linear.

    Second order where the field is smooth, first-order upwind at extrema. The upwinding only adds numerical
    dissipation: with zero viscosity and no forcing the kinetic energy decays step by step (checked in the
    tests with SSP-RK3 at CFL 0.5; not a proof for every time step and field).
    """

    def forward(self, velocity: Tensor) -> FaceValues:
        advecting = linear_advecting_velocity(velocity)
        advected = torch.stack(
            [
                torch.stack([_van_leer_face(velocity[:, j], advecting[:, j, d], _AXES[d]) for d in range(2)], dim=1)
                for j in range(2)
            ],
            dim=1,
        )
        return FaceValues(advected, advecting)


def advection(velocity: Tensor, faces: FaceValues, h: float) -> Tensor:
    """``-(u . grad) u`` in flux form from face values: ``-sum_d backward_diff_d(a_jd q_jd)``, ``(B, 2, N, N)``."""
    flux_x, flux_y = (faces.advected * faces.advecting).unbind(2)  # (B, j, N, N) each: d = x, d = y
    return -((flux_x - torch.roll(flux_x, 1, _AXES[0])) / h + (flux_y - torch.roll(flux_y, 1, _AXES[1])) / h)
