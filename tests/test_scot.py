"""scOT (Poseidon): checkpoint compatibility with the original implementation, resampling, loss, I/O, fine-tuning.

The reference files in tests/reference/poseidon were produced by camlab-ethz/poseidon's own code.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pdeforge.operators.scot import (
    ConditionalLayerNorm,
    ScOT,
    ScOTConfig,
    finetune_parameter_groups,
    median_relative_l1,
    relative_l1,
    scot_loss,
    spectral_resample,
)

# The tiny model with O(1) weights amplifies float32 rounding (a 3e-8 relative input perturbation moves the output
# by 6e-5), so the convolution kernels' accumulation order shows: with oneDNN's AVX-512 kernels (this project's
# CPUs) the original code and pdeforge alike differ from the stored outputs by up to 6e-5; with its AVX2 kernels
# (DNNL_MAX_CPU_ISA=AVX2, what the machine that made the files ran) by 3.4e-6. So the reference outputs are
# checked at the issue's rtol 1e-4 / atol 1e-5 in a subprocess under AVX2 kernels, and in this process (any
# kernels) at atol 2e-4 elementwise plus a mean-error bound 20x below what any wrong tensor gives.
RTOL, ATOL, MEAN_ATOL = 1e-4, 2e-4, 1e-5

_UNDER_REFERENCE_KERNELS = """
import sys
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
from pdeforge.operators.scot import ScOT, scot_loss
ref, folder, out_file = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
torch.set_num_threads(int(sys.argv[4]))
model = ScOT.from_pretrained(folder).eval()
io, rs, lo = (load_file(ref / f"tiny_shift_{n}.safetensors") for n in ("io", "resample_io", "loss_io"))
with torch.no_grad():
    out = {"output": model(io["pixel_values"], io["time"]),
           "output_half": model(rs["pixel_values_half"], rs["time"]),
           "output_double": model(rs["pixel_values_double"], rs["time"])}
    out["loss"] = scot_loss(model(lo["pixel_values"], lo["time"]), lo["labels"], [0, 1, 2]).reshape(1)
