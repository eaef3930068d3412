"""Compressible Euler / Navier-Stokes: the exact Riemann solver, shock tubes against exact cell averages (Toro's
tests 1-5), conservation, second order on smooth problems (isentropic vortex, acoustic wave), viscous decay."""

import math

import numpy as np
import pytest
import torch

from pdeforge.solvers.compressible import (
    CompressibleSolver,
    FiniteVolumeScheme,
    IdealGas,
    NonPhysicalStateError,
    exact_riemann,
    riemann_cell_averages,
    riemann_star_state,
    shock_tube,
)

F64 = torch.float64
SOD = ((1.0, 0.0, 1.0), (0.125, 0.0, 0.1))
# Toro, table 4.1: left, right, x_interface, t_end; and table 4.2's exact p*, u*
TORO = {
    1: ((1.0, 0.75, 1.0), (0.125, 0.0, 0.1), 0.3, 0.2),
    2: ((1.0, -2.0, 0.4), (1.0, 2.0, 0.4), 0.5, 0.15),
    3: ((1.0, 0.0, 1000.0), (1.0, 0.0, 0.01), 0.5, 0.012),
    4: ((5.99924, 19.5975, 460.894), (5.99242, -6.19633, 46.0950), 0.4, 0.035),
    5: ((1.0, -19.59745, 1000.0), (1.0, -19.59745, 0.01), 0.8, 0.012),
}
TORO_STAR = {1: (0.30313, 0.92745), 2: (0.00189, 0.0), 3: (460.894, 19.5975), 4: (1691.64, 8.68975)}


def _l1_density(left, right, n, t, x0):
    sol = shock_tube(left, right, n_cells=n, t_end=t, x_interface=x0)
    exact = riemann_cell_averages(left, right, np.linspace(0.0, 1.0, n + 1), t, x_interface=x0)
    return float(np.abs(sol.density - exact[0]).mean()), sol


# -- the exact Riemann solver --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_star_state_matches_toro_table(case):
    left, right = SOD if case == 1 else TORO[case][:2]
    ps, us = riemann_star_state(left, right)
    want_p, want_u = TORO_STAR[case]
    assert float(ps) == pytest.approx(want_p, rel=2e-5, abs=1e-5)
    assert float(us) == pytest.approx(want_u, rel=2e-5, abs=1e-5)


def test_exact_riemann_jump_conditions_and_batch():
    """Sod at t = 0.2: the Rankine-Hugoniot conditions across the shock hold; a batch equals the problems alone."""
    gamma = 1.4
    ps, us = riemann_star_state(*SOD)
    rho2 = 0.125 * (ps / 0.1 + 1 / 6) / (ps / 0.1 / 6 + 1)  # Toro eq. 4.50 with (gamma-1)/(gamma+1) = 1/6
    speed = rho2 * us / (rho2 - 0.125)  # mass conservation across the shock
    e1, e2 = 0.1 / (gamma - 1), ps / (gamma - 1) + 0.5 * rho2 * us**2
    assert speed * (e2 - e1) == pytest.approx(us * (e2 + ps), rel=1e-10)  # energy flux across the shock
    x = np.linspace(0.0, 1.0, 101)
    rho, u, p = exact_riemann(*SOD, x, 0.2, x_interface=0.5)
    assert rho[0] == 1.0 and rho[-1] == 0.125 and np.all(np.diff(rho) <= 1e-14)  # Sod's density falls left to right
    lefts = tuple(np.array([a, b]) for a, b in zip(SOD[0], TORO[2][0]))
    rights = tuple(np.array([a, b]) for a, b in zip(SOD[1], TORO[2][1]))
    rho_b, _, p_b = exact_riemann(lefts, rights, x, 0.15, x_interface=0.5)
    assert rho_b.shape == (2, 101)
    np.testing.assert_allclose(rho_b[1], exact_riemann(*TORO[2][:2], x, 0.15, x_interface=0.5)[0], rtol=1e-13)
    np.testing.assert_allclose(p_b[0], exact_riemann(*SOD, x, 0.15, x_interface=0.5)[2], rtol=1e-13)


def test_exact_riemann_refuses_vacuum_and_bad_states():
    with pytest.raises(ValueError, match="vacuum"):
        riemann_star_state((1.0, -10.0, 0.1), (1.0, 10.0, 0.1))
    with pytest.raises(ValueError, match="density and pressure must be > 0"):
        exact_riemann((1.0, 0.0, -1.0), (1.0, 0.0, 1.0), np.zeros(3), 0.1)


