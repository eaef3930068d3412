"""NODA (semilinear neural operator with data assimilation) and the observation view."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pdeforge.datasets import DatasetMetadata, TrajectoryDataset, TrajectoryWriter
from pdeforge.datasets import ObservationConfig, ObservationView, draw_observations
from pdeforge.operators import FNOConfig
from pdeforge.operators.noda import NODA, GainConfig, GatedGain, IdentityGain, NODAConfig, build_noda, load, run, spread_innovation


def _meta(n: int = 32, ndim: int = 1, channels: int = 1) -> DatasetMetadata:
    dims = ("x", "y")[:ndim]
    return DatasetMetadata(dataset_name="toy", field_names=tuple(f"u{c}" for c in range(channels)), constant_field_names=(),
                           scalar_names=(), spatial_dims=dims, resolution=(n,) * ndim, domain_lengths=(2 * math.pi,) * ndim,
                           dt=0.1, boundary_conditions=("periodic",) * ndim)


def _model(gain: str = "gated", measurement: str = "identity", **meta) -> NODA:
    torch.manual_seed(0)
    cfg = NODAConfig(predictor=FNOConfig(n_modes=6, hidden_channels=8, n_layers=2), gain=GainConfig(kind=gain, n_modes=6, hidden_channels=8),
                     measurement=measurement)
    return build_noda(cfg, _meta(**meta)).double()


def _write_toy(root, n_traj: int = 6, n_steps: int = 12, n: int = 32) -> None:
    """Advected sine waves of random phase/amplitude: u(x, t) = a sin(k (x - c t) + phi), train/test splits."""
    x = 2 * math.pi * np.arange(n) / n
    rng = np.random.default_rng(0)
    for split, count in (("train", n_traj), ("test", 2)):
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
    fields = torch.randn(4000, 2, 64, dtype=torch.float64) * torch.tensor([1.0, 3.0], dtype=torch.float64)[None, :, None]
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
    assert not torch.equal(ObservationView(ds, alpha=0.5, fraction=0.5, noise=0.05, seed=4)[2]["observations"], s1["observations"])
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
    d = draw_observations(fields, ObservationConfig(alpha=1.0, mask="random", fraction=1.0, noise=0.0), np.random.default_rng(0))
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
    smooth = torch.sin(x) * math.exp(-0.5 * (2 * math.pi / n) ** 2) + 0.5 * torch.cos(2 * x) * math.exp(-0.5 * (4 * math.pi / n) ** 2)
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


def test_run_writes_folder_and_learns(tmp_path):
    _write_toy(tmp_path / "data_root", n_traj=8, n_steps=12)
    spec = {"family": "noda", "data": str(tmp_path / "data_root"), "seed": 0,
            "model": {"n_modes": 6, "hidden_channels": 8, "n_layers": 2}, "gain": {"n_modes": 6, "hidden_channels": 8},
            "observations": {"mask": "regular", "fraction": 0.5, "noise": 0.0},
            "train": {"steps": 60, "batch_size": 8, "lr": 3e-3, "warmup": 1, "unroll": 3},
            "baseline": {"steps": 60, "batch_size": 8, "lr": 3e-3}, "eval": {"alphas": [0.0, 1.0], "horizon": 8}}
    metrics = run(spec, tmp_path / "run")
    for f in ("config.yaml", "metrics.json", "model.safetensors", "model.json", "train_log.jsonl", "error_vs_time.png", "snapshot.png",
              "baseline.safetensors"):
        assert (tmp_path / "run" / f).is_file(), f
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    noda_loss = [r["loss"] for r in log if r["model"] == "noda"]
    assert noda_loss[-1] < 0.5 * noda_loss[0]
    t = metrics["table"]
    assert set(t) == {"noda_alpha_0", "noda_alpha_1", "fno"} and metrics["horizon_steps"] == 8
    assert t["noda_alpha_1"]["long_horizon_rel_l2"] < t["noda_alpha_0"]["long_horizon_rel_l2"]
    # reloading gives the same numbers; a device that is not here is refused, naming it
    with pytest.raises(ValueError, match=r"noda.load: device 'gpu': expected one of 'cpu', 'cuda', 'cuda:N', 'auto'"):
        load(tmp_path / "run", device="gpu")
    model = load(tmp_path / "run", device="auto" if not torch.cuda.is_available() else "cpu")
    assert next(model.parameters()).device.type == "cpu"
    ds = TrajectoryDataset(tmp_path / "data_root", 1, 1, split="test")
    from pdeforge.operators.noda import rollout_errors

    err, _ = rollout_errors(model, ObservationView(ds, alpha=0.0, mask="regular", fraction=0.5, seed=12345), 8)
    assert abs(float(err[-2:].mean()) - t["noda_alpha_0"]["long_horizon_rel_l2"]) < 1e-5


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, crash_after_checkpoint):
    """Killed after the checkpoint at NODA step 6 of 10, resumed, killed again at baseline step 3 of 10 and resumed:
    the weights of both models, the log and the metrics are those of an uninterrupted run."""
    import pdeforge.operators.noda as noda
    from pdeforge.checkpoint import load_weights

    _write_toy(tmp_path / "data_root", n_traj=6, n_steps=12)
    spec = {"family": "noda", "data": str(tmp_path / "data_root"), "seed": 0,
            "model": {"n_modes": 6, "hidden_channels": 8, "n_layers": 2}, "gain": {"n_modes": 6, "hidden_channels": 8},
            "observations": {"mask": "random", "fraction": 0.5, "noise": 0.1},
            "train": {"steps": 10, "batch_size": 4, "lr": 3e-3, "warmup": 1, "unroll": 3},
            "baseline": {"steps": 10, "batch_size": 4, "lr": 3e-3}, "eval": {"alphas": [0.0, 1.0], "horizon": 6},
            "checkpoint_every": 3}
    whole = run(spec, tmp_path / "whole")

    pending = crash_after_checkpoint(noda, {"phase": "noda", "step": 6}, {"phase": "fno", "step": 3})
    with pytest.raises(crash_after_checkpoint.crash):
        run(spec, tmp_path / "cut")
    with pytest.raises(ValueError, match=r"started with another configuration \(seed 0 there, 1 now\)"):
        run({**spec, "resume": True, "seed": 1}, tmp_path / "cut")
    with pytest.raises(FileNotFoundError, match=r"never.checkpoint.state.pt not found.*drop resume to start it"):
        run({**spec, "resume": True}, tmp_path / "never")
    with pytest.raises(crash_after_checkpoint.crash):
        run({**spec, "resume": True}, tmp_path / "cut")
    assert not pending
    again = run({**spec, "resume": True, "device": "cpu"}, tmp_path / "cut")  # device may change on resume
    for name in ("model.safetensors", "baseline.safetensors"):
        a, b = (load_weights(tmp_path / d / name) for d in ("whole", "cut"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "whole" / "train_log.jsonl").read_text() == (tmp_path / "cut" / "train_log.jsonl").read_text()
    assert again["table"] == whole["table"] and again["curves"] == whole["curves"]


def _device_spec(root, **train) -> dict:
    """A tiny NODA spec on the toy data at ``root``: learned measurement, noisy random sensors, both trainings."""
    return {"family": "noda", "data": str(root), "seed": 0, "model": {"n_modes": 6, "hidden_channels": 8, "n_layers": 2},
            "gain": {"n_modes": 6, "hidden_channels": 8}, "measurement": "learned",
            "observations": {"mask": "random", "fraction": 0.5, "noise": 0.1},
            "train": {"steps": 6, "batch_size": 4, "lr": 3e-3, "warmup": 1, "unroll": 3, **train},
            "baseline": {"steps": 6, "batch_size": 4, "lr": 3e-3, **train}, "eval": {"alphas": [0.0, 0.5, 1.0], "horizon": 6},
            "checkpoint_every": 2}


def _outputs(run_dir) -> dict:
    """What a run writes that does not depend on the clock or the spec's wording: weights, plots, metrics, log."""
    out = {name: (run_dir / name).read_bytes() for name in ("model.safetensors", "baseline.safetensors", "error_vs_time.png",
                                                            "snapshot.png", "train_log.jsonl")}
    out["metrics"] = {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if not k.endswith("_train_s")}
    return out


