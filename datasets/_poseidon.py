"""Import Poseidon's downstream datasets (the assembled netCDF files) into The Well's layout, in bounded memory.

Poseidon (Herde et al. 2024, "Poseidon: efficient foundation models for PDEs", NeurIPS; code camlab-ethz/poseidon,
data on the Hugging Face Hub ``camlab-ethz/<name>``) ships each downstream task as one netCDF4 file once its chunks are
assembled (``NS-PwC.nc``, ``CE-RP.nc``, ...). netCDF4 is HDF5 underneath: the variables are read with h5py, trajectory
block by trajectory block. Which variable and channels make which field is taken from scOT's problem classes
(``scOT/problems/...``), file by file; the file's name says which problem it is (as in scOT), or ``problem=`` does.

Supported problems (file stem: fields; ``velocity`` is a vector field of the channels ``u, v``):

- incompressible Navier-Stokes ``NS-PwC`` (+ ``tracer``), ``NS-BB``, ``NS-Gauss``, ``NS-SL``, ``NS-SVS``, ``NS-Sines``:
  ``velocity[:, :, 0:2]`` -> ``velocity`` (``NS-PwC``: channel 2, when present, -> ``tracer``). ``NS-SL`` is stored
  transposed; its spatial axes are swapped as scOT does. The constant density 1 and pressure 0 that scOT adds are not
  data and are not written.
- ``FNS-KF`` (Kolmogorov flow): ``solution[:, :, 0:2]`` -> ``velocity`` (the forcing ``0.1 sin(2 pi (x + y))`` is
  analytic and not in the file; it is not written).
- compressible Euler ``CE-Gauss``, ``CE-KH``, ``CE-RP``, ``CE-CRP``, ``CE-RPUI``: ``data[:, :, 0]`` -> ``density``,
  ``1:3`` -> ``velocity``, ``3`` -> ``pressure``; ``CE-RM``: the same from ``solution``; ``GCE-RT``: the same plus
  ``solution[:, :, 5]`` -> ``gravitational_potential``.
- wave ``Wave-Layer``, ``Wave-Gauss``: ``solution`` -> ``u``, ``c (N, X, Y)`` -> the constant field ``c``.
- Allen-Cahn ``ACE``: ``solution`` -> ``u``.
- steady: ``Poisson-Gauss``: ``source (N, X, Y)`` -> constant field ``f``, ``solution`` -> ``u`` (one snapshot);
  ``SE-AF`` (airfoil): ``solution[:, 0]`` -> constant field ``shape``, ``solution[:, 1]`` -> ``density`` (one
  snapshot). Like PDEBench's Darcy files these have no next-step windows: the operator task reads them.
  (``Helmholtz.h5``, one group per sample, is not supported.)

Values are copied exactly (float32, as scOT reads them); scOT's normalisation constants are not applied.
Time: snapshot ``k`` at ``k / K`` with scOT's time scale ``K`` of the problem (``"time"`` in its constants: 20 for the
fluids and ``Wave-Layer``, 10 for ``GCE-RT``, 15 for ``Wave-Gauss``, 19 for ``ACE``): the lead times scOT is trained on.
Space: the files carry no coordinates; the unit square with ``n`` points per axis at ``k / n``, axes ``x, y`` in the
array's order. Boundary conditions (the files do not record them; override with ``boundary_conditions=``):
periodic for the Navier-Stokes and Euler problems (their solvers' periodic unit square), and, assumed, for Allen-Cahn
and the wave problems; ``wall`` for ``Poisson-Gauss`` (zero Dirichlet); ``open`` for ``SE-AF`` and ``GCE-RT``
(assumed). Check Poseidon's paper where a model uses them.

Splits: ``split="poseidon"`` (the default) reproduces scOT's: of the first ``N_max`` trajectories, the last
``N_test`` are ``test``, the ``N_val`` before them ``valid``, the rest ``train`` (e.g. ``NS-PwC``: 20000, 120, 240).
Fractions ``(train, valid, test)`` split by a seeded permutation instead; ``None`` puts everything in ``train``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ._format import FormatError
from ._pdebench import SPLITS, _refuse_other_datasets, _stream, describe, split_assignment
from ._stats import write_stats
from ._writer import FieldSpec, Schema, TrajectoryWriter

__all__ = ["convert_poseidon", "POSEIDON_PROBLEMS", "poseidon_split"]

BATCH_BYTES = 16 << 20


@dataclass(frozen=True)
class Part:
    """One field of a problem: ``variable``'s ``channels`` (None: the variable has no channel axis, or one channel).

    ``optional`` parts are written when the file has their channels (``NS-PwC``'s tracer).
    """

    name: str
    variable: str
    channels: tuple[int, ...] | None = None
    time_varying: bool = True
    optional: bool = False

    @property
    def order(self) -> int:
        return 1 if self.channels is not None and len(self.channels) == 2 else 0


@dataclass(frozen=True)
class Problem:
    """A Poseidon downstream task: its file, scOT dataset name, fields, split sizes, time scale and boundaries.

    ``time_scale`` None marks a steady problem (one snapshot per trajectory).
    """

    file: str
    scot: str
    parts: tuple[Part, ...]
    n_max: int
    n_val: int
    n_test: int
    time_scale: float | None
    boundary_conditions: str = "periodic"
    transpose: bool = False


NS = dict(n_max=20000, n_val=120, n_test=240, time_scale=20.0)  # scOT's sizes and time scale of most problems
WAVE_PARTS = (Part("c", "c", time_varying=False), Part("u", "solution"))


def _euler_parts(variable: str) -> tuple[Part, ...]:
    """rho, (u, v), p in channels 0, 1:3, 3 of ``variable``."""
    return (Part("density", variable, (0,)), Part("velocity", variable, (1, 2)), Part("pressure", variable, (3,)))


def _ns(file: str, scot: str, n_max: int = 20000, tracer: bool = False, transpose: bool = False) -> Problem:
    tracer_part = (Part("tracer", "velocity", (2,), optional=True),) if tracer else ()
    parts = (Part("velocity", "velocity", (0, 1)),) + tracer_part
    return Problem(file, scot, parts, **dict(NS, n_max=n_max), transpose=transpose)


def _euler(file: str, scot: str, variable: str = "data", **sizes: int) -> Problem:
    return Problem(file, scot, _euler_parts(variable), **{**NS, **sizes})


INCOMPRESSIBLE = "fluids.incompressible."
COMPRESSIBLE = "fluids.compressible."
POSEIDON_PROBLEMS: dict[str, Problem] = {
    p.file: p
    for p in (
        _ns("NS-PwC", INCOMPRESSIBLE + "PiecewiseConstants", tracer=True),
        _ns("NS-BB", INCOMPRESSIBLE + "BrownianBridge"),
        _ns("NS-Gauss", INCOMPRESSIBLE + "Gaussians"),
        _ns("NS-SL", INCOMPRESSIBLE + "ShearLayer", n_max=40000, transpose=True),
        _ns("NS-SVS", INCOMPRESSIBLE + "VortexSheet"),
        _ns("NS-Sines", INCOMPRESSIBLE + "Sines"),
        Problem("FNS-KF", INCOMPRESSIBLE + "forcing.KolmogorovFlow", (Part("velocity", "solution", (0, 1)),), **NS),
        _euler("CE-Gauss", COMPRESSIBLE + "Gaussians"),
        _euler("CE-KH", COMPRESSIBLE + "KelvinHelmholtz"),
        _euler("CE-RP", COMPRESSIBLE + "Riemann"),
        _euler("CE-CRP", COMPRESSIBLE + "RiemannCurved"),
        _euler("CE-RPUI", COMPRESSIBLE + "RiemannKelvinHelmholtz"),
        _euler("CE-RM", COMPRESSIBLE + "RichtmyerMeshkov", "solution", n_max=1260, n_val=100, n_test=130),
        Problem(
            "GCE-RT",
            COMPRESSIBLE + "gravity.RayleighTaylor",
            _euler_parts("solution") + (Part("gravitational_potential", "solution", (5,)),),
            **dict(n_max=1260, n_val=100, n_test=130, time_scale=10.0, boundary_conditions="open"),
        ),
        Problem("Wave-Layer", "wave.Layer", WAVE_PARTS, **dict(n_max=10512, n_val=60, n_test=240, time_scale=20.0)),
        Problem("Wave-Gauss", "wave.Gaussians", WAVE_PARTS, **dict(n_max=10512, n_val=60, n_test=240, time_scale=15.0)),
        Problem(
            "ACE",
            "reaction_diffusion.AllenCahn",
            (Part("u", "solution"),),
            **dict(n_max=15000, n_val=60, n_test=240, time_scale=19.0),
        ),
        Problem(
            "Poisson-Gauss",
            "elliptic.poisson.Gaussians",
            (Part("f", "source", time_varying=False), Part("u", "solution")),
            **dict(NS, time_scale=None, boundary_conditions="wall"),
        ),
        Problem(
            "SE-AF",
            COMPRESSIBLE + "steady.Airfoil",
            (Part("shape", "solution", (0,), time_varying=False), Part("density", "solution", (1,))),
            **dict(NS, n_max=10869, time_scale=None, boundary_conditions="open"),
        ),
    )
}


def poseidon_split(n: int, problem: Problem) -> np.ndarray:
    """scOT's split of a file of ``n`` trajectories: split id (0 train, 1 valid, 2 test, -1 unused) per trajectory.

    Of the first ``min(n, N_max)``: the last ``N_test`` test, the ``N_val`` before them valid, the rest train.
    """
    m = min(n, problem.n_max)
    if m <= problem.n_val + problem.n_test:
        raise ValueError(
            f"{problem.file}: {n} trajectories are too few for Poseidon's split ({problem.n_val} valid + "
            f"{problem.n_test} test + train): pass split fractions (--split 0.8 0.1 0.1) or split=None"
        )
    ids = np.full(n, -1, dtype=np.int64)
    ids[: m - problem.n_val - problem.n_test] = 0
    ids[m - problem.n_val - problem.n_test : m - problem.n_test] = 1
    ids[m - problem.n_test : m] = 2
    return ids


class PoseidonReader:
    """Reads the parts of one problem from an open file, trajectories ``[start, stop)``, in The Well's layout."""

    def __init__(self, f: h5py.File, path: str, problem: Problem) -> None:
        self.f, self.path, self.problem = f, path, problem
        steady = problem.time_scale is None
        self.parts, self.sources, shapes = [], {}, {}
        n_traj = None
        for part in problem.parts:
            ds = f.get(part.variable)
            if not isinstance(ds, h5py.Dataset):
                raise FormatError(
                    f"{path}: {problem.file} ({problem.scot}) needs the variable '{part.variable}'; found {describe(f)}"
                )
            with_time = part.time_varying and not steady
            base = 3 + with_time  # (N, [T,] X, Y)
            if ds.ndim == base + 1:
                axis = base - 2
                need = max(part.channels or (0,)) + 1
                if ds.shape[axis] < need:
                    if part.optional:
                        continue
                    raise FormatError(
                        f"{path}: '{part.variable}' {ds.shape} has {ds.shape[axis]} channels on axis {axis}, "
                        f"expected at least {need} for {part.name!r} ({problem.file})"
                    )
            elif ds.ndim != base or part.channels not in (None, (0,)):
                expected = "(N, T, C, X, Y)" if with_time else "(N, C, X, Y)"
                if part.channels is None:
                    expected += f" or (N, {'T, ' if with_time else ''}X, Y)"
                raise FormatError(
                    f"{path}: '{part.variable}' has shape {ds.shape}, expected {expected} for {part.name!r}"
                )
            elif part.optional:
                continue
            self.parts.append(part)
            self.sources[part.variable] = ds
            shapes[part.name] = ds.shape
            n_traj = ds.shape[0] if n_traj is None else n_traj
            if ds.shape[0] != n_traj or tuple(ds.shape[-2:]) != tuple(next(iter(shapes.values()))[-2:]):
                raise FormatError(
                    f"{path}: variables disagree on trajectories or grid: {shapes} (expected (N, ..., X, Y) alike)"
                )
        self.n_trajectories = int(n_traj)
        first = next(iter(shapes.values()))
        space = tuple(first[-2:])[::-1] if problem.transpose else tuple(first[-2:])
        self.coords = {axis: np.arange(n, dtype=np.float64) / n for axis, n in zip(("x", "y"), space)}
        n_t = 1
        for part in self.parts:
            if part.time_varying and not steady:
                n_t = shapes[part.name][1]
        self.time = np.zeros(1) if steady else np.arange(n_t, dtype=np.float64) / problem.time_scale
        self.fields = tuple(FieldSpec(p.name, order=p.order, time_varying=p.time_varying) for p in self.parts)

    @property
    def trajectory_bytes(self) -> int:
        """Bytes of one trajectory's source variables as read (float64 at most), twice for the reordered copies."""
        return 2 * sum(8 * int(np.prod(ds.shape[1:])) for ds in self.sources.values())

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        blocks = {name: _decoded(ds, start, stop) for name, ds in self.sources.items()}
        steady = self.problem.time_scale is None
        out = {}
        for part in self.parts:
            a = blocks[part.variable]
            with_time = part.time_varying and not steady
            if a.ndim == 4 + with_time:  # a channel axis after (N[, T]): take the part's channels, move them last
                axis = 1 + with_time
                a = np.moveaxis(np.take(a, list(part.channels or (0,)), axis=axis), axis, -1)
            else:
                a = a[..., None]
            if self.problem.transpose:
                a = np.swapaxes(a, -3, -2)
            if part.order == 0:
                a = a[..., 0]
            if part.time_varying and steady:
                a = a[:, None]
            out[part.name] = np.ascontiguousarray(a, dtype=np.float32)
        return out


def _decoded(ds: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` with netCDF's ``scale_factor`` / ``add_offset`` packing undone (CF conventions)."""
    a = ds[start:stop]
    scale, offset = ds.attrs.get("scale_factor"), ds.attrs.get("add_offset")
    if scale is not None or offset is not None:
        a = a.astype(np.float64) * (1.0 if scale is None else float(np.asarray(scale).reshape(-1)[0]))
        a = a + (0.0 if offset is None else float(np.asarray(offset).reshape(-1)[0]))
    return a


def problem_of(src: Path, problem: str | None) -> Problem:
    """The problem named by ``problem`` or by the file's stem (``NS-PwC.nc`` -> ``NS-PwC``), else a FormatError."""
    key = problem or src.stem
    for name, p in POSEIDON_PROBLEMS.items():
        if key.lower() in (name.lower(), p.scot.lower()):
            return p
    raise FormatError(
        f"{src}: {'problem ' + repr(problem) if problem else 'the file name'} is not one of Poseidon's downstream "
        f"problems this importer knows; expected one of {', '.join(POSEIDON_PROBLEMS)} (as the file stem, or pass "
        "problem= / --problem for a renamed file)"
    )


def convert_poseidon(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    problem: str | None = None,
    split: str | Sequence[float] | None = "poseidon",
    seed: int = 0,
    max_trajectories: int | None = None,
    progress: bool = True,
    dataset_name: str | None = None,
    boundary_conditions: str | Sequence[str] | None = None,
    batch_bytes: int = BATCH_BYTES,
    overwrite: bool = False,
) -> list[Path]:
    """Convert one of Poseidon's downstream netCDF files into a dataset root in The Well's layout.

    Arguments:
        src: the assembled file (``NS-PwC.nc``, ``CE-RP.nc``, ...; see the module docstring for the list).
        out: a dataset root folder -> ``out/data/{train,valid,test}/<stem>.hdf5`` and ``out/stats.yaml`` (train).
        problem: the file stem or scOT dataset name (``"NS-PwC"`` or ``"fluids.incompressible.PiecewiseConstants"``)
            when the file was renamed; default: the file's stem.
        split: ``"poseidon"`` (scOT's split, the default), ``(train, valid, test)`` fractions (seeded permutation),
            or ``None`` (all in ``train``).
        seed: seed of a fractional split.
        max_trajectories: convert only the first N trajectories (before splitting).
        progress: a tqdm bar of trajectories read.
        dataset_name: root ``dataset_name``; default the problem's file stem.
        boundary_conditions: ``"periodic" | "wall" | "open"`` (or one per axis) instead of the table's.
        batch_bytes: source bytes read per block (default 16 MiB); peak memory is a small multiple of it.
        overwrite: replace existing output files (otherwise `FileExistsError`); an interrupted run resumes.

    Returns:
        the written files (train, valid, test order).
    """
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file (expected one of Poseidon's assembled .nc files)")
    prob = problem_of(src, problem)
    if not h5py.is_hdf5(src):
        raise FormatError(
            f"{src}: not a netCDF4/HDF5 file (expected Poseidon's assembled netCDF4 file; a netCDF3 file converts "
            "with `nccopy -k nc4 IN OUT`)"
        )
    if max_trajectories is not None and (not isinstance(max_trajectories, int) or max_trajectories < 1):
        raise ValueError(f"max_trajectories should be a positive int or None, got {max_trajectories!r}")
    if batch_bytes < 1:
        raise ValueError(f"batch_bytes should be positive, got {batch_bytes}")
    with h5py.File(src, "r") as f:
        reader = PoseidonReader(f, str(src), prob)
        n = reader.n_trajectories if max_trajectories is None else min(max_trajectories, reader.n_trajectories)
        if n < 1:
            raise FormatError(f"{src}: no trajectories ({describe(f)})")
        if split == "poseidon":
            ids = poseidon_split(n, prob)
        elif split is None:
            ids = np.zeros(n, dtype=np.int64)
        elif isinstance(split, str):
            raise ValueError(f"split should be 'poseidon', three fractions or None, got {split!r}")
        else:
            ids = split_assignment(n, split, seed)
        schema = Schema(
            dataset_name=dataset_name or prob.file,
            coords=reader.coords,
            time=reader.time,
            fields=reader.fields,
            boundary_conditions=prob.boundary_conditions
            if boundary_conditions is None
            else (boundary_conditions if isinstance(boundary_conditions, str) else tuple(boundary_conditions)),
        )
        stem = f"{src.stem}.hdf5"
        targets = {s: out / "data" / SPLITS[s] / stem for s in np.unique(ids[ids >= 0]).tolist()}
        for path in targets.values():
            if path.exists() and not overwrite:
                raise FileExistsError(
                    f"{path} exists; pass overwrite=True (pdeforge convert --overwrite) to replace it"
                )
        _refuse_other_datasets(out, schema.dataset_name, stem)
        provenance = {
            "source_file": src.name,
            "source_format": "poseidon",
            "pdeforge_importer": "pdeforge.datasets.convert_poseidon",
            "poseidon_problem": prob.file,
            "scot_dataset": prob.scot,
            "split_rule": split if isinstance(split, str) else ("none" if split is None else [float(p) for p in split]),
        }
        writers = {}
        try:
            for s, path in targets.items():
                count = int((ids == s).sum())
                writers[s] = TrajectoryWriter(path, schema, count, provenance={**provenance, "split": SPLITS[s]})
            _stream(reader, ids, writers, batch_bytes, progress, src.name)  # rows with id -1 are skipped
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        written = [w.close() for w in writers.values()]
    if 0 in targets:
        write_stats(out)
    return written
