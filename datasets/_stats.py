"""Normalisation statistics (The Well's ``stats.yaml``), fitted on the train split only, and the transforms.

``stats.yaml`` holds, per field (core name), ``mean``, ``std``, ``rms`` and their ``_delta`` versions (statistics of
``u(t+1) - u(t)``); vector fields have one value per component. pdeforge fits them on ``data/train`` and applies the
same numbers to every split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml

from .._files import atomic_write
from ._format import TENSOR_GROUPS, list_data_files, read_file_info

__all__ = ["compute_stats", "write_stats", "load_stats", "Normalizer"]


def compute_stats(path: str | os.PathLike, split: str | None = "train") -> dict[str, dict[str, Any]]:
    """Streaming per-field statistics over the files of ``path`` (a dataset root: its ``split``; or a folder/file).

    Reads one trajectory at a time (bounded memory); sums in float64.
    """
    p = Path(path)
    files = list_data_files(p, split if (p / "data").is_dir() else None)
    acc: dict[str, dict[str, np.ndarray]] = {}
    order_of: dict[str, int] = {}
    for fp in files:
        info = read_file_info(fp)
        with h5py.File(fp, "r") as f:
            for fi in info.fields:
                ds = f[TENSOR_GROUPS[fi.order]][fi.name]
                n_comp = info.n_spatial_dims**fi.order
                order_of[fi.name] = fi.order
                a = acc.setdefault(fi.name, {k: np.zeros(n_comp) for k in ("n", "s", "ss", "nd", "sd", "ssd")})
                n_traj = info.n_trajectories if fi.sample_varying else 1
                for i in range(n_traj):
                    x = np.asarray(ds[i] if fi.sample_varying else ds[...], dtype=np.float64)
                    flat = x.reshape(-1, n_comp)
                    a["n"] += flat.shape[0]
                    a["s"] += flat.sum(0)
                    a["ss"] += (flat**2).sum(0)
                    if fi.time_varying and x.shape[0] > 1:
                        d = np.diff(x, axis=0).reshape(-1, n_comp)
                        a["nd"] += d.shape[0]
                        a["sd"] += d.sum(0)
                        a["ssd"] += (d**2).sum(0)
    out: dict[str, dict[str, Any]] = {k: {} for k in ("mean", "std", "rms", "mean_delta", "std_delta", "rms_delta")}
    for name, a in acc.items():

        def fmt(v: np.ndarray, scalar: bool = order_of[name] == 0) -> Any:
            v = [float(x) for x in v]
            return v[0] if scalar else v

        mean = a["s"] / a["n"]
        var = np.maximum(a["ss"] / a["n"] - mean**2, 0.0)
        out["mean"][name], out["std"][name], out["rms"][name] = (
            fmt(mean),
            fmt(np.sqrt(var)),
            fmt(np.sqrt(a["ss"] / a["n"])),
        )
        if a["nd"].any():
            md = a["sd"] / a["nd"]
            vd = np.maximum(a["ssd"] / a["nd"] - md**2, 0.0)
            out["mean_delta"][name], out["std_delta"][name] = fmt(md), fmt(np.sqrt(vd))
            out["rms_delta"][name] = fmt(np.sqrt(a["ssd"] / a["nd"]))
    return out


def write_stats(root: str | os.PathLike) -> Path:
    """Fit statistics on ``ROOT/data/train`` and write ``ROOT/stats.yaml`` atomically."""
    root = Path(root)
    stats = compute_stats(root, "train")
    target = root / "stats.yaml"
    atomic_write(target, lambda tmp: tmp.write_text(yaml.safe_dump(stats, sort_keys=False)))
    return target


def stats_path(root: str | os.PathLike) -> Path | str:
    """``ROOT/stats.yaml`` of a dataset root given as a path or an fsspec URL."""
    from ._remote import is_url, local_path, url_join

    root = local_path(root)
    return url_join(root, "stats.yaml") if is_url(root) else Path(root) / "stats.yaml"


def load_stats(path: str | os.PathLike, storage_options: dict | None = None) -> dict[str, dict[str, Any]]:
    """A ``stats.yaml`` (a path, or an fsspec URL read with ``storage_options``)."""
    from ._remote import is_url, local_path, read_remote

    p = local_path(path)
    if is_url(p):
        text = read_remote(p, storage_options)  # FileNotFoundError naming the URL
    else:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(
                f"{p}: normalisation statistics not found "
                "(write them with pdeforge.datasets.write_stats(ROOT), fitted on the train split)"
            )
        text = p.read_text()
    stats = yaml.safe_load(text)
    for key in ("mean", "std", "rms"):
        if not isinstance(stats, dict) or key not in stats:
            raise ValueError(
                f"{p}: expected The Well's stats.yaml with keys mean, std, rms (+ _delta), "
                f"found {list(stats) if isinstance(stats, dict) else type(stats)}"
            )
    return stats


class Normalizer:
    """Per-channel affine transform ``(x - shift) / scale`` for channels-first tensors.

    ``kind="zscore"``: shift = mean, scale = std. ``kind="rms"``: shift = 0, scale = rms. Scales are clipped at
    ``min_scale`` so a constant field does not divide by zero.
    """

    def __init__(
        self, stats: dict, kind: str, core_names: list[str], channel_counts: list[int], min_scale: float = 1e-4
    ) -> None:
        if kind not in ("zscore", "rms"):
            raise ValueError(f"normalization should be 'zscore', 'rms' or None, got {kind!r}")
        shift, scale = [], []
        for name, k in zip(core_names, channel_counts):
            if name not in stats["mean"]:
                raise KeyError(f"stats have no entry for field {name!r} (fields in stats: {list(stats['mean'])})")
            mean = np.broadcast_to(np.asarray(stats["mean"][name], dtype=np.float64), (k,))
            if kind == "zscore":
                sc = np.broadcast_to(np.asarray(stats["std"][name], dtype=np.float64), (k,))
                shift.append(mean)
            else:
                sc = np.broadcast_to(np.asarray(stats["rms"][name], dtype=np.float64), (k,))
                shift.append(np.zeros(k))
            scale.append(np.maximum(sc, min_scale))
        self.kind = kind
        self.shift = torch.tensor(np.concatenate(shift) if shift else np.zeros(0), dtype=torch.float32)
        self.scale = torch.tensor(np.concatenate(scale) if scale else np.zeros(0), dtype=torch.float32)

    def _view(self, t: torch.Tensor, x: torch.Tensor, n_spatial_dims: int) -> torch.Tensor:
        return t.to(x.device, x.dtype).reshape((-1,) + (1,) * n_spatial_dims)

    def normalize(self, x: torch.Tensor, n_spatial_dims: int) -> torch.Tensor:
        """x: (..., C, *space)."""
        return (x - self._view(self.shift, x, n_spatial_dims)) / self._view(self.scale, x, n_spatial_dims)

    def denormalize(self, x: torch.Tensor, n_spatial_dims: int) -> torch.Tensor:
        return x * self._view(self.scale, x, n_spatial_dims) + self._view(self.shift, x, n_spatial_dims)
