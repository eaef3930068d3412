"""Crafted bad files: each gives one clear FormatError naming the file, the key, what was expected and found."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from pdeforge.datasets import FieldSpec, FormatError, Schema, TrajectoryDataset, TrajectoryWriter, validate


def good_file(path: Path, n_t: int = 6, dt: float = 0.1) -> Path:
    x = np.linspace(0, 1, 16, endpoint=False)
    schema = Schema(
        "bad", coords={"x": x, "y": x}, time=dt * np.arange(n_t), fields=(FieldSpec("u"), FieldSpec("v", 1))
    )
    rng = np.random.default_rng(0)
    with TrajectoryWriter(path, schema, 3) as w:
        w.write_channels(rng.standard_normal((3, n_t, 3, 16, 16)).astype(np.float32))
    return path


def edit(fn: Callable[[h5py.File], None]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = good_file(tmp / "f.hdf5")
        with h5py.File(p, "a") as f:
            fn(f)
        return p

    return make


def not_hdf5(tmp: Path) -> Path:
    p = tmp / "f.hdf5"
    p.write_text("time,u\n0,1\n")
    return p


def truncated(tmp: Path) -> Path:
    p = good_file(tmp / "full.hdf5")
    data = p.read_bytes()
    q = tmp / "f.hdf5"
    q.write_bytes(data[: len(data) // 3])
    return q


def wrong_shape(f: h5py.File) -> None:
    d = f["t0_fields/u"][:, :, :, :8]
    del f["t0_fields/u"]
    ds = f["t0_fields"].create_dataset("u", data=d)
    ds.attrs.update({"dim_varying": [True, True], "sample_varying": True, "time_varying": True})


def wrong_dtype(f: h5py.File) -> None:
    d = f["t0_fields/u"][...].astype(np.float64)
    del f["t0_fields/u"]
    ds = f["t0_fields"].create_dataset("u", data=d)
    ds.attrs.update({"dim_varying": [True, True], "sample_varying": True, "time_varying": True})


def with_nan(f: h5py.File) -> None:
    f["t1_fields/v"][1, 2, 3, 4, 0] = np.nan


def with_inf(f: h5py.File) -> None:
    f["t0_fields/u"][2, 5, 0, 0] = np.inf


CASES = {
    "not HDF5": (not_hdf5, "not an HDF5 file"),
    "truncated": (truncated, "truncated"),
    "missing group": (edit(lambda f: f.__delitem__("t1_fields")), "missing group 't1_fields/'"),
    "missing field_names": (
        edit(lambda f: f["t0_fields"].attrs.__delitem__("field_names")),
        "t0_fields has no attribute 'field_names'",
    ),
    "listed field absent": (edit(lambda f: f["t0_fields"].__delitem__("u")), "'t0_fields/u' is missing"),
    "shape breaks the rule": (edit(wrong_shape), r"'t0_fields/u' has shape \(3, 6, 16, 8\), expected \(3, 6, 16, 16\)"),
    "wrong dtype": (edit(wrong_dtype), "'t0_fields/u' has dtype float64, expected float32"),
    "zero trajectories": (edit(lambda f: f.attrs.__setitem__("n_trajectories", 0)), "zero trajectories"),
    "missing root attribute": (edit(lambda f: f.attrs.__delitem__("grid_type")), "missing root attribute 'grid_type'"),
    "bad boundary type": (
        edit(lambda f: f["boundary_conditions/x_periodic"].attrs.__setitem__("bc_type", "sticky")),
        "'sticky', expected one of",
    ),
    "NaN values": (edit(with_nan), r"'t1_fields/v' contains non-finite values \(first at index \(1, 2, 3, 4, 0\)"),
    "Inf values": (edit(with_inf), r"'t0_fields/u' contains non-finite values \(first at index \(2, 5, 0, 0\)"),
    "uneven time axis": (edit(lambda f: f["dimensions/time"].__setitem__(3, 0.35)), "constant dt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_gives_one_clear_format_error(tmp_path: Path, case: str) -> None:
    make, message = CASES[case]
    path = make(tmp_path)
    with pytest.raises(FormatError, match=message) as info:
        validate(path)
    assert str(path) in str(info.value)  # names the file


@pytest.mark.parametrize("case", ["not HDF5", "missing group", "shape breaks the rule", "zero trajectories"])
def test_dataset_refuses_bad_files_with_format_error(tmp_path: Path, case: str) -> None:
    make, message = CASES[case]
    with pytest.raises(FormatError, match=message):
        TrajectoryDataset(make(tmp_path))


def test_inconsistent_time_axis_between_files(tmp_path: Path) -> None:
    good_file(tmp_path / "a.hdf5", dt=0.1)
    good_file(tmp_path / "b.hdf5", dt=0.2)
    with pytest.raises(FormatError, match=r"b\.hdf5: time axis .* differs from .*a\.hdf5.*inconsistent time axis"):
        validate(tmp_path)
    with pytest.raises(FormatError, match="inconsistent time axis"):
        TrajectoryDataset(tmp_path)


def test_inconsistent_time_axis_between_splits(tmp_path: Path) -> None:
    for split, dt in (("train", 0.1), ("valid", 0.1), ("test", 0.3)):
        (tmp_path / "data" / split).mkdir(parents=True)
        good_file(tmp_path / "data" / split / f"{split}.hdf5", dt=dt)
    with pytest.raises(FormatError, match="test.hdf5: time axis"):
        validate(tmp_path)


def test_truncated_data_read_is_format_error_not_h5py_traceback(tmp_path: Path) -> None:
    p = good_file(tmp_path / "f.hdf5", n_t=40)
    size = p.stat().st_size
    with open(p, "r+b") as fh:  # keep the header and metadata, cut the last data blocks
        fh.truncate(size - 20000)
    try:
        ds = TrajectoryDataset(p, cache_small=False)
    except FormatError:
        return  # refused at open: fine
    with pytest.raises(FormatError, match="truncated or damaged"):
        for i in range(len(ds)):
            ds[i]


def test_empty_folder_and_root_without_split(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no .hdf5/.h5 files"):
        TrajectoryDataset(tmp_path)
    (tmp_path / "data" / "train").mkdir(parents=True)
    good_file(tmp_path / "data" / "train" / "a.hdf5")
    with pytest.raises(FormatError, match="pass split="):
        TrajectoryDataset(tmp_path)
    assert len(TrajectoryDataset(tmp_path, split="train")) == 3 * 5


def test_writer_refuses_wrong_shapes_and_nan(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 8, endpoint=False)
    schema = Schema("w", coords={"x": x}, time=np.arange(4.0), fields=(FieldSpec("u"),))
    w = TrajectoryWriter(tmp_path / "w.hdf5", schema, 2)
    with pytest.raises(ValueError, match=r"expected channels-first \(B, T, 1, 8\)"):
        w.write_channels(np.zeros((2, 4, 8)))
    bad = np.zeros((2, 4, 1, 8))
    bad[1, 2, 0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        w.write_channels(bad)
    with pytest.raises(ValueError, match="exceed n_trajectories"):
        w.write_channels(np.zeros((3, 4, 1, 8)))
    with pytest.raises(RuntimeError, match="only 0 of 2 trajectories"):
        w.close()
    assert not (tmp_path / "w.hdf5").exists()
