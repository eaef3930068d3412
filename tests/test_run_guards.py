"""Where runs and files meet (issue 29): every command that reads a dataset root checks all of its splits before any
work (a broken test file is refused at the start of training, not after it); a NaN read by a DataLoader worker is
the same one line as one read in the main process; under torchrun a failure is said once, not once per process;
and the bad or unlucky inputs a new user tries end with one ``error:`` line, nothing written or changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdeforge.cli import interrupted_training
from pdeforge.cli import main as cli
from pdeforge.datasets import FormatError, TrajectoryDataset
from pdeforge.solvers.generate import PRESETS, generate, with_overrides
from pdeforge.train import cli as train_cli
from pdeforge.training import check_dataset_root, reports_failure

REPO = Path(__file__).resolve().parents[1]
SMALL_FNO = "{n_modes: 4, hidden_channels: 8, n_layers: 1}"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "burgers"
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=5), root, n_trajectories=6, resolution=16, progress=False
    )
    return root


@pytest.fixture(autouse=True)
def _one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PDEFORGE_TRACEBACK", "WORLD_SIZE", "RANK", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(name, raising=False)


def copy_of(clean: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(clean, root)
    return root


def checksums(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256): what a refused command must leave as it was."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train_argv(root: Path, run: Path, *extra: str) -> list[str]:
    return [
        "--data.root",
        str(root),
        "--model.args",
        SMALL_FNO,
        "--optim.epochs",
        "1",
        "--optim.batch_size",
        "2",
        "--task.dt_stride",
        "1",
        "--run.progress",
        "false",
        "--run.run_dir",
        str(run),
        *extra,
    ]


def train_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """``python train.py ARGV`` in this process; returns its one ``train.py: error:`` line."""
    with pytest.raises(SystemExit) as e:
        train_cli(argv)
    message = str(e.value.code)
    assert "\n" not in message, message
    capsys.readouterr()
    return message


def pdeforge_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """``pdeforge ARGV``: exit status 1 and one line on stderr, returned."""
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def split_file(root: Path, split: str) -> Path:
    (path,) = (root / "data" / split).glob("*.hdf5")
    return path


def drop_attribute(path: Path) -> str:
    with h5py.File(path, "r+") as f:
        del f.attrs["dataset_name"]
    return f"{path}: missing root attribute 'dataset_name'"


def wrong_shape(path: Path) -> str:
    with h5py.File(path, "r+") as f:
        attrs = dict(f["t0_fields/u"].attrs)
        del f["t0_fields/u"]
        new = f.create_dataset("t0_fields/u", data=np.zeros((1, 5, 15), np.float32))
        new.attrs.update(attrs)
    return f"{path}: 't0_fields/u' has shape (1, 5, 15), expected (1, 5, 16)"


# -- 1. every split checked before any step ---------------------------------------------------------------------
@pytest.mark.parametrize("damage", [drop_attribute, wrong_shape])
def test_a_broken_test_file_is_refused_before_training_and_nothing_is_written(clean, tmp_path, capsys, damage) -> None:
    root = copy_of(clean, tmp_path)
    expected = damage(split_file(root, "test"))
    run = tmp_path / "run"  # a run folder of an earlier run, replaced only once the data and model are made
    (run / "checkpoint").mkdir(parents=True)
    (run / "config.yaml").write_text("old: run\n")
    (run / "checkpoint" / "state.pt").write_bytes(b"old checkpoint")
    before = {"run": checksums(run), "root": checksums(root)}
    message = train_error(train_argv(root, run, "--run.overwrite", "true"), capsys)
    assert message.startswith(f"train.py: error: operator: data.root {root}: {expected}")
    assert {"run": checksums(run), "root": checksums(root)} == before  # no checkpoint, no metrics, no config


@pytest.mark.parametrize("split", ["test", "valid"])
def test_a_missing_or_empty_split_is_refused_naming_it(clean, tmp_path, capsys, split) -> None:
    root = copy_of(clean, tmp_path)
    split_file(root, split).unlink()  # the split's folder stays, empty
    message = train_error(train_argv(root, tmp_path / "run"), capsys)
    assert message == (
        f"train.py: error: operator: data.root {root}: no {split} split ({root}/data/{split}/*.hdf5 not found; the "
        f"root has {', '.join(s for s in ('train', 'valid', 'test') if s != split)}): expected "
        "ROOT/data/{train,valid,test}/*.hdf5, as pdeforge generate and pdeforge convert (without --no-split) write"
    )
    shutil.rmtree(root / "data" / split)  # no folder at all: the same line
    assert train_error(train_argv(root, tmp_path / "run"), capsys) == message
    assert not (tmp_path / "run").exists()


def test_the_check_evaluate_can_call_is_inspect_fast(clean, tmp_path) -> None:
    check_dataset_root(clean, where="w")  # a good root passes, NaN or not: values are checked as they are read
    root = copy_of(clean, tmp_path)
    expected = wrong_shape(split_file(root, "valid"))
    with pytest.raises(ValueError) as e:
        check_dataset_root(root, where="--data ROOT")
    assert str(e.value).startswith(f"--data ROOT: {expected}")
    assert cli(["inspect", "--fast", str(root)]) == 1  # the same verdict as inspect --fast


def test_plot_checks_every_split_of_a_root_first_and_names_a_missing_one(clean, tmp_path, capsys) -> None:
    root = copy_of(clean, tmp_path)
    expected = drop_attribute(split_file(root, "test"))
    out = tmp_path / "p.png"
    assert pdeforge_error(["plot", str(root), "--split", "train", "--out", str(out)], capsys) == f"error: {expected}"
    assert not out.exists()
    root = copy_of(clean, tmp_path / "b")
    shutil.rmtree(root / "data" / "test")
    assert pdeforge_error(["plot", str(root)], capsys) == (
        f"error: {root}: no test split (data/test/*.hdf5 not found); the root has train, valid: choose one with --split"
    )
    file = split_file(clean, "valid")
    assert pdeforge_error(["plot", str(file), "--split", "valid", "--out", str(out)], capsys) == (
        f"error: --split valid: {file} is not a dataset root (ROOT/data/{{train,valid,test}}); expected --split only "
        "with a root"
    )
    assert pdeforge_error(["plot", str(tmp_path / "nowhere")], capsys) == (
        f"error: {tmp_path / 'nowhere'}: no such file or folder (expected an .hdf5 file, a folder of them, or a "
        "dataset root)"
    )
    assert not out.exists()


# -- 2. NaN read by a DataLoader worker ---------------------------------------------------------------------------
def test_nan_read_in_a_dataloader_worker_is_the_main_process_line(clean, tmp_path, capsys) -> None:
    from torch.utils.data import DataLoader

    root = copy_of(clean, tmp_path)
    path = split_file(root, "train").resolve()
    with h5py.File(path, "r+") as f:
        f["t0_fields"]["u"][1, 3, 7] = np.nan
    line = (
        f"{path}: field 'u' is nan at trajectory 1, time index 3, point (7,): the data hold non-finite values "
        f"(pdeforge inspect {path} scans the whole file)"
    )
    ds = TrajectoryDataset(root.resolve(), split="train")
    with pytest.raises(FormatError) as main_process:
        list(DataLoader(ds, batch_size=2, num_workers=0))
    with pytest.raises(FormatError) as worker:
        list(DataLoader(ds, batch_size=2, num_workers=1))
    assert str(main_process.value) == str(worker.value) == line
    run = tmp_path / "run"
    assert train_error(train_argv(root, run, "--data.num_workers", "1"), capsys) == f"train.py: error: {line}"
    assert not (run / "metrics.json").exists() and not (run / "checkpoint").exists()


# -- 3. once under torchrun -------------------------------------------------------------------------------------
def test_reports_failure_is_claimed_once_in_torchruns_store(monkeypatch) -> None:
    import torch.distributed as dist

    assert reports_failure()  # one process: always
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not reports_failure()  # no agent store: rank 0 says it
    monkeypatch.setenv("RANK", "0")
    assert reports_failure()
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=10))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(store.port))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "guards")
    monkeypatch.setenv("RANK", "1")
    assert reports_failure()  # the first process to stop says it, whatever its rank
    monkeypatch.setenv("RANK", "0")
    assert not reports_failure()  # the others, stopped by it, do not


def test_the_resume_command_of_a_torchrun_run_is_torchruns(tmp_path, monkeypatch) -> None:
    from pdeforge.checkpoint import save_state

    run = tmp_path / "run"
    save_state(run / "checkpoint" / "state.pt", {"counters": {"step": 7}})
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    argv = ["--run.run_dir", str(run)]
    assert interrupted_training(argv, "python train.py") == (
        f"interrupted: {run} keeps its last checkpoint (step 7); resume with: torchrun --nproc_per_node 2 train.py "
        f"--run.resume {run}"
    )
    assert interrupted_training(argv).endswith(f"torchrun --nproc_per_node 2 -m pdeforge.cli train --run.resume {run}")


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def test_an_error_under_torchrun_is_one_line_once(clean, tmp_path) -> None:
    root = copy_of(clean, tmp_path)
    expected = drop_attribute(split_file(root, "test"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PDEFORGE_TRACEBACK", None)
    r = subprocess.run(
        _torchrun(str(REPO / "train.py"), *train_argv(root, tmp_path / "run")),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode != 0
    ours = [line for line in r.stderr.splitlines() if "error:" in line or line.startswith("[rank")]
    assert ours == [f"train.py: error: operator: data.root {root}: {expected}"], r.stderr[-3000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ctrl_c_and_a_nan_of_one_process_under_torchrun_are_said_once(clean, tmp_path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PDEFORGE_TRACEBACK", None)
    run = tmp_path / "run"
    argv = train_argv(clean, run, "--optim.epochs", "100000", "--run.checkpoint_every", "1")
    proc = subprocess.Popen(
        _torchrun(str(REPO / "train.py"), *argv), stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not (run / "checkpoint" / "state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches torchrun and both processes
    err = proc.communicate(timeout=120)[1]
    ours = [line for line in err.splitlines() if line.startswith(("interrupted", "[rank", "train.py"))]
    assert len(ours) == 1 and ours[0].endswith(f"resume with: torchrun --nproc_per_node 2 train.py --run.resume {run}")
    # a NaN in the trajectories of one process: that process says it, the other stays quiet
    root = copy_of(clean, tmp_path)
    path = split_file(root, "train")
    with h5py.File(path, "r+") as f:
        f["t0_fields"]["u"][1, 3, 7] = np.nan
    r = subprocess.run(
        _torchrun(str(REPO / "train.py"), *train_argv(root, tmp_path / "nan")),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    ours = [line for line in r.stderr.splitlines() if "error:" in line or line.startswith("[rank")]
    assert len(ours) == 1 and ours[0].startswith(f"train.py: error: {path}: field 'u' is nan"), r.stderr[-3000:]


# -- 4. what a new user tries ---------------------------------------------------------------------------------
def test_bad_config_files_are_one_line_naming_the_file(tmp_path, capsys) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    assert train_error([str(folder)], capsys) == (
        f"train.py: error: {folder}: a folder, not a config file (expected a YAML file, e.g. configs/fno_burgers.yaml)"
    )
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 8)
    assert (
        train_error([str(binary)], capsys)
        == f"train.py: error: {binary}: not a text file (not UTF-8); expected a YAML config"
    )
    twice = tmp_path / "twice.yaml"
    twice.write_text("optim:\n  lr: 0.001\n  epochs: 2\n  lr: 0.1\n")
    assert train_error([str(twice), "--run.run_dir", str(tmp_path / "run")], capsys) == (
        f"train.py: error: {twice}: not valid YAML (line 4, column 3): key 'lr' given twice (first on line 2): give "
        "it once"
    )
    sections = tmp_path / "sections.yaml"
    sections.write_text("optim:\n  lr: 0.001\noptim:\n  epochs: 2\n")
    assert "key 'optim' given twice (first on line 1)" in train_error([str(sections)], capsys)
    assert not (tmp_path / "run").exists()


def test_a_mapping_without_spaces_says_how_to_write_it(capsys) -> None:
    assert train_error(["--model.args", "{n_modes:4,hidden_channels:8}"], capsys) == (
        "train.py: error: --model.args '{n_modes:4,hidden_channels:8}': write a space after each colon of a mapping "
        "(e.g. {n_modes: 4})"
    )


def test_run_folders_that_are_files_or_missing_weights(clean, tmp_path, capsys) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    message = train_error(train_argv(clean, file), capsys)
    assert message == f"train.py: error: --run.run_dir {file}: a file, not a run folder; choose another --run.run_dir"
    assert file.read_text() == "mine"
    assert pdeforge_error(["train", *train_argv(clean, file, "--run.overwrite", "true")], capsys) == message.replace(
        "train.py: ", ""
    )
    assert file.read_text() == "mine"
    nowhere = tmp_path / "nowhere"
    assert train_error(train_argv(clean, tmp_path / "run", "--run.init_from", str(nowhere)), capsys) == (
        f"train.py: error: --run.init_from {nowhere}: {nowhere}: no such file or folder (expected a run folder, a "
        ".safetensors file or a state dict)"
    )
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def pdebench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PDEBench 1D file (layout 1: 'tensor' (N, T, X) + coordinates)."""
    path = tmp_path_factory.mktemp("pdebench") / "1D_Advection_Sols_beta0.1.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((10, 5, 16)).astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 16)
        f["t-coordinate"] = np.linspace(0, 1, 6)
    return path


