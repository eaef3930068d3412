"""Temporal stencil modelling / learned interpolation: constrained stencils, HiPPO-LagT, gradients, run folder."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import eval_laguerre

from pdeforge.checkpoint import load_state, load_weights, save_state
from pdeforge.operators.tsm import (
    DATA_FIELDS,
    CNNConfig,
    HippoEncoder,
    PolynomialStencil,
    TemporalStencilModel,
    TSMConfig,
    TSMRunConfig,
    data_fingerprint,
    evaluate_model,
    faces_from_logits,
    lagt_kernel,
    lagt_recurrence,
    load_data,
    load_model,
    logits_per_cell,
    run,
    stencil_weights,
    tvd_limit,
)
from pdeforge.solvers import fv

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
def _model(variant: str, encoder: str = "hippo", n: int = 8, li_calls: str = "step",
           memory: str = "window") -> TemporalStencilModel:
    cfg = TSMConfig(variant, encoder, history=4, hippo_order=4, bundle=2, cnn=CNNConfig(layers=2, channels=4),
                    li_calls=li_calls, memory=memory)
    return TemporalStencilModel(cfg, fv.StaggeredGrid(n), FLOW, dt=0.05).double()


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
        TSMConfig("tsm", "frames", memory="running")
    with pytest.raises(ValueError, match="memory must be one of"):
        TSMConfig("tsm", memory="forever")


def test_untrained_models_equal_the_coarse_solver():
    frames = _velocity(8, 2)[:, None].repeat(1, 4, 1, 1, 1)
    coarse = _model("coarse").rollout(frames, 5)
    for variant, encoder, calls, memory in (("li", "hippo", "step", "window"), ("li", "hippo", "stage", "window"),
                                            ("tsm", "hippo", "step", "window"), ("tsm", "frames", "step", "window"),
                                            ("tsm", "hippo", "step", "running")):
        # last layer starts at zero: base scheme
        pred = _model(variant, encoder, li_calls=calls, memory=memory).rollout(frames, 5)
        assert torch.allclose(pred, coarse, atol=1e-13, rtol=0), (variant, calls)
    assert (coarse[:, -1] - frames[:, -1]).abs().max() > 1e-3


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


@pytest.mark.parametrize(("variant", "li_calls", "memory"),
                         [("li", "step", "window"), ("li", "stage", "window"), ("tsm", "step", "window"),
                          ("tsm", "step", "running")])
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
    with a backend that runs the captured graph as it is (Inductor's numerics: the slow test below)."""
    import pdeforge.operators._tsm_stencils as stencils

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


@pytest.mark.parametrize("memory", ["window", "running"])
def test_run_writes_a_rebuildable_run_folder(tmp_path, memory):
    preset = fv.KolmogorovFVPreset(dns_resolution=16, warmup_time=0.5, frame_interval=0.05, n_frames=24)
    traj = fv.kolmogorov_fv_trajectories(3, 8, preset, torch.Generator().manual_seed(0))
    torch.save({"velocity": traj, "frame_interval": 0.05}, tmp_path / "data.pt")
    spec = {"family": "tsm", "variant": "tsm", "data_cache": str(tmp_path / "data.pt"), "resolution": 8,
            "n_train": 2, "n_test": 1, "stride": 1, "frame_interval": 0.05, "history": 4, "hippo_order": 4,
            "bundle": 2, "layers": 2, "channels": 4, "steps": 3, "batch_size": 2, "unroll": 2, "log_every": 1,
            "memory": memory}
    metrics = run(spec, tmp_path / "run")
    assert metrics["model"] == {"window": "tsm-hippo", "running": "tsm-hippo-running"}[memory]
    for name in ("config.yaml", "metrics.json", "model.safetensors", "model.json", "train_log.jsonl",
                 "correlation_vs_time.png", "vorticity_snapshots.png"):
        assert (tmp_path / "run" / name).exists(), name
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["duration_mean"] == metrics["duration_mean"]
    assert len(metrics["correlation_curve"]) == 24 - 4 and 0 <= metrics["duration_mean"] <= 20 * 0.05
    assert metrics["correlation_curve"][0] > 0.9  # one step from the reference is still close to it
    model = load_model(tmp_path / "run")
    assert model.config.memory == memory
    frames = traj[2:, :4].float()
    with torch.no_grad():
        again = model.rollout(frames, 20)
    from pdeforge.operators.tsm import vorticity_rollout
    from pdeforge.metrics import correlation
    corr = correlation(vorticity_rollout(again, model.solver.grid), vorticity_rollout(traj[2:, 4:].float(),
                       model.solver.grid), 2, reduction="none")[0, :, 0]
    assert np.allclose(corr.numpy(), metrics["correlation_curve"], atol=1e-5)
    saved = json.loads((tmp_path / "run" / "model.json").read_text())["data_fingerprint"]
    assert saved == metrics["data_fingerprint"] == data_fingerprint(traj[:2].float(), traj[2:3].float())
    assert data_fingerprint(traj[:2].float(), traj[2:3].float() + 1e-6) != saved
    with pytest.raises(ValueError, match=r"tsm spec: unknown key\(s\) \['hipo_order'\]"):
        run({**spec, "hipo_order": 3}, tmp_path / "bad")


