"""Temporal stencil modelling / learned interpolation: constrained stencils, HiPPO-LagT, the models inside the FV
solver, the preset's DNS bytes, and the family through the run skeleton (run folder, resume, NaN, DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.special import eval_laguerre

from pdeforge.checkpoint import load_state, load_weights
from pdeforge.datasets import TrajectoryDataset
from pdeforge.families import evaluate_run, load_run, train
from pdeforge.metrics import correlation
from pdeforge.operators.tsm import (
    CNNConfig,
    CoarseSolver,
    HippoEncoder,
    LearnedInterpolation,
    PolynomialStencil,
    TemporalStencil,
    TSMFamily,
    WindowSampler,
    faces_from_logits,
    lagt_kernel,
    lagt_recurrence,
    logits_per_cell,
    stencil_weights,
    tvd_limit,
    vorticity_rollout,
)
from pdeforge.solvers import fv
from pdeforge.solvers.generate import PRESETS, generate, with_overrides
from pdeforge.training import ConfigError, Environment, NonFiniteLossError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FLOW = fv.FlowParameters(viscosity=1 / 200, drag=0.1, forcing=fv.KolmogorovFVPreset().forcing)


def _velocity(n: int = 16, batch: int = 2, seed: int = 0) -> torch.Tensor:
    grid = fv.StaggeredGrid(n)
    return fv.random_divergence_free_velocity(grid, batch, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ stencils
def test_logit_count_matches_the_papers():
    assert logits_per_cell(1) == 120  # 8 stencils x 15 free logits (Kochkov et al. 2021)
    assert PolynomialStencil((0.5, 0.0), 2).n_logits == 13


def test_zero_logits_give_the_base_stencils_and_the_van_leer_scheme():
    v = _velocity()
    zero = torch.zeros(2, 120, 16, 16, dtype=torch.float64)
    w = stencil_weights(zero)
    linear = torch.zeros(16, dtype=torch.float64)
    linear[[5, 9]] = 0.5  # offsets (0, 0) and (1, 0) along x
    assert torch.equal(w[0, 0, 0, 0, :, 3, 4], linear)  # advected u at (u, x)
    assert torch.equal(w[0, 1, 0, 1, :, 3, 4], linear)  # advecting v at the (u, y) corner: along x
    faces = faces_from_logits(v, zero, limiter=False)
    assert torch.allclose(faces.advected, fv.linear_advected(v), atol=1e-15, rtol=0)
    assert torch.allclose(faces.advecting, fv.linear_advecting_velocity(v), atol=1e-15, rtol=0)
    limited = faces_from_logits(v, zero)
    ref = fv.VanLeerInterpolation()(v)
    assert torch.allclose(limited.advected, ref.advected, atol=1e-14, rtol=0)
    assert torch.equal(limited.advecting, ref.advecting)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("target", [(0.5, 0.0), (0.0, 0.5)])
def test_every_stencil_satisfies_its_constraints(order, target):
    st = PolynomialStencil(target, order)
    z = 3.0 * torch.randn(50, st.n_logits, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = st.weights(z)  # (50, 16)
    a, b = st.constraints()
    assert torch.allclose(w @ a.T, b.expand(50, -1), atol=1e-12, rtol=0)
    assert torch.allclose(w.sum(-1), torch.ones(50, dtype=torch.float64), atol=1e-12)
    # not more: a random stencil is not exact on the first monomial of the next degree
    o = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    nxt = ((o - target[0])[:, None] ** order * torch.ones(4, dtype=torch.float64)[None]).reshape(-1)
    assert (w @ nxt).abs().max() > 1e-3


def test_learned_faces_are_exact_on_affine_fields_at_order_2():
    n = 16
    idx = torch.arange(n, dtype=torch.float64)
    x, y = torch.meshgrid(idx, idx, indexing="ij")
    field = torch.stack([0.3 + 1.2 * x - 0.7 * y, -0.4 + 0.5 * x + 0.9 * y])[None]  # (1, 2, N, N), index units
    logits = torch.randn(1, logits_per_cell(2), n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    faces = faces_from_logits(field, logits, order=2, limiter=False)
    inner = (slice(2, n - 3), slice(2, n - 3))  # away from the periodic wrap of the non-periodic test field

    def exact(c, tx, ty):
        return (field[0, c] + (tx * (1.2, 0.5)[c] + ty * (-0.7, 0.9)[c]))[inner]

    for j in range(2):
        for d in range(2):
            tq = (0.5, 0.0) if d == 0 else (0.0, 0.5)
            assert torch.allclose(faces.advected[0, j, d][inner], exact(j, *tq), atol=1e-11)
            ta = (0.5, 0.0) if j == 0 else (0.0, 0.5)
            assert torch.allclose(faces.advecting[0, j, d][inner], exact(d, *ta), atol=1e-11)


def test_the_limiter_reads_the_same_neighbours_from_the_patches_as_from_shifted_copies():
    # faces_from_logits takes each u_j's neighbours -1, +1, +2 along d out of the 4x4 patches; tvd_limit on its own
    # shifts u_j: the two must agree bit for bit, for random logits on a random flow
    v = _velocity()
    logits = torch.randn(2, 120, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    raw = faces_from_logits(v, logits, limiter=False)
    limited = faces_from_logits(v, logits)
    for j in range(2):
        for d in range(2):
            ref = tvd_limit(v[:, j], raw.advected[:, j, d], raw.advecting[:, j, d], (-2, -1)[d])
            assert torch.equal(limited.advected[:, j, d], ref), (j, d)
    assert torch.equal(limited.advecting, raw.advecting)
    assert not torch.equal(limited.advected, raw.advected)  # the limiter acted somewhere


def test_bad_logits_shape_is_refused():
    with pytest.raises(ValueError, match=r"expected logits \(B, 120, N, N\)"):
        faces_from_logits(_velocity(), torch.zeros(2, 100, 16, 16, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ HiPPO
def _closed_form(f, n: int, t_end: float) -> np.ndarray:
    """c_n(T) = int_0^T f(s) L_n(T - s) exp(-(T - s) / 2) ds by 200-point Gauss-Legendre."""
    x, wq = np.polynomial.legendre.leggauss(200)
    s, wq = (x + 1) / 2 * t_end, wq * t_end / 2
    return np.array([np.sum(wq * f(s) * eval_laguerre(k, t_end - s) * np.exp(-(t_end - s) / 2)) for k in range(n)])


def test_lagt_recurrence_converges_to_the_closed_form_projection():
    n, t_end = 8, 6.0
    f = lambda s: np.sin(1.3 * s) + 0.5 * np.cos(0.4 * s) + 0.2  # noqa: E731
    exact = _closed_form(f, n, t_end)
    errors = []
    for dt in (4e-3, 2e-3):
        k = int(round(t_end / dt))
        c = lagt_recurrence(torch.tensor(f(dt * np.arange(1, k + 1))), n, dt)[-1].numpy()
        errors.append(np.abs(c - exact).max() / np.abs(exact).max())
    assert errors[1] < 1e-3
    assert 1.8 < errors[0] / errors[1] < 2.2  # first order: the input is held over each step


def test_lagt_kernel_and_encoder_equal_the_recurrence():
    n, h = 6, 10
    sig = torch.randn(h, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = lagt_recurrence(sig, n)[-1]
    assert torch.allclose(lagt_kernel(n, h) @ sig, c, atol=1e-12)
    frames = torch.zeros(1, h, 2, 4, 4, dtype=torch.float64)
    frames[0, :, 1, 2, 3] = 2.0 * sig
    enc = HippoEncoder(n, h, scale=2.0).double()
    feats = enc(frames)  # (1, 2 n, 4, 4), channel c * n + i
    assert torch.allclose(feats[0, n:, 2, 3], c.to(feats), atol=1e-6)
    assert feats[0, :n].abs().max() == 0 and feats[0, n:, 0, 0].abs().max() == 0


def test_the_running_lagt_state_equals_the_window_over_every_frame_seen():
    n, h, k = 6, 5, 7
    frames = torch.randn(2, h + k, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    enc = HippoEncoder(n, h, scale=1.7).double()
    state = enc.start(frames[:, :h])
    assert torch.equal(enc.features(state), enc(frames[:, :h]))
    for j in range(k):
        state = enc.update(state, frames[:, h + j])
    whole = HippoEncoder(n, h + k, scale=1.7).double()(frames)
    assert torch.allclose(enc.features(state), whole, atol=1e-12, rtol=0)
    # and it is not the window of the last h frames
    assert (enc.features(state) - enc(frames[:, -h:])).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------------ models
def _model(variant: str, encoder: str = "hippo", n: int = 8, li_calls: str = "step", memory: str = "window"):
    common = dict(grid=fv.StaggeredGrid(n), flow=FLOW, dt=0.05)
    cnn = CNNConfig(layers=2, channels=4)
    if variant == "coarse":
        return CoarseSolver(**common).double()
    if variant == "li":
        return LearnedInterpolation(**common, cnn=cnn, calls=li_calls).double()
    return TemporalStencil(
        **common, cnn=cnn, history=4, encoder=encoder, hippo_order=4, bundle=2, memory=memory
    ).double()


def test_running_memory_feeds_the_cnn_every_frame_of_the_rollout():
    torch.manual_seed(0)
    model = _model("tsm", memory="running")
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    window = _model("tsm")
    window.net.load_state_dict(model.net.state_dict())
    inputs = []
    model.net.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().clone()))
    frames = torch.stack([_velocity(8, 1, seed=s)[0] for s in range(4)])[None]  # (1, 4, 2, 8, 8)
    pred = model.rollout(frames, 5)
    assert len(inputs) == 3  # bundle 2: CNN calls before steps 1, 3, 5
    seen = torch.cat([frames, pred[:, :4]], dim=1)  # the 4 given frames and the first 4 predictions
    expected = HippoEncoder(4, 8, model.velocity_scale).double()(seen)
    assert torch.allclose(inputs[2], expected, atol=1e-12, rtol=0)
    assert torch.allclose(inputs[0], model.encoder(frames), atol=1e-12, rtol=0)  # the first call: the window
    assert (window.rollout(frames, 5) - pred).abs().max() > 1e-8  # the window model forgets the given frames
    with pytest.raises(ValueError, match="memory 'running' is the HiPPO state of TSM"):
        _model("tsm", "frames", memory="running")
    with pytest.raises(ValueError, match="TemporalStencil memory 'forever': expected 'window' or 'running'"):
        _model("tsm", memory="forever")


def test_untrained_models_equal_the_coarse_solver():
    frames = _velocity(8, 2)[:, None].repeat(1, 4, 1, 1, 1)
    coarse = _model("coarse").rollout(frames, 5)
    for variant, encoder, calls, memory in (
        ("li", "hippo", "step", "window"),
        ("li", "hippo", "stage", "window"),
        ("tsm", "hippo", "step", "window"),
        ("tsm", "frames", "step", "window"),
        ("tsm", "hippo", "step", "running"),
    ):
        # last layer starts at zero: base scheme
        pred = _model(variant, encoder, li_calls=calls, memory=memory).rollout(frames, 5)
        assert torch.allclose(pred, coarse, atol=1e-13, rtol=0), (variant, calls)
    assert (coarse[:, -1] - frames[:, -1]).abs().max() > 1e-3
    # the coarse model is the solver's own van Leer rollout
    solver = fv.StaggeredNavierStokes2D(fv.StaggeredGrid(8), FLOW)
    assert torch.equal(coarse, solver.rollout(frames[:, -1], 0.05, 6)[:, 1:])


def test_the_solver_step_takes_the_logits_as_an_argument_and_keeps_no_state():
    """A learned step is the solver's step with the face values of the logits it is given: the same logits give the
    same step whatever ran before, and the solver's own interpolation stays the van Leer scheme."""
    model = _model("li")
    v = _velocity(8, 1).double()
    logits = 0.1 * torch.randn(1, 120, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = model.solver_step(v, logits)
    model.solver_step(v, torch.zeros_like(logits))
    assert torch.equal(model.solver_step(v, logits), a)
    faces = lambda u: faces_from_logits(u, logits)  # noqa: E731
    assert torch.equal(a, model.solver.step(v, 0.05, faces))
    assert isinstance(model.solver.interpolation, fv.VanLeerInterpolation)
    assert torch.equal(model.solver_step(v, None), model.solver.step(v, 0.05))
    assert (a - model.solver_step(v, None)).abs().max() > 1e-8


@pytest.mark.parametrize(("li_calls", "per_step"), [("step", 1), ("stage", 3)])
def test_li_calls_its_cnn_once_per_step_or_at_each_rk_stage(li_calls, per_step):
    model = _model("li", li_calls=li_calls)
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    model.rollout(_velocity(8, 1)[:, None], 4)
    assert len(calls) == 4 * per_step  # SSP-RK3: three stages
    # the same weights, perturbed: per-step and per-stage logits give different (both finite) trajectories
    other = _model("li", li_calls="step" if li_calls == "stage" else "stage")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other.net.load_state_dict(model.net.state_dict())
    a, b = model.rollout(_velocity(8, 1)[:, None], 4), other.rollout(_velocity(8, 1)[:, None], 4)
    assert torch.isfinite(a).all() and (a - b).abs().max() > 1e-8


@pytest.mark.parametrize(
    ("variant", "li_calls", "memory"),
    [("li", "step", "window"), ("li", "stage", "window"), ("tsm", "step", "window"), ("tsm", "step", "running")],
)
def test_gradients_reach_the_cnn_through_an_unrolled_rollout(variant, li_calls, memory):
    torch.manual_seed(0)
    model = _model(variant, li_calls=li_calls, memory=memory)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    frames = _velocity(8, 1)[:, None].repeat(1, 4, 1, 1, 1)
    target = _velocity(8, 1, seed=5)
    loss = lambda: ((model.rollout(frames, 3)[:, -1] - target) ** 2).mean()  # noqa: E731
    loss().backward()
    first = model.net[0].weight
    assert first.grad is not None and first.grad.abs().max() > 0
    # the gradient is the derivative: central difference along a random direction of the first layer
    direction = torch.randn_like(first)
    eps = 1e-5
    with torch.no_grad():
        first.add_(eps * direction)
        up = loss()
        first.sub_(2 * eps * direction)
        down = loss()
        first.add_(eps * direction)
    fd = (up - down) / (2 * eps)
    assert torch.allclose((first.grad * direction).sum(), fd, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize(("variant", "li_calls"), [("tsm", "step"), ("li", "step"), ("li", "stage")])
def test_the_compiled_solver_step_is_one_graph_with_the_eager_numbers(variant, li_calls, monkeypatch):
    """``compiled_step`` traces a whole solver step as one graph (``fullgraph``: a graph break raises), twice in a
    training rollout (the first step reads frames without gradient), even with the stencil and grid constants not
    yet made (they are made before tracing); the traced step gives the eager rollout and gradients. Dynamo only,
    with a backend that runs the captured graph as it is."""
    import pdeforge.operators.tsm._stencils as stencils

    monkeypatch.setattr(stencils, "_STACKED", {})  # as in a fresh process
    torch.manual_seed(0)
    model = _model(variant, li_calls=li_calls)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    step = model.compiled_step(torch.float64, "cpu", backend=backend, fullgraph=True)
    frames = _velocity(8, 1)[:, None].repeat(1, 4, 1, 1, 1)
    target = _velocity(8, 1, seed=5)
    grads = []
    for s in (step, step, None):  # two training rollouts compiled (nothing compiles for the second), then eager
        loss = ((model.rollout(frames, 5, step=s) - target) ** 2).mean()
        grads.append((loss.detach(), *torch.autograd.grad(loss, list(model.net.parameters()))))
    torch._dynamo.reset()
    assert len(graphs) == 2
    for got in grads[:2]:
        assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-15) for a, b in zip(got, grads[2]))
    assert grads[0][-2].abs().max() > 0  # the last layer's weight: the CNN is in the loss


