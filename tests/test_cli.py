"""The `pdeforge` command line: plot and convert, as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from pdeforge.datasets import TrajectoryDataset
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

CLI = [sys.executable, "-m", "pdeforge.cli"]


def test_plot_1d_2d_and_gif(tmp_path: Path) -> None:
    generate(with_overrides(PRESETS["burgers_1d"], n_snapshots=6), tmp_path / "b", n_trajectories=3, resolution=32, progress=False)
    generate(with_overrides(PRESETS["gray_scott_2d"], n_snapshots=4), tmp_path / "g", n_trajectories=3, resolution=16, progress=False)
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
    assert r.returncode != 0 and "no channel 'nope'" in r.stderr


def test_convert_pdebench_cli(tmp_path: Path) -> None:
    src = tmp_path / "1D_Advection_Sols_beta0.4.hdf5"
    rng = np.random.default_rng(0)
    u = rng.standard_normal((10, 5, 16)).astype(np.float32)
    with h5py.File(src, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = (np.arange(16) + 0.5) / 16
        f["t-coordinate"] = 0.1 * np.arange(6)
    out = tmp_path / "root"
    r = subprocess.run(CLI + ["convert", "pdebench", str(src), str(out), "--no-progress"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    n = sum(len(TrajectoryDataset(out, split=s, full_trajectory=True)) for s in ("train", "valid", "test"))
    assert n == 10
    r = subprocess.run(CLI + ["convert", "pdebench", str(tmp_path / "missing.h5"), str(out)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 1 and "missing.h5" in r.stderr


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`pdeforge generate --list | head -1`: the pipe closes before the list is written; the command ends quietly
    with the shell's SIGPIPE status instead of a BrokenPipeError traceback."""
    proc = subprocess.Popen([*CLI, "generate", "--list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the command writes anything
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err
