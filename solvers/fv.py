"""Finite-volume incompressible Navier-Stokes on a periodic 2D MAC (staggered) grid, differentiable in torch.

Solves, on ``[0, L)^2`` (default ``L = 2 pi``) with density 1,

    du/dt + (u . grad) u = -grad p + nu Laplace u - alpha u + f,      div u = 0,

the base solver of the learned-interpolation model (Kochkov et al. 2021) and of temporal stencil modelling
(Sun et al. 2023), following the finite-volume path of google/jax-cfd:

- velocity ``(B, 2, N, N)``: channel 0 = ``u`` on x-faces, 1 = ``v`` on y-faces; axis -2 is x, axis -1 is y,
  as the spectral ``Grid`` (layout in :mod:`pdeforge.solvers._fv_ops`);
- advection in flux form with face values from a pluggable interpolation module (``LinearInterpolation``,
  ``VanLeerInterpolation``, or a learned one; see :mod:`pdeforge.solvers._fv_interpolation` for the seam);
- viscosity explicit (5-point Laplacian inside the RK stages) or implicit: the exact solution of the discrete
  diffusion ``exp(nu t L_h)`` applied by FFT in a Strang splitting around the explicit step;
- pressure projection by an FFT Poisson solve with the symbol of the MAC ``div grad``, so the projected
  field is discretely divergence-free to round-off;
- forcing: Kolmogorov ``f = (A sin(k y), 0)`` (the spectral solvers' ``KolmogorovForcing``, angular ``k``)
  and linear drag ``-alpha u``;
- explicit Runge-Kutta with a projection after every stage (``ButcherTableau``; SSP-RK3 by default).

Everything is batched, runs on any device and dtype of the input, and is differentiable through a rollout.
``reference_step`` is the scheme written out; ``step``, ``steps`` and ``rollout`` run it, or, where no gradient is
needed (CPU, float32/64, the solver's own linear or van Leer faces), a compiled op that computes the same bits several
times faster (:mod:`pdeforge.solvers._fv_strategies`; ``PDEFORGE_NATIVE=0`` turns it off).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ._equations import KolmogorovForcing
from ._fv_interpolation import (
    AbstractInterpolation,
    FaceValues,
    LinearInterpolation,
    VanLeerInterpolation,
    advection,
    linear_advected,
    linear_advecting_velocity,
    stencil_patches,
)
from ._fv_ops import (
    StaggeredGrid,
    check_velocity,
    divergence,
    downsample_staggered,
    energy_spectrum,
    gradient,
    laplacian,
    velocity_from_streamfunction,
    vorticity,
)
from ._fv_strategies import choose_steps

__all__ = [
    "StaggeredGrid",
    "ButcherTableau",
    "FORWARD_EULER",
    "HEUN_RK2",
    "SSP_RK3",
    "FlowParameters",
    "StaggeredNavierStokes2D",
    "AbstractInterpolation",
    "FaceValues",
    "LinearInterpolation",
    "VanLeerInterpolation",
    "linear_advected",
    "linear_advecting_velocity",
    "stencil_patches",
    "stable_time_step",
    "divergence",
    "vorticity",
    "energy_spectrum",
    "downsample_staggered",
    "taylor_green_velocity",
    "random_divergence_free_velocity",
    "KolmogorovFVPreset",
    "kolmogorov_fv_trajectories",
    "TaylorGreenFVPreset",
    "taylor_green_fv_trajectories",
]


@dataclass(frozen=True)
class ButcherTableau:
    """Explicit Runge-Kutta coefficients ``(a, b, c)`` of a method of the given ``order``."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int

    def __post_init__(self) -> None:
        if not (len(self.a) == len(self.b) == len(self.c)):
            raise ValueError("ButcherTableau: a, b and c need one entry per stage")


FORWARD_EULER = ButcherTableau(a=((),), b=(1.0,), c=(0.0,), order=1)
HEUN_RK2 = ButcherTableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), order=2)
SSP_RK3 = ButcherTableau(  # Shu & Osher (1988), strong-stability preserving: keeps the TVD property
    a=((), (1.0,), (0.25, 0.25)), b=(1 / 6, 1 / 6, 2 / 3), c=(0.0, 1.0, 0.5), order=3
)


