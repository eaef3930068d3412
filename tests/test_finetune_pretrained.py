"""One fine-tuning path for every pretrained family (scOT, AViT, DPOT: a ``save_pretrained`` folder or a released
``.tar`` / ``.pth`` file; The Well's baselines: a published folder) and our own runs: ``pdeforge train CONFIG
--run.init_from SOURCE`` on data with other channels re-initialises exactly the tensors whose shapes change, loads
every other one, trains prefix groups at their own learning rates, leaves frozen prefixes unchanged, and records it
all in ``model.json`` (``finetune``)."""

from __future__ import annotations

import argparse
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


def _fine_tune(config: str, monkeypatch, *argv: str, fast: list[str] = FAST) -> tuple[dict, dict[str, torch.Tensor]]:
    """Run ``pdeforge train configs/CONFIG ARGV``; returns the metrics and the model's weights right after
    ``run.init_from`` (step 0)."""
    from pdeforge.families import train
    from pdeforge.operators.field import FieldOperatorFamily
    from pdeforge.operators.scot import ScOTFamily

    start = {}
    for family in (FieldOperatorFamily, ScOTFamily):

        def spy(self, model, source, init=family.init_from):
            said = init(self, model, source)
            start.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            return said

        monkeypatch.setattr(family, "init_from", spy)
    return train(str(REPO / "configs" / config), list(argv) + fast), start


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


def test_scot_fine_tunes_from_a_hugging_face_folder_on_other_channels(tmp_path: Path, monkeypatch) -> None:
    """A tiny scOT (1 channel, a Hugging Face folder) fine-tuned through configs/scot_finetune.yaml on 2 fields:
    exactly the 4 channel-dependent tensors are re-initialised, the others loaded; the first stage is frozen and
    Poseidon's named groups have their learning rates, all recorded as for the operator family."""
    from pdeforge.operators.scot import ScOT, ScOTConfig

    torch.manual_seed(0)
    config = ScOTConfig.tiny(num_channels=1, num_out_channels=1, learn_residual=True)
    pretrained = ScOT(config).save_pretrained(tmp_path / "scot_hf")
    root = _root(tmp_path / "root", (FieldSpec("u"), FieldSpec("v")))
    run = tmp_path / "run"
    data = ["--data.preset", "", "--data.preset_options", "{}", "--data.root", str(root), "--data.n_snapshots", "3"]
    metrics, start = _fine_tune(
        "scot_finetune.yaml",
        monkeypatch,
        *data,
        *("--run.init_from", str(pretrained), "--run.run_dir", str(run), "--model.freeze", "[encoder.layers.0]"),
        fast=["--optim.batch_size", "2", "--run.max_steps", "2", "--run.progress", "false"],
    )
    assert metrics["steps"] == 2 and np.isfinite(metrics["test"]["median_rel_l1"])
    reinit = [
        "embeddings.patch_embeddings.projection.weight",
        "patch_recovery.projection.weight",
        "patch_recovery.projection.bias",
        "patch_recovery.mixup.weight",
    ]
    record = _check_run(run, start, load_weights(pretrained / "model.safetensors"), "", reinit, "encoder.layers.0.")
    assert record["lr_groups"] == {"embedding_recovery": 2e-3, "time_embedding": 2e-3, "rest": None}
    assert json.loads((run / "model.json").read_text())["model_spec"]["num_channels"] == 2


def test_a_well_baseline_fine_tunes_from_its_published_folder_on_other_channels(tmp_path: Path, monkeypatch) -> None:
    """A tiny Well FNO (one field, 2 frames in: 2 -> 1 channels, saved as published) fine-tuned through
    configs/well_finetune.yaml on 2 fields (4 -> 2 channels): exactly the lifting's first weight and the projection's
    last weight and bias are re-initialised; the architecture is the folder's config.json; the Fourier layers are
    frozen."""
    from pdeforge.operators.well import WellFNO, save_well_baseline

    torch.manual_seed(0)
    net = WellFNO(
        dim_in=2, dim_out=1, n_spatial_dims=2, spatial_resolution=[32, 32], modes1=4, modes2=4, hidden_channels=8
    )
    pretrained = save_well_baseline(net, tmp_path / "fno_tiny")
    root = _root(tmp_path / "root", (FieldSpec("u"), FieldSpec("v")))
    run = tmp_path / "run"
    metrics, start = _fine_tune(
        "well_finetune.yaml",
        monkeypatch,
        *("--data.root", str(root), "--run.init_from", str(pretrained), "--run.run_dir", str(run)),
        *("--task.n_steps_input", "2", "--model.freeze", "[net.model.fno_blocks]", "--model.lr_groups", "{}"),
    )
    assert metrics["steps"] == 2 and np.isfinite(metrics["test"]["rel_l2"])
    reinit = ["model.lifting.fcs.0.weight", "model.projection.fcs.1.weight", "model.projection.fcs.1.bias"]
    _check_run(run, start, load_weights(pretrained / "model.safetensors"), "net.", reinit, "net.model.fno_blocks.")
    spec = json.loads((run / "model.json").read_text())["model_spec"]
    assert spec["name"] == "well_fno" and spec["config"]["hidden_channels"] == 8 and spec["config"]["modes1"] == 4