def test_rollout_refuses_too_short_history():
    with pytest.raises(ValueError, match=r"expected frames \(B, >= 4, 2, N, N\)"):
        _model("tsm").rollout(_velocity(8, 1)[:, None], 2)


# ------------------------------------------------------------------------------------------------ data
def test_the_preset_writes_the_bytes_of_the_tsm_dns(tmp_path):
    """The ``kolmogorov_fv_2d`` preset with the TSM protocol's options (joint initial draw, batches of dns_batch
    sharing CFL steps, float32) writes, split after split, the bytes of the DNS TSM trains on:
    ``fv.kolmogorov_fv_trajectories(n, resolution, KolmogorovFVPreset(...), Generator().manual_seed(seed), float32,
    batch_size=dns_batch)``; the staggered velocity reads back channels first as the solver's (u, v)."""
    dns = dict(dns_resolution=16, reynolds=500.0, warmup_time=0.3, frame_interval=0.05, n_frames=5)
    n, res, seed, batch = 8, 8, 3, 2
    reference = fv.kolmogorov_fv_trajectories(
        n,
        res,
        fv.KolmogorovFVPreset(**dns),
        torch.Generator().manual_seed(seed),
        torch.float32,
        "cpu",
        batch_size=batch,
    )
    preset = with_overrides(
        PRESETS["kolmogorov_fv_2d"],
        **dns,
        n_trajectories=n,
        splits=(0.5, 0.25, 0.25),
        dtype="float32",
        initial_draw="joint",
        dns_batch=batch,
    )
    generate(preset, tmp_path, n_trajectories=n, resolution=res, seed=seed, batch_size=batch, progress=False)
    files = sorted((tmp_path / "data").glob("*/*.hdf5"), key=lambda p: p.name)
    assert [f.parent.name for f in files] == ["train", "valid", "test"]
    stored = np.concatenate([h5py.File(f, "r")["t1_fields"]["velocity"][...] for f in files])  # (n, T, x, y, 2)
    assert stored.dtype == np.float32
    assert stored.tobytes() == np.ascontiguousarray(reference.permute(0, 1, 3, 4, 2).numpy()).tobytes()
    # a joint draw of fewer trajectories is the first of them (the config's 40 hold a 32-trajectory DNS's bytes)
    fewer = fv.kolmogorov_fv_trajectories(
        6,
        res,
        fv.KolmogorovFVPreset(**dns),
        torch.Generator().manual_seed(seed),
        torch.float32,
        "cpu",
        batch_size=batch,
    )
    assert torch.equal(fewer, reference[:6])
    test = TrajectoryDataset(tmp_path, 1, 1, split="test", full_trajectory=True)
    assert torch.equal(torch.cat([test[0]["input_fields"], test[0]["output_fields"]]), reference[6])
    # a generation batch that splits a DNS batch is refused, naming the options
    with pytest.raises(ValueError, match=r"not whole DNS batches of dns_batch=2 within n_trajectories=8"):
        generate(preset, tmp_path / "other", n_trajectories=n, resolution=res, seed=seed, batch_size=1, progress=False)
    with pytest.raises(ValueError, match=r"initial_draw 'sometimes': expected 'per_trajectory' or 'joint'"):
        with_overrides(preset, initial_draw="sometimes")


