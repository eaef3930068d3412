"""Dataset roots at URLs: a root served over HTTP on 127.0.0.1 by a server started here (with byte ranges, request
counts, a connection it drops on demand, a token it may require) reads as the local copy, through the block cache."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pdeforge.cli import main as cli
from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter, validate
from pdeforge.datasets._remote import _evict, write_index

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A small dataset root: 2 files in train (3 + 2 trajectories), 1 in valid and test, 6 snapshots of 2D fields
    (u, and a time-invariant a), one scalar; stats.yaml and index.json."""
    from pdeforge.datasets import write_stats

    root = tmp_path_factory.mktemp("served") / "root"
    rng = np.random.default_rng(0)
    schema = Schema(
        "toy",
        coords={"x": np.linspace(0, 1, 12, endpoint=False), "y": np.linspace(0, 1, 8, endpoint=False)},
        time=np.linspace(0, 0.5, 6),
        fields=(FieldSpec("u"), FieldSpec("a", time_varying=False)),
        scalars=("nu",),
    )
    for split, sizes in (("train", (3, 2)), ("valid", (2,)), ("test", (2,))):
        for k, n in enumerate(sizes):
            with TrajectoryWriter(root / "data" / split / f"part{k}.hdf5", schema, n_trajectories=n) as w:
                w.write(
                    {
                        "u": rng.standard_normal((n, 6, 12, 8)).astype(np.float32),
                        "a": rng.standard_normal((n, 12, 8)).astype(np.float32),
                    },
                    {"nu": rng.uniform(0.1, 1.0, n)},
                )
    write_stats(root)
    write_index(root)
    return root


@pytest.fixture
def server(root: Path, serve_files):
    httpd = serve_files(root.parent)
    httpd.url += f"/{root.name}"
    return httpd


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("PDEFORGE_REMOTE_CACHE", str(tmp_path / "blocks"))
    monkeypatch.setattr("pdeforge.datasets._remote.BACKOFF_S", 0.01)
    return tmp_path / "blocks"


def _data_bytes(log) -> int:
    return sum(n for kind, path, n in log if kind == "GET" and path.endswith(".hdf5"))


def _same(a: TrajectoryDataset, b: TrajectoryDataset) -> None:
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), (i, key)


def test_a_root_over_http_gives_the_local_windows_and_a_second_epoch_fetches_nothing(root, server, cache):
    kw = dict(n_steps_input=2, n_steps_output=1, normalization="zscore", cache_small=False)
    local = TrajectoryDataset(root, split="train", **kw)
    remote = TrajectoryDataset(server.url, split="train", **kw)  # stats.yaml fetched from the root, too
    assert remote.metadata == local.metadata and len(remote) == 5 * 4
    _same(local, remote)  # epoch 1
    first = list(server.log)
    assert _data_bytes(first) > 0
    assert _data_bytes(first) <= 2 * sum(p.stat().st_size for p in (root / "data" / "train").iterdir())
    _same(local, remote)  # epoch 2: every block is local
    assert server.log == first
    remote.close()  # records the blocks: another reader (process) fetches no data bytes either
    again = TrajectoryDataset(server.url, split="train", **kw)
    _same(local, again)
    assert _data_bytes(server.log[len(first) :]) == 0
    assert sum(1 for p in cache.iterdir()) >= 2  # the sparse copies of the two train files (+ fsspec's record)
    # a URL of a single file and a split folder, and file:// for a local path
    one = TrajectoryDataset(server.url + "/data/valid/part0.hdf5", n_steps_input=2, cache_small=False)
    _same(TrajectoryDataset(root / "data" / "valid" / "part0.hdf5", n_steps_input=2), one)
    _same(TrajectoryDataset(f"file://{root}", split="test"), TrajectoryDataset(root, split="test"))


