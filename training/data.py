"""The ``data`` section made concrete: a dataset root, given or generated once from a preset into the cache."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "check_dataset_root", "dataset_root", "root_problem"]

SPLITS = ("train", "valid", "test")

_GENERATE_KEYS = (
    "n_trajectories",
    "resolution",
    "seed",
    "batch_size",
)  # generate()'s own options; the rest are preset fields


def cache_dir() -> Path:
    """``$PDEFORGE_CACHE`` or ``~/.cache/pdeforge``."""
    return Path(os.environ.get("PDEFORGE_CACHE", Path.home() / ".cache" / "pdeforge"))


def root_problem(root: str) -> str | None:
    """Why ``root`` is not a dataset root (``"expected ..."``), or None (a URL: `check_dataset_root` says)."""
    from ..datasets._remote import is_url, local_path

    if is_url(root):
        return None
    path = Path(local_path(root))
    if not path.exists():
        return "no such folder (expected a dataset root: ROOT/data/{train,valid,test})"
    if not (path / "data" / "train").is_dir():
        what = "a file" if path.is_file() else "a folder without data/train"
        return (
            f"{what}, not a dataset root (expected ROOT/data/{{train,valid,test}}/*.hdf5 and ROOT/stats.yaml, as "
            "pdeforge generate and pdeforge convert write)"
        )
    return None


def check_dataset_root(
    root: str | os.PathLike, *, where: str, splits: tuple[str, ...] = SPLITS, storage_options: dict | None = None
) -> None:
    """The check of a dataset root that every command reading one runs before any work (``pdeforge inspect --fast``'s
    check): each of ``splits`` holds files, every file of every split has the format's layout, attributes, shapes
    and dtypes, all files agree (name, grid, fields, time axis), and no trajectory is in two splits. A ValueError
    ``"{where}: ..."`` names the first file, split or key at fault. Values are not scanned here: a NaN/Inf is named
    as the data are read (`~pdeforge.datasets.TrajectoryDataset`). A URL ``root`` is read with ``storage_options``
    (default: those set for it, `pdeforge.datasets._remote.set_storage_options`)."""
    from ..datasets import FormatError, validate
    from ..datasets._remote import is_url, list_remote, local_path

    if is_url(root):  # a dataset root at a URL (docs/guides/data.md): listed, then checked through the block cache
        try:
            missing = [s for s in splits if not list_remote(root, s, storage_options)]
            if missing:
                raise ValueError(f"no {' or '.join(missing)} split ({root}/data/{missing[0]}/*.hdf5 not found)")
            validate(root, check_values=False, storage_options=storage_options)
        except (FormatError, OSError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None
        return
    path = Path(local_path(root))

    def has_files(split: str) -> bool:
        folder = path / "data" / split
        return any(folder.glob("*.hdf5")) or any(folder.glob("*.h5"))

    missing = [s for s in splits if not has_files(s)]
    if missing:
        have = [s for s in SPLITS if has_files(s)]
        raise ValueError(
            f"{where}: no {' or '.join(missing)} split ({path / 'data' / missing[0]}/*.hdf5 not found; the root has "
            f"{', '.join(have) or 'none'}): expected ROOT/data/{{{','.join(splits)}}}/*.hdf5, as pdeforge generate "
            "and pdeforge convert (without --no-split) write"
        )
    try:
        validate(path, check_values=False)
    except (FormatError, FileNotFoundError) as e:
        raise ValueError(f"{where}: {e}") from None


def _cache_name(preset: str, options: dict[str, Any], record: dict[str, Any]) -> str:
    """``<preset>-n<N>-r<R>-s<seed>-<hash>``: the hash is of the generation record without the version (every field
    of the preset as it is now, defaults included), so data cached before a preset's numerics changed are never
    reused for the new ones."""
    n, r, s = options.get("n_trajectories"), options.get("resolution"), options.get("seed", 0)
    what = {k: v for k, v in record.items() if k != "pdeforge_version"}
    return f"{preset}-n{n}-r{r}-s{s}-" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]


def dataset_root(data: Any, *, where: str, progress: bool = True, env: Any = None) -> Path | str:
    """The dataset root of a ``data`` section: ``data.root`` (checked; a URL stays a URL, read through the block cache
    of `pdeforge.datasets._remote` with ``data.storage_options`` for every open under it), or ``data.preset``
    generated once into ``cache_dir()/datasets/<preset>-n<N>-r<R>-s<seed>[-<hash of other fields>]`` (printed).
    Under DDP (``env``, an :class:`~pdeforge.training.loop.Environment`) the main process generates while the others
    wait."""
    is_main = env is None or env.is_main
    barrier = env.barrier if env is not None else None
    storage_options = getattr(data, "storage_options", None) or {}
    if storage_options:
        from ..datasets._remote import is_url, set_storage_options

        if not data.root or not is_url(data.root):
            raise ValueError(
                f"{where}: data.storage_options: for a URL data.root (s3://, gs://, hf://, https://...), got root "
                f"{data.root or '(empty: a preset)'!r}; expected storage_options empty for it"
            )
        # every open under the root in this process reads with them (the check below, the family's stats and
        # datasets); each dataset holds its own copy, which travels with it into DataLoader workers
        set_storage_options(data.root, dict(storage_options))
    if data.root:
        problem = root_problem(data.root)
        if problem:
            raise ValueError(f"{where}: data.root {data.root}: {problem}")
        # every split checked before any step (a broken test file found at the end would cost the whole run), and
        # no trajectory in two splits (training on the test data)
        check_dataset_root(data.root, where=f"{where}: data.root {data.root}", storage_options=storage_options or None)
        from ..datasets._remote import is_url, local_path

        return data.root if is_url(data.root) else Path(local_path(data.root)).resolve()
    if not data.preset:
        raise ValueError(f"{where}: data: expected root (a dataset root) or preset (a `pdeforge generate` preset)")
    from ..solvers.generate import PRESETS, generate, with_overrides

    if data.preset not in PRESETS:
        raise ValueError(f"{where}: data.preset {data.preset!r}: expected one of {', '.join(PRESETS)}")
    base = PRESETS[data.preset]
    options = dict(data.preset_options)
    fields = {f for f in getattr(base, "__dataclass_fields__", {})}
    unknown = sorted(set(options) - set(_GENERATE_KEYS) - fields)
    if unknown:
        raise ValueError(
            f"{where}: data.preset_options: unknown option(s) {unknown} for preset {data.preset}; "
            f"expected {list(_GENERATE_KEYS)} or the preset's fields {sorted(fields)}"
        )
    options.setdefault("n_trajectories", base.n_trajectories)
    options.setdefault("resolution", base.resolution)
    options.setdefault("seed", 0)
    from ..solvers.generate import generation_record

    preset = with_overrides(base, **{k: v for k, v in options.items() if k in fields})
    record = generation_record(preset, options["n_trajectories"], options["resolution"], options["seed"])
    root = cache_dir() / "datasets" / _cache_name(data.preset, options, record)
    if record["underresolved"] and is_main:
        print(
            f"warning: data.preset {data.preset} at resolution {options['resolution']} is below the "
            f"{preset.resolves.min_resolution} points per axis its dynamics are resolved from (pdeforge generate "
            "--list); the files are marked under-resolved",
            file=sys.stderr,
        )
    if not is_main and barrier is not None:
        barrier()
    if is_main and not (root / "stats.yaml").exists():
        print(
            f"generating {data.preset} ({options['n_trajectories']} trajectories) into {root} (once; cached)",
            file=sys.stderr,
        )
        generate(
            preset,
            root,
            n_trajectories=options["n_trajectories"],
            resolution=options["resolution"],
            seed=options["seed"],
            batch_size=options.get("batch_size"),
            progress=progress,
        )
    if is_main and barrier is not None:
        barrier()
    check_dataset_root(root, where=f"{where}: data.preset {data.preset} ({root})")
    if is_main:
        print(f"data: {root}", file=sys.stderr)  # stdout stays for results (pdeforge evaluate prints JSON)
    return root
