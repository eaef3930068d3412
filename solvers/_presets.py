"""Data-generation presets: one small object per preset, listed once in `PRESETS`.

A preset knows its PDE, grid, time steps and initial conditions, and solves any set of trajectories by their
global indices. Trajectory ``j`` draws its initial condition (and varying parameters) from its own generator seeded
by ``(seed, j)``, so the numbers do not depend on batching, sharding or resuming.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..datasets import FieldSpec, Schema
from ._equations import (
    AbstractEquation,
    Advection,
    AllenCahn,
    Burgers,
    Diffusion,
    FisherKPP,
    GrayScott,
    KdV,
    KolmogorovForcing,
    KuramotoSivashinsky,
    NavierStokes2D,
    SwiftHohenberg,
)
from ._etdrk import ETDRK, rollout
from ._grid import Grid
from ._ic import (
    AbstractInitialCondition,
    ChannelAffine,
    GaussianBlobs,
    GaussianRandomField,
    LogNormalVorticity,
    Normalization,
    RandomFourierSeries,
)
from ._resolution import ResolutionCheck, fourier_refine

__all__ = [
    "AbstractPreset",
    "ResolutionCheck",
    "SpectralPreset",
    "KolmogorovFVDataPreset",
    "VaryingParameter",
    "Solved",
    "trajectory_generator",
    "PRESETS",
]


def trajectory_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of trajectory ``index``: independent of batching and sharding."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class Solved:
    """A solved batch: ``fields (B, T, C, *space)``; optional ``constant (B, C_const, *space)``; scalars ``(B,)``."""

    fields: Tensor
    constant: Tensor | None = None
    scalars: dict[str, Tensor] = field(default_factory=dict)
    parameters: list[dict] = field(default_factory=list)  # per trajectory, for error messages


class AbstractPreset(ABC):
    """A named recipe for a dataset. Subclasses are frozen dataclasses with at least these attributes.

    ``resolves`` declares the coarsest resolution at which the preset's numerics resolve its dynamics and the
    measure that backs it (:class:`ResolutionCheck`); ``resolution`` (the default) is at least that.
    """

    name: str
    summary: str
    n_trajectories: int
    batch_size: int
    resolution: int
    splits: tuple[float, float, float]
    resolves: ResolutionCheck

    @abstractmethod
    def schema(self, resolution: int) -> Schema:
        """Grid, time axis, fields and parameters of the files."""

    @abstractmethod
    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        """Solve trajectories ``indices`` (global indices) and return them on the CPU."""

    @abstractmethod
    def refined(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Tensor:
        """The fields of trajectories ``indices`` as ``solve`` gives them, but solved from the same initial data and
        parameters on a grid twice as fine per axis (a fixed time step halved with it) and restricted to
        ``resolution``'s grid, ``(B, T, C, *space)`` on the CPU (the reference of the ``"convergence"`` measure)."""

    @abstractmethod
    def describe(self, resolution: int) -> dict[str, Any]:
        """PDE, parameters, grid, internal dt, snapshot dt and count (for ``--list`` and provenance)."""

    def provenance(self, resolution: int, seed: int) -> dict[str, Any]:
        d = self.describe(resolution)
        return {
            "preset": self.name,
            "seed": seed,
            "equation": d["pde"],
            "equation_params": d["parameters"],
            "solver": d["solver"],
            "scheme": d["scheme"],
            "dt_internal": d["dt_internal"],
            "min_resolution": self.resolves.min_resolution,
            "underresolved": self.resolves.underresolved(resolution),
        }


@dataclass(frozen=True)
class VaryingParameter:
    """An equation parameter drawn per trajectory, uniform (or log-uniform) in ``[low, high]``."""

    name: str
    low: float
    high: float
    log: bool = True

    def draw(self, generator: torch.Generator) -> float:
        r = float(torch.rand((), generator=generator, dtype=torch.float64))
        if self.log:
            return math.exp(math.log(self.low) + r * (math.log(self.high) - math.log(self.low)))
        return self.low + r * (self.high - self.low)