@pytest.mark.parametrize("name", ["well_tfno", "well_unet_classic", "well_unet_convnext"])
def test_the_other_well_baselines_read_their_folders_and_rebuild(tmp_path: Path, name: str) -> None:
    """TFNO (its Tucker ranks from the checkpoint), UNetClassic and UNetConvNext: ``read_pretrained`` gives the
    architecture, the operator family's network of it loads the published tensors under ``net.`` and computes what
    the published network computes on The Well's layout (frames frame-major, constant fields last)."""
    from pdeforge.datasets import DatasetMetadata
    from pdeforge.operators._build import build_model, config_from_dict, model_config_class
    from pdeforge.operators.well import WELL_BASELINES, save_well_baseline

    torch.manual_seed(0)
    cls = model_config_class(name)
    sizes = {"TFNO": dict(modes1=4, modes2=4, hidden_channels=16), "UNetClassic": dict(init_features=4)}
    sizes["UNetConvNext"] = dict(blocks_per_stage=1, init_features=4)
    net = WELL_BASELINES[cls.WELL_NAME](
        dim_in=5, dim_out=2, n_spatial_dims=2, spatial_resolution=[32, 32], **sizes[cls.WELL_NAME]
    ).eval()
    args, state = cls.read_pretrained(save_well_baseline(net, tmp_path / name))
    meta = DatasetMetadata(
        dataset_name="w",
        field_names=("u", "v"),
        constant_field_names=("k",),
        scalar_names=(),
        spatial_dims=("x", "y"),
        resolution=(32, 32),
        domain_lengths=(1.0, 1.0),
        dt=0.1,
        boundary_conditions=("periodic", "periodic"),
    )
    model = build_model(config_from_dict(name, args), meta, n_steps_input=2, use_grid=False).eval()
    model.load_state_dict({cls.STATE_PREFIX + k: v for k, v in state.items()})
    u, c = torch.randn(3, 2, 2, 32, 32), torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(u, c), net.forward_fields(u, c), rtol=0, atol=0)
    if name == "well_tfno":
        assert args["ranks"] == list(state["model.fno_blocks.convs.weight.0.core"].shape[:-1])


def test_a_well_folder_of_another_model_is_one_line(tmp_path: Path) -> None:
    from pdeforge.families import train
    from pdeforge.operators.well import WellUNetClassic, save_well_baseline

    folder = save_well_baseline(
        WellUNetClassic(dim_in=4, dim_out=1, n_spatial_dims=2, spatial_resolution=[32, 32], init_features=4),
        tmp_path / "unet",
    )
    root = _root(tmp_path / "root", (FieldSpec("u"),))
    argv = ["--data.root", str(root), "--run.init_from", str(folder), "--run.run_dir", str(tmp_path / "r"), *FAST]
    with pytest.raises(ValueError, match=r"^--run.init_from \S*unet: .*holds The Well's UNetClassic, not the FNO"):
        train(str(REPO / "configs" / "well_finetune.yaml"), argv)


def test_avit_fine_tunes_from_a_released_tar_file(tmp_path: Path, monkeypatch) -> None:
    """A released-style AViT file (``train_basic.py``'s checkpoint: ``model_state`` under DDP's ``module.``,
    beside an optimiser state), read with weights_only: the architecture is read off its tensors (embed 16, 2 heads,
    2 blocks, 12 states), everything but the vocabulary tensors loaded."""
    from pdeforge.operators.mpp import AViT, AViTConfig

    torch.manual_seed(0)
    model = AViT(AViTConfig.tiny())
    file = tmp_path / "MPP_AViT_tiny.tar"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model_state": state, "optimizer_state_dict": {"state": {}}, "epoch": 3, "iters": 10}, file)
    root = _root(tmp_path / "root", (FieldSpec("density"), FieldSpec("vorticity")))
    run = tmp_path / "run"
    _, start = _fine_tune(
        "avit_finetune.yaml",
        monkeypatch,
        *("--data.root", str(root), "--run.init_from", str(file), "--run.run_dir", str(run)),
        *("--model.args", "{n_states: 13, field_indices: {vorticity: 12}}"),
        *("--model.freeze", "[net.model.model.blocks.0]"),
    )
    reinit = ["space_bag.weight", "debed.out_kernel", "debed.out_bias"]
    _check_run(run, start, model.state_dict(), "net.model.model.", reinit, "net.model.model.blocks.0.")
    spec = json.loads((run / "model.json").read_text())["model_spec"]["config"]
    assert (spec["embed_dim"], spec["num_heads"], spec["processor_blocks"], spec["n_states"]) == (16, 2, 2, 13)


