"""Every (equation, order) of the catalogue: temporal order, residual under the shared definition, invariants."""

import inspect
import math

import pytest
import torch

import pdeforge.solvers as solvers
from pdeforge.solvers import (
    EQUATIONS,
    ETDRK,
    AbstractDerivatives,
    AbstractEquation,
    AllenCahn,
    Burgers,
    KdV,
    KuramotoSivashinsky,
    KuramotoSivashinskyFlame,
    NavierStokes2D,
    NonLocalTermError,
    Normalization,
    RandomFourierSeries,
    SpectralDerivatives,
    rollout,
)


def _concrete_equations() -> set[type]:
    """Every concrete AbstractEquation subclass defined in pdeforge.solvers (test-only ones excluded)."""
    found, todo = set(), [AbstractEquation]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if not inspect.isabstract(sub) and sub.__module__.startswith("pdeforge.solvers"):
                found.add(sub)
    return found


def test_catalogue_lists_every_equation_once():
    listed = [type(cfg.equation) for cfg in EQUATIONS]
    assert len(listed) == len(set(listed))
    assert set(listed) == _concrete_equations()
    for cls in listed:
        assert cls.__name__ in solvers.__all__


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("cfg", EQUATIONS, ids=lambda c: c.equation.name)
def test_temporal_order(cfg, order):
    """Observed order within 0.3 of the declared one (self-convergence against ETDRK4 at dt/32);
    linear PDEs are integrated exactly by every order."""
    u0 = cfg.initial_state(batch=2)
    if cfg.stepper(0).linear:
        exact = ETDRK(cfg.equation, cfg.grid, cfg.t_final, order=0)(u0)  # one exact step
        u = rollout(cfg.stepper(order), u0, cfg.n_steps)[:, -1]
        assert (u - exact).abs().max() < 1e-12 * max(1.0, exact.abs().max().item())
        return
    ref = _reference(cfg)
    errors = []
    for refine in (2, 4):
        u = rollout(cfg.stepper(order, cfg.dt / refine), u0, cfg.n_steps * refine)[:, -1]
        errors.append((u - ref).abs().max().item())
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - solvers.TABLEAUS[order].order) < 0.3, (errors, observed)
    if order > 0:
        assert errors[1] < 1e-2 * ref.abs().max().item()


_REFERENCES: dict[str, torch.Tensor] = {}


def _reference(cfg) -> torch.Tensor:
    if cfg.equation.name not in _REFERENCES:
        u0 = cfg.initial_state(batch=2)
        _REFERENCES[cfg.equation.name] = rollout(cfg.stepper(4, cfg.dt / 32), u0, cfg.n_steps * 32)[:, -1]
    return _REFERENCES[cfg.equation.name]


@pytest.mark.parametrize("cfg", EQUATIONS, ids=lambda c: c.equation.name)
def test_solver_solution_has_small_residual(cfg):
    """The spectral solution satisfies the shared physical-space definition ``equation.residual``.

    u_t comes from a 4th-order central difference of the rollout and D is the (non-dealiased) spectral
    derivative. The initial state is projected onto the 2/3 band, where the dealiased solution then stays;
    the solver's right-hand side is the band part of ``L u + N(u) + f``, so the band part of the residual
    must vanish (the rest is the Galerkin truncation, not a property of the stepper)."""
    grid, h = cfg.grid, cfg.dt / 32
    dims = tuple(range(-grid.ndim, 0))
    mask = grid.dealias_mask()

    def band(v):
        return torch.fft.irfftn(torch.fft.rfftn(v, dim=dims) * mask, s=grid.shape, dim=dims)

    traj = rollout(cfg.stepper(4, h), band(cfg.initial_state(batch=2)), 6)
    u_t = (-traj[:, 5] + 8 * traj[:, 4] - 8 * traj[:, 2] + traj[:, 1]) / (12 * h)
    D = SpectralDerivatives(grid)
    scale = u_t.abs().max().item()
    assert band(cfg.equation.residual(u_t, traj[:, 3], D)).abs().max().item() < 1e-6 * scale
    # and the residual of a wrong time derivative is not small
    assert band(cfg.equation.residual(1.01 * u_t, traj[:, 3], D)).abs().max().item() > 1e-3 * scale


