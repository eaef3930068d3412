"""The compressible presets of `pdeforge generate`: valid datasets in PDEBench's layout (density, pressure t0;
velocity t1), identical bytes for a seed, shards, resume after SIGKILL, batching, and training through train.py."""

from __future__ import annotations

import filecmp
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdeforge.datasets import TrajectoryDataset, validate
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

NAMES = [
    "sod_shock_tube",
    "euler_riemann_2d",
    "compressible_ns_1d",
    "compressible_ns_2d",
    "compressible_ns_turb_2d",
    "kelvin_helmholtz_2d",
]


def tiny(name: str, **over):
    return with_overrides(PRESETS[name], n_frames=3, **over)


def small_resolution(name: str) -> int:
    return 16 if PRESETS[name].ndim == 2 else 32


@pytest.mark.parametrize("name", NAMES)
def test_preset_writes_pdebench_layout_with_physical_values(tmp_path: Path, name: str) -> None:
    res = small_resolution(name)
    generate(tiny(name), tmp_path, n_trajectories=4, resolution=res, batch_size=2, progress=False)
    validate(tmp_path)
    ds = TrajectoryDataset(tmp_path, split="train", n_steps_input=1, n_steps_output=1)
    d = PRESETS[name].ndim
    names = ["density", "pressure", "velocity_x", "velocity_y"][: 2 + d]
    assert list(ds.metadata.field_names) == names
    f = next(iter((tmp_path / "data" / "train").glob("*.hdf5")))
    with h5py.File(f) as h:
        rho, p = h["t0_fields/density"][...], h["t0_fields/pressure"][...]
        vel = h["t1_fields/velocity"][...]
    assert rho.shape[:2] == (2, 3) and rho.shape[2:] == (res,) * d and vel.shape[-1] == d
    assert rho.min() > 0 and p.min() > 0 and np.isfinite(vel).all()
    assert float(np.abs(np.diff(rho, axis=1)).max()) > 0  # it moved
    if PRESETS[name].boundaries == "periodic":  # mass is conserved (to float32 storage)
        mass = rho.astype(np.float64).mean(axis=tuple(range(2, 2 + d)))
        np.testing.assert_allclose(mass, np.broadcast_to(mass[:, :1], mass.shape), rtol=1e-6)


def test_same_seed_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    p = tiny("euler_riemann_2d")
    kw = dict(n_trajectories=4, resolution=16, batch_size=2, progress=False)
    generate(p, tmp_path / "a", seed=3, **kw)
    generate(p, tmp_path / "b", seed=3, **kw)
    generate(p, tmp_path / "c", seed=4, **kw)
    for f in sorted((tmp_path / "a").rglob("*.hdf5")):
        rel = f.relative_to(tmp_path / "a")
        assert filecmp.cmp(f, tmp_path / "b" / rel, shallow=False), rel
        assert not filecmp.cmp(f, tmp_path / "c" / rel, shallow=False), rel


def test_batching_and_shards_do_not_change_the_numbers(tmp_path: Path) -> None:
    """Each trajectory takes its own CFL steps: a batch of 3 equals the trajectories solved one by one, bitwise."""
    p = tiny("sod_shock_tube")
    together = p.solve([0, 1, 2], 0, 32, "cpu").fields
    alone = torch.cat([p.solve([j], 0, 32, "cpu").fields for j in (0, 1, 2)])
    assert torch.equal(together, alone)
    kw = dict(n_trajectories=6, resolution=32, batch_size=2, progress=False)
    generate(p, tmp_path / "one", **kw)
    generate(p, tmp_path / "two", shard=(1, 2), **kw)
    generate(p, tmp_path / "two", shard=(0, 2), **kw)
    for split in ("train", "valid", "test"):
        a = TrajectoryDataset(tmp_path / "one", split=split, n_steps_input=1, n_steps_output=1)
        b = TrajectoryDataset(tmp_path / "two", split=split, n_steps_input=1, n_steps_output=1)
        assert len(a) == len(b)
        for i in range(len(a)):
            torch.testing.assert_close(a[i]["output_fields"], b[i]["output_fields"], rtol=0, atol=0)


