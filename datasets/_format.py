"""The file format: The Well's HDF5 layout, checked.

Layout (PolymathicAI/the_well ``docs/data_format.md``)::

    /                    @dataset_name @grid_type @n_spatial_dims @n_trajectories @simulation_parameters + one attr each
    dimensions/          @spatial_dims; time (T,) or (N, T) @sample_varying; x (n_x,) ... @sample_varying @time_varying
    boundary_conditions/ <name>/ @bc_type @associated_dims @associated_fields @sample_varying @time_varying; mask
    scalars/             @field_names; <name> @sample_varying @time_varying
    t0_fields/ t1_fields/ t2_fields/   @field_names; <name> @dim_varying @sample_varying @time_varying

Shape rule of a field: ``[N if sample_varying] + [T if time_varying] + [n_i for each dim if dim_varying[i]]
+ [n_spatial_dims] * tensor_order``. pdeforge adds only provenance root attributes (``pdeforge_*``, ``equation``...).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._remote import HDF5_SUFFIXES, RemoteHDF5File, is_url, list_remote, local_path, url_join

__all__ = [
    "FormatError",
    "validate",
    "check_disjoint_splits",
    "FileInfo",
    "read_file_info",
    "list_data_files",
    "decode",
]

TENSOR_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
BC_TYPES = ("periodic", "wall", "open")
INCOMPLETE_ATTR = "pdeforge_incomplete"


class FormatError(ValueError):
    """A file or dataset does not follow The Well's layout; the message names file, key, expected and found.

    Raised in a DataLoader worker (``num_workers > 0``), it is raised again in the main process by calling this
    class with "Caught FormatError in DataLoader worker process N. Original Traceback ..." (torch's
    ``ExceptionWrapper``): the message is then the worker's own line, the last of that traceback, so a NaN read by a
    worker reads as one read in the main process."""

    def __init__(self, message: Any = "", *args: Any) -> None:
        if isinstance(message, str) and message.startswith("Caught FormatError ") and "\nOriginal Traceback" in message:
            message = message.rstrip().rsplit("\n", 1)[-1].split("FormatError: ", 1)[-1]
        super().__init__(message, *args)


def decode(value: Any) -> Any:
    """HDF5 attribute -> plain Python (bytes -> str, numpy scalars -> Python scalars, arrays of str -> list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [decode(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _names(attrs: h5py.AttributeManager, key: str, where: str, path: str) -> list[str]:
    if key not in attrs:
        raise FormatError(f"{path}: {where} has no attribute '{key}' (expected a list of names, possibly empty)")
    value = decode(attrs[key])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{path}: {where}.attrs['{key}'] should be a list of strings, found {value!r}")
    return value


def _flag(obj: h5py.HLObject, key: str, path: str) -> bool:
    if key not in obj.attrs:
        raise FormatError(f"{path}: '{obj.name}' has no attribute '{key}' (expected a bool)")
    value = obj.attrs[key]
    if not isinstance(value, (bool, np.bool_)):
        raise FormatError(f"{path}: '{obj.name}'.attrs['{key}'] should be a bool, found {value!r}")
    return bool(value)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    order: int  # tensor order 0, 1, 2
    sample_varying: bool
    time_varying: bool
    dim_varying: tuple[bool, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class FileInfo:
    """What `validate` learned about one file (enough for indexing without reopening it)."""

    path: str
    dataset_name: str
    n_spatial_dims: int
    spatial_dims: tuple[str, ...]
    resolution: tuple[int, ...]
    n_trajectories: int
    n_steps: int
    time: tuple[float, ...]
    time_sample_varying: bool
    coords: tuple[tuple[float, ...], ...]
    fields: tuple[FieldInfo, ...]
    scalars: tuple[tuple[str, bool, bool], ...]  # (name, sample_varying, time_varying)
    boundary_conditions: tuple[str, ...]  # per spatial dim
    parameters: dict
    attrs: dict

    @property
    def dt(self) -> float:
        return float(self.time[1] - self.time[0]) if len(self.time) > 1 else 0.0

    def flat_names(self, time_varying: bool) -> list[str]:
        names = []
        for f in self.fields:
            if f.time_varying != time_varying:
                continue
            for comps in _components(self.spatial_dims, f.order):
                names.append(f"{f.name}_{comps}" if comps else f.name)
        return names


def _components(spatial_dims: tuple[str, ...], order: int) -> list[str]:
    combos = [""]
    for _ in range(order):
        combos = [c + d for c in combos for d in spatial_dims]
    return combos


def list_data_files(
    path: str | os.PathLike, split: str | None = None, storage_options: dict | None = None
) -> list[Path] | list[str]:
    """Resolve ``path`` (a file, a folder of .hdf5/.h5, or a dataset root with ``split``; a local path or an fsspec URL,
    see `pdeforge.datasets._remote`) to sorted files (URLs for a URL).

    The order is The Well's (``sorted`` full paths), so window ``i`` matches ``WellDataset``'s window ``i``.
    """
    path = local_path(path)
    if split is not None and split not in ("train", "valid", "test"):
        raise ValueError(f"split should be 'train', 'valid' or 'test', got {split!r}")
    if is_url(path):
        urls = list_remote(path, split, storage_options)
        if not urls:
            where = url_join(path, "data", split) if split else path
            raise FileNotFoundError(f"{where}: no .hdf5/.h5 files found there (expected a dataset root's split)")
        return urls
    p = Path(path)
    if split is not None:
        p = p / "data" / split
    if p.is_file():
        return [p]
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: no such file or folder (expected an .hdf5 file, a folder of them, or a dataset root with split=)"
        )
    files = sorted([*p.glob("*.h5"), *p.glob("*.hdf5")], key=str)
    if not files:
        hint = " (it looks like a dataset root: pass split='train'|'valid'|'test')" if (p / "data").is_dir() else ""
        raise FormatError(f"{p}: no .hdf5/.h5 files found{hint}")
    return files


def read_file_info(
    path: str | os.PathLike, check_values: bool = False, storage_options: dict | None = None
) -> FileInfo:
    """Open and check one file (a path or an fsspec URL); raise `FormatError` naming the key, what was expected and
    what was found."""
    path = str(local_path(path))
    if is_url(path):
        f = RemoteHDF5File(path, storage_options)  # FileNotFoundError / PermissionError / OSError naming the URL
        try:
            with f:
                return _check(f, path, check_values)
        except FormatError:
            raise
        except (KeyError, RuntimeError) as e:
            raise FormatError(f"{path}: damaged file (truncated?): {e}") from None
    if not os.path.isfile(path):
        raise FormatError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as fh:
            head = fh.read(8)
        raise FormatError(f"{path}: not an HDF5 file (first bytes {head!r}, expected b'\\x89HDF\\r\\n\\x1a\\n')")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FormatError(f"{path}: HDF5 file cannot be opened (truncated or corrupt?): {e}") from None
    try:
        with f:
            return _check(f, path, check_values)
    except FormatError:
        raise
    except (OSError, KeyError, RuntimeError) as e:  # h5py raises these for damaged data blocks
        raise FormatError(f"{path}: damaged file (truncated?): {e}") from None


def _check(f: h5py.File, path: str, check_values: bool) -> FileInfo:
    attrs = {k: decode(v) for k, v in f.attrs.items()}
    if attrs.get(INCOMPLETE_ATTR, False):
        raise FormatError(
            f"{path}: incomplete write (attribute {INCOMPLETE_ATTR}=True); resume the writer or delete the file"
        )
    for key in ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories", "simulation_parameters"):
        if key not in attrs:
            raise FormatError(f"{path}: missing root attribute '{key}'")
    n_dims = attrs["n_spatial_dims"]
    if not isinstance(n_dims, int) or n_dims < 1:
        raise FormatError(f"{path}: root attribute 'n_spatial_dims' should be a positive int, found {n_dims!r}")
    n_traj = attrs["n_trajectories"]
    if not isinstance(n_traj, int) or n_traj < 1:
        raise FormatError(
            f"{path}: root attribute 'n_trajectories' should be a positive int, found {n_traj!r} (zero trajectories)"
        )
    sim_params = _names(f.attrs, "simulation_parameters", "root", path)
    for p in sim_params:
        if p not in attrs:
            raise FormatError(
                f"{path}: simulation parameter '{p}' is listed in 'simulation_parameters' but has no root attribute"
            )
    for group in ("dimensions", "boundary_conditions", "scalars", *TENSOR_GROUPS):
        if group not in f or not isinstance(f[group], h5py.Group):
            raise FormatError(
                f"{path}: missing group '{group}/' (The Well's layout has dimensions/, boundary_conditions/, scalars/, "
                "t0_fields/, t1_fields/, t2_fields/)"
            )

    dims = f["dimensions"]
    spatial_dims = tuple(_names(dims.attrs, "spatial_dims", "dimensions", path))
    if len(spatial_dims) != n_dims:
        raise FormatError(
            f"{path}: dimensions.attrs['spatial_dims'] has {len(spatial_dims)} names {spatial_dims}, "
            f"expected n_spatial_dims={n_dims}"
        )
    if "time" not in dims:
        raise FormatError(f"{path}: missing dataset 'dimensions/time'")
    time_sv = _flag(dims["time"], "sample_varying", path)
    time_ds = dims["time"]
    time = np.asarray(time_ds[0] if time_sv else time_ds[...], dtype=np.float64)
    if time.ndim != 1 or time.size < 1:
        raise FormatError(f"{path}: 'dimensions/time' should be 1D (T,) or (N, T), found shape {time_ds.shape}")
    n_steps = int(time.shape[0])
    if n_steps > 1:
        steps = np.diff(time)
        if not np.all(steps > 0) or not np.allclose(steps, steps[0], rtol=1e-4, atol=1e-6 * abs(steps[0])):
            raise FormatError(
                f"{path}: 'dimensions/time' should be increasing with a constant dt, found steps {steps[:5]}..."
            )
    coords, resolution = [], []
    for d in spatial_dims:
        if d not in dims:
            raise FormatError(f"{path}: spatial dim '{d}' listed in 'spatial_dims' but 'dimensions/{d}' is missing")
        sv = _flag(dims[d], "sample_varying", path)
        _flag(dims[d], "time_varying", path)
        c = np.asarray(dims[d][0] if sv else dims[d][...], dtype=np.float64)
        coords.append(tuple(c.tolist()))
        resolution.append(int(c.shape[-1]))

    fields = []
    for order, group in enumerate(TENSOR_GROUPS):
        g = f[group]
        for name in _names(g.attrs, "field_names", group, path):
            if name not in g:
                raise FormatError(
                    f"{path}: field '{name}' listed in {group}.attrs['field_names'] but '{group}/{name}' is missing"
                )
            ds = g[name]
            sv, tv = _flag(ds, "sample_varying", path), _flag(ds, "time_varying", path)
            if "dim_varying" not in ds.attrs:
                raise FormatError(f"{path}: '{group}/{name}' has no attribute 'dim_varying' (expected {n_dims} bools)")
            dv = tuple(bool(x) for x in np.atleast_1d(ds.attrs["dim_varying"]))
            if len(dv) != n_dims:
                raise FormatError(
                    f"{path}: '{group}/{name}'.attrs['dim_varying'] has {len(dv)} entries, expected {n_dims}"
                )
            expected = ([n_traj] if sv else []) + ([n_steps] if tv else [])
            expected += [n for n, v in zip(resolution, dv) if v] + [n_dims] * order
            if tuple(ds.shape) != tuple(expected):
                raise FormatError(
                    f"{path}: '{group}/{name}' has shape {tuple(ds.shape)}, expected {tuple(expected)} "
                    f"(sample_varying={sv}, time_varying={tv}, dim_varying={list(dv)}, tensor order {order})"
                )
            if ds.dtype != np.float32:
                raise FormatError(f"{path}: '{group}/{name}' has dtype {ds.dtype}, expected float32")
            fields.append(FieldInfo(name, order, sv, tv, dv, tuple(ds.shape)))
    if not any(fi.time_varying for fi in fields):
        raise FormatError(f"{path}: no time-varying field in t0_fields/t1_fields/t2_fields (nothing to learn)")

    scalars = []
    sg = f["scalars"]
    for name in _names(sg.attrs, "field_names", "scalars", path):
        if name not in sg:
            raise FormatError(
                f"{path}: scalar '{name}' listed in scalars.attrs['field_names'] but 'scalars/{name}' is missing"
            )
        ds = sg[name]
        sv, tv = _flag(ds, "sample_varying", path), _flag(ds, "time_varying", path)
        expected = ([n_traj] if sv else []) + ([n_steps] if tv else [])
        if tuple(ds.shape) not in (tuple(expected), tuple(expected) + (1,)) and not (
            not expected and ds.shape in ((), (1,))
        ):
            raise FormatError(f"{path}: 'scalars/{name}' has shape {ds.shape}, expected {tuple(expected)}")
        scalars.append((name, sv, tv))

    bcs = ["open"] * n_dims
    for key in f["boundary_conditions"]:
        bc = f["boundary_conditions"][key]
        if "bc_type" not in bc.attrs:
            raise FormatError(
                f"{path}: 'boundary_conditions/{key}' has no attribute 'bc_type' (expected one of {BC_TYPES})"
            )
        bc_type = str(decode(bc.attrs["bc_type"])).lower()
        if bc_type not in BC_TYPES:
            raise FormatError(
                f"{path}: 'boundary_conditions/{key}'.attrs['bc_type'] = {bc_type!r}, expected one of {BC_TYPES}"
            )
        assoc = _names(bc.attrs, "associated_dims", f"boundary_conditions/{key}", path)
        for d in assoc:
            if d not in spatial_dims:
                raise FormatError(f"{path}: 'boundary_conditions/{key}' names dim {d!r}, not one of {spatial_dims}")
            bcs[spatial_dims.index(d)] = bc_type

    if check_values:
        for fi in fields:
            ds = f[TENSOR_GROUPS[fi.order]][fi.name]
            _check_finite(ds, path, f"{TENSOR_GROUPS[fi.order]}/{fi.name}")

    params = {p: attrs[p] for p in sim_params}
    return FileInfo(
        path=path,
        dataset_name=str(attrs["dataset_name"]),
        n_spatial_dims=n_dims,
        spatial_dims=spatial_dims,
        resolution=tuple(resolution),
        n_trajectories=n_traj,
        n_steps=n_steps,
        time=tuple(time.tolist()),
        time_sample_varying=time_sv,
        coords=tuple(coords),
        fields=tuple(fields),
        scalars=tuple(scalars),
        boundary_conditions=tuple(bcs),
        parameters=params,
        attrs=attrs,
    )


def _check_finite(ds: h5py.Dataset, path: str, key: str) -> None:
    """Scan a dataset block by block along its first axis (bounded memory)."""
    if ds.ndim == 0:
        blocks = [ds[()]]
    else:
        step = max(1, (1 << 24) // max(1, int(np.prod(ds.shape[1:]))))
        blocks = (ds[i : i + step] for i in range(0, ds.shape[0], step))
    start = 0
    for block in blocks:
        block = np.asarray(block)
        bad = ~np.isfinite(block)
        if bad.any():
            idx = np.argwhere(bad)[0]
            if block.ndim:
                idx[0] += start
            raise FormatError(
                f"{path}: '{key}' contains non-finite values "
                f"(first at index {tuple(int(i) for i in idx)}: {block[tuple(np.argwhere(bad)[0])]})"
            )
        start += block.shape[0] if block.ndim else 0


def validate(
    path: str | os.PathLike, split: str | None = None, check_values: bool = True, storage_options: dict | None = None
) -> list[FileInfo]:
    """Check a file, a folder of files, or a dataset root (all splits unless ``split``); raise `FormatError`.
    ``path`` may be an fsspec URL (``storage_options`` for its backend; see `pdeforge.datasets._remote`).

    Checks the layout and shape rule of every file, float32 fields, that all files of one folder agree (name,
    spatial grid, fields, time axis) and, with ``check_values``, that fields hold no NaN/Inf. Returns the files' info.
    """
    path = local_path(path)
    if is_url(path):
        splits = [split] if split is not None or path.endswith(HDF5_SUFFIXES) else ["train", "valid", "test"]
        found = {s: list_remote(path, s, storage_options) for s in splits}
        if not any(found.values()):
            raise FileNotFoundError(f"{path}: no .hdf5/.h5 files found (expected a file or ROOT/data/<split>/*.hdf5)")
        infos = [read_file_info(u, check_values, storage_options) for urls in found.values() for u in urls]
        check_consistent(infos)
        if split is None and len(found) > 1:
            check_disjoint_splits(path, storage_options)
        return infos
    p = Path(path)
    if p.is_dir() and (p / "data").is_dir() and split is None:
        infos = []
        for s in ("train", "valid", "test"):
            if (p / "data" / s).is_dir():
                infos += validate(p, split=s, check_values=check_values)
        if not infos:
            raise FormatError(f"{p}: dataset root without data/train, data/valid or data/test folders")
        check_consistent(infos)
        check_disjoint_splits(p)
        return infos
    infos = [read_file_info(fp, check_values=check_values) for fp in list_data_files(p, split)]
    check_consistent(infos)
    return infos


def check_consistent(infos: list[FileInfo]) -> None:
    """All files read as one dataset must share name, grid, fields and time axis."""
    ref = infos[0]
    for info in infos[1:]:
        for attr in ("dataset_name", "spatial_dims", "resolution", "n_steps"):
            if getattr(info, attr) != getattr(ref, attr):
                raise FormatError(
                    f"{info.path}: {attr} = {getattr(info, attr)!r} differs from {ref.path}: {getattr(ref, attr)!r} "
                    f"(all files of one dataset must agree)"
                )
        if [(fi.name, fi.order, fi.time_varying) for fi in info.fields] != [
            (fi.name, fi.order, fi.time_varying) for fi in ref.fields
        ]:
            raise FormatError(
                f"{info.path}: fields {[fi.name for fi in info.fields]} differ from "
                f"{ref.path}: {[fi.name for fi in ref.fields]}"
            )
        if not np.allclose(info.time, ref.time, rtol=1e-5, atol=1e-7):
            raise FormatError(
                f"{info.path}: time axis {info.time[:3]}... (dt={info.dt:g}) differs from "
                f"{ref.path}: {ref.time[:3]}... "
                f"(dt={ref.dt:g}); inconsistent time axis between files of one dataset"
            )


def _relative_url(root: str, url: str) -> str:
    return url[len(root.rstrip("/")) + 1 :]


def _relative_path(root: Path, path: Path) -> Path:
    return path.relative_to(root)


def check_disjoint_splits(root: str | os.PathLike, storage_options: dict | None = None) -> None:
    """Raise `FormatError` if two splits of a dataset root share a trajectory (train/test leakage).

    Two checks, both cheap enough for every training start: the ``trajectory_range`` provenance attributes that
    ``pdeforge generate`` writes (global trajectory ids) must not overlap between splits; and no trajectory of one
    split may equal one of another split bit for bit. Equality is found by hashing the first stored snapshot of the
    first field of every trajectory (one chunk each), then confirmed on its last snapshot and per-trajectory scalars,
    so datasets whose trajectories share an initial state (other parameters, other forcing) are not refused.
    """
    root = local_path(root)
    if is_url(root):
        files = {s: list_remote(root, s, storage_options) for s in ("train", "valid", "test")}
        _open = functools.partial(RemoteHDF5File, storage_options=storage_options)
        _rel = functools.partial(_relative_url, root)
    else:
        root = Path(root)
        files = {
            s: sorted([*(root / "data" / s).glob("*.h5"), *(root / "data" / s).glob("*.hdf5")], key=str)
            for s in ("train", "valid", "test")
        }
        _open = functools.partial(h5py.File, mode="r")
        _rel = functools.partial(_relative_path, root)
    ranges: list[tuple[str, Any, int, int]] = []
    seen: dict[bytes, tuple[str, Any, int]] = {}
    for split, paths in files.items():
        for path in paths:
            try:
                with _open(path) as f:
                    r = _trajectory_range(f)
                    if r is not None:
                        for other_split, other, a, b in ranges:
                            if other_split != split and a < r[1] and r[0] < b:
                                raise FormatError(
                                    f"{root}: splits share trajectory ids: {_rel(other)} holds "
                                    f"trajectories [{a}, {b}) and {_rel(path)} [{r[0]}, {r[1]}) "
                                    "(leakage between "
                                    f"{other_split} and {split}): regenerate it with pdeforge generate --overwrite"
                                )
                        ranges.append((split, path, *r))
                    for i, key in enumerate(_first_snapshot_hashes(f)):
                        if key in seen and seen[key][0] != split:
                            other_split, other, j = seen[key]
                            with _open(other) as g:
                                same = _confirm_hash(g, j) == _confirm_hash(f, i)
                            if same:
                                raise FormatError(
                                    f"{root}: splits share a trajectory: {_rel(other)} index {j} and "
                                    f"{_rel(path)} index {i} are bit-identical (leakage between "
                                    f"{other_split} and {split}): regenerate it with pdeforge generate --overwrite"
                                )
                        seen.setdefault(key, (split, path, i))
            except (OSError, KeyError, RuntimeError) as e:  # h5py's errors for unreadable or damaged files
                raise FormatError(f"{path}: cannot be read to check the splits are disjoint: {e}") from None


def _trajectory_range(f: h5py.File) -> tuple[int, int] | None:
    """The global ids ``[a, b)`` of a file's trajectories (``trajectory_range`` attribute, JSON), or None."""
    value = decode(f.attrs.get("trajectory_range"))
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    return None


def _first_field(f: h5py.File) -> h5py.Dataset | None:
    """The first per-trajectory field (t0, then t1, then t2 fields, in ``field_names`` order), or None."""
    for group in TENSOR_GROUPS:
        if group not in f:
            continue
        for name in decode(f[group].attrs.get("field_names", [])) or []:
            ds = f[group].get(name)
            if isinstance(ds, h5py.Dataset) and ds.attrs.get("sample_varying", False) and ds.ndim >= 1:
                return ds
    return None


def _first_snapshot_hashes(f: h5py.File) -> list[bytes]:
    """One hash per trajectory of its first stored snapshot of the first field, read a block of trajectories at a
    time (bounded memory)."""
    ds = _first_field(f)
    if ds is None:
        return []
    time_varying = bool(ds.attrs.get("time_varying", False)) and ds.ndim >= 2
    snapshot = int(np.prod(ds.shape[2 if time_varying else 1 :]))
    step = max(1, (1 << 24) // max(1, snapshot))
    out = []
    for start in range(0, ds.shape[0], step):
        block = np.ascontiguousarray(ds[start : start + step, 0] if time_varying else ds[start : start + step])
        out += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block]
    return out


def _confirm_hash(f: h5py.File, i: int) -> bytes:
    """A hash of trajectory ``i``'s last snapshot of the first field and its per-trajectory scalars."""
    h = hashlib.blake2b(digest_size=16)
    ds = _first_field(f)
    if ds is not None:
        time_varying = bool(ds.attrs.get("time_varying", False)) and ds.ndim >= 2
        h.update(np.ascontiguousarray(ds[i, -1] if time_varying else ds[i]).tobytes())
    if "scalars" in f:
        for name in decode(f["scalars"].attrs.get("field_names", [])) or []:
            sc = f["scalars"].get(name)
            if isinstance(sc, h5py.Dataset) and sc.attrs.get("sample_varying", False) and sc.ndim >= 1:
                h.update(name.encode() + np.ascontiguousarray(sc[i]).tobytes())
    return h.digest()


def json_attr(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=float)
