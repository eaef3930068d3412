"""Import PDEBench HDF5 files into The Well's layout, streaming (bounded memory), with train/valid/test splits.

PDEBench (Takamoto et al. 2022, "PDEBench: an extensive benchmark for scientific machine learning", DaRUS
doi:10.18419/darus-2986) ships four file layouts; `convert_pdebench` recognises them from the keys:

1. ``"tensor"`` -- ``tensor (N, T, X)``, ``x-coordinate (X,)`` (cell centres), ``t-coordinate (T+1,)``, root
   attributes ``beta`` / ``Nu`` / ``rho`` (1D advection, Burgers, reaction-diffusion). One field ``u``.
2. ``"darcy"`` -- ``tensor (N, 1, X, Y)`` (the solution u), ``nu (N, X, Y)`` (the coefficient a), ``x-coordinate``,
   ``y-coordinate``, attribute ``beta`` (the forcing). The coefficient becomes the time-invariant field ``a`` and
   the steady solution the time-varying field ``u`` with a single snapshot (``T = 1``, time 0): the operator task
   ``a -> u`` reads ``constant_fields`` and snapshot 0. Such a file has no next-step windows.
3. ``"cfd"`` -- ``density``, ``pressure``, ``Vx``[, ``Vy``[, ``Vz``]] each ``(N, T, *space)``, coordinates,
   ``t-coordinate (T+1,)``, attributes ``eta``, ``zeta``[, ``M``]. ``density`` and ``pressure`` become t0 fields,
   ``velocity`` a t1 field: channels ``density, pressure, velocity_x[, velocity_y, velocity_z]``.
4. ``"seed_groups"`` -- one group per seed: ``0000/data (T, *space, C)``, ``0000/grid/x``[, ``/y``], ``0000/grid/t``
   (2D diffusion-reaction, shallow water, diffusion-sorption). ``data[..., c]`` becomes channel ``c``.

Times: the first ``T`` entries of the time coordinate (PDEBench stores ``T + 1`` for layouts 1 and 3), checked for
a constant step and stored as ``t_0 + dt * arange(T)`` (the float32 coordinates jitter by ~1e-7).
Coordinates: the cell centres as given. Simulation parameters: numeric root attributes, and ``<name><number>`` tokens
of the file name (``1D_Burgers_Sols_Nu0.01.hdf5`` -> ``Nu = 0.01``; attributes win), spelled as PDEBench's
attributes (``beta, Nu, rho, eta, zeta, M``).

Boundary conditions (The Well's types; override with ``boundary_conditions=``): ``periodic`` for layout 1
(advection, Burgers, 1D reaction-diffusion are periodic in PDEBench); ``wall`` for Darcy (``u = 0`` on the
boundary); CFD from the file name (``periodic`` -> periodic, ``trans`` (transmissive) -> open, otherwise periodic
with a warning); layout 4 from the file name: ``diff-react`` -> wall (no-flux Neumann), ``rdb`` -> open
(extrapolation boundaries), ``diff-sorp`` -> open (Dirichlet inflow, outflow right), otherwise open with a warning.
"""

from __future__ import annotations

import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
from tqdm.auto import tqdm

from ._format import FormatError, decode
from ._stats import write_stats
from ._writer import FieldSpec, Schema, TrajectoryWriter

__all__ = ["convert_pdebench"]

SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
BATCH_BYTES = 16 << 20  # source bytes read per block: peak memory is a small multiple of this
SPACE_AXES = ("x", "y", "z")
# PDEBench's spelling of its parameters (root attributes), for tokens of file names such as ``Eta0.01``
PARAMETER_NAMES = {"beta": "beta", "nu": "Nu", "rho": "rho", "eta": "eta", "zeta": "zeta", "m": "M"}
EXPECTED = (
    "expected one of PDEBench's four layouts: "
    "(1) 'tensor' (N, T, X) + 'x-coordinate' + 't-coordinate' (1D advection/Burgers/reaction-diffusion); "
    "(2) Darcy: 'tensor' (N, 1, X, Y) + 'nu' (N, X, Y) + 'x-coordinate', 'y-coordinate'; "
    "(3) CFD: 'density', 'pressure', 'Vx'[, 'Vy', 'Vz'] (N, T, *space) + coordinates + 't-coordinate'; "
    "(4) one group per seed: '0000/data' (T, *space, C), '0000/grid/x'[, 'grid/y'], '0000/grid/t'"
)