def test_windows_are_drawn_by_seed_and_epoch_and_dealt_to_the_processes():
    one = WindowSampler(50, 4, seed=1)
    assert len(one) == 12 and list(one.batches(0)) == list(WindowSampler(50, 4, seed=1).batches(0))
    assert list(one.batches(0)) != list(one.batches(1)) and list(one.batches(0))[3:] == list(one.batches(0, 3))
    two = [WindowSampler(50, 2, seed=1, rank=r, world=2) for r in range(2)]
    assert len(two[0]) == 12
    for k, (a, b) in enumerate(zip(*(s.batches(0) for s in two))):
        assert a + b == list(one.batches(0))[k]  # the combined batch of one process


# ------------------------------------------------------------------------------------------------ the family
TINY = [
    "--run.progress",
    "false",
    "--run.threads",
    "1",
    "--data.preset_options.n_trajectories",
    "5",
    "--data.preset_options.dns_resolution",
    "16",
    "--data.preset_options.resolution",
    "8",
    "--data.preset_options.n_frames",
    "24",
    "--data.preset_options.frame_interval",
    "0.05",
    "--data.preset_options.warmup_time",
    "0.3",
    "--data.preset_options.dns_batch",
    "1",
    "--data.preset_options.batch_size",
    "1",
    "--data.stride",
    "1",
    "--data.unroll",
    "2",
    "--model.history",
    "4",
    "--model.hippo_order",
    "4",
    "--model.bundle",
    "2",
    "--model.layers",
    "2",
    "--model.channels",
    "4",
    "--optim.batch_size",
    "2",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One dataset cache for the module's runs (the tiny preset is generated once)."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv("PDEFORGE_CACHE", str(path))
        yield path


def _train(run_dir: Path, *extra: str, config: str = "tsm_kolmogorov.yaml") -> dict:
    return train(CONFIGS / config, [*TINY, "--run.run_dir", str(run_dir), *extra])


@pytest.mark.parametrize(
    ("config", "kind", "name"),
    [("tsm_kolmogorov.yaml", TemporalStencil, "tsm-hippo"), ("li_kolmogorov.yaml", LearnedInterpolation, "li")],
)
def test_every_config_trains_through_the_skeleton_and_evaluates_again(tmp_path, cache, config, kind, name):
    run = tmp_path / "run"
    metrics = _train(run, "--run.max_steps", "2", config=config)
    for f in (
        "config.yaml",
        "train_log.jsonl",
        "metrics.json",
        "model.safetensors",
        "model.json",
        "checkpoint/state.pt",
        "correlation_vs_time.png",
        "vorticity_snapshots.png",
    ):
        assert (run / f).is_file(), f
    test = metrics["test"]
    assert metrics["steps"] == 2 and test["model"] == name
    assert len(test["correlation_curve"]) == 24 - 4 and test["correlation_curve"][0] > 0.9
    assert 0 <= test["duration_mean"] <= 20 * 0.05 and len(test["duration_per_trajectory"]) == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # `pdeforge evaluate` in a fresh process: another thread count than training's 1
    try:
        again = evaluate_run(run)
    finally:
        torch.set_num_threads(threads)
    assert again == {"valid": metrics["valid"], "test": metrics["test"]}
    assert json.loads((run / "metrics.json").read_text())["test"] == test
    loaded = load_run(run)
    assert isinstance(loaded.model, kind) and loaded.config.model.variant == name[:3].strip("-")
    # the rebuilt model rolls the test trajectory out to the correlation curve of the metrics
    family = TSMFamily(loaded.config, Environment(torch.device("cpu")))
    family.prepare()
    inputs, targets = family.split("test")
    with torch.no_grad():
        pred = loaded.model.rollout(inputs, targets.shape[1])
    grid = loaded.model.solver.grid
    corr = correlation(vorticity_rollout(pred, grid), vorticity_rollout(targets, grid), 2, reduction="none")
    assert np.allclose(corr[..., 0].mean(0).numpy(), test["correlation_curve"], atol=1e-6)  # mean over trajectories


def test_an_untrained_model_scores_as_the_coarse_solver(tmp_path, cache):
    metrics = _train(tmp_path / "run", "--run.max_steps", "1", "--optim.lr", "1e-12")
    test = metrics["test"]
    assert np.allclose(test["correlation_curve"], test["coarse_correlation_curve"], atol=1e-5)


def test_a_crash_and_resume_equal_an_uninterrupted_run(tmp_path, cache, crash_after_checkpoint):
    extra = ["--optim.steps", "4", "--run.checkpoint_every", "1"]
    whole = _train(tmp_path / "whole", *extra)
    calls = crash_after_checkpoint(lambda: _train(tmp_path / "cut", *extra), nth=2)
    assert calls[-1] == 2
    with pytest.raises(ValueError, match=r"started with other options \(optim.lr 0.001 there, 0.002 now\)"):
        _train(tmp_path / "cut", *extra, "--run.resume", str(tmp_path / "cut"), "--optim.lr", "2e-3")
    again = _train(tmp_path / "cut", *extra, "--run.resume", str(tmp_path / "cut"))
    drop = lambda m: {k: v for k, v in m.items() if k != "train_seconds"}  # noqa: E731
    assert drop(again) == drop(whole)
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().max() > 0 for k, v in a.items() if k.startswith("net.2."))  # trained: the CNN is in use


