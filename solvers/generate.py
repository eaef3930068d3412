"""``pdeforge generate``: write a dataset root from a preset, resumably, sharded, with a blow-up guard.

    pdeforge generate --list
    pdeforge generate burgers_1d --out data/burgers_1d [--n-trajectories N] [--resolution R] [--seed S]
                                 [--device cpu|cuda|cuda:N|auto] [--batch-size B] [--shard i/n] [--overwrite]
                                 [--substeps K | --dt DT] [--allow-underresolved]
    torchrun --nproc_per_node 4 -m pdeforge.cli generate ks_1d --out data/ks     # shards by rank

Layout written: ``ROOT/data/{train,valid,test}/<preset>_<first>-<end>.hdf5`` (global trajectory ranges, so shards
are disjoint files the dataset layer reads as one dataset) and ``ROOT/stats.yaml`` fitted on train once every train
file exists. Trajectory ``j`` is seeded by ``(seed, j)``: same seed, same numbers, whatever the sharding. Rerunning
the same command after a crash skips finished files and resumes the interrupted one; Ctrl-C says so in one line.

Every numeric option is checked before anything is written (`check_options`, `with_time_step`): at least 3
trajectories, a resolution of at least the preset's declared minimum (``preset.resolves``, a `ResolutionCheck`
measured by ``tests/test_resolution_guards.py``; below it only with ``allow_underresolved``, never below
`MIN_RESOLUTION`) whose trajectories fit in this machine's memory while solved and whose files fit on the disk, a
batch size and seed that are not negative, a device that is here, and a time step (``--substeps K``: K solver steps
per stored snapshot, dt = snapshot interval / K; or ``--dt``, which must divide the snapshot interval) for a preset
that takes one. The estimated output size is printed before the first solve.

A blow-up (NaN/Inf) stops with `BlowUpError` naming its cause: the grid when the resolution is below the preset's
minimum (the ``--resolution`` that resolves it), otherwise the time step (a ``--substeps``/``--dt`` twice as fine).

``ROOT/generation.json`` records what made the root (preset, its fields (``dt`` and ``save_every`` among them, as
``--substeps``/``--dt`` set them), seed, resolution, trajectory count, whether the data are under-resolved, pdeforge
version), written before the first data file; under-resolved files also say ``underresolved`` in their attributes.
A root is only continued by the same parameters (every shard of one generation shares the record); other parameters
are refused, naming what differs, unless ``overwrite`` replaces the root: files of two generations never meet in one
root, where they would mix datasets or put one trajectory in two splits.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from .._device import device_problem, resolve_device
from .._files import atomic_write
from ..datasets import TrajectoryWriter, write_stats
from ._presets import PRESETS, AbstractPreset, Solved, SpectralPreset

__all__ = [
    "BlowUpError",
    "ExistingRootError",
    "generate",
    "generation_record",
    "split_ranges",
    "shard_range",
    "check_options",
    "with_time_step",
    "trajectory_bytes",
    "PRESETS",
    "main",
]

SPLITS = ("train", "valid", "test")
RECORD = "generation.json"
# Preset fields that are not part of the record: the resolved resolution and count are recorded on their own, the
# batch size does not change the numbers (trajectory j is seeded by (seed, j)), the summary is prose, and the declared
# minimum resolution is a guard (whether the data fall below it is recorded as ``underresolved``).
_UNRECORDED_FIELDS = ("name", "summary", "resolution", "n_trajectories", "batch_size", "resolves")
# The coarsest grid written at all, even with ``allow_underresolved``; each preset declares the minimum its numerics
# resolve (``preset.resolves.min_resolution``), which rules above this floor.
MIN_RESOLUTION = 4
STORED_BYTES = 4  # float32 in the files
SOLVED_BYTES = 8  # the solvers' float64 while a batch is solved and kept whole


class BlowUpError(RuntimeError):
    """A solve produced non-finite values; the message names preset, parameters, trajectory and step."""


class ExistingRootError(ValueError):
    """The output root holds data that these parameters would not reproduce; the message names what differs."""


def generation_record(preset: AbstractPreset, n_trajectories: int, resolution: int, seed: int) -> dict[str, Any]:
    """What makes a root's numbers: preset name, seed, resolution, count, version and every preset field.

    Fields are recorded by their ``repr`` (equations and initial conditions are dataclasses whose repr lists
    their values), so a changed override such as ``n_snapshots`` or ``dt`` shows in the record and in the refusal.
    """
    fields = {
        f.name: repr(getattr(preset, f.name)) for f in dataclasses.fields(preset) if f.name not in _UNRECORDED_FIELDS
    }
    return {
        "preset": preset.name,
        "resolution": int(resolution),
        "seed": int(seed),
        "n_trajectories": int(n_trajectories),
        "underresolved": preset.resolves.underresolved(resolution),
        "pdeforge_version": __version__,
        "preset_fields": fields,
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ, top-level first, then preset fields (only when the preset is the same)."""
    top = ("preset", "resolution", "seed", "n_trajectories", "underresolved", "pdeforge_version")
    keys = [k for k in top if old.get(k) != new.get(k)]
    if "preset" in keys:  # another preset: every field differs, and its name says enough
        return keys
    old_f, new_f = old.get("preset_fields", {}), new.get("preset_fields", {})
    return keys + [f"preset_fields.{k}" for k in sorted(set(old_f) | set(new_f)) if old_f.get(k) != new_f.get(k)]


