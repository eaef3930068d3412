"""scOT on dataset roots at URLs: a mixture whose sources are served over HTTP on 127.0.0.1 (byte ranges, a token
the server may require) trains exactly as on the local copies, each source read with its own ``storage_options``;
a root or a file that is not there is one line naming the URL."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdeforge.checkpoint import load_weights
from pdeforge.datasets import FieldSpec, Schema, TrajectoryWriter, write_stats
from pdeforge.datasets._remote import set_storage_options, write_index
from pdeforge.families import evaluate_run, train

TOKEN = "s3cret"
HEADER = {"headers": {"Authorization": f"Bearer {TOKEN}"}}


def _write_root(root: Path, seed: int) -> Path:
    """A dataset root of advected Fourier modes on a periodic 16 x 16 grid, 7 snapshots: 6 / 2 / 2 trajectories in
    train / valid / test; stats.yaml and index.json."""
    n, n_t = 16, 7
    x = 2 * math.pi * np.arange(n) / n
    schema = Schema(
        "synthetic", coords={"x": x, "y": x}, time=0.1 * np.arange(n_t), fields=(FieldSpec("vorticity"),),
        boundary_conditions="periodic",
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = 0.1 * np.arange(n_t)[:, None, None]
    for split, count in (("train", 6), ("valid", 2), ("test", 2)):
        u = np.zeros((count, n_t, n, n), np.float32)
        for b in range(count):
            for kx, ky in ((1, 0), (0, 1), (1, 2)):
                a, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * math.pi)
                u[b] += a * np.exp(-0.5 * (kx**2 + ky**2) * t) * np.sin(kx * (X - t) + ky * Y + phase)
        with TrajectoryWriter(root / "data" / split / f"{split}.hdf5", schema, count) as w:
            w.write({"vorticity": u})
    write_stats(root)
    write_index(root)
    return root


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    """Two dataset roots side by side in one served folder: ``a`` (served) and ``b`` (local in the mixture)."""
    folder = tmp_path_factory.mktemp("served")
    return _write_root(folder / "a", 0), _write_root(folder / "b", 1)


@pytest.fixture
def server(roots, serve_files):
    httpd = serve_files(roots[0].parent)
    yield httpd
    set_storage_options(httpd.url, None)  # what a run set for a root under it: not left to the next test
    for root in roots:
        set_storage_options(f"{httpd.url}/{root.name}", None)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PDEFORGE_REMOTE_CACHE", str(tmp_path / "blocks"))
    monkeypatch.setattr("pdeforge.datasets._remote.BACKOFF_S", 0.01)
    return tmp_path / "blocks"


def _config(path: Path, sources: list[dict]) -> Path:
    """A tiny scOT (the shape tests/test_scot_training.py trains) on ``sources``: 10 steps of batch 8, validated at
    steps 5 and 10."""
    values = {
        "family": "scot",
        "run": {"progress": False},
        "data": {"sources": sources, "stride": 2, "n_snapshots": 4},
        "optim": {"batch_size": 8, "lr": 1e-2, "warmup": 0.2, "eval_every": 5, "steps": 10},
        "model": {
            "args": {
                "depths": [1, 1],
                "num_heads": [1, 2],
                "skip_connections": [1, 0],
                "image_size": 16,
                "patch_size": 2,
                "window_size": 4,
            }
        },
    }
    path.write_text(yaml.safe_dump(values))
    return path


def _history(run: Path) -> list[dict]:
    """The run's log of losses and validations (the records a rerun reproduces: no timings)."""
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r for r in log if "loss" in r or "valid" in r]


def _without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "train_seconds"}


