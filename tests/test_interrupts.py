"""Ctrl-C ends `python train.py`, `pdeforge train` and `pdeforge generate` with one line (issue 29): what was kept
and the exact command that resumes it, exit status 130, no traceback; the command it names then completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pdeforge.checkpoint import load_state
from pdeforge.cli import main as cli
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "train.py")
SMALL_FNO = "{n_modes: 4, hidden_channels: 8, n_layers: 1}"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "burgers"
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=9), root, n_trajectories=10, resolution=16, progress=False
    )
    return root


def _interruptible() -> None:
    """In the child before it execs: Ctrl-C as a terminal gives it. A shell that starts a job in the background
    (``cmd &``, as some CI runners do) leaves SIGINT ignored, and Python then never installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_in_train_py_names_the_checkpoint_and_the_resume_completes(tmp_path: Path, data: Path) -> None:
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # a budget far beyond the test: the run is still training when it is interrupted, within its first epoch of 64
    # steps (8 train trajectories x 8 windows, batch 1)
    proc = subprocess.Popen(
        [
            sys.executable,
            TRAIN,
            "--data.root",
            str(data),
            "--model.args",
            SMALL_FNO,
            "--optim.epochs",
            "100000",
            "--optim.batch_size",
            "1",
            "--task.kind",
            "next_step",
            "--task.dt_stride",
            "1",
            "--run.checkpoint_every",
            "1",
            "--run.progress",
            "false",
            "--run.run_dir",
            str(run),
        ],
        preexec_fn=_interruptible,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    state = run / "checkpoint" / "state.pt"
    deadline = time.time() + 120
    while not state.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=300)[1]  # generous: a busy machine may be slow to unwind
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.count("\n") == 1, err
    counters = load_state(state)["counters"]
    step = int(counters["step"])
    assert 1 <= step < 64, f"the test wants an interrupt within the first epoch, got {counters}"
    assert err == (
        f"interrupted: {run} keeps its last checkpoint (step {step}); resume with: python train.py --run.resume {run}\n"
    )
    assert not (run / "metrics.json").exists()
    # the named command, with a cap on steps (an option safe to change on resume) so that it ends soon
    r = subprocess.run(
        [sys.executable, TRAIN, "--run.resume", str(run), "--run.max_steps", str(step + 2)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {run} at step {step}" in r.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"valid", "test"}


def _interrupt_fit(monkeypatch: pytest.MonkeyPatch, before=lambda config: None) -> None:
    """`fit` raises KeyboardInterrupt as Ctrl-C would, after ``before(config)``."""
    import pdeforge.training.loop as loop

    def fit(family, config, where="config"):
        before(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "fit", fit)


def test_pdeforge_train_interrupted_before_the_run_folder_says_nothing_was_kept(tmp_path, data, monkeypatch, capsys):
    _interrupt_fit(monkeypatch)
    run = tmp_path / "run"
    assert cli(["train", "--data.root", str(data), "--run.run_dir", str(run)]) == 130
    assert capsys.readouterr().err == (
        "interrupted before the run folder was written: nothing was kept; start "
        f"again with: pdeforge train --data.root {data} --run.run_dir {run}\n"
    )


def test_pdeforge_train_interrupted_before_the_first_checkpoint_says_how_to_start_again(
    tmp_path, data, monkeypatch, capsys
):
    run = tmp_path / "run"

    def write_config(config) -> None:  # as `fit` does once the data and model are made
        run.mkdir()
        (run / "config.yaml").write_text("family: operator\n")

    _interrupt_fit(monkeypatch, write_config)
    assert cli(["train", "--data.root", str(data), "--run.run_dir", str(run)]) == 130
    assert capsys.readouterr().err == (
        f"interrupted before the first checkpoint: nothing to resume ({run} holds its config.yaml only); start "
        f"again with: pdeforge train --data.root {data} --run.run_dir {run} --run.overwrite true\n"
    )


def test_generate_interrupted_keeps_its_files_and_the_same_command_resumes(tmp_path, monkeypatch, capsys) -> None:
    preset = PRESETS["burgers_1d"]
    solve, calls = type(preset).solve, []

    def solve_then_interrupt(self, indices, seed, resolution, device):
        calls.append(indices)
        if len(calls) == 2:  # Ctrl-C during the second batch of the train file
            raise KeyboardInterrupt
        return solve(self, indices, seed, resolution, device)

    monkeypatch.setattr(type(preset), "solve", solve_then_interrupt)
    root = tmp_path / "root"
    argv = [
        "generate",
        "burgers_1d",
        "--out",
        str(root),
        "--n-trajectories",
        "4",
        "--resolution",
        "16",
        "--allow-underresolved",
        "--batch-size",
        "1",
        "--overwrite",
        "--no-progress",
    ]
    assert cli(argv) == 130
    err = capsys.readouterr().err
    # --overwrite is left out of the resume command: it would delete what the interrupted run kept
    assert err == (
        f"interrupted: {root} keeps 0 finished files and the partial "
        "data/train/burgers_1d_000000-000002.hdf5.partial (1 trajectory written); resume with the same "
        f"command: pdeforge generate burgers_1d --out {root} --n-trajectories 4 --resolution 16 "
        "--batch-size 1 --allow-underresolved --no-progress\n"
    )
    monkeypatch.setattr(type(preset), "solve", solve)
    assert cli(argv[:-2] + ["--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"resuming {root}") and out.count("wrote ") == 3, out
    assert (root / "stats.yaml").is_file() and not list(root.rglob("*.partial"))


def test_other_commands_interrupted_end_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    import pdeforge.datasets as datasets

    def validate(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "validate", validate)
    assert cli(["inspect", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted: pdeforge inspect stopped before it finished\n"


def test_sigint_in_pdeforge_generate_keeps_the_partial_file_and_its_command_resumes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    command = [
        sys.executable,
        "-m",
        "pdeforge.cli",
        "generate",
        "burgers_1d",
        "--out",
        str(root),
        "--n-trajectories",
        "12",
        "--resolution",
        "2048",
        "--batch-size",
        "1",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_interruptible
    )
    deadline = time.time() + 60
    while not list(root.glob("data/train/*.partial")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # a trajectory or two into the train file
    assert proc.poll() is None, "the generate should still be running"
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=300)[1]  # generous: a busy machine may be slow to unwind
    assert proc.returncode == 130 and "Traceback" not in err and err.count("\n") == 1, err
    resume = (
        f"resume with the same command: pdeforge generate burgers_1d --out {root} --n-trajectories 12 "
        "--resolution 2048 --batch-size 1 --no-progress\n"
    )
    assert err.startswith(
        f"interrupted: {root} keeps 0 finished files and the partial data/train/burgers_1d_000000-000010.hdf5.partial"
    ) and err.endswith(resume), err
    r = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"resuming {root}"), r.stderr[-2000:]
    assert not list(root.rglob("*.partial")) and (root / "stats.yaml").is_file()
