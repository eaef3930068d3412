"""Import PDEArena's 2D data (Gupta & Brandstetter 2022, "Towards multi-spatiotemporal-scale generalized PDE
modeling"; code pdearena/pdearena, data ``huggingface.co/datasets/pdearena/...``) into The Well's layout.

Two collections, their layouts as PDEArena's generators write them and its datapipes read them:

1. **Navier-Stokes 2D smoke buoyancy** (``pdedatagen/navier_stokes.py``; ``NavierStokes2D-smoke`` and the conditioned
   ``NavierStokes-2D-conditoned``): one HDF5 file per (mode, seed, buoyancy), named
   ``NavierStokes2D_<mode>_<seed>_<buoyancy>.h5``, with one group ``train`` / ``valid`` / ``test`` holding
   ``u (N, T, X, Y)`` (the smoke, a scalar field), ``vx``, ``vy (N, T, X, Y)`` (the velocity, face values resampled to
   the cells), ``t (N, T)``, ``x (N, X)``, ``y (N, Y)``, ``dt``, ``dx``, ``dy``, ``buo_y (N,)``. They become the
   fields ``u`` and ``velocity`` (components ``vx, vy``) on axes ``x, y`` with the file's coordinates (PDEArena stores
   ``linspace(0, L, n)``) and times (checked equal across trajectories and evenly spaced); ``buo_y`` becomes the
   parameter ``buo_y`` when it is one value in the file (as PhiFlow's generator writes it), else a per-trajectory
   scalar. Boundaries: ``wall`` (PhiFlow's closed box: zero velocity at the walls).
2. **Shallow water 2D** (``pdedatagen/shallowwater``, SpeedyWeather.jl, ``pdearena/ShallowWater-2D``): one netCDF4 file
   per trajectory, ``<split>/seed=<s>/run<k>/output.nc``, variables ``pres (time, lat, lon)``, ``u``, ``v``, ``vor``
   ``(time[, lev], lat, lon)`` and coordinates ``time``, ``lat``, ``lon``. They become the scalar fields ``pres, u, v
   [, vor]`` (``u`` eastward, ``v`` northward, as PDEArena reads them) on axes ``lat, lon`` with the file's
   coordinates (degrees) and times (the file's unit, e.g. hours). Boundaries: ``open`` in latitude (the poles),
   ``periodic`` in longitude. PDEArena's zarr stores (``convertnc2zarr.py``) need the zarr package, which pdeforge
   does not use: convert the ``output.nc`` files instead.

Splits are PDEArena's own: the group name (Navier-Stokes) or the ``train`` / ``valid`` / ``test`` folder a file sits in
(shallow water); a file outside such a folder goes to ``train``. Values are copied exactly (float32 written, as
PDEArena's datapipes read them; its normalisation statistics are not applied).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from ._format import FormatError
from ._pdebench import _refuse_other_datasets, describe, regular_times
from ._stats import write_stats
from ._writer import FieldSpec, Schema, TrajectoryWriter

__all__ = ["convert_pdearena"]

BATCH_BYTES = 16 << 20
NS_KEYS = ("u", "vx", "vy", "t", "x", "y")
SW_FIELDS = ("pres", "u", "v", "vor")
EXPECTED = (
    "expected PDEArena's Navier-Stokes 2D file (a group 'train'/'valid'/'test' with 'u', 'vx', 'vy' (N, T, X, Y), "
    "'t' (N, T), 'x' (N, X), 'y' (N, Y)[, 'buo_y' (N,)]) or a shallow-water output.nc ('pres' (time, lat, lon), "
    "'u', 'v'[, 'vor'] (time[, lev], lat, lon), 'time', 'lat', 'lon')"
)
MODE_SPLIT = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}


@dataclass
class Source:
    """One group of trajectories to write: where it goes (split) and how to read blocks of it."""

    split: str
    name: str  # output file stem
    n_trajectories: int
    schema_parts: dict  # coords, time, fields, parameters, scalars, boundary_conditions of the Schema
    read: Callable[[int, int], tuple[dict, dict]]  # (start, stop) -> (fields, scalars) of those trajectories
    trajectory_bytes: int


# -- Navier-Stokes 2D ---------------------------------------------------------------------------------------------
def _ns_sources(f: h5py.File, path: Path) -> list[Source]:
    groups = [k for k in f.keys() if k in MODE_SPLIT and isinstance(f[k], h5py.Group)]
    if not groups:
        raise FormatError(f"{path}: no group 'train', 'valid' or 'test'; found {describe(f)}; {EXPECTED}")
    sources = []
    for mode in groups:
        g = f[mode]
        where = f"{path}:{mode}"
        missing = [k for k in NS_KEYS if not isinstance(g.get(k), h5py.Dataset)]
        if missing:
            raise FormatError(f"{where}: missing {missing}; found {describe(g)}; {EXPECTED}")
        shape = g["u"].shape
        if len(shape) != 4 or g["vx"].shape != shape or g["vy"].shape != shape:
            raise FormatError(
                f"{where}: 'u', 'vx', 'vy' should be (N, T, X, Y) alike, found {shape}, {g['vx'].shape}, "
                f"{g['vy'].shape}"
            )
        n, n_t, n_x, n_y = shape
        expect = {"t": (n, n_t), "x": (n, n_x), "y": (n, n_y)}
        for k, want in expect.items():
            if g[k].shape != want:
                raise FormatError(f"{where}: '{k}' has shape {g[k].shape}, expected {want} (one row per trajectory)")
        rows = {k: np.asarray(g[k][()], dtype=np.float64) for k in ("t", "x", "y")}
        for k, a in rows.items():
            if not np.allclose(a, a[:1], rtol=1e-6, atol=1e-9):
                raise FormatError(f"{where}: '{k}' differs between trajectories; one grid per file is expected")
        time = regular_times(rows["t"][0], n_t, str(path), f"{mode}/t")
        parameters, scalars = {}, ()
        buo = np.asarray(g["buo_y"][()], dtype=np.float64).reshape(-1) if "buo_y" in g else None
        if buo is not None and buo.shape != (n,):
            raise FormatError(f"{where}: 'buo_y' has shape {buo.shape}, expected ({n},)")
        if buo is not None and np.all(buo == buo[0]):
            parameters = {"buo_y": float(buo[0])}
        elif buo is not None:
            scalars = ("buo_y",)

        def read(start, stop, g=g, scalars=scalars):
            velocity = np.stack([g["vx"][start:stop], g["vy"][start:stop]], axis=-1)
            fields = {"u": g["u"][start:stop], "velocity": velocity}
            return fields, ({"buo_y": g["buo_y"][start:stop]} if scalars else {})

        sources.append(
            Source(
                split=MODE_SPLIT[mode],
                name=path.stem,
                n_trajectories=n,
                schema_parts=dict(
                    coords={"x": rows["x"][0], "y": rows["y"][0]},
                    time=time,
                    fields=(FieldSpec("u"), FieldSpec("velocity", order=1)),
                    parameters=parameters,
                    scalars=scalars,
                    boundary_conditions="wall",
                ),
                read=read,
                trajectory_bytes=2 * 3 * 8 * n_t * n_x * n_y,
            )
        )
    return sources


# -- shallow water ------------------------------------------------------------------------------------------------
def _values(ds: h5py.Dataset) -> np.ndarray:
    """All of ``ds`` with netCDF's ``scale_factor`` / ``add_offset`` packing undone (CF conventions)."""
    a = ds[()]
    scale, offset = ds.attrs.get("scale_factor"), ds.attrs.get("add_offset")
    if scale is not None or offset is not None:
        a = a.astype(np.float64) * (1.0 if scale is None else float(np.asarray(scale).reshape(-1)[0]))
        a = a + (0.0 if offset is None else float(np.asarray(offset).reshape(-1)[0]))
    return a