def _value(record: dict[str, Any], key: str) -> str:
    if key.startswith("preset_fields."):
        text = record.get("preset_fields", {}).get(key.split(".", 1)[1], "(not set)")
    else:
        text = str(record.get(key, "(not set)"))
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(record: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k.removeprefix('preset_fields.')} {_value(record, k)}" for k in keys)


def _has_data(root: Path) -> bool:
    """Whether ``root`` holds anything `generate` or `pdeforge convert` writes (other files are left alone)."""
    data = root / "data"
    return (root / "stats.yaml").exists() or (data.is_dir() and any(p.is_file() for p in data.rglob("*")))


def _read_record(root: Path) -> dict[str, Any] | None:
    path = root / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExistingRootError(
            f"{path}: unreadable generation record ({e}): use another --out, or --overwrite to replace it"
        ) from None
    if not isinstance(record, dict):
        raise ExistingRootError(
            f"{path}: expected a JSON object, found {type(record).__name__}: use another --out, "
            "or --overwrite to replace it"
        )
    return record


def _replace(root: Path) -> None:
    """Move what a generation wrote out of the way, then delete it: each rename is atomic, so an interruption leaves
    either the old file or none under its name (never a half-deleted mix), and a hidden leftover at worst."""
    trash = root / f".replaced-{secrets.token_hex(6)}"
    trash.mkdir()
    for name in ("data", "stats.yaml", RECORD):
        if (root / name).exists():
            os.replace(root / name, trash / name)
    shutil.rmtree(trash)


