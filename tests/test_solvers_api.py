"""pdeforge.solvers API: grid, shapes and errors, dtype, rollout layout, autograd, phi functions, ICs."""

import math

import pytest
import torch

from pdeforge.solvers import (
    ETDRK,
    TABLEAUS,
    Burgers,
    ChannelAffine,
    DiffusedNoise,
    GaussianBlobs,
    GaussianRandomField,
    GrayScott,
    Grid,
    KolmogorovForcing,
    KuramotoSivashinsky,
    LogNormalVorticity,
    NavierStokes2D,
    Normalization,
    RandomDiscontinuities,
    RandomFourierSeries,
    SpectralDerivatives,
    phi_functions,
    rollout,
)


def test_grid_helpers():
    grid = Grid((8, 6), (2.0, 3.0))
    assert grid.ndim == 2 and grid.dx == (0.25, 0.5) and grid.spectral_shape == (8, 4)
    x, y = grid.coords()
    assert torch.allclose(x, torch.arange(8, dtype=torch.float64) * 0.25) and y[-1].item() == 2.5
    kx, ky = grid.wavenumbers()
    assert kx.shape == (8, 1) and ky.shape == (1, 4)
    assert kx[1, 0].item() == pytest.approx(math.pi) and kx[-1, 0].item() == pytest.approx(-math.pi)
    assert ky[0, -1].item() == pytest.approx(2 * math.pi / 3 * 3)
    assert grid.wavenumbers(zero_nyquist=True)[0][4, 0].item() == 0.0
    assert Grid(16).length == (2 * math.pi,)
    with pytest.raises(ValueError, match="one per dimension"):
        Grid((8, 8), (1.0, 2.0, 3.0))


def test_spectral_derivatives_exact_on_trig_polynomials():
    grid = Grid((32, 16), (2 * math.pi, math.pi))
    X, Y = grid.mesh()
    u = (torch.sin(3 * X) * torch.cos(4 * Y))[None, None]
    D = SpectralDerivatives(grid)
    assert (D(u, (1, 2)) - (-48 * torch.cos(3 * X) * torch.cos(4 * Y))).abs().max() < 1e-11
    lap_inv = D.inverse_laplacian(u, (0, 0))
    assert (lap_inv - (-u / (9 + 16))).abs().max() < 1e-14


