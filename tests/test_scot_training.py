"""scOT training: the all-pairs view (pairs, lead times, padding and masking, mixtures), the masked loss (alone and
combined over processes), and the family through the run skeleton: pretrain -> fine-tune round trips (from a scOT run
folder and a Hugging Face folder), the shipped configs, crash + resume, the NaN stop, DDP and CUDA."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdeforge.checkpoint import load_state, load_weights
from pdeforge.datasets import (
    AllPairsDataset,
    AllPairsMixture,
    FieldSpec,
    Schema,
    TrajectoryDataset,
    TrajectoryWriter,
    channel_union,
    write_stats,
)
from pdeforge.families import evaluate_run, load_run, train
from pdeforge.operators.scot import (
    ScOT,
    ScOTConfig,
    ScOTFamily,
    channel_groups,
    finetune_parameter_groups,
    masked_scot_loss,
    read_state_dict,
    save_pretrained,
    scot_loss,
    selection,
)
from pdeforge.training import NonFiniteLossError


def write_root(
    root: Path,
    fields: tuple[FieldSpec, ...],
    make,
    n_t: int = 7,
    n: int = 16,
    counts=(("train", 6), ("valid", 2), ("test", 2)),
) -> Path:
    """A dataset root whose trajectory b of a split has values make(b, t (T,), n_channels) -> (T, C, n, n)."""
    x = 2 * math.pi * np.arange(n) / n
    schema = Schema(
        "synthetic", coords={"x": x, "y": x}, time=0.1 * np.arange(n_t), fields=fields, boundary_conditions="periodic"
    )
    n_ch = sum(2**f.order for f in fields)
    offset = 0
    for split, count in counts:
        with TrajectoryWriter(root / "data" / split / f"{split}.hdf5", schema, count) as w:
            w.write_channels(
                np.stack([make(offset + b, np.arange(n_t), n_ch) for b in range(count)]).astype(np.float32)
            )
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
                out[k, c] += (
                    amp * math.exp(-0.2 * (kx**2 + ky**2) * tk) * np.cos(kx * (X - (1 + c) * tk) + ky * Y + phase)
                )
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
    assert masked_scot_loss(pred, target, full, groups).item() == pytest.approx(
        scot_loss(pred, target, groups).item(), rel=1e-12
    )
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
        scot_loss(pred[:, :3], target[:, :3], [0, 1, 3]).item(), rel=1e-12
    )


def test_the_loss_combined_over_processes_equals_the_loss_of_the_combined_batch():
    """Two halves of a batch, each reducing its sums with the other's (what all_reduce does under DDP): every half's
    value is the loss of the whole batch, and the mean of the halves' gradients is its gradient."""
    from pdeforge.operators.scot._data import _group_sums

    g = torch.Generator().manual_seed(1)
    pred = torch.randn(6, 4, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(6, 4, 8, 8, generator=g, dtype=torch.float64)
    mask = torch.ones(6, 4, dtype=torch.bool)
    mask[:3, 3] = False  # the first half lacks the last group
    groups = [0, 1, 3, 4]
    whole = masked_scot_loss(pred, target, mask, groups)
    (want,) = torch.autograd.grad(whole, pred)
    halves = (slice(0, 3), slice(3, 6))
    sums = [_group_sums(pred[h], target[h], mask[h], groups).detach() for h in halves]
    grads = []
    for k, h in enumerate(halves):
        other = sums[1 - k]
        reduce = lambda t, other=other: t + (other if t.dim() else 1.0)  # noqa: E731  (a sum over two processes)
        part = masked_scot_loss(pred[h], target[h], mask[h], groups, reduce)
        assert part.item() == pytest.approx(whole.item(), rel=1e-12)
        grads.append(torch.autograd.grad(part, pred)[0])
    torch.testing.assert_close((grads[0] + grads[1]) / 2, want, rtol=1e-10, atol=1e-14)


# -- the family through the run skeleton ---------------------------------------------------------------------------
SMALL = {
    "depths": [1, 1],
    "num_heads": [1, 2],
    "skip_connections": [1, 0],
    "image_size": 16,
    "patch_size": 2,
    "window_size": 4,
}


def scot_config(
    path: Path,
    roots: list[Path],
    *,
    run: dict | None = None,
    data: dict | None = None,
    optim: dict | None = None,
    model: dict | None = None,
    finetune: dict | None = None,
) -> Path:
    """A scOT config file on the dataset ``roots``: stride 2, 4 snapshots (10 pairs a trajectory), batch 8; ``model``
    changes ``model.args``, ``finetune`` sets the model section's other options (lr_groups, freeze, reinit)."""
    values = {
        "family": "scot",
        "run": {"progress": False, **(run or {})},
        "data": {"sources": [{"root": str(r)} for r in roots], "stride": 2, "n_snapshots": 4, **(data or {})},
        "optim": {"batch_size": 8, "lr": 1e-2, "warmup": 0.2, "eval_every": 4, "steps": 8, **(optim or {})},
        "model": {"args": {**SMALL, **(model or {})}, **(finetune or {})},
    }
    path.write_text(yaml.safe_dump(values))
    return path


def same_metrics(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "train_seconds"} == {k: v for k, v in b.items() if k != "train_seconds"}


@torch.no_grad()
def train_loss(model: ScOT, roots: list[Path], max_trajectories: int | None = None) -> float:
    """The masked relative L1 loss over every training pair (stride 2, 4 snapshots), in one batch."""
    views = [
        AllPairsDataset(
            TrajectoryDataset(r, split="train", normalization="zscore", max_trajectories=max_trajectories), [0, 2, 4, 6]
        )
        for r in roots
    ]
    samples = [s for v in views for s in (v[k] for k in range(len(v)))]
    batch = {
        k: torch.stack([s[k] for s in samples]) for k in ("input_fields", "output_fields", "lead_time", "channel_mask")
    }
    groups = channel_groups(views[0].channels)
    model.eval()
    return masked_scot_loss(
        model(batch["input_fields"], batch["lead_time"]), batch["output_fields"], batch["channel_mask"], groups
    ).item()


def family_on(config: Path) -> ScOTFamily:
    from pdeforge.training import Environment, load_config

    family = ScOTFamily(load_config(ScOTFamily.config_class, config), Environment(torch.device("cpu")))
    family.prepare()
    return family


CHANNEL_TENSORS = [
    "embeddings.patch_embeddings.projection.weight",
    "patch_recovery.mixup.weight",
    "patch_recovery.projection.bias",
    "patch_recovery.projection.weight",
]


def test_pretrain_then_finetune_from_the_run_folder_and_from_a_hugging_face_folder(tmp_path):
    pre_a = write_root(tmp_path / "pa", (FieldSpec("vorticity"),), waves)
    pre_b = write_root(tmp_path / "pb", (FieldSpec("vorticity"),), lambda b, t, c: waves(b + 50, t, c) * 0.5)
    new = write_root(tmp_path / "new", (FieldSpec("velocity", order=1),), lambda b, t, c: waves(b + 100, t, c))
    common = dict(optim={"lr": 1e-2, "eval_every": 20, "warmup": 0.0, "steps": 40}, model={"learn_residual": True})
    pre_dir = tmp_path / "runs" / "pre"
    metrics = train(scot_config(tmp_path / "pre.yaml", [pre_a, pre_b], **common), ["--run.run_dir", str(pre_dir)])
    for name in ("config.yaml", "model.safetensors", "model.json", "metrics.json", "train_log.jsonl", "loss.png"):
        assert (pre_dir / name).is_file(), name
    assert evaluate_run(pre_dir) == {"valid": metrics["valid"], "test": metrics["test"]}
    run = load_run(pre_dir)
    assert run.envelope["view"]["train_pairs"] == 2 * 6 * 10  # two datasets x 6 trajectories x 4 (4 + 1) / 2 pairs
    model = run.model
    assert model.config.num_channels == 1 and model.config.learn_residual
    torch.manual_seed(0)
    initial = ScOT(model.config)
    before, after = train_loss(initial, [pre_a, pre_b]), train_loss(model, [pre_a, pre_b])
    assert after < 0.8 * before, (before, after)

    # fine-tuning a 2-channel field: exactly the channel-dependent tensors are re-initialised, Poseidon's three lr
    # groups through the shared model.lr_groups (named groups), the same partition as finetune_parameter_groups
    hf = save_pretrained(model, tmp_path / "hf")  # the same weights as a Hugging Face folder
    lrs = {"lr": 1e-3, "steps": 40, "eval_every": 20, "warmup": 0.0}
    poseidon = {"lr_groups": {"embedding_recovery": 1e-2, "time_embedding": 1e-2}}
    for source in (pre_dir, hf):
        ft_cfg = scot_config(
            tmp_path / "ft.yaml",
            [new],
            run={"init_from": str(source)},
            data={"max_train_trajectories": 4},
            optim=lrs,
            model={"learn_residual": True},
            finetune=poseidon,
        )
        family = family_on(ft_cfg)
        fresh = family.build_model()
        said = family.init_from(fresh, str(source))
        record = family.finetune.record
        assert sorted(record["reinitialised"]) == CHANNEL_TENSORS and "re-initialised" in said
        assert record["loaded"] == [k for k in fresh.state_dict() if k not in CHANNEL_TENSORS]
        assert record["unused"] == [] and record["init_from"] == str(source)
        stored = read_state_dict(hf)
        own = fresh.state_dict()
        assert all(torch.equal(own[k], stored[k]) for k in own if k not in CHANNEL_TENSORS)
        assert fresh.config.channel_slice_list_normalized_loss == (0, 2) and fresh.config.num_channels == 2
        groups = family.parameter_groups(fresh)
        assert [(g["name"], g.get("lr")) for g in groups] == [
            ("embedding_recovery", 1e-2),
            ("time_embedding", 1e-2),
            ("rest", None),  # the backbone, at optim.lr
        ]
        poseidon_groups = {g["name"]: g["params"] for g in finetune_parameter_groups(fresh)}
        for g in groups:
            want = poseidon_groups["backbone" if g["name"] == "rest" else g["name"]]
            assert [id(p) for p in g["params"]] == [id(p) for p in want], g["name"]

    ft_dir = tmp_path / "runs" / "ft"
    out = train(
        scot_config(
            tmp_path / "ft.yaml",
            [new],
            run={"init_from": str(pre_dir)},
            data={"max_train_trajectories": 4},
            optim=lrs,
            model={"learn_residual": True},
            finetune=poseidon,
        ),
        ["--run.run_dir", str(ft_dir)],
    )
    tuned = load_run(ft_dir)
    record = tuned.envelope["finetune"]
    assert sorted(record["reinitialised"]) == CHANNEL_TENSORS and record["frozen"] == []
    assert record["lr_groups"] == {"embedding_recovery": 1e-2, "time_embedding": 1e-2, "rest": None}
    assert tuned.envelope["view"]["train_trajectories"] == 4 and tuned.envelope["view"]["train_pairs"] == 4 * 10
    assert tuned.model.config.num_channels == 2
    before, after = train_loss(fresh, [new], 4), train_loss(tuned.model, [new], 4)
    assert after < 0.8 * before, (before, after)
    assert 0 < out["valid"]["median_rel_l1"] < 100 and 0 < out["test"]["median_rel_l1"] < 150, out


def test_evaluation_with_an_identity_model(tmp_path):
    """A scOT whose recovery is zeroed and that learns the residual returns its input: the final-time error (direct
    and by rollout) and the lead-time errors are then the persistence errors, computed here independently."""
    from pdeforge.operators.scot import final_time_error, lead_time_errors, relative_l1

    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    ds = TrajectoryDataset(root, split="test", normalization="zscore")
    model = ScOT(ScOTConfig.tiny(num_channels=1, num_out_channels=1, image_size=16, learn_residual=True))
    with torch.no_grad():
        for p in model.patch_recovery.parameters():
            p.zero_()
    raw = TrajectoryDataset(root, split="test")
    frames = torch.stack([raw.read(t, list(range(7)))["fields"] for t in range(2)])  # (2, 7, 1, 16, 16) physical

    def persistence(k: int) -> float:
        return float(
            torch.quantile(relative_l1(frames[:, 0].double(), frames[:, k].double()), 0.5, interpolation="midpoint")
        )

    assert final_time_error(model, ds, [0, 2, 4, 6], ("vorticity",), "all") == pytest.approx(persistence(6), rel=1e-4)
    assert final_time_error(model, ds, [0, 2, 4, 6], ("vorticity",), "next") == pytest.approx(persistence(6), rel=1e-4)
    errs = lead_time_errors(model, ds, [1, 3, 6], 0.6, ("vorticity",))
    assert [lead for lead, _ in errs.values()] == pytest.approx([1 / 6, 0.5, 1.0], rel=1e-6)  # times stored in float32
    assert [e for _, e in errs.values()] == pytest.approx([persistence(1), persistence(3), persistence(6)], rel=1e-4)
    assert persistence(1) < persistence(3) < persistence(6)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_shipped_configs_run_tiny_and_evaluate_to_their_metrics(tmp_path, monkeypatch):
    """configs/scot_pretrain.yaml, then configs/scot_finetune.yaml from its run folder: their presets with 3
    trajectories each (generated into a temporary cache), 2 optimiser steps; `evaluate_run` recomputes metrics.json
    and `load_run` rebuilds the model."""
    monkeypatch.setenv("PDEFORGE_CACHE", str(tmp_path / "cache"))
    pre = yaml.safe_load((CONFIGS / "scot_pretrain.yaml").read_text())
    small = [{**s, "preset_options": {**s["preset_options"], "n_trajectories": 3}} for s in pre["data"]["sources"]]
    runs = {
        "scot_pretrain": ["--data.sources", json.dumps(small)],
        "scot_finetune": [
            "--data.preset_options.n_trajectories",
            "3",
            "--run.init_from",
            str(tmp_path / "scot_pretrain"),
        ],
    }
    for name, extra in runs.items():
        run_dir = tmp_path / name
        metrics = train(
            CONFIGS / f"{name}.yaml",
            [
                "--run.max_steps",
                "2",
                "--run.run_dir",
                str(run_dir),
                "--optim.batch_size",
                "4",
                "--run.progress",
                "false",
                *extra,
            ],
        )
        assert metrics["steps"] == 2 and 0 < metrics["test"]["median_rel_l1"] < 1e3
        assert evaluate_run(run_dir) == {"valid": metrics["valid"], "test": metrics["test"]}
        loaded = load_run(run_dir)
        assert isinstance(loaded.model, ScOT) and loaded.family is ScOTFamily
        assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert sorted(metrics["test"]["median_rel_l1_per_dataset"]) == ["kolmogorov_2d"]
    assert len(list((tmp_path / "cache" / "datasets").iterdir())) == 3  # two pretraining datasets, one fine-tuning


def test_bad_sources_and_model_args_are_one_line_each(tmp_path):
    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    cfg = scot_config(tmp_path / "c.yaml", [root])
    cases = [
        (["--data.sources", "[ns]"], r"data.sources\[0\] 'ns': expected a mapping \{root: PATH\}"),
        (["--data.sources", "[{root: nowhere}]"], r"data.sources\[0\]: data.root nowhere: no such folder"),
        (["--data.preset", "navier_stokes_2d"], "expected data.sources or data.root / data.preset, not both"),
        (["--model.args.embed", "4"], r"model.args .*embed.*expected ScOTConfig fields"),
        (["--data.n_snapshots", "9"], r"data.n_snapshots 9: expected 2..4"),
    ]
    for k, (extra, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message):
            train(cfg, ["--run.run_dir", str(tmp_path / f"r{k}"), *extra])
    with pytest.raises(FileNotFoundError, match=r"^--run.init_from \S*nowhere: \S*nowhere: expected a scOT run folder"):
        train(cfg, ["--run.run_dir", str(tmp_path / "i"), "--run.init_from", str(tmp_path / "nowhere")])


def test_a_crash_and_resume_equal_an_uninterrupted_run(tmp_path, crash_after_checkpoint):
    """Killed after the checkpoint at step 10 of 14 (3 batches into the second epoch of 7 batches, between the
    validations at 8 and 12), --run.resume finishes with the weights, log and metrics of an uninterrupted run; drop
    path makes the global RNG matter."""
    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    cfg = scot_config(
        tmp_path / "c.yaml", [root], run={"checkpoint_every": 2}, optim={"steps": 14}, model={"drop_path_rate": 0.3}
    )  # 60 pairs: 7 batches an epoch
    whole = train(cfg, ["--run.run_dir", str(tmp_path / "whole")])
    crash_after_checkpoint(lambda: train(cfg, ["--run.run_dir", str(tmp_path / "cut")]), step=10)
    state = load_state(tmp_path / "cut" / "checkpoint" / "state.pt")
    assert state["counters"]["step"] == 10 and state["counters"]["batch"] == 3
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}
    with pytest.raises(ValueError, match=r"started with other options \(optim.lr 0.01 there, 0.02 now\)"):
        train(
            cfg, ["--run.run_dir", str(tmp_path / "cut"), "--run.resume", str(tmp_path / "cut"), "--optim.lr", "0.02"]
        )
    again = train(cfg, ["--run.run_dir", str(tmp_path / "cut"), "--run.resume", str(tmp_path / "cut")])
    assert same_metrics(again, whole)
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [
        [json.loads(line) for line in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
        for d in ("whole", "cut")
    ]
    computed = [[r for r in log if "loss" in r or "valid" in r] for log in logs]  # not the timings
    assert computed[1] == computed[0] and len(computed[0]) > 4
    assert [r["step"] for r in logs[0] if "valid" in r] == [4, 8, 12, 14]


def test_a_nan_loss_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    cfg = scot_config(tmp_path / "c.yaml", [root], run={"checkpoint_every": 2})
    loss, calls = ScOTFamily.loss, []

    def nan_from_the_fourth_batch(self, net, batch):
        calls.append(1)
        value = loss(self, net, batch)
        return value * float("nan") if len(calls) > 3 else value

    monkeypatch.setattr(ScOTFamily, "loss", nan_from_the_fourth_batch)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"scot: the loss is nan at step 3 \(epoch 0, lr .*state.pt"):
        train(cfg, ["--run.run_dir", str(run)])
    state = load_state(run / "checkpoint" / "state.pt")
    assert state["counters"]["step"] == 2 and set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (run / "metrics.json").exists()


