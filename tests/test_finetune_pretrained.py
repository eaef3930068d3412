"""One fine-tuning path for the operator family's models, pretrained (AViT, DPOT: a ``save_pretrained`` folder) or
our own runs: ``pdeforge train CONFIG --run.init_from SOURCE`` on data with other channels re-initialises exactly
the tensors whose shapes change, loads every other one, trains prefix groups at their own learning rates, leaves
frozen prefixes unchanged, and records it all in ``model.json`` (``finetune``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pdeforge.checkpoint import load_weights
from pdeforge.datasets import FieldSpec, Schema, TrajectoryWriter
from pdeforge.datasets._stats import write_stats

REPO = Path(__file__).resolve().parents[1]
FAST = ["--optim.batch_size", "2", "--run.max_steps", "2", "--run.progress", "false", "--task.rollout_steps", "2"]


def _root(path: Path, fields: tuple[FieldSpec, ...], n: int = 32, n_steps: int = 6) -> Path:
    """A dataset root of smooth travelling waves (train 3, valid 2, test 2 trajectories) on an n x n periodic grid."""
    x, t = np.linspace(0, 1, n, endpoint=False), np.linspace(0, 0.5, n_steps)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    schema = Schema("waves", coords={"x": x, "y": x}, time=t, fields=fields)
    n_channels = len(schema.channel_names())
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("valid", 2), ("test", 2)):
        u = np.stack(
            [
                np.stack(
                    [
                        np.sin(2 * np.pi * (xx - 0.3 * t[:, None, None] * (c + 1)) + a) * np.cos(2 * np.pi * yy + b)
                        for c in range(n_channels)
                    ],
                    1,
                )
                for a, b in rng.uniform(0, 2 * np.pi, (count, 2))
            ]
        ).astype("float32")  # (B, T, C, X, Y)
        (path / "data" / split).mkdir(parents=True)
        with TrajectoryWriter(path / "data" / split / f"{split}.hdf5", schema, n_trajectories=count) as writer:
            writer.write_channels(u)
    write_stats(path)
    return path


def _fine_tune(config: str, monkeypatch, *argv: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Run ``pdeforge train configs/CONFIG ARGV``; returns the metrics and the model's weights right after
    ``run.init_from`` (step 0)."""
    from pdeforge.families import train
    from pdeforge.operators.field import FieldOperatorFamily

    start, init = {}, FieldOperatorFamily.init_from

    def spy(self, model, source):
        said = init(self, model, source)
        start.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return said

    monkeypatch.setattr(FieldOperatorFamily, "init_from", spy)
    return train(str(REPO / "configs" / config), list(argv) + FAST), start


def _check_run(run: Path, start: dict, checkpoint: dict, prefix: str, reinit: list[str], frozen_prefix: str) -> dict:
    """Step 0 holds the checkpoint's tensors but ``reinit``; the frozen ones are unchanged after the steps, the
    others moved; ``model.json`` lists it all."""
    fresh = [prefix + k for k in reinit]
    mapped = {prefix + k: v for k, v in checkpoint.items()}
    assert set(start) == set(mapped)
    for k, v in mapped.items():
        if k in fresh:
            assert start[k].shape != v.shape, k
        else:
            assert torch.equal(start[k], v), k
    record = json.loads((run / "model.json").read_text())["finetune"]
    assert record["reinitialised"] == fresh
    assert record["loaded"] == [k for k in start if k not in fresh] and record["unused"] == []
    frozen = [k for k in start if k.startswith(frozen_prefix) and k in dict(_parameters(run))]
    assert frozen and record["frozen"] == frozen
    final = load_weights(run / "model.safetensors")
    assert all(torch.equal(final[k], start[k]) for k in frozen)
    trained = [k for k in fresh if k in dict(_parameters(run))]
    assert trained and all(not torch.equal(final[k], start[k]) for k in trained)
    return record


def _parameters(run: Path) -> list[tuple[str, torch.nn.Parameter]]:
    from pdeforge.families import load_run

    return list(load_run(run).model.named_parameters())


def test_avit_fine_tunes_from_a_pretrained_folder_on_other_fields(tmp_path: Path, monkeypatch) -> None:
    """A tiny AViT (vocabulary of 12) fine-tuned on density + a field of its own (index 12: n_states 13): the three
    vocabulary tensors are re-initialised, the 86 others are the checkpoint's; the first block is frozen."""
    from pdeforge.operators.mpp import AViT, AViTConfig

    torch.manual_seed(0)
    pretrained = AViT(AViTConfig.tiny()).save_pretrained(tmp_path / "avit_tiny")
    root = _root(tmp_path / "root", (FieldSpec("density"), FieldSpec("vorticity")))
    run = tmp_path / "run"
    metrics, start = _fine_tune(
        "avit_finetune.yaml",
        monkeypatch,
        *("--data.root", str(root), "--run.init_from", str(pretrained), "--run.run_dir", str(run)),
        *("--model.args", "{n_states: 13, field_indices: {vorticity: 12}}"),
        *("--model.freeze", "[net.model.model.blocks.0]"),
    )
    assert metrics["steps"] == 2 and np.isfinite(metrics["test"]["rel_l2"])
    reinit = ["space_bag.weight", "debed.out_kernel", "debed.out_bias"]
    record = _check_run(
        run,
        start,
        load_weights(pretrained / "model.safetensors"),
        "net.model.model.",
        reinit,
        "net.model.model.blocks.0.",
    )
    assert len(record["loaded"]) == len(start) - 3 == 86
    assert record["lr_groups"] == {
        "net.model.model.space_bag": 1e-3,
        "net.model.model.embed": 1e-3,
        "net.model.model.debed": 1e-3,
        "rest": None,
    }
    spec = json.loads((run / "model.json").read_text())["model_spec"]
    assert spec["config"]["n_states"] == 13 and spec["config"]["embed_dim"] == 16  # the pretrained architecture