def _claim_root(root: Path, record: dict[str, Any], overwrite: bool, n_shards: int) -> None:
    """Make ``root`` hold ``record``, or refuse. Shards of one generation run this at once, so it holds an exclusive
    lock on the root folder: the second shard sees the record the first one wrote (same parameters: accepted)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        # released when the process ends, whatever the way; a file system without locks (some network mounts)
        # refuses, and shards then rely on atomic renames
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        unreadable: ExistingRootError | None = None
        try:
            old = _read_record(root)
        except ExistingRootError as e:
            unreadable, old = e, {}
        if not _has_data(root):  # a fresh root, or a record whose generation never wrote data: nothing to lose
            if old != record:
                atomic_write(root / RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
            return
        if old == record and not (overwrite and n_shards == 1):
            return  # the same generation (or another shard of it): continue
        if not overwrite:
            if unreadable is not None:
                raise unreadable
            if old is None:
                raise ExistingRootError(
                    f"{root}: holds data but no generation record ({RECORD}: made by an older pdeforge or by pdeforge "
                    "convert), so its parameters cannot be compared: use another --out, or --overwrite to replace it"
                )
            keys = _differences(old, record)
            raise ExistingRootError(
                f"{root}: made with {_describe(old, keys)}; asked {_describe(record, keys)}: use "
                "another --out, or --overwrite to replace it"
            )
        _replace(root)
        atomic_write(root / RECORD, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    finally:
        os.close(fd)


def split_ranges(n_trajectories: int, fractions: Sequence[float]) -> dict[str, tuple[int, int]]:
    """Global trajectory ranges of train/valid/test: ``[0, n_train)``, then valid, then test (each >= 1)."""
    if n_trajectories < 3:
        raise ValueError(f"need at least 3 trajectories (one per split), got {n_trajectories}")
    n_valid = max(1, round(fractions[1] * n_trajectories))
    n_test = max(1, round(fractions[2] * n_trajectories))
    n_train = n_trajectories - n_valid - n_test
    if n_train < 1:
        raise ValueError(f"{n_trajectories} trajectories leave no training data with fractions {tuple(fractions)}")
    return {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n_trajectories)}


def shard_range(start: int, end: int, shard: int, n_shards: int) -> tuple[int, int]:
    """Contiguous part ``shard`` of ``n_shards`` of ``[start, end)``."""
    n = end - start
    return start + (shard * n) // n_shards, start + ((shard + 1) * n) // n_shards


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); default from torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else (0, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard should look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def _blow_up_cause(preset: AbstractPreset, resolution: int) -> str:
    """What to change after a blow-up: the grid below the preset's minimum resolution, else the time step."""
    lowest = preset.resolves.min_resolution
    if resolution < lowest:
        return (
            f"cause: the grid: {resolution} points per axis is below the {lowest} from which {preset.name} "
            f"resolves its dynamics; use --resolution {lowest} or more"
        )
    if isinstance(preset, SpectralPreset):
        k = preset.save_every
        return (
            f"cause: the time step: dt {preset.dt:g} ({k} solver step{'s' * (k != 1)} per snapshot) is too large "
            f"for this grid; try --substeps {2 * k} (dt {preset.dt_save / (2 * k):g}) or more"
        )
    if preset.describe(resolution)["n_snapshots"] > 1:  # the FV solver: its time step follows a CFL number
        cfl = preset.provenance(resolution, 0)["dt_internal"]
        return f"cause: the time step: the solver's CFL number ({cfl}) is too large for this flow"
    return "cause: not the grid (it is resolved) nor a time step (the problem is steady): please report it"


def _check_finite(preset: AbstractPreset, solved: Solved, indices: Sequence[int], resolution: int) -> None:
    bad = ~torch.isfinite(solved.fields.flatten(2)).all(-1)  # (B, T)
    if not bad.any():
        return
    b = int(bad.any(1).nonzero()[0])
    k = int(bad[b].nonzero()[0])
    params = solved.parameters[b] if solved.parameters else {}
    where = f"snapshot {k} (t = {k * preset.describe(resolution)['dt_snapshot']:g}"
    if isinstance(preset, SpectralPreset) and k == 0:
        where += f", the state after {preset.warmup:g} time units of warm-up"
    elif isinstance(preset, SpectralPreset):
        where += f", within solver steps {(k - 1) * preset.save_every + 1}..{k * preset.save_every}"
    raise BlowUpError(
        f"preset {preset.name!r}: trajectory {indices[b]} (parameters {params}) blew up: non-finite values at "
        f"{where}); {_blow_up_cause(preset, resolution)}"
    )


