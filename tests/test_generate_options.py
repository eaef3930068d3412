"""`pdeforge generate`'s numeric options and device, checked before anything is written (issue 29).

Each bad value ends with one line ``error: --option VALUE: expected ...`` naming the option, exit status 1, and
leaves no output folder behind; a good run prints its estimated output size before the first solve.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pdeforge.cli import main as cli
from pdeforge.solvers import generate as gen
from pdeforge.solvers.generate import PRESETS, check_options, trajectory_bytes

BELOW_MIN_32 = ["--resolution", "32", "--allow-underresolved"]  # small and fast: below burgers_1d's minimum
SMALL = ["--n-trajectories", "4", "--resolution", "32", "--allow-underresolved", "--no-progress"]  # small, fast


def refused(capsys: pytest.CaptureFixture, out: Path, *options: str) -> str:
    """Run ``pdeforge generate burgers_1d --out OUT OPTIONS``; assert a one-line refusal that wrote nothing."""
    assert cli(["generate", "burgers_1d", "--out", str(out), "--no-progress", *options]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert not out.exists(), "a refused generate must not create its root"
    return err.strip()


@pytest.mark.parametrize(
    "options, message",
    [
        (("--n-trajectories", "0"), "error: --n-trajectories 0: expected an integer >= 3"),
        (("--n-trajectories", "2"), "error: --n-trajectories 2: expected an integer >= 3"),
        (("--n-trajectories", "-5"), "error: --n-trajectories -5: expected an integer >= 3"),
        (("--resolution", "3"), "error: --resolution 3: expected an integer >= 4"),
        (("--resolution", "0"), "error: --resolution 0: expected an integer >= 4"),
        (("--batch-size", "-2"), "error: --batch-size -2: expected an integer >= 1"),
        (("--batch-size", "0"), "error: --batch-size 0: expected an integer >= 1"),
        (("--seed", "-1"), "error: --seed -1: expected an integer >= 0"),
        (("--device", "gpu"), "error: --device gpu: expected one of 'cpu', 'cuda', 'cuda:N', 'auto'"),
    ],
)
def test_bad_option_is_one_line_naming_it(tmp_path: Path, capsys, options: tuple[str, ...], message: str) -> None:
    assert refused(capsys, tmp_path / "root", *options).startswith(message)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_on_a_cpu_only_torch_is_refused(tmp_path: Path, capsys, monkeypatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert refused(capsys, tmp_path / "root", "--device", device) == (
        f"error: --device {device}: expected 'cpu' or 'auto': CUDA is not available here "
        "(torch.cuda.is_available() is False)"
    )


def test_a_resolution_that_does_not_fit_in_memory_is_refused_with_the_estimate(tmp_path: Path, capsys) -> None:
    err = refused(capsys, tmp_path / "root", "--resolution", "100000000000")
    # burgers_1d: 41 snapshots x 1 channel x 1e11 points x 8 bytes (float64 while solved) = 32.8 TB
    assert err.startswith(
        "error: --resolution 100000000000: expected a grid whose trajectories fit in memory: one "
        "burgers_1d trajectory needs ~32.8 TB while solved, this machine has "
    ), err


def test_a_batch_that_does_not_fit_in_memory_names_the_batch_size_and_one_that_fits(tmp_path, capsys, monkeypatch):
    one = trajectory_bytes(PRESETS["burgers_1d"], 32, gen.SOLVED_BYTES)
    monkeypatch.setattr(gen, "_memory_bytes", lambda: 3 * one)  # room for three trajectories at once
    err = refused(capsys, tmp_path / "root", *BELOW_MIN_32, "--n-trajectories", "8", "--batch-size", "8")
    assert err.startswith(
        "error: --batch-size 8: expected a batch that fits in memory: 8 trajectories at resolution 32 need ~"
    ) and err.endswith("try --batch-size 3"), err
    err = refused(capsys, tmp_path / "root", *BELOW_MIN_32, "--n-trajectories", "4", "--batch-size", "100")
    assert "expected a batch that fits in memory: 4 trajectories at" in err, "a batch is at most the count"


def test_files_larger_than_the_free_disk_are_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(gen, "_free_disk_bytes", lambda out: 1000)
    err = refused(capsys, tmp_path / "root", *SMALL)
    assert err.startswith(
        "error: --n-trajectories 4 --resolution 32: expected files that fit on the disk: they need ~"
    ), err


def test_trajectory_bytes_follow_the_schema() -> None:
    burgers, heat, darcy = PRESETS["burgers_1d"], PRESETS["heat_2d"], PRESETS["darcy_2d"]
    assert trajectory_bytes(burgers, 32) == 4 * burgers.n_snapshots * 32
    assert trajectory_bytes(heat, 16) == 4 * heat.n_snapshots * 16**2
    assert trajectory_bytes(darcy, 15) == 4 * (1 + 1) * 15**2  # u (one snapshot) and the coefficient a
    # the estimate is the written file's payload: the HDF5 file is that plus headers, coordinates and attributes


def test_zero_is_checked_not_taken_for_the_default() -> None:
    with pytest.raises(ValueError, match=r"^--n-trajectories 0: expected an integer >= 3"):
        check_options(PRESETS["burgers_1d"], "unused", 0, None, None, 0, "cpu")
    assert check_options(PRESETS["burgers_1d"], "unused", None, None, None, 0, "auto") == (
        PRESETS["burgers_1d"].n_trajectories,
        PRESETS["burgers_1d"].resolution,
        PRESETS["burgers_1d"].batch_size,
    )


def test_a_good_run_prints_the_estimated_size_before_it_solves(tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    assert cli(["generate", "burgers_1d", "--out", str(root), *SMALL, "--device", "auto"]) == 0
    out = capsys.readouterr().out.splitlines()
    per = trajectory_bytes(PRESETS["burgers_1d"], 32)
    assert out[0] == (
        f"estimated output: {gen._size(4 * per)} (4 trajectories x {gen._size(per)} at resolution 32); "
        "under-resolved (below burgers_1d's minimum 128), as its files say"
    )
    assert [line.split()[0] for line in out[1:4]] == ["wrote"] * 3
    payload = sum(p.stat().st_size for p in (root / "data").rglob("*.hdf5"))
    assert 4 * per <= payload < 4 * per + 200_000, "the estimate is the data, the files add headers and coordinates"
