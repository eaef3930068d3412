"""AViT (MPP): checkpoint compatibility with the original implementation, the released file formats, safe loading,
the pieces that are easy to get wrong, and the channels-first adapter.

The reference files in tests/reference/mpp were produced by PolymathicAI/multiple_physics_pretraining's own code
(see their README: what each holds, how the weights were set, the tolerance).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from pdeforge.checkpoint import UnsafeCheckpointError
from pdeforge.datasets import DatasetMetadata, FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter
from pdeforge.operators.mpp import (
    FIELDS,
    AViT,
    AViTConfig,
    AViTForFields,
    RMSInstanceNorm2d,
    boundary_flags,
    field_labels,
    read_checkpoint,
    relative_position_buckets,
)

RTOL, ATOL = 1e-4, 1e-4  # the reference README's tolerance (the original's own 1- vs 2-thread spread: 5e-6)
IO_FILES = ("tiny_io", "tiny_resize_io")

# tensors that provably do not influence the output (reference README): the unused bias of every RMS instance norm,
# and the key-norm biases (the same vector added to every key shifts all logits of a query alike)
INERT_RMS_BIASES = {
    *(f"embed.in_proj.{i}.bias" for i in (1, 4, 7)),
    *(f"debed.out_proj.{i}.bias" for i in (1, 4)),
    *(f"blocks.{b}.spatial.{n}.bias" for b in (0, 1) for n in ("norm1", "norm2", "mlp_norm")),
}
INERT_KEY_BIASES = {f"blocks.{b}.{part}.knorm.bias" for b in (0, 1) for part in ("spatial", "temporal")}


@pytest.fixture(scope="session")
def ref_dir(reference_dir: Path) -> Path:
    return reference_dir / "mpp"


@pytest.fixture(scope="session")
def tiny_folder(ref_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny reference checkpoint as a pdeforge AViT folder (config.json + model.safetensors)."""
    folder = tmp_path_factory.mktemp("avit_tiny")
    shutil.copy(ref_dir / "tiny_config.json", folder / "config.json")
    shutil.copy(ref_dir / "tiny_model.safetensors", folder / "model.safetensors")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_folder: Path) -> AViT:
    return AViT.from_pretrained(tiny_folder).eval()