def generate(
    preset: AbstractPreset | str,
    out: str | os.PathLike,
    n_trajectories: int | None = None,
    resolution: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    overwrite: bool = False,
    on_start: Callable[[str, list[Path]], None] | None = None,
) -> list[Path]:
    """Write this shard's files of ``preset`` under ``out``; returns the files. See the module docstring.

    The options are not checked here (`check_options` and `with_time_step` do, for ``pdeforge generate``): a
    resolution below the preset's minimum is written, and said, as under-resolved (``underresolved`` in the record
    and in every file's attributes).

    A root that holds data of other parameters (or data without a record) raises `ExistingRootError`, unless
    ``overwrite``: then the old generation is deleted first. With several shards, ``overwrite`` keeps a root of the
    same parameters (another shard of this generation may have written it). ``on_start(state, kept)`` is called once
    the root is claimed, before any solve: ``state`` is ``"new"``, ``"resuming"`` or ``"complete"`` and ``kept``
    the files of this shard already finished.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise KeyError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)} (pdeforge generate --list)")
        preset = PRESETS[preset]
    # ``is None``, not ``or``: 0 is an answer to check (and refuse), never a request for the default
    n = preset.n_trajectories if n_trajectories is None else n_trajectories
    res = preset.resolution if resolution is None else resolution
    bs = preset.batch_size if batch_size is None else batch_size
    root = Path(out)
    schema = preset.schema(res)
    prov = preset.provenance(res, seed)
    i, n_shards = shard
    ranges = split_ranges(n, preset.splits)
    jobs = []
    for split in SPLITS:
        a, b = shard_range(*ranges[split], i, n_shards)
        if b > a:
            jobs.append((split, a, b, root / "data" / split / f"{preset.name}_{a:06d}-{b:06d}.hdf5"))
    _claim_root(root, generation_record(preset, n, res, seed), overwrite, n_shards)
    kept = [path for _, _, _, path in jobs if path.exists()]
    started = any(path.with_name(path.name + ".partial").exists() for _, _, _, path in jobs)
    state = "complete" if len(kept) == len(jobs) else "resuming" if kept or started else "new"
    if on_start is not None:
        on_start(state, kept)
    total = sum(b - a for _, a, b, path in jobs if not path.exists())
    label = f"{preset.name} shard {i}/{n_shards}" + (" (resuming)" if state == "resuming" else "")
    bar = tqdm(total=total, unit="traj", desc=label, disable=not progress)
    written = []
    for split, a, b, path in jobs:
        written.append(path)
        if path.exists():
            continue
        writer = TrajectoryWriter(path, schema, b - a, provenance={**prov, "split": split, "trajectory_range": [a, b]})
        try:
            start = a + writer.n_written
            bar.update(writer.n_written)
            for s in range(start, b, bs):
                idx = list(range(s, min(s + bs, b)))
                try:
                    solved = preset.solve(idx, seed, res, device)
                except FloatingPointError:  # a solver that stops on non-finite values itself (the FV solver)
                    raise BlowUpError(
                        f"preset {preset.name!r}: trajectories {idx[0]}..{idx[-1]} blew up: non-finite values in "
                        f"the solver; {_blow_up_cause(preset, res)}"
                    ) from None
                _check_finite(preset, solved, idx, res)
                writer.write_channels(solved.fields, constant=solved.constant, scalars=solved.scalars)
                bar.update(len(idx))
            writer.close()
        except BlowUpError:
            writer.abort()
            writer.partial.unlink(missing_ok=True)  # nothing half-written is left looking resumable or valid
            raise
        except BaseException:
            writer.abort()  # the .partial file stays: rerun the same command to resume
            raise
    bar.close()
    train_a, train_b = ranges["train"]
    expected = [
        root / "data" / "train" / f"{preset.name}_{a:06d}-{b:06d}.hdf5"
        for a, b in (shard_range(train_a, train_b, k, n_shards) for k in range(n_shards))
        if b > a
    ]
    if all(p.exists() for p in expected) and not (state == "complete" and (root / "stats.yaml").exists()):
        write_stats(root)
    return written


def trajectory_bytes(preset: AbstractPreset, resolution: int, itemsize: int = STORED_BYTES) -> int:
    """Bytes of one trajectory of ``preset`` at ``resolution`` (every snapshot of every channel, and the
    time-invariant channels), from the preset's schema. The schema is built on a small grid and scaled, so a huge
    resolution costs nothing to estimate (its coordinate arrays alone could exhaust memory)."""
    schema = preset.schema(8)
    points = int(resolution) ** len(schema.coords)
    values = len(np.asarray(schema.time)) * len(schema.channel_names(True)) + len(schema.channel_names(False))
    return itemsize * values * points


def _memory_bytes() -> int:
    """This machine's physical memory (a process cannot hold more, whatever else runs)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _free_disk_bytes(out: Path) -> int:
    """Free bytes on the file system that will hold ``out`` (its nearest existing parent)."""
    path = out.absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.3g} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1000
    raise AssertionError  # unreachable: the loop returns at TB