# -- shock tubes ---------------------------------------------------------------------------------------------------
def test_sod_l1_error_and_convergence():
    errors = {n: _l1_density(*SOD, n, 0.2, 0.5)[0] for n in (200, 400, 800)}
    assert errors[400] <= 2e-3
    assert errors[200] > errors[400] > errors[800]
    assert errors[800] <= 0.6 * errors[200]  # measured 2.50e-3, 1.34e-3, 7.0e-4


@pytest.mark.parametrize("case", [1, 2, 3, 4, 5])
def test_toro_tests_positive_and_accurate(case):
    left, right, x0, t = TORO[case]
    err, sol = _l1_density(left, right, 400, t, x0)
    assert np.all(sol.density > 0) and np.all(sol.pressure > 0) and np.all(np.isfinite(sol.velocity))
    bound = {1: 3e-3, 2: 4e-3, 3: 6e-2, 4: 0.25, 5: 3e-2}[case]
    assert err <= bound


@pytest.mark.parametrize("flux", ["hllc", "rusanov"])
@pytest.mark.parametrize("limiter", ["minmod", "van_leer", "mc", None])
def test_every_flux_and_limiter_solves_sod(flux, limiter):
    solver = CompressibleSolver(
        200, gas=IdealGas(), scheme=FiniteVolumeScheme(flux=flux, limiter=limiter), boundaries="outflow"
    )
    x = solver.cell_centres()[0]
    w = torch.stack([torch.where(x < 0.5, 1.0, 0.125), 0 * x, torch.where(x < 0.5, 1.0, 0.1)])[None]
    rho = solver.primitive(solver.advance(solver.conserved(w), 0.2))[0, 0].numpy()
    exact = riemann_cell_averages(*SOD, np.linspace(0, 1, 201), 0.2, x_interface=0.5)[0]
    # measured (HLLC, Rusanov): minmod 4.1e-3, 5.1e-3; van Leer 2.8e-3, 3.6e-3; MC 2.5e-3, 3.4e-3; first order
    # 1.3e-2, 1.8e-2
    bound = {None: 2e-2, "minmod": 6e-3}.get(limiter, 4e-3)
    assert np.abs(rho - exact).mean() <= bound


def line_index(axis):
    return [slice(None) if a == axis else 1 for a in range(3)]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sod_along_each_axis_of_a_3d_grid_equals_1d(axis):
    n = 64
    shape = [4, 4, 4]
    shape[axis] = n
    lengths = [4 / n] * 3
    lengths[axis] = 1.0
    bcs = ["periodic"] * 3
    bcs[axis] = "outflow"
    solver = CompressibleSolver(shape, lengths, boundaries=bcs)
    x = solver.cell_centres()[axis].view([-1 if a == axis else 1 for a in range(3)])
    rho = torch.where(x < 0.5, 1.0, 0.125).expand(*shape)
    p = torch.where(x < 0.5, 1.0, 0.1).expand(*shape)
    w = torch.zeros(1, 5, *shape, dtype=F64)
    w[:, 0], w[:, 4] = rho, p
    ref = CompressibleSolver(n, boundaries="outflow")
    u, u_ref = solver.conserved(w), ref.conserved(w[(slice(None), [0, 1 + axis, 4], *line_index(axis))])
    for _ in range(100):  # fixed steps: the CFL step of the 3D grid counts the transverse axes too
        u, u_ref = solver.step(u, 1e-3), ref.step(u_ref, 1e-3)
    out = solver.primitive(u)[0]
    line = out[([0, 1 + axis, 4], *line_index(axis))]
    np.testing.assert_allclose(line, ref.primitive(u_ref)[0], rtol=1e-13, atol=1e-14)
    other = [1 + a for a in range(3) if a != axis]
    assert out[other].abs().max() <= 1e-13  # no transverse velocity appears


@pytest.mark.parametrize("boundaries", ["periodic", "wall"])
def test_conservation_to_round_off(boundaries):
    """Periodic boundaries: mass, momentum and energy; reflective walls: mass and energy (the walls push)."""
    gen = torch.Generator().manual_seed(0)
    solver = CompressibleSolver(
        (32, 24),
        (1.0, 0.75),
        gas=IdealGas(eta=0.01, zeta=0.005, kappa=0.01),
        scheme=FiniteVolumeScheme(stepper="ssp_rk3"),
        boundaries=boundaries,
    )
    rand = lambda: torch.rand(2, 32, 24, generator=gen, dtype=F64)  # noqa: E731
    w0 = torch.stack([0.5 + rand(), rand() - 0.5, rand() - 0.5, 0.5 + rand()], 1)
    u0 = solver.conserved(w0)
    u = solver.advance(u0, 0.05)
    assert (u - u0).abs().max() > 1e-3  # it moved
    drift = (u.sum((2, 3)) - u0.sum((2, 3))).abs() / u0.abs().sum((2, 3))
    kept = [0, 1, 2, 3] if boundaries == "periodic" else [0, 3]
    assert drift[:, kept].max() <= 1e-14


