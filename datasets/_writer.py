"""`TrajectoryWriter`: stream batches of trajectories into one HDF5 file in The Well's layout, atomically.

Data goes to ``<path>.partial`` (with root attribute ``pdeforge_incomplete=True``) and is renamed to ``path`` only when
every trajectory is written, so a crash never leaves a file that validates. After each batch the file is flushed and
the count of written trajectories recorded; reopening a writer with the same schema on the same path resumes there.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ._format import BC_TYPES, INCOMPLETE_ATTR, TENSOR_GROUPS, _components

__all__ = ["FieldSpec", "Schema", "TrajectoryWriter"]

N_WRITTEN_ATTR = "pdeforge_n_written"
SCHEMA_ATTR = "pdeforge_schema_hash"
CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: a window read touches few chunks


@dataclass(frozen=True)
class FieldSpec:
    """One field of a file: ``order`` 0 scalar field, 1 vector (one component per spatial dim), 2 tensor.

    ``time_varying=False`` makes a time-invariant field (e.g. a Darcy coefficient) stored per trajectory.
    """

    name: str
    order: int = 0
    time_varying: bool = True

    def __post_init__(self) -> None:
        if self.order not in (0, 1, 2):
            raise ValueError(f"FieldSpec {self.name!r}: order should be 0, 1 or 2, got {self.order}")


@dataclass(frozen=True)
class Schema:
    """Everything about a file except the trajectories' values.

    Attributes:
        dataset_name: root ``dataset_name``.
        coords: spatial axis name -> 1D coordinates (ordered like the array axes), e.g. ``{"x": x, "y": y}``.
        time: snapshot times (T,), constant dt.
        fields: the fields, in the order they are stored (and flattened into channels).
        scalars: names of per-trajectory constant scalars (e.g. equation parameters that vary per trajectory).
        parameters: file-level simulation parameters (root attributes and constant scalars).
        boundary_conditions: ``"periodic" | "wall" | "open"`` for all axes, or one per axis.
        grid_type: ``"cartesian"``.
    """

    dataset_name: str
    coords: Mapping[str, Any]
    time: Any
    fields: tuple[FieldSpec, ...]
    scalars: tuple[str, ...] = ()
    parameters: Mapping[str, float] = field(default_factory=dict)
    boundary_conditions: str | tuple[str, ...] = "periodic"
    grid_type: str = "cartesian"

    @property
    def spatial_dims(self) -> tuple[str, ...]:
        return tuple(self.coords)

    @property
    def resolution(self) -> tuple[int, ...]:
        return tuple(len(np.asarray(c)) for c in self.coords.values())

    @property
    def bcs(self) -> tuple[str, ...]:
        b = self.boundary_conditions
        return (b,) * len(self.coords) if isinstance(b, str) else tuple(b)

    def channel_names(self, time_varying: bool = True) -> list[str]:
        """Flattened channel names in The Well's order: t0 fields, then t1 components, then t2."""
        names = []
        for order in range(3):
            for f in self.fields:
                if f.order == order and f.time_varying == time_varying:
                    names += [f"{f.name}_{c}" if c else f.name for c in _components(self.spatial_dims, order)]
        return names

    def fingerprint(self) -> str:
        d = {
            "name": self.dataset_name,
            "coords": {k: np.asarray(v, np.float32).tolist() for k, v in self.coords.items()},
            "time": np.asarray(self.time, np.float32).tolist(),
            "fields": [(f.name, f.order, f.time_varying) for f in self.fields],
            "scalars": list(self.scalars),
            "parameters": {k: float(v) for k, v in self.parameters.items()},
            "bcs": list(self.bcs),
        }
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def check(self) -> None:
        if not self.coords:
            raise ValueError("Schema.coords is empty: give at least one spatial axis, e.g. {'x': x}")
        t = np.asarray(self.time, dtype=np.float64)
        if t.ndim != 1 or t.size < 1:
            raise ValueError(f"Schema.time should be a 1D array of snapshot times, got shape {t.shape}")
        if t.size > 1 and not np.allclose(np.diff(t), t[1] - t[0], rtol=1e-4, atol=1e-6 * abs(t[1] - t[0])):
            raise ValueError("Schema.time should have a constant dt (The Well's layout), got varying steps")
        for b in self.bcs:
            if b not in BC_TYPES:
                raise ValueError(f"Schema.boundary_conditions: {b!r} is not one of {BC_TYPES}")
        if len(self.bcs) != len(self.coords):
            raise ValueError(f"Schema.boundary_conditions has {len(self.bcs)} entries for {len(self.coords)} axes")
        names = [f.name for f in self.fields] + list(self.scalars) + list(self.parameters)
        if len(set(names)) != len(names):
            raise ValueError(f"Schema: field, scalar and parameter names must be unique, got {names}")
        if not any(f.time_varying for f in self.fields):
            raise ValueError("Schema.fields needs at least one time-varying field")


