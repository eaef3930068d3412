"""Checkpoints and runs from the Hugging Face Hub's cache, offline: ``ScOT.from_pretrained("org/name")`` and
``load_run("hf://org/name")`` read a cache laid out as ``huggingface_hub`` lays it out; ``pdeforge export`` writes the
folder that is published there. Nothing is downloaded: the cache is written by the test, and HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pdeforge.cli import main as cli
from pdeforge.operators.scot import ScOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_out_hub_cache(cache: Path, repo_id: str, files: dict[str, Path], *, commit: str = COMMIT, ref: str = "main"):
    """``files`` (name in the repo -> local file) as the Hub's cache holds them: content-addressed blobs, a snapshot
    folder of symlinks per commit, and ``refs/<ref>`` naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def poseidon_cache(offline_cache: Path, reference_dir: Path) -> Path:
    ref = reference_dir / "poseidon"
    files = {"config.json": ref / "tiny_shift_config.json", "model.safetensors": ref / "tiny_shift_model.safetensors"}
    lay_out_hub_cache(offline_cache, "camlab-ethz/Poseidon-T", files)
    return offline_cache


def test_from_pretrained_hub_id_reads_the_offline_cache_and_reproduces_the_reference(poseidon_cache, reference_dir):
    io = load_file(reference_dir / "poseidon" / "tiny_shift_io.safetensors")
    weights = load_file(reference_dir / "poseidon" / "tiny_shift_model.safetensors")
    model = ScOT.from_pretrained("camlab-ethz/Poseidon-T").eval()
    with torch.no_grad():
        out = model(io["pixel_values"], io["time"])
    # the tolerances of test_scot.py (this process's CPU kernels differ from the reference machine's)
    torch.testing.assert_close(out, io["output"], rtol=1e-4, atol=2e-4)
    assert (out - io["output"]).abs().mean().item() < 1e-5
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())  # the cache's tensors
    for name, kwargs in (  # the other spellings reach the same snapshot
        ("hf://camlab-ethz/Poseidon-T", {}),
        (f"hf://camlab-ethz/Poseidon-T@{COMMIT}", {}),
        ("camlab-ethz/Poseidon-T", {"revision": COMMIT}),
        ("camlab-ethz/Poseidon-T", {"revision": "main", "cache_dir": poseidon_cache, "local_files_only": True}),
    ):
        other = ScOT.from_pretrained(name, **kwargs)
        assert other.config == model.config
        assert all(torch.equal(other.state_dict()[k], v) for k, v in weights.items()), name
    # fine-tuning from the Hub keeps its channel-changing options
    assert ScOT.from_pretrained("camlab-ethz/Poseidon-T", num_out_channels=1).config.num_out_channels == 1


def test_hub_ids_that_are_not_in_the_cache_are_one_line_errors(poseidon_cache, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"^hf://camlab-ethz/Poseidon-B: not in the Hugging Face cache") as e:
        ScOT.from_pretrained("hf://camlab-ethz/Poseidon-B")
    assert "\n" not in str(e.value) and "models--camlab-ethz--Poseidon-B/snapshots" in str(e.value)
    pinned = r"^hf://camlab-ethz/Poseidon-T@v9 \(no local folder camlab-ethz/Poseidon-T\): not in the Hugging"
    with pytest.raises(FileNotFoundError, match=pinned):
        ScOT.from_pretrained("camlab-ethz/Poseidon-T", revision="v9")
    with pytest.raises(ValueError, match="revision"):  # a revision means nothing for a local folder
        ScOT.from_pretrained(tmp_path, revision="main")
    monkeypatch.chdir(tmp_path)  # a relative name that is no folder here is read as a Hub id, and says so
    with pytest.raises(FileNotFoundError, match=r"^hf://runs/absent \(no local folder runs/absent\): not in the"):
        ScOT.from_pretrained("runs/absent")


# ------------------------------------------------------------------ export, then load_run("hf://...")
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from pdeforge.families import train
    from pdeforge.solvers.generate import PRESETS, generate, with_overrides

    root = tmp_path_factory.mktemp("remote_hub")
    data = root / "burgers"
    preset = with_overrides(PRESETS["burgers_1d"], n_snapshots=5)
    generate(preset, data, n_trajectories=10, resolution=32, progress=False)
    run = root / "run"
    overrides = ["--data.root", str(data), "--run.max_steps", "2", "--run.run_dir", str(run), "--run.progress", "false"]
    overrides += ["--optim.batch_size", "4", "--model.args.n_modes", "4", "--model.args.hidden_channels", "8"]
    train(Path(__file__).resolve().parents[1] / "configs" / "fno_burgers.yaml", overrides)
    return run


def test_export_writes_a_hub_folder_that_load_run_reads_back_from_the_cache(tiny_run, offline_cache, tmp_path, capsys):
    from pdeforge import load_run
    from pdeforge.families import evaluate_run

    out = tmp_path / "export"
    assert cli(["export", str(tiny_run), str(out)]) == 0
    assert "huggingface-cli upload ORG/NAME" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["README.md", "config.yaml", "loss.png", "metrics.json", "model.json", "model.safetensors", "prediction.png"]
        + ["train_log.jsonl"]
    ), names
    assert not (out / "checkpoint").exists()  # optimiser state stays behind
    assert (out / "model.safetensors").read_bytes() == (tiny_run / "model.safetensors").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: pdeforge\n")
    assert f"| test | rel_l2 | {metrics['test']['rel_l2']:.6g} |" in card
    assert "pdeforge train config.yaml" in card and "- fields: u" in card and "preset: `burgers_1d`" in card

    lay_out_hub_cache(offline_cache, "someone/fno-burgers", {p.name: p for p in out.iterdir()})
    run = load_run("hf://someone/fno-burgers")
    local = load_run(tiny_run)
    assert run.family.name == "operator" and run.metadata == local.metadata
    for a, b in zip(run.model.state_dict().values(), local.model.state_dict().values()):
        assert torch.equal(a, b)
    again = evaluate_run("hf://someone/fno-burgers")
    assert again == {"valid": metrics["valid"], "test": metrics["test"]}
    assert evaluate_run("hf://someone/fno-burgers@" + COMMIT)["test"] == metrics["test"]
    assert cli(["evaluate", "hf://someone/fno-burgers", "--split", "valid"]) == 0
    assert json.loads(capsys.readouterr().out) == {"valid": metrics["valid"]}


def test_export_refuses_what_it_would_overwrite_or_cannot_publish(tiny_run, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert cli(["export", str(tiny_run), str(taken)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: export {tiny_run} {taken}: {taken} exists and is not an empty folder"), err
    assert "\n" not in err and (taken / "notes.txt").read_text() == "mine" and len(list(taken.iterdir())) == 1

    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run, unfinished)
    (unfinished / "metrics.json").unlink()
    assert cli(["export", str(unfinished), str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: export {unfinished}: no metrics.json: the run has not finished; export a run that training completed"
    )
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))

    assert cli(["export", str(tmp_path), str(tmp_path / "y")]) == 1
    assert "not a run folder (no model.json)" in capsys.readouterr().err
