"""``pdeforge generate``: write a dataset root from a preset, resumably, sharded, with a blow-up guard.

    pdeforge generate --list
    pdeforge generate burgers_1d --out data/burgers_1d [--n-trajectories N] [--resolution R] [--seed S]
                                 [--device cpu|cuda] [--batch-size B] [--shard i/n]
    torchrun --nproc_per_node 4 -m pdeforge.cli generate ks_1d --out data/ks     # shards by rank

Layout written: ``ROOT/data/{train,valid,test}/<preset>_<first>-<end>.hdf5`` (global trajectory ranges, so shards
are disjoint files the dataset layer reads as one dataset) and ``ROOT/stats.yaml`` fitted on train once every train
file exists. Trajectory ``j`` is seeded by ``(seed, j)``: same seed, same numbers, whatever the sharding. Rerunning
the same command after a crash skips finished files and resumes the interrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from ..datasets import TrajectoryWriter, write_stats
from ._presets import PRESETS, AbstractPreset, Solved

__all__ = ["BlowUpError", "generate", "split_ranges", "shard_range", "PRESETS", "main"]

SPLITS = ("train", "valid", "test")


class BlowUpError(RuntimeError):
    """A solve produced non-finite values; the message names preset, parameters, trajectory and step."""


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


def _check_finite(preset: AbstractPreset, solved: Solved, indices: Sequence[int], dt_snapshot: float, save_every: int) -> None:
    bad = ~torch.isfinite(solved.fields.flatten(2)).all(-1)  # (B, T)
    if not bad.any():
        return
    b = int(bad.any(1).nonzero()[0])
    k = int(bad[b].nonzero()[0])
    params = solved.parameters[b] if solved.parameters else {}
    dt = getattr(preset, "dt", None)
    hint = f"try a smaller internal dt (now {dt:g}; e.g. dt={dt / 4:g})" if dt else "try a smaller time step"
    raise BlowUpError(
        f"preset {preset.name!r}: trajectory {indices[b]} (parameters {params}) blew up: non-finite values at snapshot "
        f"{k} (t = {k * dt_snapshot:g}, within solver steps {(k - 1) * save_every + 1}..{k * save_every}); {hint}"
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
) -> list[Path]:
    """Write this shard's files of ``preset`` under ``out``; returns the files. See the module docstring."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise KeyError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)} (pdeforge generate --list)")
        preset = PRESETS[preset]
    n = n_trajectories or preset.n_trajectories
    res = resolution or preset.resolution
    bs = batch_size or preset.batch_size
    root = Path(out)
    schema = preset.schema(res)
    prov = preset.provenance(res, seed)
    desc = preset.describe(res)
    i, n_shards = shard
    ranges = split_ranges(n, preset.splits)
    jobs = []
    for split in SPLITS:
        a, b = shard_range(*ranges[split], i, n_shards)
        if b > a:
            jobs.append((split, a, b, root / "data" / split / f"{preset.name}_{a:06d}-{b:06d}.hdf5"))
    total = sum(b - a for _, a, b, path in jobs if not path.exists())
    bar = tqdm(total=total, unit="traj", desc=f"{preset.name} shard {i}/{n_shards}", disable=not progress)
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
                solved = preset.solve(idx, seed, res, device)
                _check_finite(preset, solved, idx, desc["dt_snapshot"], getattr(preset, "save_every", 1))
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
    expected = [root / "data" / "train" / f"{preset.name}_{a:06d}-{b:06d}.hdf5"
                for a, b in (shard_range(train_a, train_b, k, n_shards) for k in range(n_shards)) if b > a]
    if all(p.exists() for p in expected):
        write_stats(root)
    return written


def describe_presets() -> str:
    lines = []
    for name, p in PRESETS.items():
        d = p.describe(p.resolution)
        params = ", ".join(f"{k}={v}" for k, v in d["parameters"].items())
        vary = "".join(f"; {k} per trajectory in [{lo:g}, {hi:g}]" for k, (lo, hi) in d.get("varying", {}).items())
        lines.append(f"{name}\n    {p.summary}\n    PDE {d['pde']}: {d['formula']}\n    parameters {params}{vary}\n"
                     f"    grid {d['grid']}; {d['scheme']}" + (f" dt {d['dt_internal']:g}" if d["dt_internal"] == d["dt_internal"] and d["dt_internal"] > 0 else "")
                     + (f"; snapshots every {d['dt_snapshot']:g} x {d['n_snapshots']}" if d["n_snapshots"] > 1 else "; steady (one snapshot)")
                     + (f" after {d['warmup']:g} of warm-up" if d.get("warmup") else "")
                     + f"; {d['n_trajectories']} trajectories ({'/'.join(str(round(100 * f)) for f in p.splits)} train/valid/test)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.list or not args.preset:
        print(describe_presets())
        return 0
    if not args.out:
        print("error: --out ROOT is required (the dataset root to write)", file=sys.stderr)
        return 2
    try:
        shard = parse_shard(args.shard)
        files = generate(args.preset, args.out, n_trajectories=args.n_trajectories, resolution=args.resolution,
                         seed=args.seed, device=args.device, batch_size=args.batch_size, shard=shard,
                         progress=not args.no_progress)
    except (BlowUpError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1
    for f in files:
        print(f"wrote {f}")
    if (Path(args.out) / "stats.yaml").exists():
        print(f"statistics {Path(args.out) / 'stats.yaml'} (train split)")
    return 0


def with_overrides(preset: AbstractPreset, **changes: Any) -> AbstractPreset:
    """A copy of a preset with some fields changed (e.g. ``dt`` for a convergence study or a blow-up test)."""
    return dataclasses.replace(preset, **changes)