def check_options(
    preset: AbstractPreset,
    out: str | os.PathLike,
    n_trajectories: int | None,
    resolution: int | None,
    batch_size: int | None,
    seed: int,
    device: str,
    allow_underresolved: bool = False,
) -> tuple[int, int, int]:
    """Check ``pdeforge generate``'s numeric options and device before anything is written; returns the resolved
    (trajectory count, resolution, batch size). A bad one is a ValueError ``--option VALUE: expected ...``.

    A resolution below the preset's declared minimum (``preset.resolves``) is refused, naming the resolution that
    resolves it, unless ``allow_underresolved``; one below `MIN_RESOLUTION` always is. Sizes are refused when they
    cannot work: a batch whose trajectories (float64 while solved, every snapshot kept) exceed this machine's memory,
    or files larger than the free disk space under ``out``.
    """
    n = preset.n_trajectories if n_trajectories is None else n_trajectories
    res = preset.resolution if resolution is None else resolution
    bs = preset.batch_size if batch_size is None else batch_size
    check = preset.resolves
    if n < 3:
        raise ValueError(f"--n-trajectories {n}: expected an integer >= 3 (one trajectory per split at least)")
    if res < MIN_RESOLUTION:
        raise ValueError(
            f"--resolution {res}: expected an integer >= {MIN_RESOLUTION} (grid points per axis of {preset.name})"
        )
    if not check.resolved and not allow_underresolved:
        raise ValueError(
            f"{preset.name}: no grid measured so far resolves its dynamics ({check.describe()} does not hold up to "
            "the grids in docs/guides/compressible.md); --allow-underresolved writes it anyway, marked under-resolved "
            "in its files"
        )
    if res < check.min_resolution and not allow_underresolved:
        raise ValueError(
            f"--resolution {res}: {preset.name} resolves its dynamics from {check.min_resolution} points per axis "
            f"(measured there: {check.describe()}); use --resolution >= {check.min_resolution}, or "
            "--allow-underresolved to write under-resolved data anyway"
        )
    if bs < 1:
        raise ValueError(f"--batch-size {bs}: expected an integer >= 1 (trajectories solved together)")
    if seed < 0:
        raise ValueError(f"--seed {seed}: expected an integer >= 0")
    problem = device_problem(device)
    if problem:
        raise ValueError(f"--device {device}: {problem}")
    memory, one = _memory_bytes(), trajectory_bytes(preset, res, SOLVED_BYTES)
    if one > memory:
        raise ValueError(
            f"--resolution {res}: expected a grid whose trajectories fit in memory: one {preset.name} "
            f"trajectory needs ~{_size(one)} while solved, this machine has {_size(memory)}"
        )
    batch = min(bs, n)  # a batch never holds more trajectories than there are
    if batch * one > memory:
        raise ValueError(
            f"--batch-size {bs}: expected a batch that fits in memory: {batch} trajectories at "
            f"resolution {res} need ~{_size(batch * one)} while solved, this machine has "
            f"{_size(memory)}; try --batch-size {max(1, memory // one)}"
        )
    data = Path(out) / "data"  # what a resumed root holds already needs no more room
    held = sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) if data.is_dir() else 0
    total, free = n * trajectory_bytes(preset, res), _free_disk_bytes(Path(out))
    if total - held > free:
        raise ValueError(
            f"--n-trajectories {n} --resolution {res}: expected files that fit on the disk: they need "
            f"~{_size(total)}, {Path(out).absolute()} has {_size(free)} free"
        )
    return n, res, bs