def test_device_cpu_and_auto_give_the_bytes_of_a_spec_without_device(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _write_toy(tmp_path / "data_root", n_traj=6, n_steps=12)
    spec = _device_spec(tmp_path / "data_root")
    run(spec, tmp_path / "none")
    for device in ("cpu", "auto"):
        run({**spec, "device": device}, tmp_path / device)
        assert _outputs(tmp_path / device) == _outputs(tmp_path / "none"), device


def test_a_device_that_is_not_here_is_refused_before_anything_is_written(tmp_path, monkeypatch, refused_devices):
    from pdeforge.operators.noda import check_spec

    spec = _device_spec(tmp_path / "no_data_needed")
    refused_devices("noda spec", lambda device: run({**spec, "device": device}, tmp_path / "run"), tmp_path / "run")
    with pytest.raises(ValueError, match=r"^noda spec: device 1: expected a string \(the default is 'cpu'\)$"):
        check_spec({**spec, "device": 1})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_spec({**spec, "device": "cuda:0"})
    with pytest.raises(ValueError, match=r"^noda spec: device 'cuda:1': expected cuda:0 .. cuda:0, the CUDA devices here$"):
        check_spec({**spec, "device": "cuda:1"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_a_noda_run_on_cuda_agrees_with_the_cpu(tmp_path, monkeypatch, crash_after_checkpoint, devices_in):
    """6 steps of each training on cuda give finite metrics within 1e-3 (relative) of the CPU's. TF32 is switched off
    here for cuDNN's convolutions (on by default; its 10-bit mantissa would be all the comparison measured; cuBLAS
    matmuls have it off by default): what is left is float32 rounding in another order (cuFFT, cuBLAS), ~1e-7..1e-6.
    Measured on the CPU, noise of 1e-6 (relative, or 1e-6 max|g| added) on every Adam gradient moves these metrics by
    < 4e-7, so 1e-3 leaves a wide margin, while a batch, a measurement or a model left on the wrong footing, or
    measurements that do not arrive (alpha 1 scores a third of alpha 0 here), move them by far more. The saved
    weights load on the CPU and roll out there within 1e-4 of cuda (same weights: the rollout alone); the checkpoint
    holds CPU tensors; a run cut on cuda resumes on the CPU."""
    from pdeforge.checkpoint import load_weights
    from pdeforge.operators import noda
    from pdeforge.operators.noda import load_baseline, rollout_errors

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuBLAS matmuls: TF32 off by default
    _write_toy(tmp_path / "data_root", n_traj=6, n_steps=12)
    spec = _device_spec(tmp_path / "data_root", lr=1e-3)
    cpu = run({**spec, "device": "cpu"}, tmp_path / "cpu")
    gpu = run({**spec, "device": "cuda"}, tmp_path / "gpu")
    for name, row in gpu["table"].items():
        assert all(math.isfinite(v) for v in row.values()), name
        assert row == pytest.approx(cpu["table"][name], rel=1e-3), name
    assert cpu["table"]["noda_alpha_1"]["final_rel_l2"] < 0.5 * cpu["table"]["noda_alpha_0"]["final_rel_l2"]  # it assimilates

    # the weights load on the CPU and roll out there as on cuda
    assert all(t.device.type == "cpu" for t in load_weights(tmp_path / "gpu" / "model.safetensors").values())
    model = load(tmp_path / "gpu")
    assert next(model.parameters()).device.type == "cpu" and next(load_baseline(tmp_path / "gpu").parameters()).device.type == "cpu"
    assert next(load(tmp_path / "gpu", device="cuda").parameters()).is_cuda
    assert next(load_baseline(tmp_path / "gpu", device="cuda").parameters()).is_cuda
    ds = TrajectoryDataset(tmp_path / "data_root", 1, 1, split="test")
    for alpha in (0.0, 0.5, 1.0):
        view = ObservationView(ds, config=ObservationConfig(alpha=alpha, mask="random", fraction=0.5, noise=0.1, seed=12345))
        err, _ = rollout_errors(model, view, 6)
        np.testing.assert_allclose(err.numpy(), gpu["curves"][f"noda_alpha_{alpha:g}"], rtol=1e-4)
        on_cuda, first_cuda = rollout_errors(model.to("cuda"), view, 6)  # on the model's device, returned on the CPU
        assert on_cuda.device.type == "cpu" and all(v.device.type == "cpu" for v in first_cuda.values())
        torch.testing.assert_close(on_cuda, err, rtol=1e-4, atol=0)
        model.cpu()

    # cut after the checkpoint at NODA step 4 on cuda: its state holds CPU tensors and finishes on the CPU
    pending = crash_after_checkpoint(noda, {"phase": "noda", "step": 4})
    with pytest.raises(crash_after_checkpoint.crash):
        run({**spec, "device": "cuda"}, tmp_path / "cut")
    assert not pending
    state = torch.load(tmp_path / "cut" / "checkpoint" / "state.pt", weights_only=True)
    assert devices_in(state) == {"cpu"}
    resumed = run({**spec, "device": "cpu", "resume": True}, tmp_path / "cut")
    for name, row in resumed["table"].items():
        assert row == pytest.approx(cpu["table"][name], rel=1e-3), name