def test_ddp_two_processes_equal_one_with_the_combined_batch(tmp_path):
    """2 gloo processes of 8 pairs a step equal 1 process of 16 (the loss's normalisers are summed over processes):
    every weight tensor within 1e-4 of its norm (Adam divides by the gradients' own size, so an element whose gradient
    is near 0 carries float32 rounding of the reduction order further than rtol per element would allow)."""
    root = write_root(tmp_path / "w", (FieldSpec("velocity", order=1),), waves)
    cfg = scot_config(tmp_path / "c.yaml", [root], optim={"steps": 4, "eval_every": 2}, model={"learn_residual": True})
    train(cfg, ["--run.run_dir", str(tmp_path / "one"), "--optim.batch_size", "16"])
    script = tmp_path / "train_scot.py"
    script.write_text("import sys\nfrom pdeforge.families import train\ntrain(sys.argv[1], sys.argv[2:])\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(cfg),
            "--run.run_dir",
            str(tmp_path / "two"),
            "--optim.batch_size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = (load_state(tmp_path / n / "checkpoint" / "state.pt") for n in ("one", "two"))
    assert one["counters"]["step"] == two["counters"]["step"] == 4
    for k, a in one["model"].items():
        assert float((a - two["model"][k]).norm()) <= 1e-4 * float(a.norm()) + 1e-12, k
    logs = [
        [json.loads(line) for line in (tmp_path / n / "train_log.jsonl").read_text().splitlines()]
        for n in ("one", "two")
    ]
    assert [r["loss"] for r in logs[1] if "loss" in r] == pytest.approx(
        [r["loss"] for r in logs[0] if "loss" in r], rel=1e-4
    )
    assert [r["valid"] for r in logs[1] if "valid" in r] == pytest.approx(
        [r["valid"] for r in logs[0] if "valid" in r], rel=1e-4
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_training_on_cuda_resumes_exactly_and_evaluates_on_the_cpu(tmp_path, crash_after_checkpoint):
    """A few steps on cuda with drop path (the CUDA generator, in the RNG bundle): finite metrics; the checkpoint holds
    CPU tensors; a run killed at step 4 and resumed ends with the weights of an uninterrupted one; the saved weights
    evaluated on the CPU give the run's metrics (1e-4)."""
    root = write_root(tmp_path / "w", (FieldSpec("vorticity"),), waves)
    cfg = scot_config(
        tmp_path / "c.yaml",
        [root],
        run={"checkpoint_every": 2, "device": "cuda"},
        model={"drop_path_rate": 0.3, "learn_residual": True},
    )
    whole = train(cfg, ["--run.run_dir", str(tmp_path / "whole")])
    assert 0 < whole["test"]["median_rel_l1"] < 1e3
    state = torch.load(tmp_path / "whole" / "checkpoint" / "state.pt", weights_only=True)
    assert len(state["rng"]["cuda"]) >= 1 and all(v.device.type == "cpu" for v in state["model"].values())
    crash_after_checkpoint(lambda: train(cfg, ["--run.run_dir", str(tmp_path / "cut")]), step=4)
    again = train(cfg, ["--run.run_dir", str(tmp_path / "cut"), "--run.resume", str(tmp_path / "cut")])
    a, b = (load_weights(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
    assert again["best_step"] == whole["best_step"]
    on_cpu = evaluate_run(tmp_path / "whole", device="cpu")
    for split in ("valid", "test"):
        assert on_cpu[split]["median_rel_l1"] == pytest.approx(whole[split]["median_rel_l1"], rel=1e-4)


def test_a_config_written_before_lr_groups_reads_as_the_named_groups():
    """Run folders saved with scOT's former fine-tuning options (optim.lr_embedding_recovery, optim.lr_time_embedding)
    still load: they read as model.lr_groups' named groups (0 meant optim.lr: no group)."""
    from pdeforge.operators.scot import ScOTRunConfig
    from pdeforge.training.config import build_config

    old = {"optim": {"lr": 1e-4, "lr_embedding_recovery": 5e-4, "lr_time_embedding": 0.0}, "model": {"args": {}}}
    config = build_config(ScOTRunConfig, old)
    assert config.optim.lr == 1e-4
    assert config.model.lr_groups == {"embedding_recovery": 5e-4}
    new = build_config(ScOTRunConfig, {"model": {"lr_groups": {"time_embedding": 2e-4}}})
    assert new.model.lr_groups == {"time_embedding": 2e-4}