def test_a_resumed_training_equals_an_uninterrupted_one(tmp_path, crash_after_checkpoint):
    """Killed after the checkpoint at step 4 of 6, ``resume: true`` finishes with the same bytes and log."""
    import pdeforge.operators.tsm as tsm

    preset = fv.KolmogorovFVPreset(dns_resolution=16, warmup_time=0.5, frame_interval=0.05, n_frames=24)
    traj = fv.kolmogorov_fv_trajectories(3, 8, preset, torch.Generator().manual_seed(0))
    torch.save({"velocity": traj, "frame_interval": 0.05}, tmp_path / "data.pt")
    spec = {"variant": "tsm", "data_cache": str(tmp_path / "data.pt"), "resolution": 8, "n_train": 2, "n_test": 1,
            "stride": 1, "frame_interval": 0.05, "history": 4, "hippo_order": 4, "bundle": 2, "layers": 2,
            "channels": 4, "steps": 6, "batch_size": 2, "unroll": 2, "log_every": 1, "checkpoint_every": 2,
            "progress": False}
    whole = run(spec, tmp_path / "whole")

    pending = crash_after_checkpoint(tsm, {"step": 4})
    with pytest.raises(crash_after_checkpoint.crash):
        run(spec, tmp_path / "cut")
    assert not pending
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    with pytest.raises(ValueError, match=r"started with another configuration \(lr 0.001 there, 0.002 now\)"):
        run({**spec, "resume": True, "lr": 2e-3}, tmp_path / "cut")
    with pytest.raises(FileNotFoundError, match="no checkpoint to continue"):
        run({**spec, "resume": True}, tmp_path / "never")
    again = run({**spec, "resume": True}, tmp_path / "cut")
    a = load_weights(tmp_path / "whole" / "model.safetensors")
    b = load_weights(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(line) for line in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
            for d in ("whole", "cut")]
    assert [r["step"] for r in logs[1]] == list(range(6))
    assert [(r["loss"], r["lr"]) for r in logs[0]] == [(r["loss"], r["lr"]) for r in logs[1]]
    assert again["duration_per_trajectory"] == whole["duration_per_trajectory"]


def test_the_data_cache_records_its_parameters_and_refuses_others(tmp_path):
    cfg = TSMRunConfig(data_cache=str(tmp_path / "d.pt"), dns_resolution=16, warmup_time=0.2, frame_interval=0.05,
                       n_frames=6, resolution=8, n_train=1, n_test=1, stride=1, dns_batch=0, data_workers=1)
    train, test = load_data(cfg)
    assert train.shape == test.shape == (1, 6, 2, 8, 8)
    again, _ = load_data(cfg)  # from the cache
    assert torch.equal(again, train)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match=r"d.pt was generated with other parameters \(reynolds 500.0 there, 300.0"):
        load_data(replace(cfg, reynolds=300.0))
    with pytest.raises(ValueError, match="does not hold 2\\+1 trajectories"):
        load_data(replace(cfg, n_train=2))
    with pytest.raises(ValueError, match=r"dns_batch 0 there, 2 asked"):
        load_data(replace(cfg, dns_batch=2))
    # a cache written before `dns_batch` existed was made in one batch: accepted as dns_batch 0, refused otherwise
    old = load_state(tmp_path / "d.pt")
    old["params"].pop("dns_batch")
    save_state(tmp_path / "d.pt", old)
    assert torch.equal(load_data(cfg)[0], train)
    with pytest.raises(ValueError, match=r"dns_batch 0 there, 2 asked"):
        load_data(replace(cfg, dns_batch=2))