# -- helpers ------------------------------------------------------------------------------------------------------
def describe(f: h5py.Group, limit: int = 12) -> str:
    """Top-level keys with shapes (groups: their first members), for error messages."""
    parts = []
    keys = sorted(f.keys())
    for k in keys[:limit]:
        obj = f[k]
        if isinstance(obj, h5py.Dataset):
            parts.append(f"{k!r} {tuple(obj.shape)} {obj.dtype}")
        else:
            inner = []
            obj.visititems(
                lambda name, o, inner=inner: (
                    inner.append(f"{name} {tuple(o.shape)}") if isinstance(o, h5py.Dataset) else None
                )
            )
            parts.append(f"{k!r}/ (group: {', '.join(inner[:4]) or 'no datasets'})")
    if len(keys) > limit:
        parts.append(f"... {len(keys) - limit} more keys")
    return "; ".join(parts) if parts else "an empty file"


def parameters_from_name(stem: str) -> dict[str, float]:
    """``1D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train`` -> ``{"eta": 0.01, "zeta": 0.01}``."""
    out = {}
    for token in stem.split("_"):
        m = re.fullmatch(r"([A-Za-z]+)([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", token)
        if m:
            out[PARAMETER_NAMES.get(m.group(1).lower(), m.group(1))] = float(m.group(2))
    return out


def parameters_from_attrs(attrs: h5py.AttributeManager) -> dict[str, float]:
    out = {}
    for k, v in attrs.items():
        v = np.asarray(v)
        if v.size == 1 and v.dtype.kind in "iuf":
            out[str(k)] = float(v.reshape(-1)[0])
    return out


def regular_times(t: Any, n_steps: int, path: str, key: str) -> np.ndarray:
    """The first ``n_steps`` entries of ``t`` (which has ``n_steps`` or ``n_steps + 1``), checked for constant dt."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if t.size not in (n_steps, n_steps + 1):
        raise FormatError(
            f"{path}: '{key}' has {t.size} entries, expected {n_steps} or {n_steps + 1} (one per snapshot of the data)"
        )
    t = t[:n_steps]
    if n_steps == 1:
        return t
    dt = (t[-1] - t[0]) / (n_steps - 1)
    steps = np.diff(t)
    if not dt > 0 or not np.allclose(steps, dt, rtol=1e-3, atol=0):
        raise FormatError(
            f"{path}: '{key}' should increase with a constant step (The Well's layout), found steps {steps[:5]}..."
        )
    return t[0] + dt * np.arange(n_steps)


def coordinates(f: h5py.Group, path: str, resolution: Sequence[int], keys: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for axis, n, key in zip(SPACE_AXES, resolution, keys):
        if key not in f:
            raise FormatError(
                f"{path}: missing coordinate '{key}' for spatial axis {axis} of {len(resolution)}; found {describe(f)}"
            )
        c = np.asarray(f[key][()], dtype=np.float64)
        if c.shape != (n,):
            raise FormatError(f"{path}: '{key}' has shape {c.shape}, expected ({n},) (cell centres of axis {axis})")
        out[axis] = c
    return out


def bc_from_name(stem: str, table: Sequence[tuple[str, str]], default: str, what: str) -> str:
    for token, bc in table:
        if token in stem:
            return bc
    warnings.warn(
        f"{stem}: boundary conditions not recognised from the file name; assuming {default!r} for {what} "
        f"(pass boundary_conditions= to convert_pdebench to set them)",
        stacklevel=2,
    )
    return default


# -- the four layouts ---------------------------------------------------------------------------------------------
class AbstractLayout(ABC):
    """One PDEBench layout: recognises its keys, describes the grid and fields, reads trajectories ``[start, stop)``."""

    name: ClassVar[str]
    n_trajectories: int
    coords: dict[str, np.ndarray]
    time: np.ndarray
    fields: tuple[FieldSpec, ...]
    boundary_conditions: str
    parameters: dict[str, float]
    itemsize: int = 4  # bytes per value as read (float32 or wider)

    def __init__(self, f: h5py.File, path: str) -> None:
        self.f, self.path, self.stem = f, path, Path(path).stem
        self.parameters = parameters_from_attrs(f.attrs)

    @staticmethod
    @abstractmethod
    def matches(f: h5py.File) -> bool:
        """Whether the file's keys are this layout's."""

    @abstractmethod
    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Trajectories ``start:stop`` in The Well's layout: ``{field: (B, [T,] *space[, n_dims])}``."""

    @property
    def trajectory_bytes(self) -> int:
        """Bytes one trajectory occupies in memory after reading."""
        n_space, n_t, d = int(np.prod([len(c) for c in self.coords.values()])), len(self.time), len(self.coords)
        return self.itemsize * n_space * sum((n_t if fs.time_varying else 1) * d**fs.order for fs in self.fields)