def test_exact_landing_on_output_times():
    solver = CompressibleSolver(50, boundaries="outflow")
    x = solver.cell_centres()[0]
    w = torch.stack([torch.where(x < 0.5, 1.0, 0.125), 0 * x, torch.where(x < 0.5, 1.0, 0.1)])[None]
    traj = solver.solve(solver.conserved(w), [0.0, 0.05, 0.1])
    assert traj.shape == (1, 3, 3, 50)
    direct = solver.advance(solver.advance(solver.conserved(w), 0.05), 0.1, 0.05)
    assert torch.equal(traj[:, 2], direct)
    # the trajectories of a batch step independently: a batch equals its members solved alone
    w2 = torch.cat([w, w.flip(-1) * torch.tensor([1.0, -1.0, 1.0], dtype=F64).view(1, 3, 1)])
    both = solver.advance(solver.conserved(w2), 0.1)
    assert torch.equal(both[1:], solver.advance(solver.conserved(w2[1:]), 0.1))


def test_non_physical_states_are_a_named_error(monkeypatch):
    solver = CompressibleSolver(16)
    w = torch.ones(2, 3, 16, dtype=F64)
    w[1, 2, 3] = -1.0
    with pytest.raises(NonPhysicalStateError, match=r"trajectories \[1\]"):
        solver.advance(solver.conserved(w), 0.1)
    monkeypatch.setattr(solver, "rhs", lambda u, first_order=False: torch.full_like(u, float("nan")))
    with pytest.raises(NonPhysicalStateError, match="even at first order"):
        solver.advance(solver.conserved(torch.ones(1, 3, 16, dtype=F64)), 0.1)