def test_a_finer_cache_is_coarsened_by_face_averaging(tmp_path):
    """One DNS serves several ratios: 16^2 -> 8^2 cached, asked at 4^2, equals the 4^2 data made from the DNS."""
    cfg = TSMRunConfig(data_cache=str(tmp_path / "d8.pt"), dns_resolution=16, warmup_time=0.2, frame_interval=0.05,
                       n_frames=4, resolution=8, n_train=1, n_test=1, stride=1, dns_batch=0, data_workers=1)
    train8, test8 = load_data(cfg)
    train4, test4 = load_data(replace(cfg, resolution=4))
    direct4, _ = load_data(replace(cfg, resolution=4, data_cache=str(tmp_path / "d4.pt")))
    assert train4.shape == (1, 4, 2, 4, 4)
    torch.testing.assert_close(train4, direct4, rtol=0, atol=1e-6)
    torch.testing.assert_close(test4[0], fv.downsample_staggered(test8[0], 2), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"resolution 8 there, 3 asked"):
        load_data(replace(cfg, resolution=3))
    with pytest.raises(ValueError, match="reynolds 500.0 there, 300.0 asked"):
        load_data(replace(cfg, resolution=4, reynolds=300.0))


def test_the_auto_data_cache_is_named_by_its_parameters_and_reuses_a_finer_one(tmp_path, monkeypatch):
    """``data_cache: auto``: each set of data parameters has its own file under ``runs/tsm_data/``, so a run at
    another resolution or Reynolds number neither meets a refusal nor overwrites; a run at a resolution that a
    cached one's divides reuses it (no DNS); the file the old default path named is used only where its recorded
    parameters fit."""
    import pdeforge.operators.tsm as tsm

    monkeypatch.setattr(tsm, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(tsm, "_OLD_DEFAULT", tmp_path / "data" / "old.pt")
    cfg = TSMRunConfig(dns_resolution=16, warmup_time=0.2, frame_interval=0.05, n_frames=4, resolution=8,
                       n_train=1, n_test=1, stride=1, dns_batch=0, data_workers=1)
    assert cfg.data_cache == "auto"
    path8 = tsm.data_cache_path(cfg)
    assert path8.parent == tmp_path / "data" and path8.name.startswith("kolmogorov_fv_8_dns16_")
    train8, _ = load_data(cfg)
    assert path8.exists()
    made = []
    real_generate = tsm._generate
    monkeypatch.setattr(tsm, "_generate", lambda c: made.append(c.resolution) or real_generate(c))
    # 4^2: the 8^2 cache face-averaged, no DNS
    assert tsm.data_cache_path(replace(cfg, resolution=4)) == path8
    train4, _ = load_data(replace(cfg, resolution=4))
    assert made == [] and torch.equal(train4[0], fv.downsample_staggered(train8[0], 2))
    # other parameters: another file, a new DNS, and the first cache untouched
    other = replace(cfg, reynolds=300.0)
    assert tsm.data_cache_path(other) not in (path8, tsm._auto_name(cfg, 8))
    assert tsm.data_cache_path(other).name.startswith("kolmogorov_fv_8_dns16_")
    load_data(other)
    assert made == [8] and torch.equal(load_data(cfg)[0], train8)
    # the old default path: used when its parameters fit (here: the 8^2 cache moved there), not otherwise
    path8.rename(tsm._OLD_DEFAULT)
    for c in (cfg, replace(cfg, resolution=4)):
        assert tsm.data_cache_path(c) == tsm._OLD_DEFAULT
    assert torch.equal(load_data(cfg)[0], train8) and made == [8]
    assert tsm.data_cache_path(replace(cfg, n_frames=5)) == tsm._auto_name(replace(cfg, n_frames=5), 8)
    assert tsm.data_cache_path(replace(cfg, resolution=16)) == tsm._auto_name(cfg, 16)  # 8 does not serve 16
    # a path as given is used as given
    assert tsm.data_cache_path(replace(cfg, data_cache=str(tmp_path / "x.pt"))) == tmp_path / "x.pt"


def test_the_dns_split_over_worker_processes_equals_one_process(tmp_path):
    """Batches of 2 over 2 spawned processes (one thread each) give the bytes of one process at one thread."""
    cfg = TSMRunConfig(data_cache=str(tmp_path / "d.pt"), dns_resolution=16, warmup_time=0.2, frame_interval=0.05,
                       n_frames=6, resolution=8, n_train=3, n_test=2, stride=1, dns_batch=2, data_workers=2)
    train, test = load_data(cfg)
    assert train.shape == (3, 6, 2, 8, 8) and test.shape == (2, 6, 2, 8, 8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = load_data(replace(cfg, data_cache=str(tmp_path / "alone.pt"), data_workers=1))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(alone[0], train) and torch.equal(alone[1], test)

# ------------------------------------------------------------------------------------------------ devices
def _tiny_spec(tmp_path: Path, **change) -> dict:
    """A run of a few seconds on a cache of 3 small DNS trajectories (8^2, 24 frames), made once per folder."""
    cache = tmp_path / "data.pt"
    if not cache.exists():
        preset = fv.KolmogorovFVPreset(dns_resolution=16, warmup_time=0.5, frame_interval=0.05, n_frames=24)
        traj = fv.kolmogorov_fv_trajectories(3, 8, preset, torch.Generator().manual_seed(0))
        torch.save({"velocity": traj, "frame_interval": 0.05}, cache)
    return {"variant": "tsm", "data_cache": str(cache), "resolution": 8, "n_train": 2, "n_test": 1, "stride": 1,
            "frame_interval": 0.05, "history": 4, "hippo_order": 4, "bundle": 2, "layers": 2, "channels": 4,
            "steps": 4, "batch_size": 2, "unroll": 2, "log_every": 1, "checkpoint_every": 0, "progress": False,
            **change}


def _train_log(run_dir: Path, timed: bool = False) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return rows if timed else [{k: v for k, v in r.items() if k != "time"} for r in rows]


def test_device_cpu_trains_the_bytes_of_a_spec_without_device(tmp_path, monkeypatch):
    """``device: cpu``, and ``auto`` where CUDA is absent, change nothing: the log, weights and scores of a spec
    without the key (the run before the key existed)."""
    spec = _tiny_spec(tmp_path)
    plain = run(spec, tmp_path / "plain")
    runs = {"cpu": run({**spec, "device": "cpu"}, tmp_path / "cpu")}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runs["auto"] = run({**spec, "device": "auto"}, tmp_path / "auto")
    want = load_weights(tmp_path / "plain" / "model.safetensors")
    assert any(v.abs().max() > 0 for k, v in want.items() if k.startswith("net.2."))  # trained: the CNN is in use
    for device, metrics in runs.items():
        assert _train_log(tmp_path / device) == _train_log(tmp_path / "plain")
        got = load_weights(tmp_path / device / "model.safetensors")
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), device
        assert metrics["correlation_curve"] == plain["correlation_curve"], device
        assert metrics["data_fingerprint"] == plain["data_fingerprint"], device
        saved = json.loads((tmp_path / device / "model.json").read_text())["run_config"]
        assert saved["device"] == device


@pytest.mark.slow
def test_a_compiled_training_agrees_with_the_eager_one(tmp_path):
    """``compile: true`` (Inductor's fused kernels for the solver step) trains the run an eager training does, to
    rounding: the same losses, weights and scores within float32 tolerances, not the same bytes."""
    spec = _tiny_spec(tmp_path, steps=6)
    eager = run(spec, tmp_path / "eager")
    compiled = run({**spec, "compile": True}, tmp_path / "compiled")
    logs = [_train_log(tmp_path / d) for d in ("eager", "compiled")]
    assert [r["step"] for r in logs[1]] == list(range(6))
    assert np.allclose([r["loss"] for r in logs[1]], [r["loss"] for r in logs[0]], rtol=1e-4, atol=0)
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("eager", "compiled"))
    assert any(v.abs().max() > 0 for k, v in a.items() if k.startswith("net.2."))  # trained: the CNN is in use
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-6) for k in a)
    assert np.allclose(compiled["correlation_curve"], eager["correlation_curve"], atol=1e-4)
    assert json.loads((tmp_path / "compiled" / "model.json").read_text())["run_config"]["compile"] is True


