"""scOT training: the all-pairs view (pairs, lead times, padding and masking, mixtures), the masked loss, and a tiny
pretrain -> save_pretrained -> fine-tune round trip through train.py's family dispatch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter, write_stats
from pdeforge.datasets import AllPairsDataset, AllPairsMixture, channel_union
from pdeforge.operators.scot import ScOT, read_state_dict, scot_loss, training
from pdeforge.operators.scot._train_data import channel_groups, masked_scot_loss, selection
from pdeforge.operators.scot.training import ScOTRunConfig, build_model


def write_root(root: Path, fields: tuple[FieldSpec, ...], make, n_t: int = 7, n: int = 16,
               counts=(("train", 6), ("valid", 2), ("test", 2))) -> Path:
    """A dataset root whose trajectory b of a split has values make(b, t (T,), n_channels) -> (T, C, n, n)."""
    x = 2 * math.pi * np.arange(n) / n
    schema = Schema("synthetic", coords={"x": x, "y": x}, time=0.1 * np.arange(n_t), fields=fields,
                    boundary_conditions="periodic")
    n_ch = sum(2**f.order for f in fields)
    offset = 0
    for split, count in counts:
        with TrajectoryWriter(root / "data" / split / f"{split}.hdf5", schema, count) as w:
            w.write_channels(np.stack([make(offset + b, np.arange(n_t), n_ch) for b in range(count)]).astype(np.float32))
        offset += count
    write_stats(root)
    return root


def labelled(b: int, t: np.ndarray, n_ch: int) -> np.ndarray:
    """Constant fields carrying their labels: 100 trajectory + time index + channel / 4."""
    vals = 100.0 * b + t[:, None] + np.arange(n_ch)[None, :] / 4
    return np.broadcast_to(vals[:, :, None, None], (len(t), n_ch, 16, 16)).copy()


def waves(b: int, t: np.ndarray, n_ch: int) -> np.ndarray:
    """Advected, diffusing Fourier modes with per-trajectory amplitudes and phases (a linear evolution)."""
    rng = np.random.default_rng(b)
    x = 2 * math.pi * np.arange(16) / 16
    X, Y = np.meshgrid(x, x, indexing="ij")
    out = np.zeros((len(t), n_ch, 16, 16))
    for c in range(n_ch):
        for kx, ky in ((1, 0), (0, 1), (1, 1), (2, 1)):
            amp, phase = rng.normal(), rng.uniform(0, 2 * math.pi)
            for k, tk in enumerate(0.1 * t):
                out[k, c] += amp * math.exp(-0.2 * (kx**2 + ky**2) * tk) * np.cos(kx * (X - (1 + c) * tk) + ky * Y + phase)
    return out


@pytest.fixture(scope="module")
def labelled_ds(tmp_path_factory) -> TrajectoryDataset:
    root = write_root(tmp_path_factory.mktemp("lab"), (FieldSpec("u"), FieldSpec("velocity", order=1)), labelled)
    return TrajectoryDataset(root, split="train")


# -- the view -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("snapshots", [None, [0, 2, 4, 6], [1, 2, 5]])
def test_all_pairs_count_values_and_lead_times(labelled_ds, snapshots):
    view = AllPairsDataset(labelled_ds, snapshots)
    sel = list(range(7)) if snapshots is None else snapshots
    n = len(sel)
    assert len(view) == 6 * n * (n + 1) // 2  # sum over trajectories of n (n + 1) / 2
    span = 0.1 * (sel[-1] - sel[0])
    seen = set()
    for k in range(len(view)):
        s = view[k]
        traj, i, j = int(s["trajectory"]), int(s["input_index"]), int(s["output_index"])
        assert i <= j and i in sel and j in sel
        seen.add((traj, i, j))
        # fields are the stored snapshots: 100 b + t + c / 4 (b = trajectory, t = time index, c = channel)
        want_in = 100.0 * traj + i + torch.arange(3) / 4
        assert torch.allclose(s["input_fields"][:, 3, 5], want_in)
        assert torch.allclose(s["output_fields"][:, 0, 0], want_in + (j - i))
        assert s["lead_time"].item() == pytest.approx(0.1 * (j - i) / span, rel=1e-6)
        assert 0.0 <= s["lead_time"].item() <= 1.0 + 1e-7
        assert s["channel_mask"].tolist() == [True, True, True]
    assert seen == {(b, i, j) for b in range(6) for a, i in enumerate(sel) for j in sel[a:]}


def test_pairings_stride_and_span(labelled_ds):
    nxt = AllPairsDataset(labelled_ds, stride=3, pairing="next")  # snapshots 0, 3, 6
    assert nxt.snapshots.tolist() == [0, 3, 6] and len(nxt) == 6 * 2
    assert [(int(nxt[k]["input_index"]), int(nxt[k]["output_index"])) for k in range(2)] == [(0, 3), (3, 6)]
    assert nxt[1]["lead_time"].item() == pytest.approx(0.5)
    first = AllPairsDataset(labelled_ds, [0, 1, 4], pairing="from_first", span=0.6)
    assert [first[k]["lead_time"].item() for k in range(2)] == pytest.approx([1 / 6, 4 / 6], rel=1e-6)
    assert selection(26, 2, 6) == [0, 2, 4, 6, 8, 10]
    with pytest.raises(ValueError, match="increase"):
        AllPairsDataset(labelled_ds, [3, 1])
    with pytest.raises(ValueError, match="pairing"):
        AllPairsDataset(labelled_ds, pairing="every")


def test_channel_padding_masking_and_mixture(tmp_path, labelled_ds):
    other = TrajectoryDataset(write_root(tmp_path / "b", (FieldSpec("rho"), FieldSpec("u")), labelled), split="train")
    layout = channel_union([other.metadata, labelled_ds.metadata])
    assert layout == ("rho", "u", "velocity_x", "velocity_y")
    assert channel_groups(layout) == [0, 1, 2, 4]
    a = AllPairsDataset(labelled_ds, [0, 6], channels=layout)
    b = AllPairsDataset(other, [0, 3, 6], channels=layout)
    s = a[1]  # trajectory 0, pair (0, 6)
    assert s["channel_mask"].tolist() == [False, True, True, True]
    assert torch.all(s["input_fields"][0] == 0)  # rho padded with zeros
    assert torch.allclose(s["input_fields"][1:, 0, 0], torch.tensor([0.0, 0.25, 0.5]))  # u, velocity at their slots
    t = b[0]
    assert t["channel_mask"].tolist() == [True, True, False, False]
    assert torch.allclose(t["input_fields"][:, 0, 0], torch.tensor([0.0, 0.25, 0.0, 0.0]))
    mix = AllPairsMixture([a, b])
    assert len(mix) == 6 * 3 + 6 * 6
    assert int(mix[0]["dataset"]) == 0 and int(mix[18]["dataset"]) == 1
    assert torch.equal(mix[18]["input_fields"], b[0]["input_fields"])
    with pytest.raises(ValueError, match="lacks the dataset's channel"):
        AllPairsDataset(labelled_ds, channels=("rho", "u"))
    with pytest.raises(ValueError, match="channel layouts differ"):
        AllPairsMixture([AllPairsDataset(labelled_ds), b])


def test_masked_loss_matches_scot_loss_and_ignores_padded_channels():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    target = torch.randn(4, 4, 8, 8, generator=g, dtype=torch.float64)
    groups = [0, 1, 3, 4]
    full = torch.ones(4, 4, dtype=torch.bool)
    assert masked_scot_loss(pred, target, full, groups).item() == pytest.approx(scot_loss(pred, target, groups).item(), rel=1e-12)
    mask = full.clone()
    mask[:2, 3] = False  # samples 0, 1 lack the last channel (Poseidon's pressure of incompressible data)
    loss = masked_scot_loss(pred, target, mask, groups)
    changed = pred.clone()
    changed[:2, 3] += 1e3  # whatever the model predicts on a padded channel does not count
    assert masked_scot_loss(changed, target, mask, groups).item() == pytest.approx(loss.item(), rel=1e-12)
    last = (pred[2:, 3] - target[2:, 3]).abs().mean() / (target[2:, 3].abs().mean() + 1e-10)
    want = (scot_loss(pred[:, :3], target[:, :3], [0, 1, 3]) * 2 + last) / 3
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    mask[:, 3] = False  # a group masked in the whole batch is skipped
    assert masked_scot_loss(pred, target, mask, groups).item() == pytest.approx(
        scot_loss(pred[:, :3], target[:, :3], [0, 1, 3]).item(), rel=1e-12)


# -- pretrain -> save_pretrained -> fine-tune --------------------------------------------------------------------
@torch.no_grad()
def train_loss(model: ScOT, roots: list[Path], max_trajectories: int | None = None) -> float:
    """The masked relative L1 loss over every training pair (stride 2, 4 snapshots), in one batch."""
    views = [AllPairsDataset(TrajectoryDataset(r, split="train", normalization="zscore", max_trajectories=max_trajectories),
                             [0, 2, 4, 6]) for r in roots]
    samples = [s for v in views for s in (v[k] for k in range(len(v)))]
    batch = {k: torch.stack([s[k] for s in samples]) for k in ("input_fields", "output_fields", "lead_time", "channel_mask")}
    groups = channel_groups(views[0].channels)
    model.eval()
    return masked_scot_loss(model(batch["input_fields"], batch["lead_time"]), batch["output_fields"],
                            batch["channel_mask"], groups).item()


def test_pretrain_save_finetune_round_trip(tmp_path):
    from pdeforge.train import run_family

    pre_a = write_root(tmp_path / "pa", (FieldSpec("vorticity"),), waves)
    pre_b = write_root(tmp_path / "pb", (FieldSpec("vorticity"),), lambda b, t, c: waves(b + 50, t, c) * 0.5)
    new = write_root(tmp_path / "new", (FieldSpec("velocity", order=1),), lambda b, t, c: waves(b + 100, t, c))
    small = {"learn_residual": True, "depths": [1, 1], "num_heads": [1, 2], "skip_connections": [1, 0],
             "image_size": 16, "patch_size": 2, "window_size": 4}
    base = {"family": "scot", "stride": 2, "n_snapshots": 4, "batch_size": 8, "lr": 1e-2, "eval_every": 20,
            "model": small, "warmup": 0.0}
    cfg = tmp_path / "pre.yaml"
    cfg.write_text(yaml.safe_dump({**base, "data": [str(pre_a), str(pre_b)], "steps": 40}))
    pre_dir = tmp_path / "runs" / "pre"
    res = run_family([str(cfg), "--run_dir", str(pre_dir)])
    for name in ("config.json", "model.safetensors", "config.yaml", "model.json", "metrics.json", "train_log.jsonl"):
        assert (pre_dir / name).is_file(), name
    assert res["train_pairs"] == 2 * 6 * 10  # two datasets x 6 trajectories x 4 (4 + 1) / 2 pairs
    model = ScOT.from_pretrained(pre_dir)  # the run folder is a Hugging Face scOT folder
    assert model.config.num_channels == 1 and model.config.learn_residual
    torch.manual_seed(0)
    initial = ScOT(model.config)
    before, after = train_loss(initial, [pre_a, pre_b]), train_loss(model, [pre_a, pre_b])
    assert after < 0.8 * before, (before, after)

    # fine-tune on a 2-channel field: exactly the channel-dependent tensors are re-initialised
    spec = {**base, "data": [str(new)], "init_from": str(pre_dir), "max_train_trajectories": 4}
    run_cfg = ScOTRunConfig.from_spec(spec)
    fresh, reinit = build_model(run_cfg, 2, [0, 2])
    assert sorted(reinit) == ["embeddings.patch_embeddings.projection.weight", "patch_recovery.mixup.weight",
                              "patch_recovery.projection.bias", "patch_recovery.projection.weight"]
    stored = read_state_dict(pre_dir)
    own = fresh.state_dict()
    assert all(torch.equal(own[k], stored[k]) for k in own if k not in reinit)
    assert fresh.config.channel_slice_list_normalized_loss == (0, 2)

    cfg2 = tmp_path / "ft.yaml"
    cfg2.write_text(yaml.safe_dump({**spec, "steps": 40, "lr": 1e-3, "lr_embedding_recovery": 1e-2,
                                    "lr_time_embedding": 1e-2}))
    ft_dir = tmp_path / "runs" / "ft"
    out = run_family([str(cfg2), "--run_dir", str(ft_dir)])
    assert sorted(out["reinitialised"]) == sorted(reinit)
    assert out["train_trajectories"] == 4 and out["train_pairs"] == 4 * 10
    tuned = ScOT.from_pretrained(ft_dir)
    assert tuned.config.num_channels == 2
    before, after = train_loss(fresh, [new], 4), train_loss(tuned, [new], 4)
    assert after < 0.8 * before, (before, after)
    assert 0 < out["test_median_rel_l1"] < 100


def test_evaluation_with_an_identity_model(tmp_path):
    """A scOT whose recovery is zeroed and that learns the residual returns its input: the final-time error (direct
    and by rollout) and the lead-time errors are then the persistence errors, computed here independently."""
    from pdeforge.operators.scot import ScOTConfig, relative_l1
    from pdeforge.operators.scot._train_data import final_time_error, lead_time_errors

    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    ds = TrajectoryDataset(root, split="test", normalization="zscore")
    model = ScOT(ScOTConfig.tiny(num_channels=1, num_out_channels=1, image_size=16, learn_residual=True))
    with torch.no_grad():
        for p in model.patch_recovery.parameters():
            p.zero_()
    raw = TrajectoryDataset(root, split="test")
    frames = torch.stack([raw.read(t, list(range(7)))["fields"] for t in range(2)])  # (2, 7, 1, 16, 16) physical

    def persistence(k: int) -> float:
        return float(torch.quantile(relative_l1(frames[:, 0].double(), frames[:, k].double()), 0.5, interpolation="midpoint"))

    assert final_time_error(model, ds, [0, 2, 4, 6], ("vorticity",), "all") == pytest.approx(persistence(6), rel=1e-4)
    assert final_time_error(model, ds, [0, 2, 4, 6], ("vorticity",), "next") == pytest.approx(persistence(6), rel=1e-4)
    errs = lead_time_errors(model, ds, [1, 3, 6], 0.6, ("vorticity",))
    assert [lead for lead, _ in errs.values()] == pytest.approx([1 / 6, 0.5, 1.0], rel=1e-6)  # times stored in float32
    assert [e for _, e in errs.values()] == pytest.approx([persistence(1), persistence(3), persistence(6)], rel=1e-4)
    assert persistence(1) < persistence(3) < persistence(6)


def test_a_resumed_training_equals_an_uninterrupted_one(tmp_path, crash_after_checkpoint):
    """Killed after the checkpoint at step 10 of 14 (3 batches into the second epoch of 7 batches, between the
    validations at 8 and 12), ``resume: true`` finishes with the bytes, log and test error of an uninterrupted run;
    drop path makes the global RNG matter."""
    import pdeforge.operators.scot.training as training
    from pdeforge.checkpoint import load_weights

    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    small = {"depths": [1, 1], "num_heads": [1, 2], "skip_connections": [1, 0], "image_size": 16, "patch_size": 2,
             "window_size": 4, "drop_path_rate": 0.3}
    spec = {"data": [str(root)], "stride": 2, "n_snapshots": 4, "batch_size": 8, "lr": 1e-2, "eval_every": 4,
            "model": small, "warmup": 0.2, "steps": 14, "checkpoint_every": 2}  # 60 pairs: 7 batches an epoch
    whole = training.run(spec, tmp_path / "whole")

    pending = crash_after_checkpoint(training, {"step": 10})
    with pytest.raises(crash_after_checkpoint.crash):
        training.run(spec, tmp_path / "cut")
    assert not pending
    with pytest.raises(ValueError, match=r"started with another configuration \(lr 0.01 there, 0.02 now\)"):
        training.run({**spec, "resume": True, "lr": 2e-2}, tmp_path / "cut")
    with pytest.raises(FileNotFoundError, match=r"never.checkpoint.state.pt not found.*drop resume to start it"):
        training.run({**spec, "resume": True}, tmp_path / "never")
    again = training.run({**spec, "resume": True}, tmp_path / "cut")

    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [(tmp_path / d / "train_log.jsonl").read_text() for d in ("whole", "cut")]
    assert logs[0] == logs[1]
    valid = [json.loads(line) for line in logs[0].splitlines() if "valid_median_rel_l1" in line]
    assert [r["step"] for r in valid] == [4, 8, 12, 14]
    assert again["test_median_rel_l1"] == whole["test_median_rel_l1"]
    assert (again["valid_median_rel_l1"], again["best_step"]) == (whole["valid_median_rel_l1"], whole["best_step"])
    assert again["seconds"] > 0


# -- devices ------------------------------------------------------------------------------------------------------
SMALL = {"depths": [1, 1], "num_heads": [1, 2], "skip_connections": [1, 0], "image_size": 16, "patch_size": 2,
         "window_size": 4}


def tiny_spec(root: Path, **changes) -> dict:
    """A tiny run on ``root``: 60 pairs (7 batches an epoch), validation every 4 steps, a state every 2."""
    return {"data": [str(root)], "stride": 2, "n_snapshots": 4, "batch_size": 8, "lr": 1e-2, "eval_every": 4,
            "model": SMALL, "warmup": 0.2, "steps": 8, "checkpoint_every": 2, **changes}


def test_a_device_that_is_not_here_is_refused_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^scot: device 'gpu': expected one of 'cpu', 'cuda', 'cuda:N', 'auto'$"):
        ScOTRunConfig.from_spec({"device": "gpu"})
    with pytest.raises(ValueError, match=r"^scot: device 0: expected a string"):
        ScOTRunConfig.from_spec({"device": 0})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=rf"^scot: device '{device}': expected 'cpu' or 'auto': CUDA is not "
                                             r"available here \(torch.cuda.is_available\(\) is False\)$"):
            ScOTRunConfig.from_spec({"device": device})
    assert ScOTRunConfig.from_spec({"device": "auto"}).device == "auto"
    # refused before a named source is generated or the run folder is made
    monkeypatch.setenv("PDEFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="device 'cuda'"):
        training.run({"data": ["ns_grf"], "device": "cuda"}, tmp_path / "run")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ScOTRunConfig.from_spec({"device": "cuda:0"}).device == "cuda:0"
    with pytest.raises(ValueError, match=r"^scot: device 'cuda:1': expected cuda:0 .. cuda:0, the CUDA devices here$"):
        ScOTRunConfig.from_spec({"device": "cuda:1"})


@pytest.mark.parametrize("pairing", ["all", "next"])  # validation and test by direct prediction / by rollout
def test_device_cpu_and_auto_without_cuda_write_the_bytes_of_a_spec_without_device(tmp_path, monkeypatch, pairing):
    """``device: cpu``, and ``auto`` where CUDA is absent, change nothing: the weights, log, model.json, scores and
    training state of a spec without the key (the run before the key existed); drop path makes the RNG matter."""
    from pdeforge.checkpoint import load_state

    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    spec = tiny_spec(root, pairing=pairing, steps=6, model={**SMALL, "drop_path_rate": 0.3})
    runs = {"plain": training.run(spec, tmp_path / "plain"),
            "cpu": training.run({**spec, "device": "cpu"}, tmp_path / "cpu")}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runs["auto"] = training.run({**spec, "device": "auto"}, tmp_path / "auto")
    seconds = {name: metrics.pop("seconds") for name, metrics in runs.items()}
    assert all(s > 0 for s in seconds.values())
    want = load_state(tmp_path / "plain" / "checkpoint" / "state.pt")
    for name in ("cpu", "auto"):
        assert runs[name] == runs["plain"], name
        for file in ("model.safetensors", "config.json", "model.json", "train_log.jsonl"):
            assert (tmp_path / name / file).read_bytes() == (tmp_path / "plain" / file).read_bytes(), (name, file)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics.pop("seconds") == seconds[name] and metrics == runs["plain"]
        assert yaml.safe_load((tmp_path / name / "config.yaml").read_text())["device"] == name
        got = load_state(tmp_path / name / "checkpoint" / "state.pt")
        assert got["step"] == want["step"] == 4
        assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())
        assert "cuda_rng" not in got and torch.equal(got["torch_rng"], want["torch_rng"])
        moments = [(a["exp_avg"], b["exp_avg"]) for a, b in zip(got["optimizer"]["state"].values(),
                                                                 want["optimizer"]["state"].values())]
        assert len(moments) > 0 and all(torch.equal(a, b) for a, b in moments)
    assert yaml.safe_load((tmp_path / "plain" / "config.yaml").read_text())["device"] == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_training_on_cuda_agrees_with_the_cpu(tmp_path, crash_after_checkpoint):
    """A few steps on cuda: finite figures; the saved weights, evaluated on the CPU, give the run's test figure (1e-4
    relative); the training state holds CPU tensors (plain torch.load reads it) and resumes on the other device
    (cuda -> cpu, cpu -> cuda) to rounding; on cuda, with drop path, a resumed run restores the CUDA RNG."""
    import shutil

    from pdeforge.operators.scot._train_data import final_time_error, open_split

    device = "cuda"
    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    spec = tiny_spec(root, steps=6, eval_every=3, model={**SMALL, "learn_residual": True}, device=device)
    whole = training.run(spec, tmp_path / "gpu")
    assert math.isfinite(whole["valid_median_rel_l1"]) and 0 < whole["test_median_rel_l1"] < 1e3, whole
    log = [json.loads(line) for line in (tmp_path / "gpu" / "train_log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r.get("loss", r.get("valid_median_rel_l1"))) for r in log)
    model = ScOT.from_pretrained(tmp_path / "gpu")
    assert next(model.parameters()).device.type == "cpu"
    info = json.loads((tmp_path / "gpu" / "model.json").read_text())
    on_cpu = final_time_error(model, open_split(root, "test", "zscore"), info["snapshots"][0], info["channels"], "all")
    assert on_cpu == pytest.approx(whole["test_median_rel_l1"], rel=1e-4)
    state = torch.load(tmp_path / "gpu" / "checkpoint" / "state.pt", weights_only=True)  # no map_location
    assert state["step"] == 4 and ("cuda_rng" in state) == (device == "cuda")
    assert all(v.device.type == "cpu" for v in state["model"].values())
    assert all(v.device.type == "cpu" for s in state["optimizer"]["state"].values() for v in s.values())

    # the state at step 4 finishes on the other device: the validation before it as written, after it to rounding
    training.run({**spec, "device": "cpu"}, tmp_path / "cpu")
    for folder, then in (("gpu", "cpu"), ("cpu", device)):
        shutil.copytree(tmp_path / folder, tmp_path / f"{folder}-{then}")
        again = training.run({**spec, "device": then, "resume": True}, tmp_path / f"{folder}-{then}")
        logs = [(tmp_path / d / "train_log.jsonl").read_text().splitlines() for d in (folder, f"{folder}-{then}")]
        assert logs[1][:2] == logs[0][:2] and len(logs[1]) == len(logs[0]) == 3
        first = whole if folder == "gpu" else json.loads((tmp_path / "cpu" / "metrics.json").read_text())
        for key in ("valid_median_rel_l1", "test_median_rel_l1"):
            assert again[key] == pytest.approx(first[key], rel=1e-3), (folder, then, key)

    # drop path on cuda draws from the CUDA generator: a run killed at step 4 and resumed there restores it
    spec = tiny_spec(root, model={**SMALL, "drop_path_rate": 0.3}, device=device)
    whole = training.run(spec, tmp_path / "whole")
    pending = crash_after_checkpoint(training, {"step": 4})
    with pytest.raises(crash_after_checkpoint.crash):
        training.run(spec, tmp_path / "cut")
    assert not pending
    again = training.run({**spec, "resume": True}, tmp_path / "cut")
    assert again["best_step"] == whole["best_step"]
    for key in ("valid_median_rel_l1", "test_median_rel_l1"):
        assert again[key] == pytest.approx(whole[key], rel=1e-4), key
    # other drop-path draws after step 4 move some weights by ~1e-2 (a fresh generator, measured on the CPU); a
    # relative change of 1e-6 in every weight at step 4 moves none by more than ~5e-6
    a, b = (read_state_dict(tmp_path / d) for d in ("whole", "cut"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
