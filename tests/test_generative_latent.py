"""Latent diffusion (issue #33 item 4): the frame autoencoder (training lowers its reconstruction error, shapes, shift
equivariance on periodic axes), and an autoencoder run followed by a latent diffusion run through the entry points."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pdeforge.generative._latent import FrameAutoencoder

REPO = Path(__file__).resolve().parents[1]


def _smooth(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size)`` periodic fields: three Fourier modes of random amplitudes and phases."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(size) * 2 * math.pi / size
    k = torch.tensor([1.0, 2.0, 3.0])[:, None]
    amp, phase = torch.randn(n, 3, 1, generator=g), 2 * math.pi * torch.rand(n, 3, 1, generator=g)
    return (amp * torch.sin(k * x + phase)).sum(1, keepdim=True)


def test_autoencoder_training_lowers_reconstruction_error() -> None:
    """A few Adam steps on smooth periodic fields bring the reconstruction error of held-out fields well below its
    value at initialisation."""
    torch.manual_seed(0)
    ae = FrameAutoencoder(1, latent_channels=4, stages=2, width=16, periodic=(True,))
    train, test = _smooth(64, 32, seed=0), _smooth(32, 32, seed=1)

    def error() -> float:
        with torch.no_grad():
            return float(((ae(test) - test) ** 2).mean() / test.square().mean())

    before = error()
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        ((ae(train) - train) ** 2).mean().backward()
        opt.step()
    after = error()
    assert after < 0.3 * before, (before, after)


@pytest.mark.parametrize("periodic, space", [((True,), (32,)), ((True, True), (16, 24)), ((True, False), (16, 16))])
def test_encode_decode_shapes_and_shift_equivariance(periodic: tuple[bool, ...], space: tuple[int, ...]) -> None:
    """encode: (B, C, *space) -> (B, C_z, *space / 4); decode back. On a periodic axis, shifting the frame by the
    latent stride (4 points) shifts the latent by one point and the reconstruction by 4, exactly."""
    torch.manual_seed(0)
    ae = FrameAutoencoder(2, latent_channels=3, stages=2, width=8, periodic=periodic).eval()
    u = torch.randn(2, 2, *space)
    z = ae.encode(u)
    assert z.shape == (2, 3, *(s // 4 for s in space))
    assert ae.decode(z).shape == u.shape
    with torch.no_grad():
        for axis, wrap in enumerate(periodic):
            if not wrap:
                continue
            dim = 2 + axis
            assert torch.allclose(ae.encode(u.roll(4, dim)), z.roll(1, dim), atol=1e-5)
            assert torch.allclose(ae.decode(z.roll(1, dim)), ae.decode(z).roll(4, dim), atol=1e-5)
            # a shift by less than the stride is not a shift of the latent: the test above can fail
            assert not torch.allclose(ae.encode(u.roll(1, dim)), z.roll(1, dim), atol=1e-3)


def test_autoencoder_refuses_a_size_it_cannot_halve() -> None:
    ae = FrameAutoencoder(1, latent_channels=2, stages=3, width=4, periodic=(True,))
    with pytest.raises(ValueError, match="divisible by 8"):
        ae.encode(torch.randn(1, 1, 20))


# ------------------------------------------------------------------------------------------------------------
# through the entry points
# ------------------------------------------------------------------------------------------------------------
def _common(root: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--data.root", str(root),
        "--run.run_dir", str(run),
        "--run.progress", "false",
        "--run.threads", "1",
        "--optim.batch_size", "8",
        "--optim.steps", "2",
        "--eval.max_trajectories", "2",
        "--eval.valid_batches", "2",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def autoencoder_run(ks_root: Path, tmp_path_factory) -> Path:
    from pdeforge.families import train

    run = tmp_path_factory.mktemp("ae") / "ae"
    config = REPO / "configs" / "latent_autoencoder_ks.yaml"
    out = train(config, _common(ks_root, run, "--autoencoder.width", "8"))
    assert math.isfinite(out["test"]["reconstruction_rel_l2"]) and out["test"]["n_frames"] > 0
    return run


def _latent(root: Path, run: Path, autoencoder: Path | str, *extra: str) -> list[str]:
    return _common(
        root,
        run,
        "--model.autoencoder", str(autoencoder),
        "--model.unet", "{init_features: 8, n_stages: 2}",
        "--model.time_dim", "16",
        "--diffusion.steps", "3",
        "--eval.n_samples", "2",
        "--task.rollout_steps", "3",
        *extra,
    )  # fmt: skip


def test_latent_diffusion_run(ks_root: Path, autoencoder_run: Path, tmp_path: Path) -> None:
    """An autoencoder run, then a latent diffusion run of 2 steps on its latents: finite CRPS of the decoded rollouts;
    model.json records the autoencoder run, its weights are kept unchanged (frozen) inside the model, and load_run and
    evaluate_run give back the test metrics; stopped after one step and
    resumed, a run ends with the uninterrupted run's weights."""
    from safetensors.torch import load_file

    from pdeforge import load_run
    from pdeforge.families import evaluate_run, train
    from pdeforge.generative._latent import LatentNextStep

    ae = load_run(autoencoder_run)
    assert isinstance(ae.model, FrameAutoencoder) and ae.model.factor == 4
    config = REPO / "configs" / "latent_diffusion_ks.yaml"
    out = train(config, _latent(ks_root, tmp_path / "latent", autoencoder_run))
    p = out["test"]["probabilistic"]
    assert math.isfinite(p["crps"]) and p["crps"] > 0 and p["steps"] == 3
    assert math.isfinite(out["test"]["rel_l2"])

    spec = json.loads((tmp_path / "latent" / "model.json").read_text())["model_spec"]
    assert spec["autoencoder"]["run"] == str(autoencoder_run) and spec["autoencoder"]["spec"]["kind"] == "autoencoder"
    assert spec["autoencoder"]["latent_scale"] > 0
    run = load_run(tmp_path / "latent")
    assert isinstance(run.model, LatentNextStep)
    ae_weights = load_file(str(autoencoder_run / "model.safetensors"))
    for name, value in run.model.autoencoder.state_dict().items():  # frozen: the autoencoder run's weights
        assert torch.equal(value, ae_weights[name]), name
    assert all(not q.requires_grad for q in run.model.autoencoder.parameters())
    again = evaluate_run(tmp_path / "latent", splits=("test",))
    assert again["test"]["probabilistic"] == p

    part = tmp_path / "part"
    train(config, _latent(ks_root, part, autoencoder_run, "--run.max_steps", "1"))
    train(None, ["--run.resume", str(part), "--run.max_steps", "0", "--run.progress", "false"])
    resumed, whole = (load_file(str(r / "model.safetensors")) for r in (part, tmp_path / "latent"))
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_bad_autoencoder_run_is_one_line(ks_root: Path, autoencoder_run: Path, tmp_path: Path) -> None:
    """A missing folder, or a run that is not an autoencoder, named by model.autoencoder: one line naming it."""
    from pdeforge.families import train

    config = REPO / "configs" / "latent_diffusion_ks.yaml"
    with pytest.raises(ValueError, match=r"model.autoencoder .*nowhere: not a run folder") as e:
        train(config, _latent(ks_root, tmp_path / "a", tmp_path / "nowhere"))
    assert "\n" not in str(e.value)
    (tmp_path / "other").mkdir()
    envelope = json.loads((autoencoder_run / "model.json").read_text())
    envelope["model_spec"] = {**envelope["model_spec"], "kind": "generator"}
    (tmp_path / "other" / "model.json").write_text(json.dumps(envelope))
    with pytest.raises(ValueError, match="expected a generative run of model.kind autoencoder"):
        train(config, _latent(ks_root, tmp_path / "b", tmp_path / "other"))
    with pytest.raises(ValueError, match="model.autoencoder .* set with model.kind autoencoder"):
        train(config, _latent(ks_root, tmp_path / "c", autoencoder_run, "--model.kind", "autoencoder"))