def test_a_nan_loss_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(tmp_path, cache, monkeypatch):
    loss, calls = TSMFamily.loss, []

    def nan_from_the_third(self, net, batch):
        calls.append(1)
        value = loss(self, net, batch)
        return value * float("nan") if len(calls) > 2 else value

    monkeypatch.setattr(TSMFamily, "loss", nan_from_the_third)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"^tsm: the loss is nan at step 2 \(epoch 0, lr .*state.pt"):
        _train(run, "--optim.steps", "5", "--run.checkpoint_every", "1")
    state = load_state(run / "checkpoint" / "state.pt")
    assert state["counters"]["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}
    assert not (run / "metrics.json").exists()


def test_bad_options_are_one_line_naming_them(tmp_path, cache, monkeypatch):
    with pytest.raises(ConfigError, match=r"--model.hipo_order: unknown option; did you mean --model.hippo_order\?"):
        _train(tmp_path / "a", "--model.hipo_order", "3")
    with pytest.raises(ConfigError, match=r"--model.variant 'coarse': expected one of 'tsm', 'li'"):
        _train(tmp_path / "b", "--model.variant", "coarse")
    with pytest.raises(ValueError, match=r"tsm: data.preset_options: unknown option\(s\) \['dns_res'\]"):
        _train(tmp_path / "c", "--data.preset_options.dns_res", "8")
    with pytest.raises(ValueError, match=r"initial_draw 'sometimes': expected 'per_trajectory' or 'joint'"):
        _train(tmp_path / "d", "--data.preset_options.initial_draw", "sometimes")
    with pytest.raises(ValueError, match=r"too few for windows of n_steps_input=4 \+ n_steps_output=30"):
        _train(tmp_path / "e", "--data.unroll", "30")
    import torch._inductor.cpp_builder as cpp_builder

    def no_compiler():
        raise RuntimeError("no working C++ compiler found")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(
        ValueError,
        match=r"^tsm: model.compile true: Inductor needs a C\+\+ compiler for CPU kernels "
        r".*; install it or set model.compile false$",
    ):
        _train(tmp_path / "f", "--model.compile", "true", "--run.device", "cpu")


def test_ddp_two_processes_equal_one_with_the_combined_batch(tmp_path, cache):
    env = dict(os.environ, OMP_NUM_THREADS="1", PDEFORGE_CACHE=str(cache))
    script = tmp_path / "train_tsm.py"
    script.write_text("import sys\nfrom pdeforge.families import train\ntrain(sys.argv[1], sys.argv[2:])\n")
    _train(tmp_path / "data_made", "--run.max_steps", "1")  # the data, generated once before the processes start
    common = [str(CONFIGS / "tsm_kolmogorov.yaml"), *TINY, "--optim.steps", "3", "--run.device", "cpu"]
    r = subprocess.run(
        [sys.executable, str(script), *common, "--run.run_dir", str(tmp_path / "one"), "--optim.batch_size", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            *common,
            "--run.run_dir",
            str(tmp_path / "two"),
            "--optim.batch_size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = (load_state(tmp_path / n / "checkpoint" / "state.pt")["model"] for n in ("one", "two"))
    assert all(torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-7) for k in one)
    assert any(one[k].abs().max() > 0 for k in one if k.startswith("net.2."))  # trained


@pytest.mark.slow
def test_a_compiled_training_agrees_with_the_eager_one(tmp_path, cache):
    """``model.compile true`` (Inductor's fused kernels for the solver step) trains the run an eager training does, to
    rounding: the same losses, weights and scores within float32 tolerances, not the same bytes."""
    eager = _train(tmp_path / "eager", "--optim.steps", "4", "--run.device", "cpu")
    compiled = _train(tmp_path / "compiled", "--optim.steps", "4", "--run.device", "cpu", "--model.compile", "true")
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("eager", "compiled"))
    assert any(v.abs().max() > 0 for k, v in a.items() if k.startswith("net.2."))  # trained: the CNN is in use
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-6) for k in a)
    assert np.allclose(compiled["test"]["correlation_curve"], eager["test"]["correlation_curve"], atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_training_on_cuda_agrees_with_the_cpu(tmp_path, cache):
    """3 steps on cuda and on the CPU give the same weights and scores to float32 rounding; the cuda run's weights
    score the same when loaded on the CPU."""
    gpu = _train(tmp_path / "gpu", "--optim.steps", "3", "--run.device", "cuda")
    cpu = _train(tmp_path / "cpu", "--optim.steps", "3", "--run.device", "cpu")
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("gpu", "cpu"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-6) for k in a)
    np.testing.assert_allclose(gpu["test"]["correlation_curve"], cpu["test"]["correlation_curve"], atol=1e-4)
    again = evaluate_run(tmp_path / "gpu", device="cpu")
    np.testing.assert_allclose(again["test"]["correlation_curve"], gpu["test"]["correlation_curve"], atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_a_compiled_training_on_cuda_agrees_with_the_eager_one(tmp_path, cache):
    """``model.compile true`` on CUDA (Inductor's GPU kernels for the solver step) trains the eager CUDA run to
    rounding."""
    eager = _train(tmp_path / "eager", "--optim.steps", "4", "--run.device", "cuda")
    compiled = _train(tmp_path / "compiled", "--optim.steps", "4", "--run.device", "cuda", "--model.compile", "true")
    np.testing.assert_allclose(compiled["test"]["correlation_curve"], eager["test"]["correlation_curve"], atol=1e-4)
