"""The dataset layer: The Well compatibility, exact round trips, atomic/resumable writes, workers, normalisation."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from pdeforge.datasets import (
    FieldSpec,
    FormatError,
    Schema,
    TrajectoryDataset,
    TrajectoryWriter,
    compute_stats,
    to_xarray,
    validate,
    write_stats,
)

H, W, T = 8, 6, 9


def write_spec_file(path: Path, n_traj: int, seed: int) -> dict:
    """A file written with raw h5py straight from The Well's docs/data_format.md (no pdeforge code)."""
    rng = np.random.default_rng(seed)
    data = {
        "pressure": rng.standard_normal((n_traj, T, H, W)).astype(np.float32),
        "velocity": rng.standard_normal((n_traj, T, H, W, 2)).astype(np.float32),
        "obstacle": rng.standard_normal((n_traj, H, W)).astype(np.float32),
        "Re": rng.uniform(100, 200, n_traj).astype(np.float32),
    }
    with h5py.File(path, "w") as f:
        f.attrs["simulation_parameters"] = ["Ma"]
        f.attrs["Ma"] = 0.3
        f.attrs["dataset_name"] = "spec_test"
        f.attrs["grid_type"] = "cartesian"
        f.attrs["n_spatial_dims"] = 2
        f.attrs["n_trajectories"] = n_traj
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        t = dims.create_dataset("time", data=(0.5 + 0.25 * np.arange(T)).astype(np.float32))
        t.attrs["sample_varying"] = False
        for name, n in (("x", H), ("y", W)):
            d = dims.create_dataset(name, data=np.linspace(0, 1, n, endpoint=False).astype(np.float32))
            d.attrs["sample_varying"] = False
            d.attrs["time_varying"] = False
        bcs = f.create_group("boundary_conditions")
        for name, n in (("x", H), ("y", W)):
            g = bcs.create_group(f"{name}_periodic")
            g.attrs["associated_dims"] = [name]
            g.attrs["associated_fields"] = []
            g.attrs["bc_type"] = "periodic"
            g.attrs["sample_varying"] = False
            g.attrs["time_varying"] = False
            mask = np.zeros(n, bool)
            mask[[0, -1]] = True
            g.create_dataset("mask", data=mask)
            g.create_dataset("values", data=np.zeros(2, np.float32))
        sc = f.create_group("scalars")
        sc.attrs["field_names"] = ["Ma", "Re"]
        d = sc.create_dataset("Ma", data=np.float32(0.3))
        d.attrs["sample_varying"], d.attrs["time_varying"] = False, False
        d = sc.create_dataset("Re", data=data["Re"])
        d.attrs["sample_varying"], d.attrs["time_varying"] = True, False
        for group, names in (("t0_fields", ["pressure", "obstacle"]), ("t1_fields", ["velocity"]), ("t2_fields", [])):
            g = f.create_group(group)
            g.attrs["field_names"] = names
            for name in names:
                d = g.create_dataset(name, data=data[name])
                d.attrs["dim_varying"] = [True, True]
                d.attrs["sample_varying"] = True
                d.attrs["time_varying"] = name != "obstacle"
    return data


@pytest.fixture()
def spec_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "spec"
    folder.mkdir()
    write_spec_file(folder / "b.hdf5", 2, seed=1)
    write_spec_file(folder / "a.hdf5", 3, seed=0)  # sorted order: a before b
    return folder


