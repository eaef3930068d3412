"""Experiment trackers (``run.loggers``) on the toy family, read back through each backend's own reader: the config,
train loss / lr / gradient norm / throughput per logged step, the selection metric per validation, the final
valid/test scalars and the plots; a crashed and resumed run continues the same tracker run; under DDP only rank 0
logs; a missing backend is one line before any work. No network: wandb offline, MLflow's file store in the run
folder."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pdeforge.training import scalars

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("toy_family", HERE / "toy_family.py")
toy = importlib.util.module_from_spec(_spec)
sys.modules["toy_family"] = toy  # dataclasses look their module up by name
_spec.loader.exec_module(toy)

# 4 epochs of 8 steps; a validation every 4 steps; a checkpoint at each epoch's end; the crash after the second
ARGS = ("--optim.eval_every", "4")
CRASH_AFTER = 2


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the readers below open the file store too
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def _plots(self, model, run, metrics):
    """The toy family has no plots: one small PNG, so there is an image to log."""
    from PIL import Image

    Image.new("RGB", (12, 8), (200, 30, 30)).save(run.plot_path("loss.png"))


def crash_then_resume(run: Path, logger: str, monkeypatch, crash_after_checkpoint) -> tuple[dict, list[dict], int]:
    """Train with ``logger``, crash after the second checkpoint, resume; returns the final metrics, the run's log and
    the step the resume started from."""
    monkeypatch.setattr(toy.ToyFamily, "plots", _plots)
    calls = crash_after_checkpoint(lambda: toy.train(str(run), "--run.loggers", f"[{logger}]", *ARGS), nth=CRASH_AFTER)
    if logger == "wandb":  # wandb names an offline run's folder by the second it started in: keep the two apart
        time.sleep(1 - time.time() % 1)
    metrics = toy.train(str(run), "--run.loggers", f"[{logger}]", *ARGS, "--run.resume", str(run))
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return metrics, log, calls[-1]


def expected(log: list[dict], metrics: dict) -> dict[str, dict[int, float]]:
    """What every tracker must hold, ``{key: {step: value}}``, from the run's own log and metrics."""
    train = [r for r in log if "loss" in r]
    out = {f"train/{k}": {r["step"]: r[k] for r in train} for k in ("loss", "lr", "grad_norm")}
    out["valid/selection"] = {r["step"]: r["valid"] for r in log if "valid" in r}
    for key, value in scalars({"valid": metrics["valid"], "test": metrics["test"]}).items():
        out[key] = {metrics["steps"]: value}
    return out


def check(got: dict[str, dict[int, float]], log: list[dict], metrics: dict, resumed_at: int) -> None:
    want = expected(log, metrics)
    assert sorted(want["train/loss"]) == [1, 10, 20, 30] and resumed_at == 16  # both halves of the run
    for key, series in want.items():
        assert got[key] == pytest.approx(series), key
    steps, samples = got["train/steps_per_s"], got["train/samples_per_s"]
    assert sorted(steps) == sorted(samples) == [1, 10, 20, 30] and min(steps.values()) > 0
    assert samples == pytest.approx({k: 8 * v for k, v in steps.items()}, rel=1e-3)  # 8 samples a step


# -- TensorBoard ----------------------------------------------------------------------------------------------
def test_tensorboard_logs_everything_and_a_resume_appends_to_its_folder(tmp_path, monkeypatch, crash_after_checkpoint):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    metrics, log, resumed_at = crash_then_resume(run, "tensorboard", monkeypatch, crash_after_checkpoint)
    assert [p.name for p in (run / "tensorboard").iterdir() if p.is_dir()] == []  # one folder, no sub-runs
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the first run's and the resume's
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    got = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    check(got, log, metrics, resumed_at)
    [text] = events.Tensors("config/text_summary")
    config = yaml.safe_load(text.tensor_proto.string_val[0].decode().replace("\n    ", "\n").strip())
    assert config["family"] == "toy" and config["optim"]["eval_every"] == 4
    [image] = events.Images("loss")
    assert (image.step, image.width, image.height) == (metrics["steps"], 12, 8)


def test_under_ddp_only_rank_0_logs_and_throughput_counts_every_process(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "two"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "toy_family.py"),
            str(run),
            "--optim.epochs",
            "2",
            "--run.loggers",
            "[tensorboard]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 1 opened no writer
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    [loss], [steps], [samples] = (events.Scalars(f"train/{k}") for k in ("loss", "steps_per_s", "samples_per_s"))
    assert loss.step == steps.step == samples.step == 1  # 8 steps in all: only step 1 is logged
    assert samples.value == pytest.approx(2 * 8 * steps.value, rel=1e-3)  # 2 processes of 8 samples a step


