"""pdeforge.solvers against exact solutions: where the scheme is exact, and classical closed-form solutions."""

import math

import numpy as np
import pytest
import torch
from scipy.special import ive

import pdeforge.solvers._etdrk as etdrk_module
from pdeforge.solvers import (
    ETDRK,
    ETDRK4_COX_MATTHEWS,
    AbstractEquation,
    Advection,
    AllenCahn,
    Burgers,
    Diffusion,
    FisherKPP,
    Grid,
    KdV,
    LinearTerm,
    NavierStokes2D,
    RandomFourierSeries,
    SpectralDerivatives,
    Wave,
    rollout,
)


def test_etdrk0_single_mode_diffusion_and_advection_exact():
    grid = Grid(32, 2 * math.pi)
    (x,) = grid.coords()
    u0 = torch.sin(3 * x)[None, None]
    t = 1.7
    u = rollout(ETDRK(Diffusion(nu=0.1), grid, dt=0.1, order=0), u0, 17)[:, -1]
    assert (u[0, 0] - math.exp(-0.1 * 9 * t) * torch.sin(3 * x)).abs().max() < 1e-12
    u = rollout(ETDRK(Advection(velocity=0.7), grid, dt=0.1, order=0), u0, 17)[:, -1]
    assert (u[0, 0] - torch.sin(3 * (x - 0.7 * t))).abs().max() < 1e-12

    grid2 = Grid((16, 24), (2 * math.pi, 4 * math.pi))
    X, Y = grid2.mesh()
    w0 = (torch.cos(2 * X) * torch.sin(1.5 * Y))[None, None]
    u = ETDRK(Advection(velocity=(0.3, -1.1)), grid2, dt=2.0, order=0)(w0)
    exact = torch.cos(2 * (X - 0.6)) * torch.sin(1.5 * (Y + 2.2))
    assert (u[0, 0] - exact).abs().max() < 1e-12


def test_etdrk0_wave_standing_mode_exact():
    """The coupled (u, u_t) system uses matrix exponentials per wavenumber; cos(c k t) sin(k x) is exact."""
    grid = Grid((16, 16))
    X, Y = grid.mesh()
    u0 = torch.stack([torch.sin(2 * X) * torch.cos(Y), 0 * X * Y])[None]
    t, c, k = 1.3, 0.8, math.sqrt(5.0)
    u = ETDRK(Wave(c=c), grid, dt=t, order=0)(u0)
    assert (u[0, 0] - math.cos(c * k * t) * torch.sin(2 * X) * torch.cos(Y)).abs().max() < 1e-12
    assert (u[0, 1] + c * k * math.sin(c * k * t) * torch.sin(2 * X) * torch.cos(Y)).abs().max() < 1e-12


class _ForcedAdvection(AbstractEquation):
    """Test-only: ``u_t + c u_x = f(x)`` with the time-independent ``f`` entering as the nonlinear term."""

    name = "forced_advection"
    ndims = (1,)

    def __init__(self, velocity, forcing):
        self.velocity, self.forcing = velocity, forcing

    def linear_terms(self, ndim):
        return (LinearTerm(-self.velocity, (1,)),)

    def nonlinear_term(self, u, D):
        return self.forcing.to(u.dtype).expand_as(u)


def _forced_advection_exact(x, t, c):
    # u0 = sin x, f = cos 2x: u = sin(x - ct) + (sin 2x - sin 2(x - ct)) / (2c)
    return torch.sin(x - c * t) + (torch.sin(2 * x) - torch.sin(2 * (x - c * t))) / (2 * c)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_forced_advection_exact_through_every_stage(order):
    """Constant forcing is integrated exactly by ETDRK1-4 only if the complex phi-coefficients are kept."""
    grid = Grid(32)
    (x,) = grid.coords()
    c, t = 1.3, 2.0
    eq = _ForcedAdvection(c, torch.cos(2 * x))
    u = rollout(ETDRK(eq, grid, dt=0.25, order=order), torch.sin(x)[None, None], 8)[:, -1]
    assert (u[0, 0] - _forced_advection_exact(x, t, c)).abs().max() < 1e-12