def test_compile_without_a_cpu_compiler_is_refused_before_any_work(tmp_path, monkeypatch):
    """``compile: true`` where Inductor has no C++ compiler: one line from the spec check (before the DNS), naming
    the option, what is missing and the way out; with a compiler (or without compile) the spec is accepted."""
    import torch._inductor.cpp_builder as cpp_builder

    spec = _tiny_spec(tmp_path, compile=True)
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", lambda: "g++")  # found
    assert TSMRunConfig.from_spec(spec).compile is True

    def no_compiler():
        raise RuntimeError("no working C++ compiler found")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(ValueError, match=r"^tsm spec: compile true: Inductor needs a C\+\+ compiler for CPU kernels "
                                         r"\(g\+\+, or the one named in \$CXX\) and finds none; install it or set "
                                         r"compile: false$"):
        run(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    assert TSMRunConfig.from_spec({**spec, "compile": False}).compile is False
    # on CUDA Inductor needs Triton instead (asked of the device type alone, so this runs without a GPU)
    import importlib.util

    from pdeforge._device import compile_problem

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else find_spec(name, *a))
    assert compile_problem("cuda:0") == ("Inductor needs Triton for CUDA kernels (pip install triton) and it is not "
                                         "installed")
    assert compile_problem("meta") is None