def with_time_step(preset: AbstractPreset, dt: float | None = None, substeps: int | None = None) -> AbstractPreset:
    """``preset`` with ``substeps`` solver steps per stored snapshot (``dt = snapshot interval / substeps``; the
    snapshot interval, count and warm-up stay), or with the time step ``dt``, which must divide the snapshot interval
    into whole steps (it is then the same as ``--substeps``). At most one of them; neither: ``preset`` itself.

    Only presets with a fixed time step take one (the spectral presets); a bad value or a preset that takes none is
    a ValueError naming the option. The record of a root holds the resulting ``dt`` and ``save_every``.
    """
    if dt is None and substeps is None:
        return preset
    given = " ".join(f"{flag} {v:g}" for flag, v in (("--dt", dt), ("--substeps", substeps)) if v is not None)
    if dt is not None and substeps is not None:
        raise ValueError(f"{given}: expected one of them (--substeps K sets dt = snapshot interval / K)")
    if not isinstance(preset, SpectralPreset):
        steady = preset.describe(preset.resolution)["n_snapshots"] == 1
        cfl = preset.provenance(preset.resolution, 0)["dt_internal"]
        why = "it is steady (one solve, no time steps)" if steady else f"its solver chooses each step by {cfl}"
        raise ValueError(f"{given}: {preset.name} takes no --dt or --substeps: {why}")
    interval = preset.dt_save
    if substeps is not None:
        if substeps < 1:
            raise ValueError(f"{given}: expected an integer >= 1 (solver steps per stored snapshot)")
        k = int(substeps)
    else:
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"{given}: expected a time step > 0")
        steps = interval / dt
        k = max(1, round(steps))
        if abs(steps - k) > 1e-9 * steps:
            k = math.ceil(steps)
            raise ValueError(
                f"{given}: expected a time step that divides {preset.name}'s snapshot interval {interval:g} into whole "
                f"steps ({interval:g} / {dt:g} = {steps:.4g}); e.g. --substeps {k} (dt {interval / k:g})"
            )
    if k == preset.save_every:
        return preset
    new_dt = interval / k
    warm = preset.warmup / new_dt
    if abs(warm - round(warm)) > 1e-9 * max(warm, 1.0):
        raise ValueError(
            f"{given}: {preset.name}'s warm-up {preset.warmup:g} is not a whole number of steps of dt {new_dt:g}; "
            "choose --substeps so that it is"
        )
    return dataclasses.replace(preset, dt=new_dt, save_every=k)


def _resume_command(args: argparse.Namespace) -> str:
    """The command that continues an interrupted ``pdeforge generate``: the same parameters, without
    ``--overwrite`` (which would delete what the interrupted run kept)."""
    parts = ["pdeforge", "generate", args.preset, "--out", args.out]
    for flag, value, default in (
        ("--n-trajectories", args.n_trajectories, None),
        ("--resolution", args.resolution, None),
        ("--seed", args.seed, 0),
        ("--device", args.device, "cpu"),
        ("--batch-size", args.batch_size, None),
        ("--shard", args.shard, None),
        ("--substeps", args.substeps, None),
        ("--dt", args.dt, None),
    ):
        if value != default:
            parts += [flag, str(value)]
    flags = [
        f for f, on in (("--allow-underresolved", args.allow_underresolved), ("--no-progress", args.no_progress)) if on
    ]
    return shlex.join(parts + flags)


def _interrupted(args: argparse.Namespace) -> str:
    """The one line that ends a generate stopped by Ctrl-C: the files kept and the command that resumes."""
    import h5py

    from ..datasets._writer import N_WRITTEN_ATTR

    data = Path(args.out) / "data"
    done = sorted(data.glob("*/*.hdf5")) if data.is_dir() else []
    partial = sorted(data.glob("*/*.hdf5.partial")) if data.is_dir() else []
    kept = f"{len(done)} finished file{'s' * (len(done) != 1)}"
    for path in partial:
        try:
            with h5py.File(path, "r") as f:
                k = int(f.attrs[N_WRITTEN_ATTR])
            written = f" ({k} trajector{'y' if k == 1 else 'ies'} written)"
        except Exception:  # the file may be mid-write: its name is what matters
            written = ""
        kept += f" and the partial {path.relative_to(args.out)}{written}"
    return f"interrupted: {args.out} keeps {kept}; resume with the same command: {_resume_command(args)}"