def test_forced_advection_real_part_defect_is_caught(monkeypatch):
    """Regression guard: with real-part-only coefficients (the exponax defect) the same test fails badly."""
    original = etdrk_module.phi_functions
    monkeypatch.setattr(etdrk_module, "phi_functions", lambda *a, **k: [p.real.to(p.dtype) for p in original(*a, **k)])
    grid = Grid(32)
    (x,) = grid.coords()
    eq = _ForcedAdvection(1.3, torch.cos(2 * x))
    u = rollout(ETDRK(eq, grid, dt=0.25, order=4), torch.sin(x)[None, None], 8)[:, -1]
    assert (u[0, 0] - _forced_advection_exact(x, 2.0, 1.3)).abs().max() > 1e-2


def cole_hopf_sin(x: np.ndarray, t: float, nu: float, n_modes: int = 200) -> np.ndarray:
    """Periodic Cole-Hopf solution of u_t + u u_x = nu u_xx, u0 = sin x.

    phi0 = exp(-(1 - cos x) / (2 nu)) ∝ I_0(b) + 2 sum I_n(b) cos(nx), b = 1 / (2 nu) (Fourier series of the
    heat-equation datum, exact up to truncation), u = -2 nu phi_x / phi.
    """
    n = np.arange(1, n_modes)
    a = ive(n, 1 / (2 * nu)) * np.exp(-nu * n**2 * t)
    num = 4 * nu * ((n * a)[:, None] * np.sin(n[:, None] * x[None])).sum(0)
    den = ive(0, 1 / (2 * nu)) + 2 * (a[:, None] * np.cos(n[:, None] * x[None])).sum(0)
    return num / den


def test_cole_hopf_reference_by_quadrature():
    """The Bessel-series Cole-Hopf equals the trapezoid quadrature of the heat kernel on a fine periodic grid."""
    nu, t = 0.1, 1.0
    x = np.linspace(0, 2 * np.pi, 7, endpoint=False)
    y = np.linspace(-6 * np.pi, 8 * np.pi, 14000, endpoint=False)  # Gaussian kernel negligible beyond +-4 pi
    phi0 = np.exp(-(1 - np.cos(y)) / (2 * nu))
    kern = np.exp(-((x[:, None] - y[None]) ** 2) / (4 * nu * t))
    u_quad = ((x[:, None] - y[None]) / t * kern * phi0).sum(1) / (kern * phi0).sum(1)
    assert np.abs(u_quad - cole_hopf_sin(x, t, nu)).max() < 1e-12


def test_burgers_cole_hopf_etdrk4():
    grid = Grid(128)
    (x,) = grid.coords()
    exact = cole_hopf_sin(x.numpy(), 1.0, 0.1)
    errors = {}
    for dt in (0.025, 0.0125):
        u = rollout(ETDRK(Burgers(nu=0.1), grid, dt=dt), torch.sin(x)[None, None], round(1 / dt))[0, -1, 0].numpy()
        errors[dt] = (np.sqrt(np.mean((u - exact) ** 2)), np.abs(u - exact).max())
    rms, linf = errors[0.0125]
    assert linf <= 1e-8  # measured 9.08e-9 (Krogstad ETDRK4; spatial floor of N = 128 with 2/3 dealiasing 2.6e-9)
    assert rms <= 3e-9  # measured 2.33e-9
    assert math.log2(errors[0.025][0] / rms) > 3.7


def test_krogstad_etdrk4_beats_cox_matthews_on_cole_hopf():
    """Both are fourth order; Krogstad's (the default ETDRK4) has the smaller error constant on Burgers."""
    grid = Grid(256)
    (x,) = grid.coords()
    exact = cole_hopf_sin(x.numpy(), 1.0, 0.1)
    errors = {}
    for name, tableau in (("krogstad", None), ("cox_matthews", ETDRK4_COX_MATTHEWS)):
        for dt in (0.025, 0.0125):
            stepper = ETDRK(Burgers(nu=0.1), grid, dt=dt, tableau=tableau)
            u = rollout(stepper, torch.sin(x)[None, None], round(1 / dt))[0, -1, 0].numpy()
            errors[name, dt] = np.abs(u - exact).max()
        assert math.log2(errors[name, 0.025] / errors[name, 0.0125]) > 3.8
    assert errors["krogstad", 0.0125] < 0.75 * errors["cox_matthews", 0.0125]  # measured 9.1e-9 vs 1.32e-8


