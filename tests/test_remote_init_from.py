"""``--run.init_from`` a Hub id: scOT fine-tunes from a checkpoint in the Hugging Face cache, laid out here as
``huggingface_hub`` lays it out, offline (HF_HUB_OFFLINE=1); nothing is downloaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pdeforge.datasets import FieldSpec, Schema, TrajectoryWriter, write_stats
from pdeforge.families import train
from pdeforge.operators.scot._family import read_source
from pdeforge.training.run_folder import read_envelope

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "scot_finetune.yaml"


@pytest.fixture
def poseidon_cache(tmp_path: Path, monkeypatch, reference_dir: Path) -> Path:
    """The tiny scOT of tests/reference/poseidon as the Hub's cache holds ``camlab-ethz/Poseidon-T``: blobs named by
    their SHA-256, a snapshot folder of symlinks at ``COMMIT``, ``refs/main``."""
    cache = tmp_path / "hub"
    repo = cache / "models--camlab-ethz--Poseidon-T"
    ref = reference_dir / "poseidon"
    for name, src in (("config.json", "tiny_shift_config.json"), ("model.safetensors", "tiny_shift_model.safetensors")):
        data = (ref / src).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_scot_init_from_a_hub_id_fine_tunes_from_the_offline_cache(poseidon_cache, reference_dir, tmp_path, capsys):
    """``--run.init_from hf://org/name@revision`` (and plain ``org/name``) reads the scOT folder from the Hub's cache:
    every tensor whose shape does not change with the channel count is the cache's, at step 0."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    x = np.arange(32) / 32
    schema = Schema("toy", coords={"x": x, "y": x}, time=0.1 * np.arange(9), fields=(FieldSpec("u"),))
    for split, n in (("train", 3), ("valid", 1), ("test", 1)):
        with TrajectoryWriter(root / "data" / split / f"{split}.hdf5", schema, n) as w:
            w.write({"u": rng.standard_normal((n, 9, 32, 32)).astype(np.float32)})
    write_stats(root)

    weights = load_file(reference_dir / "poseidon" / "tiny_shift_model.safetensors")
    for source in (f"hf://camlab-ethz/Poseidon-T@{COMMIT}", "camlab-ethz/Poseidon-T"):
        config, state = read_source(source)
        assert config.embed_dim == 8 and all(torch.equal(state()[k], v) for k, v in weights.items())
    run = tmp_path / "run"
    overrides = ["--data.preset", "", "--data.root", str(root), "--data.max_train_trajectories", "3"]
    overrides += ["--run.init_from", f"hf://camlab-ethz/Poseidon-T@{COMMIT}", "--run.run_dir", str(run)]
    overrides += ["--run.max_steps", "1", "--run.progress", "false", "--optim.batch_size", "2", "--model.args", "{}"]
    metrics = train(CONFIG, overrides)
    assert metrics["steps"] == 1
    record = read_envelope(run)["finetune"]
    assert record["init_from"] == f"hf://camlab-ethz/Poseidon-T@{COMMIT}"
    assert set(record["loaded"]) | set(record["reinitialised"]) == set(weights)
    assert all(k.startswith(("embeddings", "patch_recovery")) for k in record["reinitialised"])  # 3 -> 1 channels
    # data.channels laid out as the checkpoint's inputs (3): the embedding keeps its weights, padded channels too
    laid_out = [*overrides, "--data.channels", "[u, v, w]", "--run.run_dir", str(tmp_path / "c")]
    train(CONFIG, laid_out)
    record = read_envelope(tmp_path / "c")["finetune"]
    assert record["reinitialised"] and all(k.startswith("patch_recovery") for k in record["reinitialised"])  # 2 -> 3
    absent = [*overrides, "--run.init_from", "hf://camlab-ethz/Poseidon-B", "--run.run_dir", str(tmp_path / "b")]
    with pytest.raises(FileNotFoundError, match=r"^--run.init_from hf://camlab-ethz/Poseidon-B: hf://camlab-ethz/Pos"):
        train(CONFIG, absent)