def test_spec_file_matches_well_dataset_every_window(spec_folder: Path) -> None:
    from the_well.data import WellDataset

    ours = TrajectoryDataset(spec_folder, n_steps_input=2, n_steps_output=3)
    well = WellDataset(path=str(spec_folder), n_steps_input=2, n_steps_output=3, normalize_time_grid=False)
    assert len(ours) == len(well) == 5 * (T - 4)
    assert ours.metadata.field_names == ("pressure", "velocity_x", "velocity_y")
    assert ours.metadata.constant_field_names == ("obstacle",)
    for i in range(len(ours)):
        a, b = ours[i], well[i]
        # channels first: (T, H, W, C) -> (T, C, H, W)
        torch.testing.assert_close(a["input_fields"], b["input_fields"].permute(0, 3, 1, 2), rtol=0, atol=0)
        torch.testing.assert_close(a["output_fields"], b["output_fields"].permute(0, 3, 1, 2), rtol=0, atol=0)
        torch.testing.assert_close(a["constant_fields"], b["constant_fields"].permute(2, 0, 1), rtol=0, atol=0)
        torch.testing.assert_close(a["scalars"], b["constant_scalars"].float(), rtol=0, atol=0)
        torch.testing.assert_close(a["input_time"], b["input_time_grid"].float(), rtol=0, atol=0)
        torch.testing.assert_close(a["output_time"], b["output_time_grid"].float(), rtol=0, atol=0)
        torch.testing.assert_close(a["grid"], b["space_grid"].permute(2, 0, 1).float(), rtol=0, atol=0)


def test_window_content_against_source_numbers(tmp_path: Path) -> None:
    data = write_spec_file(tmp_path / "one.hdf5", 3, seed=5)
    ds = TrajectoryDataset(tmp_path / "one.hdf5", n_steps_input=2, n_steps_output=1, dt_stride=2)
    assert len(ds) == 3 * (T - 2 * 2)  # span 1 + 2 * (2 + 1 - 1) = 5 snapshots
    traj, start = ds.window(7)
    s = ds[7]
    expect = np.concatenate([data["pressure"][traj][:, None], np.moveaxis(data["velocity"][traj], -1, 1)], axis=1)
    np.testing.assert_array_equal(s["input_fields"].numpy(), expect[[start, start + 2]])
    np.testing.assert_array_equal(s["output_fields"].numpy(), expect[[start + 4]])
    assert s["input_time"].tolist() == pytest.approx([0.5 + 0.25 * start, 0.5 + 0.25 * (start + 2)])


