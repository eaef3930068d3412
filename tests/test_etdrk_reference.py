"""The ETDRK reference step against the tableau written out, every rollout strategy against the reference bit for
bit, the tableau's own checks, and the explicit state of the derivative providers."""

import dataclasses
import math
import pickle
import shutil
import warnings

import pytest
import torch
from torch.overrides import TorchFunctionMode

from pdeforge.solvers import (
    ETDRK,
    ETDRK4_COX_MATTHEWS,
    TABLEAUS,
    AbstractEquation,
    Burgers,
    ETDRKTableau,
    FluxTerm,
    GrayScott,
    Grid,
    KdV,
    KolmogorovForcing,
    KuramotoSivashinsky,
    KuramotoSivashinskyFlame,
    LinearTerm,
    NavierStokes2D,
    RandomFourierSeries,
    SpectralDerivatives,
    phi_functions,
    rollout,
)
from pdeforge.solvers._derivatives import linear_symbol
from pdeforge.solvers._etdrk_native import pack
from pdeforge.solvers._etdrk_strategies import (
    CUDAGraphSteps,
    FusedFluxSquareSteps,
    choose_steps,
)
from pdeforge.solvers._etdrk_strategies_ns import FusedVorticitySteps
from pdeforge.solvers._etdrk_tableau import rooted_trees
from pdeforge.solvers._native import native_enabled

#: the exponential midpoint rule: a second-order tableau none of the built-in ones is, with a zero weight b_1
MIDPOINT = ETDRKTableau("ETDRK2-midpoint", 2, c=(0.0, 0.5), a=((), (((0.5, 1, 0.5),),)), b=((), ((1.0, 1, 1.0),)))
ALL_TABLEAUS = [TABLEAUS[1], TABLEAUS[2], TABLEAUS[3], TABLEAUS[4], ETDRK4_COX_MATTHEWS, MIDPOINT]


def _textbook_step(equation: AbstractEquation, grid: Grid, dt: float, tableau: ETDRKTableau, u_hat: torch.Tensor):
    """``U_i = exp(c_i z) u + h sum_j a_ij(z) N(U_j)``, ``u' = exp(z) u + h sum_i b_i(z) N(U_i)`` from the tableau's
    own (w, k, c) triples and :func:`phi_functions`, with ``N`` from the equation's physical-space hooks on the
    dealiased stage (nothing of the stepper's coefficients or terms); complex128, uncoupled channels."""
    channels, dims = len(equation.channels), tuple(range(-grid.ndim, 0))
    z = dt * linear_symbol(grid, equation.linear_terms(grid.ndim), channels).diagonal(0, 0, 1)  # (*K, C)
    mask = grid.dealias_mask()
    D = SpectralDerivatives(grid)  # exact derivatives of the dealiased (band-limited) stage values
    f = equation.source_term(D.coords())

    def phi(k, c):
        return phi_functions(c * z, k, diagonal=True)[k].movedim(-1, 0)  # (C, *K)

    def coefficient(co):
        return sum(w * phi(k, c) for w, k, c in co)

    def N(U):
        u = torch.fft.irfftn(U * mask, s=grid.shape, dim=dims)
        n = sum(t for t in (equation.fluxes(u, D), equation.nonlinear_term(u, D), f) if t is not None)
        return torch.fft.rfftn(torch.broadcast_to(n, u.shape), dim=dims) * mask

    stages = []
    for c_i, row in zip(tableau.c, tableau.a):
        stages.append(N(phi(0, c_i) * u_hat + dt * sum(coefficient(a) * n for a, n in zip(row, stages) if a)))
    return phi(0, 1.0) * u_hat + dt * sum(coefficient(b) * n for b, n in zip(tableau.b, stages) if b)


_TEXTBOOK_CASES = {
    "kdv": (KdV(nu=0.01), Grid(32, 20.0), 0.01, 1),
    "gray_scott": (GrayScott(), Grid((16, 16), 2.5), 1.0, 2),
    "kolmogorov": (NavierStokes2D(nu=0.01, forcing=KolmogorovForcing()), Grid((16, 16)), 0.05, 1),
    "ks_flame": (KuramotoSivashinskyFlame(), Grid((16, 16), 8 * math.pi), 0.1, 1),
}


