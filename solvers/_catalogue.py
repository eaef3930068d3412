"""The catalogue: every equation with a small default configuration, written out in one place.

``pdeforge generate`` and the tests walk ``EQUATIONS``; the test suite asserts that it lists every concrete
:class:`AbstractEquation` of this package, so a new PDE cannot go untested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._equations import (
    AbstractEquation,
    Advection,
    AdvectionDiffusion,
    AllenCahn,
    Burgers,
    Diffusion,
    FisherKPP,
    GrayScott,
    KdV,
    KolmogorovForcing,
    KuramotoSivashinsky,
    KuramotoSivashinskyFlame,
    NavierStokes2D,
    SwiftHohenberg,
    Wave,
)
from ._etdrk import ETDRK
from ._grid import Grid
from ._ic import (
    AbstractInitialCondition,
    ChannelAffine,
    GaussianBlobs,
    LogNormalVorticity,
    Normalization,
    RandomFourierSeries,
)


@dataclass(frozen=True)
class EquationConfig:
    """An equation on a grid with an initial condition, a step and a horizon (small: seconds to run)."""

    equation: AbstractEquation
    grid: Grid
    initial_condition: AbstractInitialCondition
    dt: float
    t_final: float

    @property
    def n_steps(self) -> int:
        """``round(t_final / dt)``."""
        return round(self.t_final / self.dt)

    def stepper(self, order: int = 4, dt: float | None = None) -> ETDRK:
        """An :class:`ETDRK` of this order on this grid (step ``dt`` or the default)."""
        return ETDRK(self.equation, self.grid, self.dt if dt is None else dt, order=order)

    def initial_state(self, batch: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
        """``(batch, C, *grid.shape)`` initial fields drawn with ``torch.Generator().manual_seed(seed)``."""
        return self.initial_condition(self.grid, batch, torch.Generator().manual_seed(seed), dtype=dtype)


_SMOOTH = RandomFourierSeries(max_wavenumber=3)

EQUATIONS: tuple[EquationConfig, ...] = (
    EquationConfig(Advection(velocity=1.0), Grid(64), _SMOOTH, dt=0.1, t_final=1.0),
    EquationConfig(Diffusion(nu=0.05), Grid(64), _SMOOTH, dt=0.1, t_final=1.0),
    EquationConfig(AdvectionDiffusion(velocity=(1.0, 0.5), nu=0.02), Grid((32, 32)), _SMOOTH, dt=0.1, t_final=1.0),
    EquationConfig(
        Wave(c=1.0),
        Grid((32, 32)),
        ChannelAffine(base=_SMOOTH, scale=(1.0, 0.0), offset=(0.0, 0.0)),
        dt=0.1,
        t_final=1.0,
    ),
    EquationConfig(Burgers(nu=0.05), Grid(128), _SMOOTH, dt=0.025, t_final=1.0),
    EquationConfig(
        KdV(),
        Grid(64, 20 * math.pi),
        RandomFourierSeries(max_wavenumber=3, normalization=Normalization(amplitude=0.5)),
        dt=0.05,
        t_final=1.0,
    ),
    EquationConfig(KuramotoSivashinsky(), Grid(64, 32 * math.pi), _SMOOTH, dt=0.1, t_final=2.0),
    EquationConfig(KuramotoSivashinskyFlame(), Grid((32, 32), 16 * math.pi), _SMOOTH, dt=0.1, t_final=2.0),
    EquationConfig(AllenCahn(nu=0.01), Grid(64), _SMOOTH, dt=0.1, t_final=1.0),
    EquationConfig(FisherKPP(nu=0.01, r=1.0), Grid((32, 32)), GaussianBlobs(width=0.1), dt=0.1, t_final=1.0),
    EquationConfig(
        GrayScott(),
        Grid((32, 32), 2.5),
        ChannelAffine(base=GaussianBlobs(width=0.1), scale=(-0.5, 0.25), offset=(1.0, 0.0)),
        dt=1.0,
        t_final=10.0,
    ),
    EquationConfig(
        SwiftHohenberg(),
        Grid((32, 32), 8 * math.pi),
        RandomFourierSeries(max_wavenumber=4, normalization=Normalization(amplitude=0.5)),
        dt=0.1,
        t_final=2.0,
    ),
    EquationConfig(
        NavierStokes2D(nu=0.01, forcing=KolmogorovForcing(wavenumber=4, amplitude=1.0)),
        Grid((32, 32)),
        LogNormalVorticity(peak_wavenumber=2.0),
        dt=0.05,
        t_final=1.0,
    ),
)