def test_stepper_shape_errors_are_helpful():
    grid = Grid(64)
    stepper = ETDRK(Burgers(nu=0.1), grid, dt=0.1)
    with pytest.raises(ValueError, match=r"add batch and channel axes with u\[None, None\]"):
        stepper(torch.zeros(64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"add a channel axis"):
        stepper(torch.zeros(3, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"channels \('u', 'v'\)"):
        ETDRK(GrayScott(), Grid((16, 16)), dt=1.0)(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="ndim in"):
        ETDRK(NavierStokes2D(), grid, dt=0.1)
    with pytest.raises(ValueError, match="order must be one of"):
        ETDRK(Burgers(), grid, dt=0.1, order=5)


def test_float32_follows_input_and_agrees_with_float64():
    grid = Grid(64, 32 * math.pi)
    stepper = ETDRK(KuramotoSivashinsky(), grid, dt=0.1)
    u0 = RandomFourierSeries(max_wavenumber=4)(grid, 3, torch.Generator().manual_seed(0))
    u64 = rollout(stepper, u0, 20)
    u32 = rollout(stepper, u0.float(), 20)
    assert u32.dtype == torch.float32 and u64.dtype == torch.float64
    assert (u32.double() - u64).abs().max() < 1e-5
    assert (u64[:, -1] - u64[:, 0]).abs().max() > 0.1


def test_rollout_layout_and_save_every():
    grid = Grid(32)
    stepper = ETDRK(Burgers(nu=0.1), grid, dt=0.05)
    u0 = RandomFourierSeries()(grid, 2, torch.Generator().manual_seed(0))
    every = rollout(stepper, u0, 6)
    sparse = rollout(stepper, u0, 6, save_every=3)
    assert every.shape == (2, 7, 1, 32) and sparse.shape == (2, 3, 1, 32)
    assert torch.equal(every[:, 0], u0)
    assert (sparse - every[:, ::3]).abs().max() < 1e-14
    # the generic path (any callable) agrees with the spectral fast path
    generic = rollout(lambda u: stepper(u), u0, 6, save_every=3)
    assert (generic - sparse).abs().max() < 1e-13


def test_gradcheck_through_short_rollout():
    grid = Grid(16)
    stepper = ETDRK(Burgers(nu=0.1), grid, dt=0.05)
    u0 = (0.5 * torch.sin(grid.coords()[0]) + 0.1)[None, None].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda u: rollout(stepper, u, 3)[:, -1], (u0,))


def test_a_rollout_without_gradients_returns_an_ordinary_tensor():
    """Without a gradient to u0 the ETDRK states are inference tensors inside rollout; what it returns is not one:
    it can be a training target (saved for backward) and changed in place, and equals the step-by-step result."""
    grid = Grid(32, 8 * math.pi)
    stepper = ETDRK(KuramotoSivashinsky(), grid, dt=0.1)  # the lean path that skips the mask of its own output
    u0 = RandomFourierSeries()(grid, 2, torch.Generator().manual_seed(0))
    traj = rollout(stepper, u0, 5)
    assert not traj.is_inference()
    state = stepper.to_spectral(u0)
    for _ in range(5):
        state = stepper.step_spectral(state)
    assert torch.equal(traj[:, -1], stepper.to_physical(state))
    w = torch.ones((), requires_grad=True)
    ((w * traj[:, 1:] - traj[:, 1:].flip(1)) ** 2).mean().backward()  # saves the target for backward
    assert w.grad is not None and float(w.grad.abs()) > 0
    traj.mul_(2.0)  # in place, outside inference mode
    with torch.inference_mode():  # under a caller's inference mode too: same numbers, the mask not skipped
        again = stepper.step_spectral(stepper.step_spectral(stepper.to_spectral(u0)))
    assert torch.equal(stepper.to_physical(again), rollout(stepper, u0, 2)[:, -1])


def test_gradient_of_diffusion_matches_adjoint():
    """d/du0 of <w, u(T)> for the heat equation is exp(nu lap T) w (self-adjoint): a value check."""
    grid = Grid(32)
    (x,) = grid.coords()
    from pdeforge.solvers import Diffusion

    u0 = torch.cos(x)[None, None].clone().requires_grad_(True)
    w = torch.sin(2 * x)[None, None]
    (rollout(ETDRK(Diffusion(nu=0.3), grid, dt=0.1), u0, 10)[:, -1] * w).sum().backward()
    assert (u0.grad - math.exp(-0.3 * 4 * 1.0) * w).abs().max() < 1e-12


def test_phi_functions_contour_matches_closed_form():
    z = torch.tensor([-50.0, -1.0, -1e-3, 1e-6j, 2.0 + 3.0j, 40j], dtype=torch.complex128)
    phi = phi_functions(z[:, None], 3, diagonal=True)
    e = torch.exp(z)
    p1 = (e - 1) / z
    p2 = (e - 1 - z) / z**2
    p3 = (e - 1 - z - z**2 / 2) / z**3
    big = z.abs() > 0.5  # closed forms are accurate away from 0
    for got, want in zip(phi[1:], (p1, p2, p3)):
        assert ((got[:, 0] - want).abs() / want.abs())[big].max() < 1e-13
    # near 0, where the closed forms cancel catastrophically: Taylor 1 + z/2, 1/2 + z/6, 1/6 + z/24
    z0 = z[3]
    small = phi[1][3, 0], phi[2][3, 0], phi[3][3, 0]
    assert all(abs(v - t) < 1e-12 for v, t in zip(small, (1 + z0 / 2, 0.5 + z0 / 6, 1 / 6 + z0 / 24)))
    # the matrix path agrees with the scalar one on diagonal matrices
    mats = torch.diag_embed(z.reshape(3, 2))
    phim = phi_functions(mats, 3, diagonal=False)
    for pm, ps in zip(phim, phi_functions(z.reshape(3, 2), 3, diagonal=True)):
        assert (pm.diagonal(dim1=-2, dim2=-1) - ps).abs().max() < 1e-12


def test_tableaus_declare_their_order_and_consistency():
    assert [TABLEAUS[k].order for k in range(5)] == [0, 1, 2, 3, 4]
    for k in range(1, 5):
        tab = TABLEAUS[k]
        assert len(tab.c) == len(tab.a) == len(tab.b)
        # sum_i b_i(0) = phi_1(0) = 1 (consistency); phi_k(0) = 1/k!
        total = sum(w / math.factorial(kk) for co in tab.b for (w, kk, c) in co)
        assert total == pytest.approx(1.0)


def test_equation_metadata():
    eq = NavierStokes2D(nu=1e-3, forcing=KolmogorovForcing(wavenumber=4, amplitude=1.0))
    assert eq.name == "navier_stokes_2d" and eq.channels == ("vorticity",)
    assert eq.parameters() == {
        "nu": 1e-3,
        "drag": 0.0,
        "forcing": "kolmogorov",
        "forcing_wavenumber": 4,
        "forcing_amplitude": 1.0,
    }
    assert GrayScott().channels == ("u", "v") and Burgers(nu=0.2).parameters() == {"nu": 0.2}


@pytest.mark.parametrize(
    "ic",
    [
        RandomFourierSeries(max_wavenumber=3),
        GaussianRandomField(exponent=3.0),
        DiffusedNoise(intensity=1e-2),
        RandomDiscontinuities(n_boxes=2),
        GaussianBlobs(n_blobs=2),
        LogNormalVorticity(),
        ChannelAffine(base=GaussianBlobs(), scale=(-0.5, 0.25), offset=(1.0, 0.0)),
    ],
    ids=lambda ic: type(ic).__name__,
)
def test_initial_conditions_seeded_and_normalised(ic):
    grid = Grid((32, 24))
    a = ic(grid, 3, torch.Generator().manual_seed(7))
    b = ic(grid, 3, torch.Generator().manual_seed(7))
    c = ic(grid, 3, torch.Generator().manual_seed(8))
    assert a.shape == (3, ic.channels, 32, 24) and a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # samples differ within a batch
    norm = ic.normalization
    dims = (-2, -1)
    if norm.zero_mean:
        assert a.mean(dim=dims).abs().max() < 1e-13
    if norm.scale_by == "max":
        assert torch.allclose(a.abs().amax(dim=dims), torch.full(a.shape[:2], norm.amplitude, dtype=a.dtype))
    if norm.scale_by == "std":
        assert torch.allclose(a.std(dim=dims), torch.full(a.shape[:2], norm.amplitude, dtype=a.dtype))


def test_initial_condition_options():
    grid = Grid(64)
    gen = torch.Generator().manual_seed(0)
    u = RandomFourierSeries(max_wavenumber=2, normalization=Normalization(zero_mean=False, scale_by=None))(grid, 2, gen)
    spectrum = torch.fft.rfft(u, dim=-1).abs()
    assert spectrum[..., 3:].max() < 1e-12 and spectrum[..., 1:3].min() > 1e-3
    steps = RandomDiscontinuities(n_boxes=1)(grid, 2, gen)
    assert all(len(torch.unique(s)) <= 2 for s in steps[:, 0])  # piecewise constant: one box
    with pytest.raises(ValueError, match="2D field"):
        LogNormalVorticity()(grid, 1, gen)
    f32 = GaussianRandomField()(grid, 1, torch.Generator().manual_seed(1), dtype=torch.float32)
    f64 = GaussianRandomField()(grid, 1, torch.Generator().manual_seed(1))
    assert f32.dtype == torch.float32 and torch.allclose(f32.double(), f64, atol=1e-6)


def test_three_dimensional_equations():
    grid = Grid((8, 8, 12), (2 * math.pi, 2 * math.pi, 3 * math.pi))
    X, Y, Z = grid.mesh()
    u0 = (torch.sin(X) * torch.cos(2 * Y) * torch.sin(Z * 2 / 3))[None, None]
    from pdeforge.solvers import AdvectionDiffusion, SwiftHohenberg

    eq = AdvectionDiffusion(velocity=(0.5, -0.25, 1.0), nu=0.1)
    u = rollout(ETDRK(eq, grid, dt=0.1, order=2), u0, 10)[:, -1]
    k2 = 1 + 4 + 4 / 9
    exact = math.exp(-0.1 * k2) * torch.sin(X - 0.5) * torch.cos(2 * (Y + 0.25)) * torch.sin((Z - 1.0) * 2 / 3)
    assert (u[0, 0] - exact).abs().max() < 1e-12
    # a 3D nonlinear run: Swift-Hohenberg (r, k0 = 1) grows the |k| = 1 modes it starts from
    v0 = 0.01 * torch.cos(X)[None, None].expand(1, 1, 8, 8, 12)
    v = ETDRK(SwiftHohenberg(r=0.5, g=0.0), grid, dt=0.5)(v0.contiguous())
    assert (v[0, 0] - math.exp(0.5 * 0.5) * v0[0, 0]).abs().max() < 1e-6  # linear growth e^{r t}, cubic ~1e-6


def test_coefficients_cast_once_per_dtype():
    stepper = ETDRK(Burgers(nu=0.1), Grid(32), dt=0.1)
    c32 = stepper.coefficients(torch.float32, torch.device("cpu"))
    assert c32 is stepper.coefficients(torch.float32, torch.device("cpu"))
    assert c32.E.dtype == torch.complex64
    assert stepper.coefficients(torch.float64, torch.device("cpu")).E.dtype == torch.complex128