def _sw_source(f: h5py.File, path: Path, split: str, name: str) -> Source:
    missing = [k for k in ("pres", "u", "v", "time", "lat", "lon") if not isinstance(f.get(k), h5py.Dataset)]
    if missing:
        raise FormatError(f"{path}: missing {missing}; found {describe(f)}; {EXPECTED}")
    lat, lon = (np.asarray(f[k][()], dtype=np.float64).reshape(-1) for k in ("lat", "lon"))
    n_t = f["time"].shape[0] if f["time"].ndim == 1 else -1
    want = (n_t, lat.size, lon.size)
    names = [k for k in SW_FIELDS if isinstance(f.get(k), h5py.Dataset)]
    for k in names:
        s = f[k].shape
        if not (s == want or (len(s) == 4 and s[1] == 1 and (s[0],) + s[2:] == want)):
            raise FormatError(
                f"{path}: '{k}' has shape {s}, expected (time, lat, lon) = {want} or (time, 1, lat, lon); {EXPECTED}"
            )
    time = regular_times(f["time"][()], n_t, str(path), "time")

    def read(start, stop):
        assert (start, stop) == (0, 1), "one trajectory per shallow-water file"
        return {k: _values(f[k]).reshape(want)[None] for k in names}, {}

    return Source(
        split=split,
        name=name,
        n_trajectories=1,
        schema_parts=dict(
            coords={"lat": lat, "lon": lon},
            time=time,
            fields=tuple(FieldSpec(k) for k in names),
            parameters={},
            scalars=(),
            boundary_conditions=("open", "periodic"),
        ),
        read=read,
        trajectory_bytes=2 * 8 * len(names) * int(np.prod(want)),
    )