def test_from_spec_refuses_a_device_that_is_not_here(tmp_path, monkeypatch):
    spec = _tiny_spec(tmp_path)
    with pytest.raises(ValueError, match=r"^tsm spec: device 'gpu': expected one of 'cpu', 'cuda', 'cuda:N', 'auto'$"):
        TSMRunConfig.from_spec({**spec, "device": "gpu"})
    with pytest.raises(ValueError, match=r"tsm spec: device 0: expected a string"):
        TSMRunConfig.from_spec({**spec, "device": 0})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=rf"^tsm spec: device '{device}': expected 'cpu' or 'auto': CUDA is not "
                                             r"available here \(torch.cuda.is_available\(\) is False\)$"):
            TSMRunConfig.from_spec({**spec, "device": device})
    assert TSMRunConfig.from_spec({**spec, "device": "auto"}).torch_device == torch.device("cpu")
    # refused before any data is generated or any file written
    fresh = {**spec, "device": "cuda", "data_cache": str(tmp_path / "new.pt")}
    with pytest.raises(ValueError, match="device 'cuda'"):
        run(fresh, tmp_path / "run")
    assert not (tmp_path / "new.pt").exists() and not (tmp_path / "run").exists()
    (tmp_path / "trained").mkdir()  # load_model checks the device before it reads the weights
    (tmp_path / "trained" / "model.json").write_text(json.dumps({"run_config": {}, "velocity_scale": 1.0}))
    with pytest.raises(ValueError, match="device 'cuda'"):
        load_model(tmp_path / "trained", device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert TSMRunConfig.from_spec({**spec, "device": "cuda:0"}).torch_device == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"device 'cuda:1': expected cuda:0 .. cuda:0, the CUDA devices here"):
        TSMRunConfig.from_spec({**spec, "device": "cuda:1"})


