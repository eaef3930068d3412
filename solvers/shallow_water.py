"""Shallow water in 2D over bathymetry: a well-balanced, positivity-preserving finite-volume solver in torch.

Solves, on a uniform grid of ``nx x ny`` cells over ``[x0, x1] x [y0, y1]``, with bed elevation ``b(x, y)``,

    h_t + (h u)_x + (h v)_y = 0
    (h u)_t + (h u^2 + g h^2 / 2)_x + (h u v)_y = -g h b_x
    (h v)_t + (h u v)_x + (h v^2 + g h^2 / 2)_y = -g h b_y

with the conserved state ``U = (h, hu, hv)`` channels first, ``(B, 3, nx, ny)``; axis -2 is x, axis -1 is y.

The scheme (dimension by dimension, one code path for both axes):

- MUSCL reconstruction of ``h``, the free surface ``eta = h + b`` and the velocities ``u, v`` with a TVD limiter
  (``minmod``, ``mc`` or ``van_leer``); the bed at a cell edge is ``b = eta - h`` there;
- hydrostatic reconstruction (Audusse, Bouchut, Bristeau, Klein, Perthame 2004, SIAM J. Sci. Comput. 25(6)):
  ``b* = max(b_L, b_R)``, ``h*_{L,R} = max(0, eta_{L,R} - b*)`` at each face, the numerical flux of the
  reconstructed states ``(h*, h* u, h* v)`` plus the face corrections ``g/2 (h^2 - h*^2)`` and the centred
  source of their second-order scheme. A lake at rest (``u = v = 0``, ``eta`` constant where wet, dry cells above
  it) is an exact steady state, and the depth stays non-negative under the CFL condition;
- HLL flux with Toro's dry-bed wave speeds (``u + 2c`` at a wet/dry face), or Rusanov;
- SSP Runge-Kutta in Shu-Osher form (SSP-RK2 or SSP-RK3), each trajectory with its own step
  ``dt = cfl / max(|s_x| / dx + |s_y| / dy)`` (``s``: the flux's wave speeds), cut to land exactly on every
  requested output time. A batch therefore gives the numbers of its trajectories run one by one.

Boundaries per side: ``"outflow"`` (zero-order extrapolation, as PyClaw's ``extrap``) or ``"wall"`` (reflection:
the normal momentum flips, the mass flux through the wall is exactly zero). Depths below ``dry_depth`` count as dry
(velocity 0). A depth that round-off leaves slightly negative is set to 0; a state that goes bad anyway (a
negative depth beyond round-off, a non-finite value) stops the rollout with `ShallowWaterStateError`, a
``FloatingPointError`` that names trajectory, time and cell; nothing non-finite is returned.

Batched over trajectories, any device and dtype of the input (float64 for reference data), differentiable in torch
through every step (the step sizes are chosen without gradient: a rollout's derivative is that of the discrete map
with its step sequence held fixed). Exact solutions for checks: `dam_break_exact` (Stoker 1957 on a wet bed,
Ritter on a dry one; the SWASHES forms, Delestre et al. 2013).

Examples:
    A lake at rest over a bump that emerges stays at rest (the scheme is well-balanced):

    >>> import torch
    >>> from pdeforge.solvers.shallow_water import RectGrid, ShallowWater2D
    >>> grid = RectGrid(32, 32, (-1.0, 1.0), (-1.0, 1.0))
    >>> x, y = grid.centres(torch.float64)
    >>> bed = 1.2 * torch.exp(-10 * (x**2 + y**2))  # peaks above the surface at 1
    >>> h = (1.0 - bed).clamp_min(0)
    >>> solver = ShallowWater2D(grid, gravity=9.81, bathymetry=bed, boundary="wall")
    >>> U0 = torch.stack([h, 0 * h, 0 * h])[None]  # (B, 3, nx, ny)
    >>> traj = solver.rollout(U0, times=[0.0, 0.5])
    >>> traj.shape  # (B, T, 3, nx, ny)
    torch.Size([1, 2, 3, 32, 32])
    >>> bool(traj[:, -1, 1:].abs().max() < 1e-12), bool(((traj[:, -1, 0] - h) * (h > 0)).abs().max() < 1e-12)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SSPRungeKutta",
    "SSP_RK2",
    "SSP_RK3",
    "LIMITERS",
    "FLUXES",
    "ShallowWaterScheme",
    "RectGrid",
    "ShallowWater2D",
    "ShallowWaterStateError",
    "dam_break_exact",
    "disc_depth",
]

BOUNDARIES = ("outflow", "wall")


class ShallowWaterStateError(FloatingPointError):
    """The state went bad (a negative depth beyond round-off, or a non-finite value); names trajectory, time, cell."""


@dataclass(frozen=True)
class SSPRungeKutta:
    """A strong-stability-preserving Runge-Kutta method in Shu-Osher form (Shu & Osher 1988).

    Stage ``k`` (``u_0`` the state at the start of the step, ``L`` the semi-discrete operator):
    ``u_k = a_k u_0 + (1 - a_k) (u_{k-1} + dt L(u_{k-1}))``, ``a_1 = 0``; the last stage is the new state. Every
    stage is a convex combination of forward-Euler steps, so a property of forward Euler under the CFL condition
    (here: a non-negative depth) holds for the whole step.
    """

    weights: tuple[float, ...]
    order: int

    def __post_init__(self) -> None:
        if not self.weights or self.weights[0] != 0.0 or not all(0.0 <= a < 1.0 for a in self.weights):
            raise ValueError(f"SSPRungeKutta: weights {self.weights}: expected a_1 = 0 and every a_k in [0, 1)")


SSP_RK2 = SSPRungeKutta(weights=(0.0, 1 / 2), order=2)  # Heun
SSP_RK3 = SSPRungeKutta(weights=(0.0, 3 / 4, 1 / 3), order=3)  # Shu-Osher


def _minmod(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(a * b > 0, torch.sign(a) * torch.minimum(a.abs(), b.abs()), torch.zeros_like(a))


def _mc(a: Tensor, b: Tensor) -> Tensor:
    """Monotonized central (van Leer 1977): ``minmod(2a, (a + b)/2, 2b)``."""
    abs_a, abs_b = a.abs(), b.abs()
    m = torch.minimum(2 * torch.minimum(abs_a, abs_b), 0.5 * (abs_a + abs_b))  # |a + b| = |a| + |b| where a b > 0
    return torch.where(a * b > 0, torch.sign(a) * m, torch.zeros_like(a))


def _van_leer(a: Tensor, b: Tensor) -> Tensor:
    """van Leer's harmonic limiter ``2 a b / (a + b)`` where ``a b > 0``, else 0."""
    ab = a * b
    s = a + b
    return torch.where(ab > 0, 2 * ab / torch.where(ab > 0, s, torch.ones_like(s)), torch.zeros_like(a))


