"""Compressible Euler and Navier-Stokes equations of an ideal gas by finite volumes on uniform grids, 1D/2D/3D.

    rho_t + div(rho u) = 0
    (rho u)_t + div(rho u u + p I - sigma) = 0,      sigma = eta (grad u + grad u^T - 2/3 div u I) + zeta div u I
    E_t + div((E + p) u - u . sigma - kappa grad T) = 0,       E = p / (gamma - 1) + rho |u|^2 / 2,   T = p / rho

(``eta``, ``zeta``: shear and bulk viscosity as PDEBench's compressible Navier-Stokes; ``eta = zeta = kappa = 0`` is
the Euler system.) The scheme (Toro, "Riemann Solvers and Numerical Methods for Fluid Dynamics", 3rd ed.):

- second-order MUSCL reconstruction in primitive variables with a TVD limiter (``minmod``, ``van_leer``, ``mc``),
  a cell whose reconstructed density or pressure would not be positive falling back to a constant;
- the HLLC (Toro section 10.4) or Rusanov (eq. 10.56) flux along each axis (unsplit, dimension by dimension),
  optionally with Thornber et al.'s (2008) low-Mach correction of the face velocities
  (``FiniteVolumeScheme(low_mach=True)``);
- viscous and heat fluxes by second-order central differences at the faces;
- SSP-RK2 or SSP-RK3 (Shu and Osher 1988) with a step ``dt = cfl / (max sum_a (|u_a| + c) / h_a + 2 nu sum_a
  h_a^-2)`` per trajectory (the batch's trajectories step independently), shortened to land exactly on each output
  time;
- a step whose result has a density or pressure ``<= 0`` (or a non-finite value) is redone at first order (HLLC /
  Rusanov with constant states, positivity preserving at these CFL numbers); still bad, it raises
  :class:`NonPhysicalStateError`, so no NaN is ever returned.

Boundaries per side: ``"periodic"``, ``"outflow"`` (zero gradient) or ``"wall"`` (reflective, free slip).
Everything is torch on whole ``(B, C, *space)`` tensors (CPU or CUDA, differentiable; the step size is not
differentiated). Conserved channels ``(rho, rho u_1, ..., rho u_d, E)``.

Examples:
    Sod's shock tube on 400 cells against the exact solution (Toro ch. 4):

    >>> import numpy as np
    >>> sod = shock_tube((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), n_cells=400, t_end=0.2)
    >>> exact = riemann_cell_averages((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), np.linspace(0, 1, 401), 0.2,
    ...                               x_interface=0.5)
    >>> bool(np.abs(sod.density - exact[0]).mean() < 2e-3)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ._compressible_riemann import exact_riemann, riemann_cell_averages, riemann_star_state
from ._compressible_scheme import (
    BOUNDARIES,
    FLUXES,
    LIMITERS,
    low_mach_correction,
    pad,
    reconstruct,
    riemann_flux,
    to_conserved,
    to_primitive,
    viscous_fluxes,
)

__all__ = [
    "IdealGas",
    "SSPRungeKutta",
    "SSP_RK2",
    "SSP_RK3",
    "STEPPERS",
    "FiniteVolumeScheme",
    "CompressibleSolver",
    "NonPhysicalStateError",
    "ShockTubeSolution",
    "shock_tube",
    "exact_riemann",
    "riemann_cell_averages",
    "riemann_star_state",
    "to_conserved",
    "to_primitive",
]


class NonPhysicalStateError(FloatingPointError):
    """A state with density or pressure ``<= 0`` or a non-finite value, even after the first-order fallback (a
    ``FloatingPointError``, as the other solvers' blow-ups, so `pdeforge generate` reports it as one)."""


@dataclass(frozen=True)
class IdealGas:
    """An ideal gas: ``gamma`` (ratio of specific heats), shear viscosity ``eta``, bulk viscosity ``zeta`` and heat
    conductivity ``kappa`` (``q = -kappa grad T``, ``T = p / rho``). All transport coefficients 0: the Euler system."""

    gamma: float = 1.4
    eta: float = 0.0
    zeta: float = 0.0
    kappa: float = 0.0

    def __post_init__(self) -> None:
        if not self.gamma > 1:
            raise ValueError(f"IdealGas: gamma = {self.gamma}: expected > 1")
        for k in ("eta", "zeta", "kappa"):
            if not getattr(self, k) >= 0:
                raise ValueError(f"IdealGas: {k} = {getattr(self, k)}: expected >= 0")

    @property
    def viscous(self) -> bool:
        return bool(self.eta or self.zeta or self.kappa)

    def diffusivity(self) -> float:
        """The largest diffusivity times density: ``max(4/3 eta + zeta, (gamma - 1) kappa)`` (divide by ``rho``)."""
        return max(4.0 / 3.0 * self.eta + self.zeta, (self.gamma - 1.0) * self.kappa)


@dataclass(frozen=True)
class SSPRungeKutta:
    """A strong-stability-preserving Runge-Kutta method in Shu-Osher form: stage ``i`` (from 1) is
    ``U_i = sum_k alpha[i-1][k] U_k + beta[i-1] dt L(U_{i-1})``, ``U_0 = U^n``, the last stage ``U^{n+1}``."""

    name: str
    order: int
    alpha: tuple[tuple[float, ...], ...]
    beta: tuple[float, ...]


SSP_RK2 = SSPRungeKutta("ssp_rk2", 2, ((1.0,), (0.5, 0.5)), (1.0, 0.5))
SSP_RK3 = SSPRungeKutta("ssp_rk3", 3, ((1.0,), (0.75, 0.25), (1.0 / 3.0, 0.0, 2.0 / 3.0)), (1.0, 0.25, 2.0 / 3.0))
STEPPERS = {s.name: s for s in (SSP_RK2, SSP_RK3)}


@dataclass(frozen=True)
class FiniteVolumeScheme:
    """The numerics: ``flux`` (``"hllc"`` or ``"rusanov"``), ``limiter`` (``"minmod"``, ``"van_leer"``, ``"mc"``;
    ``None`` for the first-order scheme), ``stepper`` (``"ssp_rk2"`` or ``"ssp_rk3"``), ``cfl`` (<= 0.5 keeps the
    MUSCL scheme positive in practice).

    ``low_mach``: the low-Mach correction of Thornber, Mosedale, Drikakis, Youngs and Williams (J. Comput. Phys. 227,
    2008, "An improved reconstruction method for compressible flows with low Mach number features"): before the
    Riemann solver, the reconstructed face velocities (all components) become ``u_L' = (u_L + u_R) / 2 + z (u_L -
    u_R) / 2``, ``u_R' = (u_L + u_R) / 2 - z (u_L - u_R) / 2`` with ``z = min(1, max(M_L, M_R))``, ``M = |u| / c``
    (:func:`~pdeforge.solvers._compressible_scheme.low_mach_correction`). The upwind flux's dissipation of kinetic
    energy, which scales with the sound speed, then scales with the flow speed: for nearly incompressible flows (Mach
    <= 0.3). Off by default; the first-order fallback step is not corrected. The flux stays single-valued per face,
    so the scheme stays conservative."""

    flux: str = "hllc"
    limiter: str | None = "mc"
    stepper: str = "ssp_rk2"
    cfl: float = 0.5
    low_mach: bool = False

    def __post_init__(self) -> None:
        if self.flux not in FLUXES:
            raise ValueError(f"FiniteVolumeScheme: flux {self.flux!r}: expected one of {FLUXES}")
        if self.limiter is not None and self.limiter not in LIMITERS:
            raise ValueError(f"FiniteVolumeScheme: limiter {self.limiter!r}: expected one of {LIMITERS} or None")
        if self.stepper not in STEPPERS:
            raise ValueError(f"FiniteVolumeScheme: stepper {self.stepper!r}: expected one of {tuple(STEPPERS)}")
        if not 0 < self.cfl <= 1:
            raise ValueError(f"FiniteVolumeScheme: cfl = {self.cfl}: expected 0 < cfl <= 1")
        if not isinstance(self.low_mach, bool):
            raise ValueError(f"FiniteVolumeScheme: low_mach = {self.low_mach!r}: expected True or False")


def _boundaries(spec: str | Sequence, ndim: int) -> tuple[tuple[str, str], ...]:
    """``"wall"`` (all sides), or one entry per axis: a kind or a ``(low, high)`` pair."""
    entries = [spec] * ndim if isinstance(spec, str) else list(spec)
    if len(entries) != ndim:
        raise ValueError(f"boundaries {spec!r}: expected one entry per axis ({ndim}), a kind or a (low, high) pair")
    out = []
    for e in entries:
        low, high = (e, e) if isinstance(e, str) else tuple(e)
        for kind in (low, high):
            if kind not in BOUNDARIES:
                raise ValueError(f"boundaries {spec!r}: {kind!r}: expected one of {BOUNDARIES}")
        if (low == "periodic") != (high == "periodic"):
            raise ValueError(f"boundaries {spec!r}: periodic must be on both sides of an axis")
        out.append((low, high))
    return tuple(out)


class CompressibleSolver:
    """Finite-volume solver of the compressible Euler / Navier-Stokes equations (module docstring).

    Args:
        shape: cells per axis ``(N_1, ..., N_d)``, ``d`` in 1..3, each ``>= 3``.
        lengths: domain length per axis (a float for all); cell ``i`` spans ``[i h, (i + 1) h)``.
        gas: :class:`IdealGas`.
        scheme: :class:`FiniteVolumeScheme`.
        boundaries: ``"periodic"`` / ``"outflow"`` / ``"wall"`` for all sides, or per axis a kind or ``(low, high)``.

    States are conserved ``(B, 2 + d, *shape)`` tensors; :meth:`conserved` / :meth:`primitive` convert.
    """

    def __init__(
        self,
        shape: Sequence[int] | int,
        lengths: Sequence[float] | float = 1.0,
        *,
        gas: IdealGas = IdealGas(),
        scheme: FiniteVolumeScheme = FiniteVolumeScheme(),
        boundaries: str | Sequence = "periodic",
    ) -> None:
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if not 1 <= len(shape) <= 3 or min(shape) < 3:
            raise ValueError(f"CompressibleSolver: shape {shape}: expected 1 to 3 axes of >= 3 cells each")
        lengths = (float(lengths),) * len(shape) if isinstance(lengths, (int, float)) else tuple(map(float, lengths))
        if len(lengths) != len(shape) or min(lengths) <= 0:
            raise ValueError(f"CompressibleSolver: lengths {lengths}: expected {len(shape)} positive lengths")
        self.shape, self.lengths, self.ndim = shape, lengths, len(shape)
        self.spacing = tuple(length / n for length, n in zip(lengths, shape))
        self.gas, self.scheme = gas, scheme
        self.boundaries = _boundaries(boundaries, self.ndim)
        self.stepper = STEPPERS[scheme.stepper]

    # -- conversions and grid ------------------------------------------------------------------------------------
    def primitive(self, u: Tensor) -> Tensor:
        """Conserved ``(rho, m, E)`` -> primitive ``(rho, u, p)``, ``(B, 2 + d, *shape)``."""
        return to_primitive(u, self.gas.gamma)

    def conserved(self, w: Tensor) -> Tensor:
        """Primitive ``(rho, u, p)`` -> conserved ``(rho, m, E)``, ``(B, 2 + d, *shape)``."""
        return to_conserved(w, self.gas.gamma)

    def cell_centres(self, dtype: torch.dtype = torch.float64) -> list[Tensor]:
        """The cell centres ``(i + 1/2) h`` of each axis."""
        return [(torch.arange(n, dtype=dtype) + 0.5) * h for n, h in zip(self.shape, self.spacing)]

    def _check(self, u: Tensor) -> None:
        want = (2 + self.ndim, *self.shape)
        if u.ndim != 2 + self.ndim or tuple(u.shape[1:]) != want:
            raise ValueError(
                f"CompressibleSolver: state of shape {tuple(u.shape)}: expected (B, {', '.join(map(str, want))}) "
                "(conserved rho, momenta, E; add a batch axis with u[None])"
            )

    # -- the semi-discrete operator --------------------------------------------------------------------------------
    def rhs(self, u: Tensor, first_order: bool = False) -> Tensor:
        """``dU/dt = -sum_a (F_{a, i+1/2} - F_{a, i-1/2}) / h_a`` for conserved ``u`` ``(B, 2 + d, *shape)``."""
        gamma = self.gas.gamma
        w = to_primitive(u, gamma)
        limiter = None if first_order else self.scheme.limiter
        if self.gas.viscous:
            w1 = w
            for a, (low, high) in enumerate(self.boundaries):
                w1 = pad(w1, 2 + a, 1, low, high, 1 + a)
            visc = viscous_fluxes(w1, self.spacing, self.gas.eta, self.gas.zeta, self.gas.kappa)
        du = None
        for a, (low, high) in enumerate(self.boundaries):
            dim, n = 2 + a, self.shape[a]
            wl, wr = reconstruct(pad(w, dim, 2, low, high, 1 + a), dim, limiter)
            if self.scheme.low_mach and not first_order:
                wl, wr = low_mach_correction(wl, wr, gamma)
            f = riemann_flux(wl, wr, 1 + a, gamma, self.scheme.flux)
            if self.gas.viscous:
                f = f + visc[a]
            term = (f.narrow(dim, 1, n) - f.narrow(dim, 0, n)) * (1.0 / self.spacing[a])
            du = -term if du is None else du - term
        return du

    def _inspect(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(dt_max, bad)`` per trajectory: the CFL step and whether the state is non-physical."""
        w = to_primitive(u, self.gas.gamma)
        rho, p = w[:, :1], w[:, -1:]
        flat = lambda x: x.flatten(1)  # noqa: E731
        bad = ~(flat(rho > 0).all(1) & flat(p > 0).all(1) & flat(torch.isfinite(w)).all(1))
        c = torch.sqrt(self.gas.gamma * p.clamp_min(0) / rho.clamp_min(torch.finfo(u.dtype).tiny))
        rate = sum((w[:, 1 + a : 2 + a].abs() + c) / h for a, h in enumerate(self.spacing))
        rate = flat(rate).amax(1)
        if self.gas.viscous:
            rate = rate + 2.0 * self.gas.diffusivity() * sum(h**-2 for h in self.spacing) / flat(rho).amin(1)
        return (self.scheme.cfl / rate).detach(), bad

    def max_stable_dt(self, u: Tensor) -> Tensor:
        """The CFL time step of each trajectory, ``(B,)``."""
        return self._inspect(u)[0]

    def step(self, u: Tensor, dt: Tensor | float, first_order: bool = False) -> Tensor:
        """One SSP-RK step of size ``dt`` (a float or ``(B,)``, one per trajectory)."""
        if isinstance(dt, Tensor):
            dt = dt.to(u.dtype).view(-1, *[1] * (u.ndim - 1))
        stages = [u]
        for alpha, beta in zip(self.stepper.alpha, self.stepper.beta):
            nxt = beta * dt * self.rhs(stages[-1], first_order)
            for a, s in zip(alpha, stages):
                if a:
                    nxt = nxt + a * s
            stages.append(nxt)
        return stages[-1]

    def advance(self, u: Tensor, t_end: float, t_start: float = 0.0, max_steps: int = 10_000_000) -> Tensor:
        """The state at ``t_end`` from ``u`` at ``t_start``: CFL steps per trajectory, the last one shortened to land
        exactly on ``t_end``. Raises :class:`NonPhysicalStateError` (naming the trajectories and the time) when a
        state goes bad after the first-order retry."""
        self._check(u)
        batch = u.shape[0]
        dt_max, bad = self._inspect(u)
        if bool(bad.any()):
            raise NonPhysicalStateError(
                f"initial state of trajectories {bad.nonzero().flatten().tolist()}: density and pressure must be "
                "positive and finite"
            )
        t = torch.full((batch,), float(t_start), dtype=torch.float64, device=u.device)
        end = torch.tensor(float(t_end), dtype=torch.float64, device=u.device)
        for _ in range(max_steps):
            remaining = end - t
            active = remaining > 0
            if not bool(active.any()):
                return u
            dt_max = dt_max.to(torch.float64)
            if not bool(((dt_max > 0) & torch.isfinite(dt_max))[active].all()):
                raise NonPhysicalStateError(f"time step {dt_max.tolist()} at t = {t.tolist()}: expected > 0")
            last = active & (dt_max >= remaining)
            dt = torch.where(active, torch.minimum(dt_max, remaining), torch.zeros_like(remaining))
            new = self.step(u, dt)
            dt_new, bad = self._inspect(new)
            if bool(bad.any()):  # redo those trajectories' step at first order
                retry = self.step(u, dt, first_order=True)
                new = torch.where(bad.view(-1, *[1] * (u.ndim - 1)), retry, new)
                dt_new, bad = self._inspect(new)
                if bool(bad.any()):
                    idx = bad.nonzero().flatten().tolist()
                    raise NonPhysicalStateError(
                        f"trajectories {idx}: density or pressure <= 0 (or not finite) after the step from t = "
                        f"{[float(t[i]) for i in idx]} even at first order; lower the CFL number or check the data"
                    )
            u, dt_max = new, dt_new
            t = torch.where(last, end, t + dt)
        raise NonPhysicalStateError(f"no arrival at t = {t_end} in {max_steps} steps (time step collapsed?)")

    def solve(self, u0: Tensor, times: Sequence[float]) -> Tensor:
        """The states at ``times`` (non-decreasing, from ``times[0]``, the time of ``u0``): ``(B, T, 2 + d,
        *shape)``, ``u0`` first."""
        times = [float(t) for t in times]
        if any(b < a for a, b in zip(times, times[1:])):
            raise ValueError(f"CompressibleSolver.solve: times {times}: expected non-decreasing")
        out = [u0]
        for t0, t1 in zip(times, times[1:]):
            out.append(self.advance(out[-1], t1, t0))
        return torch.stack(out, 1)


class ShockTubeSolution(NamedTuple):
    """Cell centres and cell averages at ``t_end``, float64 numpy arrays ``(n_cells,)``."""

    x: np.ndarray
    density: np.ndarray
    velocity: np.ndarray
    pressure: np.ndarray


def shock_tube(
    left: Sequence[float],
    right: Sequence[float],
    *,
    n_cells: int,
    t_end: float,
    gamma: float = 1.4,
    length: float = 1.0,
    x_interface: float = 0.5,
    cfl: float = 0.5,
) -> ShockTubeSolution:
    """A 1D Riemann problem ``left | right`` (each ``(rho, u, p)``) on ``[0, length]`` with outflow boundaries, by
    MUSCL (MC limiter, primitive variables) + HLLC + SSP-RK2 in float64 on the CPU.

    The initial cell averages are exact (the cell holding ``x_interface`` gets the conserved average of both
    states). Returns :class:`ShockTubeSolution` ``(x, density, velocity, pressure)``: cell centres and the
    cell-average density, velocity ``m / rho`` and pressure at ``t_end``, numpy float64 ``(n_cells,)``.
    """
    for name, state in (("left", left), ("right", right)):
        if len(tuple(state)) != 3 or not (state[0] > 0 and state[2] > 0):
            raise ValueError(f"shock_tube: {name} = {state!r}: expected (rho, u, p) with rho > 0 and p > 0")
    if not 0 <= x_interface <= length:
        raise ValueError(f"shock_tube: x_interface = {x_interface}: expected within [0, length = {length}]")
    if not t_end >= 0 or not math.isfinite(t_end):
        raise ValueError(f"shock_tube: t_end = {t_end}: expected a finite time >= 0")
    solver = CompressibleSolver(
        (n_cells,), length, gas=IdealGas(gamma), scheme=FiniteVolumeScheme(cfl=cfl), boundaries="outflow"
    )
    edges = torch.linspace(0.0, length, n_cells + 1, dtype=torch.float64)
    frac = ((x_interface - edges[:-1]) / (edges[1:] - edges[:-1])).clamp(0.0, 1.0)  # share of the left state
    ul, ur = (to_conserved(torch.tensor(s, dtype=torch.float64).view(1, 3, 1), gamma) for s in (left, right))
    u = frac * ul + (1.0 - frac) * ur
    with torch.no_grad():
        w = solver.primitive(solver.advance(u, float(t_end)))[0].numpy()
    return ShockTubeSolution(solver.cell_centres()[0].numpy(), w[0], w[1], w[2])