def test_dpot_fine_tunes_from_a_pth_file_with_its_config_in_model_args(tmp_path: Path, monkeypatch) -> None:
    """A DPOT training checkpoint (``{"model": state, "args": Namespace}``, as the original saves) under a name that
    is no released size: ``model.args`` gives the architecture; a released name (``model_Ti.pth``) gives Ti's."""
    from pdeforge.operators.dpot import DPOT, DPOTConfig, DPOTFieldsConfig

    torch.manual_seed(0)
    small = dict(patch_size=4, embed_dim=16, depth=2, modes=2, n_cls=2)
    config = DPOTConfig(img_size=16, in_channels=3, out_channels=3, in_timesteps=3, **small)
    model = DPOT(config)
    file = tmp_path / "dpot_small.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=1e-3)}, file)
    root = _root(tmp_path / "root", (FieldSpec("u"), FieldSpec("v")))
    run = tmp_path / "run"
    _, start = _fine_tune(
        "dpot_finetune.yaml",
        monkeypatch,
        *("--data.root", str(root), "--run.init_from", str(file), "--run.run_dir", str(run)),
        *("--task.n_steps_input", "2", "--model.freeze", "[net.model.blocks]", "--model.args", json.dumps(small)),
    )
    reinit = [
        "pos_embed",
        "patch_embed.proj.0.weight",
        "patch_embed.proj.0.bias",
        "patch_embed.proj.2.weight",
        "time_agg_layer.w",
        "out_layer.4.weight",
        "out_layer.4.bias",
    ]
    _check_run(run, start, model.state_dict(), "net.model.", reinit, "net.model.blocks.")
    named = tmp_path / "model_Ti.pth"
    named.write_bytes(file.read_bytes())
    args, _ = DPOTFieldsConfig.read_pretrained(named)
    released = DPOTConfig.released("Ti")
    assert args == {k: getattr(released, k) for k in args} and args["embed_dim"] == 512


def test_a_pickle_with_code_is_refused_in_one_line(tmp_path: Path) -> None:
    from pdeforge.families import train

    file = tmp_path / "MPP_AViT_Ti.tar"
    torch.save({"model_state": {"x": torch.zeros(1)}, "hook": argparse.Namespace(a=1)}, file)
    root = _root(tmp_path / "root", (FieldSpec("density"),))
    argv = ["--data.root", str(root), "--run.init_from", str(file), "--run.run_dir", str(tmp_path / "r"), *FAST]
    with pytest.raises(ValueError, match=r"^--run.init_from \S*MPP_AViT_Ti.tar: .*refused to load"):
        train(str(REPO / "configs" / "avit_finetune.yaml"), argv)


def test_scot_named_groups_freeze_and_group_as_poseidon_partitions() -> None:
    """``model.freeze`` / ``model.lr_groups`` take scOT's named groups wherever a prefix goes: freezing
    ``time_embedding`` freezes exactly the parameters of Poseidon's time-embedding group, and a name that is neither
    a prefix nor a named group is one line naming both."""
    from pdeforge.operators.scot import (
        ConditionalLayerNorm,
        ScOT,
        ScOTConfig,
        finetune_parameter_groups,
        named_parameter_groups,
    )
    from pdeforge.training import prefix_parameter_groups

    model = ScOT(ScOTConfig.tiny())
    named = named_parameter_groups(model)
    ids = {id(p): n for n, p in model.named_parameters()}
    poseidon = {g["name"]: [ids[id(p)] for p in g["params"]] for g in finetune_parameter_groups(model)}
    groups, frozen = prefix_parameter_groups(model, {"embedding_recovery": 1e-3}, ["time_embedding"], named=named)
    norms = [n for n, m in model.named_modules() if isinstance(m, ConditionalLayerNorm) and n != "embeddings.norm"]
    assert frozen == poseidon["time_embedding"] and len(frozen) == 4 * len(norms) == 4 * 42  # two Linear(1, C) each
    assert [ids[id(p)] for p in groups[0]["params"]] == poseidon["embedding_recovery"]
    assert [ids[id(p)] for p in groups[1]["params"]] == poseidon["backbone"]
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    with pytest.raises(ValueError, match=r"model.lr_groups: prefixes \['time'\] match no parameter.*named group"):
        prefix_parameter_groups(ScOT(ScOTConfig.tiny()), {"time": 1e-3}, named=named)