class TensorLayout(AbstractLayout):
    """Layout 1: ``tensor (N, T, *space)``, one scalar field ``u``, periodic."""

    name = "tensor"

    @staticmethod
    def matches(f: h5py.File) -> bool:
        return isinstance(f.get("tensor"), h5py.Dataset) and "nu" not in f

    def __init__(self, f: h5py.File, path: str) -> None:
        super().__init__(f, path)
        self.tensor = f["tensor"]
        shape = self.tensor.shape
        self.itemsize = max(4, self.tensor.dtype.itemsize)
        if not 3 <= len(shape) <= 5:
            raise FormatError(f"{path}: 'tensor' has shape {shape}, expected (N, T, X[, Y, Z]); {EXPECTED}")
        self.n_trajectories = shape[0]
        space = shape[2:]
        self.coords = coordinates(f, path, space, [f"{a}-coordinate" for a in SPACE_AXES])
        if "t-coordinate" not in f:
            raise FormatError(f"{path}: layout 'tensor' without 't-coordinate'; found {describe(f)}")
        self.time = regular_times(f["t-coordinate"][()], shape[1], path, "t-coordinate")
        self.fields = (FieldSpec("u"),)
        self.boundary_conditions = "periodic"

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {"u": self.tensor[start:stop]}


class DarcyLayout(AbstractLayout):
    """Layout 2: coefficient ``nu (N, X, Y)`` -> constant field ``a``; solution ``tensor (N, 1, X, Y)`` -> ``u``,
    T = 1."""

    name = "darcy"

    @staticmethod
    def matches(f: h5py.File) -> bool:
        return isinstance(f.get("tensor"), h5py.Dataset) and isinstance(f.get("nu"), h5py.Dataset)

    def __init__(self, f: h5py.File, path: str) -> None:
        super().__init__(f, path)
        self.tensor, self.nu = f["tensor"], f["nu"]
        u, a = self.tensor.shape, self.nu.shape
        self.itemsize = max(4, self.tensor.dtype.itemsize, self.nu.dtype.itemsize)
        if len(u) != 4 or u[1] != 1 or a != (u[0],) + u[2:]:
            raise FormatError(
                f"{path}: Darcy layout expects 'tensor' (N, 1, X, Y) and 'nu' (N, X, Y), found 'tensor' {u}, 'nu' {a}"
            )
        self.n_trajectories = u[0]
        self.coords = coordinates(f, path, u[2:], ["x-coordinate", "y-coordinate"])
        self.time = np.zeros(1)
        self.fields = (FieldSpec("a", time_varying=False), FieldSpec("u"))
        self.boundary_conditions = "wall"

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {"a": self.nu[start:stop], "u": self.tensor[start:stop]}


