"""`pdeforge generate`: presets, resume after SIGKILL, sharding, determinism, blow-up guard, CLI."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pdeforge.datasets import TrajectoryDataset, validate
from pdeforge.solvers.generate import PRESETS, BlowUpError, generate, split_ranges, with_overrides

TINY = dict(n_trajectories=6, resolution=32, batch_size=2, progress=False)


def tiny(name: str, **over):
    p = PRESETS[name]
    if hasattr(p, "n_snapshots"):
        over.setdefault("n_snapshots", 4)
        over.setdefault("warmup", min(getattr(p, "warmup", 0.0), 2 * p.dt))
    return with_overrides(p, **over)


def windows(root: Path, split: str) -> list[dict]:
    ds = TrajectoryDataset(root, split=split, n_steps_input=1, n_steps_output=1)
    return [ds[i] for i in range(len(ds))]


def assert_same_windows(a: Path, b: Path) -> None:
    for split in ("train", "valid", "test"):
        wa, wb = windows(a, split), windows(b, split)
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb):
            for k in x:
                torch.testing.assert_close(x[k], y[k], rtol=0, atol=0)


def test_split_ranges_cover_everything_disjointly() -> None:
    r = split_ranges(64, (0.8, 0.1, 0.1))
    assert r == {"train": (0, 52), "valid": (52, 58), "test": (58, 64)}
    with pytest.raises(ValueError, match="at least 3"):
        split_ranges(2, (0.8, 0.1, 0.1))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_writes_a_valid_dataset(tmp_path: Path, name: str) -> None:
    preset = PRESETS[name]
    if name == "kolmogorov_fv_2d":
        preset = with_overrides(preset, dns_resolution=32, warmup_time=0.2, n_frames=3)
        res = 16
    elif name == "taylor_green_fv_2d":
        from pdeforge.solvers.fv import TaylorGreenFVPreset

        preset, res = with_overrides(preset, config=TaylorGreenFVPreset(n_frames=3)), 16
    elif name == "darcy_2d":
        res = 17
    else:
        preset, res = tiny(name), 16 if getattr(preset, "ndim", 1) == 2 else 32
    files = generate(preset, tmp_path, n_trajectories=4, resolution=res, batch_size=2, progress=False)
    assert len(files) == 3 and all(f.exists() for f in files)
    validate(tmp_path)
    stats = yaml.safe_load((tmp_path / "stats.yaml").read_text())
    n_in = 0 if name == "darcy_2d" else 1
    ds = TrajectoryDataset(tmp_path, split="train", n_steps_input=n_in, n_steps_output=1, normalization="zscore")
    s = ds[0]
    assert torch.isfinite(s["output_fields"]).all()
    assert s["output_fields"].shape[-ds.metadata.n_spatial_dims :] == (res,) * ds.metadata.n_spatial_dims
    assert float(s["output_fields"].std()) > 1e-3  # not a constant field
    assert set(stats["mean"]) >= {n.split("_")[0] if n.startswith("velocity") else n for n in ds.metadata.field_names}
    if name == "darcy_2d":
        a, u = s["constant_fields"], ds.denormalize(s["output_fields"])[0, 0]
        assert set(np.unique(ds.const_normalizer.denormalize(a, 2).round(decimals=3).numpy())) <= {3.0, 12.0}
        assert float(u.min()) >= -1e-6 and float(u[0].abs().max()) < 1e-6  # u >= 0, zero on the boundary
    if name == "burgers_nu_1d":
        assert ds.metadata.scalar_names == ("nu",)
        nus = [float(ds[i]["scalars"][0]) for i in range(0, len(ds), len(ds) // 2)]
        assert all(0.003 <= v <= 0.03 for v in nus) and len(set(nus)) > 1


def test_same_seed_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    p = tiny("burgers_1d")
    generate(p, tmp_path / "a", seed=7, **TINY)
    generate(p, tmp_path / "b", seed=7, **TINY)
    generate(p, tmp_path / "c", seed=8, **TINY)
    for f in sorted((tmp_path / "a").rglob("*.hdf5")):
        rel = f.relative_to(tmp_path / "a")
        assert filecmp.cmp(f, tmp_path / "b" / rel, shallow=False), rel
        assert not filecmp.cmp(f, tmp_path / "c" / rel, shallow=False), rel


def test_two_shards_equal_one_run(tmp_path: Path) -> None:
    p = tiny("ks_1d")
    generate(p, tmp_path / "one", **TINY)
    generate(p, tmp_path / "two", shard=(1, 2), **TINY)
    assert not (tmp_path / "two" / "stats.yaml").exists()  # train incomplete until shard 0 is done
    generate(p, tmp_path / "two", shard=(0, 2), **TINY)
    assert len(list((tmp_path / "two" / "data" / "train").glob("*.hdf5"))) == 2
    assert_same_windows(tmp_path / "one", tmp_path / "two")
    s1 = yaml.safe_load((tmp_path / "one" / "stats.yaml").read_text())
    s2 = yaml.safe_load((tmp_path / "two" / "stats.yaml").read_text())
    assert s1["mean"]["u"] == pytest.approx(s2["mean"]["u"], rel=1e-9, abs=1e-12)
    assert s1["std"]["u"] == pytest.approx(s2["std"]["u"], rel=1e-9)


def test_resume_after_sigkill_equals_uninterrupted_run(generate_killed_then_resumed) -> None:
    options = {"n_trajectories": 10, "resolution": 32, "batch_size": 2}
    ref, root = generate_killed_then_resumed("burgers_1d", {"n_snapshots": 4}, 2, **options)
    assert not list(root.rglob("*.partial"))
    for f in sorted(ref.rglob("*.hdf5")):
        other = root / f.relative_to(ref)
        a, b = TrajectoryDataset(f, full_trajectory=True), TrajectoryDataset(other, full_trajectory=True)
        for i in range(len(a)):
            torch.testing.assert_close(a[i]["output_fields"], b[i]["output_fields"], rtol=0, atol=0)
    assert_same_windows(ref, root)


def test_absurd_dt_gives_clear_blow_up_error_and_no_file(tmp_path: Path) -> None:
    p = with_overrides(PRESETS["ks_1d"], dt=5.0, save_every=1, n_snapshots=30, warmup=0.0)
    with pytest.raises(
        BlowUpError,
        match=(
            r"preset 'ks_1d': trajectory \d+ \(parameters .*\) blew up: non-finite values at snapshot \d+ .*; "
            r"cause: the time step: dt 5 \(1 solver step per snapshot\) is too large for this grid; "
            r"try --substeps 2 \(dt 2.5\) or more$"
        ),
    ):
        generate(p, tmp_path, n_trajectories=4, resolution=256, batch_size=2, progress=False)
    assert not list(tmp_path.rglob("*.hdf5")) and not list(tmp_path.rglob("*.partial"))


def test_cli_list_generate_inspect(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "pdeforge.cli"]
    out = subprocess.run(cli + ["generate", "--list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for name in (
        "burgers_1d",
        "advection_1d",
        "kdv_1d",
        "ks_1d",
        "allen_cahn_1d",
        "heat_2d",
        "navier_stokes_2d",
        "kolmogorov_2d",
        "gray_scott_2d",
        "burgers_nu_1d",
        "darcy_2d",
        "kolmogorov_fv_2d",
    ):
        assert f"\n{name}\n" in "\n" + out.stdout
    out = subprocess.run(
        cli
        + [
            "generate",
            "heat_2d",
            "--out",
            str(tmp_path),
            "--n-trajectories",
            "3",
            "--resolution",
            "16",
            "--allow-underresolved",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    info = subprocess.run(cli + ["inspect", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "heat_2d" in info.stdout and "(1, 21, 16, 16)" in info.stdout
    bad = subprocess.run(
        cli + ["generate", "nope", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1 and "unknown preset 'nope'" in bad.stderr
    (tmp_path / "junk.hdf5").write_text("hello")
    bad = subprocess.run(cli + ["inspect", str(tmp_path / "junk.hdf5")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not an HDF5 file" in bad.stderr
