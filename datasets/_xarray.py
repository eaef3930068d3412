"""`to_xarray`: a file as an ``xarray.Dataset`` with named dimensions and coordinates (``.to_netcdf`` works)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import h5py
import numpy as np

from ._format import TENSOR_GROUPS, decode, read_file_info

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["to_xarray"]


def to_xarray(path: str | os.PathLike) -> xr.Dataset:
    """Read one file into memory as an ``xarray.Dataset``.

    Dimensions: ``trajectory``, ``time``, the spatial axes (``x``, ``y``, ...) and, for vector/tensor fields,
    ``component``/``component_i``, ``component_j`` labelled with the axis names. Coordinates: ``time`` and the spatial
    axes from ``dimensions/``. Scalars become variables (per trajectory where they vary). Root attributes are kept
    (lists and dicts as JSON strings so that ``to_netcdf`` accepts them).
    """
    import xarray as xr  # here, not at import: it costs every `import pdeforge.datasets` (and DataLoader worker) ~0.2 s

    info = read_file_info(path)
    dims = list(info.spatial_dims)
    coords = {"time": np.asarray(info.time, dtype=np.float32)}
    coords.update({d: np.asarray(c, dtype=np.float32) for d, c in zip(dims, info.coords)})
    coords["trajectory"] = np.arange(info.n_trajectories)
    variables = {}
    with h5py.File(path, "r") as f:
        for fi in info.fields:
            data = f[TENSOR_GROUPS[fi.order]][fi.name][...]
            vdims = (["trajectory"] if fi.sample_varying else []) + (["time"] if fi.time_varying else [])
            vdims += [d for d, v in zip(dims, fi.dim_varying) if v]
            if fi.order == 1:
                vdims += ["component"]
                coords["component"] = np.asarray(dims)
            elif fi.order == 2:
                vdims += ["component_i", "component_j"]
                coords["component_i"] = coords["component_j"] = np.asarray(dims)
            variables[fi.name] = (vdims, data)
        for name, sv, tv in info.scalars:
            data = np.asarray(f["scalars"][name][...])
            vdims = (["trajectory"] if sv else []) + (["time"] if tv else [])
            variables[name] = (vdims, data.reshape([info.n_trajectories] * sv + [info.n_steps] * tv))
        attrs = {}
        for k, v in f.attrs.items():
            v = decode(v)
            attrs[k] = json.dumps(v) if isinstance(v, (list, dict)) else (int(v) if isinstance(v, bool) else v)
    return xr.Dataset(variables, coords=coords, attrs=attrs)
