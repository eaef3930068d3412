"""Poseidon and PDEArena importers: fixtures written here in the published layouts (netCDF4 through the netCDF4 library
as Poseidon's assembly and SpeedyWeather write them; HDF5 groups as PDEArena's PhiFlow generator writes them) convert
into The Well's layout with exactly the source values, and load in pdeforge's TrajectoryDataset and the_well's
WellDataset."""

import tracemalloc

import h5py
import numpy as np
import pytest

from pdeforge.datasets import FormatError, TrajectoryDataset, to_xarray, validate
from pdeforge.datasets._pdearena import convert_pdearena
from pdeforge.datasets._poseidon import POSEIDON_PROBLEMS, convert_poseidon, poseidon_split

netCDF4 = pytest.importorskip("netCDF4")

N, T, X, Y = 4, 5, 8, 6  # X != Y: a transposition shows


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def write_nc(path, variables):
    """A netCDF4 file: ``variables`` maps name -> (dimension names, array)."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        for dims, a in variables.values():
            for d, n in zip(dims, a.shape):
                if d not in nc.dimensions:
                    nc.createDimension(d, n)
        for name, (dims, a) in variables.items():
            v = nc.createVariable(name, a.dtype, dims)
            v[:] = a


# -- Poseidon: each case writes the variables scOT's problem class reads and says what the channels must be --------
def ns_pwc(rng):
    v = rand(rng, N, T, 3, X, Y)  # u, v, tracer
    return {"velocity": (("member", "time", "channel", "x", "y"), v)}, {
        "channels": ["tracer", "velocity_x", "velocity_y"],
        "ref": np.concatenate([v[:, :, 2:3], v[:, :, 0:2]], axis=2),
    }


def ns_sl(rng):
    v = rand(rng, N, T, 2, Y, X)  # stored transposed: scOT swaps the spatial axes
    return {"velocity": (("member", "time", "channel", "x", "y"), v)}, {
        "channels": ["velocity_x", "velocity_y"],
        "ref": np.swapaxes(v, -1, -2),
    }


def ce_rp(rng):
    d = rand(rng, N, T, 5, X, Y)  # rho, u, v, p, (a fifth channel scOT does not read)
    return {"data": (("member", "time", "channel", "x", "y"), d)}, {
        "channels": ["density", "pressure", "velocity_x", "velocity_y"],
        "ref": d[:, :, [0, 3, 1, 2]],
    }


def gce_rt(rng):
    d = rand(rng, N, T, 6, X, Y)  # rho, u, v, p, E, g
    return {"solution": (("member", "time", "channel", "x", "y"), d)}, {
        "channels": ["density", "pressure", "gravitational_potential", "velocity_x", "velocity_y"],
        "ref": d[:, :, [0, 3, 5, 1, 2]],
    }


def wave_layer(rng):
    u, c = rand(rng, N, T, X, Y), 3000 + 100 * rand(rng, N, X, Y)
    return {"solution": (("member", "time", "x", "y"), u), "c": (("member", "x", "y"), c)}, {
        "channels": ["u"],
        "ref": u[:, :, None],
        "constant": c[:, None],
    }


def ace(rng):
    u = rand(rng, N, T, 1, X, Y)  # a channel axis of one
    return {"solution": (("member", "time", "channel", "x", "y"), u)}, {"channels": ["u"], "ref": u}


POSEIDON_CASES = {
    "NS-PwC": ns_pwc,
    "NS-SL": ns_sl,
    "CE-RP": ce_rp,
    "GCE-RT": gce_rt,
    "Wave-Layer": wave_layer,
    "ACE": ace,
}


@pytest.mark.parametrize("problem", list(POSEIDON_CASES))
def test_poseidon_time_dependent_files_roundtrip_exactly(tmp_path, problem):
    variables, want = POSEIDON_CASES[problem](np.random.default_rng(1))
    src = tmp_path / f"{problem}.nc"
    write_nc(src, variables)
    root = tmp_path / "root"
    (path,) = convert_poseidon(src, root, split=None, progress=False)
    assert path == root / "data" / "train" / f"{problem}.hdf5"
    (info,) = validate(root)
    assert info.attrs["source_format"] == "poseidon" and info.attrs["poseidon_problem"] == problem
    scale = POSEIDON_PROBLEMS[problem].time_scale
    assert np.allclose(info.time, np.arange(T) / scale, rtol=0, atol=1e-7)  # scOT's lead times t / K

    ds = TrajectoryDataset(root, 1, 1, split="train")
    assert list(ds.metadata.field_names) == want["channels"]
    assert len(ds) == N * (T - 1)
    for k in range(len(ds)):
        traj, start = ds.window(k)
        sample = ds[k]
        assert np.array_equal(sample["input_fields"].numpy(), want["ref"][traj, start : start + 1])
        assert np.array_equal(sample["output_fields"].numpy(), want["ref"][traj, start + 1 : start + 2])
        if "constant" in want:
            assert np.array_equal(sample["constant_fields"].numpy(), want["constant"][traj])


@pytest.mark.parametrize("problem", ["CE-RP", "Wave-Layer"])
def test_poseidon_converted_files_load_in_the_well(tmp_path, problem):
    from the_well.data import WellDataset

    variables, want = POSEIDON_CASES[problem](np.random.default_rng(2))
    write_nc(tmp_path / f"{problem}.nc", variables)
    convert_poseidon(tmp_path / f"{problem}.nc", tmp_path / "root", split=None, progress=False)
    well = WellDataset(
        path=str(tmp_path / "root" / "data" / "train"), n_steps_input=1, n_steps_output=1, use_normalization=False
    )
    assert len(well) == N * (T - 1)
    for k in (0, 5, len(well) - 1):
        traj, start = divmod(k, T - 1)
        ref = np.moveaxis(want["ref"][traj], 1, -1)  # the_well: channels last
        assert np.array_equal(well[k]["input_fields"].numpy(), ref[start : start + 1])
        assert np.array_equal(well[k]["output_fields"].numpy(), ref[start + 1 : start + 2])
        if "constant" in want:
            assert np.array_equal(well[k]["constant_fields"][..., 0].numpy(), want["constant"][traj, 0])


@pytest.mark.parametrize("problem", ["Poisson-Gauss", "SE-AF"])
def test_poseidon_steady_problems_are_constant_field_and_one_snapshot(tmp_path, problem):
    from the_well.data import WellDataset

    rng = np.random.default_rng(3)
    if problem == "Poisson-Gauss":
        a, u = rand(rng, N, X, Y), rand(rng, N, X, Y)
        write_nc(tmp_path / "Poisson-Gauss.nc", {"source": (("m", "x", "y"), a), "solution": (("m", "x", "y"), u)})
        names = [("f", False), ("u", True)]
    else:
        s = rand(rng, N, 2, X, Y)
        write_nc(tmp_path / "SE-AF.nc", {"solution": (("m", "c", "x", "y"), s)})
        a, u = s[:, 0], s[:, 1]
        names = [("shape", False), ("density", True)]
    convert_poseidon(tmp_path / f"{problem}.nc", tmp_path / "root", split=None, progress=False)
    (info,) = validate(tmp_path / "root")
    assert info.n_steps == 1 and [(f.name, f.time_varying) for f in info.fields] == names
    xr_ds = to_xarray(tmp_path / "root" / "data" / "train" / f"{problem}.hdf5")
    assert np.array_equal(xr_ds[names[0][0]].values, a)
    assert np.array_equal(xr_ds[names[1][0]].values, u[:, None])
    well = WellDataset(
        path=str(tmp_path / "root" / "data" / "train"), n_steps_input=1, n_steps_output=0, use_normalization=False
    )
    assert len(well) == N
    assert np.array_equal(well[2]["input_fields"][0, ..., 0].numpy(), u[2])
    assert np.array_equal(well[2]["constant_fields"][..., 0].numpy(), a[2])


def test_poseidon_split_is_scots_and_fractions_work(tmp_path):
    ids = poseidon_split(20000, POSEIDON_PROBLEMS["NS-PwC"])  # scOT: train [0, 19640), val [19640, 19760), test
    assert np.bincount(ids).tolist() == [19640, 120, 240]
    assert ids[19639] == 0 and ids[19640] == 1 and ids[19759] == 1 and ids[19760] == 2
    ids = poseidon_split(41000, POSEIDON_PROBLEMS["NS-SL"])  # N_max 40000: the rest unused, as in scOT
    assert (ids[40000:] == -1).all() and np.bincount(ids[:40000]).tolist() == [39640, 120, 240]
    with pytest.raises(ValueError, match="too few"):
        poseidon_split(300, POSEIDON_PROBLEMS["NS-PwC"])

    variables, want = ce_rp(np.random.default_rng(4))
    write_nc(tmp_path / "CE-RP.nc", variables)
    files = convert_poseidon(tmp_path / "CE-RP.nc", tmp_path / "root", split=(0.5, 0.25, 0.25), progress=False)
    assert [p.parent.name for p in files] == ["train", "valid", "test"]
    assert (tmp_path / "root" / "stats.yaml").is_file()
    with pytest.raises(ValueError, match="too few"):  # the default split on a 4-trajectory file says what to do
        convert_poseidon(tmp_path / "CE-RP.nc", tmp_path / "other", progress=False)


def test_poseidon_unknown_layout_errors(tmp_path):
    write_nc(tmp_path / "mystery.nc", {"solution": (("m", "t", "x", "y"), np.zeros((2, 3, 4, 4), np.float32))})
    with pytest.raises(FormatError, match="expected one of NS-PwC, NS-BB.*--problem"):
        convert_poseidon(tmp_path / "mystery.nc", tmp_path / "o", split=None, progress=False)
    # a renamed file, named by --problem; then its variable checked
    with pytest.raises(FormatError, match=r"needs the variable 'data'; found .*'solution' \(2, 3, 4, 4\)"):
        convert_poseidon(tmp_path / "mystery.nc", tmp_path / "o", problem="CE-RP", split=None, progress=False)
    (path,) = convert_poseidon(tmp_path / "mystery.nc", tmp_path / "o", problem="ACE", split=None, progress=False)
    assert path.name == "mystery.hdf5"
    write_nc(tmp_path / "CE-KH.nc", {"data": (("m", "t", "c", "x", "y"), np.zeros((2, 3, 2, 4, 4), np.float32))})
    with pytest.raises(FormatError, match="has 2 channels on axis 2, expected at least 3 for 'velocity'"):
        convert_poseidon(tmp_path / "CE-KH.nc", tmp_path / "o2", split=None, progress=False)
    (tmp_path / "NS-BB.nc").write_text("CDF\x01 a netCDF3 file")
    with pytest.raises(FormatError, match="nccopy -k nc4"):
        convert_poseidon(tmp_path / "NS-BB.nc", tmp_path / "o3", split=None, progress=False)


def test_poseidon_progress_and_bounded_memory(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n, t, res = 40, 11, 64  # 14 MiB of velocity
    v = rand(rng, n, t, 2, res, res)
    write_nc(tmp_path / "NS-Gauss.nc", {"velocity": (("m", "t", "c", "x", "y"), v)})
    del v
    tracemalloc.start()
    convert_poseidon(tmp_path / "NS-Gauss.nc", tmp_path / "root", split=None, batch_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 6 << 20, f"peak {peak / 2**20:.1f} MiB for a 14 MiB file read in 1 MiB blocks"
    assert "40/40" in capsys.readouterr().err  # tqdm's bar counted every trajectory
    got = to_xarray(tmp_path / "root" / "data" / "train" / "NS-Gauss.hdf5")["velocity"].values
    with h5py.File(tmp_path / "NS-Gauss.nc") as f:
        assert np.array_equal(got, np.moveaxis(f["velocity"][()], 2, -1))


# -- PDEArena ---------------------------------------------------------------------------------------------------------
def write_ns(path, mode, n, rng, buoyancy=0.5, varying=False):
    """NavierStokes2D_<mode>_<seed>_<buoyancy>.h5 as pdedatagen/navier_stokes.py writes it (float64 datasets)."""
    nt, nx, ny = T, X, Y
    data = {k: rand(rng, n, nt, nx, ny).astype(np.float64) for k in ("u", "vx", "vy")}
    buo = buoyancy + (0.1 * np.arange(n) if varying else np.zeros(n))
    with h5py.File(path, "a") as f:
        g = f.create_group(mode)
        for k, a in data.items():
            g.create_dataset(k, data=a, dtype=float)
        g["t"] = np.tile(np.linspace(18.0, 102.0, nt), (n, 1))
        g["dt"] = np.full(n, 84.0 / (nt - 1))
        g["x"], g["dx"] = np.tile(np.linspace(0, 32.0, nx), (n, 1)), np.full(n, 32.0 / nx)
        g["y"], g["dy"] = np.tile(np.linspace(0, 32.0, ny), (n, 1)), np.full(n, 32.0 / ny)
        g["buo_y"] = buo
    return data, buo


def test_pdearena_navier_stokes_roundtrip_exactly_with_its_splits(tmp_path):
    from the_well.data import WellDataset

    rng = np.random.default_rng(6)
    src = tmp_path / "navierstokes"
    src.mkdir()
    parts = {
        "train": write_ns(src / "NavierStokes2D_train_197910_0.50000.h5", "train", 3, rng),
        "valid": write_ns(src / "NavierStokes2D_valid_197910_0.50000.h5", "valid", 2, rng),
        "test": write_ns(src / "NavierStokes2D_test_197910_0.50000.h5", "test", 2, rng),
    }
    root = tmp_path / "root"
    files = convert_pdearena(src, root, progress=False)
    assert sorted(p.parent.name for p in files) == ["test", "train", "valid"]
    assert (root / "stats.yaml").is_file()
    for split, (data, _) in parts.items():
        (info,) = validate(root / "data" / split)
        assert info.parameters == {"buo_y": 0.5} and info.boundary_conditions == ("wall", "wall")
        assert np.allclose(info.time, np.linspace(18.0, 102.0, T), rtol=1e-6)
        ds = TrajectoryDataset(root, 1, 1, split=split)
        assert list(ds.metadata.field_names) == ["u", "velocity_x", "velocity_y"]
        ref = np.stack([data["u"], data["vx"], data["vy"]], axis=2)  # (n, T, C, X, Y)
        for k in range(len(ds)):
            traj, start = ds.window(k)
            assert np.array_equal(ds[k]["input_fields"].numpy(), ref[traj, start : start + 1])
            assert np.array_equal(ds[k]["output_fields"].numpy(), ref[traj, start + 1 : start + 2])
    well = WellDataset(path=str(root / "data" / "valid"), n_steps_input=1, n_steps_output=1, use_normalization=False)
    ref = np.moveaxis(np.stack([parts["valid"][0][k] for k in ("u", "vx", "vy")], axis=2), 2, -1)
    assert len(well) == 2 * (T - 1)
    assert np.array_equal(well[5]["input_fields"].numpy(), ref[1, 1:2])
    assert np.array_equal(well[5]["output_fields"].numpy(), ref[1, 2:3])
    x = to_xarray(root / "data" / "train" / "NavierStokes2D_train_197910_0.50000.hdf5")
    assert np.allclose(x["x"].values, np.linspace(0, 32.0, X)) and np.allclose(x["y"].values, np.linspace(0, 32, Y))


def test_pdearena_conditioned_buoyancy_per_trajectory(tmp_path):
    name = "NavierStokes2D_train_1_0.20000.h5"
    data, buo = write_ns(tmp_path / name, "train", 3, np.random.default_rng(7), buoyancy=0.2, varying=True)
    (path,) = convert_pdearena(tmp_path / "NavierStokes2D_train_1_0.20000.h5", tmp_path / "root", progress=False)
    with h5py.File(path) as f:
        assert np.allclose(f["scalars/buo_y"][()], buo, rtol=0, atol=1e-7)
        assert f["scalars/buo_y"].attrs["sample_varying"]
    ds = TrajectoryDataset(path, 1, 1)  # the conditioning parameter reaches each sample
    assert ds.metadata.scalar_names == ("buo_y",)
    assert [float(ds[k]["scalars"][0]) for k in (0, T - 1, 2 * (T - 1))] == pytest.approx(buo, abs=1e-7)
    assert np.array_equal(ds[T - 1]["input_fields"][0, 0].numpy(), data["u"][1, 0])


def write_sw(path, rng, nt=T, nlat=X, nlon=Y):
    """A SpeedyWeather output.nc: u, v, vor (time, lev, lat, lon), pres (time, lat, lon), time in hours."""
    path.parent.mkdir(parents=True)
    f = {k: rand(rng, nt, 1, nlat, nlon) for k in ("u", "v", "vor")}
    f["pres"] = rand(rng, nt, nlat, nlon)
    lat = np.linspace(80.0, -80.0, nlat)  # north to south, as SpeedyWeather writes it
    variables = {k: (("time", "lev", "lat", "lon"), a) for k, a in f.items() if k != "pres"}
    variables["pres"] = (("time", "lat", "lon"), f["pres"])
    variables["time"] = (("time",), np.arange(nt, dtype=np.int64) * 6)
    variables["lat"], variables["lon"] = (("lat",), lat), (("lon",), np.arange(nlon) * 360.0 / nlon)
    write_nc(path, variables)
    return f


def test_pdearena_shallow_water_roundtrip_exactly(tmp_path):
    from the_well.data import WellDataset

    rng = np.random.default_rng(8)
    src = tmp_path / "shallowwater"
    runs = {
        ("train", "seed=1", "run0001"): None,
        ("train", "seed=1", "run0002"): None,
        ("valid", "seed=2", "run0001"): None,
        ("test", "seed=3", "run0001"): None,
    }
    for key in runs:
        runs[key] = write_sw(src.joinpath(*key, "output.nc"), rng)
    root = tmp_path / "root"
    files = convert_pdearena(src, root, progress=False)
    assert len(files) == 4 and (root / "stats.yaml").is_file()
    for (split, seed, run), f in runs.items():
        path = root / "data" / split / f"{seed.replace('=', '')}_{run}.hdf5"
        (info,) = validate(path)
        assert info.boundary_conditions == ("open", "periodic")
        assert np.allclose(info.time, 6.0 * np.arange(T))
        x = to_xarray(path)
        for k in ("pres", "u", "v", "vor"):
            assert np.array_equal(x[k].values[0], f[k].reshape(T, X, Y)), k
    ds = TrajectoryDataset(root, 2, 1, split="train")
    assert list(ds.metadata.field_names) == ["pres", "u", "v", "vor"]
    first = runs[("train", "seed=1", "run0001")]
    ref = np.stack([first[k].reshape(T, X, Y) for k in ("pres", "u", "v", "vor")], axis=1)
    assert np.array_equal(ds[0]["input_fields"].numpy(), ref[0:2])
    well = WellDataset(path=str(root / "data" / "test"), n_steps_input=1, n_steps_output=1, use_normalization=False)
    last = runs[("test", "seed=3", "run0001")]
    assert np.array_equal(well[3]["output_fields"][0, ..., 3].numpy(), last["vor"][4, 0])


def test_pdearena_unknown_layout_errors(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["tensor"] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(FormatError, match=r"not a PDEArena file.*'tensor' \(2, 3, 4\).*expected PDEArena"):
        convert_pdearena(tmp_path / "other.h5", tmp_path / "o", progress=False)
    with h5py.File(tmp_path / "ns.h5", "w") as f:
        f["train/u"] = np.zeros((2, 3, 4, 4))
    with pytest.raises(FormatError, match=r"missing \['vx', 'vy', 't', 'x', 'y'\]"):
        convert_pdearena(tmp_path / "ns.h5", tmp_path / "o", progress=False)
    (tmp_path / "sw.zarr").mkdir()
    with pytest.raises(FormatError, match="zarr"):
        convert_pdearena(tmp_path / "sw.zarr", tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no .h5 or .nc files"):
        convert_pdearena(tmp_path / "empty", tmp_path / "o", progress=False)


def test_pdearena_existing_output_is_refused_and_progress_shown(tmp_path, capsys):
    write_ns(tmp_path / "NavierStokes2D_train_1_0.50000.h5", "train", 3, np.random.default_rng(9))
    convert_pdearena(tmp_path / "NavierStokes2D_train_1_0.50000.h5", tmp_path / "root", batch_bytes=1)
    assert "3/3" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_pdearena(tmp_path / "NavierStokes2D_train_1_0.50000.h5", tmp_path / "root", progress=False)


def test_convert_commands(tmp_path, capsys):
    from pdeforge.cli import main

    variables, want = ns_pwc(np.random.default_rng(10))
    write_nc(tmp_path / "NS-PwC.nc", variables)
    argv = ["convert", "poseidon", str(tmp_path / "NS-PwC.nc"), "--out", str(tmp_path / "p"), "--no-progress"]
    assert main(argv + ["--split", "0.5,0.25,0.25", "--name", "pwc"]) == 0
    assert capsys.readouterr().out.count("wrote ") == 3
    (info,) = validate(tmp_path / "p" / "data" / "valid")
    assert info.dataset_name == "pwc"
    assert main(argv) == 1  # the default (scOT's) split of 4 trajectories: one line saying what to pass
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--split" in err
    assert main(argv + ["--split", "half"]) == 1
    assert "--split 'half': expected 'poseidon', 'none' or three fractions" in capsys.readouterr().err

    write_ns(tmp_path / "NavierStokes2D_train_1_0.50000.h5", "train", 2, np.random.default_rng(11))
    src = str(tmp_path / "NavierStokes2D_train_1_0.50000.h5")
    assert main(["convert", "pdearena", src, str(tmp_path / "a"), "--no-progress"]) == 0
    channels = TrajectoryDataset(tmp_path / "a", 1, 1, split="train").metadata.field_names
    assert channels == ("u", "velocity_x", "velocity_y")
    assert main(["convert", "pdearena", str(tmp_path / "NS-PwC.nc"), str(tmp_path / "b"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a PDEArena file" in err and err.count("\n") == 1
    assert main(["convert", "pdearena", src]) == 1
    assert "expected the output dataset root as OUT or --out DIR" in capsys.readouterr().err


def test_an_interrupted_conversion_resumes_to_the_same_values(tmp_path, monkeypatch):
    from pdeforge.datasets import _writer

    variables, want = ce_rp(np.random.default_rng(12))
    write_nc(tmp_path / "CE-RP.nc", variables)
    data, _ = write_ns(tmp_path / "NavierStokes2D_train_1_0.50000.h5", "train", 3, np.random.default_rng(13))
    write = _writer.TrajectoryWriter.write
    calls = {"n": 0}

    def failing(self, *args, **kwargs):  # the third block fails, as a Ctrl-C would
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return write(self, *args, **kwargs)

    monkeypatch.setattr(_writer.TrajectoryWriter, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        convert_poseidon(tmp_path / "CE-RP.nc", tmp_path / "p", split=None, progress=False, batch_bytes=1)
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        convert_pdearena(tmp_path / "NavierStokes2D_train_1_0.50000.h5", tmp_path / "a", progress=False, batch_bytes=1)
    partial = tmp_path / "a" / "data" / "train" / "NavierStokes2D_train_1_0.50000.hdf5.partial"
    assert partial.is_file() and not partial.with_suffix("").exists()
    with h5py.File(partial) as f:
        assert f.attrs["pdeforge_n_written"] == 2  # two blocks of one trajectory kept; the run resumes there
    monkeypatch.setattr(_writer.TrajectoryWriter, "write", write)

    (path,) = convert_poseidon(tmp_path / "CE-RP.nc", tmp_path / "p", split=None, progress=False, batch_bytes=1)
    got = to_xarray(path)
    assert np.array_equal(got["density"].values, want["ref"][:, :, 0])
    assert np.array_equal(np.moveaxis(got["velocity"].values, -1, 2), want["ref"][:, :, 2:4])
    (path,) = convert_pdearena(tmp_path / "NavierStokes2D_train_1_0.50000.h5", tmp_path / "a", progress=False)
    got = to_xarray(path)
    assert np.array_equal(got["u"].values, data["u"]) and np.array_equal(got["velocity"].values[..., 1], data["vy"])