def _soliton(x, t, c=1.0, x0=20.0, length=40.0):
    s = torch.remainder(x - c * t - x0 + length / 2, length) - length / 2
    return c / 2 / torch.cosh(math.sqrt(c) / 2 * s) ** 2


def test_kdv_soliton_fourth_order():
    grid = Grid(256, 40.0)
    (x,) = grid.coords()
    errors = []
    for dt in (0.025, 0.0125):
        u = rollout(ETDRK(KdV(), grid, dt=dt), _soliton(x, 0.0)[None, None], round(4 / dt))[0, -1, 0]
        errors.append((u - _soliton(x, 4.0)).abs().max().item())
    assert errors[1] <= 1e-7  # measured 1.05e-8
    assert math.log2(errors[0] / errors[1]) >= 3.8  # measured 4.11


def test_taylor_green_vortex():
    """w = 2 sin x sin y has u . grad w = 0 and decays as exp(-2 nu t)."""
    grid = Grid((32, 32))
    X, Y = grid.mesh()
    w0 = 2 * torch.sin(X) * torch.sin(Y)
    nu, t = 0.05, 2.0
    w = rollout(ETDRK(NavierStokes2D(nu=nu), grid, dt=0.05), w0[None, None].expand(2, 1, 32, 32), 40)[:, -1]
    assert (w - math.exp(-2 * nu * t) * w0).abs().max() < 1e-10


def test_allen_cahn_tanh_front_is_stationary():
    nu = 0.01
    grid = Grid(256)
    (x,) = grid.coords()
    w = math.sqrt(2 * nu)
    u0 = torch.tanh((x - math.pi / 2) / w) - torch.tanh((x - 3 * math.pi / 2) / w) - 1
    u = rollout(ETDRK(AllenCahn(nu=nu), grid, dt=0.05), u0[None, None], 100)[0, -1, 0]
    assert (u - u0).abs().max() < 1e-8
    # and a front of the wrong width does move: the test can fail
    u_wrong = rollout(ETDRK(AllenCahn(nu=2 * nu), grid, dt=0.05), u0[None, None], 100)[0, -1, 0]
    assert (u_wrong - u0).abs().max() > 1e-2


def test_fisher_kpp_ablowitz_zeppetella_wave():
    """u = (1 + exp(sqrt(r / 6 nu) (x - s t)))^-2, s = 5 sqrt(r nu / 6): two mirrored fronts on a long box."""
    nu, r, length = 1.0, 1.0, 200.0
    grid = Grid(512, length)
    (x,) = grid.coords()
    kappa, speed = math.sqrt(r / (6 * nu)), 5 * math.sqrt(r * nu / 6)

    def exact(t):
        right = (1 + torch.exp(kappa * (x - 130.0 - speed * t))) ** -2
        left = (1 + torch.exp(kappa * (70.0 - x - speed * t))) ** -2
        return right * left

    t_final = 5.0
    traj = rollout(ETDRK(FisherKPP(nu=nu, r=r), grid, dt=0.05), exact(0.0)[None, None], 100, save_every=20)[0, :, 0]
    assert (traj[-1] - exact(t_final)).abs().max() < 1e-6

    def front(u):  # where u crosses 1/4 on the right front, linearly interpolated
        i = int(torch.nonzero((u[:-1] >= 0.25) & (u[1:] < 0.25))[-1])
        return float(x[i] + (u[i] - 0.25) / (u[i] - u[i + 1]) * grid.dx[0])

    measured = (front(traj[-1]) - front(traj[0])) / t_final
    assert abs(measured - speed) < 2e-3 * speed  # interpolation error of the crossing, not the solver


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kdv_soliton_convergence_every_order(order):
    """Against the exact soliton (dispersive, imaginary symbol): every order converges at its rate."""
    grid = Grid(256, 40.0)
    (x,) = grid.coords()
    dts = {1: (0.0025, 0.00125), 2: (0.01, 0.005), 3: (0.0125, 0.00625), 4: (0.025, 0.0125)}[order]
    errors = []
    for dt in dts:
        u = rollout(ETDRK(KdV(), grid, dt=dt, order=order), _soliton(x, 0.0)[None, None], round(4 / dt))[0, -1, 0]
        errors.append((u - _soliton(x, 4.0)).abs().max().item())
    assert abs(math.log2(errors[0] / errors[1]) - order) < 0.3, errors