def _shallow_water_files(src: Path) -> list[tuple[Path, str, str]]:
    """``(file, split, output stem)`` for each ``output.nc`` under ``src`` (a split folder, or the folder of splits)."""
    out = []
    for p in sorted(src.rglob("*.nc")):
        rel = p.relative_to(src).parts
        split = next((MODE_SPLIT[d] for d in (src.name,) + rel[:-1] if d in MODE_SPLIT), "train")
        stem = "_".join(d for d in rel[:-1] if d not in MODE_SPLIT) or p.stem
        out.append((p, split, stem.replace("=", "")))
    return out


# -- the importer --------------------------------------------------------------------------------------------------
def convert_pdearena(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_trajectories: int | None = None,
    progress: bool = True,
    dataset_name: str | None = None,
    boundary_conditions: str | Sequence[str] | None = None,
    batch_bytes: int = BATCH_BYTES,
    overwrite: bool = False,
) -> list[Path]:
    """Convert PDEArena files (a file, or a folder of them) into one dataset root in The Well's layout.

    Arguments:
        src: a Navier-Stokes 2D ``.h5`` file, a shallow-water ``output.nc``, or a folder: every ``*.h5`` below it
            (Navier-Stokes, e.g. a clone of ``pdearena/NavierStokes-2D``), else every ``*.nc`` below it (shallow
            water: ``train/seed=*/run*/output.nc``).
        out: the dataset root: ``out/data/{train,valid,test}/<name>.hdf5`` and ``out/stats.yaml`` (fitted on train).
        max_trajectories: at most N trajectories from each source group (Navier-Stokes) or N files per split
            (shallow water).
        progress: a tqdm bar of trajectories read.
        dataset_name: root ``dataset_name``; default ``pdearena_navier_stokes_2d`` / ``pdearena_shallow_water_2d``.
        boundary_conditions: ``"periodic" | "wall" | "open"`` (or one per axis) instead of the defaults.
        batch_bytes: source bytes read per block (default 16 MiB); peak memory is a small multiple of it.
        overwrite: replace existing output files (otherwise `FileExistsError`); an interrupted run resumes.

    Returns:
        the written files.
    """
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder (expected PDEArena .h5 files or output.nc files)")
    if src.suffix == ".zarr" or any(src.glob("*.zarr")):
        raise FormatError(
            f"{src}: a zarr store; pdeforge reads PDEArena's netCDF output.nc files (zarr needs the zarr package): "
            "point at the folder of output.nc files"
        )
    if max_trajectories is not None and (not isinstance(max_trajectories, int) or max_trajectories < 1):
        raise ValueError(f"max_trajectories should be a positive int or None, got {max_trajectories!r}")
    if batch_bytes < 1:
        raise ValueError(f"batch_bytes should be positive, got {batch_bytes}")
    if src.is_file():
        files = [(src, None, src.stem)]
    else:
        files = [(p, None, p.stem) for p in sorted(src.rglob("*.h5"))] or _shallow_water_files(src)
        if not files:
            raise FormatError(f"{src}: no .h5 or .nc files in this folder; {EXPECTED}")
    counts: dict[str, int] = {}
    written = []
    for path, split, stem in files:
        if split is not None and max_trajectories is not None and counts.get(split, 0) >= max_trajectories:
            continue
        if not h5py.is_hdf5(path):
            raise FormatError(f"{path}: not an HDF5/netCDF4 file; {EXPECTED}")
        with h5py.File(path, "r") as f:
            if any(isinstance(f.get(k), h5py.Group) for k in MODE_SPLIT):
                sources = _ns_sources(f, path)
                default_name = "pdearena_navier_stokes_2d"
            elif isinstance(f.get("pres"), h5py.Dataset):
                parents = [MODE_SPLIT[d] for d in path.parent.parts if d in MODE_SPLIT]
                sources = [_sw_source(f, path, split or (parents[-1] if parents else "train"), stem)]
                default_name = "pdearena_shallow_water_2d"
            else:
                raise FormatError(f"{path}: not a PDEArena file this importer knows; found {describe(f)}; {EXPECTED}")
            for source in sources:
                counts[source.split] = counts.get(source.split, 0) + 1
                name = dataset_name or default_name
                options = (max_trajectories, progress, batch_bytes, boundary_conditions, overwrite)
                written.append(_write(source, out, name, path, *options))
    if (out / "data" / "train").is_dir():
        write_stats(out)
    return written


