"""The fused 2D vorticity ETDRK strategy (``solvers/_etdrk_strategies_ns.py``, the vorticity kind of the compiled
op in ``solvers/_etdrk_fused.cpp``) against the reference step: frames and spectra bit for bit, every tableau,
Navier-Stokes 2D with and without Kolmogorov forcing and drag; chosen by what the flux functions declare."""

import shutil

import pytest
import torch

from pdeforge.solvers import (
    ETDRK,
    ETDRK4_COX_MATTHEWS,
    TABLEAUS,
    AbstractEquation,
    FluxTerm,
    Grid,
    KolmogorovForcing,
    LinearTerm,
    NavierStokes2D,
    RandomFourierSeries,
    rollout,
)
from pdeforge.solvers._etdrk_native import pack
from pdeforge.solvers._etdrk_strategies import choose_steps
from pdeforge.solvers._etdrk_strategies_ns import FusedVorticitySteps
from pdeforge.solvers._etdrk_tableau import ETDRKTableau
from pdeforge.solvers._native import native_enabled

#: the exponential midpoint rule (as in test_etdrk_reference.py): a zero weight b_1
MIDPOINT = ETDRKTableau("ETDRK2-midpoint", 2, c=(0.0, 0.5), a=((), (((0.5, 1, 0.5),),)), b=((), ((1.0, 1, 1.0),)))


def _reference_frames(stepper: ETDRK, u0: torch.Tensor, n_steps: int, save_every: int) -> torch.Tensor:
    state, frames = stepper.to_spectral(u0), [u0]
    for i in range(1, n_steps + 1):
        state = stepper.step_spectral(state)
        if i % save_every == 0:
            frames.append(stepper.to_physical(state))
    return torch.stack(frames, dim=1)


def _strategy_frames(steps, u0: torch.Tensor, n_steps: int, save_every: int) -> torch.Tensor:
    frames = [u0]
    with torch.inference_mode(steps.inference):
        state = steps.start(u0)
        for done in range(0, n_steps, save_every):
            k = min(save_every, n_steps - done)
            state = steps.advance(state, k)
            if k == save_every:
                frames.append(steps.physical(state).clone())
    return torch.stack(frames, dim=1)


ALL_TABLEAUS = [TABLEAUS[1], TABLEAUS[2], TABLEAUS[3], TABLEAUS[4], ETDRK4_COX_MATTHEWS, MIDPOINT]
NAME = "fused 2D vorticity ETDRK on the CPU"

_CASES = {  # (equation, grid, dt); the fluxes only differentiate w (masked symbols): exp(z) never masks the output
    "navier_stokes": (NavierStokes2D(nu=1e-3), Grid((32, 32)), 0.02),
    "kolmogorov": (NavierStokes2D(nu=0.01, drag=0.1, forcing=KolmogorovForcing()), Grid((32, 24)), 0.05),
    "navier_stokes-viscous": (NavierStokes2D(nu=2.0), Grid((32, 32)), 0.5),
}


def _initial(grid: Grid, dtype: torch.dtype, batch: int = 3) -> torch.Tensor:
    w = RandomFourierSeries(max_wavenumber=14)(grid, batch, torch.Generator().manual_seed(3), dtype=torch.float64)
    return (8.0 * w).to(dtype)  # modes above N/3: the masks matter


def _steps(stepper: ETDRK, dtype: torch.dtype) -> FusedVorticitySteps:
    if not native_enabled():
        pytest.skip("PDEFORGE_NATIVE=0: no compiled op")
    steps = FusedVorticitySteps(stepper, dtype, torch.device("cpu"))
    if steps.compiled is None:
        assert shutil.which("g++") is None or shutil.which("ninja") is None, "the compiled op failed to build"
        pytest.skip("no C++ toolchain (g++ and ninja) here")
    return steps


@pytest.mark.parametrize("tableau", ALL_TABLEAUS, ids=lambda t: t.name)
@pytest.mark.parametrize("case", list(_CASES))
def test_fused_vorticity_steps_give_the_reference_bits(case, tableau):
    """The op's frames are the reference's bytes in float64 and float32, across saves (5 + 5 steps saved, 2 more
    after the last), with a source and drag (Kolmogorov flow), and where one step nearly kills the high modes."""
    equation, grid, dt = _CASES[case]
    stepper = ETDRK(equation, grid, dt, tableau=tableau)
    for dtype in (torch.float64, torch.float32):
        u0 = _initial(grid, dtype)
        steps = _steps(stepper, dtype)
        got, want = _strategy_frames(steps, u0, 12, 5), _reference_frames(stepper, u0, 12, 5)
        assert torch.equal(got, want)
        assert (want[:, -1] - want[:, 0]).abs().max() > 1e-3 * want[:, 0].abs().max()  # it moved


@pytest.mark.parametrize("case", list(_CASES))
def test_fused_vorticity_spectra_are_the_reference_bits(case):
    """Not only the frames: each step's spectrum, from the reference's state, is the reference step's bytes."""
    equation, grid, dt = _CASES[case]
    stepper = ETDRK(equation, grid, dt, tableau=TABLEAUS[4])
    for dtype in (torch.float64, torch.float32):
        steps = _steps(stepper, dtype)
        got = steps.start(_initial(grid, dtype))
        want = got.spectrum.clone()
        for _ in range(6):
            got, want = steps.advance(got, 1), stepper.step_spectral(want)
            assert torch.equal(got.spectrum, want)
            got.spectrum = want.clone()