@dataclass(frozen=True)
class FlowParameters:
    """Physics: kinematic viscosity ``nu`` (= 1 / Re for unit forcing on ``2 pi``), drag ``alpha``, forcing
    (``KolmogorovForcing`` of :mod:`pdeforge.solvers`: ``(amplitude sin(wavenumber y), 0)``, angular wavenumber,
    as jax-cfd's ``kolmogorov_forcing``)."""

    viscosity: float
    drag: float = 0.0
    forcing: KolmogorovForcing | None = None


class StaggeredNavierStokes2D(nn.Module):
    """Incompressible NS stepper on a periodic MAC grid (see the module docstring for the scheme).

    Args:
        grid: the ``StaggeredGrid`` (``n`` cells per side, side ``length``).
        flow: ``FlowParameters`` (viscosity, drag, forcing).
        interpolation: face-value module; default ``VanLeerInterpolation()``. Its parameters are this
            module's parameters, so an optimiser on ``solver.parameters()`` trains a learned stencil.
        tableau: explicit RK method, default ``SSP_RK3``.
        implicit_viscosity: integrate diffusion exactly by FFT (Strang-split, unconditionally stable)
            instead of explicitly inside the RK stages.

    Examples:
        >>> grid = StaggeredGrid(64)
        >>> solver = StaggeredNavierStokes2D(grid, FlowParameters(viscosity=1e-2))
        >>> v = solver.project(random_divergence_free_velocity(grid, batch=2))
        >>> traj = solver.rollout(v, dt=stable_time_step(2.0, 0.5, grid, 1e-2), n_frames=5, inner_steps=10)
        >>> traj.shape
        torch.Size([2, 5, 2, 64, 64])
    """

    def __init__(
        self,
        grid: StaggeredGrid,
        flow: FlowParameters,
        interpolation: nn.Module | None = None,
        tableau: ButcherTableau = SSP_RK3,
        implicit_viscosity: bool = False,
    ) -> None:
        super().__init__()
        if flow.viscosity < 0 or flow.drag < 0:
            raise ValueError(f"viscosity and drag must be >= 0, got {flow.viscosity} and {flow.drag}")
        self.grid = grid
        self.flow = flow
        self.interpolation = interpolation if interpolation is not None else VanLeerInterpolation()
        self.tableau = tableau
        self.implicit_viscosity = implicit_viscosity
        self._constants: dict[tuple, Tensor] = {}  # forcing and Poisson symbol per (name, dtype, device)
        self._decay: tuple[tuple, Tensor] | None = None  # the latest diffusion factor, per (time, dtype, device)

    def _constant(self, name: str, like: Tensor) -> Tensor:
        """Fields that depend only on the grid, computed once in float64 and cast to ``like``'s dtype/device."""
        key = (name, like.dtype, like.device)
        if key not in self._constants:
            if name == "forcing":
                f = self.flow.forcing
                _, y = self.grid.coordinates((1.0, 0.5), dtype=torch.float64, device=like.device)
                fu = f.amplitude * torch.sin(f.wavenumber * y)
                value = torch.stack([fu, torch.zeros_like(fu)])[None]
            else:  # "inverse_symbol": 1 / symbol of D G, with the free mean pressure mode set to 0
                symbol = self.grid.laplacian_symbol(device=like.device)
                symbol[0, 0] = 1.0
                value = 1.0 / symbol
                value[0, 0] = 0.0
            self._constants[key] = value.to(like.dtype)
        return self._constants[key]

    def prepare(self, dtype: torch.dtype, device: torch.device | str) -> None:
        """Make the grid constants (forcing, Poisson symbol) for ``dtype`` on ``device`` now, as the first step
        would: a compiled step then finds them instead of tracing their construction and compiling again."""
        like = torch.empty(0, dtype=dtype, device=device)
        self.forcing(like)
        self.inverse_poisson_symbol(like)

    # -- pieces ---------------------------------------------------------------------------------------
    def forcing(self, like: Tensor) -> Tensor | None:
        """The body force ``(1, 2, N, N)`` on the faces, in the dtype/device of ``like`` (None if unforced)."""
        return None if self.flow.forcing is None else self._constant("forcing", like)

    def explicit_terms(self, velocity: Tensor, faces: Callable[[Tensor], FaceValues] | None = None) -> Tensor:
        """``-(u . grad) u [+ nu L_h u] - alpha u + f`` before projection, ``(B, 2, N, N)``; the advection's face
        values from ``faces(velocity)`` (default: ``self.interpolation``)."""
        faces = (self.interpolation if faces is None else faces)(velocity)
        rhs = advection(velocity, faces, self.grid.h)
        if self.flow.viscosity and not self.implicit_viscosity:
            rhs = rhs + self.flow.viscosity * laplacian(velocity, self.grid.h)
        if self.flow.drag:
            rhs = rhs - self.flow.drag * velocity
        f = self.forcing(velocity)
        return rhs if f is None else rhs + f

    def inverse_poisson_symbol(self, like: Tensor) -> Tensor:
        """``1 / symbol(D G)`` on the ``rfft2`` frequencies ``(N, N // 2 + 1)``, 0 at the free mean mode, in the
        dtype/device of ``like`` (made once per dtype and device)."""
        return self._constant("inverse_symbol", like)

    def diffusion_factor(self, time: float, like: Tensor) -> Tensor:
        """``exp(nu time L_h)`` on the ``rfft2`` frequencies ``(N, N // 2 + 1)`` in the dtype/device of ``like``
        (computed in float64 and cast; the latest one is kept, as a rollout uses one ``time`` throughout)."""
        key = (time, like.dtype, like.device)
        if self._decay is None or self._decay[0] != key:
            decay = torch.exp(self.flow.viscosity * time * self.grid.laplacian_symbol(device=like.device))
            self._decay = (key, decay.to(like.dtype))
        return self._decay[1]

    def project(self, velocity: Tensor) -> Tensor:
        """Leray projection ``u - G (D G)^{-1} D u`` by FFT; the result has ``|D u| ~ 1e-15 |u| / h``."""
        check_velocity(velocity, self.grid)
        h = self.grid.h
        div_hat = torch.fft.rfft2(divergence(velocity, h))
        p = torch.fft.irfft2(div_hat * self.inverse_poisson_symbol(velocity), s=velocity.shape[-2:])
        return velocity - gradient(p, h)

    def diffuse(self, velocity: Tensor, time: float) -> Tensor:
        """Exact solution of ``du/dt = nu L_h u`` after ``time``: ``exp(nu t L_h)`` per Fourier mode."""
        decay = self.diffusion_factor(time, velocity)
        return torch.fft.irfft2(torch.fft.rfft2(velocity) * decay, s=velocity.shape[-2:])

    # -- time stepping --------------------------------------------------------------------------------
    def step(self, velocity: Tensor, dt: float, faces: Callable[[Tensor], FaceValues] | None = None) -> Tensor:
        """One time step of size ``dt``: ``(B, 2, N, N) -> (B, 2, N, N)``, projected after every stage.

        ``faces``: the face values of this step's advection, ``velocity (B, 2, N, N) -> FaceValues``, called at
        every Runge-Kutta stage (a learned model passes the stencils its network computed for this step); default
        ``self.interpolation``. The numbers are those of :meth:`reference_step`; where nothing needs gradients
        through it, a compiled strategy computes them (:func:`~pdeforge.solvers._fv_strategies.choose_steps`)."""
        return self.steps(velocity, dt, 1, faces)

    def steps(
        self, velocity: Tensor, dt: float, n_steps: int, faces: Callable[[Tensor], FaceValues] | None = None
    ) -> Tensor:
        """``n_steps`` steps of size ``dt`` (``faces`` as in :meth:`step`, used by every step): the velocity after
        them, ``(B, 2, N, N)``. The strategy is chosen once for all of them (the compiled op runs them in one call)."""
        check_velocity(velocity, self.grid)
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        return choose_steps(self, velocity, faces).advance(self, velocity, dt, n_steps, faces)

    def reference_step(
        self, velocity: Tensor, dt: float, faces: Callable[[Tensor], FaceValues] | None = None
    ) -> Tensor:
        """The readable, differentiable step that defines the scheme (arguments as :meth:`step`): SSP-RK3 (or
        ``self.tableau``) on ``explicit_terms``, each stage projected; with implicit viscosity, half a step of exact
        diffusion before and after."""
        check_velocity(velocity, self.grid)
        implicit = self.implicit_viscosity and self.flow.viscosity > 0
        if implicit:
            velocity = self.diffuse(velocity, dt / 2)
        tab, ks = self.tableau, []
        for i in range(len(tab.b)):
            y = velocity
            if i:
                y = self.project(velocity + dt * sum(a * k for a, k in zip(tab.a[i], ks) if a))
            ks.append(self.explicit_terms(y, faces))
        out = self.project(velocity + dt * sum(b * k for b, k in zip(tab.b, ks) if b))
        return self.diffuse(out, dt / 2) if implicit else out

    def rollout(self, velocity: Tensor, dt: float, n_frames: int, inner_steps: int = 1) -> Tensor:
        """Frames at ``t = 0, inner_steps dt, ...``: ``(B, 2, N, N) -> (B, n_frames, 2, N, N)``.

        Frame 0 is the input as given (project it first if it is not divergence-free). The ``inner_steps`` between
        two frames run as one :meth:`steps` call.
        """
        check_velocity(velocity, self.grid)
        if n_frames < 1 or inner_steps < 1:
            raise ValueError(f"n_frames and inner_steps must be >= 1, got {n_frames} and {inner_steps}")
        frames = [velocity]
        for _ in range(n_frames - 1):
            velocity = self.steps(velocity, dt, inner_steps)
            frames.append(velocity)
        return torch.stack(frames, dim=1)