def test_scot_trains_on_a_url_source_with_its_storage_options_as_on_the_local_copy(roots, server, tmp_path):
    """A mixture of a served root (the server refuses requests without the token; the source's storage_options
    carry it) and a local one gives the local mixture's loss history, metrics and weights, bit for bit; the saved
    run evaluates from its config, the options re-read from the source entry."""
    a, b = roots
    server.token = TOKEN
    url = f"{server.url}/{a.name}"
    local_config = _config(tmp_path / "local.yaml", [{"root": str(a)}, {"root": str(b)}])
    local = train(local_config, ["--run.run_dir", str(tmp_path / "local")])
    sources = [{"root": url, "storage_options": HEADER}, {"root": str(b)}]
    remote = train(_config(tmp_path / "remote.yaml", sources), ["--run.run_dir", str(tmp_path / "remote")])

    history = _history(tmp_path / "local")
    assert [r["step"] for r in history if "loss" in r] == [1, 10]
    assert [r["step"] for r in history if "valid" in r] == [5, 10]
    assert _history(tmp_path / "remote") == history
    assert _without_time(remote) == _without_time(local)
    w_local, w_remote = (load_weights(tmp_path / d / "model.safetensors") for d in ("local", "remote"))
    assert w_local.keys() == w_remote.keys() and all(torch.equal(w_local[k], w_remote[k]) for k in w_local)
    # every data file, the stats and the listing came from the server, and every request carried the token
    served = {path for kind, path, n in server.log if kind == "GET" and n > 0}
    assert {f"/{a.name}/index.json", f"/{a.name}/stats.yaml"} <= served
    assert {f"/{a.name}/data/{s}/{s}.hdf5" for s in ("train", "valid", "test")} <= served
    assert not [entry for entry in server.log if entry[2] == 0 and entry[0] == "GET"]  # no refused (or empty) read
    envelope = json.loads((tmp_path / "remote" / "model.json").read_text())
    local_envelope = json.loads((tmp_path / "local" / "model.json").read_text())
    assert envelope["stats"] == local_envelope["stats"] and envelope["view"]["roots"] == [url, str(b.resolve())]

    set_storage_options(url, None)  # a fresh process: the options come from the saved config's source entry
    assert evaluate_run(tmp_path / "remote") == {"valid": remote["valid"], "test": remote["test"]}


def test_a_url_source_that_is_not_there_or_refused_is_one_line_naming_the_url(roots, server, tmp_path):
    a, _ = roots
    run = ["--run.run_dir", str(tmp_path / "run")]
    nowhere = f"{server.url}/nowhere"
    with pytest.raises(ValueError) as err:
        train(_config(tmp_path / "c.yaml", [{"root": nowhere}]), run)
    assert re.fullmatch(
        rf"scot: data.sources\[0\]: data.root {re.escape(nowhere)}: no train or valid or test split "
        rf"\({re.escape(nowhere)}/data/train/\*\.hdf5 not found\)",
        str(err.value),
    )
    # a root whose stats.yaml is missing (its index still names it): the stats URL, in one line
    bare = a.parent / "nostats"
    shutil.copytree(a, bare, dirs_exist_ok=True)
    (bare / "stats.yaml").unlink(missing_ok=True)
    stats = f"{server.url}/nostats/stats.yaml"
    with pytest.raises(FileNotFoundError) as err:
        train(_config(tmp_path / "c.yaml", [{"root": f"{server.url}/nostats"}]), run)
    assert str(err.value) == f"{stats}: not found (no such file on the server)"
    # the token required and not given: refused, in one line naming the URL
    server.token = TOKEN
    refused = (
        r"^scot: data.sources\[0\]: data.root \S+: \S+/index.json: access refused \(HTTP 401\): check the credentials"
    )
    with pytest.raises(ValueError, match=refused + " in storage_options$"):
        train(_config(tmp_path / "c.yaml", [{"root": f"{server.url}/{a.name}"}]), run)
    with pytest.raises(ValueError, match=r"^data.sources\[0\].storage_options 'x': expected a mapping of fsspec"):
        train(_config(tmp_path / "c.yaml", [{"root": f"{server.url}/{a.name}", "storage_options": "x"}]), run)
    with pytest.raises(
        ValueError, match=r"^data: expected data.sources or data.root / data.preset, not both \(a source"
    ):
        train(_config(tmp_path / "c.yaml", [{"root": str(a)}]), [*run, "--data.storage_options", "{anon: true}"])