def _write(
    source: Source,
    out: Path,
    name: str,
    path: Path,
    max_trajectories: int | None,
    progress: bool,
    batch_bytes: int,
    boundary_conditions: str | Sequence[str] | None,
    overwrite: bool,
) -> Path:
    parts = dict(source.schema_parts)
    if boundary_conditions is not None:
        parts["boundary_conditions"] = (
            boundary_conditions if isinstance(boundary_conditions, str) else tuple(boundary_conditions)
        )
    schema = Schema(dataset_name=name, **parts)
    target = out / "data" / source.split / f"{source.name}.hdf5"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (pdeforge convert --overwrite) to replace it")
    _refuse_other_datasets(out, name, target.name)
    n = source.n_trajectories if max_trajectories is None else min(max_trajectories, source.n_trajectories)
    provenance = {
        "source_file": path.name,
        "source_format": "pdearena",
        "pdeforge_importer": "pdeforge.datasets.convert_pdearena",
        "split": source.split,
    }
    writer = TrajectoryWriter(target, schema, n, provenance=provenance)
    try:
        rows = max(1, batch_bytes // max(1, source.trajectory_bytes))
        with tqdm(total=n, desc=path.name, unit="traj", disable=not progress) as bar:
            bar.update(writer.n_written)
            for start in range(writer.n_written, n, rows):
                stop = min(n, start + rows)
                fields, scalars = source.read(start, stop)
                writer.write(fields, scalars)
                bar.update(stop - start)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