@pytest.mark.parametrize("tableau", ALL_TABLEAUS, ids=lambda t: t.name)
@pytest.mark.parametrize("case", list(_TEXTBOOK_CASES))
def test_reference_step_is_the_tableau_written_out(case, tableau):
    """``ETDRK.step_spectral`` (masks, flux symbols and shared weights folded into its coefficients) is the
    tableau's formula, to round-off, for a single flux with a complex symbol (KdV), two channels with a source
    (Gray-Scott), fluxes of derivatives only with a forcing (Kolmogorov flow) and a pointwise term (KS flame)."""
    equation, grid, dt, channels = _TEXTBOOK_CASES[case]
    u0 = RandomFourierSeries(max_wavenumber=6)(grid, 2, torch.Generator().manual_seed(1))
    u0 = u0.repeat(1, channels, *[1] * grid.ndim) * torch.linspace(1.0, 0.5, channels).reshape(1, -1, *[1] * grid.ndim)
    u_hat = torch.fft.rfftn(u0, dim=tuple(range(-grid.ndim, 0)))
    stepper = ETDRK(equation, grid, dt, tableau=tableau)
    got, want = stepper.step_spectral(u_hat), _textbook_step(equation, grid, dt, tableau, u_hat)
    linear = stepper.coefficients(torch.float64, "cpu").E * u_hat
    assert (want - linear).abs().max() > 1e-4 * want.abs().max()  # the nonlinear part matters
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()


def _reference_frames(stepper: ETDRK, u0: torch.Tensor, n_steps: int, save_every: int) -> torch.Tensor:
    state, frames = stepper.to_spectral(u0), [u0]
    for i in range(1, n_steps + 1):
        state = stepper.step_spectral(state)
        if i % save_every == 0:
            frames.append(stepper.to_physical(state))
    return torch.stack(frames, dim=1)


def _strategy_frames(steps, u0: torch.Tensor, n_steps: int, save_every: int) -> torch.Tensor:
    """``rollout``'s loop over a strategy object."""
    frames = [u0]
    with torch.inference_mode(steps.inference):
        state = steps.start(u0)
        for done in range(0, n_steps, save_every):
            k = min(save_every, n_steps - done)
            state = steps.advance(state, k)
            if k == save_every:
                frames.append(steps.physical(state).clone())
    return torch.stack(frames, dim=1)


_FUSED_CASES = {  # (equation, grid, dt, whether one step kills the modes above N/3)
    "ks-masked": (KuramotoSivashinsky(), Grid(64, 8 * math.pi), 0.1, True),
    "ks": (KuramotoSivashinsky(), Grid(64, 8 * math.pi), 0.01, False),
    "burgers": (Burgers(nu=0.05), Grid(64), 0.01, False),
    "kdv": (KdV(nu=0.0), Grid(64), 0.002, False),
}


def _initial(grid: Grid, dtype=torch.float64) -> torch.Tensor:
    (x,) = grid.coords()
    k = 2 * math.pi / grid.length[0]  # modes 25 and 30 are above N/3: the masks matter
    u0 = torch.stack(
        [torch.sin(k * x) + 0.2 * torch.sin(30 * k * x), torch.cos(2 * k * x) + 0.1 * torch.sin(25 * k * x)]
    )
    return u0[:, None].to(dtype)


def _compiled_or_skip(steps):
    """Skip where the compiled op is off (``PDEFORGE_NATIVE=0``) or cannot be built (no g++ and ninja), where the
    Python loop (``compiled=False``) is what runs and is tested; a machine with the toolchain must build it (a broken
    build fails here, not silently)."""
    if not native_enabled():
        pytest.skip("PDEFORGE_NATIVE=0: no compiled op")
    if steps.compiled is None:
        assert shutil.which("g++") is None or shutil.which("ninja") is None, "the compiled op failed to build"
        pytest.skip("no C++ toolchain (g++ and ninja) here")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python-loop"])
