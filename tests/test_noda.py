"""NODA (semilinear neural operator with data assimilation) and the observation view."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pdeforge.datasets import (
    DatasetMetadata,
    ObservationConfig,
    ObservationView,
    TrajectoryDataset,
    TrajectoryWriter,
    draw_observations,
)
from pdeforge.operators.noda import NODA, GainConfig, GatedGain, IdentityGain, NODAConfig, build_noda, spread_innovation

REPO = Path(__file__).resolve().parents[1]


def _meta(n: int = 32, ndim: int = 1, channels: int = 1) -> DatasetMetadata:
    dims = ("x", "y")[:ndim]
    return DatasetMetadata(
        dataset_name="toy",
        field_names=tuple(f"u{c}" for c in range(channels)),
        constant_field_names=(),
        scalar_names=(),
        spatial_dims=dims,
        resolution=(n,) * ndim,
        domain_lengths=(2 * math.pi,) * ndim,
        dt=0.1,
        boundary_conditions=("periodic",) * ndim,
    )


def _model(gain: str = "gated", measurement: str = "identity", **meta) -> NODA:
    torch.manual_seed(0)
    cfg = NODAConfig(
        predictor={"n_modes": 6, "hidden_channels": 8, "n_layers": 2},
        gain=GainConfig(kind=gain, n_modes=6, hidden_channels=8),
        measurement=measurement,
    )
    return build_noda(cfg, _meta(**meta)).double()


def _write_toy(root, n_traj: int = 6, n_steps: int = 12, n: int = 32) -> None:
    """Advected sine waves of random phase/amplitude: u(x, t) = a sin(k (x - c t) + phi), train/test splits."""
    x = 2 * math.pi * np.arange(n) / n
    rng = np.random.default_rng(0)
    for split, count in (("train", n_traj), ("valid", 2), ("test", 2)):
        a = rng.uniform(0.5, 1.5, (count, 1, 1))
        phi = rng.uniform(0, 2 * math.pi, (count, 1, 1))
        t = 0.1 * np.arange(n_steps)[None, :, None]
        u = a * np.sin(x[None, None] - 1.0 * t + phi) + 0.3 * a * np.cos(2 * (x[None, None] - 1.0 * t) + phi)
        path = root / "data" / split / "toy.hdf5"
        path.parent.mkdir(parents=True, exist_ok=True)
        from pdeforge.datasets import FieldSpec, Schema

        schema = Schema(dataset_name="toy", coords={"x": x}, time=0.1 * np.arange(n_steps), fields=(FieldSpec("u"),))
        w = TrajectoryWriter(path, schema, count)
        w.write_channels(torch.from_numpy(u[:, :, None]).float())
        w.close()


# ------------------------------------------------------------------------------------------- observations
def test_draw_observations_statistics_and_determinism():
    fields = (
        torch.randn(4000, 2, 64, dtype=torch.float64) * torch.tensor([1.0, 3.0], dtype=torch.float64)[None, :, None]
    )
    cfg = ObservationConfig(alpha=0.3, mask="random", fraction=0.25, noise=0.1)
    a = draw_observations(fields, cfg, np.random.default_rng([0, 7]))
    b = draw_observations(fields, cfg, np.random.default_rng([0, 7]))
    for k in a:
        assert torch.equal(a[k], b[k])
    c = draw_observations(fields, cfg, np.random.default_rng([1, 7]))
    assert not torch.equal(a["arrived"], c["arrived"])
    assert not a["arrived"][0]
    assert abs(a["arrived"].double().mean().item() - 0.3) < 0.03  # Bernoulli(0.3) over 4000 steps: std 0.007
    assert int(a["mask"].sum()) == 16  # 25% of 64 points
    # noise: observed minus truth at observed points and arrived steps, std relative to each channel's rms
    sel = a["arrived"][:, None, None] & a["mask"].bool()[None]
    for ch, rms in ((0, 1.0), (1, 3.0)):
        d = (a["observations"] - fields)[:, ch][sel[:, 0]]
        assert abs(d.std().item() / (0.1 * rms) - 1) < 0.05
    # nothing where not observed or not arrived
    assert float(a["observations"][~a["arrived"]].abs().max()) == 0.0
    assert float((a["observations"] * (1 - a["mask"])).abs().max()) == 0.0


def test_regular_mask_spacing_2d():
    cfg = ObservationConfig(alpha=1.0, mask="regular", fraction=0.25)
    m = draw_observations(torch.ones(3, 1, 8, 8), cfg, np.random.default_rng(0))["mask"][0]
    assert int(m.sum()) == 16  # stride 2 on each axis
    rows, cols = torch.nonzero(m.sum(1)).flatten(), torch.nonzero(m.sum(0)).flatten()
    assert torch.equal(torch.diff(rows), torch.full((3,), 2)) and torch.equal(torch.diff(cols), torch.full((3,), 2))


def test_observation_view_deterministic_and_bad_input(tmp_path):
    _write_toy(tmp_path)
    ds = TrajectoryDataset(tmp_path, 1, 1, split="train")
    v1 = ObservationView(ds, alpha=0.5, mask="random", fraction=0.5, noise=0.05, seed=3)
    v2 = ObservationView(ds, alpha=0.5, mask="random", fraction=0.5, noise=0.05, seed=3)
    s1, s2, s1b = v1[2], v2[2], v1[2]
    for k in s1:
        assert torch.equal(s1[k], s2[k]) and torch.equal(s1[k], s1b[k])
    assert torch.equal(s1["fields"], ds.read(2, range(12))["fields"])  # truth straight from the read path
    assert not torch.equal(v1[1]["mask"], s1["mask"])  # each trajectory its own sensors
    assert not torch.equal(
        ObservationView(ds, alpha=0.5, fraction=0.5, noise=0.05, seed=4)[2]["observations"], s1["observations"]
    )
    with pytest.raises(ValueError, match="alpha"):
        ObservationView(ds, alpha=1.5)
    with pytest.raises(ValueError, match="mask should be one of"):
        ObservationView(ds, mask="grid")


# ------------------------------------------------------------------------------------------------- model
def test_alpha_zero_is_exactly_the_prediction_step():
    model = _model()
    z0 = torch.randn(3, 1, 32, dtype=torch.float64)
    obs = torch.randn(3, 5, 1, 32, dtype=torch.float64)
    never = torch.zeros(3, 5, dtype=torch.bool)
    out = model(z0, 5, obs, torch.ones(1, 1, 32, dtype=torch.float64), never)
    with torch.no_grad():
        z, ref = z0, []
        for _ in range(5):
            z = z + model.predictor.net(z)  # the residual FNO step, by hand
            ref.append(z)
    ref = torch.stack(ref, 1)
    assert torch.equal(out["analysis"], out["forecast"])
    assert torch.equal(out["analysis"], ref)
    assert torch.equal(model(z0, 5)["analysis"], out["analysis"])  # no observations at all: same numbers
    # the gain must matter when measurements do arrive (else the test above proves nothing)
    some = never.clone()
    some[:, 2] = True
    with torch.no_grad():
        assimilated = model(z0, 5, obs, torch.ones(1, 1, 32, dtype=torch.float64), some)["analysis"]
    assert torch.equal(assimilated[:, :2], ref[:, :2]) and float((assimilated[:, 2:] - ref[:, 2:]).abs().max()) > 1e-3


def test_identity_gain_full_noiseless_observation_gives_measurement(tmp_path):
    model = _model(gain="identity", ndim=2, n=16)
    fields = torch.randn(6, 1, 16, 16, dtype=torch.float64)
    d = draw_observations(
        fields, ObservationConfig(alpha=1.0, mask="random", fraction=1.0, noise=0.0), np.random.default_rng(0)
    )
    assert torch.equal(d["observations"][1:], fields[1:])
    out = model(fields[:1], 5, d["observations"][None, 1:], d["mask"][None], d["arrived"][None, 1:])
    assert torch.allclose(out["analysis"][0], fields[1:], rtol=0, atol=1e-12)
    assert float((out["forecast"][0].detach() - fields[1:]).abs().max()) > 1e-2  # the prediction alone is not the truth
    # sparse: only the observed points take the measurement, the others keep the forecast
    m = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    m[..., ::2, ::2] = 1
    f, a = model.step(fields[:1], fields[1:2], m, torch.tensor([True]))
    assert torch.allclose(a * m, fields[1:2] * m, atol=1e-12) and torch.equal(a * (1 - m), f * (1 - m))


def test_gated_gain_and_learned_measurement_shapes_values():
    model = _model(measurement="learned", channels=2)
    assert isinstance(model.gain, GatedGain)
    z = torch.randn(2, 2, 32, dtype=torch.float64)
    assert torch.equal(model.measurement(z), z)  # learned E starts at the identity
    corr = model.gain(z, torch.zeros_like(z), torch.ones(1, 1, 32, dtype=torch.float64))
    assert corr.shape == z.shape and torch.isfinite(corr).all()
    assert isinstance(_model(gain="identity").gain, IdentityGain)
    with pytest.raises(ValueError, match=r"expected \(B, C=1, \*space\)"):
        _model()(torch.randn(32, dtype=torch.float64), 2)


def test_spread_innovation_interpolates_smooth_fields():
    n = 128
    x = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    d = (torch.sin(x) + 0.5 * torch.cos(2 * x))[None, None]
    full = torch.ones(1, 1, n, dtype=torch.float64)
    # full mask: a Gaussian smoothing over one grid point, exp(-(2 pi k / n)^2 / 2) per mode k
    smooth = torch.sin(x) * math.exp(-0.5 * (2 * math.pi / n) ** 2) + 0.5 * torch.cos(2 * x) * math.exp(
        -0.5 * (4 * math.pi / n) ** 2
    )
    assert torch.allclose(spread_innovation(d, full, 1.0), smooth[None, None], atol=1e-12)
    m = torch.zeros(1, 1, n, dtype=torch.float64)
    m[..., 1::4] = 1  # sensors every 4th point
    out = spread_innovation(d * m, m, 1.0)
    err = float((out - d).norm() / d.norm())
    assert err < 0.05, err  # a smooth field is recovered between sensors
    assert float((d * m - d).norm() / d.norm()) > 0.8  # the zero-filled innovation is far from it


def test_gradients_flow_through_the_unrolled_recursion():
    model = _model(measurement="learned")
    z0 = torch.randn(2, 1, 32, dtype=torch.float64)
    obs = torch.randn(2, 4, 1, 32, dtype=torch.float64)
    arrived = torch.tensor([[False, True, False, False], [True, False, False, True]])
    out = model(z0, 4, obs, torch.ones(1, 1, 32, dtype=torch.float64), arrived)
    out["analysis"][:, -1].pow(2).sum().backward()  # loss on the last step only
    for name, mod in {"predictor": model.predictor, "gain": model.gain, "measurement": model.measurement}.items():
        g = sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)
        assert g > 0, f"no gradient reaches the {name} through the recursion"
    # every predictor block is used (the_well's FNO wrapper once dropped its blocks' output)
    for bname, block in model.predictor.blocks().items():
        assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in block.parameters()), bname


# ------------------------------------------------------------------------------------------- the family
CONFIG = REPO / "configs" / "noda_ks.yaml"
TINY_MODEL = [
    "--model.predictor",
    "{n_modes: 6, hidden_channels: 8, n_layers: 2}",
    "--model.gain.n_modes",
    "6",
    "--model.gain.hidden_channels",
    "8",
]


def _toy_overrides(root, run_dir, *extra: str) -> list[str]:
    """configs/noda_ks.yaml made tiny on the toy data at ``root``: 4-frame windows, horizon 6, no progress bar."""
    return [
        "--data.root",
        str(root),
        "--data.preset",
        "",
        "--run.run_dir",
        str(run_dir),
        "--run.progress",
        "false",
        "--run.device",
        "cpu",
        "--window.spinup",
        "1",
        "--window.unroll",
        "3",
        "--optim.batch_size",
        "4",
        "--eval.alphas",
        "[0.0, 1.0]",
        "--eval.horizon",
        "6",
        "--observations.fraction",
        "0.5",
        *TINY_MODEL,
        *extra,
    ]


def _weights(run_dir) -> dict:
    from pdeforge.checkpoint import load_weights

    return load_weights(run_dir / "model.safetensors")


def test_the_shipped_config_runs_tiny_and_its_run_folder_evaluates_and_loads(tmp_path, monkeypatch):
    """configs/noda_ks.yaml as shipped (the ks_1d preset, made small), 2 steps: evaluate_run recomputes metrics.json
    exactly; load_run rebuilds the NODA; the plots are written."""
    from pdeforge.families import evaluate_run, load_run, train

    monkeypatch.setenv("PDEFORGE_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    metrics = train(
        CONFIG,
        [
            "--run.max_steps",
            "2",
            "--run.run_dir",
            str(run_dir),
            "--run.progress",
            "false",
            "--data.preset_options",
            "{n_trajectories: 6, resolution: 32, n_snapshots: 12, warmup: 1.0}",
            "--window.spinup",
            "1",
            "--window.unroll",
            "3",
            "--optim.batch_size",
            "4",
            "--eval.horizon",
            "5",
            *TINY_MODEL,
        ],
    )
    assert metrics["steps"] == 2
    saved = json.loads((run_dir / "metrics.json").read_text())
    again = evaluate_run(run_dir)
    assert again["valid"] == saved["valid"] and again["test"] == saved["test"]
    assert set(saved["test"]["table"]) == {"noda_alpha_0", "noda_alpha_0.1", "noda_alpha_0.25", "noda_alpha_0.5"}
    assert saved["test"]["horizon_steps"] == 5
    loaded = load_run(run_dir)
    assert isinstance(loaded.model, NODA) and loaded.config.window.unroll == 3
    assert tuple(loaded.metadata.resolution) == (32,)
    for name in ("loss.png", "error_vs_time.png", "snapshot.png", "config.yaml", "train_log.jsonl"):
        assert (run_dir / name).is_file(), name


def test_training_learns_and_a_baseline_run_is_rolled_out_beside_it(tmp_path):
    """60 steps on advected waves: the forecast beats the one-step-trained model's, measurements help; that
    one-step model, named as the baseline run, is rolled out on the same trajectories and scores there what its own
    run scored without measurements. (The logged loss of one batch is no measure of progress here: each window draws
    its own arrival rate and perturbed start, and the batch losses spread over a factor 10.)"""
    from pdeforge.families import load_run, train

    _write_toy(tmp_path / "data", n_traj=8, n_steps=12)
    common = ["--optim.steps", "60", "--optim.lr", "3e-3", "--observations.noise", "0.0", "--eval.horizon", "8"]
    base = train(
        CONFIG,
        _toy_overrides(tmp_path / "data", tmp_path / "base", *common, "--window.alpha_max", "0", "--optim.steps", "1"),
    )
    metrics = train(
        CONFIG,
        _toy_overrides(tmp_path / "data", tmp_path / "run", *common, "--eval.baseline_run", str(tmp_path / "base")),
    )
    t = metrics["test"]["table"]
    assert set(t) == {"noda_alpha_0", "noda_alpha_1", "baseline"} and metrics["test"]["horizon_steps"] == 8
    assert t["noda_alpha_0"]["long_horizon_rel_l2"] < 0.75 * t["baseline"]["long_horizon_rel_l2"]
    assert t["noda_alpha_1"]["long_horizon_rel_l2"] < 0.5 * t["noda_alpha_0"]["long_horizon_rel_l2"]
    np.testing.assert_allclose(metrics["test"]["curves"]["baseline"], base["test"]["curves"]["noda_alpha_0"], rtol=1e-6)
    # the loaded model rolls out to the same numbers
    from pdeforge.operators.noda import rollout_errors

    model = load_run(tmp_path / "run").model
    ds = TrajectoryDataset(tmp_path / "data", 1, 1, split="test")
    err = rollout_errors(model, ObservationView(ds, alpha=0.0, mask="regular", fraction=0.5, seed=12345), 8)
    assert abs(float(err[-2:].mean()) - t["noda_alpha_0"]["long_horizon_rel_l2"]) < 1e-6
    with pytest.raises(ValueError, match=r"eval.baseline_run .*nowhere: not a run folder"):
        train(
            CONFIG,
            _toy_overrides(
                tmp_path / "data",
                tmp_path / "r2",
                *common,
                "--optim.steps",
                "1",
                "--eval.baseline_run",
                str(tmp_path / "nowhere"),
            ),
        )


def test_a_crash_and_resume_equal_an_uninterrupted_run(tmp_path, crash_after_checkpoint):
    """Cut right after the checkpoint at step 6 of 10 and resumed: same weights (bitwise), log and metrics."""
    from pdeforge.families import train

    _write_toy(tmp_path / "data", n_traj=6, n_steps=12)
    extra = [
        "--optim.steps",
        "10",
        "--run.checkpoint_every",
        "3",
        "--model.measurement",
        "learned",
        "--observations.mask",
        "random",
    ]
    whole = train(CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "whole", *extra))
    calls = crash_after_checkpoint(
        lambda: train(CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "cut", *extra)), nth=2
    )
    assert calls == [3, 6]
    again = train(
        CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "cut", *extra, "--run.resume", str(tmp_path / "cut"))
    )
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in whole.items() if k != "train_seconds"
    }
    losses = [
        [
            r["loss"]
            for r in (json.loads(line) for line in (tmp_path / d / "train_log.jsonl").read_text().splitlines())
            if "loss" in r
        ]
        for d in ("whole", "cut")
    ]
    assert losses[0] == losses[1]


def test_a_nan_loss_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from pdeforge.checkpoint import load_state
    from pdeforge.families import train
    from pdeforge.operators.noda import _family
    from pdeforge.training import NonFiniteLossError

    _write_toy(tmp_path / "data", n_traj=6, n_steps=12)
    rel_sq, calls = _family._rel_sq, []

    def poisoned(pred, target):
        calls.append(1)
        value = rel_sq(pred, target)
        return value * float("nan") if len(calls) > 2 * 4 else value  # two terms per step: NaN from step 5 (0-based 4)

    monkeypatch.setattr(_family, "_rel_sq", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"noda: the loss is nan at step 4 \(epoch 0, .*state.pt"):
        train(
            CONFIG,
            _toy_overrides(tmp_path / "data", tmp_path / "run", "--optim.steps", "10", "--run.checkpoint_every", "3"),
        )
    state = load_state(tmp_path / "run" / "checkpoint" / "state.pt")
    assert state["counters"]["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bad_options_are_one_line_naming_the_option(tmp_path, monkeypatch, refused_devices):
    import re

    from pdeforge.families import train
    from pdeforge.training import ConfigError

    _write_toy(tmp_path / "data", n_traj=6, n_steps=12)
    bad = [
        (["--window.alpha_max", "1.5"], r"noda: window.alpha_max 1.5: expected a probability in \[0, 1\]"),
        (["--eval.alphas", "[0.5, 2]"], r"noda: eval.alphas \[0.5, 2\]: expected a non-empty list"),
        (["--model.predictor.width", "3"], r"model.predictor: unknown option\(s\) \['width'\]"),
        (["--window.unroll", "20"], r"noda: window.spinup \+ window.unroll \+ 1 = 22 frames .*do not fit"),
        (["--window.unrol", "2"], r"--window.unrol: unknown option; did you mean --window.unroll\?"),
    ]
    for extra, message in bad:
        with pytest.raises((ValueError, ConfigError), match=message):
            train(CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "run", *extra))
    refused_devices(
        re.escape(str(CONFIG)) + ": run.device",
        lambda device: train(CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "dev", "--run.device", device)),
        tmp_path / "dev",
    )


DDP_SCRIPT = """import sys
from pdeforge.families import train
train(sys.argv[1], sys.argv[2:])
"""


def test_ddp_two_processes_equal_one_with_the_combined_batch(tmp_path):
    """2 gloo processes of 4 windows each give the weights of 1 process of 8 (misfit on, learned E, clipping on)."""
    import os
    import subprocess
    import sys

    from pdeforge.checkpoint import load_state
    from pdeforge.families import train

    _write_toy(tmp_path / "data", n_traj=6, n_steps=12)
    script = tmp_path / "train_noda.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = [
        "--optim.steps",
        "4",
        "--model.measurement",
        "learned",
        "--observations.mask",
        "random",
        "--observations.noise",
        "0.1",
    ]
    one = _toy_overrides(tmp_path / "data", tmp_path / "one", *common, "--optim.batch_size", "8")
    two = _toy_overrides(tmp_path / "data", tmp_path / "two", *common, "--optim.batch_size", "4")
    train(CONFIG, one)  # the reference, in this process
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(CONFIG),
            *two,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (load_state(tmp_path / n / "checkpoint" / "state.pt")["model"] for n in ("one", "two"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-7) for k in a)
    start = load_state(tmp_path / "one" / "checkpoint" / "state.pt")
    assert start["counters"]["step"] == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_a_noda_run_on_cuda_agrees_with_the_cpu(tmp_path, monkeypatch):
    """6 steps on cuda give finite metrics within 1e-3 (relative) of the CPU's (TF32 off for cuDNN: what is left is
    float32 rounding in another order); the saved weights load on the CPU and roll out there within 1e-4 of cuda."""
    from pdeforge.families import load_run, train
    from pdeforge.operators.noda import rollout_errors

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    _write_toy(tmp_path / "data", n_traj=6, n_steps=12)
    extra = [
        "--optim.steps",
        "6",
        "--model.measurement",
        "learned",
        "--observations.mask",
        "random",
        "--observations.noise",
        "0.1",
        "--eval.alphas",
        "[0.0, 0.5, 1.0]",
    ]
    cpu = train(CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "cpu", *extra))
    gpu = train(CONFIG, _toy_overrides(tmp_path / "data", tmp_path / "gpu", *extra, "--run.device", "cuda"))
    for name, row in gpu["test"]["table"].items():
        assert all(math.isfinite(v) for v in row.values()), name
        assert row == pytest.approx(cpu["test"]["table"][name], rel=1e-3), name
    model = load_run(tmp_path / "gpu").model
    assert next(model.parameters()).device.type == "cpu"
    ds = TrajectoryDataset(tmp_path / "data", 1, 1, split="test")
    view = ObservationView(ds, config=ObservationConfig(alpha=0.5, mask="random", fraction=0.5, noise=0.1, seed=12345))
    err = rollout_errors(model, view, 6)
    np.testing.assert_allclose(err.numpy(), gpu["test"]["curves"]["noda_alpha_0.5"], rtol=1e-4)