def test_a_data_cache_serves_every_device(tmp_path, monkeypatch):
    """The cache does not record the device: one written by a CPU run is read as it is by a CUDA config (CUDA
    faked for the config check; a cache that is there is read on the CPU, so no CUDA call is made)."""
    cfg = TSMRunConfig(data_cache=str(tmp_path / "d.pt"), dns_resolution=16, warmup_time=0.2, frame_interval=0.05,
                       n_frames=6, resolution=8, n_train=1, n_test=1, stride=1, dns_batch=0, data_workers=1)
    train, test = load_data(cfg)
    assert "device" not in DATA_FIELDS and set(load_state(tmp_path / "d.pt")["params"]) == set(DATA_FIELDS)
    written = (tmp_path / "d.pt").read_bytes()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    on_gpu = TSMRunConfig.from_spec({**asdict(cfg), "device": "cuda"})
    assert {k for k, v in asdict(on_gpu).items() if v != getattr(cfg, k)} == {"device"}
    again = load_data(on_gpu)
    assert torch.equal(again[0], train) and torch.equal(again[1], test) and again[0].device.type == "cpu"
    assert (tmp_path / "d.pt").read_bytes() == written  # read, not made again


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_training_on_cuda_agrees_with_the_cpu(tmp_path):
    """3 steps on cuda give a finite loss; the trained weights score the same on cuda and on the CPU (1e-4
    relative); a training state written on one device resumes on the other."""
    spec = _tiny_spec(tmp_path, steps=3, checkpoint_every=2, device="cuda")
    metrics = run(spec, tmp_path / "gpu")
    log = _train_log(tmp_path / "gpu")
    assert [r["step"] for r in log] == [0, 1, 2] and all(np.isfinite(r["loss"]) for r in log)
    cfg = TSMRunConfig.from_spec(spec)
    _, test = load_data(cfg)
    models = {d: load_model(tmp_path / "gpu", d) for d in ("cuda", "cpu")}
    assert next(models["cuda"].parameters()).is_cuda and models["cuda"].net[-1].weight.abs().max() > 0
    res = {d: evaluate_model(m, test.to(d), cfg.history, cfg.threshold) for d, m in models.items()}
    for key in ("pred", "corr_all", "corr"):
        assert res["cuda"][key].device.type == "cpu"
        torch.testing.assert_close(res["cuda"][key], res["cpu"][key], rtol=1e-4, atol=1e-6)
    assert torch.equal(res["cuda"]["duration"], res["cpu"]["duration"])
    np.testing.assert_allclose(metrics["correlation_curve"], res["cpu"]["corr"].numpy(), rtol=1e-4, atol=1e-6)
    # the state at step 2 (cuda tensors) finishes on the CPU; a CPU run's state finishes on cuda: the step-2 loss,
    # from the restored weights and window sampler, is the uninterrupted run's to rounding
    run({**spec, "device": "cpu"}, tmp_path / "cpu")
    for folder, then in (("gpu", "cpu"), ("cpu", "cuda")):
        before = _train_log(tmp_path / folder)
        run({**spec, "device": then, "resume": True}, tmp_path / folder)
        after = _train_log(tmp_path / folder)
        assert after[:2] == before[:2] and np.isfinite(after[2]["loss"])
        assert after[2]["loss"] == pytest.approx(before[2]["loss"], rel=1e-4), (folder, then)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_a_compiled_training_on_cuda_agrees_with_the_eager_one(tmp_path):
    """``compile: true`` on CUDA (Inductor's GPU kernels for the solver step) trains the eager CUDA run to rounding."""
    spec = _tiny_spec(tmp_path, steps=4, device="cuda")
    eager = run(spec, tmp_path / "eager")
    compiled = run({**spec, "compile": True}, tmp_path / "compiled")
    logs = [_train_log(tmp_path / d) for d in ("eager", "compiled")]
    assert np.allclose([r["loss"] for r in logs[1]], [r["loss"] for r in logs[0]], rtol=1e-4, atol=0)
    np.testing.assert_allclose(compiled["correlation_curve"], eager["correlation_curve"], atol=1e-4)


@pytest.mark.parametrize("name", ["tsm_kolmogorov.yaml", "li_kolmogorov.yaml"])
def test_the_family_configs_build_their_models(name):
    import yaml

    from pdeforge.operators.tsm import build_model

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / name).read_text())
    cfg = TSMRunConfig.from_spec(spec)
    model = build_model(cfg, velocity_scale=1.0)
    assert model.config.variant == spec["variant"] and model.config.memory == spec.get("memory", "window")
    frames = torch.zeros(1, cfg.history, 2, cfg.resolution, cfg.resolution)
    assert model.rollout(frames, 2).shape == (1, 2, 2, cfg.resolution, cfg.resolution)
