"""`TrajectoryDataset`: lazy windows over HDF5 trajectories (The Well's layout), channels first.

Windows are ordered exactly as The Well's ``WellDataset`` orders them: sorted files, then trajectories, then start
times; sample ``i`` of both is the same window. Everything is read through `TrajectoryDataset.read`, which takes
any trajectory and any list of time indices, so other views (all pairs with lead time, long histories, collocation
points, observations) are built on it without copying the indexing.

Values are checked as they are read: the first NaN or Inf is a `FormatError` naming the file, field, trajectory,
time index and grid point (``allow_nonfinite=True`` returns them as stored, for a plot that shows them). A read
costs one ``isfinite`` pass over what it read; a whole-file scan is ``pdeforge inspect``'s job.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from ._format import TENSOR_GROUPS, FileInfo, FormatError, check_consistent, list_data_files, read_file_info
from ._metadata import DatasetMetadata
from ._remote import RemoteHDF5File, is_url, local_path, remote_size, storage_options_for, url_join
from ._stats import Normalizer, load_stats

__all__ = ["TrajectoryDataset"]

CACHE_BYTES = 64 << 20  # files below this size are read into memory once per process


class TrajectoryDataset(Dataset):
    """Windows of ``n_steps_input`` + ``n_steps_output`` snapshots, ``dt_stride`` apart, from HDF5 trajectories.

    Arguments:
        path: an ``.hdf5`` file, a folder of ``.hdf5``/``.h5`` files, or a dataset root (with ``split``).
        n_steps_input, n_steps_output, dt_stride: window shape; a trajectory of T snapshots gives
            ``T - dt_stride * (n_steps_input + n_steps_output - 1)`` windows. ``n_steps_input=0`` is the operator
            view of steady data (e.g. Darcy: ``constant_fields`` a -> ``output_fields`` u, one snapshot).
        split: ``"train" | "valid" | "test"`` when ``path`` is a dataset root (``ROOT/data/<split>/*.hdf5``).
        fields: keep only these fields (core names, e.g. ``("u", "velocity")``); default all.
        normalization: ``None | "zscore" | "rms"``, with statistics from ``stats`` (a path or a dict; default the
            root's ``stats.yaml``, fitted on the train split) applied identically to every split.
        full_trajectory: one sample per trajectory: the first ``n_steps_input`` frames in, all later frames out
            (``dt_stride`` apart), for rollout evaluation.
        max_trajectories: use only the first N trajectories (in file order).
        cache_small: read files smaller than 64 MiB into memory once per process.
        allow_nonfinite: return NaN/Inf as stored; by default the first one read is a `FormatError` naming file,
            field, trajectory, time index and point (a model trained or scored on it would only report "nan").
        storage_options: the fsspec options of a URL ``path`` (see `pdeforge.datasets._remote`); default those set
            for its root by ``set_storage_options`` in this process. Held by the dataset (and pickled with it), so
            every DataLoader worker opens the files with them, whatever its start method.

    A sample is a dict of float32 tensors, channels first: ``input_fields (T_in, C, *space)``,
    ``output_fields (T_out, C, *space)``, ``constant_fields (C_const, *space)`` (if the file has time-invariant
    fields), ``scalars (S,)`` (time-invariant scalars: equation parameters), ``input_time (T_in,)``,
    ``output_time (T_out,)`` (absolute times), ``grid (n_dims, *space)``, ``trajectory`` and ``start`` (int64).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_steps_input: int = 1,
        n_steps_output: int = 1,
        dt_stride: int = 1,
        *,
        split: str | None = None,
        fields: Sequence[str] | None = None,
        normalization: str | None = None,
        stats: str | os.PathLike | dict | None = None,
        full_trajectory: bool = False,
        max_trajectories: int | None = None,
        cache_small: bool = True,
        allow_nonfinite: bool = False,
        storage_options: dict | None = None,
    ) -> None:
        super().__init__()
        for name, v, low in (
            ("n_steps_input", n_steps_input, 0),
            ("n_steps_output", n_steps_output, 1),
            ("dt_stride", dt_stride, 1),
        ):
            if not isinstance(v, int) or v < low:
                raise ValueError(f"{name} should be an int >= {low}, got {v!r}")
        path = local_path(path)
        self.url = str(path) if is_url(path) else None  # read through the block cache (datasets/_remote.py)
        # resolved once, here (the argument, else those set for the URL's root in this process): held by the dataset,
        # they are pickled with it into every DataLoader worker, forked or spawned (a spawned one has no registry)
        self.storage_options = storage_options_for(self.url, storage_options) if self.url else storage_options
        self.root = Path(path) if self.url is None else self.url
        self.split = split
        self.files: list[FileInfo] = [
            read_file_info(p, storage_options=self.storage_options)
            for p in list_data_files(path, split, self.storage_options)
        ]
        check_consistent(self.files)
        ref = self.files[0]
        self.n_spatial_dims = ref.n_spatial_dims
        self.n_steps_input, self.dt_stride = n_steps_input, dt_stride
        self.full_trajectory = full_trajectory
        self.cache_small = cache_small
        self.allow_nonfinite = allow_nonfinite

        # trajectories in The Well's order: (file, trajectory)
        trajs = [(fi, ti) for fi, info in enumerate(self.files) for ti in range(info.n_trajectories)]
        if max_trajectories is not None:
            if max_trajectories < 1:
                raise ValueError(f"max_trajectories should be >= 1, got {max_trajectories}")
            trajs = trajs[:max_trajectories]
        self.trajectories: list[tuple[int, int]] = trajs
        self.n_steps = ref.n_steps
        if full_trajectory:
            n_steps_output = (self.n_steps - 1) // dt_stride + 1 - n_steps_input  # frames 0, s, 2s, ... <= T - 1
            if n_steps_output < 1:
                raise ValueError(
                    f"{ref.path}: {self.n_steps} snapshots are too few for full-trajectory mode with "
                    f"n_steps_input={n_steps_input}, dt_stride={dt_stride}"
                )
            self.windows_per_trajectory = 1
        else:
            span = 1 + dt_stride * (n_steps_input + n_steps_output - 1)
            self.windows_per_trajectory = self.n_steps - span + 1
            if self.windows_per_trajectory < 1:
                raise ValueError(
                    f"{ref.path}: trajectories have {self.n_steps} snapshots, too few for windows of "
                    f"n_steps_input={n_steps_input} "
                    f"+ n_steps_output={n_steps_output} with dt_stride={dt_stride} (needs {span})"
                )
        self.n_steps_output = n_steps_output

        # field selection (core names), channel bookkeeping
        all_names = [fi.name for fi in ref.fields]
        if fields is not None:
            unknown = [n for n in fields if n not in all_names]
            if unknown:
                raise ValueError(f"{ref.path}: unknown field(s) {unknown}; the file has {all_names}")
        keep = set(all_names if fields is None else fields)
        ordered = sorted((fi for fi in ref.fields if fi.name in keep), key=lambda fi: fi.order)  # stable: Well order
        self._var = [fi for fi in ordered if fi.time_varying]
        self._const = [fi for fi in ordered if not fi.time_varying]
        if not self._var:
            raise ValueError(f"{ref.path}: field selection {list(keep)} keeps no time-varying field")
        self._const_scalars = [name for name, sv, tv in ref.scalars if not tv]
        self._var_scalars = [name for name, sv, tv in ref.scalars if tv]

        self.normalizer: Normalizer | None = None
        self.const_normalizer: Normalizer | None = None
        if normalization is not None:
            stats = stats if stats is not None else self._default_stats_path()
            st = stats if isinstance(stats, dict) else load_stats(stats, storage_options)  # a URL: its root's, too
            d = self.n_spatial_dims
            self.normalizer = Normalizer(
                st, normalization, [f.name for f in self._var], [d**f.order for f in self._var]
            )
            if self._const:
                self.const_normalizer = Normalizer(
                    st, normalization, [f.name for f in self._const], [d**f.order for f in self._const]
                )
        self.metadata = self._build_metadata()
        self._pid: int | None = None
        self._handles: dict[int, h5py.File] = {}
        self._cache: dict[tuple[int, str], Any] = {}
        self._sizes: dict[int, int] = {}
        self._grid: torch.Tensor | None = None

    # -- metadata -------------------------------------------------------------------------------------------
    def _default_stats_path(self) -> Path | str:
        if self.url is not None:  # the root's: ROOT, or ROOT/data/<split>[/file.hdf5] without split
            up = 0 if self.split is not None else 3 if self.url.endswith((".hdf5", ".h5")) else 2
            return url_join(self.url.rstrip("/").rsplit("/", up)[0] if up else self.url, "stats.yaml")
        if self.split is not None:
            return self.root / "stats.yaml"
        folder = self.root if self.root.is_dir() else self.root.parent
        for cand in (folder / "stats.yaml", folder.parent.parent / "stats.yaml"):
            if cand.is_file():
                return cand
        return folder.parent.parent / "stats.yaml"

    def _channel_names(self, infos: list) -> tuple[str, ...]:
        dims = self.files[0].spatial_dims
        names = []
        for fi in infos:
            comps = [""]
            for _ in range(fi.order):
                comps = [c + d for c in comps for d in dims]
            names += [f"{fi.name}_{c}" if c else fi.name for c in comps]
        return tuple(names)

    def _build_metadata(self) -> DatasetMetadata:
        ref = self.files[0]
        lengths = []
        for c, bc in zip(ref.coords, ref.boundary_conditions):
            c = np.asarray(c)
            span = float(c[-1] - c[0]) if len(c) > 1 else 0.0
            lengths.append(span + (span / (len(c) - 1) if bc == "periodic" and len(c) > 1 else 0.0))
        return DatasetMetadata(
            dataset_name=ref.dataset_name,
            field_names=self._channel_names(self._var),
            constant_field_names=self._channel_names(self._const),
            scalar_names=tuple(self._const_scalars),
            spatial_dims=ref.spatial_dims,
            resolution=ref.resolution,
            domain_lengths=tuple(lengths),
            dt=ref.dt * self.dt_stride,
            boundary_conditions=ref.boundary_conditions,
            parameters=dict(ref.parameters),
            n_trajectories=len(self.trajectories),
            n_steps=ref.n_steps,
            grid_type=str(ref.attrs.get("grid_type", "cartesian")),
            equation=ref.attrs.get("equation"),
        )

    # -- low-level reading (per-process handles) ----------------------------------------------------------------
    def _file(self, fi: int) -> h5py.File:
        pid = os.getpid()
        if self._pid != pid:  # new DataLoader worker: never share HDF5 handles across fork
            self._handles, self._cache, self._pid = {}, {}, pid
        h = self._handles.get(fi)
        if h is None:
            path = self.files[fi].path
            h = h5py.File(path, "r") if self.url is None else RemoteHDF5File(path, self.storage_options)
            self._handles[fi] = h
        return h

    def _size(self, fi: int) -> int:
        path = self.files[fi].path
        return os.path.getsize(path) if self.url is None else remote_size(path, self.storage_options)

    def _dataset(self, fi: int, info) -> Any:
        """The h5py dataset (kept open: its chunk cache survives between reads), or its array for small files."""
        f = self._file(fi)
        key = (fi, info.name)
        obj = self._cache.get(key)
        if obj is None:
            obj = f[TENSOR_GROUPS[info.order]][info.name]
            if self.cache_small and self._sizes.setdefault(fi, self._size(fi)) < CACHE_BYTES:
                obj = obj[...]
            self._cache[key] = obj
        return obj

    def _read_field(self, fi: int, ti: int, info, times: np.ndarray | None) -> np.ndarray:
        """-> (T, k, *space) for time-varying fields, (k, *space) otherwise; k = n_dims ** order."""
        ds = self._dataset(fi, info)
        idx: tuple = (ti,) if info.sample_varying else ()
        if info.time_varying:
            idx += (_time_index(times),)
        a = np.asarray(ds[idx])
        if info.time_varying and isinstance(idx[-1], np.ndarray) and not np.array_equal(idx[-1], times):
            a = a[np.searchsorted(idx[-1], times)]  # duplicates / unsorted requests
        # tile axes a field does not vary along (The Well's dim_varying), then move components to the front
        lead = 1 if info.time_varying else 0
        res = self.files[0].resolution
        shape = list(a.shape[:lead])
        j = lead
        for _, varying in zip(res, info.dim_varying):
            shape.append(a.shape[j] if varying else 1)
            j += 1 if varying else 0
        a = a.reshape(shape + [self.n_spatial_dims] * info.order)
        a = np.broadcast_to(a, tuple(shape[:lead]) + tuple(res) + (self.n_spatial_dims,) * info.order)
        return _components_first(a, info.order, time=info.time_varying)

    def _read_frames(self, fi: int, ti: int, times: np.ndarray) -> np.ndarray:
        """All time-varying channels ``(T, C, *space)`` float32, each field copied once into place."""
        res, n = self.files[0].resolution, self.n_spatial_dims
        frames = np.empty((len(times), self.metadata.n_fields, *res), dtype=np.float32)
        c = 0
        for info in self._var:
            k = n**info.order
            if info.sample_varying and all(info.dim_varying):  # the common layout: one slice, one copy
                idx = _time_index(times)
                a = np.asarray(self._dataset(fi, info)[ti, idx])
                if isinstance(idx, np.ndarray) and not np.array_equal(idx, times):
                    a = a[np.searchsorted(idx, times)]
                frames[:, c : c + k] = _components_first(a, info.order, time=True)
            else:
                frames[:, c : c + k] = self._read_field(fi, ti, info, times)
            c += k
        return frames

    def read(self, trajectory: int, times: Sequence[int]) -> dict[str, torch.Tensor]:
        """Read snapshots ``times`` (indices into the stored time axis) of trajectory ``trajectory``.

        Returns ``fields (T, C, *space)`` (normalised if the dataset normalises), ``time (T,)``, and when present
        ``constant_fields (C_const, *space)``, ``scalars (S,)``, ``time_scalars (T, S_t)``; plus ``grid``.
        This is the one read path every view uses.
        """
        fi, ti = self.trajectories[trajectory]
        times = np.asarray(times, dtype=np.int64)
        if times.ndim != 1 or (times.size and (times.min() < 0 or times.max() >= self.n_steps)):
            raise IndexError(f"time indices {times.tolist()} outside 0..{self.n_steps - 1}")
        try:
            return self._read(fi, ti, times)
        except (PermissionError, FileNotFoundError):  # a remote file's refused credentials or vanished file: they
            raise  # name the URL and the cause themselves (datasets/_remote.py); the file is not damaged
        except (OSError, KeyError, RuntimeError) as e:  # h5py's errors for damaged data blocks
            raise FormatError(
                f"{self.files[fi].path}: cannot read trajectory {ti} (truncated or damaged file?): {e}"
            ) from None

    def _refuse_nonfinite(self, fi: int, ti: int, values: np.ndarray, infos: list, times: np.ndarray | None) -> None:
        """Raise a FormatError naming the first NaN/Inf of ``values`` (``(T, C, *space)`` read at ``times``, or
        ``(C, *space)`` of the time-invariant ``infos``): a model trained or scored on it would only say "nan"."""
        if self.allow_nonfinite or np.isfinite(values).all():
            return
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        lead = 0 if times is None else 1
        channel, point = first[lead], first[lead + 1 :]
        for info in infos:  # the channels are the fields' components, in this order (see _read_frames)
            k = self.n_spatial_dims**info.order
            if channel < k:
                name = info.name + (f" (component {channel})" if k > 1 else "")
                break
            channel -= k
        when = f"time index {int(times[first[0]])}" if times is not None else "time-invariant"
        path = self.files[fi].path
        raise FormatError(
            f"{path}: field '{name}' is {values[first]} at trajectory {ti}, {when}, point {point}: "
            f"the data hold non-finite values (pdeforge inspect {path} scans the whole file)"
        )

    def _read(self, fi: int, ti: int, times: np.ndarray) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        frames = self._read_frames(fi, ti, times)
        self._refuse_nonfinite(fi, ti, frames, self._var, times)
        out["fields"] = torch.from_numpy(frames)
        if self.normalizer is not None:
            out["fields"] = self.normalizer.normalize(out["fields"], self.n_spatial_dims)
        if self._const:
            const = np.concatenate([self._read_field(fi, ti, info, None) for info in self._const], axis=0)
            self._refuse_nonfinite(fi, ti, const, self._const, None)
            out["constant_fields"] = torch.from_numpy(np.ascontiguousarray(const, dtype=np.float32))
            if self.const_normalizer is not None:
                out["constant_fields"] = self.const_normalizer.normalize(out["constant_fields"], self.n_spatial_dims)
        f = self._file(fi)
        if self._const_scalars:
            vals = []
            for name in self._const_scalars:
                ds = f["scalars"][name]
                vals.append(float(np.asarray(ds[ti] if ds.attrs["sample_varying"] else ds[()]).reshape(-1)[0]))
            out["scalars"] = torch.tensor(vals, dtype=torch.float32)
        if self._var_scalars:
            cols = []
            for name in self._var_scalars:
                ds = f["scalars"][name]
                arr = np.asarray(ds[ti] if ds.attrs["sample_varying"] else ds[...]).reshape(-1)
                cols.append(arr[times])
            out["time_scalars"] = torch.from_numpy(np.stack(cols, -1).astype(np.float32))
        out["time"] = torch.tensor(np.asarray(self.files[fi].time)[times], dtype=torch.float32)
        out["grid"] = self.grid
        return out

    @property
    def grid(self) -> torch.Tensor:
        """Coordinates ``(n_dims, *space)`` (meshgrid, ij indexing)."""
        if self._grid is None:
            axes = [torch.tensor(c, dtype=torch.float32) for c in self.files[0].coords]
            self._grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), 0)
        return self._grid

    # -- windows ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.trajectories) * self.windows_per_trajectory

    def window(self, index: int) -> tuple[int, int]:
        """Window ``index`` -> (trajectory, start time index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        return index // self.windows_per_trajectory, index % self.windows_per_trajectory

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            index += len(self)
        traj, start = self.window(index)
        n_in, n_out, s = self.n_steps_input, self.n_steps_output, self.dt_stride
        times = start + s * np.arange(n_in + n_out)
        data = self.read(traj, times)
        sample = {
            "input_fields": data["fields"][:n_in],
            "output_fields": data["fields"][n_in:],
            "input_time": data["time"][:n_in],
            "output_time": data["time"][n_in:],
            "grid": data["grid"],
            "trajectory": torch.tensor(traj),
            "start": torch.tensor(start),
        }
        if "constant_fields" in data:
            sample["constant_fields"] = data["constant_fields"]
        if "scalars" in data:
            sample["scalars"] = data["scalars"]
        if "time_scalars" in data:
            sample["input_scalars"] = data["time_scalars"][:n_in]
            sample["output_scalars"] = data["time_scalars"][n_in:]
        return sample

    # -- normalisation ------------------------------------------------------------------------------------------
    def normalize(self, fields: torch.Tensor) -> torch.Tensor:
        """Physical -> normalised, for ``fields (..., C, *space)``; identity without normalisation."""
        return fields if self.normalizer is None else self.normalizer.normalize(fields, self.n_spatial_dims)

    def denormalize(self, fields: torch.Tensor) -> torch.Tensor:
        """Normalised -> physical units, for ``fields (..., C, *space)`` (model outputs); identity without it."""
        return fields if self.normalizer is None else self.normalizer.denormalize(fields, self.n_spatial_dims)

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles, self._cache = {}, {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"], state["_cache"], state["_pid"] = {}, {}, None
        return state

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"TrajectoryDataset({m.dataset_name!r}, {len(self.files)} file(s), {len(self.trajectories)} trajectories, "
            f"{len(self)} windows, channels {list(m.field_names)}, resolution {m.resolution})"
        )


def _components_first(a: np.ndarray, order: int, *, time: bool) -> np.ndarray:
    """A field as The Well stores it, ``([T,] *space, d, ..., d)`` with its ``order`` component axes last, as channels
    first: ``([T,] d**order, *space)``, the components flattened in row-major order (``xx, xy, yx, yy``)."""
    t, comps = ("t " if time else ""), " ".join("ij"[:order])
    return rearrange(a, f"{t}... {comps} -> {t}({comps}) ...")


def _time_index(times: np.ndarray) -> slice | np.ndarray:
    """A slice when the times are evenly spaced and increasing (fast HDF5 hyperslab), else sorted unique indices."""
    if len(times) == 1:
        return slice(int(times[0]), int(times[0]) + 1)
    step = int(times[1] - times[0])
    if step > 0 and np.all(np.diff(times) == step):
        return slice(int(times[0]), int(times[-1]) + 1, step)
    return np.unique(times)