class CFDLayout(AbstractLayout):
    """Layout 3: ``density``, ``pressure`` (t0) and ``Vx, Vy, Vz`` -> ``velocity`` (t1), each ``(N, T, *space)``."""

    name = "cfd"
    VELOCITY = ("Vx", "Vy", "Vz")

    @staticmethod
    def matches(f: h5py.File) -> bool:
        return all(isinstance(f.get(k), h5py.Dataset) for k in ("density", "pressure", "Vx"))

    def __init__(self, f: h5py.File, path: str) -> None:
        super().__init__(f, path)
        shape = f["density"].shape
        self.itemsize = max(4, f["density"].dtype.itemsize)
        n_dims = len(shape) - 2
        if not 1 <= n_dims <= 3:
            raise FormatError(f"{path}: 'density' has shape {shape}, expected (N, T, X[, Y, Z])")
        self.velocity_keys = self.VELOCITY[:n_dims]
        for k in ("pressure",) + self.velocity_keys:
            if k not in f or f[k].shape != shape:
                found = tuple(f[k].shape) if k in f else "missing"
                raise FormatError(
                    f"{path}: CFD layout: '{k}' should have the shape of 'density' {shape}, found {found}"
                )
        self.n_trajectories = shape[0]
        self.coords = coordinates(f, path, shape[2:], [f"{a}-coordinate" for a in SPACE_AXES])
        if "t-coordinate" not in f:
            raise FormatError(f"{path}: CFD layout without 't-coordinate'; found {describe(f)}")
        self.time = regular_times(f["t-coordinate"][()], shape[1], path, "t-coordinate")
        self.fields = (FieldSpec("density"), FieldSpec("pressure"), FieldSpec("velocity", order=1))
        self.boundary_conditions = bc_from_name(
            self.stem, (("periodic", "periodic"), ("trans", "open")), "periodic", "CFD"
        )

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        f = self.f
        velocity = np.stack([f[k][start:stop] for k in self.velocity_keys], axis=-1)
        return {"density": f["density"][start:stop], "pressure": f["pressure"][start:stop], "velocity": velocity}


class SeedGroupLayout(AbstractLayout):
    """Layout 4: one group per seed, ``data (T, *space, C)`` with ``grid/{x,y,t}``; channel ``c`` -> one t0 field."""

    name = "seed_groups"
    # (substring of the file name, channel names, boundary condition)
    KNOWN = (("diff-react", ("u", "v"), "wall"), ("rdb", ("h",), "open"), ("diff-sorp", ("u",), "open"))

    @staticmethod
    def matches(f: h5py.File) -> bool:
        keys = list(f.keys())
        return bool(keys) and all(
            isinstance(f[k], h5py.Group) and isinstance(f[k].get("data"), h5py.Dataset) for k in keys[:3]
        )

    def __init__(self, f: h5py.File, path: str) -> None:
        super().__init__(f, path)
        self.keys = sorted(f.keys())
        first = f[self.keys[0]]
        self.shape = first["data"].shape
        self.itemsize = max(4, first["data"].dtype.itemsize)
        n_dims = len(self.shape) - 2
        if not 1 <= n_dims <= 3:
            raise FormatError(f"{path}: '{self.keys[0]}/data' has shape {self.shape}, expected (T, X[, Y, Z], C)")
        self.n_trajectories = len(self.keys)
        grid = first.get("grid")
        if not isinstance(grid, h5py.Group):
            raise FormatError(
                f"{path}: '{self.keys[0]}/grid/' missing (expected grid/x[, grid/y], grid/t); found {describe(f)}"
            )
        self.coords = coordinates(grid, f"{path}:{self.keys[0]}/grid", self.shape[1:-1], SPACE_AXES)
        if "t" not in grid:
            raise FormatError(f"{path}: '{self.keys[0]}/grid/t' missing; found {describe(f)}")
        self.time = regular_times(grid["t"][()], self.shape[0], path, f"{self.keys[0]}/grid/t")
        n_channels = self.shape[-1]
        names, bc = None, None
        for token, known, known_bc in self.KNOWN:
            if token in self.stem and len(known) == n_channels:
                names, bc = known, known_bc
        if names is None:
            names = ("u",) if n_channels == 1 else tuple(f"u{c}" for c in range(n_channels))
            bc = bc_from_name(self.stem, (), "open", "a seed-group file")
        self.fields = tuple(FieldSpec(n) for n in names)
        self.boundary_conditions = bc

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        blocks = []
        for key in self.keys[start:stop]:
            g = self.f[key]
            ds = g.get("data") if isinstance(g, h5py.Group) else None
            if not isinstance(ds, h5py.Dataset) or ds.shape != self.shape:
                found = tuple(ds.shape) if isinstance(ds, h5py.Dataset) else "missing"
                raise FormatError(
                    f"{self.path}: '{key}/data' has shape {found}, expected {self.shape} like '{self.keys[0]}/data'"
                )
            for axis, c in self.coords.items():
                g_axis = g.get(f"grid/{axis}")
                if not isinstance(g_axis, h5py.Dataset) or not np.allclose(
                    np.asarray(g_axis[()], np.float64), c, rtol=1e-6, atol=1e-7
                ):
                    raise FormatError(
                        f"{self.path}: '{key}/grid/{axis}' missing or different from '{self.keys[0]}/grid/{axis}' "
                        "(one grid per file)"
                    )
            blocks.append(ds[()])
        data = np.stack(blocks)  # (B, T, *space, C)
        return {fs.name: data[..., c] for c, fs in enumerate(self.fields)}


