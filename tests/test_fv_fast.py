"""The FV solver's compiled steps (``solvers/_fv_step.cpp``) against the eager reference step, bit for bit; the one
place that chooses between them; the presets and rollouts that take them."""

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from pdeforge.solvers import KolmogorovForcing
from pdeforge.solvers._fv_native import native_op, plan
from pdeforge.solvers._fv_strategies import NativeSteps, ReferenceSteps, choose_steps
from pdeforge.solvers.fv import (
    FORWARD_EULER,
    HEUN_RK2,
    SSP_RK3,
    FlowParameters,
    KolmogorovFVPreset,
    LinearInterpolation,
    StaggeredGrid,
    StaggeredNavierStokes2D,
    TaylorGreenFVPreset,
    VanLeerInterpolation,
    divergence,
    kolmogorov_fv_trajectories,
    random_divergence_free_velocity,
    taylor_green_fv_trajectories,
)

F64 = torch.float64
TOOLCHAIN = shutil.which("g++") is not None and shutil.which("ninja") is not None


@pytest.fixture(scope="module")
def op():
    """The compiled op: where g++ and ninja exist it must build (a broken build fails here); elsewhere the tests that
    need it are skipped and the reference runs everywhere."""
    built = native_op()
    if built is None:
        if TOOLCHAIN:
            pytest.fail("g++ and ninja are here, yet the FV op did not build (see the warning)")
        pytest.skip("no C++ toolchain: the reference step runs (tested in test_fv_ns.py)")
    return built


def _solver(n=16, interpolation=None, tableau=SSP_RK3, implicit=False, viscosity=0.05, drag=0.1, forced=True):
    forcing = KolmogorovForcing(wavenumber=2) if forced else None
    flow = FlowParameters(viscosity, drag, forcing)
    return StaggeredNavierStokes2D(StaggeredGrid(n), flow, interpolation or VanLeerInterpolation(), tableau, implicit)


def _velocity(solver, batch=3, dtype=F64, seed=0, max_velocity=1.5):
    gen = torch.Generator().manual_seed(seed)
    v = random_divergence_free_velocity(solver.grid, batch, max_velocity, 3.0, gen, dtype=dtype)
    return solver.project(v)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("tableau", [FORWARD_EULER, HEUN_RK2, SSP_RK3], ids=["euler", "heun", "ssprk3"])
@pytest.mark.parametrize("interpolation", [LinearInterpolation, VanLeerInterpolation], ids=["linear", "vanleer"])
def test_native_steps_equal_reference_bit_for_bit(op, interpolation, tableau, implicit, dtype):
    """Every scheme the op covers: the same bits as the eager step after 25 steps (CFL ~0.6, forced, dragged),
    which also exercises both upwind branches and both limiter cases many times."""
    solver = _solver(interpolation=interpolation(), tableau=tableau, implicit=implicit)
    v0 = _velocity(solver, dtype=dtype)
    with torch.no_grad():
        fast = NativeSteps(op).advance(solver, v0, 0.04, 25)
        ref = ReferenceSteps().advance(solver, v0, 0.04, 25)
    assert fast.dtype == dtype and fast.shape == v0.shape
    assert (fast - v0).abs().max() > 0.05  # the flow moved
    assert torch.equal(fast, ref)


@pytest.mark.parametrize(
    "physics", [dict(viscosity=0.0, drag=0.0, forced=False), dict(drag=0.0), dict(forced=False), dict(viscosity=0.0)]
)
def test_native_steps_without_some_terms_equal_reference(op, physics):
    """The op's loops without viscosity, drag or forcing (each a compile-time variant) still match."""
    solver = _solver(n=12, **physics)
    v0 = _velocity(solver, batch=2)
    with torch.no_grad():
        assert torch.equal(
            NativeSteps(op).advance(solver, v0, 0.03, 10), ReferenceSteps().advance(solver, v0, 0.03, 10)
        )


def test_native_steps_on_views_odd_sizes_and_zero_steps(op):
    """A non-contiguous input and an odd grid side give the reference's numbers; zero steps give the input back."""
    solver = _solver(n=9)
    v0 = _velocity(solver, batch=4)
    view = v0.transpose(0, 1).contiguous().transpose(0, 1)[::2]  # batch stride, not contiguous
    assert not view.is_contiguous()
    with torch.no_grad():
        assert torch.equal(
            NativeSteps(op).advance(solver, view, 0.05, 7), ReferenceSteps().advance(solver, view, 0.05, 7)
        )
        assert torch.equal(NativeSteps(op).advance(solver, v0, 0.05, 0), v0)
    assert divergence(solver.steps(v0, 0.05, 3), solver.grid.h).abs().max() < 1e-12