@dataclass(frozen=True)
class SpectralPreset(AbstractPreset):
    """A preset solved by the Fourier-spectral ETDRK solver.

    ``warmup`` time units are solved before the first stored snapshot; snapshots are ``dt * save_every`` apart and
    ``n_snapshots`` are stored (the first is the state after warm-up). Solved in ``dtype`` (float64 by default:
    this is reference data) on a grid ``oversample`` times finer than the stored one (every ``oversample``-th point
    is stored, as the FNO paper's data), so steep fronts are resolved where they are solved; stored as float32.
    ``resolves``: the stored resolution from which the solve resolves the dynamics (:class:`ResolutionCheck`).
    """

    name: str
    summary: str
    equation: AbstractEquation
    ndim: int
    length: float
    resolution: int
    dt: float
    save_every: int
    n_snapshots: int
    initial_condition: AbstractInitialCondition
    resolves: ResolutionCheck
    warmup: float = 0.0
    n_trajectories: int = 64
    batch_size: int = 16
    order: int = 4
    varying: tuple[VaryingParameter, ...] = ()
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)
    dtype: torch.dtype = torch.float64
    oversample: int = 1

    def __post_init__(self) -> None:
        if self.resolves.measure == "spectrum" and self.oversample > 1:
            raise ValueError(
                f"preset {self.name}: the 'spectrum' measure reads the stored fields, 1 point in {self.oversample} "
                "of the solve (its spectrum aliased there); declare the 'convergence' measure"
            )

    @property
    def dt_save(self) -> float:
        return self.dt * self.save_every

    def grid(self, resolution: int) -> Grid:
        return Grid((resolution,) * self.ndim, self.length)

    def schema(self, resolution: int) -> Schema:
        grid = self.grid(resolution)
        axes = ("x", "y", "z")[: self.ndim]
        coords = {a: c.numpy() for a, c in zip(axes, grid.coords())}
        params = {
            k: float(v)
            for k, v in self.equation.parameters().items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in {p.name for p in self.varying}
        }
        return Schema(
            dataset_name=self.name,
            coords=coords,
            time=self.dt_save * np.arange(self.n_snapshots),
            fields=tuple(FieldSpec(c) for c in self.equation.channels),
            scalars=tuple(p.name for p in self.varying),
            parameters=params,
            boundary_conditions="periodic",
        )

    def describe(self, resolution: int) -> dict[str, Any]:
        return {
            "pde": type(self.equation).__name__,
            "formula": _formula(type(self.equation).__doc__),
            "parameters": {
                k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in self.equation.parameters().items()
            },
            "varying": {p.name: [p.low, p.high] for p in self.varying},
            "grid": f"{'x'.join([str(resolution)] * self.ndim)} on [0, {self.length:.6g})^{self.ndim} periodic"
            + (
                f" (solved at {resolution * self.oversample}, 1 point in {self.oversample} stored)"
                if self.oversample > 1
                else ""
            ),
            "dt_internal": self.dt,
            "dt_snapshot": self.dt_save,
            "n_snapshots": self.n_snapshots,
            "warmup": self.warmup,
            "n_trajectories": self.n_trajectories,
            "solver": "pdeforge.solvers.ETDRK",
            "scheme": f"ETDRK{self.order}",
        }

    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        return self._solve(indices, seed, resolution, device, refine=1)

    def refined(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Tensor:
        """The initial data drawn as ``solve`` draws them, interpolated (trigonometrically) onto a grid twice as fine,
        solved there with half the time step (so the explicit terms' CFL number stays), stored at ``resolution``'s
        points."""
        finer = dataclasses.replace(self, dt=self.dt / 2, save_every=2 * self.save_every)
        return finer._solve(indices, seed, resolution, device, refine=2).fields

    def _solve(self, indices: Sequence[int], seed: int, resolution: int, device: str, refine: int) -> Solved:
        grid = self.grid(resolution * self.oversample)
        gens = [trajectory_generator(seed, j) for j in indices]
        values = [{p.name: p.draw(g) for p in self.varying} for g in gens]  # parameters first, then the IC
        u0 = torch.cat([self.initial_condition(grid, 1, g, dtype=self.dtype) for g in gens])
        if refine > 1:
            u0 = fourier_refine(u0, refine, self.ndim)
            grid = self.grid(resolution * self.oversample * refine)
        u0 = u0.to(device)
        if self.varying:  # each trajectory its own equation: solve one by one
            trajs = [
                self._run(dataclasses.replace(self.equation, **v), grid, u0[i : i + 1]) for i, v in enumerate(values)
            ]
            traj = torch.cat(trajs)
        else:
            traj = self._run(self.equation, grid, u0)
        stride = self.oversample * refine
        if stride > 1:  # keep every stride-th point: x_j = j L / N on the stored grid
            traj = traj[(..., *[slice(None, None, stride)] * self.ndim)]
        params = [{**self.equation.parameters(), **v} for v in values]
        scalars = {p.name: torch.tensor([v[p.name] for v in values]) for p in self.varying}
        return Solved(fields=traj.cpu().contiguous(), scalars=scalars, parameters=params)

    def _run(self, equation: AbstractEquation, grid: Grid, u0: Tensor) -> Tensor:
        stepper = ETDRK(equation, grid, self.dt, order=self.order)
        with torch.no_grad():
            n_warm = round(self.warmup / self.dt)
            if n_warm:
                u0 = rollout(stepper, u0, n_warm, save_every=n_warm)[:, -1]
            return rollout(stepper, u0, (self.n_snapshots - 1) * self.save_every, save_every=self.save_every)


def _formula(doc: str | None) -> str:
    """The first paragraph of an equation's docstring (and the next one when the first ends with a colon)."""
    paras = [" ".join(p.split()) for p in (doc or "").strip().split("\n\n")]
    return paras[0] + (" " + paras[1] if paras[0].endswith(":") and len(paras) > 1 else "")


TWO_PI = 2 * math.pi

# decaying 2D turbulence: three presets that differ only in their initial vorticity
_DECAYING_NS = SpectralPreset(
    name="navier_stokes_2d",
    summary="decaying 2D turbulence, vorticity from a log-normal spectrum, nu = 1e-3",
    equation=NavierStokes2D(nu=1e-3),
    ndim=2,
    length=TWO_PI,
    resolution=64,
    dt=0.005,
    save_every=40,
    n_snapshots=26,
    initial_condition=LogNormalVorticity(
        peak_wavenumber=4.0, normalization=Normalization(scale_by="std", amplitude=2.0)
    ),
    resolves=ResolutionCheck(64, "convergence", 1e-2),
    n_trajectories=32,
    batch_size=8,
    oversample=4,
)

_BURGERS = SpectralPreset(
    name="burgers_1d",
    summary="viscous Burgers, random Fourier initial data, shocks smoothed by nu=0.01",
    equation=Burgers(nu=0.01),
    ndim=1,
    length=TWO_PI,
    resolution=256,
    dt=0.005,
    save_every=10,
    n_snapshots=41,
    initial_condition=RandomFourierSeries(max_wavenumber=4),
    resolves=ResolutionCheck(128, "convergence", 1e-2),
    n_trajectories=64,
    oversample=4,
)

# The catalogue, written out in one place. Defaults run on a laptop CPU in seconds to a few minutes.
PRESETS: dict[str, AbstractPreset] = {
    p.name: p
    for p in (
        _BURGERS,
        dataclasses.replace(
            _BURGERS,
            name="burgers_nu_1d",
            summary="Burgers with the viscosity drawn per trajectory (stored as a scalar 'nu')",
            varying=(VaryingParameter("nu", 0.003, 0.03),),
            resolves=ResolutionCheck(256, "convergence", 1e-2),  # nu down to 0.003: sharper fronts than at 0.01
        ),
        SpectralPreset(
            name="advection_1d",
            summary="linear advection at speed 1 (exact propagator)",
            equation=Advection(velocity=1.0),
            ndim=1,
            length=TWO_PI,
            resolution=128,
            dt=0.05,
            save_every=2,
            n_snapshots=41,
            initial_condition=RandomFourierSeries(max_wavenumber=6),
            resolves=ResolutionCheck(32, "spectrum", 1e-3),
            n_trajectories=64,
        ),
        SpectralPreset(
            name="kdv_1d",
            summary="Korteweg-de Vries u_t + 6 u u_x + u_xxx = 0, smooth random data that steepen into solitons",
            equation=KdV(),
            ndim=1,
            length=64.0,
            resolution=256,
            dt=0.01,
            save_every=10,
            n_snapshots=41,
            initial_condition=RandomFourierSeries(max_wavenumber=3, normalization=Normalization(amplitude=0.5)),
            resolves=ResolutionCheck(128, "convergence", 1e-2),
            n_trajectories=64,
        ),
        SpectralPreset(
            name="ks_1d",
            summary="Kuramoto-Sivashinsky on L = 32 pi, chaotic; 50 time units of warm-up",
            equation=KuramotoSivashinsky(),
            ndim=1,
            length=32 * math.pi,
            resolution=256,
            dt=0.05,
            save_every=10,
            n_snapshots=101,
            warmup=50.0,
            initial_condition=RandomFourierSeries(max_wavenumber=8),
            resolves=ResolutionCheck(256, "spectrum", 1e-3),
            n_trajectories=64,
        ),
        SpectralPreset(
            name="allen_cahn_1d",
            summary="Allen-Cahn u_t = nu u_xx + u - u^3: phase separation into +-1 layers",
            equation=AllenCahn(nu=0.005),
            ndim=1,
            length=TWO_PI,
            resolution=256,
            dt=0.01,
            save_every=10,
            n_snapshots=41,
            initial_condition=RandomFourierSeries(max_wavenumber=6),
            resolves=ResolutionCheck(128, "convergence", 1e-2),
            n_trajectories=64,
        ),
        SpectralPreset(
            name="fisher_kpp_1d",
            summary="Fisher-KPP fronts invading from random blobs",
            equation=FisherKPP(nu=0.01, r=1.0),
            ndim=1,
            length=TWO_PI,
            resolution=256,
            dt=0.01,
            save_every=10,
            n_snapshots=41,
            initial_condition=GaussianBlobs(n_blobs=3, width=0.05),
            resolves=ResolutionCheck(32, "convergence", 1e-2),
            n_trajectories=64,
        ),
        SpectralPreset(
            name="heat_2d",
            summary="2D heat equation from Gaussian random fields (exact propagator)",
            equation=Diffusion(nu=0.01),
            ndim=2,
            length=TWO_PI,
            resolution=64,
            dt=0.1,
            save_every=2,
            n_snapshots=21,
            initial_condition=GaussianRandomField(exponent=3.0),
            resolves=ResolutionCheck(32, "spectrum", 1e-3),
            n_trajectories=32,
        ),
        _DECAYING_NS,
        dataclasses.replace(
            _DECAYING_NS,
            name="ns_grf_2d",
            summary="decaying 2D turbulence as navier_stokes_2d, vorticity from a Gaussian random field",
            initial_condition=GaussianRandomField(
                exponent=4.0, normalization=Normalization(scale_by="std", amplitude=2.0)
            ),
        ),
        dataclasses.replace(
            _DECAYING_NS,
            name="ns_blobs_2d",
            summary="decaying 2D turbulence as navier_stokes_2d, vorticity from 6 Gaussian vortex blobs",
            initial_condition=GaussianBlobs(
                n_blobs=6, width=0.04, normalization=Normalization(scale_by="std", amplitude=2.0)
            ),
        ),
        SpectralPreset(
            name="kolmogorov_2d",
            summary="forced Kolmogorov flow (k = 4, drag 0.1, nu = 1/200); warm-up onto the attractor",
            equation=NavierStokes2D(nu=5e-3, drag=0.1, forcing=KolmogorovForcing(wavenumber=4, amplitude=1.0)),
            ndim=2,
            length=TWO_PI,
            resolution=128,
            dt=0.01,
            save_every=20,
            n_snapshots=26,
            warmup=10.0,
            initial_condition=LogNormalVorticity(
                peak_wavenumber=4.0, normalization=Normalization(scale_by="std", amplitude=1.0)
            ),
            resolves=ResolutionCheck(128, "spectrum", 1e-3),
            n_trajectories=32,
            batch_size=8,
        ),
        SpectralPreset(
            name="gray_scott_2d",
            summary="Gray-Scott spots (feed 0.04, kill 0.06) grown from blobs of v",
            equation=GrayScott(feed=0.04, kill=0.06, nu_u=2e-5, nu_v=1e-5),
            ndim=2,
            length=1.0,
            resolution=64,
            dt=1.0,
            save_every=50,
            n_snapshots=21,
            initial_condition=ChannelAffine(
                base=GaussianBlobs(n_blobs=4, width=0.05), scale=(-0.5, 0.25), offset=(1.0, 0.0)
            ),
            resolves=ResolutionCheck(64, "convergence", 1e-2),
            n_trajectories=32,
            batch_size=8,
            oversample=2,
        ),
        SpectralPreset(
            name="swift_hohenberg_2d",
            summary="Swift-Hohenberg pattern formation (r = 0.7) from small noise",
            equation=SwiftHohenberg(r=0.7, k0=1.0, g=1.0),
            ndim=2,
            length=20 * math.pi,
            resolution=64,
            dt=0.1,
            save_every=10,
            n_snapshots=21,
            initial_condition=GaussianRandomField(
                exponent=2.0, normalization=Normalization(scale_by="std", amplitude=0.1)
            ),
            resolves=ResolutionCheck(64, "convergence", 1e-2),
            n_trajectories=32,
            batch_size=8,
            oversample=2,
        ),
    )
}


# -- presets beyond the spectral solver ------------------------------------------------------------------------
@dataclass(frozen=True)
class FVNavierStokesPreset(AbstractPreset):
    """Staggered finite-volume Navier-Stokes (`pdeforge.solvers.fv`); stored as the t1 field ``velocity``.

    ``velocity_x`` lives on x-faces (i + 1/2, j), ``velocity_y`` on y-faces (i, j + 1/2) of the MAC grid; the stored
    coordinates are the cell corners ``i h`` (attribute ``staggering`` says so).
    """

    name: str
    summary: str
    config: Any  # fv.KolmogorovFVPreset | fv.TaylorGreenFVPreset
    resolves: ResolutionCheck
    resolution: int = 32
    n_trajectories: int = 20
    batch_size: int = 1
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)

    def schema(self, resolution: int) -> Schema:
        h = 2 * math.pi / resolution
        c = h * np.arange(resolution)
        interval = self.config.frame_interval
        return Schema(
            dataset_name=self.name,
            coords={"x": c, "y": c},
            time=interval * np.arange(self.config.n_frames),
            fields=(FieldSpec("velocity", order=1),),
            parameters=self._params(),
            boundary_conditions="periodic",
        )

    def _params(self) -> dict[str, float]:
        out = {}
        for f in dataclasses.fields(self.config):
            v = getattr(self.config, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f.name] = float(v)
        return out

    def describe(self, resolution: int) -> dict[str, Any]:
        c = self.config
        return {
            "pde": "StaggeredNavierStokes2D",
            "formula": "u_t + (u . grad) u = -grad p + nu lap u - drag u + f, div u = 0",
            "parameters": self._params(),
            "varying": {},
            "grid": f"{resolution}x{resolution} MAC on [0, 2pi)^2 periodic"
            + (f" (DNS {c.dns_resolution}^2, face-averaged)" if hasattr(c, "dns_resolution") else "")
            + (f" (solved at {resolution * c.oversample}^2, face-averaged)" if getattr(c, "oversample", 1) > 1 else ""),
            "dt_internal": float("nan"),
            "dt_snapshot": c.frame_interval,
            "n_snapshots": c.n_frames,
            "warmup": getattr(c, "warmup_time", 0.0),
            "n_trajectories": self.n_trajectories,
            "solver": "pdeforge.solvers.fv.StaggeredNavierStokes2D",
            "scheme": f"SSP-RK3, CFL {c.cfl}",
        }

    def provenance(self, resolution: int, seed: int) -> dict[str, Any]:
        return {
            **super().provenance(resolution, seed),
            "dt_internal": f"CFL {self.config.cfl}",
            "staggering": "MAC: velocity_x at x-faces (i+1/2, j), velocity_y at y-faces (i, j+1/2); coords are i*h",
        }

    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        from . import fv

        make = (
            fv.kolmogorov_fv_trajectories
            if isinstance(self.config, fv.KolmogorovFVPreset)
            else fv.taylor_green_fv_trajectories
        )
        trajs = [
            make(
                1, resolution, self.config, generator=trajectory_generator(seed, j), dtype=torch.float64, device=device
            )
            for j in indices
        ]
        return Solved(fields=torch.cat(trajs).cpu(), parameters=[self._params()] * len(indices))

    def refined(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Tensor:
        """Taylor-Green: the same vortices solved on a grid twice as fine, face-averaged onto ``resolution``'s faces.
        Kolmogorov: the DNS does not change with the stored resolution; its frames stored twice as fine and
        face-averaged back equal ``solve``'s (so this flow declares the ``"spectrum"`` measure)."""
        from . import fv

        if isinstance(self.config, fv.TaylorGreenFVPreset):
            trajs = [
                fv.taylor_green_fv_trajectories(
                    1, resolution, self.config, trajectory_generator(seed, j), torch.float64, device, refine=2
                )
                for j in indices
            ]
            return torch.cat(trajs).cpu()
        fine = self.solve(indices, seed, 2 * resolution, device).fields
        return fv.downsample_staggered(fine.flatten(0, 1), 2).unflatten(0, fine.shape[:2])


@dataclass(frozen=True)
class KolmogorovFVDataPreset(FVNavierStokesPreset):
    """Preset ``kolmogorov_fv_2d``: Kolmogorov flow by DNS on a ``dns_resolution^2`` grid, stored face-averaged at
    ``resolution^2`` (:func:`pdeforge.solvers.fv.kolmogorov_fv_trajectories`). Its DNS options are plain fields, so a
    config's ``data.preset_options`` sets them; ``config`` is derived from them.

    ``initial_draw``:
      - ``"per_trajectory"`` (default): trajectory ``j`` from its own generator ``(seed, j)``, solved alone; the
        numbers do not depend on batching or sharding.
      - ``"joint"``: the initial fields of all ``n_trajectories`` drawn at once from one generator seeded by ``seed``
        and solved in batches of ``dns_batch`` that share their CFL steps (the step follows the batch's fastest
        flow), as ``kolmogorov_fv_trajectories(n_trajectories, resolution, config, Generator().manual_seed(seed),
        dtype, batch_size=dns_batch)`` (the data of the TSM protocol; ~2x faster per trajectory at 256^2 on a CPU
        with batches of 4). Generation batches (``batch_size``) and split boundaries must then be whole DNS batches.

    ``dtype``: the DNS's precision (stored as float32 either way).
    """

    config: Any = field(default=None, init=False)  # derived from the fields below
    dns_resolution: int = 128
    reynolds: float = 500.0
    warmup_time: float = 20.0
    frame_interval: float = 0.1
    n_frames: int = 100
    dtype: str = "float64"
    initial_draw: str = "per_trajectory"
    dns_batch: int = 1

    def __post_init__(self) -> None:
        from . import fv

        if self.initial_draw not in ("per_trajectory", "joint"):
            raise ValueError(
                f"preset {self.name}: initial_draw {self.initial_draw!r}: expected 'per_trajectory' or 'joint'"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"preset {self.name}: dtype {self.dtype!r}: expected 'float32' or 'float64'")
        if self.dns_batch < 1:
            raise ValueError(f"preset {self.name}: dns_batch {self.dns_batch}: expected >= 1")
        object.__setattr__(
            self,
            "config",
            fv.KolmogorovFVPreset(
                dns_resolution=self.dns_resolution,
                reynolds=self.reynolds,
                warmup_time=self.warmup_time,
                frame_interval=self.frame_interval,
                n_frames=self.n_frames,
            ),
        )

    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        from . import fv

        dtype = getattr(torch, self.dtype)
        if resolution < 4 or self.dns_resolution % resolution:
            raise ValueError(
                f"preset {self.name}: resolution {resolution} must divide dns_resolution "
                f"{self.dns_resolution} (the DNS frames are face-averaged onto it)"
            )
        if self.initial_draw == "per_trajectory":
            trajs = [
                fv.kolmogorov_fv_trajectories(1, resolution, self.config, trajectory_generator(seed, j), dtype, device)
                for j in indices
            ]
            fields = torch.cat(trajs)
        else:
            a, b = int(indices[0]), int(indices[-1]) + 1
            whole = (
                list(indices) == list(range(a, b))
                and a % self.dns_batch == 0
                and (b % self.dns_batch == 0 or b == self.n_trajectories)
            )
            if not whole or b > self.n_trajectories:
                raise ValueError(
                    f"preset {self.name} with initial_draw 'joint': trajectories {a}..{b - 1} are not "
                    f"whole DNS batches of dns_batch={self.dns_batch} within n_trajectories="
                    f"{self.n_trajectories}; choose a generation batch_size and split sizes that are "
                    "multiples of dns_batch, and the same n_trajectories for the preset and generate"
                )
            # the initial fields are drawn on the CPU generator and moved: the same on every device
            fields = fv.kolmogorov_fv_trajectories(
                self.n_trajectories,
                resolution,
                self.config,
                torch.Generator().manual_seed(seed),
                dtype,
                device,
                batch_size=self.dns_batch,
                trajectories=range(a, b),
            )
        return Solved(fields=fields.cpu(), parameters=[self._params()] * len(indices))


@dataclass(frozen=True)
class DarcyPreset(AbstractPreset):
    """Steady Darcy flow ``-div(a grad u) = f`` on the unit square (`pdeforge.solvers.darcy`).

    Stored for the operator task a -> u: ``a`` a time-invariant field, ``u`` one snapshot (read with
    ``TrajectoryDataset(..., n_steps_input=0, n_steps_output=1)``). Grid: FNO's nodes ``x_i = i / (s - 1)``.
    """

    name: str = "darcy_2d"
    summary: str = (
        "Darcy flow, piecewise-constant coefficient (12 / 3) from a thresholded GRF, f = 1, u = 0 on the boundary"
    )
    resolution: int = 85
    n_trajectories: int = 1250
    batch_size: int = 32
    splits: tuple[float, float, float] = (0.8, 0.04, 0.16)
    forcing: float = 1.0
    resolves: ResolutionCheck = field(kw_only=True)

    def schema(self, resolution: int) -> Schema:
        c = np.linspace(0.0, 1.0, resolution)
        return Schema(
            dataset_name=self.name,
            coords={"x": c, "y": c},
            time=np.zeros(1),
            fields=(FieldSpec("u"), FieldSpec("a", time_varying=False)),
            parameters={"f": self.forcing},
            boundary_conditions="wall",
        )

    def describe(self, resolution: int) -> dict[str, Any]:
        return {
            "pde": "Darcy",
            "formula": "-div(a grad u) = f, u = 0 on the boundary",
            "parameters": {"f": self.forcing},
            "varying": {},
            "grid": f"{resolution}x{resolution} nodes on [0, 1]^2 (h = 1/(s-1))",
            "dt_internal": 0.0,
            "dt_snapshot": 0.0,
            "n_snapshots": 1,
            "warmup": 0.0,
            "n_trajectories": self.n_trajectories,
            "solver": "pdeforge.solvers.darcy.solve_darcy",
            "scheme": "FV 5-point, harmonic faces, sparse direct",
        }

    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        from .darcy import darcy_samples

        pairs = [
            darcy_samples(1, resolution, generator=trajectory_generator(seed, j), f=self.forcing, dtype=torch.float64)
            for j in indices
        ]
        a = torch.cat([p[0] for p in pairs])
        u = torch.cat([p[1] for p in pairs])
        return Solved(fields=u[:, None], constant=a, parameters=[{"f": self.forcing}] * len(indices))

    def refined(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Tensor:
        """The same coefficient field (its random modes fixed at ``resolution``'s count, as ``solve`` draws them)
        thresholded and solved on ``2 s - 1`` nodes, restricted to every other node."""
        from .darcy import NeumannGaussianRandomField, ThresholdCoefficient, darcy_samples

        coefficient = ThresholdCoefficient(field=NeumannGaussianRandomField(n_modes=resolution))
        finer = self.resolves.finer(resolution)
        u = torch.cat(
            [
                darcy_samples(
                    1, finer, trajectory_generator(seed, j), coefficient, f=self.forcing, dtype=torch.float64
                )[1]
                for j in indices
            ]
        )
        return u[:, None, :, ::2, ::2].contiguous()


def _extra_presets() -> dict[str, AbstractPreset]:
    from . import fv

    return {
        "kolmogorov_fv_2d": KolmogorovFVDataPreset(
            name="kolmogorov_fv_2d",
            summary=(
                "Kolmogorov flow by the FV solver: DNS 128^2 (Re 500), stored face-averaged at 32^2 "
                "(set dns_resolution=256 on a GPU)"
            ),
            resolution=32,
            n_trajectories=20,
            resolves=ResolutionCheck(32, "spectrum", 5e-2),
        ),
        "taylor_green_fv_2d": FVNavierStokesPreset(
            name="taylor_green_fv_2d",
            summary="decaying Taylor-Green vortices (random wavenumber, amplitude, shift) by the FV solver",
            config=fv.TaylorGreenFVPreset(oversample=4),
            resolution=32,
            n_trajectories=20,
            resolves=ResolutionCheck(32, "convergence", 1e-2),
        ),
        "darcy_2d": DarcyPreset(resolves=ResolutionCheck(65, "convergence", 1e-2, grid="nodes")),
    }


PRESETS.update(_extra_presets())

# the presets of the compressible and shallow-water solvers, in modules of their own (they build on the classes
# above, so they are imported last)
from ._presets_compressible import COMPRESSIBLE_PRESETS  # noqa: E402
from ._presets_shallow_water import SHALLOW_WATER_PRESETS  # noqa: E402

PRESETS.update(COMPRESSIBLE_PRESETS)
PRESETS.update(SHALLOW_WATER_PRESETS)
