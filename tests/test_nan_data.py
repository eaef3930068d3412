"""NaN in the data (issue 29): the read path names the first one (file, field, trajectory, time index, point), so
training stops with that one line instead of reporting ``test rel L2 nan`` or advising a lower learning rate; and
``pdeforge plot`` draws NaN in a colour of its own, counted in the title, never like zero."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdeforge import plots
from pdeforge.cli import main as cli
from pdeforge.datasets import FormatError, TrajectoryDataset
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

SMALL_FNO = "{n_modes: 4, hidden_channels: 8, n_layers: 1}"
N_SNAPSHOTS, RESOLUTION = 5, 16


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "burgers"
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=N_SNAPSHOTS),
        root,
        n_trajectories=6,
        resolution=RESOLUTION,
        progress=False,
    )
    return root


def poisoned(
    clean: Path, tmp_path: Path, split: str, trajectory: int, time: int, point: int, value: float = np.nan
) -> tuple[Path, Path]:
    """A copy of ``clean`` with one ``value`` in ``split``'s file; returns (root, that file)."""
    root = tmp_path / "poisoned"
    shutil.copytree(clean, root)
    (path,) = (root / "data" / split).glob("*.hdf5")
    with h5py.File(path, "r+") as f:
        f["t0_fields"]["u"][trajectory, time, point] = value
    return root, path


def test_the_first_nonfinite_value_read_is_named(clean: Path, tmp_path: Path) -> None:
    root, path = poisoned(clean, tmp_path, "train", trajectory=1, time=3, point=7, value=np.inf)
    ds = TrajectoryDataset(root, split="train", n_steps_input=1, n_steps_output=1)
    ds.read(0, range(N_SNAPSHOTS))  # another trajectory: read as usual
    ds.read(1, [0, 1, 2])  # the same trajectory, other times
    with pytest.raises(FormatError) as e:
        ds.read(1, [2, 3])
    assert str(e.value) == (
        f"{path}: field 'u' is inf at trajectory 1, time index 3, point (7,): the data hold "
        f"non-finite values (pdeforge inspect {path} scans the whole file)"
    )
    with pytest.raises(FormatError, match="time index 3, point"):  # the same through a window
        ds[1 * ds.windows_per_trajectory + 2]
    shown = TrajectoryDataset(root, split="train", allow_nonfinite=True).read(1, [3])["fields"]
    assert np.isinf(shown.numpy()).sum() == 1  # for a plot: the values as stored


def _train(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """``python train.py ARGV`` in this process; returns its one ``error:`` line."""
    from pdeforge.train import cli as train_cli

    with pytest.raises(SystemExit) as e:
        train_cli(argv)
    message = str(e.value.code)
    assert "\n" not in message, message
    capsys.readouterr()
    return message


def _argv(root: Path, run: Path) -> list[str]:
    return [
        "--data.root",
        str(root),
        "--model.args",
        SMALL_FNO,
        "--optim.epochs",
        "2",
        "--optim.batch_size",
        "2",
        "--task.dt_stride",
        "2",
        "--run.progress",
        "false",
        "--run.run_dir",
        str(run),
    ]


def test_nan_in_the_test_split_stops_training_naming_it_and_writes_no_metrics(clean, tmp_path, capsys) -> None:
    root, path = poisoned(clean, tmp_path, "test", trajectory=0, time=4, point=5)
    run = tmp_path / "run"
    message = _train(_argv(root, run), capsys)
    assert message == (
        f"train.py: error: {path}: field 'u' is nan at trajectory 0, time index 4, point (5,): the "
        f"data hold non-finite values (pdeforge inspect {path} scans the whole file)"
    )
    assert not (run / "metrics.json").exists()


def test_nan_in_the_train_split_names_the_data_not_the_learning_rate(clean, tmp_path, capsys) -> None:
    root, path = poisoned(clean, tmp_path, "train", trajectory=2, time=1, point=0)
    run = tmp_path / "run"
    message = _train(_argv(root, run), capsys)
    assert message.startswith(f"train.py: error: {path}: field 'u' is nan at trajectory 2, time index 1, point (0,)")
    assert "learning rate" not in message and "lr" not in message
    assert not (run / "metrics.json").exists()


def test_plot_draws_nan_in_its_own_colour_and_counts_it_in_the_title(clean, tmp_path, monkeypatch, capsys) -> None:
    root, _ = poisoned(clean, tmp_path, "test", trajectory=0, time=2, point=5)
    titles = []
    save = plots.save_figure

    def save_and_read_title(fig, out):
        titles.append(fig._suptitle.get_text() if fig._suptitle else "")
        return save(fig, out)

    monkeypatch.setattr(plots, "save_figure", save_and_read_title)
    out = tmp_path / "plot.png"
    assert cli(["plot", str(root), "--out", str(out)]) == 0
    n_values = N_SNAPSHOTS * RESOLUTION
    assert titles == [f"burgers_1d  trajectory 0  (1 NaN of {n_values} values (lime))"]
    assert _lime_pixels(out) > 100, "the NaN cell is drawn in lime"
    assert cli(["plot", str(clean), "--out", str(tmp_path / "clean.png")]) == 0  # no NaN: no lime, no note
    assert _lime_pixels(tmp_path / "clean.png") == 0
    assert titles[-1] == "burgers_1d  trajectory 0"


def _lime_pixels(path: Path) -> int:
    import matplotlib.image

    rgb = matplotlib.image.imread(path)[..., :3]
    return int(((rgb[..., 0] < 0.05) & (rgb[..., 1] > 0.95) & (rgb[..., 2] < 0.05)).sum())


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_plot_2d_masks_nan_and_inf(tmp_path: Path, suffix: str) -> None:
    fields = np.random.default_rng(0).normal(size=(3, 1, 8, 8))
    fields[:, 0, 2, 3] = np.nan
    fields[:, 0, 0, 0] = -np.inf
    assert plots.nonfinite_note(fields) == "3 NaN, 3 Inf of 192 values (lime)"
    assert plots.nonfinite_note(np.zeros(4)) == ""
    out = plots.plot_trajectory(fields, np.arange(3.0), [np.arange(8.0)] * 2, ["w"], tmp_path / f"w{suffix}")
    if suffix == ".png":  # a GIF's palette is quantised: its file is checked to exist only
        assert _lime_pixels(out) > 50
    assert out.is_file()
