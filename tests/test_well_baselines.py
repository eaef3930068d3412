"""The Well's published baselines (FNO, TFNO, UNetClassic, UNetConvNext) load exactly.

Reference files: ``tests/reference/the_well/`` (see its README): for each model a tiny checkpoint written by the
original ``save_pretrained`` with the outputs the original code computes from a fixed batch (``io.safetensors``),
and the published full-size active_matter architecture (keys, shapes, dtypes, order, parameter counts, safetensors
header). Tolerance from that README: ``assert_close(rtol=1e-4, atol=1e-4)`` (the original's own 1- vs 2-thread
difference is up to 1.3e-5).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pdeforge.metrics import vrmse
from pdeforge.operators import load_well_baseline
from pdeforge.operators.well import (
    WELL_BASELINES,
    WellFNO,
    WellTFNO,
    WellUNetClassic,
    WellUNetConvNext,
    save_well_baseline,
    tucker_ranks,
    well_format_input,
    well_format_output,
)
from pdeforge.operators.well._spectral import _SpectralConvs

REF = Path(__file__).parent / "reference" / "the_well"
MODELS = ("FNO", "UNetConvNext", "UNetClassic", "TFNO")
TOL = {"rtol": 1e-4, "atol": 1e-4}
_DTYPE_CODE = {torch.float32: "F32", torch.int64: "I64"}


def _tiny(name: str) -> Path:
    return REF / name / "tiny_model"


def _io(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(REF / name / "io.safetensors"))


def _listing(model: torch.nn.Module) -> list[list]:
    """``[key, shape, dtype, "param"/"buffer"]`` in ``state_dict()`` order, as the reference files list them."""
    params = {id(p) for p in model.parameters()}
    return [
        [k, list(v.shape), str(v.dtype).removeprefix("torch."), "param" if id(v) in params else "buffer"]
        for k, v in model.state_dict(keep_vars=True).items()
    ]


def _header(path: Path) -> dict:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


# ----------------------------------------------------------------------------------------------- exact outputs
@pytest.mark.parametrize("name", MODELS)
def test_tiny_checkpoint_reproduces_the_original_outputs(name: str) -> None:
    model = load_well_baseline(_tiny(name))
    io = _io(name)
    meta = json.loads((REF / name / "meta.json").read_text())
    assert type(model) is WELL_BASELINES[name] and not model.training
    assert _listing(model) == meta["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == meta["n_parameters"]
    # The Well's formatter: the DataLoader's batch -> exactly what forward received
    x = well_format_input(io["input_fields"])
    assert torch.equal(x, io["model_input"])
    with torch.no_grad():
        y = model(io["model_input"])
        fields = model.forward_fields(io["input_fields"].movedim(-1, 2))  # pdeforge's (B, T_in, C, X, Y)
    err = (y - io["model_output"]).abs().max().item()
    print(f"{name}: max abs diff {err:.2e}, rel {err / io['model_output'].abs().max().item():.2e}")
    torch.testing.assert_close(y, io["model_output"], **TOL)
    torch.testing.assert_close(well_format_output(y), io["prediction"], **TOL)
    # the common layout computes the same numbers: (B, 1, C, X, Y) is the prediction with fields moved first
    assert fields.shape == (2, 1, 11, 32, 48)
    assert torch.equal(fields, y.unsqueeze(1))
    torch.testing.assert_close(fields, io["prediction"].movedim(-1, 2), **TOL)
    # and The Well's VRMSE of the loaded model against the original's prediction is at rounding level
    score = vrmse(fields, io["prediction"].movedim(-1, 2), n_spatial_dims=2)
    assert score.item() < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_outputs_are_bit_for_bit_on_one_thread(name: str) -> None:
    """The original's outputs were computed on 1 CPU thread; the same operations in the same order give the same
    bits (TFNO: the same opt_einsum contraction sequence as the original's tensorly call)."""
    model = load_well_baseline(_tiny(name))
    io = _io(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            y = model(io["model_input"])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(y, io["model_output"])


# ----------------------------------------------------------------------------------------------- published sizes
@pytest.mark.parametrize("name", MODELS)
def test_published_full_size_architecture(name: str) -> None:
    ref = json.loads((REF / name / f"{name}_active_matter_state_dict.json").read_text())
    with torch.device("meta"):
        model = WELL_BASELINES[name](**ref["config_json"])
        from_kwargs = WELL_BASELINES[name](**ref["constructor_kwargs"])  # the benchmark's call: defaults fill in
    assert _listing(model) == ref["state_dict"]
    assert model.config == ref["config_json"] == from_kwargs.config
    assert json.dumps(model.config, indent=2, sort_keys=True) == ref["config_json_text"]  # what save_pretrained writes
    assert sum(p.numel() for p in model.parameters()) == ref["n_parameters"]
    assert sum(b.numel() for b in model.buffers()) == ref["n_buffer_elements"]
    assert len(list(model.buffers())) == ref["n_buffers"]
    header = {k: {"dtype": _DTYPE_CODE[v.dtype], "shape": list(v.shape)} for k, v in model.state_dict().items()}
    assert header == ref["safetensors_header"]["tensors"]  # complex spectral weights as F32 real pairs
    spectral = sum(p.numel() // 2 for k, p in model.named_parameters() if ".convs.weight." in k)
    assert spectral == ref["n_complex_spectral_entries"]


def test_tucker_ranks_follow_the_parameter_fraction_rule() -> None:
    assert tucker_ranks((16, 16, 4, 3)) == (15, 15, 4, 3)  # the tiny TFNO: below full rank
    assert tucker_ranks((128, 128, 16, 9)) == (128, 128, 16, 9)  # published: full rank
    config = json.loads((_tiny("TFNO") / "config.json").read_text())
    model = WellTFNO(**config)  # ranks from the rule, not from a checkpoint
    shapes = {k: list(v.shape) for k, v in load_file(str(_tiny("TFNO") / "model.safetensors")).items()}
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes


# ----------------------------------------------------------------------------------------------- Hub ids
def _hub_cache(root: Path, repo: str = "polymathic-ai/FNO-active_matter", name: str = "FNO") -> Path:
    """huggingface_hub's cache layout: models--<owner>--<name>/{refs/main, snapshots/<rev>/...}."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / rev
    snapshot.mkdir(parents=True)
    for file in ("config.json", "model.safetensors", "README.md"):
        shutil.copyfile(_tiny(name) / file, snapshot / file)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(rev)
    return snapshot


def test_hub_id_resolves_through_the_cache(tmp_path: Path) -> None:
    snapshot = _hub_cache(tmp_path)
    model = load_well_baseline("polymathic-ai/FNO-active_matter", cache_dir=tmp_path, local_files_only=True)
    io = _io("FNO")
    with torch.no_grad():
        torch.testing.assert_close(model(io["model_input"]), io["model_output"], **TOL)
    assert snapshot.is_dir()
    with pytest.raises(FileNotFoundError, match="hf://polymathic-ai/TFNO-active_matter: not in the Hugging Face cache"):
        load_well_baseline("polymathic-ai/TFNO-active_matter", cache_dir=tmp_path, local_files_only=True)


def test_hub_id_uses_the_default_cache_when_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No arguments: the cache and offline mode huggingface_hub took from HF_HOME / HF_HUB_OFFLINE at import (set
    here on its constants; the slow test below sets the environment of a fresh process)."""
    import huggingface_hub.constants as hf_constants

    _hub_cache(tmp_path / "hub")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    model = load_well_baseline("polymathic-ai/FNO-active_matter")
    with torch.no_grad():
        torch.testing.assert_close(model(_io("FNO")["model_input"]), _io("FNO")["model_output"], **TOL)


@pytest.mark.slow
def test_hub_id_offline_with_hf_home(tmp_path: Path) -> None:
    """HF_HOME and HF_HUB_OFFLINE=1 in the environment, no arguments: a fresh process resolves from HF_HOME/hub."""
    _hub_cache(tmp_path / "hf" / "hub")
    out = tmp_path / "out.safetensors"
    code = (
        "import torch\n"
        "from safetensors.torch import load_file, save_file\n"
        "from pdeforge.operators import load_well_baseline\n"
        "model = load_well_baseline('polymathic-ai/FNO-active_matter')\n"
        f"x = load_file({str(REF / 'FNO' / 'io.safetensors')!r})['model_input']\n"
        "with torch.no_grad():\n"
        f"    save_file({{'y': model(x)}}, {str(out)!r})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.testing.assert_close(load_file(str(out))["y"], _io("FNO")["model_output"], **TOL)


# ----------------------------------------------------------------------------------------------- fine-tuning
@pytest.mark.parametrize("name", MODELS)
def test_every_published_tensor_reaches_the_output(name: str) -> None:
    """Every parameter gets a gradient, except the ones the original never reads (the ConvNeXt resample norms'
    biases), and every BatchNorm running statistic changes the eval output (the original's perturbation check)."""
    model = load_well_baseline(_tiny(name))
    x = _io(name)["model_input"][:1]
    model(x).square().mean().backward()
    meta = json.loads((REF / name / "meta.json").read_text())
    no_effect = {d["key"] for d in meta["perturbation_check"]["no_effect"]}
    dead = {k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert dead == {k for k in no_effect if not k.endswith("num_batches_tracked")}
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        y = model(x)
        for key, buf in buffers.items():
            saved = buf.clone()
            buf.add_(5 if not buf.is_floating_point() else 0.05 * (buf.abs() + 0.05))
            changed = not torch.equal(model(x), y)
            buf.copy_(saved)
            assert changed == (key not in no_effect), key


def test_fine_tuning_lowers_vrmse_and_saves_in_the_published_layout(tmp_path: Path) -> None:
    model = load_well_baseline(_tiny("FNO")).train()
    frames = _io("FNO")["input_fields"].movedim(-1, 2)  # (B, T_in, C, X, Y)
    target = frames[:, -1:]  # persistence as a stand-in next step
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = vrmse(model.forward_batch({"input_fields": frames}), target, n_spatial_dims=2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    folder = save_well_baseline(model, tmp_path / "tuned")
    assert (folder / "config.json").read_text() == (_tiny("FNO") / "config.json").read_text()
    ours, theirs = _header(folder / "model.safetensors"), _header(_tiny("FNO") / "model.safetensors")
    assert [(k, v["dtype"], v["shape"]) for k, v in ours.items()] == [
        (k, v["dtype"], v["shape"]) for k, v in theirs.items()
    ]
    again = load_well_baseline(folder)
    with torch.no_grad():
        assert torch.equal(again.forward_fields(frames), model.eval().forward_fields(frames))


def test_unetclassic_round_trip_keeps_batchnorm_buffers(tmp_path: Path) -> None:
    model = load_well_baseline(_tiny("UNetClassic"))
    folder = save_well_baseline(model, tmp_path / "copy")
    saved, original = (
        load_file(str(folder / "model.safetensors")),
        load_file(str(_tiny("UNetClassic") / "model.safetensors")),
    )
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) and saved[k].dtype == original[k].dtype for k in saved)


def test_constant_fields_go_last_in_both_layouts() -> None:
    """Two frames of three fields and two constant fields: The Well's formatter (channels last) and pdeforge's layout
    (channels first) give the network the same input, constant fields after the frames, NaNs as zeros."""
    torch.manual_seed(0)
    model = WellFNO(dim_in=8, dim_out=3, n_spatial_dims=2, spatial_resolution=[8, 8], modes1=4, modes2=4).eval()
    frames, const = torch.randn(2, 2, 3, 8, 8), torch.randn(2, 2, 8, 8)
    frames[0, 1, 2, 3, 4] = float("nan")
    x = well_format_input(frames.movedim(2, -1), const.movedim(1, -1))
    assert x.shape == (2, 8, 8, 8) and torch.isfinite(x).all()
    assert torch.equal(x[:, 3:6], frames[:, 1].nan_to_num()) and torch.equal(x[:, 6:], const)  # t*F + f, then const
    with torch.no_grad():
        assert torch.equal(model.forward_batch({"input_fields": frames, "constant_fields": const}), model(x)[:, None])


# ----------------------------------------------------------------------------------------------- other grids
def test_three_dimensional_models_build_and_run() -> None:
    x = torch.randn(1, 6, 16, 16, 16)
    common = {"dim_in": 6, "dim_out": 2, "n_spatial_dims": 3, "spatial_resolution": [16, 16, 16]}
    fno = WellFNO(**common, modes1=4, modes2=4, modes3=4, hidden_channels=4)
    assert fno.state_dict()["model.lifting.fcs.0.weight"].shape == (256, 6, 1, 1, 1)
    assert fno.state_dict()["model.fno_blocks.convs.weight.0.tensor"].shape == (4, 4, 4, 4, 3, 2)
    for model in (
        fno,
        WellTFNO(**common, modes1=4, modes2=4, modes3=4, hidden_channels=4),
        WellUNetClassic(**common, init_features=2),
        WellUNetConvNext(**common, init_features=2, stages=2),
    ):
        y = model.eval()(x)
        assert y.shape == (1, 2, 16, 16, 16) and torch.isfinite(y).all()


def test_odd_grid_shifts_frequencies_as_the_original() -> None:
    """On an odd size along a non-last axis the original undoes its fftshift with another fftshift: a kept input
    frequency k comes out at k - 1. With identity spectral weights, a single Fourier mode shows it."""
    conv = _SpectralConvs(channels=1, modes=(8, 8), n_layers=1, ranks=None)
    with torch.no_grad():
        conv.bias.zero_()
        conv.weight[0].tensor.zero_()
        conv.weight[0].tensor[..., 0] = 1.0  # W = 1 on every kept mode
    n1, n2 = 9, 8
    i = torch.arange(n1, dtype=torch.float64)[:, None]
    for k in (1, 2, 3):
        u = torch.cos(2 * torch.pi * k * i / n1).expand(n1, n2).float()[None, None]  # frequencies +k and -k
        with torch.no_grad():
            spec = torch.fft.fft2(conv(u, 0)[0, 0].double())
        found = {(int(a), int(b)) for a, b in (spec.abs() > 1e-3).nonzero()}
        # +k -> k-1 and -k -> -k-1; the real inverse transform adds their mirror images
        assert found == {(f % n1, 0) for f in (k - 1, -k - 1, 1 - k, k + 1)}, (k, found)
    even = torch.cos(2 * torch.pi * 2 * torch.arange(8.0)[:, None] / 8).expand(8, 8)[None, None]
    with torch.no_grad():
        torch.testing.assert_close(conv(even, 0), even, atol=1e-5, rtol=0)  # even sizes: W = 1 is the identity


# ----------------------------------------------------------------------------------------------- bad input
def _copy_tiny(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(_tiny(name), folder)
    return folder


def test_bad_input_gives_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder, and not a Hugging Face Hub id"):
        load_well_baseline(tmp_path / "missing" / "deeper")
    folder = _copy_tiny(tmp_path, "FNO")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_layers": 5}))
    with pytest.raises(ValueError, match=r"config.json: unknown key 'n_layers' for The Well's FNO"):
        load_well_baseline(folder)
    (folder / "config.json").write_text(json.dumps({**config, "hidden_channels": 16}))
    with pytest.raises(ValueError, match=r"shape mismatch for model.fno_blocks.convs.bias: config.json gives"):
        load_well_baseline(folder)
    with pytest.raises(ValueError, match="holds The Well's FNO, not the TFNO asked for"):
        load_well_baseline(_tiny("FNO"), model="TFNO")
    state = load_file(str(_tiny("UNetConvNext") / "model.safetensors"))
    del state["encoder.0.resample.block.0.bias"]  # saved although never read: still required
    folder = _copy_tiny(tmp_path, "UNetConvNext")
    from safetensors.torch import save_file

    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(KeyError, match=r"1 missing, 0 unexpected keys\); missing: \[encoder.0.resample.block.0.bias"):
        load_well_baseline(folder)
    model = load_well_baseline(_tiny("UNetClassic"))
    with pytest.raises(ValueError, match=r"each spatial size a multiple of 16 .* got \(1, 44, 30, 48\)"):
        model(torch.zeros(1, 44, 30, 48))
    with pytest.raises(
        ValueError, match=r"expected \(B, T_in, C=11, \*space\) .* dim_in = 44 .* got \(1, 3, 11, 32, 48\)"
    ):
        model.forward_fields(torch.zeros(1, 3, 11, 32, 48))