@pytest.fixture(scope="session")
def tiny_state(ref_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(ref_dir / "tiny_model.safetensors")


def _run(model: AViT, io: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(io["x"], io["state_labels"], io["bcs"])


# ------------------------------------------------------------------------------------------------ layout
def test_Ti_state_dict_keys_shapes_order_and_count(ref_dir: Path) -> None:
    ref = json.loads((ref_dir / "Ti_state_dict.json").read_text())
    config = AViTConfig.size("Ti")
    assert config.to_dict() == ref["config"]  # the released size's build_avit arguments, key for key
    model = AViT(config)
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()] == [
        e[:3] for e in ref["state_dict"]
    ]
    assert len(ref["state_dict"]) == 439 and not list(model.buffers())
    assert sum(p.numel() for p in model.parameters()) == ref["n_parameters"] == 7_285_884
    by_top = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert by_top == ref["n_parameters_by_top_module"]


@pytest.mark.parametrize("size", ["S", "B", "L"])
def test_released_sizes_parameter_counts(ref_dir: Path, size: str) -> None:
    other = json.loads((ref_dir / "Ti_state_dict.json").read_text())["other_sizes"][size]
    assert AViTConfig.size(size).to_dict() == other["config"]
    with torch.device("meta"):
        model = AViT(AViTConfig.size(size))
    assert sum(p.numel() for p in model.parameters()) == other["n_parameters"]


def test_tiny_state_dict_matches_reference(ref_dir: Path, tiny_model: AViT, tiny_state: dict) -> None:
    ref = json.loads((ref_dir / "tiny_state_dict.json").read_text())
    assert [[k, list(v.shape)] for k, v in tiny_model.state_dict().items()] == [e[:2] for e in ref["state_dict"]]
    assert sum(p.numel() for p in tiny_model.parameters()) == ref["n_parameters"] == 10_717
    assert all(torch.equal(v, tiny_state[k]) for k, v in tiny_model.state_dict().items())


# ------------------------------------------------------------------------------------------ reference I/O
@pytest.mark.parametrize("name", IO_FILES)
def test_tiny_reference_outputs(ref_dir: Path, tiny_model: AViT, name: str) -> None:
    io = load_file(ref_dir / f"{name}.safetensors")
    out = _run(tiny_model, io)
    assert out.shape == io["output"].shape
    torch.testing.assert_close(out, io["output"], rtol=RTOL, atol=ATOL)
    # the boundary flags and the label order are live: each changes the output by far more than the tolerance
    flipped = {**io, "bcs": io["bcs"].flip(1)}
    relabelled = {**io, "state_labels": io["state_labels"].flip(1)}
    for other in (flipped, relabelled, {**io, "bcs": torch.zeros_like(io["bcs"])}):
        assert (_run(tiny_model, other) - io["output"]).abs().max() > 0.5


@pytest.mark.parametrize("name", IO_FILES)
def test_tiny_reference_outputs_in_float64(ref_dir: Path, tiny_folder: Path, name: str) -> None:
    """The original in float64 is within 9.2e-6 of the stored float32 outputs (README); so must this be."""
    io = load_file(ref_dir / f"{name}.safetensors")
    model = AViT.from_pretrained(tiny_folder).double().eval()
    out = _run(model, {**io, "x": io["x"].double()})
    torch.testing.assert_close(out, io["output"].double(), rtol=RTOL, atol=ATOL)
    assert (out - io["output"]).abs().max() < 2e-5


def test_public_names() -> None:
    from pdeforge.operators import AViT as A
    from pdeforge.operators import AViTConfig as C

    assert (A, C) == (AViT, AViTConfig)


# ----------------------------------------------------------------------------------- released file formats
def _ddp(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in state.items()}


def _training_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """What the original's train_basic.py saves: model_state, an optimizer state (after one step), epoch, iters."""
    layer = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-3, betas=(0.9, 0.99))
    layer(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"iters": 40000, "epoch": 20, "model_state": state, "optimizer_state_dict": opt.state_dict()}


@pytest.mark.parametrize(
    "form",
    ["bare.pth", "ddp.pth", "training.tar", "training_ddp.tar", "ddp.safetensors", "folder_pth"],
)
def test_released_formats_load_exactly(
    ref_dir: Path, tiny_state: dict, tiny_model: AViT, tmp_path: Path, form: str
) -> None:
    config = json.loads((ref_dir / "tiny_config.json").read_text())
    path = tmp_path / form
    if form == "bare.pth":
        torch.save(tiny_state, path)
    elif form == "ddp.pth":
        torch.save(_ddp(tiny_state), path)
    elif form == "training.tar":
        torch.save(_training_checkpoint(tiny_state), path)
    elif form == "training_ddp.tar":
        torch.save(_training_checkpoint(_ddp(tiny_state)), path)
    elif form == "ddp.safetensors":
        save_file(_ddp(tiny_state), path)
    else:  # a folder with config.json and a pickled model.pth
        path.mkdir()
        shutil.copy(ref_dir / "tiny_config.json", path / "config.json")
        torch.save(_ddp(tiny_state), path / "model.pth")
        config = None
    assert read_checkpoint(path).keys() == tiny_state.keys()
    model = AViT.from_pretrained(path, config=config).eval()
    got = model.state_dict()
    assert got.keys() == tiny_state.keys() and all(torch.equal(got[k], tiny_state[k]) for k in got)
    io = load_file(ref_dir / "tiny_io.safetensors")
    assert torch.equal(_run(model, io), _run(tiny_model, io))
    if config is not None:  # the same with the config as a config.json path
        (tmp_path / "c.json").write_text(json.dumps(config))
        assert torch.equal(
            AViT.from_pretrained(path, config=tmp_path / "c.json").space_bag.weight, got["space_bag.weight"]
        )


