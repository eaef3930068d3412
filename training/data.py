"""The ``data`` section made concrete: a dataset root, given or generated once from a preset into the cache."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "dataset_root", "root_problem"]

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
    """Why ``root`` is not a dataset root (``"expected ..."``), or None."""
    path = Path(root)
    if not path.exists():
        return "no such folder (expected a dataset root: ROOT/data/{train,valid,test})"
    if not (path / "data" / "train").is_dir():
        what = "a file" if path.is_file() else "a folder without data/train"
        return (
            f"{what}, not a dataset root (expected ROOT/data/{{train,valid,test}}/*.hdf5 and ROOT/stats.yaml, as "
            "pdeforge generate and pdeforge convert write)"
        )
    return None


def _cache_name(preset: str, options: dict[str, Any]) -> str:
    n, r, s = options.get("n_trajectories"), options.get("resolution"), options.get("seed", 0)
    name = f"{preset}-n{n}-r{r}-s{s}"
    rest = {k: v for k, v in options.items() if k not in ("n_trajectories", "resolution", "seed", "batch_size")}
    if rest:  # preset fields changed: their values name the data too
        name += "-" + hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]
    return name


def dataset_root(data: Any, *, where: str, progress: bool = True, env: Any = None) -> Path:
    """The dataset root of a ``data`` section: ``data.root`` (checked), or ``data.preset`` generated once into
    ``cache_dir()/datasets/<preset>-n<N>-r<R>-s<seed>[-<hash of other fields>]`` (printed). Under DDP (``env``, an
    :class:`~pdeforge.training.loop.Environment`) the main process generates while the others wait."""
    is_main = env is None or env.is_main
    barrier = env.barrier if env is not None else None
    if data.root:
        problem = root_problem(data.root)
        if problem:
            raise ValueError(f"{where}: data.root {data.root}: {problem}")
        from ..datasets import FormatError, check_disjoint_splits

        try:  # a trajectory in two splits would train on the test data: refused before any step
            check_disjoint_splits(data.root)
        except FormatError as e:
            raise ValueError(f"{where}: data.root {data.root}: {e}") from None
        return Path(data.root).resolve()
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
    root = cache_dir() / "datasets" / _cache_name(data.preset, options)
    if not is_main and barrier is not None:
        barrier()
    if is_main and not (root / "stats.yaml").exists():
        preset = with_overrides(base, **{k: v for k, v in options.items() if k in fields})
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
    if is_main:
        print(f"data: {root}", file=sys.stderr)  # stdout stays for results (pdeforge evaluate prints JSON)
    return root
