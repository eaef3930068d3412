"""`pdeforge generate` into a root that already holds data, and split leakage (issue 29).

A root is continued only by the parameters recorded in its ``generation.json``; anything else is refused in one
line naming what differs, and the files are left byte for byte as they were (sha256 of every file before and
after). Two splits of a root never share a trajectory: `validate`, `pdeforge inspect` and the training families'
`dataset_root` refuse a root where they do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from pdeforge.cli import main as cli
from pdeforge.datasets import FormatError, TrajectoryDataset, check_disjoint_splits, validate
from pdeforge.solvers.generate import PRESETS, ExistingRootError, generate, split_ranges, with_overrides
from pdeforge.training.data import dataset_root

PRESET = with_overrides(PRESETS["burgers_1d"], n_snapshots=4)
SMALL = dict(n_trajectories=4, resolution=32, batch_size=2, progress=False)
CLI_SMALL = ["--n-trajectories", "4", "--resolution", "32", "--allow-underresolved", "--no-progress"]


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path (a new, lost or changed file changes the mapping)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished root of PRESET (seed 0), copied by each test that changes it."""
    root = tmp_path_factory.mktemp("made") / "root"
    generate(PRESET, root, **SMALL)
    return root


def copy_of(made: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(made, root)
    return root


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(resolution=64), "made with resolution 32; asked resolution 64"),
        (dict(seed=1), "made with seed 0; asked seed 1"),
        (dict(n_trajectories=6), "made with n_trajectories 4; asked n_trajectories 6"),
        (dict(preset=with_overrides(PRESET, n_snapshots=5)), "made with n_snapshots 4; asked n_snapshots 5"),
        (
            dict(preset=with_overrides(PRESETS["ks_1d"], n_snapshots=4)),
            "made with preset burgers_1d; asked preset ks_1d",
        ),
    ],
)
def test_other_parameters_are_refused_and_nothing_changes(made: Path, tmp_path: Path, change: dict, named: str) -> None:
    root = copy_of(made, tmp_path)
    before = checksums(root)
    args = {**SMALL, **change}
    preset = args.pop("preset", PRESET)
    with pytest.raises(ExistingRootError) as e:
        generate(preset, root, **args)
    message = str(e.value)
    assert "\n" not in message and named in message and "--overwrite" in message, message
    assert checksums(root) == before


