"""A dataset root in an S3 bucket: moto's S3 stand-in served on 127.0.0.1 (its server mode), read with s3fs through
``storage_options`` (the endpoint) as a bucket on AWS would be. Skipped where s3fs or moto is not installed (neither
is a dependency of pdeforge: ``pip install s3fs "moto[server]"``); nothing leaves the machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pdeforge.datasets import FieldSpec, Schema, TrajectoryDataset, TrajectoryWriter, validate, write_stats

s3fs = pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

REPO = Path(__file__).resolve().parents[1]
BUCKET = "pdeforge-test"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A small 1D dataset root (train 6, valid 2, test 2 trajectories of 9 snapshots on 32 points) with stats."""
    root = tmp_path_factory.mktemp("s3") / "burgers"
    rng = np.random.default_rng(0)
    x = np.arange(32) / 32
    schema = Schema("toy", coords={"x": x}, time=0.1 * np.arange(9), fields=(FieldSpec("u"),), parameters={"nu": 0.1})
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        with TrajectoryWriter(root / "data" / split / f"{split}.hdf5", schema, n) as w:
            w.write({"u": rng.standard_normal((n, 9, 32)).astype(np.float32)})
    write_stats(root)
    return root


@pytest.fixture
def bucket(root: Path, tmp_path: Path, monkeypatch):
    """moto's S3 on 127.0.0.1 with ``root`` uploaded to ``s3://pdeforge-test/burgers``; the credentials in the
    environment (as the docs advise), the endpoint in ``storage_options``."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PDEFORGE_REMOTE_CACHE", str(tmp_path / "blocks"))
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{server._server.server_port}"}
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    if not fs.exists(BUCKET):  # moto keeps its buckets in the process, across servers
        fs.mkdir(BUCKET)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{BUCKET}/burgers/{path.relative_to(root).as_posix()}")
    yield f"s3://{BUCKET}/burgers", options
    server.stop()


def test_an_s3_root_reads_as_the_local_copy(root, bucket, capsys):
    from pdeforge.cli import main as cli

    url, options = bucket
    assert [i.n_trajectories for i in validate(url, storage_options=options)] == [6, 2, 2]
    assert cli(["inspect", url, "--fast", "--storage-options", f"{{endpoint_url: '{options['endpoint_url']}'}}"]) == 0
    assert "statistics: s3://pdeforge-test/burgers/stats.yaml" in capsys.readouterr().out
    for split in ("train", "test"):
        local = TrajectoryDataset(root, split=split, n_steps_input=2, normalization="zscore")
        remote = TrajectoryDataset(url, split=split, n_steps_input=2, normalization="zscore", storage_options=options)
        assert len(local) == len(remote) > 0
        for i in range(len(local)):
            a, b = local[i], remote[i]
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (split, i)
    with pytest.raises(FileNotFoundError, match=r"s3://pdeforge-test/nowhere/data/train/x.hdf5: not found"):
        TrajectoryDataset(f"s3://{BUCKET}/nowhere/data/train/x.hdf5", storage_options=options)


def test_train_reads_an_s3_root_with_data_storage_options(bucket, tmp_path):
    from pdeforge.datasets._remote import set_storage_options
    from pdeforge.families import train

    url, options = bucket
    run = tmp_path / "run"
    overrides = ["--data.root", url, "--data.storage_options", f"{{endpoint_url: '{options['endpoint_url']}'}}"]
    overrides += ["--run.max_steps", "1", "--run.run_dir", str(run), "--run.progress", "false"]
    overrides += ["--optim.batch_size", "2", "--model.args.n_modes", "4", "--model.args.hidden_channels", "8"]
    try:
        metrics = train(REPO / "configs" / "fno_burgers.yaml", overrides)
    finally:
        set_storage_options(url, None)
    assert (run / "model.json").is_file() and 0 < metrics["test"]["rel_l2"] < 10