LAYOUTS: tuple[type[AbstractLayout], ...] = (DarcyLayout, TensorLayout, CFDLayout, SeedGroupLayout)


def detect_layout(f: h5py.File, path: str) -> AbstractLayout:
    """The layout of an open PDEBench file; `FormatError` naming what was found and the four layouts expected."""
    for layout in LAYOUTS:
        if layout.matches(f):
            return layout(f, path)
    raise FormatError(f"{path}: not a PDEBench file this importer knows; found {describe(f)}; {EXPECTED}")


# -- splits --------------------------------------------------------------------------------------------------------
def split_assignment(n: int, split: Sequence[float], seed: int) -> np.ndarray:
    """Split id (0 train, 1 valid, 2 test) per trajectory: a random permutation (``default_rng(seed)``) cut by
    fractions.

    ``valid`` and ``test`` get ``round(n * fraction)`` trajectories (at least one if their fraction is positive and
    ``n >= 3``); ``train`` the rest.
    """
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(
            f"split should be three non-negative fractions (train, valid, test) summing to 1, got {split!r}"
        )
    counts = [int(round(n * p)) for p in fractions[1:]]
    counts = [max(c, 1) if p > 0 and n >= 3 else c for c, p in zip(counts, fractions[1:])]
    n_train = n - sum(counts)
    if n_train < 1:
        raise ValueError(f"split {tuple(split)} of {n} trajectories leaves none for training")
    ids = np.zeros(n, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(n)
    ids[perm[n_train : n_train + counts[0]]] = 1
    ids[perm[n_train + counts[0] :]] = 2
    return ids


# -- the importer --------------------------------------------------------------------------------------------------
def convert_pdebench(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: Sequence[float] | None = DEFAULT_SPLIT,
    seed: int = 0,
    max_trajectories: int | None = None,
    progress: bool = True,
    dataset_name: str | None = None,
    boundary_conditions: str | Sequence[str] | None = None,
    batch_bytes: int = BATCH_BYTES,
    overwrite: bool = False,
) -> list[Path]:
    """Convert one PDEBench HDF5 file (any of its four layouts) into The Well's layout, in bounded memory.

    Arguments:
        src: a PDEBench ``.hdf5`` / ``.h5`` file.
        out: a dataset root folder -> ``out/data/{train,valid,test}/<src stem>.hdf5`` and ``out/stats.yaml`` (fitted
            on train); or a path ending in ``.hdf5`` / ``.h5`` -> one file with every trajectory.
        split: (train, valid, test) fractions for a root folder; trajectories are assigned by a random permutation
            (``numpy.random.default_rng(seed)``) and keep their source order within a split. ``None`` puts all of
            them in ``train``. A file ``out`` takes ``None`` (or the default, which is then not used).
        seed: seed of the split permutation.
        max_trajectories: convert only the first N trajectories of the source.
        progress: show a tqdm progress bar (trajectories read).
        dataset_name: root ``dataset_name``; default the source file's stem.
        boundary_conditions: ``"periodic" | "wall" | "open"`` (or one per axis) instead of the layout's default.
        batch_bytes: bytes of source data read per block (default 16 MiB); peak memory is about three times this.
        overwrite: replace existing output files (otherwise `FileExistsError`). An interrupted conversion
            (``.partial`` files) resumes where it stopped.

    Returns:
        the written files (train, valid, test order).
    """
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file (expected a PDEBench .hdf5/.h5 file)")
    if not h5py.is_hdf5(src):
        raise FormatError(f"{src}: not an HDF5 file; {EXPECTED}")
    single = out.suffix in (".hdf5", ".h5")
    if single and split is not None and tuple(split) != DEFAULT_SPLIT:
        raise ValueError(
            f"out={str(out)!r} is one file, so split={tuple(split)} cannot apply: pass split=None, or a folder as out"
        )
    if max_trajectories is not None and (not isinstance(max_trajectories, int) or max_trajectories < 1):
        raise ValueError(f"max_trajectories should be a positive int or None, got {max_trajectories!r}")
    if batch_bytes < 1:
        raise ValueError(f"batch_bytes should be positive, got {batch_bytes}")

    with h5py.File(src, "r") as f:
        layout = detect_layout(f, str(src))
        n = layout.n_trajectories if max_trajectories is None else min(max_trajectories, layout.n_trajectories)
        if n < 1:
            raise FormatError(f"{src}: no trajectories ({describe(f)})")
        parameters = {**parameters_from_name(src.stem), **layout.parameters}
        schema = Schema(
            dataset_name=dataset_name or src.stem,
            coords=layout.coords,
            time=layout.time,
            fields=layout.fields,
            parameters=parameters,
            boundary_conditions=layout.boundary_conditions
            if boundary_conditions is None
            else (boundary_conditions if isinstance(boundary_conditions, str) else tuple(boundary_conditions)),
        )
        if single or split is None:
            ids = np.zeros(n, dtype=np.int64)
        else:
            ids = split_assignment(n, split, seed)
        targets = {
            s: (out if single else out / "data" / SPLITS[s] / f"{src.stem}.hdf5") for s in np.unique(ids).tolist()
        }
        for path in targets.values():
            if path.exists() and not overwrite:
                raise FileExistsError(
                    f"{path} exists; pass overwrite=True (pdeforge convert --overwrite) to replace it"
                )
        if not single:  # a root holds one dataset: another's files would be mixed with these, its stats replaced
            _refuse_other_datasets(out, schema.dataset_name, f"{src.stem}.hdf5")
        provenance = {
            "source_file": src.name,
            "source_format": "pdebench",
            "pdeforge_importer": "pdeforge.datasets.convert_pdebench",
            "pdebench_layout": layout.name,
        }
        if not single and split is not None:
            provenance.update(split_fractions=[float(p) for p in split], split_seed=int(seed))
        writers = {}
        try:
            for s, path in targets.items():
                count = int((ids == s).sum())
                writers[s] = TrajectoryWriter(path, schema, count, provenance={**provenance, "split": SPLITS[s]})
            _stream(layout, ids, writers, batch_bytes, progress, src.name)
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        written = [w.close() for w in writers.values()]
    if not single and 0 in targets:
        write_stats(out)
    return written


def _refuse_other_datasets(root: Path, name: str, own: str) -> None:
    """A FileExistsError if a file of ``root``'s splits other than ``own`` belongs to a dataset other than ``name``
    (several PDEBench files make one dataset when they are converted with the same ``dataset_name``)."""
    for split in SPLITS:
        for path in sorted((root / "data" / split).glob("*.h*5")):
            if path.suffix not in (".hdf5", ".h5") or path.name == own:
                continue
            try:
                with h5py.File(path, "r") as f:
                    other = decode(f.attrs.get("dataset_name"))
            except OSError:
                other = None
            if other != name:
                raise FileExistsError(
                    f"{root}: already holds another dataset ({path.relative_to(root)}: dataset_name {other!r}, this "
                    f"conversion {name!r}); its files would be mixed with these: convert into a new folder (several "
                    "files make one dataset when converted with the same dataset_name)"
                )


def _stream(
    layout: AbstractLayout,
    ids: np.ndarray,
    writers: dict[int, TrajectoryWriter],
    batch_bytes: int,
    progress: bool,
    desc: str,
) -> None:
    """Read blocks of trajectories in source order and hand each row to its split's writer (skipping rows an
    interrupted run already wrote)."""
    n = len(ids)
    rows = max(1, batch_bytes // max(1, layout.trajectory_bytes))
    seen = {s: 0 for s in writers}
    with tqdm(total=n, desc=desc, unit="traj", disable=not progress) as bar:
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            need = {}
            for s, w in writers.items():
                sel = np.flatnonzero(ids[start:stop] == s)
                keep = sel[seen[s] + np.arange(sel.size) >= w.n_written]
                seen[s] += sel.size
                if keep.size:
                    need[s] = keep
            if need:
                block = layout.read(start, stop)
                for s, keep in need.items():
                    part = block if keep.size == stop - start else {k: v[keep] for k, v in block.items()}
                    writers[s].write(part)
                del block, part
            bar.update(stop - start)