class TrajectoryWriter:
    """Stream batches of trajectories into ``path`` (The Well's layout), atomically and resumably.

    Examples:
        Four trajectories of one field on 32 points and 11 times, written in two batches, then read back:

        >>> x, t = np.linspace(0, 1, 32, endpoint=False), np.linspace(0, 1, 11)
        >>> schema = Schema("burgers", coords={"x": x}, time=t, fields=(FieldSpec("u"),), parameters={"nu": 0.01})
        >>> batches = np.random.default_rng(0).standard_normal((2, 2, 11, 1, 32)).astype("float32")
        >>> with TrajectoryWriter("train.hdf5", schema, n_trajectories=4, provenance={"seed": 0}) as w:
        ...     for u in batches:  # u: (B, T, C, *space), channels first
        ...         w.write_channels(u)
        >>> from pdeforge.datasets import TrajectoryDataset
        >>> TrajectoryDataset("train.hdf5", n_steps_input=1, n_steps_output=1)[0]["input_fields"].shape
        torch.Size([1, 1, 32])

    Arguments:
        path: final file name (``.hdf5``); the data lives at ``path + ".partial"`` until ``close``.
        schema: grid, time, fields, scalars and parameters of the file.
        n_trajectories: total trajectories the file will hold.
        provenance: extra root attributes (``equation``, ``equation_params``, ``solver``, ``seed``...); dicts are
            stored as JSON strings.
        compression: ``None``, ``"gzip"`` or ``"lzf"``.
        resume: continue a matching ``.partial`` file if one exists (``n_written`` tells where); else start anew.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: Schema,
        n_trajectories: int,
        provenance: Mapping[str, Any] | None = None,
        compression: str | None = None,
        resume: bool = True,
    ) -> None:
        schema.check()
        if n_trajectories < 1:
            raise ValueError(f"n_trajectories should be >= 1, got {n_trajectories}")
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.schema = schema
        self.n_trajectories = int(n_trajectories)
        self._file: h5py.File | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.partial.exists() and self._try_resume():
            return
        if self.partial.exists():
            self.partial.unlink()
        self._create(provenance or {}, compression)

    # -- setup --------------------------------------------------------------------------------------------
    def _try_resume(self) -> bool:
        try:
            f = h5py.File(self.partial, "a")
        except OSError as e:
            warnings.warn(f"{self.partial}: cannot reopen the interrupted write ({e}); starting it again", stacklevel=2)
            return False
        ok = (
            f.attrs.get(SCHEMA_ATTR) == self.schema.fingerprint()
            and int(f.attrs["n_trajectories"]) == self.n_trajectories
        )
        if not ok:
            f.close()
            warnings.warn(f"{self.partial}: interrupted write of a different schema; starting it again", stacklevel=2)
            return False
        self._file = f
        return True

    def _create(self, provenance: Mapping[str, Any], compression: str | None) -> None:
        s, n = self.schema, self.n_trajectories
        f = h5py.File(self.partial, "w")
        self._file = f
        f.attrs["dataset_name"] = s.dataset_name
        f.attrs["grid_type"] = s.grid_type
        f.attrs["n_spatial_dims"] = len(s.coords)
        f.attrs["n_trajectories"] = n
        f.attrs["simulation_parameters"] = list(s.parameters)
        for k, v in s.parameters.items():
            f.attrs[k] = v
        f.attrs["pdeforge_version"] = __version__
        for k, v in provenance.items():
            f.attrs[k] = json.dumps(v, sort_keys=True, default=float) if isinstance(v, (dict, list, tuple)) else v
        f.attrs[INCOMPLETE_ATTR] = True
        f.attrs[SCHEMA_ATTR] = s.fingerprint()
        f.attrs[N_WRITTEN_ATTR] = 0

        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = list(s.spatial_dims)
        t = dims.create_dataset("time", data=np.asarray(s.time, dtype=np.float32))
        t.attrs["sample_varying"] = False
        for name, c in s.coords.items():
            d = dims.create_dataset(name, data=np.asarray(c, dtype=np.float32))
            d.attrs["sample_varying"] = False
            d.attrs["time_varying"] = False

        bcs = f.create_group("boundary_conditions")
        for name, bc_type, n_i in zip(s.spatial_dims, s.bcs, s.resolution):
            g = bcs.create_group(f"{name}_{bc_type}")
            g.attrs["associated_dims"] = [name]
            g.attrs["associated_fields"] = []
            g.attrs["bc_type"] = bc_type
            g.attrs["sample_varying"] = False
            g.attrs["time_varying"] = False
            mask = np.zeros(n_i, dtype=bool)
            mask[[0, -1]] = True
            g.create_dataset("mask", data=mask)
            g.create_dataset("values", data=np.zeros(int(mask.sum()), dtype=np.float32))

        sc = f.create_group("scalars")
        sc.attrs["field_names"] = list(s.parameters) + list(s.scalars)
        for k, v in s.parameters.items():
            d = sc.create_dataset(k, data=np.float32(v))
            d.attrs["sample_varying"] = False
            d.attrs["time_varying"] = False
        for k in s.scalars:
            d = sc.create_dataset(k, shape=(n,), dtype=np.float32)
            d.attrs["sample_varying"] = True
            d.attrs["time_varying"] = False

        n_t, n_dims = len(np.asarray(s.time)), len(s.coords)
        for order, gname in enumerate(TENSOR_GROUPS):
            g = f.create_group(gname)
            specs = [fs for fs in s.fields if fs.order == order]
            g.attrs["field_names"] = [fs.name for fs in specs]
            for fs in specs:
                tail = tuple(s.resolution) + (n_dims,) * order
                frame_bytes = 4 * int(np.prod(tail))
                if fs.time_varying:
                    t_chunk = int(max(1, min(n_t, CHUNK_BYTES // max(1, frame_bytes))))
                    shape, chunks = (n, n_t) + tail, (1, t_chunk) + tail
                else:
                    shape, chunks = (n,) + tail, (1,) + tail
                d = g.create_dataset(fs.name, shape=shape, dtype=np.float32, chunks=chunks, compression=compression)
                d.attrs["dim_varying"] = [True] * n_dims
                d.attrs["sample_varying"] = True
                d.attrs["time_varying"] = fs.time_varying
                if order == 2:
                    d.attrs["symmetric"] = False
                    d.attrs["antisymmetric"] = False
        f.flush()

    # -- writing ------------------------------------------------------------------------------------------
    @property
    def n_written(self) -> int:
        """Trajectories already in the file (after a resume, where to continue)."""
        assert self._file is not None, "writer is closed"
        return int(self._file.attrs[N_WRITTEN_ATTR])

    def write(
        self,
        fields: Mapping[str, Any],
        scalars: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a batch of ``B`` trajectories.

        Arguments:
            fields: every field of the schema, in The Well's layout: order-0 time-varying ``(B, T, *space)``,
                order-1 ``(B, T, *space, n_dims)``; time-invariant fields without the ``T`` axis.
            scalars: every per-trajectory scalar of the schema, ``(B,)``.
        """
        if self._file is None:
            raise RuntimeError(f"{self.path}: writer is closed")
        s, f = self.schema, self._file
        scalars = dict(scalars or {})
        missing = [fs.name for fs in s.fields if fs.name not in fields] + [k for k in s.scalars if k not in scalars]
        extra = [k for k in fields if k not in {fs.name for fs in s.fields}] + [
            k for k in scalars if k not in s.scalars
        ]
        if missing or extra:
            raise ValueError(
                f"{self.path}: write() missing {missing}, unexpected {extra}; "
                f"schema has fields {[fs.name for fs in s.fields]}, scalars {list(s.scalars)}"
            )
        arrays = {k: _numpy(v) for k, v in fields.items()}
        batch = {a.shape[0] if a.ndim else -1 for a in arrays.values()} | {
            _numpy(v).reshape(-1).shape[0] for v in scalars.values()
        }
        if len(batch) != 1:
            raise ValueError(f"{self.path}: write() got different batch sizes {sorted(batch)} across fields/scalars")
        b = batch.pop()
        start = self.n_written
        if start + b > self.n_trajectories:
            raise ValueError(
                f"{self.path}: writing {b} more trajectories would exceed n_trajectories={self.n_trajectories} "
                f"({start} written)"
            )
        for fs in s.fields:
            ds = f[TENSOR_GROUPS[fs.order]][fs.name]
            a = arrays[fs.name]
            if a.shape[1:] != ds.shape[1:]:
                raise ValueError(
                    f"{self.path}: field {fs.name!r} has shape {a.shape}, expected (B,) + {ds.shape[1:]} "
                    "(The Well's layout: batch, time, *space, components)"
                )
            if not np.isfinite(a).all():
                raise ValueError(
                    f"{self.path}: field {fs.name!r} has non-finite values in trajectories {start}..{start + b - 1}"
                )
            ds[start : start + b] = a.astype(np.float32, copy=False)
        for k in s.scalars:
            f["scalars"][k][start : start + b] = _numpy(scalars[k]).reshape(-1).astype(np.float32)
        f.flush()  # data first, then the counter: a crash in between rewrites this batch on resume
        f.attrs[N_WRITTEN_ATTR] = start + b
        f.flush()

    def write_channels(self, u: Any, constant: Any | None = None, scalars: Mapping[str, Any] | None = None) -> None:
        """Append a batch given channels first: ``u (B, T, C, *space)``, ``constant (B, C_const, *space)``.

        Channels are in `Schema.channel_names` order; vector components go back to the last axis on disk.
        """
        s = self.schema
        fields = split_channels(_numpy(u), s, time_varying=True, path=self.path)
        const_specs = [fs for fs in s.fields if not fs.time_varying]
        if const_specs:
            if constant is None:
                raise ValueError(
                    f"{self.path}: schema has time-invariant fields {[fs.name for fs in const_specs]}: "
                    "pass constant=(B, C_const, *space)"
                )
            fields.update(split_channels(_numpy(constant)[:, None], s, time_varying=False, path=self.path))
            fields = {k: (v[:, 0] if k in {fs.name for fs in const_specs} else v) for k, v in fields.items()}
        self.write(fields, scalars)

    # -- finishing ----------------------------------------------------------------------------------------
    def close(self) -> Path:
        """Finish: all trajectories must be written; the file is renamed to its final name and returned."""
        if self._file is None:
            return self.path
        n = self.n_written
        if n != self.n_trajectories:
            self._file.close()
            self._file = None
            raise RuntimeError(
                f"{self.path}: only {n} of {self.n_trajectories} trajectories written; "
                f"the partial file {self.partial} is kept for resuming"
            )
        del self._file.attrs[INCOMPLETE_ATTR]
        del self._file.attrs[N_WRITTEN_ATTR]
        del self._file.attrs[SCHEMA_ATTR]
        self._file.close()
        self._file = None
        with open(self.partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close without finishing; the ``.partial`` file stays for resuming."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def split_channels(u: np.ndarray, schema: Schema, time_varying: bool, path: Any = "") -> dict[str, np.ndarray]:
    """(B, T, C, *space) channels first -> {field: (B, T, *space[, n_dims**order])} in The Well's layout."""
    n_dims = len(schema.coords)
    names = schema.channel_names(time_varying)
    if u.ndim != 3 + n_dims or u.shape[2] != len(names) or tuple(u.shape[3:]) != schema.resolution:
        raise ValueError(
            f"{path}: expected channels-first (B, T, {len(names)}, {', '.join(map(str, schema.resolution))}) "
            f"for channels {names}, got {tuple(u.shape)}"
        )
    out, c = {}, 0
    for order in range(3):
        for fs in schema.fields:
            if fs.order != order or fs.time_varying != time_varying:
                continue
            k = n_dims**order
            block = u[:, :, c : c + k]
            c += k
            if order == 0:
                out[fs.name] = block[:, :, 0]
            else:
                moved = np.moveaxis(block, 2, -1)  # (B, T, *space, k)
                out[fs.name] = moved.reshape(moved.shape[:-1] + (n_dims,) * order)
    return out


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
