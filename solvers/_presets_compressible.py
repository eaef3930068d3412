"""Presets of the compressible Euler / Navier-Stokes solver (:mod:`pdeforge.solvers.compressible`).

Stored as PDEBench's compressible data are imported (``datasets/_pdebench.py``): ``density`` and ``pressure`` t0
fields, ``velocity`` a t1 field, so the channels are ``density, pressure, velocity_x[, velocity_y]`` and generated
and imported data train the same way. Fields are cell averages at the cell centres ``(i + 1/2) h``.

The random initial conditions follow PDEBench's generator (Takamoto et al. 2022, ``data_gen_NLE/utils.py``,
``init_multi_HD``, ``init_multi_HD_2DRand``, ``init_multi_HD_2DTurb``, ``init_multi_HD_KH``), drawn from torch
generators per trajectory (the numbers differ from PDEBench's JAX keys; the distributions are the same). Deviations:
wavenumbers are ``2 pi k / L`` (PDEBench's 1D generator divides by the span of the cell centres, a field not quite
periodic), and the windows' edges are fractions of the domain. ``kelvin_helmholtz_2d`` is not PDEBench's vortex sheet
but a smooth, viscous shear layer with PDEBench's draws (:class:`SmoothKelvinHelmholtz`): the sheet has no converged
solution; :class:`KelvinHelmholtz` stays for it.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..datasets import FieldSpec, Schema
from ._presets import AbstractPreset, Solved, trajectory_generator
from ._resolution import ResolutionCheck
from .compressible import CompressibleSolver, FiniteVolumeScheme, IdealGas

__all__ = [
    "AbstractCompressibleInitial",
    "ShockTubes",
    "FourQuadrantRiemann",
    "PDEBenchRandom1D",
    "PDEBenchRandom2D",
    "PDEBenchTurbulence2D",
    "KelvinHelmholtz",
    "SmoothKelvinHelmholtz",
    "CompressiblePreset",
    "COMPRESSIBLE_PRESETS",
]

F64 = torch.float64


def _uniform(g: torch.Generator, low: float, high: float, n: int = 1) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=g, dtype=F64)


def _log_uniform(g: torch.Generator, low: float, high: float) -> float:
    return math.exp(float(_uniform(g, math.log(low), math.log(high))))


def _window(x: Tensor, length: float, g: torch.Generator) -> Tensor:
    """PDEBench's window ``(tanh((x - x_L) / 0.01) - tanh((x - x_R) / 0.01)) / 2``, ``x_L / L`` in [0.1, 0.45],
    ``x_R / L`` in [0.55, 0.9]."""
    lo, hi = float(_uniform(g, 0.1, 0.45)) * length, float(_uniform(g, 0.55, 0.9)) * length
    return 0.5 * (torch.tanh((x - lo) / 0.01) - torch.tanh((x - hi) / 0.01))


class AbstractCompressibleInitial(ABC):
    """Initial primitive states drawn per trajectory: ``__call__(centres, lengths, gamma, generator)`` ->
    ``(1, 2 + d, *space)`` ``(rho, u_1..u_d, p)`` at the cell centres (``centres``: one float64 tensor per axis).
    Every random number is drawn before the grid is touched, so the same draw on a finer grid is the same flow."""

    @abstractmethod
    def __call__(self, centres: list[Tensor], lengths: tuple[float, ...], gamma: float, g: torch.Generator) -> Tensor:
        """The primitive initial state of one trajectory."""


@dataclass(frozen=True)
class ShockTubes(AbstractCompressibleInitial):
    """Sod-type Riemann problems: ``rho_L`` in [0.5, 2], ``p_L`` in [0.5, 2], ``rho_R`` in [0.05, 0.5], ``p_R`` in
    [0.05, 0.5] (log-uniform), both at rest, the interface uniform in ``[0.3, 0.7] L``. Sod is ``(1, 0, 1 | 0.125, 0,
    0.1)`` at ``0.5``."""

    def __call__(self, centres, lengths, gamma, g):
        rl, pl = _log_uniform(g, 0.5, 2.0), _log_uniform(g, 0.5, 2.0)
        rr, pr = _log_uniform(g, 0.05, 0.5), _log_uniform(g, 0.05, 0.5)
        x0 = float(_uniform(g, 0.3, 0.7)) * lengths[0]
        left = centres[0] < x0
        rho, p = torch.where(left, rl, rr), torch.where(left, pl, pr)
        return torch.stack([rho, torch.zeros_like(rho), p])[None]


@dataclass(frozen=True)
class FourQuadrantRiemann(AbstractCompressibleInitial):
    """Four-quadrant Riemann problems (the setting of Lax and Liu 1998): four constant states meeting at ``(x_0,
    y_0)`` uniform in ``[0.35, 0.65]^2 L``; each state's density and pressure log-uniform in [0.25, 2], velocity
    components uniform in [-0.5, 0.5]."""

    def __call__(self, centres, lengths, gamma, g):
        states = [
            (_log_uniform(g, 0.25, 2.0), *_uniform(g, -0.5, 0.5, 2).tolist(), _log_uniform(g, 0.25, 2.0))
            for _ in range(4)
        ]
        x0, y0 = (float(_uniform(g, 0.35, 0.65)) * length for length in lengths)
        xx, yy = torch.meshgrid(centres[0], centres[1], indexing="ij")
        quadrant = (xx >= x0).long() + 2 * (yy >= y0).long()  # 0 lower left, 1 lower right, 2 upper left, 3 upper right
        table = torch.tensor(states, dtype=F64)  # (4, 4)
        return table[quadrant].permute(2, 0, 1)[None].contiguous()


@dataclass(frozen=True)
class PDEBenchRandom1D(AbstractCompressibleInitial):
    """PDEBench's 1D random data (``init_multi_HD``): each of density, velocity, pressure a sum of ``sin(k x + phi)``
    over two wavenumbers drawn from ``2 pi / L {1..k_tot}`` (amplitudes in [0, 1]), its absolute value with
    probability 0.1, a random sign, a tanh window with probability 0.5; density and pressure rescaled to ``[b, b + m]``
    with ``m, b`` log-uniform in [1, 10] and [10, 100]."""

    k_tot: int = 3

    def _field(self, x: Tensor, length: float, g: torch.Generator, scale: tuple[float, float] | None) -> Tensor:
        chosen = torch.randint(0, self.k_tot, (2,), generator=g)
        amp, phase = torch.rand(2, generator=g, dtype=F64), 2 * math.pi * torch.rand(2, generator=g, dtype=F64)
        take_abs, sign = (
            bool(torch.rand((), generator=g) < 0.1),
            1.0 if bool(torch.rand((), generator=g) < 0.5) else -1.0,
        )
        windowed = bool(torch.rand((), generator=g) < 0.5)
        window = _window(x, length, g)
        m, b = (_log_uniform(g, *scale), _log_uniform(g, *scale)) if scale else (1.0, 0.0)
        k = 2 * math.pi * (chosen.to(F64) + 1) / length
        u = (amp[:, None] * torch.sin(k[:, None] * x + phase[:, None])).sum(0)
        u = sign * (u.abs() if take_abs else u)
        if windowed:
            u = u * window
        if scale:
            u = u - u.min()
            u = u / u.max().clamp_min(1e-12) * m + b
        return u

    def __call__(self, centres, lengths, gamma, g):
        x, length = centres[0], lengths[0]
        rho = self._field(x, length, g, (1.0, 10.0))
        p = self._field(x, length, g, (10.0, 100.0))
        u = self._field(x, length, g, None)
        return torch.stack([rho, u, p])[None]


def _modes(k_tot: int, lengths: tuple[float, ...]) -> list[tuple[float, float, float]]:
    """``(k_x, k_y, |k|^-1/2)`` for ``i, j`` in ``-k_tot..k_tot`` with ``i j != 0`` (PDEBench's 2D spectrum)."""
    out = []
    for j in range(-k_tot, k_tot + 1):
        for i in range(-k_tot, k_tot + 1):
            if i * j:
                kx, ky = 2 * math.pi * i / lengths[0], 2 * math.pi * j / lengths[1]
                out.append((kx, ky, (kx**2 + ky**2) ** -0.25))
    return out


@dataclass(frozen=True)
class PDEBenchRandom2D(AbstractCompressibleInitial):
    """PDEBench's 2D random data (``init_multi_HD_2DRand``): ``rho_0`` in [0.1, 10], ``T_0`` in [0.1, 10], ``p_0 =
    rho_0 T_0``; velocity, density and pressure fluctuations sums of ``|k|^-1/2 sin(k . x + phi)`` over ``|i|, |j| <=
    k_tot``, ``i j != 0``; the velocity scaled to mean speed ``mach sqrt(gamma T_0)``, ``rho = rho_0 (1 + d_rho f /
    mean|f|)``, ``p = p_0 (1 + d_p f / mean|f|)`` with ``d_rho, d_p`` in [0.01, 0.2]; with probability 0.5 the
    fluctuations sit in a tanh window (``rho_0``, ``p_0`` at rest outside)."""

    mach: float = 0.1
    k_tot: int = 4

    def __call__(self, centres, lengths, gamma, g):
        rho0, del_rho = float(_uniform(g, 0.1, 10.0)), float(_uniform(g, 0.01, 0.2))
        temp0, del_p = float(_uniform(g, 0.1, 10.0)), float(_uniform(g, 0.01, 0.2))
        modes = _modes(self.k_tot, lengths)
        phases = 2 * math.pi * torch.rand(len(modes), 4, generator=g, dtype=F64)
        windowed = bool(torch.rand((), generator=g) < 0.5)
        wx, wy = _window(centres[0], lengths[0], g), _window(centres[1], lengths[1], g)
        xx, yy = torch.meshgrid(centres[0], centres[1], indexing="ij")
        f = torch.zeros(4, *xx.shape, dtype=F64)  # vx, vy, p, rho
        for (kx, ky, amp), phase in zip(modes, phases):
            f += amp * torch.sin((kx * xx + ky * yy)[None] + phase[:, None, None])
        p0, u0 = rho0 * temp0, self.mach * math.sqrt(gamma * temp0)
        vel = f[:2] * (u0 / (f[0] ** 2 + f[1] ** 2).sqrt().mean())
        p = p0 * (1 + del_p * f[2] / f[2].abs().mean())
        rho = rho0 * (1 + del_rho * f[3] / f[3].abs().mean())
        w = torch.stack([rho, vel[0], vel[1], p])
        if windowed:
            mask = wx[:, None] * wy[None, :]
            w = w * mask + torch.tensor([rho0, 0.0, 0.0, p0], dtype=F64).view(4, 1, 1) * (1 - mask)
        return w[None]


@dataclass(frozen=True)
class PDEBenchTurbulence2D(AbstractCompressibleInitial):
    """PDEBench's turbulent 2D data (``init_multi_HD_2DTurb``): ``rho = 1``, ``p = 1 / (gamma mach^2)`` (sound speed
    ``1 / mach``), velocity a sum of ``|k|^-1/2 sin(k . x + phi)`` over ``|i|, |j| <= k_tot``, ``i j != 0``, made
    divergence-free by an FFT projection and scaled to mean speed 1."""

    mach: float = 0.1
    k_tot: int = 4

    def __call__(self, centres, lengths, gamma, g):
        modes = _modes(self.k_tot, lengths)
        phases = 2 * math.pi * torch.rand(len(modes), 2, generator=g, dtype=F64)
        xx, yy = torch.meshgrid(centres[0], centres[1], indexing="ij")
        v = torch.zeros(2, *xx.shape, dtype=F64)
        for (kx, ky, amp), phase in zip(modes, phases):
            v += amp * torch.sin((kx * xx + ky * yy)[None] + phase[:, None, None])
        vh = torch.fft.fftn(v, dim=(-2, -1))
        kx = torch.fft.fftfreq(xx.shape[0], dtype=F64).view(-1, 1)
        ky = torch.fft.fftfreq(xx.shape[1], dtype=F64).view(1, -1)
        k2 = kx**2 + ky**2
        div = (kx * vh[0] + ky * vh[1]) / torch.where(k2 > 0, k2, 1.0)
        v = torch.fft.ifftn(torch.stack([vh[0] - kx * div, vh[1] - ky * div]), dim=(-2, -1)).real
        v = v / (v[0] ** 2 + v[1] ** 2).sqrt().mean()
        rho = torch.ones_like(xx)
        return torch.stack([rho, v[0], v[1], rho / (gamma * self.mach**2)])[None]


def _shear_layer_draws(g: torch.Generator, max_ratio: float) -> tuple[float, int]:
    """PDEBench's Kelvin-Helmholtz draws (``init_multi_HD_KH``), in this order: the density ratio ``r`` uniform in
    ``[1 / max_ratio, max_ratio]`` and the mode ``k`` in {1, 2, 3} (both layers draw them here: one seed, one
    ``r, k``)."""
    ratio = float(_uniform(g, 1.0 / max_ratio, max_ratio))
    return ratio, int(torch.randint(1, 4, (), generator=g))


@dataclass(frozen=True)
class KelvinHelmholtz(AbstractCompressibleInitial):
    """PDEBench's Kelvin-Helmholtz data (``init_multi_HD_KH``): a shear layer ``u_x = +1`` above ``y = L_y / 2 +
    0.005 L_y sin(2 pi k x / L_x)``, ``-1`` below, density ratio ``r`` in ``[1 / max_ratio, max_ratio]`` (``rho =
    2 / (r + 1)`` above, ``2 r / (r + 1)`` below), ``k`` in {1, 2, 3}, uniform pressure ``1 / (gamma mach^2)``.

    A vortex sheet: inviscid (PDEBench's eta = zeta = 1e-8) it has no converged solution, its secondary instabilities
    sit at the grid scale at every resolution. ``kelvin_helmholtz_2d`` uses :class:`SmoothKelvinHelmholtz`; this one
    stays reachable as ``initial=KelvinHelmholtz(mach=1.0)`` (with ``eta=1e-8, zeta=1e-8, kappa=0.0,
    low_mach=False, frame_interval=0.1``: the preset as it was)."""

    mach: float = 0.1
    max_ratio: float = 2.0

    def __call__(self, centres, lengths, gamma, g):
        ratio, k = _shear_layer_draws(g, self.max_ratio)
        xx, yy = torch.meshgrid(centres[0], centres[1], indexing="ij")
        above = yy > 0.5 * lengths[1] + 0.005 * lengths[1] * torch.sin(2 * math.pi * k * xx / lengths[0])
        up = 2.0 / (ratio + 1.0)
        rho = torch.where(above, up, ratio * up)
        p = torch.full_like(xx, 0.5 * (up + ratio * up) / (gamma * self.mach**2))
        return torch.stack([rho, torch.where(above, 1.0, -1.0), torch.zeros_like(xx), p])[None]


@dataclass(frozen=True)
class SmoothKelvinHelmholtz(AbstractCompressibleInitial):
    """A Kelvin-Helmholtz shear layer of finite thickness, the well-posed problem of McNally, Lyra and Passy 2012
    (ApJS 201, 18) and Lecoanet et al. 2016 (MNRAS 455, 4274), with PDEBench's draws (``init_multi_HD_KH``): density
    ratio ``r`` uniform in ``[1 / max_ratio, max_ratio]`` and mode ``k`` in {1, 2, 3}, drawn as
    :class:`KelvinHelmholtz` draws them (the same seed gives the same ``r, k``).

        u_x = tanh((y - y_0) / a),      rho = rho_up + (rho_down - rho_up) (1 - tanh((y - y_0) / a)) / 2,
        u_y = amplitude sin(2 pi k x / L_x) exp(-((y - y_0) / sigma)^2),      p = 1 / (gamma mach^2)

    with ``y_0 = L_y / 2``, ``rho_up = 2 / (r + 1)``, ``rho_down = 2 r / (r + 1)`` (mean density 1, sound speed
    about ``1 / mach``). PDEBench's layer is a discontinuity seeded by a displaced interface: inviscid, it has no
    converged solution (its secondary instabilities sit at the grid scale at every resolution); this one, with a
    finite viscosity, does (``thickness``: ``a``; ``sigma``: the envelope's width, Lecoanet's ``0.2`` over a
    domain twice as tall)."""

    mach: float = 0.25
    max_ratio: float = 2.0
    thickness: float = 0.035
    amplitude: float = 0.01
    sigma: float = 0.1

    def __call__(self, centres, lengths, gamma, g):
        ratio, k = _shear_layer_draws(g, self.max_ratio)
        xx, yy = torch.meshgrid(centres[0], centres[1], indexing="ij")
        y = yy - 0.5 * lengths[1]
        shear = torch.tanh(y / self.thickness)
        up = 2.0 / (ratio + 1.0)
        rho = up + (ratio * up - up) * 0.5 * (1.0 - shear)
        vy = self.amplitude * torch.sin(2 * math.pi * k * xx / lengths[0]) * torch.exp(-((y / self.sigma) ** 2))
        p = torch.full_like(xx, 1.0 / (gamma * self.mach**2))
        return torch.stack([rho, shear, vy, p])[None]


@dataclass(frozen=True)
class CompressiblePreset(AbstractPreset):
    """A compressible-flow preset: ``initial`` drawn per trajectory (generator ``(seed, j)``), solved by
    :class:`~pdeforge.solvers.compressible.CompressibleSolver` in float64 (each trajectory its own CFL steps, so the
    numbers do not depend on batching or sharding), ``n_frames`` snapshots ``frame_interval`` apart from ``t = 0``,
    stored as float32 ``density, pressure, velocity``."""

    name: str
    summary: str
    ndim: int
    initial: AbstractCompressibleInitial
    resolves: ResolutionCheck
    length: float = 1.0
    boundaries: Any = "periodic"
    gamma: float = 5.0 / 3.0
    eta: float = 0.0
    zeta: float = 0.0
    kappa: float = 0.0
    frame_interval: float = 0.05
    n_frames: int = 21
    cfl: float = 0.5
    limiter: str = "mc"
    flux: str = "hllc"
    stepper: str = "ssp_rk2"
    low_mach: bool = False
    resolution: int = 128
    n_trajectories: int = 32
    batch_size: int = 8
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def __post_init__(self) -> None:
        self.solver(8)  # validates gamma, eta, zeta, boundaries and the scheme's options with one-line errors
        if self.n_frames < 1 or not self.frame_interval > 0:
            raise ValueError(f"preset {self.name}: n_frames {self.n_frames}, frame_interval {self.frame_interval}")

    def solver(self, resolution: int) -> CompressibleSolver:
        return CompressibleSolver(
            (resolution,) * self.ndim,
            self.length,
            gas=IdealGas(self.gamma, eta=self.eta, zeta=self.zeta, kappa=self.kappa),
            scheme=FiniteVolumeScheme(
                flux=self.flux, limiter=self.limiter, stepper=self.stepper, cfl=self.cfl, low_mach=self.low_mach
            ),
            boundaries=self.boundaries,
        )

    def _params(self) -> dict[str, float]:
        out = {"gamma": self.gamma, "eta": self.eta, "zeta": self.zeta}
        if self.kappa:
            out["kappa"] = self.kappa
        for f in dataclasses.fields(self.initial):
            v = getattr(self.initial, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f.name] = float(v)
        return out

    def schema(self, resolution: int) -> Schema:
        centres = self.solver(resolution).cell_centres()
        bcs = self.solver(resolution).boundaries
        names = {"periodic": "periodic", "outflow": "open", "wall": "wall"}
        bc = tuple(names[low] for low, _ in bcs)
        return Schema(
            dataset_name=self.name,
            coords={a: c.numpy() for a, c in zip(("x", "y", "z"), centres)},
            time=self.frame_interval * np.arange(self.n_frames),
            fields=(FieldSpec("density"), FieldSpec("pressure"), FieldSpec("velocity", order=1)),
            parameters=self._params(),
            boundary_conditions=bc[0] if len(set(bc)) == 1 else bc,
        )

    def describe(self, resolution: int) -> dict[str, Any]:
        s = self.solver(resolution)
        sides = ", ".join(low if low == high else f"{low}/{high}" for low, high in s.boundaries)
        return {
            "pde": "CompressibleNavierStokes" if (self.eta or self.zeta) else "CompressibleEuler",
            "formula": (
                "rho_t + div(rho u) = 0, (rho u)_t + div(rho u u + p I - sigma) = 0, E_t + div((E + p) u - u . sigma)"
                " = 0, E = p / (gamma - 1) + rho |u|^2 / 2"
                + (", sigma = eta (grad u + grad u^T - 2/3 div u I) + zeta div u I" if self.eta or self.zeta else "")
                + (", heat flux -kappa grad T, T = p / rho (in E's flux)" if self.kappa else "")
            ),
            "parameters": self._params(),
            "varying": {},
            "grid": f"{'x'.join([str(resolution)] * self.ndim)} cells on [0, {self.length:g})^{self.ndim}, {sides}",
            "dt_internal": float("nan"),
            "dt_snapshot": self.frame_interval,
            "n_snapshots": self.n_frames,
            "warmup": 0.0,
            "n_trajectories": self.n_trajectories,
            "solver": "pdeforge.solvers.compressible.CompressibleSolver",
            "scheme": f"MUSCL ({self.limiter}, primitive) + {self.flux.upper()}"
            + (" (low-Mach correction, Thornber et al. 2008)" if self.low_mach else "")
            + f" + {self.stepper.upper()}, CFL {self.cfl}",
        }

    def provenance(self, resolution: int, seed: int) -> dict[str, Any]:
        return {**super().provenance(resolution, seed), "dt_internal": f"CFL {self.cfl}", "initial": repr(self.initial)}

    def _initial(self, indices: Sequence[int], seed: int, resolution: int) -> Tensor:
        """Cell averages of the drawn primitive fields: sampled at ``SUBCELLS^d`` points per cell and averaged (a
        discontinuity cuts a cell as it does the exact cell average, up to ``1 / SUBCELLS``)."""
        s = self.solver(resolution * SUBCELLS)
        w = torch.cat(
            [self.initial(s.cell_centres(), s.lengths, self.gamma, trajectory_generator(seed, j)) for j in indices]
        )
        return _block_mean(w, SUBCELLS, self.ndim)

    def _run(self, w0: Tensor, resolution: int, device: str) -> Tensor:
        s = self.solver(resolution)
        with torch.no_grad():
            u = s.solve(s.conserved(w0.to(device)), self.frame_interval * np.arange(self.n_frames))
            w = s.primitive(u.flatten(0, 1)).unflatten(0, u.shape[:2])
        d = self.ndim
        return torch.cat([w[:, :, :1], w[:, :, -1:], w[:, :, 1 : 1 + d]], 2).cpu()  # density, pressure, velocity

    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        fields = self._run(self._initial(indices, seed, resolution), resolution, device)
        return Solved(fields=fields, parameters=[self._params()] * len(indices))

    def refined(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Tensor:
        """The same draws sampled on a grid twice as fine, solved there, and averaged over each coarse cell's
        ``2^d`` fine cells (primitive fields averaged as stored)."""
        fine = self._run(self._initial(indices, seed, 2 * resolution), 2 * resolution, device)
        return _block_mean(fine.flatten(0, 1), 2, self.ndim).unflatten(0, fine.shape[:2])


SUBCELLS = 4  # initial data: sub-samples per cell and axis


def _block_mean(x: Tensor, factor: int, ndim: int) -> Tensor:
    """The mean over blocks of ``factor^ndim`` cells of ``x (B, C, *space)``."""
    shape = x.shape[:2] + sum(((n // factor, factor) for n in x.shape[2:]), ())
    return x.reshape(shape).mean(tuple(range(3, 3 + 2 * ndim, 2)))


# Minimum resolutions, measured per channel (the largest over density, pressure, velocity; trajectories 0 and 1,
# the whole horizon; python -m pdeforge.solvers._resolution NAME R1,R2 2; docs/guides/compressible.md has each
# channel). The velocity is the channel that decides: small beside the pressure, and at Mach 0.1 damped by the upwind
# flux's dissipation, which scales with the sound speed (low_mach=True corrects that: Thornber et al. 2008).
#   sod_shock_tube           512: 0.077, 1024: 0.060, 2048: 0.035   (tolerance 5e-2; the first frame, t = 0.01,
#                            where the waves span 3% of the tube, is the worst; from t = 0.04 on 256 holds)
#   compressible_ns_1d       128: 0.153, 256: 0.055, 512: 0.016      (2e-2)
#   euler_riemann_2d         64: 0.060, 128: 0.054, 256: 0.035      (4e-2; slip lines and shocks: slow convergence)
#   compressible_ns_2d       32: 0.118, 64: 0.029                    (5e-2; eta = zeta = 0.1, PDEBench's 128^2 set;
#                            eta = zeta = 0.01: 32: 0.335, 64: 0.166; 1e-8: 32: 0.41, 64: 0.23, trajectory 0)
#   compressible_ns_turb_2d  32: 0.172, 64: 0.037, 128: 0.0090       (2e-2; eta = zeta = 2e-3, Re 500, low_mach;
#                            PDEBench's inviscid eta = zeta = 1e-8: 32: 0.446, 64: 0.185 with low_mach, 16: 0.74,
#                            32: 0.55, 64: 0.30 without, trajectory 0: the cascade reaches the grid scale)
#   kelvin_helmholtz_2d      32: 0.514, 64: 0.061, 128: 0.016       (5e-2; velocity_y decides; the smooth layer,
#                            a = 0.035, eta = zeta = 2e-4; PDEBench's vortex sheet at 1e-8: 32: 1.08, trajectory 0)
# Shocks and contacts converge in L2 like h^(1/2) or slower: the tolerances of the shock-laden presets are 5e-2.
def _presets() -> dict[str, CompressiblePreset]:
    presets = (
        CompressiblePreset(
            name="sod_shock_tube",
            summary="Sod-type shock tubes (random left/right states and interface), Euler, gamma 1.4, outflow ends",
            ndim=1,
            initial=ShockTubes(),
            boundaries="outflow",
            gamma=1.4,
            frame_interval=0.01,
            n_frames=21,
            resolution=2048,
            n_trajectories=64,
            batch_size=16,
            resolves=ResolutionCheck(2048, "convergence", 5e-2),
        ),
        CompressiblePreset(
            name="euler_riemann_2d",
            summary="four-quadrant Riemann problems (random states and corner), Euler, gamma 1.4, outflow sides",
            ndim=2,
            initial=FourQuadrantRiemann(),
            boundaries="outflow",
            gamma=1.4,
            frame_interval=0.02,
            n_frames=6,
            resolution=256,
            n_trajectories=24,
            resolves=ResolutionCheck(256, "convergence", 4e-2),
        ),
        CompressiblePreset(
            name="compressible_ns_1d",
            summary="PDEBench's 1D compressible Navier-Stokes: random sine superpositions, eta = zeta = 0.01",
            ndim=1,
            initial=PDEBenchRandom1D(),
            length=2.0,
            eta=0.01,
            zeta=0.01,
            frame_interval=0.05,
            n_frames=21,
            resolution=512,
            n_trajectories=64,
            batch_size=16,
            resolves=ResolutionCheck(512, "convergence", 2e-2),
        ),
        CompressiblePreset(
            name="compressible_ns_2d",
            summary="PDEBench's 2D compressible Navier-Stokes: random data, Mach 0.1, eta = zeta = 0.1 (PDEBench's "
            "2D_CFD_Rand_M0.1_Eta0.1_Zeta0.1_periodic_128 set)",
            ndim=2,
            initial=PDEBenchRandom2D(mach=0.1),
            eta=0.1,
            zeta=0.1,
            frame_interval=0.05,
            n_frames=11,
            resolution=64,
            resolves=ResolutionCheck(64, "convergence", 5e-2),
        ),
        CompressiblePreset(
            name="compressible_ns_turb_2d",
            summary="PDEBench's turbulent 2D initial data (divergence-free |k|^-1/2 velocity), Mach 0.1, eta = zeta = "
            "2e-3 (Re 500; PDEBench's set is inviscid, eta = 1e-8), low-Mach correction",
            ndim=2,
            initial=PDEBenchTurbulence2D(mach=0.1),
            eta=2e-3,
            zeta=2e-3,
            low_mach=True,
            frame_interval=0.05,
            n_frames=11,
            resolution=128,
            resolves=ResolutionCheck(128, "convergence", 2e-2),
        ),
        CompressiblePreset(
            name="kelvin_helmholtz_2d",
            summary="smooth Kelvin-Helmholtz shear layers (McNally et al. 2012, Lecoanet et al. 2016) with PDEBench's "
            "density-ratio and mode draws, Mach 0.25, eta = zeta = 2e-4, Pr = 1",
            ndim=2,
            initial=SmoothKelvinHelmholtz(),
            boundaries=("periodic", "outflow"),
            eta=2e-4,
            zeta=2e-4,
            kappa=5e-4,
            low_mach=True,
            frame_interval=0.15,
            n_frames=11,
            resolution=128,
            resolves=ResolutionCheck(128, "convergence", 5e-2),
        ),
    )
    return {p.name: p for p in presets}


COMPRESSIBLE_PRESETS: dict[str, AbstractPreset] = _presets()