def test_validate_and_inspect_read_a_url_and_the_listing_falls_back_to_the_servers(root, server, capsys, tmp_path):
    infos = validate(server.url)  # all splits, the disjointness of splits checked
    assert [Path(i.path).name for i in infos] == ["part0.hdf5", "part1.hdf5", "part0.hdf5", "part0.hdf5"]
    assert cli(["inspect", server.url, "--fast"]) == 0
    out = capsys.readouterr().out
    assert f"{server.url}/data/train/part1.hdf5" in out and "(2 trajectories x 6 snapshots)" in out
    assert f"statistics: {server.url}/stats.yaml" in out
    # without index.json the server's HTML directory listing is read (http.server's)
    bare = root.parent / "bare"
    shutil.copytree(root, bare)
    (bare / "index.json").unlink()
    listed = TrajectoryDataset(server.url.replace("/root", "/bare"), split="train", cache_small=False)
    assert [Path(f.path).name for f in listed.files] == ["part0.hdf5", "part1.hdf5"] and len(listed) == 25


def test_a_dropped_connection_is_survived_and_a_404_is_one_line_naming_the_url(root, server, capsys):
    server.drop = 1
    remote = TrajectoryDataset(server.url, split="valid", cache_small=False)
    _same(TrajectoryDataset(root, split="valid"), remote)
    assert sum(1 for kind, *_ in server.log if kind == "DROP") == 1 and server.drop == 0

    server.drop = 10  # more than the tries: an error naming the URL, not a hang
    with pytest.raises(OSError, match=rf"^{re.escape(server.url)}/data/test/part0.hdf5: failed after 3 tries"):
        TrajectoryDataset(server.url, split="test", cache_small=False)
    server.drop = 0

    missing = server.url + "/data/train/nothing.hdf5"
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(missing)}: not found"):
        TrajectoryDataset(missing)
    assert cli(["inspect", missing]) == 1
    err = capsys.readouterr().err
    assert err == f"invalid: {missing}: not found (no such file on the server)\n"
    with pytest.raises(FileNotFoundError, match=r"/nowhere/data/train: no \.hdf5/\.h5 files found"):
        TrajectoryDataset(server.url.replace("/root", "/nowhere"), split="train")


def test_storage_options_carry_credentials_and_refused_ones_are_one_line(root, server):
    server.token = "s3cret"
    with pytest.raises(PermissionError, match=r"index.json: access refused \(HTTP 401\): check the credentials"):
        TrajectoryDataset(server.url, split="test")
    one = server.url + "/data/test/part0.hdf5"  # refused at its size (HEAD), not "not found"
    with pytest.raises(
        PermissionError, match=rf"^{re.escape(one)}: access refused \(HTTP 401\): check the credentials"
    ):
        TrajectoryDataset(one)
    opts = {"headers": {"Authorization": "Bearer s3cret"}}
    _same(TrajectoryDataset(root, split="test"), TrajectoryDataset(server.url, split="test", storage_options=opts))


def test_the_cache_is_capped_least_recently_used_first(tmp_path: Path):
    folder = tmp_path / "c"
    folder.mkdir()
    for i, name in enumerate(("old", "mid", "new")):
        (folder / name).write_bytes(os.urandom(40_000))
        os.utime(folder / name, (1000 + i, 1000 + i))
    (folder / "cache").write_text("{}")  # fsspec's record stays
    _evict(folder, cap=90_000)
    assert sorted(p.name for p in folder.iterdir()) == ["cache", "mid", "new"]
    _evict(folder, cap=0)
    assert [p.name for p in folder.iterdir()] == ["cache"]


def test_dataloader_workers_open_their_own_handles(root, server):
    from torch.utils.data import DataLoader

    remote = TrajectoryDataset(server.url, split="train", n_steps_input=2, cache_small=False)
    remote[0]  # a handle in the main process, which the forked workers must not share
    local = TrajectoryDataset(root, split="train", n_steps_input=2)
    got = torch.cat([b["input_fields"] for b in DataLoader(remote, batch_size=4, num_workers=2)])
    assert torch.equal(got, torch.stack([local[i]["input_fields"] for i in range(len(local))]))