# slope of a cell from its backward and forward differences; each keeps edge values within the neighbours' range
LIMITERS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"minmod": _minmod, "mc": _mc, "van_leer": _van_leer}
FLUXES = ("hll", "rusanov")


@dataclass(frozen=True)
class ShallowWaterScheme:
    """The numerics: TVD ``limiter`` (a key of `LIMITERS`), ``flux`` (``"hll"`` or ``"rusanov"``), time stepper
    ``rk`` (`SSP_RK2` or `SSP_RK3`), CFL number ``cfl`` (``dt * max(|s_x|/dx + |s_y|/dy)``; the positivity argument
    for the second-order hydrostatic scheme asks for at most 1/2), and ``dry_depth`` (below it a cell's velocity
    is 0).
    """

    limiter: str = "mc"
    flux: str = "hll"
    rk: SSPRungeKutta = SSP_RK3
    cfl: float = 0.4
    dry_depth: float = 1e-10
    max_steps: int = 1_000_000

    def __post_init__(self) -> None:
        if self.limiter not in LIMITERS:
            raise ValueError(f"ShallowWaterScheme: limiter {self.limiter!r}: expected one of {tuple(LIMITERS)}")
        if self.flux not in FLUXES:
            raise ValueError(f"ShallowWaterScheme: flux {self.flux!r}: expected one of {FLUXES}")
        if not (0 < self.cfl and math.isfinite(self.cfl)):
            raise ValueError(f"ShallowWaterScheme: cfl {self.cfl!r}: expected a number > 0 (0.4 by default)")
        if not self.dry_depth >= 0:
            raise ValueError(f"ShallowWaterScheme: dry_depth {self.dry_depth!r}: expected a number >= 0")
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise ValueError(f"ShallowWaterScheme: max_steps {self.max_steps!r}: expected an integer >= 1")