def test_cli_refusal_is_one_line_and_writes_nothing(made: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = copy_of(made, tmp_path)
    before = checksums(root)
    assert (
        cli(
            [
                "generate",
                "burgers_1d",
                "--out",
                str(root),
                "--n-trajectories",
                "6",
                "--resolution",
                "32",
                "--allow-underresolved",
                "--no-progress",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {root}: made with ") and "n_trajectories 4" in err, err
    assert "asked " in err and "n_trajectories 6" in err and "use another --out, or --overwrite" in err, err
    assert checksums(root) == before


def test_same_parameters_twice_is_already_complete_with_identical_bytes(tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    assert cli(["generate", "burgers_1d", "--out", str(root), *CLI_SMALL]) == 0
    first = capsys.readouterr().out
    assert first.count("wrote ") == 3 and (root / "generation.json").is_file()
    before = checksums(root)
    assert cli(["generate", "burgers_1d", "--out", str(root), *CLI_SMALL]) == 0
    out = capsys.readouterr().out
    assert "already complete" in out and "wrote" not in out, out
    assert checksums(root) == before


def test_overwrite_replaces_the_old_generation_entirely(made: Path, tmp_path: Path) -> None:
    root = copy_of(made, tmp_path)
    (root / "notes.txt").write_text("the user's own file")  # not part of a generation: kept
    files = generate(PRESET, root, **{**SMALL, "n_trajectories": 6, "seed": 3}, overwrite=True)
    fresh = tmp_path / "fresh"
    generate(PRESET, fresh, **{**SMALL, "n_trajectories": 6, "seed": 3})
    got, want = checksums(root), checksums(fresh)
    assert got.pop("notes.txt") and got == want  # only the new generation's files, byte for byte
    assert sorted(files) == sorted(root / p for p in want if p.endswith(".hdf5"))
    assert not list(root.glob(".replaced-*"))


def test_cli_overwrite_of_a_root_without_record(made: Path, tmp_path: Path, capsys) -> None:
    """A root made by an older pdeforge (or pdeforge convert) has no record: refused, named, unless --overwrite."""
    root = copy_of(made, tmp_path)
    (root / "generation.json").unlink()
    before = checksums(root)
    assert cli(["generate", "burgers_1d", "--out", str(root), *CLI_SMALL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no generation record" in err and "--overwrite" in err, err
    assert checksums(root) == before
    assert cli(["generate", "burgers_1d", "--out", str(root), *CLI_SMALL, "--overwrite"]) == 0
    assert capsys.readouterr().out.count("wrote ") == 3
    assert (root / "generation.json").is_file()
    validate(root, check_values=False)


def test_shards_share_the_record_and_overwrite(made: Path, tmp_path: Path) -> None:
    """Shards of one generation are all accepted; with --overwrite the first shard replaces another generation and
    the next shard continues the root it claimed (it does not delete its sibling's files)."""
    root = copy_of(made, tmp_path)
    over = {**SMALL, "seed": 5}
    generate(PRESET, root, shard=(1, 2), overwrite=True, **over)
    shard1 = checksums(root)
    generate(PRESET, root, shard=(0, 2), overwrite=True, **over)
    assert all(checksums(root)[k] == v for k, v in shard1.items() if k.endswith(".hdf5"))
    one = tmp_path / "one"
    generate(PRESET, one, **over)
    assert_same_trajectories(root, one)


def assert_same_trajectories(a: Path, b: Path) -> None:
    for split in ("train", "valid", "test"):
        da = TrajectoryDataset(a, split=split, full_trajectory=True)
        db = TrajectoryDataset(b, split=split, full_trajectory=True)
        assert len(da) == len(db)
        for i in range(len(da)):
            torch.testing.assert_close(da[i]["output_fields"], db[i]["output_fields"], rtol=0, atol=0)


class Interrupting(type(PRESET)):
    """PRESET whose second solve raises KeyboardInterrupt (Ctrl-C in the middle of the train file)."""

    calls = 0

    def solve(self, indices, seed, resolution, device):
        type(self).calls += 1
        if type(self).calls == 2:
            raise KeyboardInterrupt
        return super().solve(indices, seed, resolution, device)


def test_interrupted_generation_resumes_and_refuses_other_parameters(made: Path, tmp_path: Path) -> None:
    Interrupting.calls = 0
    preset = Interrupting(**{f.name: getattr(PRESET, f.name) for f in dataclasses.fields(PRESET)})
    root = tmp_path / "root"
    with pytest.raises(KeyboardInterrupt):
        generate(preset, root, **{**SMALL, "batch_size": 1})
    assert (root / "generation.json").is_file() and list(root.rglob("*.partial")) and not list(root.rglob("*.hdf5"))
    before = checksums(root)
    with pytest.raises(ExistingRootError, match="made with seed 0; asked seed 1"):
        generate(PRESET, root, **{**SMALL, "seed": 1})
    assert checksums(root) == before  # the interrupted work is kept for its own command
    states = []
    generate(preset, root, **{**SMALL, "batch_size": 1}, on_start=lambda state, kept: states.append(state))
    assert states == ["resuming"] and not list(root.rglob("*.partial"))
    assert_same_trajectories(root, made)  # HDF5 bytes of a resumed file differ in layout, not in data


def first_snapshots(path: Path) -> list[bytes]:
    with h5py.File(path, "r") as f:
        return [np.asarray(f["t0_fields/u"][i, 0]).tobytes() for i in range(f["t0_fields/u"].shape[0])]


def test_generated_splits_share_no_trajectory(tmp_path: Path) -> None:
    """By construction: disjoint global id ranges per split and no bit-identical trajectories, at any count."""
    for n in (4, 7):
        root = tmp_path / f"n{n}"
        generate(PRESET, root, **{**SMALL, "n_trajectories": n})
        ids, snaps = {}, {}
        for split, (a, b) in split_ranges(n, PRESET.splits).items():
            files = sorted((root / "data" / split).glob("*.hdf5"))
            ids[split] = set()
            snaps[split] = set()
            for f in files:
                with h5py.File(f, "r") as h:
                    lo, hi = json.loads(h.attrs["trajectory_range"])
                ids[split] |= set(range(lo, hi))
                snaps[split] |= set(first_snapshots(f))
            assert ids[split] == set(range(a, b))
        for s, t in (("train", "valid"), ("train", "test"), ("valid", "test")):
            assert not ids[s] & ids[t] and not snaps[s] & snaps[t], (s, t)
        check_disjoint_splits(root)


def leaky_root(made: Path, tmp_path: Path) -> Path:
    """A train trajectory copied bit for bit into test, without its id (as a hand-made root would hold it)."""
    root = copy_of(made, tmp_path)
    (root / "generation.json").unlink()
    train = sorted((root / "data" / "train").glob("*.hdf5"))[0]
    leaked = root / "data" / "test" / "copied.hdf5"
    shutil.copy(train, leaked)
    with h5py.File(leaked, "a") as f:
        del f.attrs["trajectory_range"]
    return root


def test_bit_identical_trajectory_in_two_splits_is_refused_everywhere(made: Path, tmp_path: Path, capsys) -> None:
    root = leaky_root(made, tmp_path)
    want = "data/train/burgers_1d_000000-000002.hdf5 index 0 and data/test/copied.hdf5 index 0 are bit-identical"
    with pytest.raises(FormatError, match=want):
        validate(root)
    assert cli(["inspect", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and want in err, err
    data = SimpleNamespace(root=str(root), preset=None, preset_options={})
    with pytest.raises(ValueError, match=f"operator: data.root {root}: .*{want}"):
        dataset_root(data, where="operator")
    (root / "data" / "test" / "copied.hdf5").unlink()
    assert dataset_root(data, where="operator") == root.resolve()


def test_overlapping_trajectory_ids_are_refused(made: Path, tmp_path: Path) -> None:
    """Files of two generations (other seed: other bytes) whose global ids overlap between train and test."""
    root = copy_of(made, tmp_path)
    other = tmp_path / "other"
    generate(PRESET, other, **{**SMALL, "seed": 9})
    shutil.copy(other / "data" / "test" / "burgers_1d_000003-000004.hdf5", root / "data" / "train" / "more.hdf5")
    with pytest.raises(FormatError, match=r"splits share trajectory ids: .*\[3, 4\).*\[3, 4\)"):
        validate(root, check_values=False)
    with pytest.raises(ValueError, match="splits share trajectory ids"):
        dataset_root(SimpleNamespace(root=str(root), preset=None, preset_options={}), where="tsm")
