"""The run skeleton on its own (a toy family): config grammar, schedule, RNG bundle, run folder, resume, NaN, DDP."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdeforge.checkpoint import load_state, load_weights
from pdeforge.training import (
    ConfigError,
    NonFiniteLossError,
    RunFolder,
    capture_rng,
    config_help,
    load_config,
    lr_factor,
    make_scheduler,
    read_envelope,
    restore_rng,
)

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("toy_family", HERE / "toy_family.py")
toy = importlib.util.module_from_spec(_spec)
sys.modules["toy_family"] = toy  # dataclasses look their module up by name
_spec.loader.exec_module(toy)


# -- config grammar ---------------------------------------------------------------------------------------------
def test_yaml_numbers_overrides_and_one_message_for_every_problem(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 1e-3\n  betas: [0.9, 0.98]\ndata:\n  preset: burgers_1d\n")
    cfg = load_config(
        toy.ToyConfig,
        f,
        [
            "--optim.weight_decay",
            "1E-4",
            "--run.loggers",
            "[]",
            "--run.seed=3",
            "--data.preset_options.n_trajectories",
            "12",
        ],
    )
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # PyYAML alone reads '1e-3' as a string
    assert cfg.optim.weight_decay == 1e-4 and cfg.optim.betas == [0.9, 0.98] and cfg.run.seed == 3
    assert cfg.data.preset == "burgers_1d" and cfg.data.preset_options == {"n_trajectories": 12}
    assert cfg.optim.epochs == 4  # the family's own default for a section
    f.write_text("optim:\n  lrr: 1\n  amp: fp8\n  batch_size: -1\nrun: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(toy.ToyConfig, f, ["--run.sed", "1", "--init-from", "x", "--optim.epochs", "many"])
    message = str(caught.value)
    for part in (
        f"{f}: optim.lrr: unknown option; did you mean optim.lr?",
        f"{f}: optim.amp 'fp8': expected one of 'none', 'bf16', 'fp16'",
        f"{f}: optim.batch_size -1: expected >= 1",
        "--optim.epochs 'many': expected an integer",
        "--run.sed: run is 3, not a section of options",
        f"{f}: run 3: expected a section (a mapping of its options)",
        "--init-from: unknown option; did you mean --run.init_from?",
    ):
        assert part in message, (part, message)
    with pytest.raises(ConfigError, match=r"^--run.sed: unknown option; did you mean --run.seed\?"):
        load_config(toy.ToyConfig, None, ["--run.sed", "1"])
    with pytest.raises(ConfigError, match=r"^--init-from: unknown option; did you mean --run.init_from\?"):
        load_config(toy.ToyConfig, None, ["--init-from", "x"])
    with pytest.raises(ConfigError, match=r"'x': expected --key value"):
        load_config(toy.ToyConfig, None, ["x"])
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"c.yaml: expected a mapping of options \(key: value\), found a list"):
        load_config(toy.ToyConfig, f)
    f.write_text("optim: {lr: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML \(line"):
        load_config(toy.ToyConfig, f)


def test_help_lists_every_option_with_its_doc_and_default():
    text = config_help(toy.ToyConfig)
    for key in ("--run.seed INT", "--run.device STR", "--optim.lr FLOAT", "--data.n_samples INT", "--optim.amp STR"):
        assert key in text, key
    assert "peak learning rate (default 0.2)" in text and "one of none, bf16, fp16" in text


# -- schedule and RNG bundle ------------------------------------------------------------------------------------
def test_warmup_cosine_values_and_exact_resume():
    total, warm = 100, 10
    assert [lr_factor(s, total, warm) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, total, warm) == 1.0
    assert lr_factor(55, total, warm) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(100, total, warm) == pytest.approx(0.0, abs=1e-15) and lr_factor(150, total, warm) == 0.0
    assert lr_factor(50, total, warm, "constant") == 1.0
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = make_scheduler(opt, total, 0.1)
    lrs = []
    for _ in range(30):
        opt.step(), sched.step()
        lrs.append(sched.get_last_lr()[0])
    opt2 = torch.optim.SGD([p], lr=2.0)
    sched2 = make_scheduler(opt2, total, 0.1)
    sched2.load_state_dict({k: v for k, v in sched.state_dict().items()})
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr() and lrs[9] == 2.0


def test_rng_bundle_puts_every_state_back(tmp_path):
    g, n = torch.Generator().manual_seed(5), np.random.default_rng(7)
    bundle = capture_rng({"windows": g, "numpy": n})
    draws = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=g), n.random())
    torch.save(bundle, tmp_path / "b.pt")
    restore_rng(torch.load(tmp_path / "b.pt", weights_only=True), {"windows": g, "numpy": n})
    again = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=g), n.random())
    assert draws[0] == again[0] and draws[1] == again[1] and draws[4] == again[4]
    assert torch.equal(draws[2], again[2]) and torch.equal(draws[3], again[3])
    with pytest.raises(KeyError, match="no generator 'other'"):
        restore_rng(bundle, {"other": torch.Generator()})


# -- fit: the run folder, resume, NaN ---------------------------------------------------------------------------
def test_fit_writes_the_run_folder_and_learns(tmp_path):
    run = tmp_path / "run"
    metrics = toy.train(str(run))
    for name in (
        "config.yaml",
        "train_log.jsonl",
        "metrics.json",
        "model.safetensors",
        "model.json",
        "checkpoint/state.pt",
    ):
        assert (run / name).is_file(), name
    assert metrics["test"]["mse"] < 0.05 and metrics["steps"] == 4 * 8
    envelope = read_envelope(run)
    assert envelope["family"] == "toy" and envelope["config"]["optim"]["lr"] == 0.2
    assert yaml.safe_load((run / "config.yaml").read_text())["family"] == "toy"
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    state = load_state(run / "checkpoint" / "state.pt")
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    valid = [r["valid"] for r in log if "valid" in r]
    assert len(valid) == 4 and metrics["best_step"] in (8, 16, 24, 32)
    model = toy.ToyFamily.rebuild(envelope)
    model.load_state_dict(load_weights(run / "model.safetensors"))  # the selected weights rebuild the model


@pytest.mark.parametrize(
    "extra", [[], ["--optim.grad_accum", "2", "--run.checkpoint_every", "3"], ["--run.checkpoint_every", "8"]]
)  # 8: a checkpoint at each epoch's last batch
def test_a_crash_and_resume_equal_an_uninterrupted_run(tmp_path, crash_after_checkpoint, extra):
    whole = toy.train(str(tmp_path / "whole"), *extra)
    calls = crash_after_checkpoint(lambda: toy.train(str(tmp_path / "cut"), *extra), nth=2)
    assert 0 < calls[-1] < whole["steps"]
    with pytest.raises(FileExistsError, match="already holds a run; resume it with --run.resume"):
        toy.train(str(tmp_path / "cut"), *extra)
    with pytest.raises(ValueError, match=r"started with other options \(optim.lr 0.2 there, 0.1 now\)"):
        toy.train(str(tmp_path / "cut"), *extra, "--run.resume", str(tmp_path / "cut"), "--optim.lr", "0.1")
    again = toy.train(str(tmp_path / "cut"), *extra, "--run.resume", str(tmp_path / "cut"), "--run.threads", "1")
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in whole.items() if k != "train_seconds"
    }
    a, b = load_weights(tmp_path / "whole" / "model.safetensors"), load_weights(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    resumed = [r for r in log if r.get("event") == "resume"]
    assert resumed == [
        {"step": calls[-1], "event": "resume", "changed": {"run.resume": str(tmp_path / "cut"), "run.threads": 1}}
    ]
    assert yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())["run"]["resume"] == ""  # kept as first run


def test_overwrite_replaces_a_run_and_a_missing_checkpoint_is_named(tmp_path):
    toy.train(str(tmp_path / "a"), "--optim.epochs", "1")
    (tmp_path / "a" / "stale.txt").write_text("old")
    toy.train(str(tmp_path / "a"), "--optim.epochs", "1", "--run.overwrite", "true")
    assert not (tmp_path / "a" / "stale.txt").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint to continue"):
        toy.train(str(tmp_path / "b"), "--run.resume", str(tmp_path / "b"))


def test_a_nan_loss_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"toy: the loss is nan at step 7 \(epoch 0, lr .*state.pt"):
        toy.train(str(run), "--data.nan_at_step", "7", "--run.checkpoint_every", "3")
    state = load_state(run / "checkpoint" / "state.pt")
    assert state["counters"]["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (run / "metrics.json").exists()


def test_metrics_with_nan_are_refused_naming_the_value(tmp_path):
    folder = RunFolder(tmp_path / "r")
    folder.path.mkdir()
    with pytest.raises(ValueError, match=r"metrics.json: test.curve\[1\] is nan"):
        folder.write_metrics({"test": {"curve": [0.1, math.nan]}})
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_an_unknown_logger_or_absent_device_is_one_line_before_work(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"run.loggers: 'neptune': expected a list of"):
        toy.train(str(tmp_path / "r"), "--run.loggers", "[neptune]")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"run.device: device 'cuda': expected 'cpu' or 'auto'"):
        toy.train(str(tmp_path / "r"), "--run.device", "cuda")
    assert not (tmp_path / "r").exists()


def test_ddp_two_processes_equal_one_with_the_combined_batch(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = str(HERE / "toy_family.py")
    common = ["--optim.epochs", "2", "--optim.grad_clip", "0", "--data.n_samples", "64", "--data.noise", "0"]
    r = subprocess.run(
        [sys.executable, script, str(tmp_path / "one"), *common, "--optim.batch_size", "16"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            script,
            str(tmp_path / "two"),
            *common,
            "--optim.batch_size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = (load_state(tmp_path / n / "checkpoint" / "state.pt")["model"] for n in ("one", "two"))
    assert all(torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-8) for k in one)
    assert load_state(tmp_path / "two" / "checkpoint" / "state.pt")["counters"]["step"] == 8