def test_released_Ti_training_checkpoint_loads_by_size_name(tmp_path: Path) -> None:
    """A Ti-sized training checkpoint (DDP keys, optimizer state) as the released `MPP_AViT_Ti` files: size="Ti"."""
    torch.manual_seed(0)
    source = AViT(AViTConfig.size("Ti"))
    state = {k: v.detach().clone() for k, v in source.state_dict().items()}
    torch.save(_training_checkpoint(_ddp(state)), tmp_path / "MPP_AViT_Ti")
    model = AViT.from_pretrained(tmp_path / "MPP_AViT_Ti", size="Ti")
    assert model.config == AViTConfig.size("Ti")
    got = model.state_dict()
    assert list(got) == list(state) and all(torch.equal(got[k], state[k]) for k in state)
    with pytest.raises(ValueError, match=r"space_bag\.weight: the model expects \(96, 12\).*size 'Ti'"):  # says what
        AViT.from_pretrained(tmp_path / "MPP_AViT_Ti", size="S")


class _Payload:
    """Unpickling this calls a function: what a malicious checkpoint would do."""

    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run() -> str:
        _Payload.ran = True
        return "ran"


def test_refuses_pickles_that_are_not_plain_tensors(tiny_state: dict, tmp_path: Path) -> None:
    torch.save({**_training_checkpoint(tiny_state), "extra": _Payload()}, tmp_path / "evil.tar")
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.tar: refused to load.*GLOBAL") as err:
        AViT.from_pretrained(tmp_path / "evil.tar", size="Ti")
    assert "\n" not in str(err.value) and not _Payload.ran
    # plain containers, but not a state dict of tensors
    torch.save({"model_state": {"space_bag.weight": [1.0, 2.0]}}, tmp_path / "list.tar")
    with pytest.raises(ValueError, match=r"list\.tar: 'model_state': .*space_bag\.weight are not tensors"):
        read_checkpoint(tmp_path / "list.tar")


def test_loading_errors(ref_dir: Path, tiny_folder: Path, tiny_state: dict, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no AViT weights at"):
        AViT.from_pretrained(tmp_path / "absent")
    save_file(tiny_state, tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match=r"without a config: pass size=.*embed_dim 16, num_heads 2"):
        AViT.from_pretrained(tmp_path / "w.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty has no weights: expected model\.safetensors"):
        AViT.from_pretrained(tmp_path / "empty")
    with pytest.raises(ValueError, match="size or config, not both"):
        AViT.from_pretrained(tiny_folder, size="Ti", config=AViTConfig.tiny())

    config = json.loads((ref_dir / "tiny_config.json").read_text())
    missing = {k: v for k, v in tiny_state.items() if k != "debed.out_bias"}
    save_file(missing, tmp_path / "missing.safetensors")
    with pytest.raises(KeyError, match=r"1 missing, 0 unexpected.*debed\.out_bias"):
        AViT.from_pretrained(tmp_path / "missing.safetensors", config=config)
    save_file({**tiny_state, "blocks.7.bogus": torch.zeros(1)}, tmp_path / "extra.safetensors")
    with pytest.raises(KeyError, match=r"0 missing, 1 unexpected.*blocks\.7\.bogus"):
        AViT.from_pretrained(tmp_path / "extra.safetensors", config=config)
    wrong = {**tiny_state, "blocks.1.spatial.mlp.fc1.weight": torch.zeros(64, 15)}
    save_file(wrong, tmp_path / "shape.safetensors")
    with pytest.raises(ValueError, match=r"blocks\.1\.spatial\.mlp\.fc1\.weight.*expects \(64, 16\).*\(64, 15\)"):
        AViT.from_pretrained(tmp_path / "shape.safetensors", config=config)
    with pytest.raises(ValueError, match=r"space_bag\.weight.*expects \(4, 4\).*\(4, 5\)"):  # vocabularies shrink not
        AViT.from_pretrained(tiny_folder, n_states=4)

    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(tiny_folder / "model.safetensors", bad / "model.safetensors")
    (bad / "config.json").write_text(json.dumps({**config, "learning_rate": 1e-3}))
    with pytest.raises(ValueError, match=r"bad/config\.json: unknown keys \['learning_rate'\]"):
        AViT.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({**config, "bias_type": "continuous"}))
    with pytest.raises(ValueError, match=r"bias_type = 'continuous', expected one of \['rel', 'none'\]"):
        AViT.from_pretrained(bad)
    (bad / "config.json").write_text(json.dumps({**config, "patch_size": [8, 8]}))
    with pytest.raises(ValueError, match=r"patch_size = \[8, 8\], expected \[16, 16\]"):
        AViT.from_pretrained(bad)
    with pytest.raises(ValueError, match="unknown AViT size 'XL'"):
        AViTConfig.size("XL")