def stable_time_step(
    max_velocity: float, cfl: float, grid: StaggeredGrid, viscosity: float = 0.0, implicit_viscosity: bool = False
) -> float:
    """Largest stable ``dt``: ``min(cfl h / max_velocity, h^2 / (4 nu))`` (diffusive bound dropped if implicit).

    The diffusive bound ``h^2 / (2 d nu)`` (``d = 2``) is that of forward Euler on the 5-point Laplacian,
    conservative for the RK methods here (as jax-cfd's ``stable_time_step``).
    """
    if max_velocity <= 0 or cfl <= 0:
        raise ValueError(f"max_velocity and cfl must be > 0, got {max_velocity} and {cfl}")
    dt = cfl * grid.h / max_velocity
    if viscosity > 0 and not implicit_viscosity:
        dt = min(dt, grid.h**2 / (4 * viscosity))
    return dt


def taylor_green_velocity(
    grid: StaggeredGrid,
    time: float = 0.0,
    viscosity: float = 0.0,
    wavenumber: int = 1,
    amplitude: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Exact Taylor-Green vortex sampled on the faces, ``(1, 2, N, N)``, with ``kappa = 2 pi k / L``:

        u =  A sin(kappa x) cos(kappa y) exp(-2 nu kappa^2 t),  v = -A cos(kappa x) sin(kappa y) exp(...).

    Its MAC divergence is exactly zero; it solves the unforced NS equations (advection is a pure gradient).
    """
    kappa = 2 * math.pi * wavenumber / grid.length
    decay = amplitude * math.exp(-2 * viscosity * kappa**2 * time)
    xu, yu = grid.coordinates((1.0, 0.5), device=device)
    xv, yv = grid.coordinates((0.5, 1.0), device=device)
    u = decay * torch.sin(kappa * xu) * torch.cos(kappa * yu)
    v = -decay * torch.cos(kappa * xv) * torch.sin(kappa * yv)
    return torch.stack([u, v])[None].to(dtype)


def random_divergence_free_velocity(
    grid: StaggeredGrid,
    batch: int = 1,
    max_velocity: float = 1.0,
    peak_wavenumber: float = 4.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random smooth initial velocity ``(batch, 2, N, N)``, discretely divergence-free, ``max |u| = max_velocity``.

    White noise filtered to a band around ``peak_wavenumber`` (integer wavenumbers on the ``2 pi``-periodic
    box, Gaussian band of width 1.5) is the streamfunction at the corners; the velocity is its discrete curl
    (like jax-cfd's ``filtered_velocity_field``). Noise is drawn on the CPU from ``generator`` in float64,
    so a seed gives the same field on every device.
    """
    n = grid.n
    noise = torch.randn(batch, n, n, generator=generator, dtype=torch.float64)
    m = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    mr = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
    kmag = torch.sqrt(m[:, None] ** 2 + mr[None, :] ** 2)
    filt = torch.exp(-0.5 * ((kmag - peak_wavenumber) / 1.5) ** 2) / kmag.clamp(min=1.0)
    filt[0, 0] = 0.0
    psi = torch.fft.irfft2(torch.fft.rfft2(noise) * filt, s=(n, n))
    vel = velocity_from_streamfunction(psi, grid.h)
    scale = vel.abs().amax(dim=(1, 2, 3), keepdim=True)
    return (max_velocity * vel / scale).to(dtype=dtype, device=device)


# ------------------------------------------------------------------------------------------------------
# Data-generation presets (wired into `pdeforge generate` elsewhere).
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KolmogorovFVPreset:
    """Preset ``kolmogorov_fv_2d``: forced Kolmogorov flow, DNS on a fine grid, stored face-averaged.

    Defaults: domain ``2 pi``, DNS at ``256^2`` with the van Leer scheme and SSP-RK3, ``Re = 500``
    (``nu = 1 / Re``), forcing ``sin(4 y)`` with amplitude 1, drag 0.1, random initial velocity (peak
    wavenumber 4, max speed 1), 40 time units of warm-up onto the attractor, then ``n_frames = 100`` frames
    every ``0.1`` time units; ``dt`` re-chosen every 0.1 time units from CFL 0.5 and the current max of
    ``|u| + |v|``. The stored resolution is an argument of :func:`kolmogorov_fv_trajectories` (32 or 64).
    """

    dns_resolution: int = 256
    reynolds: float = 500.0
    forcing: KolmogorovForcing = field(default_factory=KolmogorovForcing)
    drag: float = 0.1
    warmup_time: float = 40.0
    frame_interval: float = 0.1
    n_frames: int = 100
    cfl: float = 0.5
    initial_max_velocity: float = 1.0
    peak_wavenumber: float = 4.0


def _advance(
    solver: StaggeredNavierStokes2D, velocity: Tensor, duration: float, cfl: float, chunk: float = 0.1
) -> Tensor:
    """Advance by ``duration``: in chunks of at most ``chunk`` time units, each in equal steps no larger than
    the CFL step of the max speed (``|u| + |v|``, the 2D CFL sum) at the start of the chunk."""
    n_chunks = max(1, math.ceil(duration / chunk - 1e-9)) if duration > 0 else 0
    for _ in range(n_chunks):
        speed = (velocity[:, 0].abs() + velocity[:, 1].abs()).max()
        if not torch.isfinite(speed):
            raise FloatingPointError("the FV solution became non-finite: lower the CFL number")
        dt_max = stable_time_step(
            max(float(speed), 1e-6), cfl, solver.grid, solver.flow.viscosity, solver.implicit_viscosity
        )
        n_steps = max(1, math.ceil(duration / n_chunks / dt_max))
        velocity = solver.steps(velocity, duration / n_chunks / n_steps, n_steps)
    return velocity


@torch.no_grad()
def kolmogorov_fv_trajectories(
    n: int,
    resolution: int = 64,
    preset: KolmogorovFVPreset = KolmogorovFVPreset(),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    trajectories: range | None = None,
) -> Tensor:
    """``n`` Kolmogorov-flow trajectories ``(n, T, 2, resolution, resolution)`` (staggered ``u, v``).

    Runs the DNS of ``preset`` (see :class:`KolmogorovFVPreset` for the defaults) at
    ``preset.dns_resolution`` and stores each frame downsampled by face averaging
    (:func:`downsample_staggered`), so stored frames are discretely divergence-free on the coarse grid.
    Frame spacing ``preset.frame_interval``; ``T = preset.n_frames``. Cost on CPU is roughly
    ``n * (warmup_time + T * frame_interval) / dt`` steps of a ``256^2`` grid: prefer a GPU for the defaults.

    The ``n`` initial velocities are drawn at once from ``generator``. ``batch_size`` (default: all ``n``) solves
    them in batches ``[0, b), [b, 2b), ...``, each with its own CFL time steps (the step follows the batch's
    fastest flow, so the numbers depend on ``batch_size``; at 256^2 on a CPU, batches of 4 run ~2x faster per
    trajectory than one batch of 32). ``trajectories`` (a ``range`` of whole batches) solves only those and
    returns ``(len(trajectories), T, ...)``, equal to that slice of the full result: the way to split the work
    over processes.
    """
    fine = preset.dns_resolution
    if resolution < 4 or fine % resolution:
        raise ValueError(f"resolution {resolution} must divide dns_resolution {fine}")
    batch = n if batch_size is None else batch_size
    todo = range(n) if trajectories is None else trajectories
    if batch < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    whole = todo.start % batch == 0 and (todo.stop % batch == 0 or todo.stop == n)
    if todo.step != 1 or todo.start < 0 or todo.stop > n or not whole:
        raise ValueError(f"trajectories {todo} must be whole batches of {batch} within range({n})")
    grid = StaggeredGrid(fine)
    flow = FlowParameters(viscosity=1.0 / preset.reynolds, drag=preset.drag, forcing=preset.forcing)
    solver = StaggeredNavierStokes2D(grid, flow)
    initial = random_divergence_free_velocity(
        grid, n, preset.initial_max_velocity, preset.peak_wavenumber, generator, dtype, device
    )
    out = []
    for start in range(todo.start, todo.stop, batch):
        v = _advance(solver, solver.project(initial[start : start + batch]), preset.warmup_time, preset.cfl)
        frames = [downsample_staggered(v, fine // resolution)]
        for _ in range(preset.n_frames - 1):
            v = _advance(solver, v, preset.frame_interval, preset.cfl)
            frames.append(downsample_staggered(v, fine // resolution))
        out.append(torch.stack(frames, dim=1))
    return torch.cat(out)


@dataclass(frozen=True)
class TaylorGreenFVPreset:
    """Preset ``taylor_green_fv_2d``: decaying Taylor-Green vortices with random parameters.

    Each sample draws a wavenumber in ``{1, .., max_wavenumber}`` (default 2), an amplitude uniform in
    ``[0.5, 1.5]`` and a random shift of the pattern; ``nu = 0.01``; ``n_frames = 50`` frames every ``0.1``;
    the van Leer scheme with CFL 0.5, on a grid ``oversample`` times finer per axis than the stored one, whose
    frames are stored face-averaged (1: solved where stored). The exact solution is known
    (:func:`taylor_green_velocity`), so the data double as a solver check.
    """

    viscosity: float = 0.01
    max_wavenumber: int = 2
    amplitude_range: tuple[float, float] = (0.5, 1.5)
    frame_interval: float = 0.1
    n_frames: int = 50
    cfl: float = 0.5
    oversample: int = 1


@torch.no_grad()
def taylor_green_fv_trajectories(
    n: int,
    resolution: int = 64,
    preset: TaylorGreenFVPreset = TaylorGreenFVPreset(),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    refine: int = 1,
) -> Tensor:
    """``n`` Taylor-Green trajectories ``(n, T, 2, resolution, resolution)`` solved by the FV scheme on a grid
    ``preset.oversample`` times finer per axis, frames stored face-averaged (:func:`downsample_staggered`).

    ``refine``: solve the same vortices (wavenumber, amplitude, shift by whole cells of ``resolution``'s grid) on a
    grid ``refine`` times finer still: the reference of a convergence check. 1 (default): the preset's grid.
    """
    if refine < 1 or preset.oversample < 1:
        raise ValueError(f"refine and oversample must be >= 1, got {refine} and {preset.oversample}")
    refine = refine * preset.oversample
    grid = StaggeredGrid(resolution * refine)
    k = torch.randint(1, preset.max_wavenumber + 1, (n,), generator=generator)
    lo, hi = preset.amplitude_range
    amp = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    shift = torch.randint(0, resolution, (n, 2), generator=generator) * refine
    v0 = torch.cat(
        [
            torch.roll(
                taylor_green_velocity(grid, wavenumber=int(k[b]), amplitude=float(amp[b])),
                shifts=(int(shift[b, 0]), int(shift[b, 1])),
                dims=(-2, -1),
            )
            for b in range(n)
        ]
    )
    solver = StaggeredNavierStokes2D(grid, FlowParameters(viscosity=preset.viscosity))
    v = v0.to(dtype=dtype, device=device)
    frames = [v]
    for _ in range(preset.n_frames - 1):
        v = _advance(solver, v, preset.frame_interval, preset.cfl)
        frames.append(v)
    if refine > 1:
        frames = [downsample_staggered(f, refine) for f in frames]
    return torch.stack(frames, dim=1)