def describe_presets() -> str:
    lines = []
    for name, p in PRESETS.items():
        d = p.describe(p.resolution)
        params = ", ".join(f"{k}={v}" for k, v in d["parameters"].items())
        vary = "".join(f"; {k} per trajectory in [{lo:g}, {hi:g}]" for k, (lo, hi) in d.get("varying", {}).items())
        lines.append(
            f"{name}\n    {p.summary}\n    PDE {d['pde']}: {d['formula']}\n    parameters {params}{vary}\n"
            f"    grid {d['grid']}; {d['scheme']}"
            + (f" dt {d['dt_internal']:g}" if d["dt_internal"] == d["dt_internal"] and d["dt_internal"] > 0 else "")
            + (
                f"; snapshots every {d['dt_snapshot']:g} x {d['n_snapshots']}"
                if d["n_snapshots"] > 1
                else "; steady (one snapshot)"
            )
            + (f" after {d['warmup']:g} of warm-up" if d.get("warmup") else "")
            + (
                f"; {d['n_trajectories']} trajectories "
                f"({'/'.join(str(round(100 * f)) for f in p.splits)} train/valid/test)"
            )
            + (
                f"\n    resolves from {p.resolves.min_resolution} points per axis ({p.resolves.describe()})"
                if p.resolves.resolved
                else f"\n    resolved at no grid measured ({p.resolves.describe()}): only with --allow-underresolved"
            )
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.list or not args.preset:
        print(describe_presets())
        return 0
    if not args.out:
        print("error: --out ROOT is required (the dataset root to write)", file=sys.stderr)
        return 2
    if args.preset not in PRESETS:
        print(
            f"error: unknown preset {args.preset!r}; available: {', '.join(PRESETS)} (pdeforge generate --list)",
            file=sys.stderr,
        )
        return 1
    kept: list[Path] = []
    try:
        shard = parse_shard(args.shard)
        preset = with_time_step(PRESETS[args.preset], dt=args.dt, substeps=args.substeps)
        n, res, bs = check_options(
            preset,
            args.out,
            args.n_trajectories,
            args.resolution,
            args.batch_size,
            args.seed,
            args.device,
            allow_underresolved=args.allow_underresolved,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = n * trajectory_bytes(preset, res)

    def on_start(state: str, files: list[Path]) -> None:
        kept.extend(files)
        if state == "complete":
            print(f"already complete: {args.out} holds every file of these parameters ({len(files)} files)")
            return
        if state == "resuming":
            print(f"resuming {args.out}: same parameters as its {RECORD}; {len(files)} files already complete")
        print(
            f"estimated output: {_size(size)} ({n} trajectories x {_size(size / n)} at resolution {res})"
            + (f"; this shard writes about 1/{shard[1]} of it" if shard[1] > 1 else "")
            + (
                f"; under-resolved (below {preset.name}'s minimum {preset.resolves.min_resolution}), as its files say"
                if res < preset.resolves.min_resolution
                else f"; under-resolved ({preset.name} is resolved at no grid measured), as its files say"
                if not preset.resolves.resolved
                else ""
            )
        )

    device = str(resolve_device(args.device))
    try:
        files = generate(
            preset,
            args.out,
            n_trajectories=n,
            resolution=res,
            seed=args.seed,
            device=device,
            batch_size=bs,
            shard=shard,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            on_start=on_start,
        )
    except (BlowUpError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # finished files and the .partial one stay; the same command resumes
        if os.environ.get("PDEFORGE_TRACEBACK"):
            raise
        print(_interrupted(args), file=sys.stderr)
        return 128 + 2  # as a shell reports a process ended by SIGINT
    for f in files:
        print(f"kept {f} (already complete)" if f in kept else f"wrote {f}")
    if (Path(args.out) / "stats.yaml").exists():
        print(f"statistics {Path(args.out) / 'stats.yaml'} (train split)")
    return 0


def with_overrides(preset: AbstractPreset, **changes: Any) -> AbstractPreset:
    """A copy of a preset with some fields changed (e.g. ``dt`` for a convergence study or a blow-up test)."""
    return dataclasses.replace(preset, **changes)