@pytest.mark.parametrize("safe", [True, False])
def test_save_load_round_trip(ref_dir: Path, tiny_model: AViT, tmp_path: Path, safe: bool) -> None:
    folder = tiny_model.save_pretrained(tmp_path / "out", safe_serialization=safe)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors" if safe else "model.pth"]
    assert json.loads((folder / "config.json").read_text()) == json.loads((ref_dir / "tiny_config.json").read_text())
    again = AViT.from_pretrained(folder).eval()
    io = load_file(ref_dir / "tiny_resize_io.safetensors")
    assert torch.equal(_run(again, io), _run(tiny_model, io))
    # a non-default drop_path is kept (and only then written)
    tuned = AViT(AViTConfig.tiny(drop_path=0.1)).save_pretrained(tmp_path / "dp")
    assert json.loads((tuned / "config.json").read_text())["drop_path"] == 0.1
    assert AViT.from_pretrained(tuned).config.drop_path == 0.1


def test_larger_vocabulary_keeps_the_checkpoint_columns(tiny_folder: Path, tiny_state: dict) -> None:
    """n_states 5 -> 7 as the original's expand_projections: old columns kept, new ones fresh, nothing else moves."""
    torch.manual_seed(0)
    model = AViT.from_pretrained(tiny_folder, n_states=7)
    state = model.state_dict()
    assert state["space_bag.weight"].shape == (4, 7) and state["debed.out_kernel"].shape == (4, 7, 4, 4)
    assert torch.equal(state["space_bag.weight"][:, :5], tiny_state["space_bag.weight"])
    assert torch.equal(state["debed.out_kernel"][:, :5], tiny_state["debed.out_kernel"])
    assert torch.equal(state["debed.out_bias"][:5], tiny_state["debed.out_bias"])
    assert not torch.equal(state["space_bag.weight"][:, 5:], torch.zeros(4, 2))
    same = [k for k in tiny_state if k not in ("space_bag.weight", "debed.out_kernel", "debed.out_bias")]
    assert all(torch.equal(state[k], tiny_state[k]) for k in same)
    out = model(torch.randn(3, 1, 2, 32, 32), torch.tensor([[5, 6]]), torch.tensor([[0, 0]]))  # the new fields
    assert out.shape == (1, 2, 32, 32) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------- facts easy to get wrong
def test_relative_position_buckets() -> None:
    """T5 buckets with max distance 32 (not 128), the direction offset, and the original's periodic remap."""
    b = relative_position_buckets(40, periodic=False)
    # key after the query (r = j - i > 0, n = -r < 0) -> offset 16; exact below 8, then logarithmic, capped at 15
    assert [b[0, j].item() for j in (0, 1, 7, 8, 11, 15, 16, 31, 32, 39)] == [0, 17, 23, 24, 25, 27, 28, 31, 31, 31]
    assert [b[j, 0].item() for j in (1, 7, 8, 11, 16, 31, 32)] == [1, 7, 8, 9, 12, 15, 15]
    for n in range(8, 40):  # 8 + floor(ln(n/8) / ln(4) * 8), at most 15
        assert b[n, 0].item() == min(15, 8 + math.floor(math.log(n / 8) / math.log(4) * 8))
    # periodic, even length 4: r = 3 wraps to -1, r = -3 to 1 (h = 2)
    p4 = relative_position_buckets(4, periodic=True)
    assert p4[0].tolist() == [0, 17, 18, 1] and p4[3].tolist() == [17, 2, 1, 0]
    # periodic, odd length 5 (h = 2): r = 3 -> 3 mod -2 = -1, r = 4 -> 4 mod -2 = 0 (not -1: the original's rule)
    p5 = relative_position_buckets(5, periodic=True)
    assert p5[0].tolist() == [0, 17, 18, 1, 0] and p5[4].tolist() == [0, 17, 2, 1, 0]
    assert relative_position_buckets(1, periodic=True).tolist() == [[0]]