@dataclass(frozen=True)
class RectGrid:
    """``nx x ny`` equal cells over ``[x_range[0], x_range[1]] x [y_range[0], y_range[1]]`` (``ny = 1``: a 1D
    problem along x, exact: nothing varies in y)."""

    nx: int
    ny: int
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for name, n in (("nx", self.nx), ("ny", self.ny)):
            if not (isinstance(n, int) and n >= 1):
                raise ValueError(f"RectGrid: {name} {n!r}: expected an integer >= 1 (cells along the axis)")
        for name, (lo, hi) in (("x_range", self.x_range), ("y_range", self.y_range)):
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError(f"RectGrid: {name} {(lo, hi)}: expected (low, high) with low < high")

    @property
    def dx(self) -> float:
        return (self.x_range[1] - self.x_range[0]) / self.nx

    @property
    def dy(self) -> float:
        return (self.y_range[1] - self.y_range[0]) / self.ny

    def axis_centres(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
        """The cell centres of each axis, ``(nx,)`` and ``(ny,)``: ``x0 + (i + 1/2) dx``."""
        x = self.x_range[0] + (torch.arange(self.nx, dtype=torch.float64, device=device) + 0.5) * self.dx
        y = self.y_range[0] + (torch.arange(self.ny, dtype=torch.float64, device=device) + 0.5) * self.dy
        return x.to(dtype), y.to(dtype)

    def centres(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
        """``(x, y)``, each ``(nx, ny)``, indexed ``[i, j]``."""
        x, y = self.axis_centres(dtype, device)
        return torch.meshgrid(x, y, indexing="ij")


def _sides(boundary: str | Sequence) -> tuple[tuple[str, str], tuple[str, str]]:
    """``"wall"`` | ``(x, y)`` with each ``"wall"`` or ``(low, high)`` -> ``((x_lo, x_hi), (y_lo, y_hi))``."""
    per_axis = (boundary, boundary) if isinstance(boundary, str) else tuple(boundary)
    out = []
    for entry in per_axis if len(per_axis) == 2 else ():
        pair = (entry, entry) if isinstance(entry, str) else tuple(entry)
        if len(pair) != 2 or any(p not in BOUNDARIES for p in pair):
            break
        out.append(pair)
    if len(out) != 2:
        raise ValueError(
            f"boundary {boundary!r}: expected one of {BOUNDARIES}, or one per axis (x, y), each a kind or a "
            "(low side, high side) pair, e.g. ('outflow', ('wall', 'outflow'))"
        )
    return out[0], out[1]


def _ghosts(w: Tensor, sides: tuple[str, str]) -> Tensor:
    """``w = (h, eta, u_n, u_t)`` ``(B, 4, m, n)`` with two ghost cells on each side of the last axis: copies of
    the edge cell (outflow), or its mirror image (wall: the normal velocity ``u_n`` negated)."""
    n = w.shape[-1]
    lo = [1, 0] if sides[0] == "wall" else [0, 0]
    hi = [n - 1, n - 2] if sides[1] == "wall" else [n - 1, n - 1]
    index = torch.tensor([min(i, n - 1) for i in lo] + list(range(n)) + [max(i, 0) for i in hi], device=w.device)
    padded = w.index_select(-1, index).contiguous()
    for side, ghosts in ((sides[0], slice(0, 2)), (sides[1], slice(n + 2, n + 4))):
        if side == "wall":
            padded[:, 2, ..., ghosts] = -padded[:, 2, ..., ghosts]
    return padded


def _safe_sqrt(x: Tensor, wet: Tensor) -> Tensor:
    """``sqrt(x)`` where ``wet``, 0 elsewhere, with a finite gradient everywhere."""
    return torch.where(wet, torch.sqrt(torch.where(wet, x, torch.ones_like(x))), torch.zeros_like(x))


class ShallowWater2D:
    """The 2D shallow-water solver (module docstring: equations, scheme, boundaries).

    Args:
        grid: the `RectGrid`.
        gravity: ``g`` (9.81 by default; PDEBench's radial dam break uses 1).
        bathymetry: bed elevation ``b`` at the cells, ``(nx, ny)`` or one per trajectory ``(B, nx, ny)``;
            None: a flat bed ``b = 0``.
        boundary: ``"outflow"`` or ``"wall"`` on every side, or one per axis ``(x, y)``, each a kind or a
            ``(low side, high side)`` pair.
        scheme: the `ShallowWaterScheme` (MC limiter, HLL, SSP-RK3, CFL 0.4 by default).
    """

    def __init__(
        self,
        grid: RectGrid,
        gravity: float = 9.81,
        bathymetry: Tensor | None = None,
        boundary: str | Sequence = "outflow",
        scheme: ShallowWaterScheme = ShallowWaterScheme(),
    ) -> None:
        if not (gravity > 0 and math.isfinite(gravity)):
            raise ValueError(f"ShallowWater2D: gravity {gravity!r}: expected a number > 0")
        if bathymetry is not None:
            if bathymetry.shape[-2:] != (grid.nx, grid.ny) or bathymetry.ndim not in (2, 3):
                raise ValueError(
                    f"ShallowWater2D: bathymetry of shape {tuple(bathymetry.shape)}: expected ({grid.nx}, {grid.ny}) "
                    f"or (B, {grid.nx}, {grid.ny}), the bed at the cells of the grid"
                )
            if not torch.isfinite(bathymetry).all():
                raise ValueError("ShallowWater2D: bathymetry has non-finite values: expected a finite bed elevation")
        self.grid, self.gravity, self.scheme = grid, float(gravity), scheme
        self.bathymetry = bathymetry
        self.sides = _sides(boundary)
        self._beds: dict[tuple[torch.dtype, torch.device], Tensor] = {}  # the bed moved once per dtype and device

    # -- the semi-discrete operator -------------------------------------------------------------------------------
    def _bed(self, like: Tensor) -> Tensor:
        if self.bathymetry is None:
            return torch.zeros((1, *like.shape[-2:]), dtype=like.dtype, device=like.device)
        key = (like.dtype, like.device)
        b = self._beds.get(key)
        if b is None:
            b = self.bathymetry.to(dtype=like.dtype, device=like.device)
            b = b if b.ndim == 3 else b[None]
            if not b.requires_grad:  # a bed that takes gradients is converted in each graph
                self._beds[key] = b
        if b.shape[0] not in (1, like.shape[0]):
            raise ValueError(
                f"ShallowWater2D: bathymetry for {b.shape[0]} trajectories, state for {like.shape[0]}: expected one "
                "bed for all (nx, ny) or one per trajectory"
            )
        return b

    def rhs(self, U: Tensor) -> tuple[Tensor, Tensor]:
        """The semi-discrete operator: ``(dU/dt (B, 3, nx, ny), rate (B,))`` where ``rate = max|s_x| / dx +
        max|s_y| / dy`` over the faces (``s``: the flux's wave speeds), so ``dt = cfl / rate``."""
        h, hu, hv = U.unbind(1)
        wet = h > self.scheme.dry_depth
        denominator = torch.where(wet, h, torch.ones_like(h))
        u = torch.where(wet, hu / denominator, torch.zeros_like(h))
        v = torch.where(wet, hv / denominator, torch.zeros_like(h))
        eta = h + self._bed(U)
        # each sweep reads (h, eta, normal velocity, tangential velocity) along the last axis: the x-sweep the
        # transposed fields, through the same code as the y-sweep (a transposed state gives a transposed rhs)
        along_x, rate_x = self._sweep(torch.stack([h, eta, u, v], 1).transpose(-1, -2), self.sides[0], self.grid.dx)
        along_y, rate_y = self._sweep(torch.stack([h, eta, v, u], 1), self.sides[1], self.grid.dy)
        x, y = along_x.transpose(-1, -2), along_y  # (h, h u_n, h u_t) changes: x's u_n is u, y's is v
        dU = torch.stack([x[:, 0] + y[:, 0], x[:, 1] + y[:, 2], x[:, 2] + y[:, 1]], dim=1)
        return dU, rate_x + rate_y

    def _sweep(self, w: Tensor, sides: tuple[str, str], dx: float) -> tuple[Tensor, Tensor]:
        """Fluxes and sources along the last axis of ``w = (h, eta, u_n, u_t)`` ``(B, 4, m, n)``: the change of
        ``(h, h u_n, h u_t)`` per cell ``(B, 3, m, n)`` and the rate ``max|s| / dx`` ``(B,)``."""
        g = self.gravity
        w = _ghosts(w, sides)  # (B, 4, m, n + 4), contiguous
        d = w[..., 1:] - w[..., :-1]
        half = 0.5 * LIMITERS[self.scheme.limiter](d[..., :-1], d[..., 1:])  # padded cells 1 .. n + 2
        centre = w[..., 1:-1]
        lo, hi = centre - half, centre + half  # edge values: left and right edge of each cell
        # face k (k = 0..n) lies between padded cells k + 1 and k + 2: its left state is a right edge
        left, right = hi[..., :-1], lo[..., 1:]
        hL, eL, hR, eR = left[:, 0], left[:, 1], right[:, 0], right[:, 1]
        bed = torch.maximum(eL - hL, eR - hR)  # b* = max(b_L, b_R), b = eta - h at the edges
        hsL, hsR = (eL - bed).clamp_min(0), (eR - bed).clamp_min(0)
        flux, speed = self._flux(hsL, left[:, 2], left[:, 3], hsR, right[:, 2], right[:, 3])
        # cell i: faces i (left) and i + 1 (right); its own edge values are entries 1..n of the edge rows
        h_l, h_r, e_l, e_r = lo[:, 0, ..., 1:-1], hi[:, 0, ..., 1:-1], lo[:, 1, ..., 1:-1], hi[:, 1, ..., 1:-1]
        # Audusse et al.'s face corrections g/2 (h^2 - h*^2) and centred source g/2 (h_l + h_r)(b_l - b_r), summed
        # into g/2 (h*_right^2 - h*_left^2) + g/2 (h_l + h_r)(eta_l - eta_r): zero at rest, to round-off
        pressure = 0.5 * g * (hsL[..., 1:].square() - hsR[..., :-1].square() + (h_l + h_r) * (e_l - e_r))
        change = -(flux[..., 1:] - flux[..., :-1])
        change = torch.stack([change[:, 0], change[:, 1] + pressure, change[:, 2]], dim=1) / dx
        return change, speed.flatten(1).amax(1) / dx

    def _flux(self, hL: Tensor, uL: Tensor, tL: Tensor, hR: Tensor, uR: Tensor, tR: Tensor):
        """HLL (or Rusanov) flux of the reconstructed states along the face normal: ``(flux (B, 3, ...), speed)``,
        the flux of ``(h, h u_n, h u_t)`` and the largest wave speed at each face."""
        g, dry = self.gravity, self.scheme.dry_depth
        wetL, wetR = hL > dry, hR > dry
        zero = torch.zeros_like(hL)
        uL, tL = torch.where(wetL, uL, zero), torch.where(wetL, tL, zero)
        uR, tR = torch.where(wetR, uR, zero), torch.where(wetR, tR, zero)
        cL, cR = _safe_sqrt(g * hL, wetL), _safe_sqrt(g * hR, wetR)
        qL, qR = hL * uL, hR * uR
        FL = (qL, qL * uL + 0.5 * g * hL.square(), qL * tL)
        FR = (qR, qR * uR + 0.5 * g * hR.square(), qR * tR)
        jump = (hR - hL, qR - qL, hR * tR - hL * tL)
        if self.scheme.flux == "rusanov":
            a = torch.maximum(uL.abs() + cL, uR.abs() + cR)
            return torch.stack([0.5 * (fl + fr) - 0.5 * a * dq for fl, fr, dq in zip(FL, FR, jump)], 1), a
        both = wetL & wetR  # Toro's bounds; a dry side moves at the wet side's u -+ 2c
        sL = torch.where(both, torch.minimum(uL - cL, uR - cR), torch.where(wetL, uL - cL, uR - 2 * cR))
        sR = torch.where(both, torch.maximum(uL + cL, uR + cR), torch.where(wetR, uR + cR, uL + 2 * cL))
        lo, hi = sL.clamp_max(0), sR.clamp_min(0)
        width = hi - lo
        moving = width > 0
        width = torch.where(moving, width, torch.ones_like(width))
        flux = [
            torch.where(moving, (hi * fl - lo * fr + lo * hi * dq) / width, zero) for fl, fr, dq in zip(FL, FR, jump)
        ]
        return torch.stack(flux, 1), torch.maximum(sL.abs(), sR.abs())

    # -- time stepping --------------------------------------------------------------------------------------------
    def step(self, U: Tensor, dt: float | Tensor, first: Tensor | None = None) -> Tensor:
        """One SSP-RK step of size ``dt`` (a number, or one per trajectory ``(B,)``) from ``U (B, 3, nx, ny)``;
        ``first``: ``rhs(U)[0]`` if already computed. Depths that round-off leaves below zero (by less than
        `round_off` of the trajectory) are set to 0; a more negative depth is left for the caller to see."""
        dt = torch.as_tensor(dt, dtype=U.dtype, device=U.device).reshape(-1, 1, 1, 1)
        tolerance = self.round_off(U)[:, None, None, None]
        stage = U
        for k, a in enumerate(self.scheme.rk.weights):
            L = first if (k == 0 and first is not None) else self.rhs(stage)[0]
            euler = _round_off_to_zero(stage + dt * L, tolerance)
            stage = euler if a == 0.0 else _round_off_to_zero(a * U + (1 - a) * euler, tolerance)
        return stage

    def round_off(self, U: Tensor) -> Tensor:
        """Per trajectory ``(B,)``, the largest negative depth counted as round-off: ``1000 eps max(h)`` (``eps`` of
        the state's dtype); the scheme keeps depths non-negative in exact arithmetic."""
        with torch.no_grad():
            scale = U[:, 0].flatten(1).amax(1).clamp_min(self.scheme.dry_depth)
            return 1e3 * torch.finfo(U.dtype).eps * scale

    def rollout(self, U0: Tensor, times: Sequence[float] | Tensor) -> Tensor:
        """The states at ``times`` (increasing, from 0 = the time of ``U0``), ``(B, T, 3, nx, ny)``.

        Each trajectory steps with its own CFL step, cut so that it lands exactly on every output time; a
        trajectory that has arrived waits for the others unchanged. Raises `ShallowWaterStateError` if a state
        goes bad (the message names trajectory, time and cell), `ValueError` for bad input.
        """
        self._check_state(U0)
        t_out = np.asarray(torch.as_tensor(times, dtype=torch.float64).cpu(), dtype=np.float64)
        if t_out.ndim != 1 or t_out.size < 1 or not np.isfinite(t_out).all() or t_out[0] < 0:
            raise ValueError(f"times {times!r}: expected a 1D sequence of finite output times >= 0")
        if (np.diff(t_out) < 0).any():
            raise ValueError(f"times {times!r}: expected output times in increasing order")
        B = U0.shape[0]
        U = U0
        t = torch.zeros(B, dtype=torch.float64, device=U0.device)
        out, n_steps = [], 0
        for target in t_out.tolist():
            while True:
                active = t < target
                if not bool(active.any()):
                    break
                L, rate = self.rhs(U)
                with torch.no_grad():
                    cfl_dt = self.scheme.cfl / rate.double()
                    remaining = target - t
                    lands = active & (cfl_dt >= remaining)
                    dt = torch.where(active, torch.minimum(cfl_dt, remaining), torch.zeros_like(t))
                new = self.step(U, dt, first=L)
                U = torch.where(active[:, None, None, None], new, U)
                t = torch.where(lands, torch.full_like(t, target), t + dt)
                n_steps += 1
                self._check_step(U, t, rate, self.round_off(U), n_steps)
                if n_steps >= self.scheme.max_steps and bool((t < target).any()):
                    b = int((t < target).nonzero()[0])
                    raise ShallowWaterStateError(
                        f"shallow water: trajectory {b} stalled at t = {float(t[b]):.6g} after {n_steps} steps "
                        f"(scheme.max_steps), its last step {float(dt[b]):.3g}: a near-dry cell moving fast? raise "
                        "dry_depth, or max_steps"
                    )
            out.append(U)
        return torch.stack(out, dim=1)

    # -- checks ---------------------------------------------------------------------------------------------------
    def _check_state(self, U: Tensor) -> None:
        shape = (3, self.grid.nx, self.grid.ny)
        if U.ndim != 4 or tuple(U.shape[1:]) != shape:
            hint = ": add a batch axis with U[None]" if tuple(U.shape) == shape else ""
            raise ValueError(
                f"expected a state of shape (B, 3, {self.grid.nx}, {self.grid.ny}) (channels h, hu, hv), got "
                f"{tuple(U.shape)}{hint}"
            )
        if not U.is_floating_point():
            raise ValueError(f"expected a floating-point state (float64 for reference data), got {U.dtype}")
        if not torch.isfinite(U).all():
            raise ValueError("the initial state has non-finite values: expected finite h, hu, hv")
        if (U[:, 0] < 0).any():
            raise ValueError(f"the initial depth has negative values (min {float(U[:, 0].min()):.3g}): expected h >= 0")

    def _check_step(self, U: Tensor, t: Tensor, rate: Tensor, tolerance: Tensor, n_steps: int) -> None:
        with torch.no_grad():
            finite = torch.isfinite(U).flatten(1).all(1) & torch.isfinite(rate)
            negative = U[:, 0].flatten(1).amin(1) < -tolerance
            bad = ~finite | negative
            if not bool(bad.any()):
                return
            b = int(bad.nonzero()[0])
            what = "non-finite values" if not bool(finite[b]) else "a negative depth"
            cells = ~torch.isfinite(U[b]).all(0) if not bool(finite[b]) else U[b, 0] < -tolerance[b]
            cell = tuple(int(i) for i in cells.nonzero()[0]) if bool(cells.any()) else ()
        raise ShallowWaterStateError(
            f"shallow water: trajectory {b} went bad ({what} at cell {cell}, t = {float(t[b]):.6g}, step "
            f"{n_steps}); lower the CFL number (scheme.cfl = {self.scheme.cfl:g}) or check the initial state"
        )


def _round_off_to_zero(U: Tensor, tolerance: Tensor) -> Tensor:
    """``U`` with depths in ``[-tolerance, 0)`` set to 0 (``tolerance (B, 1, 1, 1)``)."""
    h = U[:, :1]
    h = torch.where((h < 0) & (h >= -tolerance), torch.zeros_like(h), h)
    return torch.cat([h, U[:, 1:]], dim=1)


def dam_break_exact(
    x: np.ndarray, t: float, h_left: float, h_right: float, gravity: float = 9.81, x0: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The exact 1D dam break on a flat frictionless bed, ``(h, u)`` at points ``x`` and time ``t > 0``.

    Still water ``h_left`` for ``x < x0`` and ``h_right`` beyond, released at ``t = 0``. With ``c = sqrt(g h)``:

    - ``h_right > 0`` (Stoker 1957; SWASHES 4.1.1): a rarefaction into the left state, a middle state ``(h_m,
      u_m)``, a shock into the right state. ``c_m = sqrt(g h_m)`` solves the Riemann invariant and the
      Rankine-Hugoniot conditions, ``2 (c_l - c_m) = (h_m - h_r) sqrt(g (h_m + h_r) / (2 h_m h_r))``, the root of
      SWASHES' polynomial ``-8 g h_r c_m^2 (c_l - c_m)^2 + (c_m^2 - g h_r)^2 (c_m^2 + g h_r) = 0`` in
      ``(c_r, c_l)``; ``u_m = 2 (c_l - c_m)``, the shock moves at ``2 c_m^2 (c_l - c_m) / (c_m^2 - g h_r)``.
    - ``h_right = 0`` (Ritter 1892; SWASHES 4.1.2): the rarefaction reaches the dry bed at ``x0 + 2 c_l t``.

    In the fan, ``h = (4 / 9g) (c_l - (x - x0) / (2t))^2`` and ``u = (2/3) ((x - x0) / t + c_l)``.
    """
    from scipy.optimize import brentq

    if not (h_left > h_right >= 0 and t > 0 and gravity > 0):
        raise ValueError(
            f"dam_break_exact: h_left {h_left}, h_right {h_right}, t {t}: expected h_left > h_right >= 0 and t > 0"
        )
    g = gravity
    x = np.asarray(x, dtype=np.float64)
    xi = (x - x0) / t
    cl, cr = math.sqrt(g * h_left), math.sqrt(g * h_right)
    h = np.full_like(xi, h_left)
    u = np.zeros_like(xi)
    if h_right == 0:
        head = 2 * cl
        fan = (xi > -cl) & (xi < head)
        h[fan] = (2 * cl - xi[fan]) ** 2 / (9 * g)
        u[fan] = 2 / 3 * (xi[fan] + cl)
        h[xi >= head] = 0.0
        return h, u

    def residual(cm: float) -> float:
        hm = cm**2 / g
        return 2 * (cl - cm) - (hm - h_right) * math.sqrt(g * (hm + h_right) / (2 * hm * h_right))

    cm = brentq(residual, cr, cl, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)
    um = 2 * (cl - cm)
    shock = 2 * cm**2 * (cl - cm) / (cm**2 - g * h_right)
    tail = 2 * cl - 3 * cm  # the end of the fan: u - c = u_m - c_m
    fan = (xi > -cl) & (xi <= tail)
    h[fan] = (2 * cl - xi[fan]) ** 2 / (9 * g)
    u[fan] = 2 / 3 * (xi[fan] + cl)
    middle = (xi > tail) & (xi <= shock)
    h[middle], u[middle] = cm**2 / g, um
    h[xi > shock] = h_right
    return h, u


def disc_depth(
    grid: RectGrid,
    radius: float,
    inside: float,
    outside: float,
    subsamples: int = 8,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Cell averages ``(nx, ny)`` of ``inside`` within the disc of ``radius`` about the origin and ``outside``
    beyond, each from ``subsamples^2`` equally spaced points per cell (exactly symmetric under ``x <-> y`` on a
    square grid)."""
    s = int(subsamples)
    fine = RectGrid(grid.nx * s, grid.ny * s, grid.x_range, grid.y_range)
    x, y = fine.centres(torch.float64)
    disc = (x.square() + y.square() <= radius**2).to(torch.float64)
    fraction = disc.reshape(grid.nx, s, grid.ny, s).sum(dim=(1, 3)) / s**2  # sums of 0/1: exact, order-free
    return (outside + (inside - outside) * fraction).to(dtype)
