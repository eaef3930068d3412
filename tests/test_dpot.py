"""DPOT: checkpoint compatibility with the original implementation, the released file formats, safe loading,
the channels-first adapter, fine-tuning re-initialisation.

The reference files in tests/reference/dpot were produced by the original `DPOTNet` (HaoZhongkai/DPOT); see
their README for how, and for the tolerance used here.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pdeforge.checkpoint import UnsafeCheckpointError
from pdeforge.datasets import DatasetMetadata
from pdeforge.operators.dpot import (
    DPOT,
    RELEASED_PARAMETERS,
    DPOTConfig,
    read_checkpoint,
    reinitialised_keys,
)

RTOL, ATOL = 1e-4, 1e-5  # the reference README's tolerance: 1 vs 2 threads use <= 5 % of it, float64 <= 7 %
SETS = ("tiny", "tiny_normalize")


@pytest.fixture(scope="session")
def ref_dir(reference_dir: Path) -> Path:
    return reference_dir / "dpot"


def _folder(ref_dir: Path, name: str, dest: Path) -> Path:
    """A reference checkpoint laid out as a pretrained folder (config.json + model.safetensors)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ref_dir / f"{name}_config.json", dest / "config.json")
    shutil.copy(ref_dir / f"{name}_model.safetensors", dest / "model.safetensors")
    return dest