def test_resume_after_sigkill_equals_uninterrupted_run(generate_killed_then_resumed) -> None:
    options = {"n_trajectories": 10, "resolution": 32, "batch_size": 2}
    ref, root = generate_killed_then_resumed("sod_shock_tube", {"n_frames": 3}, 2, **options)  # tiny()
    for f in sorted(ref.rglob("*.hdf5")):
        assert filecmp.cmp(f, root / f.relative_to(ref), shallow=False), f.name


def test_pdebench_random_2d_statistics() -> None:
    """The drawn 2D data have PDEBench's statistics: mean speed ``mach * sqrt(gamma T_0)`` before the window and
    density fluctuations of 1-20 % about ``rho_0``; the turbulent velocity is divergence-free with mean speed 1."""
    from pdeforge.solvers._presets import trajectory_generator
    from pdeforge.solvers._presets_compressible import PDEBenchRandom2D, PDEBenchTurbulence2D

    x = (torch.arange(64, dtype=torch.float64) + 0.5) / 64
    for j in range(4):
        w = PDEBenchRandom2D(mach=0.5)([x, x], (1.0, 1.0), 5 / 3, trajectory_generator(0, j))[0]
        assert w.shape == (4, 64, 64) and w[0].min() > 0 and w[3].min() > 0
        w = PDEBenchTurbulence2D(mach=0.1)([x, x], (1.0, 1.0), 5 / 3, trajectory_generator(0, j))[0]
        speed = (w[1] ** 2 + w[2] ** 2).sqrt().mean()
        assert float(speed) == pytest.approx(1.0, rel=1e-12)
        assert float(w[3, 0, 0]) == pytest.approx(1 / (5 / 3 * 0.01))
        vh = torch.fft.fft2(w[1:3])
        k = torch.fft.fftfreq(64, dtype=torch.float64)
        div = k.view(-1, 1) * vh[0] + k.view(1, -1) * vh[1]
        assert float(div.abs().max()) <= 1e-10 * float(vh.abs().max())
    g = trajectory_generator(0, 0)
    w = PDEBenchRandom2D(mach=0.5)([x, x], (1.0, 1.0), 5 / 3, g)[0]
    assert math.isfinite(float(w.sum()))


def test_a_non_physical_state_stops_generation_with_a_named_error(tmp_path: Path) -> None:
    from pdeforge.solvers.generate import BlowUpError

    class Bad(type(PRESETS["sod_shock_tube"])):
        def _initial(self, indices, seed, resolution):
            w = super()._initial(indices, seed, resolution)
            w[:, -1, 3] = -1.0  # a negative pressure
            return w

    base = tiny("sod_shock_tube")
    import dataclasses

    bad = Bad(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    with pytest.raises(BlowUpError, match="sod_shock_tube"):
        generate(bad, tmp_path, n_trajectories=4, resolution=32, batch_size=2, progress=False)
    assert not list(tmp_path.rglob("*.hdf5")) and not list(tmp_path.rglob("*.partial"))


def test_generated_compressible_data_train_through_train_py(tmp_path: Path) -> None:
    from pdeforge import train

    root = tmp_path / "data"
    generate(
        with_overrides(PRESETS["compressible_ns_1d"], n_frames=6),
        root,
        n_trajectories=12,
        resolution=32,
        batch_size=4,
        progress=False,
    )
    run = tmp_path / "run"
    out = train.main(
        [
            "--data.root",
            str(root),
            "--task.dt_stride",
            "1",
            "--optim.epochs",
            "3",
            "--optim.batch_size",
            "4",
            "--run.run_dir",
            str(run),
            "--run.progress",
            "false",
        ]
    )
    assert (run / "model.safetensors").is_file()
    assert math.isfinite(out["test"]["rel_l2"]) and out["test"]["n_samples"] > 0