# -- MLflow ---------------------------------------------------------------------------------------------------
def test_mlflow_logs_everything_and_a_resume_continues_the_same_run(tmp_path, monkeypatch, crash_after_checkpoint):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    metrics, log, resumed_at = crash_then_resume(run, "mlflow", monkeypatch, crash_after_checkpoint)
    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    run_id = (run / "mlflow_run_id.txt").read_text().strip()
    experiment = client.get_experiment_by_name("pdeforge")
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [run_id]  # one run, resumed
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED" and found.info.run_name == "run" and found.data.tags["family"] == "toy"
    got = {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in found.data.metrics}
    check(got, log, metrics, resumed_at)
    assert found.data.params["optim.eval_every"] == "4" and found.data.params["family"] == "toy"
    config = yaml.safe_load(Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path))).read_text())
    assert config["optim"]["eval_every"] == 4
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/loss.png"]


# -- Weights & Biases -----------------------------------------------------------------------------------------
def wandb_records(path: Path):
    """The protobuf records of a ``run-ID.wandb`` file. Its layout is LevelDB's log format, which wandb documents
    and keeps (its Python reader left the package): a 7-byte header ``:W&B``, magic, version; then 32 KiB blocks of
    records, each ``crc32 (4) | length (2, little-endian) | type (1: full, 2: first, 3: middle, 4: last)``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a wandb run file"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:  # a block's tail too short for a record header is padding
            pos += room
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if pos + 7 + length > len(data):  # the tail is still being written
            return
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def wandb_run(folder: Path, run_id: str, timeout: float = 30.0) -> list:
    """The records of one offline run, once complete: wandb's service writes the file in the background and may
    still be at it when ``finish()`` returns, so wait for the run's closing ``exit`` record."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(folder / f"run-{run_id}.wandb"))
        if (records and records[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_wandb_logs_everything_offline_and_a_resume_keeps_the_run_id(tmp_path, monkeypatch, crash_after_checkpoint):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    metrics, log, resumed_at = crash_then_resume(run, "wandb", monkeypatch, crash_after_checkpoint)
    run_id = (run / "wandb_run_id.txt").read_text().strip()
    folders = sorted((run / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(f"-{run_id}") for f in folders)  # the first run and the resume
    got: dict[str, dict[int, float]] = {}
    configs, images, ids = [], {}, set()
    for folder in folders:
        for record in wandb_run(folder, run_id):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "config":
                configs += [(item.key, json.loads(item.value_json)) for item in record.config.update]
            elif kind == "history":
                step = record.history.step.num
                for item in record.history.item:
                    key = [item.key] if item.key else list(item.nested_key)
                    if len(key) == 2:  # a media value is stored one field per item: (name, field)
                        images.setdefault((key[0], step, folder), {})[key[1]] = json.loads(item.value_json)
                    elif not key[0].startswith("_"):
                        got.setdefault(key[0], {})[step] = json.loads(item.value_json)
    assert ids == {run_id}
    check(got, log, metrics, resumed_at)
    config = dict(configs)
    assert config["family"] == "toy" and config["optim"]["eval_every"] == 4
    [((name, step, folder), image)] = images.items()
    assert (name, step, image["_type"], image["width"], image["height"]) == (
        "loss",
        metrics["steps"],
        "image-file",
        12,
        8,
    )
    assert (folder / "files" / image["path"]).is_file()


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb"])
def test_a_missing_backend_is_one_line_naming_the_extra_before_any_work(tmp_path, monkeypatch, name):
    module = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}[name]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == module else real(n, *a))

    def no_work(self):
        raise AssertionError("the data were opened before the config was checked")

    monkeypatch.setattr(toy.ToyFamily, "prepare", no_work)
    with pytest.raises(ValueError) as caught:
        toy.train(str(tmp_path / "r"), "--run.loggers", f"[{name}]")
    assert str(caught.value) == (
        f'config: run.loggers: {name!r} needs the {module} package, not installed: pip install -e ".[{name}]"'
    )
    with pytest.raises(
        ValueError,
        match=r"^config: run.loggers: 'neptune': expected a list of mlflow, tensorboard, "
        r"wandb$",
    ):
        toy.train(str(tmp_path / "r"), "--run.loggers", "[neptune]")
    assert not (tmp_path / "r").exists()


def test_scalars_flatten_metrics_and_leave_out_what_is_not_a_number():
    metrics = {"test": {"rel_l2": 0.5, "n": 3, "curve": [0.1, 0.2], "name": "x", "ok": True, "per_field": {"u": 0.25}}}
    assert scalars(metrics) == {"test/rel_l2": 0.5, "test/n": 3.0, "test/per_field/u": 0.25}
