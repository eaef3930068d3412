"""The `pdeforge` command line: plot and convert, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pdeforge.datasets import TrajectoryDataset
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

CLI = [sys.executable, "-m", "pdeforge.cli"]


def test_plot_1d_2d_and_gif(tmp_path: Path) -> None:
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=6),
        tmp_path / "b",
        n_trajectories=3,
        resolution=32,
        progress=False,
    )
    generate(
        with_overrides(PRESETS["gray_scott_2d"], n_snapshots=4),
        tmp_path / "g",
        n_trajectories=3,
        resolution=16,
        progress=False,
    )
    f1 = next((tmp_path / "b" / "data" / "train").glob("*.hdf5"))
    f2 = next((tmp_path / "g" / "data" / "train").glob("*.hdf5"))
    for src, out in ((f1, tmp_path / "b.png"), (f2, tmp_path / "g.png"), (f2, tmp_path / "g.gif")):
        r = subprocess.run(CLI + ["plot", str(src), "--out", str(out)], capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        img = Image.open(out)
        assert img.size[0] > 200 and img.size[1] > 100
        if out.suffix == ".gif":
            assert getattr(img, "n_frames", 1) == 4  # one frame per snapshot
        else:
            pixels = np.asarray(img.convert("L"), dtype=float)
            assert pixels.std() > 10  # not a blank canvas
    r = subprocess.run(CLI + ["plot", str(f1), "--field", "nope"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "no channel 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


def test_plot_a_dataset_root_or_folder_by_split(tmp_path: Path, capsys) -> None:
    """``pdeforge plot ROOT`` plots from a split (test by default), numbering trajectories across its files."""
    from pdeforge.cli import main

    root = tmp_path / "b"
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=4), root, n_trajectories=20, resolution=32, progress=False
    )
    n_train = len(TrajectoryDataset(root, split="train", full_trajectory=True))
    assert main(["plot", str(root)]) == 0
    assert (root / "test_traj0.png").is_file() and capsys.readouterr().out == f"wrote {root / 'test_traj0.png'}\n"
    assert main(["plot", str(root), "--split", "train", "--trajectory", str(n_train - 1)]) == 0
    assert (root / f"train_traj{n_train - 1}.png").is_file()
    out = tmp_path / "one.svg"
    assert main(["plot", str(root / "data" / "valid"), "--out", str(out)]) == 0 and out.read_text().startswith("<?xml")
    assert main(["plot", str(root), "--split", "train", "--trajectory", str(n_train)]) == 1
    assert f"{root} (train split): trajectory {n_train} out of range (there are {n_train}" in capsys.readouterr().err


def test_bad_input_to_plot_and_evaluate_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """A missing or invalid file, an index out of range or an unwritable format: ``error: ...`` naming it, exit 1,
    no traceback; ``PDEFORGE_TRACEBACK=1`` gives the exception itself."""
    from pdeforge.cli import main
    from pdeforge.datasets import FormatError

    monkeypatch.delenv("PDEFORGE_TRACEBACK", raising=False)
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=4),
        tmp_path / "b",
        n_trajectories=3,
        resolution=32,
        progress=False,
    )
    good = next((tmp_path / "b" / "data" / "train").glob("*.hdf5"))
    junk = tmp_path / "junk.hdf5"
    junk.write_text("not hdf5")
    cases = [
        (["plot", str(junk)], f"{junk}: not an HDF5 file"),
        (["plot", str(tmp_path / "missing.hdf5")], f"{tmp_path / 'missing.hdf5'}: no such file or folder"),
        (["plot", str(good), "--trajectory", "7"], f"{good}: trajectory 7 out of range (there are "),
        (["plot", str(good), "--out", str(tmp_path / "p.txt")], f"--out {tmp_path / 'p.txt'}: cannot write a .txt"),
        (["evaluate", str(tmp_path)], f"{tmp_path}: not a run folder (no model.json)"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "p.txt").exists()
    monkeypatch.setenv("PDEFORGE_TRACEBACK", "1")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        main(["plot", str(junk)])


def test_convert_pdebench_cli(tmp_path: Path) -> None:
    src = tmp_path / "1D_Advection_Sols_beta0.4.hdf5"
    rng = np.random.default_rng(0)
    u = rng.standard_normal((10, 5, 16)).astype(np.float32)
    with h5py.File(src, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = (np.arange(16) + 0.5) / 16
        f["t-coordinate"] = 0.1 * np.arange(6)
    out = tmp_path / "root"
    r = subprocess.run(
        CLI + ["convert", "pdebench", str(src), str(out), "--no-progress"], capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr
    n = sum(len(TrajectoryDataset(out, split=s, full_trajectory=True)) for s in ("train", "valid", "test"))
    assert n == 10
    r = subprocess.run(
        CLI + ["convert", "pdebench", str(tmp_path / "missing.h5"), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 1 and "missing.h5" in r.stderr


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`pdeforge generate --list | head -1`: the pipe closes before the list is written; the command ends quietly
    with the shell's SIGPIPE status instead of a BrokenPipeError traceback."""
    proc = subprocess.Popen([*CLI, "generate", "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes anything
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
