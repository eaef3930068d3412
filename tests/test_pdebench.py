"""PDEBench importer: the four layouts, written here from PDEBench's key names, convert to The Well's layout with
exactly the source numbers; files validate and load in the_well; conversion runs in bounded memory."""

import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from pdeforge.datasets import FormatError, TrajectoryDataset, load_stats, to_xarray, validate
from pdeforge.datasets._pdebench import convert_pdebench, parameters_from_name, split_assignment

N, T, X = 6, 5, 16
SPLIT = (0.5, 0.25, 0.25)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def cell_centres(n, length=1.0):
    return ((np.arange(n) + 0.5) * length / n).astype(np.float32)


# -- fixtures: one file per layout, as PDEBench writes them -----------------------------------------------------------
def write_tensor(path, rng, attrs=True):
    """Layout 1: tensor (N, T, X), t-coordinate with T + 1 entries."""
    u = rand(rng, N, T, X)
    with h5py.File(path, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = cell_centres(X)
        f["t-coordinate"] = (0.05 * np.arange(T + 1)).astype(np.float32)
        if attrs:
            f.attrs["Nu"] = 0.01
    return {"u": u}


def write_darcy(path, rng):
    """Layout 2: tensor (N, 1, X, Y) = u, nu (N, X, Y) = a."""
    u, a = rand(rng, N, 1, X, X), np.exp(rand(rng, N, X, X))
    with h5py.File(path, "w") as f:
        f["tensor"], f["nu"] = u, a
        f["x-coordinate"], f["y-coordinate"] = cell_centres(X), cell_centres(X)
        f.attrs["beta"] = 1.0
    return {"u": u, "a": a}


def write_cfd(path, rng, n_dims=2):
    """Layout 3: density, pressure, Vx, Vy (N, T, *space)."""
    space = (X // 2,) * n_dims
    data = {k: rand(rng, N, T, *space) for k in ("density", "pressure", "Vx", "Vy", "Vz")[: 2 + n_dims]}
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f[k] = v
        for axis, n in zip("xyz", space):
            f[f"{axis}-coordinate"] = cell_centres(n)
        f["t-coordinate"] = (0.1 * np.arange(T + 1)).astype(np.float32)
        f.attrs["eta"], f.attrs["zeta"] = 0.01, 0.1
        if n_dims > 1:
            f.attrs["M"] = 0.1
    return data


def write_seed_groups(path, rng):
    """Layout 4: 0000/data (T, X, Y, C), 0000/grid/{x,y,t}."""
    data = rand(rng, N, T, X // 2, X // 2, 2)
    with h5py.File(path, "w") as f:
        for i in range(N):
            g = f.create_group(f"{i:04d}")
            g["data"] = data[i]
            g["grid/x"], g["grid/y"] = cell_centres(X // 2, 2.0) - 1, cell_centres(X // 2, 2.0) - 1
            g["grid/t"] = np.linspace(0, 5, T, dtype=np.float32)
            g.attrs["config"] = f"sim:\n  seed: {i}\n"
    return data


def expected_channels(layout, src, i):
    """Source trajectory i as (T, C, *space), channels first in The Well's order."""
    if layout == "tensor":
        return src["u"][i][:, None]
    if layout == "cfd":
        keys = [k for k in ("density", "pressure", "Vx", "Vy", "Vz") if k in src]
        return np.stack([src[k][i] for k in keys], axis=1)
    return np.moveaxis(src[i], -1, 1)  # seed groups: (T, *space, C) -> (T, C, *space)


CASES = {
    "tensor": ("1D_Burgers_Sols_Nu0.01.hdf5", write_tensor, ["u"], {"Nu": 0.01}),
    "cfd": (
        "2D_CFD_Rand_M0.1_Eta0.01_Zeta0.1_periodic_8_Train.hdf5",
        write_cfd,
        ["density", "pressure", "velocity_x", "velocity_y"],
        {"M": 0.1, "eta": 0.01, "zeta": 0.1},
    ),
    "seed_groups": ("2D_diff-react_NA_NA.h5", write_seed_groups, ["u", "v"], {}),
}


@pytest.mark.parametrize("layout", list(CASES))
def test_time_dependent_layouts_roundtrip_exactly(tmp_path, layout):
    name, writer, channels, params = CASES[layout]
    src = writer(tmp_path / name, np.random.default_rng(1))
    root = tmp_path / "out"
    files = convert_pdebench(tmp_path / name, root, split=SPLIT, seed=3, progress=False)
    assert [p.parent.name for p in files] == ["train", "valid", "test"]
    ids = split_assignment(N, SPLIT, seed=3)
    assert np.bincount(ids).tolist() == [2, 2, 2]

    infos = validate(root)
    assert sum(i.n_trajectories for i in infos) == N
    assert infos[0].parameters == pytest.approx(params)
    assert infos[0].attrs["source_format"] == "pdebench" and infos[0].attrs["source_file"] == name
    assert infos[0].attrs["pdebench_layout"] == layout

    for s, split in enumerate(("train", "valid", "test")):
        ds = TrajectoryDataset(root, 1, 1, split=split)
        assert list(ds.metadata.field_names) == channels
        source_index = np.flatnonzero(ids == s)  # a split keeps the source order
        assert len(ds) == len(source_index) * (T - 1)
        for k in range(len(ds)):
            sample = ds[k]
            traj, start = ds.window(k)
            ref = expected_channels(layout, src, source_index[traj])
            assert np.array_equal(sample["input_fields"].numpy(), ref[start : start + 1])
            assert np.array_equal(sample["output_fields"].numpy(), ref[start + 1 : start + 2])
    # times: the first T entries of the source's time axis
    with h5py.File(tmp_path / name) as f:
        t_src = f["t-coordinate"][:T] if layout != "seed_groups" else f["0000/grid/t"][:]
    assert np.allclose(infos[0].time, t_src, rtol=0, atol=1e-6)
    assert ds.metadata.boundary_conditions == (
        ("wall",) * 2 if layout == "seed_groups" else ("periodic",) * len(ds.metadata.resolution)
    )
    # stats fitted on train only
    train = np.concatenate([expected_channels(layout, src, i) for i in np.flatnonzero(ids == 0)])
    stats = load_stats(root / "stats.yaml")
    first = "u" if layout != "cfd" else "density"
    assert stats["mean"][first] == pytest.approx(float(train[:, 0].astype(np.float64).mean()), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("layout", list(CASES))
def test_converted_files_load_in_the_well(tmp_path, layout):
    from the_well.data import WellDataset

    name, writer, channels, _ = CASES[layout]
    src = writer(tmp_path / name, np.random.default_rng(2))
    out = tmp_path / "all.hdf5"
    convert_pdebench(tmp_path / name, out, split=None, progress=False)
    well = WellDataset(
        path=str(tmp_path), include_filters=["all.hdf5"], n_steps_input=1, n_steps_output=1, use_normalization=False
    )
    assert len(well) == N * (T - 1)
    for k in (0, 5, len(well) - 1):
        traj, start = divmod(k, T - 1)
        ref = np.moveaxis(expected_channels(layout, src, traj), 1, -1)  # the_well: channels last
        assert np.array_equal(well[k]["input_fields"].numpy(), ref[start : start + 1])
        assert np.array_equal(well[k]["output_fields"].numpy(), ref[start + 1 : start + 2])


def test_darcy_coefficient_is_constant_field_and_solution_one_snapshot(tmp_path):
    name = "2D_DarcyFlow_beta1.0_Train.hdf5"
    src = write_darcy(tmp_path / name, np.random.default_rng(3))
    out = tmp_path / "darcy.hdf5"
    convert_pdebench(tmp_path / name, out, split=None, progress=False)
    (info,) = validate(out)
    assert info.n_steps == 1 and info.parameters == {"beta": 1.0}
    assert [(fi.name, fi.time_varying) for fi in info.fields] == [("a", False), ("u", True)]
    assert info.boundary_conditions == ("wall", "wall")
    xr_ds = to_xarray(out)  # the dataset layer reads it: a (N, X, Y), u (N, 1, X, Y)
    assert np.array_equal(xr_ds["a"].values, src["a"])
    assert np.array_equal(xr_ds["u"].values, src["u"])
    assert np.allclose(xr_ds["x"].values, cell_centres(X))
    # no next-step windows in a steady file: the dataset refuses it instead of inventing a second snapshot
    with pytest.raises(ValueError, match="too few"):
        TrajectoryDataset(out, 1, 1)


def test_darcy_in_the_well_with_zero_output_steps(tmp_path):
    from the_well.data import WellDataset

    name = "2D_DarcyFlow_beta1.0_Train.hdf5"
    src = write_darcy(tmp_path / name, np.random.default_rng(4))
    convert_pdebench(tmp_path / name, tmp_path / "darcy.hdf5", split=None, progress=False)
    well = WellDataset(
        path=str(tmp_path), include_filters=["darcy.hdf5"], n_steps_input=1, n_steps_output=0, use_normalization=False
    )
    assert len(well) == N
    sample = well[4]
    assert np.array_equal(sample["input_fields"][0, ..., 0].numpy(), src["u"][4, 0])
    assert np.array_equal(sample["constant_fields"][..., 0].numpy(), src["a"][4])


def test_darcy_dataset_root_has_stats_of_both_fields(tmp_path):
    name = "2D_DarcyFlow_beta1.0_Train.hdf5"
    src = write_darcy(tmp_path / name, np.random.default_rng(5))
    convert_pdebench(tmp_path / name, tmp_path / "root", split=SPLIT, seed=0, progress=False)
    ids = split_assignment(N, SPLIT, seed=0)
    stats = load_stats(tmp_path / "root" / "stats.yaml")
    assert stats["mean"]["a"] == pytest.approx(float(src["a"][ids == 0].astype(np.float64).mean()), rel=1e-5)
    assert stats["mean"]["u"] == pytest.approx(float(src["u"][ids == 0].astype(np.float64).mean()), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n_dims", [1, 3])
def test_cfd_1d_and_3d_velocity_components(tmp_path, n_dims):
    name = f"{n_dims}D_CFD_Rand_Eta0.01_Zeta0.1_periodic_Train.hdf5"
    src = write_cfd(tmp_path / name, np.random.default_rng(6), n_dims=n_dims)
    out = tmp_path / "cfd.hdf5"
    convert_pdebench(tmp_path / name, out, split=None, progress=False)
    ds = TrajectoryDataset(out, 2, 1)
    assert ds.metadata.field_names == ("density", "pressure") + tuple(f"velocity_{a}" for a in "xyz"[:n_dims])
    sample = ds[len(ds) - 1]
    traj, start = ds.window(len(ds) - 1)
    ref = expected_channels("cfd", src, traj)
    assert np.array_equal(sample["input_fields"].numpy(), ref[start : start + 2])
    assert np.array_equal(sample["output_fields"].numpy(), ref[start + 2 : start + 3])


def test_parameters_from_file_name_when_no_attributes(tmp_path):
    assert parameters_from_name("1D_Advection_Sols_beta0.4") == {"beta": 0.4}
    assert parameters_from_name("2D_CFD_Rand_M0.1_Eta1e-08_Zeta0.01_periodic_512_Train") == {
        "M": 0.1,
        "eta": 1e-8,
        "zeta": 0.01,
    }
    name = "ReacDiff_Nu0.5_Rho2.0.hdf5"
    write_tensor(tmp_path / name, np.random.default_rng(7), attrs=False)
    convert_pdebench(tmp_path / name, tmp_path / "rd.hdf5", split=None, progress=False)
    with h5py.File(tmp_path / "rd.hdf5") as f:
        assert sorted(f.attrs["simulation_parameters"].tolist()) == ["Nu", "rho"]
        assert (f.attrs["Nu"], f.attrs["rho"]) == (0.5, 2.0)


def test_max_trajectories_and_single_split(tmp_path):
    src = write_tensor(tmp_path / "1D_Advection_Sols_beta0.1.hdf5", np.random.default_rng(8))
    files = convert_pdebench(
        tmp_path / "1D_Advection_Sols_beta0.1.hdf5", tmp_path / "root", split=None, max_trajectories=4, progress=False
    )
    assert [p.parent.name for p in files] == ["train"]
    ds = TrajectoryDataset(tmp_path / "root", 1, T - 1, split="train")
    assert len(ds) == 4
    assert np.array_equal(ds[3]["output_fields"][:, 0].numpy(), src["u"][3, 1:])


def test_several_files_into_one_dataset_keep_their_parameters(tmp_path):
    """All 1D advection speeds in one root: same dataset_name, ``beta`` per file reaches the samples' scalars."""
    root, sources = tmp_path / "advection", {}
    for k, beta in enumerate((0.1, 0.4)):
        name = f"1D_Advection_Sols_beta{beta}.hdf5"
        sources[beta] = write_tensor(tmp_path / name, np.random.default_rng(20 + k), attrs=False)["u"]
        convert_pdebench(tmp_path / name, root, split=None, dataset_name="advection", progress=False)
    ds = TrajectoryDataset(root, 1, 1, split="train")
    assert len(ds.files) == 2 and ds.metadata.scalar_names == ("beta",)
    last = ds[len(ds) - 1]  # files in sorted order: beta0.4 second
    assert last["scalars"].item() == pytest.approx(0.4)
    assert np.array_equal(last["output_fields"][0, 0].numpy(), sources[0.4][N - 1, T - 1])
    stats = load_stats(root / "stats.yaml")  # fitted on both files
    both = np.concatenate([sources[0.1], sources[0.4]]).astype(np.float64)
    assert stats["std"]["u"] == pytest.approx(float(both.std()), rel=1e-5)


def test_boundary_conditions_from_names_and_override(tmp_path):
    name = "1D_CFD_Shock_Eta1e-08_Zeta1e-08_trans_Train.hdf5"
    write_cfd(tmp_path / name, np.random.default_rng(11), n_dims=1)
    convert_pdebench(tmp_path / name, tmp_path / "a.hdf5", split=None, progress=False)
    assert validate(tmp_path / "a.hdf5")[0].boundary_conditions == ("open",)
    convert_pdebench(tmp_path / name, tmp_path / "b.hdf5", split=None, progress=False, boundary_conditions="wall")
    assert validate(tmp_path / "b.hdf5")[0].boundary_conditions == ("wall",)
    name = "2D_mystery_NA_NA.h5"
    data = write_seed_groups(tmp_path / name, np.random.default_rng(12))
    with pytest.warns(UserWarning, match="assuming 'open'"):
        convert_pdebench(tmp_path / name, tmp_path / "c.hdf5", split=None, progress=False)
    ds = TrajectoryDataset(tmp_path / "c.hdf5", 1, 1)
    assert ds.metadata.field_names == ("u0", "u1") and ds.metadata.boundary_conditions == ("open", "open")
    assert np.array_equal(ds[0]["input_fields"][0, 1].numpy(), data[0, 0, ..., 1])


def test_split_assignment_counts_and_seed():
    ids = split_assignment(100, (0.8, 0.1, 0.1), seed=0)
    assert np.bincount(ids).tolist() == [80, 10, 10]
    assert not np.array_equal(ids, split_assignment(100, (0.8, 0.1, 0.1), seed=1))
    assert np.bincount(split_assignment(6, (0.8, 0.1, 0.1), seed=0)).tolist() == [4, 1, 1]
    with pytest.raises(ValueError, match="summing to 1"):
        split_assignment(10, (0.5, 0.1, 0.1), seed=0)


def test_unknown_layout_and_bad_input_errors(tmp_path):
    bad = tmp_path / "ns_incom_inhom_2d_512-0.h5"
    with h5py.File(bad, "w") as f:
        f["velocity"] = np.zeros((2, 3, 4, 4, 2), np.float32)
        f["force"] = np.zeros((2, 4, 4, 2), np.float32)
    with pytest.raises(FormatError) as e:
        convert_pdebench(bad, tmp_path / "o.hdf5", split=None, progress=False)
    msg = str(e.value)
    assert "'velocity' (2, 3, 4, 4, 2)" in msg and "'force'" in msg
    assert all(s in msg for s in ("(1) 'tensor'", "(2) Darcy", "(3) CFD", "(4) one group per seed"))

    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        convert_pdebench(text, tmp_path / "o.hdf5", progress=False)

    name = "1D_Burgers_Sols_Nu0.01.hdf5"
    write_tensor(tmp_path / name, np.random.default_rng(9))
    with h5py.File(tmp_path / name, "a") as f:
        del f["t-coordinate"]
        f["t-coordinate"] = np.float32([0, 0.1, 0.2, 0.4, 0.5, 0.6])
    with pytest.raises(FormatError, match="constant step"):
        convert_pdebench(tmp_path / name, tmp_path / "o.hdf5", split=None, progress=False)
    with pytest.raises(ValueError, match="split=None"):
        convert_pdebench(tmp_path / name, tmp_path / "o.hdf5", split=(0.5, 0.5, 0.0), progress=False)


def test_existing_output_and_resume_after_interruption(tmp_path, monkeypatch):
    name = "1D_Burgers_Sols_Nu0.01.hdf5"
    src = write_tensor(tmp_path / name, np.random.default_rng(10))
    out = tmp_path / "o.hdf5"
    from pdeforge.datasets import _pdebench

    calls, crash = [], [True]
    real_read = _pdebench.TensorLayout.read

    def failing_read(self, start, stop):
        calls.append((start, stop))
        if crash[0] and len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_read(self, start, stop)

    monkeypatch.setattr(_pdebench.TensorLayout, "read", failing_read)
    per_traj = T * X * 4
    with pytest.raises(RuntimeError, match="simulated crash"):
        convert_pdebench(tmp_path / name, out, split=None, batch_bytes=per_traj, progress=False)
    assert not out.exists() and (tmp_path / "o.hdf5.partial").exists()
    calls.clear()
    crash[0] = False
    convert_pdebench(tmp_path / name, out, split=None, batch_bytes=per_traj, progress=False)
    assert calls == [(i, i + 1) for i in range(2, N)]  # the two written trajectories are not read again
    assert np.array_equal(to_xarray(out)["u"].values, src["u"])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert_pdebench(tmp_path / name, out, split=None, progress=False)
    convert_pdebench(tmp_path / name, out, split=None, progress=False, overwrite=True)


# -- bounded memory ---------------------------------------------------------------------------------------------------
MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, tracemalloc
    from pdeforge.datasets._pdebench import convert_pdebench

    def status(key):  # kB, from /proc/self/status
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))

    # the imports (torch) set a high-water mark above anything the conversion adds: reset it to the current RSS
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = status("VmRSS")
    tracemalloc.start()
    convert_pdebench(sys.argv[1], sys.argv[2], split=None, progress=False, batch_bytes=int(sys.argv[3]))
    traced = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"rss_growth": (status("VmHWM") - before) * 1024, "traced_peak": traced}))
""")


def peak_growth_of_conversion(tmp_path, n, t, x, batch_bytes):
    """Write a layout-1 file block by block, convert it in a subprocess.

    Returns (file bytes, peak RSS growth during the conversion, peak of traced (numpy) allocations).
    """
    src = tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(src, "w") as f:
        ds = f.create_dataset("tensor", shape=(n, t, x), dtype=np.float32)
        for i in range(0, n, 100):
            ds[i : i + 100] = rng.standard_normal((min(100, n - i), t, x), dtype=np.float32)
        f["x-coordinate"] = cell_centres(x)
        f["t-coordinate"] = (0.01 * np.arange(t + 1)).astype(np.float32)
    size = src.stat().st_size
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(src), str(tmp_path / "o.hdf5"), str(batch_bytes)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(res.stdout.strip().splitlines()[-1])
    with h5py.File(src) as f, h5py.File(tmp_path / "o.hdf5") as g:  # spot check the values
        assert np.array_equal(g["t0_fields/u"][n - 1], f["tensor"][n - 1])
    return size, measured["rss_growth"], measured["traced_peak"]


def test_conversion_memory_is_bounded_small(tmp_path):
    size, growth, traced = peak_growth_of_conversion(tmp_path, n=400, t=51, x=512, batch_bytes=1 << 20)  # ~42 MB
    assert size > 40e6
    assert growth < 0.25 * size, f"peak RSS grew by {growth / 1e6:.1f} MB converting a {size / 1e6:.0f} MB file"
    assert traced < 0.1 * size, f"numpy allocations peaked at {traced / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"


def test_conversion_memory_is_bounded_300mb(tmp_path):
    size, growth, traced = peak_growth_of_conversion(tmp_path, n=1500, t=101, x=512, batch_bytes=16 << 20)  # ~310 MB
    assert size > 300e6
    assert growth < 0.25 * size, f"peak RSS grew by {growth / 1e6:.1f} MB converting a {size / 1e6:.0f} MB file"
    assert traced < 0.25 * size, f"numpy allocations peaked at {traced / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