def test_choose_steps_takes_the_compiled_op_only_where_it_is_exact(op, monkeypatch):
    solver = _solver()
    v = _velocity(solver, batch=1)
    with torch.no_grad():
        assert isinstance(choose_steps(solver, v), NativeSteps)
        assert isinstance(choose_steps(solver, v.float()), NativeSteps)
        assert isinstance(choose_steps(solver, v, faces=solver.interpolation), ReferenceSteps)  # face values given
    assert isinstance(choose_steps(solver, v), NativeSteps)  # grad mode on, but nothing to differentiate
    assert isinstance(choose_steps(solver, v.clone().requires_grad_()), ReferenceSteps)  # a gradient is needed
    with torch.no_grad():
        assert isinstance(choose_steps(solver, v.clone().requires_grad_()), NativeSteps)

    class Tweaked(VanLeerInterpolation):  # a subclass may compute anything: only the exact classes are compiled
        pass

    assert isinstance(choose_steps(_solver(interpolation=Tweaked()), v), ReferenceSteps)
    assert isinstance(choose_steps(solver, v.to(torch.bfloat16)), ReferenceSteps)
    monkeypatch.setenv("PDEFORGE_NATIVE", "0")
    assert isinstance(choose_steps(solver, v), ReferenceSteps)


def test_gradients_still_flow_through_step_and_rollout():
    """A velocity that needs a gradient takes the differentiable reference: backward works and is the same as through
    the reference step itself."""
    solver = _solver(n=8)
    v0 = _velocity(solver, batch=2).requires_grad_()
    (solver.rollout(v0, 0.05, 3, 2)[:, -1] ** 2).sum().backward()
    grad_rollout = v0.grad.clone()
    v0.grad = None
    v = v0
    for _ in range(4):
        v = solver.reference_step(v, 0.05)
    (v**2).sum().backward()
    assert torch.equal(grad_rollout, v0.grad) and grad_rollout.abs().max() > 0


def test_learned_interpolation_with_parameters_takes_the_reference():
    """A module with its own parameters (a learned stencil) is never replaced by the op: its parameter changes the
    numbers and receives a gradient."""

    class Scaled(LinearInterpolation):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0, dtype=F64))

        def forward(self, velocity):
            faces = super().forward(velocity)
            return type(faces)(self.scale * faces.advected, faces.advecting)

    solver = _solver(n=8, interpolation=Scaled())
    v0 = _velocity(solver, batch=1)
    assert isinstance(choose_steps(solver, v0), ReferenceSteps)
    solver.rollout(v0, 0.05, 2, 3)[:, -1].pow(2).sum().backward()
    assert solver.interpolation.scale.grad is not None and solver.interpolation.scale.grad.abs() > 0


def test_rollout_and_presets_give_the_reference_bytes(op, monkeypatch):
    """rollout, the Kolmogorov DNS and the Taylor-Green preset give the same bytes with the op as without it
    (PDEFORGE_NATIVE=0): taking the op changes no generated data."""
    solver = _solver(n=16, implicit=True)
    v0 = _velocity(solver, batch=2, dtype=torch.float32)
    kolmogorov = KolmogorovFVPreset(dns_resolution=16, reynolds=100.0, warmup_time=0.5, frame_interval=0.25, n_frames=3)
    taylor_green = TaylorGreenFVPreset(n_frames=3, frame_interval=0.2, oversample=2)

    def run():
        with torch.no_grad():
            traj = solver.rollout(v0, 0.05, 4, 3)
        k = kolmogorov_fv_trajectories(2, 8, kolmogorov, torch.Generator().manual_seed(0), dtype=F64)
        t = taylor_green_fv_trajectories(2, 8, taylor_green, torch.Generator().manual_seed(1), dtype=torch.float32)
        return traj, k, t

    fast = run()
    monkeypatch.setenv("PDEFORGE_NATIVE", "0")
    ref = run()
    for a, b in zip(fast, ref):
        assert torch.equal(a, b)


def test_plan_lists_the_nonzero_stage_terms():
    assert plan(SSP_RK3.a, SSP_RK3.b) == ([3, 0, 1, 0, 2, 0, 1, 3, 0, 1, 2], [1.0, 0.25, 0.25, 1 / 6, 1 / 6, 2 / 3])
    assert plan(FORWARD_EULER.a, FORWARD_EULER.b) == ([1, 0, 1, 0], [1.0])
    # zero coefficients are skipped, as the reference's sum skips them; a row longer than its stage is cut
    assert plan(((), (0.5, 9.0), (0.0, 1.0)), (0.0, 0.5, 0.5)) == ([3, 0, 1, 0, 1, 1, 2, 1, 2], [0.5, 1.0, 0.5, 0.5])


def test_a_failed_build_is_one_warning_and_the_caller_falls_back(monkeypatch):
    """solvers._native.build, shared by the ETDRK and FV ops: a toolchain error becomes one warning naming what could
    not be compiled and what runs instead, and the caller gets False (its Python reference runs)."""
    import torch.utils.cpp_extension

    from pdeforge.solvers import _native

    def broken(**kwargs):
        raise RuntimeError("Ninja is required to load C++ extensions: [a long command line]")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", broken)
    with pytest.warns(RuntimeWarning, match=r"the thing could not be compiled \(Ninja is required.*the reference runs"):
        assert _native.build("pdeforge_nothing", Path(__file__), "the thing", "the reference") is False
    monkeypatch.setenv("PDEFORGE_NATIVE", "0")
    assert not _native.native_enabled()