def test_convert_options_out_of_range_and_its_own_source(pdebench, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert pdeforge_error(["convert", "pdebench", str(pdebench), str(out), "--seed", "-1"], capsys) == (
        "error: --seed -1: expected an integer >= 0"
    )
    assert pdeforge_error(["convert", "pdebench", str(pdebench), str(out), "--max-trajectories", "0"], capsys) == (
        "error: --max-trajectories 0: expected an integer >= 1 (default: all)"
    )
    assert not out.exists()
    src = tmp_path / "copy.h5"
    shutil.copy(pdebench, src)
    before = checksums(tmp_path)
    argv = ["convert", "pdebench", str(src), str(tmp_path / "." / "copy.h5"), "--no-split", "--overwrite"]
    assert pdeforge_error(argv, capsys) == (
        f"error: {tmp_path / 'copy.h5'}: the source file itself; expected another OUT (a new folder or .hdf5 file)"
    )
    assert checksums(tmp_path) == before


def test_convert_never_mixes_two_datasets_in_one_root(clean, pdebench, tmp_path, capsys) -> None:
    root = copy_of(clean, tmp_path)  # a generated root: another dataset
    before = checksums(root)
    assert pdeforge_error(["convert", "pdebench", str(pdebench), str(root), "--no-progress"], capsys) == (
        f"error: {root}: already holds another dataset (data/train/{split_file(root, 'train').name}: dataset_name "
        f"'burgers_1d', this conversion '{pdebench.stem}'); its files would be mixed with these: convert into a new "
        "folder (several files make one dataset when converted with the same dataset_name)"
    )
    assert checksums(root) == before  # stats.yaml too
    out = tmp_path / "converted"
    assert cli(["convert", "pdebench", str(pdebench), str(out), "--no-progress"]) == 0
    capsys.readouterr()
    before = checksums(out)
    assert pdeforge_error(["convert", "pdebench", str(pdebench), str(out), "--no-progress"], capsys) == (
        f"error: {out}/data/train/{pdebench.stem}.hdf5 exists; pass overwrite=True (pdeforge convert --overwrite) to "
        "replace it"
    )
    assert checksums(out) == before


def test_inspect_of_nothing_and_of_a_root_training_cannot_use(clean, tmp_path, capsys) -> None:
    assert cli(["inspect", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == (
        f"invalid: {tmp_path / 'nowhere'}: no such file or folder (expected an .hdf5 file, a folder of them, or a "
        "dataset root)\n"
    )
    root = copy_of(clean, tmp_path)
    shutil.rmtree(root / "data" / "test")
    assert cli(["inspect", "--fast", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "note: no test split: pdeforge train needs train, valid and test"