def test_rms_instance_norm_divides_by_the_bessel_std_without_centring() -> None:
    norm = RMSInstanceNorm2d(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, -0.5]))
        norm.bias.fill_(7.0)  # unused, as in the original
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) + 3.0
    xs = x.flatten(2)
    std = ((xs - xs.mean(-1, keepdim=True)) ** 2).sum(-1) / (xs.shape[-1] - 1)
    want = x / (std.sqrt()[..., None, None] + 1e-8) * torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(norm.double()(x), want, rtol=1e-12, atol=1e-12)


def test_output_follows_affine_changes_of_each_channel(tiny_model: AViT, ref_dir: Path) -> None:
    """The in-forward normalisation: output(a x + b) = a output(x) + b per channel, for a > 0."""
    io = load_file(ref_dir / "tiny_io.safetensors")
    a, b = torch.tensor([3.0, 0.25])[:, None, None], torch.tensor([-40.0, 2.0])[:, None, None]
    out = _run(tiny_model, {**io, "x": a * io["x"] + b})
    torch.testing.assert_close(out, a * io["output"] + b, rtol=1e-4, atol=1e-3)


def test_forward_input_errors(tiny_model: AViT) -> None:
    x, labels, bcs = torch.randn(3, 2, 2, 32, 32), torch.tensor([[1, 2], [1, 2]]), torch.tensor([[1, 1], [1, 1]])
    with pytest.raises(ValueError, match=r"\(T, B, C, H, W\) \(time first\).*x\[:, None\]"):
        tiny_model(x[:, 0], labels, bcs)
    with pytest.raises(ValueError, match=r"40 x 32 grid: H and W must be multiples of 16"):
        tiny_model(torch.randn(3, 2, 2, 40, 32), labels, bcs)
    with pytest.raises(ValueError, match=r"16 x 16 grid.*at least two tokens"):
        tiny_model(torch.randn(3, 2, 2, 16, 16), labels, bcs)
    with pytest.raises(ValueError, match=r"state_labels of shape \(B, C=2\)"):
        tiny_model(x, torch.tensor([[1, 2, 3]] * 2), bcs)
    with pytest.raises(ValueError, match="state_labels differ between samples"):
        tiny_model(x, torch.tensor([[1, 2], [2, 1]]), bcs)
    with pytest.raises(ValueError, match=r"state_labels \[1, 5\]: expected 2 distinct indices in \[0, n_states=5\)"):
        tiny_model(x, torch.tensor([[1, 5]] * 2), bcs)
    with pytest.raises(ValueError, match=r"bcs \[2, 0\]: expected 0 \(not periodic\) or 1"):
        tiny_model(x, labels, torch.tensor([[2, 0]] * 2))
    with pytest.raises(TypeError, match="float64"):
        tiny_model(x.double(), labels, bcs)
    with torch.no_grad():  # a (C,) label vector and a (2,) bcs row are the batch's rows
        assert torch.equal(tiny_model(x, labels[0], bcs[0]), tiny_model(x, labels, bcs))


# ------------------------------------------------------------------------------- pdeforge samples
def _metadata(fields: tuple[str, ...], bcs: tuple[str, str] = ("periodic", "wall")) -> DatasetMetadata:
    return DatasetMetadata(
        dataset_name="d", field_names=fields, constant_field_names=(), scalar_names=(), spatial_dims=("x", "y"),
        resolution=(32, 48), domain_lengths=(1.0, 1.0), dt=0.1, boundary_conditions=bcs,
    )  # fmt: skip


def test_field_vocabulary_and_boundary_flags() -> None:
    assert len(FIELDS) == 12 and FIELDS[0] == ("swe", "h") and FIELDS[9] == ("compNS", "pressure")
    assert field_labels(("velocity_x", "velocity_y")) == [1, 2]  # incompressible
    assert field_labels(("density", "velocity_x", "velocity_y", "pressure")) == [8, 6, 7, 9]  # compressible
    assert field_labels(("h",)) == [0] and field_labels(("activator", "inhibitor")) == [4, 5]
    assert field_labels(("u", "v"), {"u": 4, "v": 5}) == [4, 5]
    with pytest.raises(ValueError, match=r"field 'vorticity' has no index.*field_indices=\{'vorticity': i\}"):
        field_labels(("vorticity",))
    with pytest.raises(ValueError, match=r"field 'u': index 12, expected an integer in \[0, n_states=12\)"):
        field_labels(("u",), {"u": 12})
    with pytest.raises(ValueError, match="share a vocabulary index"):
        field_labels(("h", "u"), {"u": 0})
    with pytest.raises(ValueError, match=r"field_indices names \['w'\]"):
        field_labels(("h",), {"w": 3})
    # bcs[0] is the last axis (W = y), bcs[1] the first (H = x)
    assert boundary_flags(("periodic", "wall")) == [0, 1] and boundary_flags(("open", "periodic")) == [1, 0]
    with pytest.raises(ValueError, match="2-D grids"):
        boundary_flags(("periodic",))