@pytest.mark.parametrize("n_steps, save_every", [(130, 1), (41, 4)])
def test_rollout_runs_the_fused_vorticity_steps_and_writes_the_reference_frames(n_steps, save_every):
    """``rollout`` chooses the strategy for Kolmogorov flow and its ``run`` (the compiled rollout op, in chunks)
    writes the reference's frames bit for bit."""
    equation, grid, dt = _CASES["kolmogorov"]
    stepper = ETDRK(equation, grid, dt)
    u0 = _initial(grid, torch.float32, batch=2)
    _steps(stepper, torch.float32)
    assert stepper.strategy(u0, n_steps).name == NAME
    assert torch.equal(rollout(stepper, u0, n_steps, save_every), _reference_frames(stepper, u0, n_steps, save_every))


def test_fused_vorticity_steps_are_chosen_by_what_the_flux_functions_declare():
    """Navier-Stokes 2D (any tableau, forcing or not) runs the fused vorticity steps; with a gradient, without
    stages, or with the same fluxes written by other (undeclared) functions, the reference."""
    grid = Grid((16, 16))
    u0 = _initial(grid, torch.float32, batch=1)
    _steps(ETDRK(NavierStokes2D(), grid, 0.01), torch.float32)

    class Undeclared(NavierStokes2D):  # the same terms, functions that declare nothing
        def flux_terms(self, ndim):
            return tuple(
                FluxTerm(t.coefficient, t.alpha, lambda w, D, f=t.flux: f(w, D)) for t in super().flux_terms(2)
            )

    class Diffusion(AbstractEquation):
        name = "diffusion"

        def linear_terms(self, ndim):
            return (LinearTerm(0.1, (2, 0)), LinearTerm(0.1, (0, 2)))

    ns = NavierStokes2D()
    chosen = {
        "ns": choose_steps(ETDRK(ns, grid, 0.01), u0, 5),
        "ns-midpoint": choose_steps(ETDRK(ns, grid, 0.01, tableau=MIDPOINT), u0, 5),
        "kolmogorov": choose_steps(ETDRK(NavierStokes2D(forcing=KolmogorovForcing()), grid, 0.01), u0, 5),
        "ns-etdrk0": choose_steps(ETDRK(ns, grid, 0.01, order=0), u0, 5),
        "ns-gradient": choose_steps(ETDRK(ns, grid, 0.01), u0.clone().requires_grad_(True), 5),
        "undeclared": choose_steps(ETDRK(Undeclared(), grid, 0.01), u0, 5),
        "diffusion": choose_steps(ETDRK(Diffusion(), grid, 0.01), u0, 5),
    }
    assert {k: v.name for k, v in chosen.items()} == {
        "ns": NAME,
        "ns-midpoint": NAME,
        "kolmogorov": NAME,
        "ns-etdrk0": "reference",
        "ns-gradient": "reference",
        "undeclared": "reference",
        "diffusion": "reference",
    }


def test_fused_vorticity_python_loop_is_the_reference():
    """``compiled=False`` (what ``benchmarks/solvers.py`` times beside the op): the reference step by step."""
    equation, grid, dt = _CASES["kolmogorov"]
    stepper = ETDRK(equation, grid, dt)
    u0 = _initial(grid, torch.float64)
    steps = FusedVorticitySteps(stepper, torch.float64, torch.device("cpu"), compiled=False)
    assert steps.compiled is None
    assert torch.equal(_strategy_frames(steps, u0, 7, 3), _reference_frames(stepper, u0, 7, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_vorticity_op_runs_a_stage_of_more_terms_than_its_fused_loop(dtype):
    """A stage of five terms (the stage loop fuses three): ``U_i`` formed in full first, then the velocity pass;
    the bytes of the same plan evaluated with the reference's terms and ATen calls."""
    equation, grid, dt = _CASES["kolmogorov"]
    stepper = ETDRK(equation, grid, dt, tableau=TABLEAUS[4])
    steps = _steps(stepper, dtype)
    slot, first, rest, write = steps.stages[-1]
    steps.stages[-1] = (slot, first, rest + (first,) + rest + (first,), write)
    steps.packed = pack(steps.products, steps.shared, steps.co.E, steps.stages, steps.co.b, steps.vorticity)
    co, u = steps.co, steps.start(_initial(grid, dtype)).spectrum
    N: list[torch.Tensor] = []
    for slot, first, rest, _ in steps.stages:
        U = u if steps.products[slot] is None else steps.products[slot] * u
        for j, a in ((first,) if first is not None else ()) + tuple(rest):
            U = torch.addcmul(U, a, N[j])
        N.append(stepper.terms(U, co.premasked, co.symbols, co.source))
    want = co.E * u
    for b, group in co.b:
        n = N[group[0]]
        for i in group[1:]:
            n = n + N[i]
        want = torch.addcmul(want, b, n)
    with torch.inference_mode():
        got = steps.advance(steps.start(_initial(grid, dtype)), 1).spectrum
    assert torch.equal(got, want)