@pytest.fixture(scope="session")
def tiny_folder(ref_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _folder(ref_dir, "tiny", tmp_path_factory.mktemp("dpot") / "tiny")


def _outputs(model: DPOT, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


def _assert_reference(model: DPOT, io: dict[str, torch.Tensor]) -> None:
    pred, cls_pred = _outputs(model, io["x"])
    assert pred.shape == io["pred"].shape and cls_pred.shape == io["cls_pred"].shape
    torch.testing.assert_close(pred, io["pred"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(cls_pred, io["cls_pred"], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------------ layout
def test_Ti_state_dict_keys_shapes_order_dtype_and_count(ref_dir: Path) -> None:
    ref = json.loads((ref_dir / "Ti_state_dict.json").read_text())
    config = DPOTConfig.from_dict(ref["config"])
    assert config == DPOTConfig.released("Ti") == DPOTConfig.released("tiny")
    with torch.device("meta"):
        model = DPOT(config)
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch."), "param"] for k, v in model.state_dict().items()]
    assert got == ref["state_dict"] and len(got) == ref["n_state_dict_entries"] == 67
    assert list(model.buffers()) == []
    assert sum(p.numel() for p in model.parameters()) == ref["n_parameters"] == 7_534_643
    by_top = {name: p.numel() for name, p in model.named_parameters(recurse=False)}
    by_top |= {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert by_top == ref["n_parameters_by_top_module"]


def test_released_sizes_match_the_original_counts(ref_dir: Path) -> None:
    other = json.loads((ref_dir / "Ti_state_dict.json").read_text())["other_sizes"]
    assert set(other) | {"Ti"} == set(RELEASED_PARAMETERS)
    for size, n in RELEASED_PARAMETERS.items():
        with torch.device("meta"):
            model = DPOT(DPOTConfig.released(size))
        assert sum(p.numel() for p in model.parameters()) == n, size
        if size in other:
            assert other[size]["n_parameters"] == n
            assert DPOTConfig.released(size) == DPOTConfig.from_dict(other[size]["config"])


@pytest.mark.parametrize("name", SETS)
def test_tiny_state_dict_matches_reference(ref_dir: Path, name: str) -> None:
    ref = json.loads((ref_dir / f"{name}_state_dict.json").read_text())
    model = DPOT(DPOTConfig.from_json(ref_dir / f"{name}_config.json"))
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == [e[:2] for e in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["n_parameters"]
    assert load_file(ref_dir / f"{name}_model.safetensors").keys() == model.state_dict().keys()


# ------------------------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("name", SETS)
def test_from_pretrained_reproduces_the_original_outputs(ref_dir: Path, tmp_path: Path, name: str) -> None:
    model = DPOT.from_pretrained(_folder(ref_dir, name, tmp_path / name))
    io = load_file(ref_dir / f"{name}_io.safetensors")
    assert not torch.equal(io["x"][0], io["x"][1])
    _assert_reference(model, io)
    model.train()  # no dropout, no drop-path, no batch norm: train and eval forwards agree
    with torch.no_grad():
        torch.testing.assert_close(model(io["x"])[0], io["pred"], rtol=RTOL, atol=ATOL)


def test_float64_forward_matches_reference(ref_dir: Path, tiny_folder: Path) -> None:
    """The float64 model (the original only runs so with a float64 default dtype) is within the tolerance too."""
    model = DPOT.from_pretrained(tiny_folder).double()
    io = load_file(ref_dir / "tiny_io.safetensors")
    pred, cls_pred = _outputs(model, io["x"].double())
    assert pred.dtype == torch.float64
    torch.testing.assert_close(pred, io["pred"].double(), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(cls_pred, io["cls_pred"].double(), rtol=RTOL, atol=ATOL)


def test_mode_truncation_zeroes_high_modes() -> None:
    """The AFNO filter keeps the FFT indices < modes on both axes (negative x frequencies dropped) and zeroes the
    others: a field made only of dropped modes passes through unchanged (just the skip), a kept one does not."""
    config = DPOTConfig(
        img_size=32, patch_size=4, in_channels=1, out_channels=1, embed_dim=8, n_blocks=1, modes=3, depth=1
    )
    torch.manual_seed(0)
    block = DPOT(config).blocks[0].filter
    with torch.no_grad():
        block.w1.normal_(), block.b1.zero_(), block.w2.normal_(), block.b2.zero_()
    i = torch.arange(8.0)
    ramp = torch.outer(i, torch.ones(8))
    dropped = torch.cos(2 * torch.pi * 5 * ramp / 8).expand(1, 8, 8, 8)  # x indices 5 and 3 (= -5), y index 0
    kept = torch.cos(2 * torch.pi * 2 * ramp / 8).expand(1, 8, 8, 8)  # x indices 2 and 6 (= -2)
    with torch.no_grad():
        torch.testing.assert_close(block(dropped), dropped, atol=1e-5, rtol=0)  # FFT round-off
        assert (block(kept) - kept).abs().max() > 0.1


# ------------------------------------------------------------------------------------------------ file formats
def test_training_checkpoint_dict_with_ddp_prefix_loads(ref_dir: Path, tmp_path: Path) -> None:
    """The original training script's file: {"args": Namespace, "model": DDP state dict, "optimizer": ...}."""
    weights = load_file(ref_dir / "tiny_model.safetensors")
    model = DPOT(DPOTConfig.from_json(ref_dir / "tiny_config.json"))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(1, 32, 32, 3, 3))[0].square().mean().backward()
    optimizer.step()
    checkpoint = {
        "args": argparse.Namespace(model="DPOT", width=16, lr=1e-3, train_paths=["ns2d_fno_1e-5"], gpu=0),
        "model": {f"module.{k}": v for k, v in weights.items()},
        "optimizer": optimizer.state_dict(),
        "epoch": 7,
    }
    torch.save(checkpoint, tmp_path / "ckpt.pth")
    io = load_file(ref_dir / "tiny_io.safetensors")
    assert read_checkpoint(tmp_path / "ckpt.pth").keys() == weights.keys()
    for config in (ref_dir / "tiny_config.json", json.loads((ref_dir / "tiny_config.json").read_text())):
        _assert_reference(DPOT.from_pretrained(tmp_path / "ckpt.pth", config=config), io)
    # a bare state dict under module. in a folder next to its config.json, and a safetensors file
    folder = tmp_path / "ddp"
    folder.mkdir()
    shutil.copy(ref_dir / "tiny_config.json", folder / "config.json")
    torch.save(checkpoint["model"], folder / "pytorch_model.bin")
    _assert_reference(DPOT.from_pretrained(folder), io)
    save_file(checkpoint["model"], tmp_path / "ddp.safetensors")
    _assert_reference(DPOT.from_pretrained(tmp_path / "ddp.safetensors", config=ref_dir / "tiny_config.json"), io)


def test_released_file_name_gives_the_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    original = DPOT(DPOTConfig.released("Ti"))
    torch.save({"model": {f"module.{k}": v for k, v in original.state_dict().items()}}, tmp_path / "model_Ti.pth")
    for loaded in (DPOT.from_pretrained(tmp_path / "model_Ti.pth"), DPOT.from_pretrained(tmp_path)):
        assert loaded.config == DPOTConfig.released("Ti")
        assert all(torch.equal(v, original.state_dict()[k]) for k, v in loaded.state_dict().items())
    (tmp_path / "model_Ti.pth").rename(tmp_path / "dpot.pth")
    with pytest.raises(ValueError, match=r"dpot\.pth: cannot tell which DPOT this is: .*pass size="):
        DPOT.from_pretrained(tmp_path / "dpot.pth")
    assert DPOT.from_pretrained(tmp_path / "dpot.pth", size="Ti").config == original.config


def test_save_pretrained_round_trip(ref_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    model = DPOT.from_pretrained(tiny_folder)
    folder = model.save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    # config.json holds exactly the original constructor arguments
    assert json.loads((folder / "config.json").read_text()) == json.loads((ref_dir / "tiny_config.json").read_text())
    assert load_file(folder / "model.safetensors").keys() == load_file(ref_dir / "tiny_model.safetensors").keys()
    again = DPOT.from_pretrained(folder)
    assert again.config == model.config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())
    # the inert constructor arguments are kept verbatim and change nothing
    config = DPOTConfig.from_dict({**model.config.to_dict(), "drop_path_rate": 0.1, "dropcls": 0})
    assert config == model.config and config.to_dict()["drop_path_rate"] == 0.1


# ------------------------------------------------------------------------------------------------ refusals
class _Payload:
    """Unpickling this would create `self.path` (if it ran)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickle_with_objects_is_refused_and_nothing_runs(ref_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    weights = load_file(ref_dir / "tiny_model.safetensors")
    torch.save({"model": weights, "hook": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth: refused to load") as err:
        DPOT.from_pretrained(tmp_path / "evil.pth", config=ref_dir / "tiny_config.json")
    assert "\n" not in str(err.value)
    assert not marker.exists()
    torch.save({"model": {"pos_embed": [1.0, 2.0]}}, tmp_path / "lists.pth")
    with pytest.raises(ValueError, match=r"lists\.pth: expected a state dict of tensors .*\[pos_embed\]"):
        read_checkpoint(tmp_path / "lists.pth")


def test_bad_config_and_mismatched_weights_say_what_is_wrong(ref_dir: Path, tiny_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"img_size": 32, "heads": 4}))
    with pytest.raises(ValueError, match=r"config\.json: unknown key\(s\) \['heads'\]"):
        DPOTConfig.from_json(tmp_path)
    with pytest.raises(ValueError, match="embed_dim must be a multiple of 8"):
        DPOTConfig(embed_dim=20, n_blocks=4)
    with pytest.raises(ValueError, match=r"unknown DPOT size 'XL'"):
        DPOTConfig.released("XL")
    # the tiny weights are not DPOT-Ti (4 blocks, not 2), nor a model of another width
    with pytest.raises(
        KeyError, match=r"24 missing, 0 unexpected keys\); missing: \[blocks\.2\.norm1\.weight.*the size"
    ):
        DPOT.from_pretrained(tiny_folder, size="Ti")
    wider = {**json.loads((ref_dir / "tiny_config.json").read_text()), "embed_dim": 24}
    with pytest.raises(ValueError, match=r"shape mismatch for pos_embed: the config gives \(1, 24, 8, 8\), the ch"):
        DPOT.from_pretrained(tiny_folder, config=wider)
    with pytest.raises(FileNotFoundError, match="no DPOT checkpoint at"):
        DPOT.from_pretrained(tmp_path / "absent")


def test_input_shape_errors(tiny_folder: Path) -> None:
    model = DPOT.from_pretrained(tiny_folder)
    with pytest.raises(
        ValueError, match=r"expects x of shape \(B, X=32, Y=32, T_in=3, C_in=3\).*got \(2, 32, 32, 4, 3\)"
    ):
        model(torch.zeros(2, 32, 32, 4, 3))
    with pytest.raises(ValueError, match=r"add a batch axis"):
        model(torch.zeros(32, 32, 3, 3))
    with pytest.raises(TypeError, match="x is torch.float64 but the model is torch.float32"):
        model(torch.zeros(1, 32, 32, 3, 3, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ pdeforge layout
def test_forward_fields_is_forward_in_channels_first_layout(ref_dir: Path, tiny_folder: Path) -> None:
    """input_fields[b, t, c, i, j] = x[b, i, j, t, c]; the prediction comes back as (B, T_out, C_out, X, Y)."""
    model = DPOT.from_pretrained(tiny_folder).eval()
    io = load_file(ref_dir / "tiny_io.safetensors")
    x, want = io["x"], io["pred"]
    u = torch.empty(2, 3, 3, 32, 32)
    for t in range(3):
        for c in range(3):
            u[:, t, c] = x[:, :, :, t, c]
    with torch.no_grad():
        got = model.forward_fields(u)
        assert torch.equal(model.forward_batch({"input_fields": u, "scalars": torch.zeros(2, 1)}), got)
    assert got.shape == (2, 2, 2, 32, 32)
    for t in range(2):
        for c in range(2):
            torch.testing.assert_close(got[:, t, c], want[:, :, :, t, c], rtol=RTOL, atol=ATOL)


def _metadata(**changes) -> DatasetMetadata:
    base = dict(
        dataset_name="ns2d",
        field_names=("density", "velocity_x", "velocity_y"),
        constant_field_names=(),
        scalar_names=(),
        spatial_dims=("x", "y"),
        resolution=(32, 32),
        domain_lengths=(1.0, 1.0),
        dt=0.1,
        boundary_conditions=("periodic", "periodic"),
    )
    return DatasetMetadata(**{**base, **changes})


def test_config_from_metadata() -> None:
    config = DPOTConfig.from_metadata(_metadata(), n_steps_input=4, n_steps_output=2, patch_size=4, embed_dim=16)
    assert (config.img_size, config.in_channels, config.out_channels) == (32, 3, 3)
    assert (config.in_timesteps, config.out_timesteps) == (4, 2)
    ti = DPOTConfig.from_metadata(_metadata(resolution=(128, 128)), 10, size="Ti")
    assert ti == DPOTConfig.released("Ti", in_channels=3, out_channels=3)
    with pytest.raises(ValueError, match=r"square 2D grid; dataset 'ns2d' has resolution \(32, 64\)"):
        DPOTConfig.from_metadata(_metadata(resolution=(32, 64)), 4)
    with pytest.raises(ValueError, match=r"scalars \['nu'\], which DPOT does not take .*ignore_conditioning=True"):
        DPOTConfig.from_metadata(_metadata(scalar_names=("nu",)), 4, patch_size=4)
    assert DPOTConfig.from_metadata(_metadata(scalar_names=("nu",)), 4, patch_size=4, ignore_conditioning=True)


def test_trains_on_trajectory_dataset_samples(tmp_path: Path) -> None:
    """A file of the common dataset layer (2 fields, one a 2-component vector: 3 channels) -> config from its
    metadata -> batches of samples through `forward_batch`: the prediction has the shape of `output_fields`, and
    a training step changes it."""
    import numpy as np

    from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter

    x = np.linspace(0.0, 1.0, 16, endpoint=False)
    schema = Schema(
        "toy", coords={"x": x, "y": x}, time=0.1 * np.arange(6), fields=(FieldSpec("u"), FieldSpec("v", order=1))
    )
    rng = np.random.default_rng(0)
    with TrajectoryWriter(tmp_path / "toy.hdf5", schema, n_trajectories=2) as writer:
        writer.write_channels(rng.standard_normal((2, 6, 3, 16, 16)).astype(np.float32))
    dataset = TrajectoryDataset(tmp_path / "toy.hdf5", n_steps_input=3, n_steps_output=2)
    config = DPOTConfig.from_metadata(
        dataset.metadata, 3, 2, patch_size=4, embed_dim=16, depth=1, n_blocks=2, modes=2, n_cls=2, out_layer_dim=8
    )
    assert (config.in_channels, config.img_size) == (3, 16)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    torch.manual_seed(0)
    model = DPOT(config)
    pred = model.forward_batch(batch)
    assert pred.shape == batch["output_fields"].shape == (4, 2, 3, 16, 16)
    loss = (pred - batch["output_fields"]).square().mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    with torch.no_grad():
        assert (model.forward_batch(batch) - pred).abs().max() > 1e-4


# ------------------------------------------------------------------------------------------------ fine-tuning
def test_fine_tuning_reinitialises_exactly_the_tensors_whose_shapes_change(tiny_folder: Path) -> None:
    stored = DPOTConfig.from_json(tiny_folder)
    weights = load_file(tiny_folder / "model.safetensors")
    cases = {
        (("in_channels", 2),): ["patch_embed.proj.0.weight"],
        (("in_timesteps", 5),): ["time_agg_layer.w"],
        (("n_cls", 7),): ["cls_head.4.weight", "cls_head.4.bias"],
        (("out_timesteps", 1),): ["out_layer.4.weight", "out_layer.4.bias"],
        # the patch embedding's hidden width is out_channels * patch_size + 3
        (("in_channels", 1), ("out_channels", 1)): [
            "patch_embed.proj.0.weight",
            "patch_embed.proj.0.bias",
            "patch_embed.proj.2.weight",
            "out_layer.4.weight",
            "out_layer.4.bias",
        ],
        (("img_size", 64),): ["pos_embed"],
    }
    for changes, expected in cases.items():
        changes = dict(changes)
        assert reinitialised_keys(stored, stored.replace(**changes)) == expected, changes
        torch.manual_seed(0)
        model = DPOT.from_pretrained(tiny_folder, **changes)
        torch.manual_seed(0)
        fresh = DPOT(stored.replace(**changes)).state_dict()
        for key, value in model.state_dict().items():
            assert torch.equal(value, fresh[key] if key in expected else weights[key]), (changes, key)
    with pytest.raises(ValueError, match=r"only sizes .* can change"):
        DPOT.from_pretrained(tiny_folder, depth=3)


def test_training_updates_every_tensor_and_lowers_the_loss(tiny_folder: Path) -> None:
    """Gradients reach every tensor that shapes the prediction (all but the classifier head)."""
    torch.manual_seed(0)
    model = DPOT.from_pretrained(tiny_folder, out_timesteps=1)
    u = torch.randn(4, 3, 3, 32, 32)
    target = torch.ones(4, 1, 2, 32, 32)  # reachable (through the biases, at least), unlike noise
    loss = (model.forward_fields(u) - target).square().mean()
    loss.backward()
    no_grad = [k for k, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert no_grad == [k for k, _ in model.named_parameters() if k.startswith("cls_head.")]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss.item()
    for _ in range(5):
        optimizer.zero_grad()
        loss = (model.forward_fields(u) - target).square().mean()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.9 * first


def test_public_names() -> None:
    import pdeforge.operators as operators
    import pdeforge.operators.dpot as dpot

    assert operators.DPOT is dpot.DPOT and operators.DPOTConfig is dpot.DPOTConfig