def test_channels_first_adapter_is_the_model_on_time_first_input(tiny_model: AViT) -> None:
    net = AViTForFields.from_metadata(tiny_model, _metadata(("u", "h")), field_indices={"u": 3})
    assert net.state_labels.tolist() == [3, 0] and net.bcs.tolist() == [0, 1]
    u = torch.randn(2, 3, 2, 32, 48)  # (B, T_in, C, H, W)
    with torch.no_grad():
        got = net.forward_batch({"input_fields": u})
        want = tiny_model(u.transpose(0, 1), torch.tensor([[3, 0]] * 2), torch.tensor([[0, 1]] * 2))
    assert got.shape == (2, 1, 2, 32, 48) and torch.equal(got[:, 0], want)
    with pytest.raises(ValueError, match=r"input_fields: expected \(B, T_in, C=2, H, W\), got \(3, 2, 32, 48\)"):
        net(u[0])
    assert list(net.state_dict()) == [f"model.{k}" for k in tiny_model.state_dict()]  # labels and bcs: no weights


def _waves(path: Path, n: int = 32) -> Path:
    """Three trajectories of a travelling wave in density, pressure and velocity on an n x n grid (periodic in x,
    walls in y), written in The Well's layout."""
    x, t = np.linspace(0, 1, n, endpoint=False), np.linspace(0, 1, 8)
    fields = (FieldSpec("density"), FieldSpec("pressure"), FieldSpec("velocity", order=1))
    schema = Schema("waves", coords={"x": x, "y": x}, time=t, fields=fields, boundary_conditions=("periodic", "wall"))
    xx, yy = np.meshgrid(x, x, indexing="ij")
    phases = np.random.default_rng(0).uniform(0, 2 * np.pi, (3, 2))
    w = [np.sin(2 * np.pi * (xx - 0.3 * t[:, None, None]) + a) * np.cos(2 * np.pi * yy + b) for a, b in phases]
    u = np.stack([np.stack([1 + 0.1 * v, 2 + 0.2 * v, v, -v], 1) for v in w]).astype("float32")  # (B, T, C, X, Y)
    with TrajectoryWriter(path, schema, n_trajectories=3) as writer:
        writer.write_channels(u)
    return path


def test_trains_on_samples_of_the_dataset_layer(tmp_path: Path) -> None:
    """TrajectoryDataset -> AViTForFields (labels and bcs from the metadata) -> MPP's normalised MSE: the prediction
    has the target's layout, every live tensor gets a gradient, and a small gradient step lowers the loss by
    lr * |grad|^2 (measured ratio 0.9999). On a 64 x 64 grid: 4 x 4 tokens (with 2 x 2 tokens the original's
    non-centring norms divide nearly constant channels by a tiny std, and the loss is far from linear even at
    lr 1e-6)."""
    ds = TrajectoryDataset(_waves(tmp_path / "waves.hdf5", n=64), n_steps_input=4, n_steps_output=1)
    batch = {k: v.double() for k, v in next(iter(DataLoader(ds, batch_size=6))).items() if v.is_floating_point()}
    torch.manual_seed(0)
    net = AViTForFields.from_metadata(AViT(AViTConfig.tiny(processor_blocks=1)), ds.metadata).double()
    assert net.state_labels.tolist() == [8, 9, 6, 7] and net.bcs.tolist() == [0, 1]  # compNS; periodic along H
    with torch.no_grad():  # layer scales of O(1) instead of 1e-6, so that every block counts
        for name, p in net.named_parameters():
            if "gamma" in name:
                p.fill_(0.5)

    def loss() -> torch.Tensor:  # MPP's training loss: MSE over space / mean square of the target, per sample and field
        pred, target = net.forward_batch(batch), batch["output_fields"]
        assert pred.shape == target.shape == (6, 1, 4, 64, 64)
        return ((pred - target) ** 2).mean((-2, -1)).div(1e-7 + target.pow(2).mean((-2, -1))).mean()

    before = loss()
    before.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    inert = {f"model.{n}" for n in INERT_RMS_BIASES if not n.startswith("blocks.1")}
    assert {n for n, g in grads.items() if g is None} == inert
    lr = 1e-4
    with torch.no_grad():
        predicted = lr * sum(g.pow(2).sum() for g in grads.values() if g is not None)
        for p in net.parameters():
            if p.grad is not None:
                p.sub_(lr * p.grad)
        after = loss()
    assert abs((before - after).item() / predicted.item() - 1) < 1e-3