def test_train_py_takes_a_url_as_data_root(root, server, tmp_path):
    from pdeforge.families import evaluate_run, train

    run = tmp_path / "run"
    overrides = ["--data.root", server.url, "--run.max_steps", "2", "--run.run_dir", str(run)]
    overrides += ["--run.progress", "false", "--optim.batch_size", "2"]
    overrides += ["--model.args.n_modes", "4", "--model.args.hidden_channels", "8"]
    metrics = train(REPO / "configs" / "fno_burgers.yaml", overrides)
    assert (run / "model.json").is_file() and 0 < metrics["test"]["rel_l2"] < 10
    assert evaluate_run(run, data=root) == {"valid": metrics["valid"], "test": metrics["test"]}  # the local copy
    assert evaluate_run(run, data=server.url, splits=("test",)) == {"test": metrics["test"]}  # evaluate --data URL
    with pytest.raises(ValueError, match=r"^operator: data.root .*/nowhere: no train or valid or test split"):
        train(REPO / "configs" / "fno_burgers.yaml", ["--data.root", server.url.replace("/root", "/nowhere")])


def test_data_storage_options_reach_every_open_of_a_training_run(root, server, tmp_path):
    """``data.storage_options`` (a mapping in the shared data section) goes to every open under the root: the server
    refuses any request without the header, so listing, stats, every file and the DataLoader's worker (spawned: a
    fresh interpreter, which sees only what the dataset carries) all carried it."""
    from pdeforge.datasets._remote import set_storage_options
    from pdeforge.families import train

    server.token = "s3cret"
    run = tmp_path / "run"
    overrides = ["--data.root", server.url, "--run.max_steps", "1", "--run.run_dir", str(run)]
    overrides += ["--run.progress", "false", "--optim.batch_size", "2"]
    overrides += ["--model.args.n_modes", "4", "--model.args.hidden_channels", "8"]
    with pytest.raises(ValueError, match=r"access refused \(HTTP 401\): check the credentials in storage_options"):
        train(REPO / "configs" / "fno_burgers.yaml", overrides)
    options = ["--data.storage_options", '{headers: {Authorization: "Bearer s3cret"}}']
    start_method = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)  # the DataLoader worker as macOS and Windows start it
    try:
        metrics = train(REPO / "configs" / "fno_burgers.yaml", overrides + options + ["--data.num_workers", "1"])
    finally:
        multiprocessing.set_start_method(start_method, force=True)
        set_storage_options(server.url, None)
    assert (run / "model.json").is_file() and 0 < metrics["test"]["rel_l2"] < 10
    refused = [entry for entry in server.log if entry[0] == "GET" and entry[2] == 0 and entry[1].endswith(".hdf5")]
    assert any(path.endswith(".hdf5") for kind, path, n in server.log if kind == "GET" and n > 0) and not refused
    with pytest.raises(ValueError, match=r"data.storage_options: for a URL data.root"):
        train(REPO / "configs" / "fno_burgers.yaml", ["--data.root", str(root), *options])