class _AdvectiveBurgers(AbstractEquation):
    """Test-only: Burgers with ``-u u_x`` as a plain nonlinear term (the generic path, no folded flux symbol)."""

    name = "advective_burgers"
    ndims = (1,)

    def __init__(self, nu):
        self.nu = nu

    def linear_terms(self, ndim):
        return (LinearTerm(self.nu, (2,)),)

    def nonlinear_term(self, u, D):
        return -u * D(u, (1,))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_folded_flux_path_equals_generic_path(order):
    """The single-flux fast path (symbol and masks folded into the coefficients) against the generic path: with
    2/3 dealiasing ``-u u_x`` and ``-(u^2 / 2)_x`` are the same projection, so the two agree to round-off."""
    grid = Grid(64)
    (x,) = grid.coords()
    u0 = (torch.sin(x) + 0.5 * torch.cos(3 * x) + 0.2 * torch.sin(30 * x))[None, None]  # content above N/3 too
    fast = ETDRK(Burgers(nu=0.05), grid, dt=0.05, order=order)
    generic = ETDRK(_AdvectiveBurgers(0.05), grid, dt=0.05, order=order)
    assert fast.terms.single_flux and not generic.terms.single_flux
    a, b = rollout(fast, u0, 20), rollout(generic, u0, 20)
    assert (a - b).abs().max() < 1e-12
    assert (a[:, -1] - a[:, 0]).abs().max() > 0.1  # it moved


class _JacobianVorticity(AbstractEquation):
    """Test-only: 2D vorticity NS with ``-(u w_x + v w_y)`` as a plain nonlinear term (four inverse FFTs)."""

    name = "jacobian_vorticity"
    ndims = (2,)

    def __init__(self, nu):
        self.nu = nu

    def linear_terms(self, ndim):
        return (LinearTerm(self.nu, (2, 0)), LinearTerm(self.nu, (0, 2)))

    def nonlinear_term(self, w, D):
        u, v = -D.inverse_laplacian(w, (0, 1)), D.inverse_laplacian(w, (1, 0))
        return -(u * D(w, (1, 0)) + v * D(w, (0, 1)))


def test_basdevant_form_equals_the_advective_form():
    """``NavierStokes2D`` writes ``-u . grad w`` in Basdevant's conservation form (two inverse and two forward FFTs
    per stage); with 2/3 dealiasing it is the same projection as the advective form, in the solver and pointwise."""
    grid = Grid((32, 32))
    gen = torch.Generator().manual_seed(3)
    w0 = RandomFourierSeries(max_wavenumber=12)(grid, 2, gen, dtype=torch.float64)  # content above N/3 too
    fast = ETDRK(NavierStokes2D(nu=0.01), grid, dt=0.05)
    reference = ETDRK(_JacobianVorticity(0.01), grid, dt=0.05)
    a, b = rollout(fast, w0, 20), rollout(reference, w0, 20)
    assert (a - b).abs().max() < 1e-11
    assert (a[:, -1] - a[:, 0]).abs().max() > 0.1
    D = SpectralDerivatives(grid)  # no dealiasing: the pointwise identity on a band-limited field
    w = RandomFourierSeries(max_wavenumber=5)(grid, 2, gen, dtype=torch.float64)
    got = NavierStokes2D(nu=0.01).fluxes(w, D)
    assert (got - _JacobianVorticity(0.01).nonlinear_term(w, D)).abs().max() < 1e-11 * w.abs().max() ** 2