# ---------------------------------------------------------------------------------------------- training
def test_gradients_reach_every_parameter_but_the_inert_ones(tiny_folder: Path) -> None:
    """Regression for blocks that are never used: every tensor gets a gradient except the 15 the README lists."""
    model = AViT.from_pretrained(tiny_folder).double().eval()  # eval: no stochastic depth (drop_path 0.2)
    x = torch.randn(4, 2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model(x, torch.tensor([[1, 4, 2]] * 2), torch.tensor([[1, 0]] * 2)).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert {n for n, g in grads.items() if g is None} == INERT_RMS_BIASES
    assert all(grads[n].abs().max() < 1e-10 for n in INERT_KEY_BIASES)
    live = {n for n, g in grads.items() if g is not None and g.abs().max() > 1e-6}
    assert live == set(grads) - INERT_RMS_BIASES - INERT_KEY_BIASES


def test_drop_path_in_training_only_and_checkpointing_changes_nothing(tiny_state: dict, ref_dir: Path) -> None:
    config = AViTConfig.from_dict(json.loads((ref_dir / "tiny_config.json").read_text()))
    io = load_file(ref_dir / "tiny_io.safetensors")
    model = AViT(config.replace(drop_path=0.5))
    model.load_state_dict(tiny_state)
    model.eval()
    torch.testing.assert_close(_run(model, io), io["output"], rtol=RTOL, atol=ATOL)
    model.train()
    torch.manual_seed(0)
    a = _run(model, io)
    torch.manual_seed(1)
    assert (a - _run(model, io)).abs().max() > 1e-2

    grads = []
    for checkpointing in (False, True):
        net = AViT(config.replace(gradient_checkpointing=checkpointing, drop_path=0.0)).train()
        net.load_state_dict(tiny_state)
        net(io["x"], io["state_labels"], io["bcs"]).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_learns_the_next_frame_of_the_dataset_layer(tmp_path: Path) -> None:
    """60 AdamW steps on one batch of 64 x 64 waves (about 10 s on one CPU thread): the normalised MSE falls from
    0.50 (the per-channel mean) to below 0.3 (measured 0.18)."""
    ds = TrajectoryDataset(_waves(tmp_path / "waves.hdf5", n=64), n_steps_input=4, n_steps_output=1)
    batch = next(iter(DataLoader(ds, batch_size=12)))
    torch.manual_seed(0)
    net = AViTForFields.from_metadata(AViT(AViTConfig.tiny()), ds.metadata)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        pred, target = net.forward_batch(batch), batch["output_fields"]
        loss = ((pred - target) ** 2).mean((-2, -1)).div(1e-7 + target.pow(2).mean((-2, -1))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.45 and losses[-1] < 0.3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
@pytest.mark.parametrize("name", IO_FILES)
def test_tiny_reference_outputs_on_cuda(ref_dir: Path, tiny_folder: Path, name: str, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # float32 as on the CPU
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    io = {k: v.cuda() for k, v in load_file(ref_dir / f"{name}.safetensors").items()}
    model = AViT.from_pretrained(tiny_folder).cuda().eval()
    torch.testing.assert_close(_run(model, io), io["output"], rtol=RTOL, atol=ATOL)