def test_dpot_fine_tunes_from_a_pretrained_folder_on_other_channels_and_frames(tmp_path: Path, monkeypatch) -> None:
    """A tiny DPOT (3 channels, 3 frames, 16 x 16) fine-tuned on 2 fields, 2 frames on 32 x 32: exactly the tensors
    `reinitialised_keys` names (grid, channels and frames) are fresh; the AFNO blocks are frozen."""
    from pdeforge.operators.dpot import DPOT, DPOTConfig, reinitialised_keys

    torch.manual_seed(0)
    config = DPOTConfig(
        img_size=16,
        patch_size=4,
        in_channels=3,
        out_channels=3,
        in_timesteps=3,
        embed_dim=16,
        depth=2,
        modes=2,
        n_cls=2,
    )
    pretrained = DPOT(config).save_pretrained(tmp_path / "dpot_tiny")
    root = _root(tmp_path / "root", (FieldSpec("u"), FieldSpec("v")))
    run = tmp_path / "run"
    metrics, start = _fine_tune(
        "dpot_finetune.yaml",
        monkeypatch,
        *("--data.root", str(root), "--run.init_from", str(pretrained), "--run.run_dir", str(run)),
        *("--task.n_steps_input", "2", "--model.freeze", "[net.model.blocks]"),
    )
    assert metrics["steps"] == 2 and np.isfinite(metrics["test"]["rel_l2"])
    reinit = [
        "pos_embed",
        "patch_embed.proj.0.weight",
        "patch_embed.proj.0.bias",
        "patch_embed.proj.2.weight",
        "time_agg_layer.w",
        "out_layer.4.weight",
        "out_layer.4.bias",
    ]
    target = config.replace(img_size=32, in_channels=2, out_channels=2, in_timesteps=2)
    assert reinitialised_keys(config, target) == reinit  # the same list as DPOT.from_pretrained's
    _check_run(run, start, load_weights(pretrained / "model.safetensors"), "net.model.", reinit, "net.model.blocks.")


def test_our_own_run_fine_tunes_the_same_way(tmp_path: Path, monkeypatch) -> None:
    """An operator run (a tiny FNO, two frames of one field in) fine-tuned on two fields: exactly the lifting's first
    weight (input channels) and the projection's last weight and bias (output channels) are re-initialised; the
    architecture comes from the run's model.json (model.args {}); the Fourier layers are frozen."""
    from pdeforge.families import train

    src_root = _root(tmp_path / "one", (FieldSpec("u"),), n=16)
    src = tmp_path / "src"
    args = "{n_modes: 4, hidden_channels: 8, n_layers: 2}"
    common = ["--task.kind", "next_step", "--task.dt_stride", "1", "--model.use_grid", "false"]
    train(
        str(REPO / "configs" / "fno_navier_stokes.yaml"),
        [*common, "--data.root", str(src_root), "--model.args", args, "--run.run_dir", str(src), *FAST],
    )
    root = _root(tmp_path / "two", (FieldSpec("u"), FieldSpec("v")), n=16)
    run = tmp_path / "run"
    _, start = _fine_tune(
        "fno_navier_stokes.yaml",
        monkeypatch,
        *common,
        *(
            "--data.root",
            str(root),
            "--task.n_steps_input",
            "2",
            "--run.init_from",
            str(src),
            "--run.run_dir",
            str(run),
        ),
        *("--model.args", "{}", "--model.freeze", "[net.net.fno_blocks]"),  # {}: the source run's architecture
    )
    checkpoint = {k: v for k, v in load_weights(src / "model.safetensors").items()}
    changed = sorted(k for k in checkpoint if checkpoint[k].shape != start[k].shape)
    assert changed == [
        "net.net.lifting.fcs.0.weight",
        "net.net.projection.fcs.1.bias",
        "net.net.projection.fcs.1.weight",
    ], changed
    record = _check_run(run, start, checkpoint, "", [k for k in start if k in changed], "net.net.fno_blocks.")
    assert record["init_from"] == str(src)


def test_bad_fine_tuning_options_end_in_one_line(tmp_path: Path) -> None:
    from pdeforge.families import train

    root = _root(tmp_path / "root", (FieldSpec("density"),))
    base = [
        str(REPO / "configs" / "avit_finetune.yaml"),
        "--data.root",
        str(root),
        "--model.args",
        "{embed_dim: 16, num_heads: 2, processor_blocks: 1}",
        "--run.run_dir",
        str(tmp_path / "run"),
        *FAST,
    ]
    with pytest.raises(ValueError, match=r"^model\.freeze: prefixes \['net\.model\.nope'\] match no parameter"):
        train(base[0], base[1:] + ["--model.freeze", "[net.model.nope]"])
    with pytest.raises(ValueError, match=r"takes the history of frames of the fields alone, got model.use_grid true"):
        train(base[0], base[1:] + ["--model.use_grid", "true"])
