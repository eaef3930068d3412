"""The shallow-water preset of ``pdeforge generate``: PDEBench's 2D radial dam break (`SHALLOW_WATER_PRESETS`).

PDEBench (Takamoto et al. 2022; ``pdebench/data_gen/configs/radial_dam_break.yaml`` and
``src/sim_radial_dam_break.py``, solved there by PyClaw's Roe solver with the MC limiter): still water of depth 2
inside a disc centred at the origin, 1 outside, on ``[-2.5, 2.5]^2`` with a flat bed, ``g = 1``, extrapolation
(outflow) boundaries; the disc's radius drawn uniformly in ``[0.3, 0.7]`` per trajectory; 101 snapshots of the depth
``h`` over ``t in [0, 1]`` on ``128^2`` cells. The files store what `pdeforge.datasets.convert_pdebench` stores for
PDEBench's ``2D_rdb_NA_NA.h5``: the one field ``h`` at the cell centres, boundary conditions ``open``, no
scalars (the radius is visible in the first snapshot; ``g`` and the depths are in the files' provenance, not their
parameters, which the dataset layer hands to models as constant scalars), so generated and imported data train
alike.

Solved by `pdeforge.solvers.shallow_water.ShallowWater2D` (hydrostatic reconstruction, MUSCL with the MC limiter, HLL,
SSP-RK2, CFL 0.4) in float64, stored as float32. The initial depth is the disc's cell average (``subsamples^2``
points per cell) rather than PDEBench's value at the cell centre, so a grid twice as fine averages back to the same
initial cells (the reference of the resolution check).

Registered by the last lines of ``_presets.py``; import it through there (``pdeforge.solvers.generate.PRESETS``):
imported first, this module would meet ``_presets`` half-initialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..datasets import FieldSpec, Schema
from ._presets import AbstractPreset, Solved, trajectory_generator
from ._resolution import ResolutionCheck
from .shallow_water import SSP_RK2, RectGrid, ShallowWater2D, ShallowWaterScheme, disc_depth

__all__ = ["RadialDamBreakPreset", "SHALLOW_WATER_PRESETS"]


@dataclass(frozen=True)
class RadialDamBreakPreset(AbstractPreset):
    """Preset ``shallow_water_dam_break_2d``: PDEBench's radial dam break (module docstring for the facts).

    ``resolution`` cells per axis on ``[-half_width, half_width]^2``; ``n_frames`` snapshots at
    ``t_end * k / (n_frames - 1)``; the radius uniform in ``radius_range`` from trajectory ``j``'s generator
    ``(seed, j)``; ``scheme`` the solver's numerics (its CFL number chooses each step, landing on every snapshot).
    """

    name: str = "shallow_water_dam_break_2d"
    summary: str = (
        "PDEBench's radial dam break: shallow water, depth 2 inside a disc of radius in [0.3, 0.7], 1 outside, "
        "g = 1, outflow boundaries; stored h (PDEBench has 1000 trajectories: --n-trajectories 1000)"
    )
    resolution: int = 128
    n_trajectories: int = 32
    batch_size: int = 8
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # measured over trajectories 0, 1 (docs/guides/shallow_water.md): 32 cells 1.83%, 64: 1.24%, 128: 0.87%
    resolves: ResolutionCheck = ResolutionCheck(64, "convergence", 1.5e-2)
    gravity: float = 1.0
    h_inside: float = 2.0
    h_outside: float = 1.0
    radius_range: tuple[float, float] = (0.3, 0.7)
    half_width: float = 2.5
    t_end: float = 1.0
    n_frames: int = 101
    scheme: ShallowWaterScheme = ShallowWaterScheme(limiter="mc", flux="hll", rk=SSP_RK2, cfl=0.4)
    subsamples: int = 8

    def __post_init__(self) -> None:
        lo, hi = self.radius_range
        if not 0 < lo <= hi < self.half_width:
            raise ValueError(
                f"preset {self.name}: radius_range {self.radius_range}: expected 0 < low <= high < {self.half_width}"
            )
        if self.n_frames < 2 or not self.t_end > 0:
            raise ValueError(f"preset {self.name}: n_frames {self.n_frames}, t_end {self.t_end}: expected >= 2, > 0")
        if self.subsamples < 2 or self.subsamples % 2:
            raise ValueError(f"preset {self.name}: subsamples {self.subsamples}: expected an even integer >= 2")

    def grid(self, resolution: int) -> RectGrid:
        w = float(self.half_width)
        return RectGrid(resolution, resolution, (-w, w), (-w, w))

    @property
    def times(self) -> np.ndarray:
        return self.t_end / (self.n_frames - 1) * np.arange(self.n_frames)

    def _parameters(self) -> dict[str, float]:
        return {"gravity": self.gravity, "h_inside": self.h_inside, "h_outside": self.h_outside}

    def schema(self, resolution: int) -> Schema:
        x, y = self.grid(resolution).axis_centres()
        return Schema(
            dataset_name=self.name,
            coords={"x": x.numpy(), "y": y.numpy()},
            time=self.times,
            fields=(FieldSpec("h"),),
            boundary_conditions="open",  # no parameters: the dataset layer would feed them to models as scalars
        )

    def describe(self, resolution: int) -> dict[str, Any]:
        s = self.scheme
        w = f"{self.half_width:g}"
        return {
            "pde": "ShallowWater2D",
            "formula": "h_t + div(h u) = 0, (h u)_t + div(h u u) + grad(g h^2 / 2) = 0 (flat bed), depth stored",
            "parameters": self._parameters(),
            "varying": {"dam_radius": list(self.radius_range)},
            "grid": f"{resolution}x{resolution} cells on [-{w}, {w}]^2, outflow boundaries",
            "dt_internal": float("nan"),
            "dt_snapshot": self.t_end / (self.n_frames - 1),
            "n_snapshots": self.n_frames,
            "warmup": 0.0,
            "n_trajectories": self.n_trajectories,
            "solver": "pdeforge.solvers.shallow_water.ShallowWater2D",
            "scheme": f"FV, hydrostatic reconstruction, MUSCL-{s.limiter}, {s.flux.upper()}, SSP-RK{s.rk.order}, "
            f"CFL {s.cfl:g}",
        }

    def provenance(self, resolution: int, seed: int) -> dict[str, Any]:
        return {**super().provenance(resolution, seed), "dt_internal": f"CFL {self.scheme.cfl:g}"}

    def radii(self, indices: Sequence[int], seed: int) -> list[float]:
        lo, hi = self.radius_range
        return [
            lo + (hi - lo) * float(torch.rand((), generator=trajectory_generator(seed, j), dtype=torch.float64))
            for j in indices
        ]

    def solve(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Solved:
        radii = self.radii(indices, seed)
        h = self._solve(radii, resolution, self.subsamples, device)
        params = [{**self._parameters(), "dam_radius": r} for r in radii]
        return Solved(fields=h, parameters=params)

    def refined(self, indices: Sequence[int], seed: int, resolution: int, device: str) -> Tensor:
        """The same discs on a grid twice as fine per axis (half the subsamples per cell, so the initial cells
        average back exactly to ``solve``'s), each snapshot's depth averaged over 2 x 2 cells."""
        fine = self._solve(self.radii(indices, seed), 2 * resolution, self.subsamples // 2, device)
        b, t = fine.shape[:2]
        return fine.reshape(b, t, 1, resolution, 2, resolution, 2).mean(dim=(4, 6))

    def _solve(self, radii: Sequence[float], resolution: int, subsamples: int, device: str) -> Tensor:
        grid = self.grid(resolution)
        h0 = torch.stack([disc_depth(grid, r, self.h_inside, self.h_outside, subsamples) for r in radii])
        U0 = torch.stack([h0, torch.zeros_like(h0), torch.zeros_like(h0)], dim=1).to(device)
        solver = ShallowWater2D(grid, gravity=self.gravity, boundary="outflow", scheme=self.scheme)
        with torch.no_grad():
            trajectory = solver.rollout(U0, self.times)
        return trajectory[:, :, :1].cpu().contiguous()


SHALLOW_WATER_PRESETS: dict[str, AbstractPreset] = {p.name: p for p in (RadialDamBreakPreset(),)}