@pytest.mark.parametrize("tableau", ALL_TABLEAUS, ids=lambda t: t.name)
@pytest.mark.parametrize("case", list(_FUSED_CASES))
def test_fused_flux_square_steps_give_the_reference_bits(case, tableau, compiled):
    """The fused strategy (its compiled op and its Python loop) runs the reference's operations: the same bytes in
    float64 and float32, across saves (5 + 5 steps saved, 2 more after the last save), with and without the
    masked output."""
    equation, grid, dt, masked = _FUSED_CASES[case]
    stepper = ETDRK(equation, grid, dt, tableau=tableau)
    for dtype in (torch.float64, torch.float32):
        u0 = _initial(grid, dtype)
        steps = FusedFluxSquareSteps(stepper, dtype, torch.device("cpu"), compiled=compiled)
        if compiled:
            _compiled_or_skip(steps)
        assert steps.co.masks_output is masked
        got, want = _strategy_frames(steps, u0, 12, 5), _reference_frames(stepper, u0, 12, 5)
        assert torch.equal(got, want)
        assert (want[:, -1] - want[:, 0]).abs().max() > 1e-3  # it moved


@pytest.mark.parametrize(
    "equation, grid", [(KuramotoSivashinsky(), Grid(64, 8 * math.pi)), (GrayScott(), Grid((16, 16), 2.5))]
)
def test_rollout_gives_the_reference_bits_with_and_without_gradient(equation, grid):
    """Whatever strategy ``rollout`` chooses, its frames are the reference step's bytes; with a gradient to ``u0``
    it steps the reference itself, and the gradient flows."""
    stepper = ETDRK(equation, grid, 0.1 if equation.name != "gray_scott" else 1.0)
    u0 = RandomFourierSeries(max_wavenumber=4)(grid, 2, torch.Generator().manual_seed(0))
    u0 = u0.repeat(1, len(equation.channels), *[1] * grid.ndim).contiguous()
    want = _reference_frames(stepper, u0, 7, 3)
    assert torch.equal(rollout(stepper, u0, 7, save_every=3), want)
    leaf = u0.clone().requires_grad_(True)
    traj = rollout(stepper, leaf, 7, save_every=3)
    assert torch.equal(traj.detach(), want)
    (traj[:, -1] ** 2).sum().backward()
    assert leaf.grad.abs().max() > 0


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python-loop"])
@pytest.mark.parametrize("n_steps, save_every", [(251, 1), (403, 2), (10, 4)])
def test_fused_run_writes_the_reference_frames_in_chunks(compiled, n_steps, save_every):
    """The fused strategy's ``run`` (the compiled rollout op, called in chunks of whole frames, at most ~100 calls)
    writes the reference's frames bit for bit: more frames than calls, a tail of steps after the last save."""
    grid = Grid(32, 8 * math.pi)
    stepper = ETDRK(KuramotoSivashinsky(), grid, 0.1)
    u0 = RandomFourierSeries(max_wavenumber=4)(grid, 3, torch.Generator().manual_seed(1))
    steps = FusedFluxSquareSteps(stepper, u0.dtype, torch.device("cpu"), compiled=compiled)
    if compiled:
        _compiled_or_skip(steps)
    updates = []

    class Bar:
        def update(self, k):
            updates.append(k)

    out = torch.full((3, 1 + n_steps // save_every, *u0.shape[1:]), float("nan"), dtype=u0.dtype)
    out[:, 0] = u0
    with torch.inference_mode():
        steps.run(steps.start(u0), n_steps, save_every, out, Bar())
    assert torch.equal(out, _reference_frames(stepper, u0, n_steps, save_every))
    assert sum(updates) == n_steps
    assert len(updates) <= 101 if compiled else len(updates) == -(-n_steps // save_every)


@pytest.mark.parametrize("case", list(_FUSED_CASES))
def test_fused_op_spectra_are_the_reference_bits_but_for_the_last_mode_of_a_row(case):
    """The op's spectra (not only its frames) are the reference's bytes, except at the last mode of each row, which
    ATen's vectorised kernels leave to their scalar code, built with FMA contraction: there a complex coefficient
    (ks, dt 0.01: exp(z) at the Nyquist mode, ~3e-18 + 3e-32i) rounds differently, by an ulp or so."""
    equation, grid, dt, _ = _FUSED_CASES[case]
    stepper = ETDRK(equation, grid, dt, tableau=TABLEAUS[4])
    for dtype in (torch.float64, torch.float32):
        steps = FusedFluxSquareSteps(stepper, dtype, torch.device("cpu"))
        _compiled_or_skip(steps)
        got = steps.start(_initial(grid, dtype))
        want = got.spectrum.clone()
        for _ in range(12):
            got, want = steps.advance(got, 1), stepper.step_spectral(want)
            assert torch.equal(got.spectrum[..., :-1], want[..., :-1])
            last = (got.spectrum[..., -1] - want[..., -1]).abs().max()
            assert last <= 4 * torch.finfo(dtype).eps * want[..., -1].abs().max()
            got.spectrum = want.clone()  # each step from the reference's state


@pytest.mark.parametrize("weights", ["four", "sum-of-three"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_op_runs_any_plan_more_terms_and_weights_than_its_fused_loops(dtype, weights):
    """The op's loops fuse a product and up to three terms a pass; a plan with more (a stage of five terms, four
    weights) runs the rest one pass each, and a weight may multiply a sum of three stages: the Python loop's
    bytes."""
    equation, grid, dt, _ = _FUSED_CASES["ks-masked"]
    stepper = ETDRK(equation, grid, dt, tableau=TABLEAUS[4])
    u0 = _initial(grid, dtype)
    compiled = FusedFluxSquareSteps(stepper, dtype, torch.device("cpu"))
    _compiled_or_skip(compiled)
    loop = FusedFluxSquareSteps(stepper, dtype, torch.device("cpu"), compiled=False)
    for steps in (compiled, loop):
        slot, first, rest, write = steps.stages[-1]
        steps.stages[-1] = (slot, first, rest + (first,) + rest + (first,), write)  # 5 terms
        b = steps.co.b[0][0]
        groups = {  # each stage under one weight, as a tableau's are
            "four": ((b, (0,)), (0.5 * b, (1,)), (0.25 * b, (2,)), (0.125 * b, (3,))),
            "sum-of-three": ((0.5 * b, (3,)), (b, (0, 1, 2))),
        }
        steps.co = dataclasses.replace(steps.co, b=groups[weights])
    compiled.packed = pack(compiled.products, compiled.shared, compiled.co.E, compiled.stages, compiled.co.b)
    got, want = _strategy_frames(compiled, u0, 7, 3), _strategy_frames(loop, u0, 7, 3)
    assert torch.equal(got, want)
    assert torch.isfinite(want).all() and (want[:, -1] - want[:, 0]).abs().max() > 1e-3


def test_fused_rollout_writes_any_out_layout_and_dtype():
    """The op writes frames itself where ``out``'s frames are dense rows of the state's dtype and through
    ``copy_`` otherwise (a strided view, a wider dtype); chunks after the first start from the last saved frame
    (``resume``) only in the first case. Every layout: the reference's frames."""
    grid = Grid(32, 8 * math.pi)
    stepper = ETDRK(KuramotoSivashinsky(), grid, 0.1)
    u0 = RandomFourierSeries(max_wavenumber=4)(grid, 3, torch.Generator().manual_seed(2), dtype=torch.float32)
    steps = FusedFluxSquareSteps(stepper, u0.dtype, torch.device("cpu"))
    _compiled_or_skip(steps)
    want = _reference_frames(stepper, u0, 200, 1)

    class Bar:
        def update(self, k):
            pass

    layouts = {
        "dense": torch.empty(3, 201, 1, 32),
        "strided": torch.empty(3, 1, 32, 201).permute(0, 3, 1, 2),
        "float64": torch.empty(3, 201, 1, 32, dtype=torch.float64),
    }
    for name, out in layouts.items():
        out[:, 0] = u0
        with torch.inference_mode():
            steps.run(steps.start(u0), 200, 1, out, Bar())  # 4 calls of 64, 64, 64, 8 steps
        assert torch.equal(out.to(torch.float32), want), name


def test_strategies_are_chosen_by_what_the_equation_and_tableau_declare():
    grid = Grid(32, 8 * math.pi)
    u0 = RandomFourierSeries()(grid, 1, torch.Generator().manual_seed(0))

    class CubicFlux(AbstractEquation):  # one flux, but not u^2: the reference
        name = "cubic_flux"

        def linear_terms(self, ndim):
            return (LinearTerm(0.1, (2,)),)

        def flux_terms(self, ndim):
            return (FluxTerm(-1.0, (1,), lambda u, D: u[:, :1] ** 3),)

    chosen = {
        "ks": choose_steps(ETDRK(KuramotoSivashinsky(), grid, 0.1), u0, 5),
        "ks-midpoint": choose_steps(ETDRK(KuramotoSivashinsky(), grid, 0.1, tableau=MIDPOINT), u0, 5),
        "ks-etdrk0": choose_steps(ETDRK(KuramotoSivashinsky(), grid, 0.1, order=0), u0, 5),
        "ks-gradient": choose_steps(ETDRK(KuramotoSivashinsky(), grid, 0.1), u0.clone().requires_grad_(True), 5),
        "cubic": choose_steps(ETDRK(CubicFlux(), grid, 0.1), u0, 5),
        "flame": choose_steps(ETDRK(KuramotoSivashinskyFlame(), grid, 0.1), u0, 5),
    }
    assert {k: v.name for k, v in chosen.items()} == {
        "ks": "fused flux-square ETDRK on the CPU",
        "ks-midpoint": "fused flux-square ETDRK on the CPU",
        "ks-etdrk0": "reference",
        "ks-gradient": "reference",
        "cubic": "reference",
        "flame": "reference",
    }
    assert not chosen["ks-gradient"].inference and chosen["flame"].inference


@pytest.mark.parametrize("records", [True, False], ids=["recorded", "recording-fails"])
def test_graph_replay_steps_replay_the_reference_step(records):
    """The CUDA-graph strategy, walked on the CPU with a stand-in for the recorder: one replay per step and the
    reference's bytes; where recording fails, a warning and the reference step by step."""
    grid = Grid(64, 8 * math.pi)
    stepper = ETDRK(KuramotoSivashinsky(), grid, 0.1)
    u0 = _initial(grid)
    replays = []

    def record(step, state):
        if not records:
            raise RuntimeError("graphs are not supported by this driver")
        buffer = state.clone()

        class Graph:
            def replay(self):
                replays.append(1)
                buffer.copy_(step(buffer))

        return Graph(), buffer

    steps = CUDAGraphSteps(stepper, record=record)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _strategy_frames(steps, u0, 13, 5)
    assert torch.equal(got, _reference_frames(stepper, u0, 13, 5))
    assert len(replays) == (13 if records else 0)
    assert [str(w.message).split(";")[0] for w in caught] == (
        []
        if records
        else ["rollout: recording a CUDA graph of the step failed (graphs are not supported by this driver)"]
    )


def test_output_is_masked_where_one_step_kills_the_high_modes():
    """KS at dt = 0.1: ``|exp(z)|`` above N/3 is below float32's and float64's resolution, so ``exp(z)`` drops those
    modes and every output is exactly masked; at dt = 0.01 (``|exp(z)| ~ 1e-4`` there) nothing is dropped. Either
    way the step is the tableau's to round-off, and the stepper pickles."""
    grid = Grid(64, 8 * math.pi)
    high = ~grid.dealias_mask()
    u_hat = torch.fft.rfft(_initial(grid))
    for dt, masked in ((0.1, True), (0.01, False)):
        stepper = ETDRK(KuramotoSivashinsky(), grid, dt)
        symbol = linear_symbol(grid, KuramotoSivashinsky().linear_terms(1), 1)[0, 0]
        survival = torch.exp(dt * symbol)[high].abs().max()
        assert bool(survival < torch.finfo(torch.float32).eps) is masked
        assert all(stepper.coefficients(d, "cpu").masks_output is masked for d in (torch.float32, torch.float64))
        out = stepper.step_spectral(u_hat)
        assert bool(out[..., high].abs().max() == 0) is masked
        want = _textbook_step(KuramotoSivashinsky(), grid, dt, TABLEAUS[4], u_hat)
        assert (out - want).abs().max() <= 1e-12 * want.abs().max()
        assert torch.equal(pickle.loads(pickle.dumps(stepper)).step_spectral(u_hat), out)


def test_fused_python_loop_and_reference_do_the_eight_ffts_of_etdrk4():
    """Per ETDRK4 step of KS: one inverse and one forward FFT per stage, in the reference and in the fused loop."""

    class Count(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if "fft" in getattr(func, "__name__", ""):
                self.names.append(func.__name__.removesuffix("n"))  # rfftn and rfft alike
            return func(*args, **(kwargs or {}))

    grid = Grid(64, 8 * math.pi)
    stepper = ETDRK(KuramotoSivashinsky(), grid, 0.1)
    steps = FusedFluxSquareSteps(stepper, torch.float64, torch.device("cpu"), compiled=False)
    with torch.inference_mode():
        state = steps.start(_initial(grid))
        with Count() as fused:
            steps.advance(state, 3)
        with Count() as reference:
            stepper.step_spectral(state.spectrum)
    assert sorted(fused.names) == ["fft_irfft"] * 12 + ["fft_rfft"] * 12
    assert sorted(reference.names) == ["fft_irfft"] * 4 + ["fft_rfft"] * 4


def test_tableaus_check_themselves():
    """Each condition a tableau must meet is checked on construction, with one line naming the tableau and it."""
    krogstad, replace = TABLEAUS[4], dataclasses.replace
    bad = {
        "row 3 of a sums to": lambda: replace(krogstad, a=(*krogstad.a[:2], ((), ((1.0, 2, 0.5),)), krogstad.a[3])),
        "the weights b sum to": lambda: replace(krogstad, b=(*krogstad.b[:3], ((-1.0, 2, 1.0),))),
        "declares order 5, but at z = 0 it misses Butcher's order-5 condition": lambda: replace(krogstad, order=5),
        "declares order 4, but at z = 0 it misses Butcher's order-3 condition": lambda: replace(TABLEAUS[2], order=4),
        "(an explicit method)": lambda: ETDRKTableau("x", 1, c=(0.0,), a=((((1.0, 1, 1.0),),),), b=(((1.0, 1, 1.0),),)),
        "a tableau without stages has order 0, not 1": lambda: ETDRKTableau("x", 1, c=(), a=(), b=()),
    }
    for message, make in bad.items():
        with pytest.raises(ValueError, match=r"^ETDRKTableau '[^']+'") as err:
            make()
        assert message in str(err.value) and "\n" not in str(err.value)
    # the built-in tableaus pass, and own what the stepper and its strategies read
    assert krogstad.weight_groups[1] == (((2.0, 2, 1.0), (-4.0, 3, 1.0)), (1, 2))  # stages 2 and 3 share b
    assert krogstad.last_at_node == (True, False, True, True)
    assert [j for j, _ in ETDRK4_COX_MATTHEWS.rows[2]] == [1]  # a_31 = 0 is not read
    assert krogstad.phis == {0.0: 0, 0.5: 2, 1.0: 3}
    assert [len(rooted_trees(n)) for n in range(1, 6)] == [1, 1, 2, 4, 9]


def test_the_one_required_hook_is_linear_terms():
    """An equation answers ``linear_terms``; ``flux_terms`` and ``nonlinear_term`` default to nothing (a linear PDE
    leaves them out), and the stepper integrates it exactly."""
    assert AbstractEquation.__abstractmethods__ == frozenset({"linear_terms"})

    class Heat(AbstractEquation):
        name = "heat"

        def linear_terms(self, ndim):
            return (LinearTerm(0.1, (2,)),)

    grid = Grid(32)
    (x,) = grid.coords()
    u0 = torch.sin(3 * x)[None, None]
    stepper = ETDRK(Heat(), grid, 0.1)
    assert stepper.linear and stepper.strategy(u0, 3).name == "reference"
    assert (rollout(stepper, u0, 10)[0, -1, 0] - math.exp(-0.9) * torch.sin(3 * x)).abs().max() < 1e-12
    residual = Heat().residual(-0.9 * u0, u0, SpectralDerivatives(grid))
    assert residual.abs().max() < 1e-12 and Heat().residual(u0, u0, SpectralDerivatives(grid)).abs().max() > 1


def test_field_derivatives_and_their_memo_belong_to_one_evaluation():
    """``SpectralDerivatives.field`` makes the provider of one spectrum: derivatives of its values cost one inverse
    FFT, kept for that object only; any other tensor is differentiated as ``SpectralDerivatives`` does."""
    grid = Grid(32)
    (x,) = grid.coords()
    D = SpectralDerivatives(grid, dealias=True)
    u_hat = torch.fft.rfft(torch.sin(3 * x)[None, None])
    field = D.field(u_hat)
    d1 = field(field.values, (1,))
    assert field(field.values, (1,)) is d1 and list(field.memo) == [((1,), False)]
    assert (d1[0, 0] - 3 * torch.cos(3 * x)).abs().max() < 1e-12
    assert (field(field.values.clone(), (1,)) - d1).abs().max() < 1e-12  # not the handle: the provider's way
    other = D.field(u_hat, values=False)  # a second evaluation: an empty handle, a memo of its own
    assert other.values.numel() == 0 and not other.memo and torch.equal(other(other.values, (1,)), d1)
    assert (other.inverse_laplacian(other.values, (0,))[0, 0] + torch.sin(3 * x) / 9).abs().max() < 1e-12


def test_probe_records_in_an_object_of_its_own():
    """Whether a term reads ``u``'s values (or only differentiates it) is recorded per probe, nested probes
    included: no class-level flag."""
    D = SpectralDerivatives(Grid(16), dealias=True)
    assert D.probe(lambda u, E: E(u, (1,)) ** 2, 1) == (False, False)
    assert D.probe(lambda u, E: u * E(u, (1,)), 1) == (False, True)
    assert D.probe(lambda u, E: None, 1) == (True, False)
    inner = []

    def term(u, E):  # a probe inside a probed term answers for its own term only
        inner.append(D.probe(lambda v, F: v * v, 1))
        return E(u, (1,))

    assert D.probe(term, 1) == (False, False) and inner == [(False, True)]


# -- the fused 2D vorticity strategy (_etdrk_strategies_ns.py, the vorticity kind of the compiled op): frames and
# spectra bit for bit, every tableau, Navier-Stokes 2D with and without Kolmogorov forcing and drag; chosen by what
# the flux functions declare ----------------------------------------------------------------------------------
VORTICITY = "fused 2D vorticity ETDRK on the CPU"

# (equation, grid, dt); the fluxes only differentiate w (masked symbols): exp(z) never masks the output
_VORTICITY_CASES = {
    "navier_stokes": (NavierStokes2D(nu=1e-3), Grid((32, 32)), 0.02),
    "kolmogorov": (NavierStokes2D(nu=0.01, drag=0.1, forcing=KolmogorovForcing()), Grid((32, 24)), 0.05),
    "navier_stokes-viscous": (NavierStokes2D(nu=2.0), Grid((32, 32)), 0.5),
}


def _vorticity_initial(grid: Grid, dtype: torch.dtype, batch: int = 3) -> torch.Tensor:
    w = RandomFourierSeries(max_wavenumber=14)(grid, batch, torch.Generator().manual_seed(3), dtype=torch.float64)
    return (8.0 * w).to(dtype)  # modes above N/3: the masks matter


def _vorticity_steps(stepper: ETDRK, dtype: torch.dtype) -> FusedVorticitySteps:
    steps = FusedVorticitySteps(stepper, dtype, torch.device("cpu"))
    _compiled_or_skip(steps)
    return steps


@pytest.mark.parametrize("tableau", ALL_TABLEAUS, ids=lambda t: t.name)
@pytest.mark.parametrize("case", list(_VORTICITY_CASES))
def test_fused_vorticity_steps_give_the_reference_bits(case, tableau):
    """The op's frames are the reference's bytes in float64 and float32, across saves (5 + 5 steps saved, 2 more
    after the last), with a source and drag (Kolmogorov flow), and where one step nearly kills the high modes."""
    equation, grid, dt = _VORTICITY_CASES[case]
    stepper = ETDRK(equation, grid, dt, tableau=tableau)
    for dtype in (torch.float64, torch.float32):
        u0 = _vorticity_initial(grid, dtype)
        steps = _vorticity_steps(stepper, dtype)
        got, want = _strategy_frames(steps, u0, 12, 5), _reference_frames(stepper, u0, 12, 5)
        assert torch.equal(got, want)
        assert (want[:, -1] - want[:, 0]).abs().max() > 1e-3 * want[:, 0].abs().max()  # it moved


@pytest.mark.parametrize("case", list(_VORTICITY_CASES))
def test_fused_vorticity_spectra_are_the_reference_bits(case):
    """Not only the frames: each step's spectrum, from the reference's state, is the reference step's bytes."""
    equation, grid, dt = _VORTICITY_CASES[case]
    stepper = ETDRK(equation, grid, dt, tableau=TABLEAUS[4])
    for dtype in (torch.float64, torch.float32):
        steps = _vorticity_steps(stepper, dtype)
        got = steps.start(_vorticity_initial(grid, dtype))
        want = got.spectrum.clone()
        for _ in range(6):
            got, want = steps.advance(got, 1), stepper.step_spectral(want)
            assert torch.equal(got.spectrum, want)
            got.spectrum = want.clone()


@pytest.mark.parametrize("n_steps, save_every", [(130, 1), (41, 4)])
def test_rollout_runs_the_fused_vorticity_steps_and_writes_the_reference_frames(n_steps, save_every):
    """``rollout`` chooses the strategy for Kolmogorov flow and its ``run`` (the compiled rollout op, in chunks)
    writes the reference's frames bit for bit."""
    equation, grid, dt = _VORTICITY_CASES["kolmogorov"]
    stepper = ETDRK(equation, grid, dt)
    u0 = _vorticity_initial(grid, torch.float32, batch=2)
    _vorticity_steps(stepper, torch.float32)
    assert stepper.strategy(u0, n_steps).name == VORTICITY
    assert torch.equal(rollout(stepper, u0, n_steps, save_every), _reference_frames(stepper, u0, n_steps, save_every))


def test_fused_vorticity_steps_are_chosen_by_what_the_flux_functions_declare():
    """Navier-Stokes 2D (any tableau, forcing or not) runs the fused vorticity steps; with a gradient, without
    stages, or with the same fluxes written by other (undeclared) functions, the reference."""
    grid = Grid((16, 16))
    u0 = _vorticity_initial(grid, torch.float32, batch=1)
    _vorticity_steps(ETDRK(NavierStokes2D(), grid, 0.01), torch.float32)

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
        "ns": VORTICITY,
        "ns-midpoint": VORTICITY,
        "kolmogorov": VORTICITY,
        "ns-etdrk0": "reference",
        "ns-gradient": "reference",
        "undeclared": "reference",
        "diffusion": "reference",
    }


def test_fused_vorticity_python_loop_is_the_reference():
    """``compiled=False`` (what ``benchmarks/solvers.py`` times beside the op): the reference step by step."""
    equation, grid, dt = _VORTICITY_CASES["kolmogorov"]
    stepper = ETDRK(equation, grid, dt)
    u0 = _vorticity_initial(grid, torch.float64)
    steps = FusedVorticitySteps(stepper, torch.float64, torch.device("cpu"), compiled=False)
    assert steps.compiled is None
    assert torch.equal(_strategy_frames(steps, u0, 7, 3), _reference_frames(stepper, u0, 7, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_vorticity_op_runs_a_stage_of_more_terms_than_its_fused_loop(dtype):
    """A stage of five terms (the stage loop fuses three): ``U_i`` formed in full first, then the velocity pass;
    the bytes of the same plan evaluated with the reference's terms and ATen calls."""
    equation, grid, dt = _VORTICITY_CASES["kolmogorov"]
    stepper = ETDRK(equation, grid, dt, tableau=TABLEAUS[4])
    steps = _vorticity_steps(stepper, dtype)
    slot, first, rest, write = steps.stages[-1]
    steps.stages[-1] = (slot, first, rest + (first,) + rest + (first,), write)
    steps.packed = pack(steps.products, steps.shared, steps.co.E, steps.stages, steps.co.b, steps.vorticity)
    co, u = steps.co, steps.start(_vorticity_initial(grid, dtype)).spectrum
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
        got = steps.advance(steps.start(_vorticity_initial(grid, dtype)), 1).spectrum
    assert torch.equal(got, want)