def test_bad_options_are_one_line_errors():
    with pytest.raises(ValueError, match="limiter 'superbee'"):
        FiniteVolumeScheme(limiter="superbee")
    with pytest.raises(ValueError, match="flux 'roe'"):
        FiniteVolumeScheme(flux="roe")
    with pytest.raises(ValueError, match="periodic must be on both sides"):
        CompressibleSolver(8, boundaries=[("periodic", "wall")])
    with pytest.raises(ValueError, match=r"expected \(B, 3, 8\)"):
        CompressibleSolver(8).advance(torch.ones(3, 8, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="left"):
        shock_tube((1.0, 0.0), (1.0, 0.0, 1.0), n_cells=10, t_end=0.1)


# -- smooth problems: second order ---------------------------------------------------------------------------------
def _vortex(solver, t, beta=5.0, gamma=1.4):
    """Shu's isentropic vortex on [-5, 5]^2 advected with velocity (1, 1): primitive, point values."""
    x, y = (c - 5.0 for c in solver.cell_centres())
    xx, yy = torch.meshgrid(x, y, indexing="ij")
    xc, yc = (xx - t + 5) % 10 - 5, (yy - t + 5) % 10 - 5
    bump = torch.exp(1 - xc**2 - yc**2)
    rho = (1 - (gamma - 1) * beta**2 / (8 * gamma * math.pi**2) * bump) ** (1 / (gamma - 1))
    u = 1 - beta / (2 * math.pi) * yc * bump.sqrt()
    v = 1 + beta / (2 * math.pi) * xc * bump.sqrt()
    return torch.stack([rho, u, v, rho**gamma])[None]


@pytest.mark.parametrize(
    "sizes", [(32, 64), pytest.param((32, 64, 128), marks=pytest.mark.slow)], ids=["32-64", "32-128"]
)
def test_isentropic_vortex_second_order(sizes):
    """One period (t = 10) on 32^2, 64^2, 128^2: L1 density order >= 1.8 (measured 2.33, 2.02; 2.17 overall; the
    128^2 solve takes ~20 s on one core, so the default suite stops at 64^2)."""
    errors = []
    for n in sizes:
        solver = CompressibleSolver((n, n), 10.0)
        w0 = _vortex(solver, 0.0)
        rho = solver.primitive(solver.advance(solver.conserved(w0), 10.0))[0, 0]
        errors.append(float((rho - w0[0, 0]).abs().mean()))
    order = math.log(errors[0] / errors[-1]) / math.log(sizes[-1] / sizes[0])
    assert order >= 1.8
    assert errors[-1] <= {64: 1.6e-3, 128: 4e-4}[sizes[-1]]  # measured 1.42e-3, 3.50e-4


def test_acoustic_wave_against_linear_theory():
    """A right-going sound wave of amplitude 1e-6 travels one period: the density follows linear theory, order ~2
    (the limiter clips at the extrema: measured 1.70, 1.87)."""
    gamma, eps, errors = 1.4, 1e-6, []
    c = math.sqrt(gamma)
    for n in (32, 64, 128):
        solver = CompressibleSolver(n)
        x = solver.cell_centres()[0]

        def linear(t, x=x):
            wave = torch.sin(2 * math.pi * (x - c * t))
            return torch.stack([1 + eps * wave, eps * c * wave, 1 + eps * c**2 * wave])[None]

        rho = solver.primitive(solver.advance(solver.conserved(linear(0.0)), 1 / c))[0, 0]
        errors.append(float((rho - linear(1 / c)[0, 0]).abs().mean()) / eps)
    assert errors[-1] <= 3e-3
    assert math.log(errors[0] / errors[-1]) / math.log(4) >= 1.7


def test_shear_wave_decays_at_the_exact_rate_second_order():
    """``v = A sin(k x)`` in a uniform gas decays as ``exp(-eta k^2 t / rho)``: error order 2 (measured 2.00)."""
    eta, amp, k, t_end, errors = 0.01, 1e-3, 2 * math.pi, 1.0, []
    for n in (16, 32, 64):
        solver = CompressibleSolver((n, 3), (1.0, 3.0), gas=IdealGas(eta=eta))
        x = solver.cell_centres()[0].view(-1, 1).expand(n, 3)
        w0 = torch.stack([torch.ones_like(x), torch.zeros_like(x), amp * torch.sin(k * x), torch.ones_like(x)])[None]
        v = solver.primitive(solver.advance(solver.conserved(w0), t_end))[0, 2]
        exact = amp * torch.sin(k * x) * math.exp(-eta * k**2 * t_end)
        errors.append(float((v - exact).abs().mean()) / amp)
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(orders) >= 1.9
    assert errors[-1] <= 2e-4


def test_gradients_flow_through_the_solver():
    """d(mean density on the right half after 40 fixed steps)/d(amplitude of the initial bump), autograd against a
    central difference (fixed steps: ``advance``'s CFL step size is not differentiated)."""
    solver = CompressibleSolver(32)
    x = solver.cell_centres()[0]

    def output(a):
        w = torch.stack([1 + a * torch.exp(-50 * (x - 0.5) ** 2), 0 * x, 1 + a * torch.exp(-50 * (x - 0.5) ** 2)])
        u = solver.conserved(w[None])
        for _ in range(40):
            u = solver.step(u, 2.5e-3)
        return solver.primitive(u)[0, 0, 20:].mean()

    a = torch.tensor(0.2, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(output(a), a)
    h = 1e-6
    with torch.no_grad():
        fd = (output(a + h) - output(a - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    solver = CompressibleSolver((32, 32), boundaries="wall")
    w = _vortex(CompressibleSolver((32, 32), 10.0), 0.0)
    cpu = solver.advance(solver.conserved(w), 0.2)
    gpu = solver.advance(solver.conserved(w.cuda()), 0.2).cpu()
    assert torch.allclose(cpu, gpu, rtol=1e-10, atol=1e-12)


def test_benchmark_runs_and_counts_cell_updates():
    """``benchmarks/compressible.py``'s pdeforge timing on a tiny grid: a finite, positive rate."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compressible.py"
    spec = importlib.util.spec_from_file_location("_bench_compressible", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    r = module.pdeforge_rate(16, torch.float64, "cpu", viscous=True, steps=2)
    assert r["cell_updates_per_s"] > 0 and math.isfinite(r["seconds_per_step"])


# -- the low-Mach correction (Thornber et al. 2008) -----------------------------------------------------------------
def _taylor_green(solver, mach, gamma=1.4):
    """A Taylor-Green vortex of speed ~1 at Mach ``mach`` (its incompressible pressure on a uniform one)."""
    xx, yy = torch.meshgrid(*solver.cell_centres(), indexing="ij")
    k = 2 * math.pi
    u, v = torch.sin(k * xx) * torch.cos(k * yy), -torch.cos(k * xx) * torch.sin(k * yy)
    p = 1 / (gamma * mach**2) + 0.25 * (torch.cos(2 * k * xx) + torch.cos(2 * k * yy))
    return torch.stack([torch.ones_like(xx), u, v, p])[None]


def test_low_mach_is_off_by_default_and_validated():
    assert FiniteVolumeScheme().low_mach is False
    with pytest.raises(ValueError, match="low_mach = 1"):
        FiniteVolumeScheme(low_mach=1)
    solver = CompressibleSolver((16, 16), 10.0)
    explicit = CompressibleSolver((16, 16), 10.0, scheme=FiniteVolumeScheme(low_mach=False))
    u0 = solver.conserved(_vortex(solver, 0.0))
    assert torch.equal(solver.advance(u0, 0.5), explicit.advance(u0, 0.5))


def test_low_mach_correction_of_the_face_states():
    """Density and pressure kept; the velocity jump scaled by ``min(1, max(M_L, M_R))``, its mean kept; supersonic
    faces unchanged."""
    from pdeforge.solvers._compressible_scheme import low_mach_correction

    wl = torch.tensor([[1.0, 0.1, 0.02, 1.0 / 1.4], [1.0, 2.0, 0.0, 1.0 / 1.4]], dtype=F64).view(2, 4, 1)
    wr = torch.tensor([[0.8, -0.1, 0.0, 1.0 / 1.4], [1.0, 1.5, 0.0, 1.0 / 1.4]], dtype=F64).view(2, 4, 1)
    cl, cr = low_mach_correction(wl, wr, 1.4)
    z = math.hypot(0.1, 0.02)  # M_L (c_L = 1) > M_R = 0.1 sqrt(0.8)
    assert torch.equal(cl[:, [0, 3]], wl[:, [0, 3]]) and torch.equal(cr[:, [0, 3]], wr[:, [0, 3]])
    np.testing.assert_allclose((cl - cr)[0, 1:3, 0], z * (wl - wr)[0, 1:3, 0], rtol=1e-13)
    np.testing.assert_allclose((cl + cr)[0, 1:3, 0], (wl + wr)[0, 1:3, 0], rtol=1e-13)
    assert torch.equal(cl[1], wl[1]) and torch.equal(cr[1], wr[1])


def test_low_mach_correction_keeps_kinetic_energy_and_conserves():
    """A Taylor-Green vortex at Mach 0.05 on 32^2 to t = 0.1: without the correction HLLC's dissipation, which
    scales with the sound speed, takes a few per cent of the kinetic energy, with it < 0.3% (measured 2.9% and
    0.073%: a ratio of 40); mass, momentum and energy still kept to round-off."""
    losses = {}
    for low in (False, True):
        solver = CompressibleSolver((32, 32), gas=IdealGas(1.4), scheme=FiniteVolumeScheme(low_mach=low))
        u0 = solver.conserved(_taylor_green(solver, 0.05))
        u = solver.advance(u0, 0.1)
        ke = lambda q: float((0.5 * q[:, 1:3].square().sum(1) / q[:, 0]).sum())  # noqa: E731
        losses[low] = 1 - ke(u) / ke(u0)
        drift = (u.sum((2, 3)) - u0.sum((2, 3))).abs() / u0.abs().sum((2, 3))
        assert drift.max() <= 1e-14
    assert 0 < losses[True] < 3e-3
    assert losses[False] > 10 * losses[True]


def test_low_mach_correction_still_solves_sod():
    """At the shock the Mach number is ~1 (no correction); in the rarefaction and the contact region the correction
    acts: Sod on 200 cells still within the uncorrected scheme's bound (L1 density error measured 2.28e-3, 2.50e-3
    without)."""
    solver = CompressibleSolver(200, scheme=FiniteVolumeScheme(low_mach=True), boundaries="outflow")
    x = solver.cell_centres()[0]
    w = torch.stack([torch.where(x < 0.5, 1.0, 0.125), 0 * x, torch.where(x < 0.5, 1.0, 0.1)])[None]
    out = solver.primitive(solver.advance(solver.conserved(w), 0.2))[0]
    exact = riemann_cell_averages(*SOD, np.linspace(0, 1, 201), 0.2, x_interface=0.5)
    assert bool((out[0] > 0).all() and (out[2] > 0).all())
    assert np.abs(out[0].numpy() - exact[0]).mean() <= 4e-3