class _AutogradDerivatives(AbstractDerivatives):
    """A point-wise provider as a PINN would write it: local derivatives by autograd at points x (N, d)."""

    def __init__(self, x):
        self.x = x

    def __call__(self, u, alpha):
        for d, order in enumerate(alpha):
            for _ in range(order):
                u = torch.autograd.grad(u.sum(), self.x, create_graph=True)[0][:, d : d + 1]
        return u

    def coords(self):
        return tuple(self.x[:, d : d + 1] for d in range(self.x.shape[1]))


@pytest.mark.parametrize(
    "equation", [Burgers(nu=0.1), KdV(nu=0.05), KuramotoSivashinsky(), KuramotoSivashinskyFlame(), AllenCahn(nu=0.3)]
)
def test_residual_same_under_autograd_and_spectral_derivatives(equation):
    """One definition, two providers: the PINN-style residual equals the spectral one at the grid points."""
    grid = solvers.Grid(64)

    def field(x):
        return torch.sin(x) + 0.3 * torch.cos(2 * x) + 0.1

    x = grid.coords()[0][:, None].clone().requires_grad_(True)  # (N, 1) points
    u_pts = field(x)  # (N, 1): channels on axis 1
    r_auto = equation.residual(torch.zeros_like(u_pts), u_pts, _AutogradDerivatives(x)).detach()[:, 0]
    u_grid = field(grid.coords()[0])[None, None]
    r_spec = equation.residual(torch.zeros_like(u_grid), u_grid, SpectralDerivatives(grid))[0, 0]
    assert (r_auto - r_spec).abs().max() < 1e-9  # round-off of k^4 on 64 points: 1.6e-10
    assert r_spec.abs().max() > 0.1


def test_navier_stokes_pointwise_residual_raises_clearly():
    x = torch.rand(10, 2, dtype=torch.float64, requires_grad=True)
    w = torch.sin(x[:, :1]) * torch.cos(x[:, 1:])
    with pytest.raises(NonLocalTermError, match="inverse Laplacian"):
        NavierStokes2D(nu=0.01).residual(torch.zeros_like(w), w, _AutogradDerivatives(x))


@pytest.mark.parametrize("equation", [Burgers(nu=0.02), KdV(), KuramotoSivashinsky()], ids=lambda e: e.name)
def test_mean_conserved_by_conservative_forms(equation):
    grid = solvers.Grid(64, 32 * math.pi if isinstance(equation, KuramotoSivashinsky) else 2 * math.pi)
    ic = RandomFourierSeries(max_wavenumber=4, normalization=Normalization(zero_mean=False, amplitude=0.5))
    u0 = ic(grid, 3, torch.Generator().manual_seed(1))
    traj = rollout(ETDRK(equation, grid, dt=0.01 if isinstance(equation, KdV) else 0.05), u0, 100, save_every=50)
    means = traj.mean(dim=-1)
    assert means[:, 0].abs().min() > 1e-3  # a non-trivial mean to conserve
    assert (means - means[:, :1]).abs().max() < 1e-13
    assert (traj[:, -1] - traj[:, 0]).abs().max() > 1e-2  # and the field did evolve