save_file({k: v.contiguous() for k, v in out.items()}, out_file)
"""


@pytest.fixture(scope="session")
def ref_dir(reference_dir: Path) -> Path:
    return reference_dir / "poseidon"


@pytest.fixture(scope="session")
def tiny_folder(ref_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny reference checkpoint laid out as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny_shift")
    shutil.copy(ref_dir / "tiny_shift_config.json", folder / "config.json")
    shutil.copy(ref_dir / "tiny_shift_model.safetensors", folder / "model.safetensors")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_folder: Path) -> ScOT:
    return ScOT.from_pretrained(tiny_folder).eval()


def _close(out: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(out, ref, rtol=RTOL, atol=ATOL)
    assert (out - ref).abs().mean().item() < MEAN_ATOL


def _perturbed(config: ScOTConfig, seed: int = 0, scale: float = 0.3) -> ScOT:
    """A model whose every tensor is O(scale) so that each one changes the output."""
    torch.manual_seed(seed)
    model = ScOT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


# ------------------------------------------------------------------------------------------------ layout
def test_poseidon_T_state_dict_keys_shapes_order_and_count(ref_dir: Path) -> None:
    ref = json.loads((ref_dir / "poseidon_T_state_dict.json").read_text())
    with torch.device("meta"):
        model = ScOT(ScOTConfig.poseidon_T())
    got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert got == [[k, shape] for k, shape, _, _ in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["n_parameters"] == 20_774_444
    by_top = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert by_top == ref["n_parameters_by_top_module"]


def test_tiny_state_dict_and_presets(ref_dir: Path, tiny_model: ScOT) -> None:
    ref = json.loads((ref_dir / "tiny_shift_state_dict.json").read_text())
    assert [[k, list(v.shape)] for k, v in tiny_model.state_dict().items()] == [e[:2] for e in ref["state_dict"]]
    assert sum(p.numel() for p in tiny_model.parameters()) == ref["n_parameters"] == 363_082
    # the Poseidon paper reports 158M and 629M parameters for B and L
    for preset, millions in ((ScOTConfig.poseidon_B, 158), (ScOTConfig.poseidon_L, 629)):
        with torch.device("meta"):
            n = sum(p.numel() for p in ScOT(preset()).parameters())
        assert round(n / 1e6) == millions


def test_window_and_shift_geometry_matches_original(ref_dir: Path) -> None:
    """Effective window = min(window, grid); shift only where grid > window; decoder blocks mirrored."""
    for name, config in (("poseidon_T", ScOTConfig.poseidon_T()), ("tiny_shift", None)):
        ref = json.loads((ref_dir / f"{name}_state_dict.json").read_text())
        if config is None:
            config = ScOTConfig.from_dict(ref["config"])
        with torch.device("meta"):
            model = ScOT(config)
        modules = dict(model.named_modules())
        for g in ref["layer_geometry_after_forward"]:
            block = modules[g["module"]]
            assert (block.window, block.shift) == (g["window_size"], g["shift_size"]), g["module"]
            assert block.grid == g["input_resolution"][0]
            assert list(block.attention.self.relative_coords_table.shape) == g["relative_coords_table_shape"]


# ------------------------------------------------------------------------------------------ reference I/O
def test_tiny_reference_outputs(ref_dir: Path, tiny_model: ScOT) -> None:
    io = load_file(ref_dir / "tiny_shift_io.safetensors")
    with torch.no_grad():
        out = tiny_model(io["pixel_values"], io["time"])
    assert out.shape == (2, 2, 32, 32)
    _close(out, io["output"])
    # a different time gives a different answer: the conditioning is live
    with torch.no_grad():
        other = tiny_model(io["pixel_values"], io["time"].flip(0))
    assert (other - io["output"]).abs().max() > 1e-2


def test_tiny_reference_resampled_outputs(ref_dir: Path, tiny_model: ScOT) -> None:
    io = load_file(ref_dir / "tiny_shift_resample_io.safetensors")
    for which, size in (("half", 16), ("double", 64)):
        with torch.no_grad():
            out = tiny_model(io[f"pixel_values_{which}"], io["time"])
        assert out.shape == (2, 2, size, size)
        _close(out, io[f"output_{which}"])


@pytest.mark.parametrize("threads", [1, 2])
def test_tiny_reference_at_the_issue_tolerance_under_the_reference_kernels(
    ref_dir: Path, tiny_folder: Path, tmp_path: Path, threads: int
) -> None:
    """Outputs, resampled outputs and loss within rtol 1e-4 / atol 1e-5 (measured max 3.4e-6) with oneDNN limited
    to AVX2 kernels, as on the machine that made the files (a no-op on CPUs without AVX-512)."""
    out_file = tmp_path / "out.safetensors"
    env = dict(os.environ, DNNL_MAX_CPU_ISA="AVX2", OMP_NUM_THREADS=str(threads))
    r = subprocess.run(
        [sys.executable, "-c", _UNDER_REFERENCE_KERNELS, str(ref_dir), str(tiny_folder), str(out_file), str(threads)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = load_file(out_file)
    io, rs, lo = (load_file(ref_dir / f"tiny_shift_{n}.safetensors") for n in ("io", "resample_io", "loss_io"))
    for name, ref in (
        ("output", io["output"]),
        ("output_half", rs["output_half"]),
        ("output_double", rs["output_double"]),
        ("loss", lo["loss"].reshape(1)),
    ):
        torch.testing.assert_close(got[name], ref, rtol=1e-4, atol=1e-5, msg=name)


def test_tiny_reference_loss(ref_dir: Path, tiny_model: ScOT) -> None:
    io = load_file(ref_dir / "tiny_shift_loss_io.safetensors")
    with torch.no_grad():
        out = tiny_model(io["pixel_values"], io["time"])
    loss = scot_loss(out, io["labels"], [0, 1, 2])
    torch.testing.assert_close(loss, io["loss"].reshape(()), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tiny_model.loss(out, io["labels"]), loss)
    # with the stored prediction the loss is the stored loss to float32 rounding
    torch.testing.assert_close(
        scot_loss(io["output"], io["labels"], [0, 1, 2]), io["loss"].reshape(()), rtol=1e-6, atol=1e-7
    )


# ------------------------------------------------------------------------------------ resampling and loss
def test_spectral_resample_is_exact_on_band_limited_fields() -> None:
    def field(n: int, m: int) -> torch.Tensor:
        y, x = torch.meshgrid(
            torch.arange(n, dtype=torch.float64) / n, torch.arange(m, dtype=torch.float64) / m, indexing="ij"
        )
        return (torch.sin(2 * math.pi * (3 * x + y)) + 0.5 * torch.cos(2 * math.pi * 5 * y) + 0.25)[None, None]

    u16 = field(16, 16)
    torch.testing.assert_close(spectral_resample(u16, (64, 64)), field(64, 64), rtol=0, atol=1e-12)
    torch.testing.assert_close(spectral_resample(field(64, 64), (16, 16)), u16, rtol=0, atol=1e-12)
    torch.testing.assert_close(spectral_resample(u16, (32, 48)), field(32, 48), rtol=0, atol=1e-12)
    # truncation removes exactly the modes above the target Nyquist limit
    hi = field(32, 32) + torch.cos(2 * math.pi * 12 * torch.arange(32, dtype=torch.float64) / 32)
    torch.testing.assert_close(spectral_resample(hi, (16, 16)), field(16, 16), rtol=0, atol=1e-12)
    # up then down is the identity for fields without a Nyquist component
    noise_hat = torch.fft.fft2(torch.randn(2, 3, 16, 16, dtype=torch.float64))
    noise_hat[..., 8, :] = 0
    noise_hat[..., :, 8] = 0
    noise = torch.fft.ifft2(noise_hat).real
    torch.testing.assert_close(spectral_resample(spectral_resample(noise, (64, 64)), (16, 16)), noise)
    # Poseidon keeps only the -N/2 coefficient when truncating: a cosine at the target Nyquist comes out halved
    n = torch.arange(64, dtype=torch.float64)
    nyquist = torch.cos(math.pi * n[:, None] / 4) * torch.ones(64, dtype=torch.float64)
    torch.testing.assert_close(spectral_resample(nyquist, (16, 16))[::1, 0], 0.5 * torch.cos(math.pi * n[:16]))


def test_loss_and_metric_values() -> None:
    target = torch.ones(2, 3, 4, 4, dtype=torch.float64)
    target[:, 1:] = 2.0
    pred = target.clone()
    pred[:, 0] += 0.5  # group 0 (channel 0): relative L1 0.5 / 1
    pred[:, 1:] -= 0.2  # group 1 (channels 1, 2): relative L1 0.2 / 2
    torch.testing.assert_close(scot_loss(pred, target, [0, 1, 3]), torch.tensor((0.5 + 0.1) / 2, dtype=torch.float64))
    torch.testing.assert_close(scot_loss(pred, target), torch.tensor((0.5 + 2 * 0.2) / 3, dtype=torch.float64))
    expected_mse = (0.25 / 1 + 0.04 / 4) / 2
    torch.testing.assert_close(scot_loss(pred, target, [0, 1, 3], p=2), torch.tensor(expected_mse, dtype=torch.float64))
    # per-sample relative L1 in percent, median over samples (mean of the two middle ones for an even count)
    t = torch.ones(4, 1, 2, 2, dtype=torch.float64)
    p = t * torch.tensor([1.1, 1.2, 1.5, 2.0], dtype=torch.float64).reshape(4, 1, 1, 1)
    torch.testing.assert_close(relative_l1(p, t), torch.tensor([10.0, 20.0, 50.0, 100.0], dtype=torch.float64))
    torch.testing.assert_close(median_relative_l1(p, t), torch.tensor(35.0, dtype=torch.float64))
    torch.testing.assert_close(median_relative_l1(p[:3], t[:3]), torch.tensor(20.0, dtype=torch.float64))
    both = torch.cat([p, t], dim=1)
    torch.testing.assert_close(
        median_relative_l1(both, torch.cat([t, t], 1), [0, 1, 2]), torch.tensor([35.0, 0.0], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="channel_slice_list"):
        scot_loss(pred, target, [0, 2, 1])


# ------------------------------------------------------------------------------------------- round trips
ROUND_TRIP_CONFIGS = {
    "window3_padded_windows": dict(window_size=3),
    "no_residual_blocks": dict(skip_connections=(0, 0, 0, 0), depths=(1, 2, 3, 2)),
    "plain_norm_resnet": dict(use_conditioning=False, residual_model="resnet"),
    "three_stages_abs_pos_residual": dict(
        depths=(2, 2, 2),
        num_heads=(1, 2, 4),
        skip_connections=(1, 1, 0),
        use_absolute_embeddings=True,
        learn_residual=True,
    ),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP_CONFIGS))
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    config = ScOTConfig.tiny(num_channels=3, num_out_channels=2, image_size=16, **ROUND_TRIP_CONFIGS[name])
    model = _perturbed(config)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0.3, 0.9])
    with torch.no_grad():
        expected = model(x, t)
    for safe in (True, False):
        folder = model.save_pretrained(tmp_path / f"m{safe}", safe_serialization=safe)
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(["config.json", "model.safetensors" if safe else "pytorch_model.bin"])
        loaded = ScOT.from_pretrained(folder).eval()
        assert loaded.config == config
        with torch.no_grad():
            assert torch.equal(loaded(x, t), expected)
    if name == "no_residual_blocks":
        assert not any(k.startswith("residual_blocks") for k in model.state_dict())


def test_config_json_keeps_unknown_keys_and_checks_derived(tiny_folder: Path, tmp_path: Path) -> None:
    raw = json.loads((tiny_folder / "config.json").read_text())
    config = ScOTConfig.from_json(tiny_folder)
    assert config.extra == {"torch_dtype": "float32", "transformers_version": "4.29.2"}
    assert config.to_dict() == raw  # every key of the original file survives unchanged
    with pytest.raises(ValueError, match="hidden_size"):
        ScOTConfig.from_dict({**raw, "hidden_size": 65})
    with pytest.raises(KeyError, match="depths"):
        ScOTConfig.from_dict({k: v for k, v in raw.items() if k != "depths"})
    with pytest.raises(ValueError, match="num_heads"):
        ScOTConfig.tiny(num_heads=(1, 2, 4))


class _Payload:
    """An object whose unpickling would run code: weights_only loading must refuse it."""

    ran = False

    def __reduce__(self):
        return (_Payload._mark, ())

    @staticmethod
    def _mark() -> str:
        _Payload.ran = True
        return "ran"


def test_loading_errors(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model folder"):
        ScOT.from_pretrained(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        ScOT.from_pretrained(tmp_path / "empty")
    shutil.copy(tiny_folder / "config.json", tmp_path / "empty" / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights"):
        ScOT.from_pretrained(tmp_path / "empty")

    state = load_file(tiny_folder / "model.safetensors")

    def folder_with(tensors: dict, name: str) -> Path:
        f = tmp_path / name
        f.mkdir()
        shutil.copy(tiny_folder / "config.json", f / "config.json")
        save_file(tensors, f / "model.safetensors")
        return f

    missing = {k: v for k, v in state.items() if k != "patch_recovery.mixup.weight"}
    with pytest.raises(KeyError, match=r"1 missing.*patch_recovery\.mixup\.weight"):
        ScOT.from_pretrained(folder_with(missing, "missing"))
    extra = {**state, "decoder.layers.9.bogus": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"1 unexpected.*decoder\.layers\.9\.bogus"):
        ScOT.from_pretrained(folder_with(extra, "unexpected"))
    wrong = {**state, "encoder.layers.1.downsample.reduction.weight": torch.zeros(32, 63)}
    with pytest.raises(ValueError, match=r"encoder\.layers\.1\.downsample\.reduction\.weight.*\(32, 64\).*\(32, 63\)"):
        ScOT.from_pretrained(folder_with(wrong, "shape"))

    pickled = tmp_path / "pickle"
    pickled.mkdir()
    shutil.copy(tiny_folder / "config.json", pickled / "config.json")
    torch.save({"state": _Payload()}, pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        ScOT.from_pretrained(pickled)
    assert not _Payload.ran


def test_forward_input_errors(tiny_model: ScOT) -> None:
    x, t = torch.randn(2, 3, 32, 32), torch.ones(2)
    with pytest.raises(ValueError, match=r"expected 3 input channels"):
        tiny_model(torch.randn(2, 4, 32, 32), t)
    with pytest.raises(ValueError, match=r"x\[None\]"):
        tiny_model(x[0], t)
    with pytest.raises(ValueError, match=r"time of shape \(2,\)"):
        tiny_model(x, torch.ones(3))
    with pytest.raises(ValueError, match="time-conditioned"):
        tiny_model(x)
    with pytest.raises(TypeError, match="float64"):
        tiny_model(x.double(), t)
    with torch.no_grad():  # a scalar time is broadcast to the batch
        assert torch.equal(tiny_model(x, 0.5), tiny_model(x, torch.full((2,), 0.5)))


# ------------------------------------------------------------------------------------------- fine-tuning
def test_finetune_reinitialises_exactly_the_channel_tensors(tiny_folder: Path) -> None:
    ckpt = load_file(tiny_folder / "model.safetensors")
    torch.manual_seed(1)
    model = ScOT.from_pretrained(tiny_folder, num_channels=5, num_out_channels=3)
    assert (model.config.num_channels, model.config.num_out_channels) == (5, 3)
    assert model.config.channel_slice_list_normalized_loss == (0, 3)
    state = model.state_dict()
    changed = {k for k in state if state[k].shape != ckpt[k].shape or not torch.equal(state[k], ckpt[k])}
    assert changed == {
        "embeddings.patch_embeddings.projection.weight",
        "patch_recovery.projection.weight",
        "patch_recovery.projection.bias",
        "patch_recovery.mixup.weight",
    }
    # fresh tensors have the model's initialisation (N(0, 0.02), zero bias), not the checkpoint's O(1) values
    for key in changed - {"patch_recovery.projection.bias"}:
        assert 0.01 < state[key].std().item() < 0.03, key
    assert torch.equal(state["patch_recovery.projection.bias"], torch.zeros(3))
    assert all(ckpt[key].std() > 0.1 for key in changed - {"patch_recovery.projection.bias"})
    out = model(torch.randn(2, 5, 32, 32), torch.ones(2))
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()

    # only new outputs: the embedding keeps all of the checkpoint
    only_out = ScOT.from_pretrained(tiny_folder, num_out_channels=1).state_dict()
    changed = {k for k in only_out if only_out[k].shape != ckpt[k].shape or not torch.equal(only_out[k], ckpt[k])}
    assert changed == {
        "patch_recovery.projection.weight",
        "patch_recovery.projection.bias",
        "patch_recovery.mixup.weight",
    }


def test_finetune_parameter_groups_partition(tiny_model: ScOT) -> None:
    groups = finetune_parameter_groups(tiny_model)
    assert [(g["name"], g["lr"]) for g in groups] == [
        ("backbone", 5e-5),
        ("embedding_recovery", 5e-4),
        ("time_embedding", 5e-4),
    ]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in tiny_model.parameters()}
    names = {id(p): n for n, p in tiny_model.named_parameters()}
    emb = {names[id(p)] for p in groups[1]["params"]}
    assert emb == {n for n in names.values() if n.startswith(("embeddings.", "patch_recovery."))}
    cond = {
        f"{mn}.{pn}"
        for mn, m in tiny_model.named_modules()
        if isinstance(m, ConditionalLayerNorm)
        for pn, _ in m.named_parameters()
    }
    assert {names[id(p)] for p in groups[2]["params"]} == cond - emb
    assert len(groups[2]["params"]) == 4 * (2 * 16 + 3 + 3 + 4)  # 2 per block, (un)merging, 4 ConvNeXt
    opt = torch.optim.AdamW(groups)
    assert [g["lr"] for g in opt.param_groups] == [5e-5, 5e-4, 5e-4]


# ---------------------------------------------------------------------------------------------- training
def test_gradients_reach_every_parameter() -> None:
    """Regression for models whose blocks are never used: every tensor of every block gets a gradient."""
    # image 32 / patch 2: the deepest grid is 2 x 2 (a 1 x 1 window would make q, k and the bias inert)
    config = ScOTConfig.tiny(
        num_channels=2, num_out_channels=2, skip_connections=(1, 1, 1, 1), channel_slice_list_normalized_loss=(0, 1, 2)
    )
    model = _perturbed(config, scale=0.2).double().train()
    x, t = torch.randn(2, 2, 32, 32, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    model.loss(model(x, t), torch.randn(2, 2, 32, 32, dtype=torch.float64)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert dead == []


def test_drop_path_only_in_training() -> None:
    model = _perturbed(ScOTConfig.tiny(image_size=16, drop_path_rate=0.5), scale=0.1)
    x, t = torch.randn(4, 4, 16, 16), torch.ones(4)
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t))
        model.train()
        torch.manual_seed(0)
        a = model(x, t)
        torch.manual_seed(1)
        assert (a - model(x, t)).abs().max() > 1e-3