def test_data_storage_options_travel_with_the_dataset_into_a_spawned_worker(root, server, tmp_path, monkeypatch):
    """A spawned DataLoader worker (macOS' and Windows' start method) is a fresh interpreter with no registry of
    options: the dataset made with the options set for its root (as a training run sets them) holds them, and its
    worker's every open (sizes, HDF5 blocks) carries the header the server asks for."""
    from torch.utils.data import DataLoader

    from pdeforge.datasets._remote import set_storage_options

    server.token = "s3cret"
    set_storage_options(server.url, {"headers": {"Authorization": "Bearer s3cret"}})
    try:
        remote = TrajectoryDataset(server.url, split="valid", n_steps_input=2, normalization="zscore")
    finally:
        set_storage_options(server.url, None)  # not needed from here on: the dataset holds them
    assert remote.storage_options == {"headers": {"Authorization": "Bearer s3cret"}}
    monkeypatch.setenv("PDEFORGE_REMOTE_CACHE", str(tmp_path / "worker_blocks"))  # the worker fetches every block
    opened = len(server.log)
    loader = DataLoader(remote, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    got = torch.cat([b["output_fields"] for b in loader])
    local = TrajectoryDataset(root, split="valid", n_steps_input=2, normalization="zscore")
    assert got.shape == (len(local), 1, 1, 12, 8)
    assert torch.equal(got, torch.stack([local[i]["output_fields"] for i in range(len(local))]))
    in_worker = server.log[opened:]
    assert sum(n for kind, path, n in in_worker if kind == "GET" and path.endswith(".hdf5")) > 0
    assert not [entry for entry in server.log if entry[2] == 0 and entry[0] == "GET"]  # nothing refused


def test_memory_and_file_urls_read_as_the_local_root(root):
    import fsspec

    memory = fsspec.filesystem("memory")
    memory.put(str(root), "/pdeforge-test/root", recursive=True)
    try:
        for url in ("memory://pdeforge-test/root", f"file://{root}"):
            assert [i.n_trajectories for i in validate(url)] == [3, 2, 2, 2]
            for split in ("train", "test"):
                _same(TrajectoryDataset(root, split=split), TrajectoryDataset(url, split=split))
    finally:
        memory.rm("/pdeforge-test", recursive=True)


def test_hf_dataset_root_reads_the_offline_hub_cache(root, tmp_path, monkeypatch, capsys):
    """``hf://datasets/org/name/ROOT`` with HF_HUB_OFFLINE=1 reads the Hub's cache as huggingface_hub lays it out
    (content-addressed blobs, a snapshot of symlinks, refs/main), at the default revision and at a named one."""
    import hashlib

    cache, commit = tmp_path / "hub", "89abcdef0123456789abcdef0123456789abcdef"
    repo = cache / "datasets--pdeforge-test--toy"
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / "toy" / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for url in ("hf://datasets/pdeforge-test/toy/toy", f"hf://datasets/pdeforge-test/toy@{commit}/toy"):
        assert [i.n_trajectories for i in validate(url)] == [3, 2, 2, 2]
        local, remote = (TrajectoryDataset(r, split="valid", normalization="zscore") for r in (root, url))
        _same(local, remote)  # stats.yaml read through the cache too
    assert cli(["inspect", "hf://datasets/pdeforge-test/toy/toy", "--fast"]) == 0
    assert "trajectories" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match=r"not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        TrajectoryDataset("hf://datasets/pdeforge-test/other/toy", split="train")


def test_inspect_takes_storage_options(server, capsys):
    server.token = "s3cret"
    assert cli(["inspect", server.url, "--fast"]) == 1
    assert "access refused (HTTP 401)" in capsys.readouterr().err
    header = '{headers: {Authorization: "Bearer s3cret"}}'
    assert cli(["inspect", server.url, "--fast", "--storage-options", header]) == 0
    out = capsys.readouterr().out
    assert out.count("trajectories") >= 4 and "statistics: " in out  # stats.yaml read with the header too
    assert cli(["inspect", server.url, "--storage-options", "[1, 2]"]) == 1
    assert "--storage-options '[1, 2]': expected a mapping" in capsys.readouterr().err


def test_credentials_refused_during_a_read_are_named_as_such_not_as_a_damaged_file(root, server, monkeypatch):
    monkeypatch.setattr("pdeforge.datasets._remote.BLOCK_BYTES", 1024)  # the fields' bytes come after the header's
    opts = {"headers": {"Authorization": "Bearer s3cret"}}
    server.token = "s3cret"
    ds = TrajectoryDataset(server.url, split="test", storage_options=opts, cache_small=False)
    server.token = "rotated"  # the token expires between opening the files and reading a trajectory
    with pytest.raises(PermissionError, match=r"access refused \(HTTP 401\): check the credentials") as err:
        ds.read(0, [0, 1])
    assert "damaged" not in str(err.value)