def _schema(n_x: int = 16, n_t: int = 7, constant: bool = False) -> Schema:
    x = np.linspace(0, 2 * np.pi, n_x, endpoint=False)
    fields = (FieldSpec("u"), FieldSpec("velocity", order=1)) + (
        (FieldSpec("a", time_varying=False),) if constant else ()
    )
    return Schema(
        "roundtrip",
        coords={"x": x, "y": x[: n_x // 2]},
        time=0.1 * np.arange(n_t),
        fields=fields,
        scalars=("nu",),
        parameters={"forcing": 2.0},
    )


def _batch(k: int, b: int, schema: Schema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 + k)
    n_t, (nx, ny) = len(schema.time), schema.resolution
    return (
        rng.standard_normal((b, n_t, 3, nx, ny)).astype(np.float32),
        rng.standard_normal((b, 1, nx, ny)).astype(np.float32),
        rng.uniform(size=b),
    )


def test_writer_round_trip_exact_and_well_loads_it(tmp_path: Path) -> None:
    from the_well.data import WellDataset

    schema = _schema(constant=True)
    path = tmp_path / "f" / "rt.hdf5"
    us, cs, nus = [], [], []
    with TrajectoryWriter(
        path, schema, n_trajectories=5, provenance={"equation": "Test", "equation_params": {"nu": 1}, "seed": 3}
    ) as w:
        for k, b in enumerate((2, 3)):
            u, c, nu = _batch(k, b, schema)
            w.write_channels(u, constant=c, scalars={"nu": nu})
            us.append(u), cs.append(c), nus.append(nu)
    u, c, nu = np.concatenate(us), np.concatenate(cs), np.concatenate(nus)
    validate(path)
    ds = TrajectoryDataset(path, n_steps_input=1, n_steps_output=1, full_trajectory=True)
    for i in range(5):
        s = ds[i]
        np.testing.assert_array_equal(torch.cat([s["input_fields"], s["output_fields"]]).numpy(), u[i])
        np.testing.assert_array_equal(s["constant_fields"].numpy(), c[i])
        np.testing.assert_allclose(s["scalars"].numpy(), [2.0, nu[i]], rtol=1e-7)
    with h5py.File(path) as f:
        assert json.loads(f.attrs["equation_params"]) == {"nu": 1}
        assert f.attrs["seed"] == 3
    well = WellDataset(path=str(path.parent), n_steps_input=1, n_steps_output=1)
    ours = TrajectoryDataset(path.parent)
    assert len(well) == len(ours)
    for i in (0, 4, len(ours) - 1):
        torch.testing.assert_close(
            ours[i]["output_fields"], well[i]["output_fields"].permute(0, 3, 1, 2), rtol=0, atol=0
        )
        torch.testing.assert_close(
            ours[i]["constant_fields"], well[i]["constant_fields"].permute(2, 0, 1), rtol=0, atol=0
        )

    xr_ds = to_xarray(path)
    np.testing.assert_array_equal(xr_ds["u"].values, u[:, :, 0])
    np.testing.assert_array_equal(xr_ds["velocity"].values, np.moveaxis(u[:, :, 1:], 2, -1))
    np.testing.assert_array_equal(xr_ds["a"].values, c[:, 0])
    np.testing.assert_allclose(xr_ds["time"].values, np.float32(0.1 * np.arange(7)))
    np.testing.assert_allclose(xr_ds["x"].values, np.float32(schema.coords["x"]))
    assert xr_ds["u"].dims == ("trajectory", "time", "x", "y")
    xr_ds.to_netcdf(tmp_path / "rt.nc")
    import xarray as xr

    back = xr.open_dataset(tmp_path / "rt.nc")
    np.testing.assert_array_equal(back["velocity"].values, xr_ds["velocity"].values)
    back.close()


def test_exception_mid_write_leaves_nothing_valid_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    schema = _schema()
    full = tmp_path / "full.hdf5"
    with TrajectoryWriter(full, schema, 6) as w:
        for k in range(3):
            u, _, nu = _batch(k, 2, schema)
            w.write_channels(u, scalars={"nu": nu})

    path = tmp_path / "crash.hdf5"
    with pytest.raises(RuntimeError, match="boom"):
        with TrajectoryWriter(path, schema, 6) as w:
            for k in range(3):
                if k == 2:
                    raise RuntimeError("boom")
                u, _, nu = _batch(k, 2, schema)
                w.write_channels(u, scalars={"nu": nu})
    assert not path.exists()
    partial = path.with_name(path.name + ".partial")
    assert partial.exists()
    with pytest.raises(FormatError, match="incomplete"):
        validate(partial)
    assert [Path(i.path).name for i in validate(tmp_path)] == ["full.hdf5"]  # the partial is never picked up
    w = TrajectoryWriter(path, schema, 6)
    assert w.n_written == 4
    for k in range(w.n_written // 2, 3):
        u, _, nu = _batch(k, 2, schema)
        w.write_channels(u, scalars={"nu": nu})
    w.close()
    assert_same_file(full, path)


def assert_same_file(a: Path, b: Path) -> None:
    with h5py.File(a) as fa, h5py.File(b) as fb:

        def items(f):
            out = {}
            f.visititems(lambda k, v: out.__setitem__(k, v[()] if isinstance(v, h5py.Dataset) else None))
            return out

        ia, ib = items(fa), items(fb)
        assert ia.keys() == ib.keys()
        for k in ia:
            if ia[k] is not None:
                np.testing.assert_array_equal(ia[k], ib[k], err_msg=k)
        assert {k: str(v) for k, v in fa.attrs.items()} == {k: str(v) for k, v in fb.attrs.items()}


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pdeforge.datasets import FieldSpec, Schema, TrajectoryWriter
    path, n_batches = sys.argv[1], int(sys.argv[2])
    x = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    schema = Schema("roundtrip", coords={"x": x, "y": x[:8]}, time=0.1 * np.arange(7),
                    fields=(FieldSpec("u"), FieldSpec("velocity", order=1)), scalars=("nu",),
                    parameters={"forcing": 2.0})
    w = TrajectoryWriter(path, schema, 6)
    for k in range(w.n_written // 2, 3):
        rng = np.random.default_rng(1000 + k)
        u = rng.standard_normal((2, 7, 3, 16, 8)).astype(np.float32)
        _ = rng.standard_normal((2, 1, 16, 8))
        w.write_channels(u, scalars={"nu": rng.uniform(size=2)})
        print("batch", k, flush=True)
        if k + 1 >= n_batches:
            time.sleep(600)  # wait to be killed
    w.close()
    print("done", flush=True)
    """
)


def test_sigkill_during_write_then_resume(tmp_path: Path) -> None:
    schema = _schema()
    full = tmp_path / "full.hdf5"
    with TrajectoryWriter(full, schema, 6) as w:
        for k in range(3):
            u, _, nu = _batch(k, 2, schema)
            w.write_channels(u, scalars={"nu": nu})
    path = tmp_path / "killed.hdf5"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "2"], stdout=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline() for _ in range(2)]
    assert lines == ["batch 0\n", "batch 1\n"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not path.exists()
    with pytest.raises(FormatError):
        validate(path.with_name(path.name + ".partial"))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), "99"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["batch", "2", "done"]  # resumed after the two finished batches
    assert_same_file(full, path)


def test_dataloader_workers_return_same_windows(tmp_path: Path) -> None:
    write_spec_file(tmp_path / "a.hdf5", 3, seed=0)
    ds = TrajectoryDataset(tmp_path, n_steps_input=2, n_steps_output=1, cache_small=False)
    ds[0]  # open a handle in the parent: workers must not reuse it
    loaders = [torch.utils.data.DataLoader(ds, batch_size=4, num_workers=n, shuffle=False) for n in (0, 2)]
    b0, b2 = (list(ld) for ld in loaders)
    assert len(b0) == len(b2) == -(-len(ds) // 4)
    for x, y in zip(b0, b2):
        for k in x:
            torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def make_root(root: Path) -> dict:
    """Train ~ N(1, 2^2), valid/test shifted far away: stats must come from train only."""
    schema = Schema(
        "norm",
        coords={"x": np.arange(32) / 32},
        time=np.arange(5) * 0.5,
        fields=(FieldSpec("u"), FieldSpec("v", order=1)),
    )
    raw = {}
    for i, (split, shift) in enumerate((("train", 0.0), ("valid", 10.0), ("test", -7.0))):
        rng = np.random.default_rng(i)
        u = (1.0 + shift + 2.0 * rng.standard_normal((4, 5, 2, 32))).astype(np.float32)
        u[:, :, 1] = 0.5 * u[:, :, 1] - 3
        with TrajectoryWriter(root / "data" / split / f"{split}.hdf5", schema, 4) as w:
            w.write_channels(u)
        raw[split] = u
    write_stats(root)
    return raw


def test_normalisation_fitted_on_train_only_and_applied_to_every_split(tmp_path: Path) -> None:
    raw = make_root(tmp_path)
    stats = yaml.safe_load((tmp_path / "stats.yaml").read_text())
    tr = raw["train"].astype(np.float64)
    assert stats["mean"]["u"] == pytest.approx(tr[:, :, 0].mean(), rel=1e-9)
    assert stats["std"]["u"] == pytest.approx(tr[:, :, 0].std(), rel=1e-9)
    assert stats["mean"]["v"] == pytest.approx([tr[:, :, 1].mean()], rel=1e-9)
    assert stats["rms_delta"]["u"] == pytest.approx(np.sqrt((np.diff(tr[:, :, 0], axis=1) ** 2).mean()), rel=1e-9)
    mean = np.array([tr[:, :, 0].mean(), tr[:, :, 1].mean()])[:, None]
    std = np.array([tr[:, :, 0].std(), tr[:, :, 1].std()])[:, None]
    for split in ("train", "valid", "test"):
        ds = TrajectoryDataset(tmp_path, split=split, normalization="zscore")
        s = ds[3]
        traj, start = ds.window(3)
        expect = (raw[split][traj, start] - mean) / std
        np.testing.assert_allclose(s["input_fields"][0].numpy(), expect, rtol=1e-5, atol=1e-5)
        back = ds.denormalize(s["output_fields"])
        np.testing.assert_allclose(back.numpy(), raw[split][traj, start + 1 : start + 2], rtol=1e-5, atol=1e-4)
    ds = TrajectoryDataset(tmp_path, split="valid", normalization="zscore")
    assert float(ds[0]["input_fields"][:, 0].mean()) > 3.0  # valid is shifted: not re-centred on its own stats
    rms = TrajectoryDataset(tmp_path, split="test", normalization="rms")
    traj, start = rms.window(0)
    np.testing.assert_allclose(
        rms[0]["input_fields"][0, 0].numpy(), raw["test"][traj, start, 0] / stats["rms"]["u"], rtol=1e-5
    )


def test_stats_from_folder_without_root_and_missing_stats_error(tmp_path: Path) -> None:
    make_root(tmp_path)
    s = compute_stats(tmp_path / "data" / "train", split=None)
    assert s["mean"]["u"] == pytest.approx(yaml.safe_load((tmp_path / "stats.yaml").read_text())["mean"]["u"])
    ds = TrajectoryDataset(tmp_path / "data" / "valid", normalization="zscore")  # finds ROOT/stats.yaml
    assert ds.normalizer is not None
    other = tmp_path / "lonely"
    other.mkdir()
    (tmp_path / "data" / "test" / "test.hdf5").rename(other / "x.hdf5")
    with pytest.raises(FileNotFoundError, match="stats"):
        TrajectoryDataset(other, normalization="zscore")


def test_options_field_selection_full_trajectory_max_trajectories(tmp_path: Path) -> None:
    data = write_spec_file(tmp_path / "a.hdf5", 4, seed=2)
    ds = TrajectoryDataset(tmp_path, fields=["velocity"], n_steps_input=1, full_trajectory=True, max_trajectories=3)
    assert len(ds) == 3
    assert ds.metadata.field_names == ("velocity_x", "velocity_y")
    assert ds.metadata.n_trajectories == 3
    s = ds[2]
    assert s["output_fields"].shape == (T - 1, 2, H, W)
    np.testing.assert_array_equal(s["output_fields"].numpy(), np.moveaxis(data["velocity"][2, 1:], -1, 1))
    assert "constant_fields" not in s
    with pytest.raises(ValueError, match="unknown field"):
        TrajectoryDataset(tmp_path, fields=["vorticity"])
    with pytest.raises(ValueError, match="too few"):
        TrajectoryDataset(tmp_path, n_steps_input=5, n_steps_output=5)
    m = TrajectoryDataset(tmp_path).metadata
    assert m.domain_lengths == pytest.approx((1.0, 1.0))
    assert m.dt == pytest.approx(0.25)
    assert m.parameters == {"Ma": pytest.approx(0.3)}
    assert m.boundary_conditions == ("periodic", "periodic")


def test_read_arbitrary_times_for_other_views(tmp_path: Path) -> None:
    data = write_spec_file(tmp_path / "a.hdf5", 2, seed=3)
    ds = TrajectoryDataset(tmp_path, cache_small=False)
    out = ds.read(1, [4, 1, 1, 7])
    np.testing.assert_array_equal(out["fields"][:, 0].numpy(), data["pressure"][1, [4, 1, 1, 7]])
    assert out["time"].tolist() == pytest.approx([1.5, 0.75, 0.75, 2.25])