def test_navier_stokes_energy_budget():
    """dE/dt = -2 nu Z with E = <|u|^2>/2, Z = <w^2>/2 (no forcing, no drag)."""
    grid = solvers.Grid((64, 64))
    nu, dt = 0.01, 0.0025
    w0 = solvers.LogNormalVorticity(peak_wavenumber=4.0)(grid, 2, torch.Generator().manual_seed(3))
    # keep the resolved (2/3) band, where the dealiased flow stays: the Nyquist modes have vorticity but,
    # with odd derivatives zeroed there, no velocity, which would break <|grad u|^2> = <w^2>
    w0 = torch.fft.irfft2(torch.fft.rfft2(w0) * grid.dealias_mask(), s=grid.shape)
    eq = NavierStokes2D(nu=nu)
    traj = rollout(ETDRK(eq, grid, dt=dt), w0, 40)
    D = SpectralDerivatives(grid)
    flat = traj.flatten(0, 1)
    energy = 0.5 * (eq.velocity(flat, D) ** 2).sum(1).mean(dim=(-2, -1)).reshape(2, -1)
    enstrophy = 0.5 * (flat[:, 0] ** 2).mean(dim=(-2, -1)).reshape(2, -1)
    dE = (-energy[:, 4:] + 8 * energy[:, 3:-1] - 8 * energy[:, 1:-3] + energy[:, :-4]) / (12 * dt)
    budget = -2 * nu * enstrophy[:, 2:-2]
    assert ((dE - budget).abs() / budget.abs()).max() < 1e-6
    assert (energy[:, -1] < energy[:, 0] * 0.995).all()  # energy does decay measurably


def test_flame_front_slope_solves_kuramoto_sivashinsky():
    """In 1D, u = h_x of the flame-front form solves the conservative KS; the two ETDRK4 solvers agree to
    round-off at every step (their stages are each other's derivatives, mode by mode)."""
    grid = solvers.Grid(128, 32 * math.pi)
    h0 = RandomFourierSeries(max_wavenumber=6)(grid, 2, torch.Generator().manual_seed(4))
    D = SpectralDerivatives(grid)
    h = rollout(ETDRK(KuramotoSivashinskyFlame(), grid, dt=0.1), h0, 200, save_every=50)
    u = rollout(ETDRK(KuramotoSivashinsky(), grid, dt=0.1), D(h0, (1,)), 200, save_every=50)
    slope = D(h.flatten(0, 1), (1,)).unflatten(0, h.shape[:2])
    assert (slope - u).abs().max() < 1e-10 * u.abs().max()
    assert (u[:, -1] - u[:, 0]).abs().max() > 0.5  # the chaotic flow did move


def test_flame_front_mean_falls_at_half_the_mean_squared_gradient():
    """d<h>/dt = -1/2 <|grad h|^2> in 2D (the linear terms leave the mean alone), and the fourth-order term is
    the isotropic lap^2: a field transposed stays transposed."""
    grid = solvers.Grid((32, 32), 16 * math.pi)
    dt = 0.02
    h0 = RandomFourierSeries(max_wavenumber=3)(grid, 2, torch.Generator().manual_seed(5))
    h0 = torch.fft.irfft2(torch.fft.rfft2(h0) * grid.dealias_mask(), s=grid.shape)
    stepper = ETDRK(KuramotoSivashinskyFlame(), grid, dt=dt)
    traj = rollout(stepper, h0, 40)
    D = SpectralDerivatives(grid)
    flat = traj.flatten(0, 1)
    grad_sq = (D(flat, (1, 0)) ** 2 + D(flat, (0, 1)) ** 2).mean(dim=(-2, -1)).reshape(2, -1)
    mean = traj.mean(dim=(-2, -1))[..., 0]
    d_mean = (-mean[:, 4:] + 8 * mean[:, 3:-1] - 8 * mean[:, 1:-3] + mean[:, :-4]) / (12 * dt)
    assert ((d_mean + 0.5 * grad_sq[:, 2:-2]).abs() / grad_sq[:, 2:-2]).max() < 1e-6
    assert (mean[:, -1] - mean[:, 0]).abs().min() > 1e-3  # the mean did move (by ~6e-3)
    transposed = rollout(stepper, h0.transpose(-2, -1), 40)
    assert (transposed - traj.transpose(-2, -1)).abs().max() < 1e-12 * traj.abs().max()
