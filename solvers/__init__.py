"""pdeforge.solvers: batched, differentiable Fourier-spectral ETDRK reference solvers on periodic grids.

Every equation states its linear part as data and its nonlinear term against a derivative provider, so the
same class gives the spectral solver and the PINN residual (``equation.residual(u_t, u, D)``).

Beyond periodic spectral problems: :mod:`pdeforge.solvers.fv` (staggered finite-volume Navier-Stokes with a
pluggable face interpolation) and :mod:`pdeforge.solvers.darcy` (steady Darcy flow). Data generation:
:mod:`pdeforge.solvers.generate` (``pdeforge generate``; presets in ``_presets.py``).

Examples:
    Viscous Burgers from 8 random initial conditions, 100 steps of ETDRK4, channels first:

    >>> import math, torch
    >>> from pdeforge.solvers import Grid, ETDRK, rollout, Burgers, RandomFourierSeries
    >>> grid = Grid(256, length=2 * math.pi)
    >>> u0 = RandomFourierSeries(max_wavenumber=5)(grid, batch=8, generator=torch.Generator().manual_seed(0))
    >>> traj = rollout(ETDRK(Burgers(nu=0.01), grid, dt=0.01), u0, n_steps=100)
    >>> traj.shape, traj.dtype  # (batch, 1 + n_steps, channel, x): u0 first
    (torch.Size([8, 101, 1, 256]), torch.float64)
    >>> bool((traj[:, -1].mean(-1) - u0.mean(-1)).abs().max() < 1e-12)  # Burgers conserves the mean of u
    True
"""

from ._catalogue import EQUATIONS, EquationConfig
from ._derivatives import AbstractDerivatives, NonLocalTermError, SpectralDerivatives
from ._equations import (
    AbstractEquation,
    Advection,
    AdvectionDiffusion,
    AllenCahn,
    Burgers,
    Diffusion,
    FisherKPP,
    FluxTerm,
    GrayScott,
    KdV,
    KolmogorovForcing,
    KuramotoSivashinsky,
    KuramotoSivashinskyFlame,
    LinearTerm,
    NavierStokes2D,
    SwiftHohenberg,
    Wave,
)
from ._etdrk import ETDRK, rollout
from ._etdrk_tableau import ETDRK4_COX_MATTHEWS, TABLEAUS, ETDRKTableau, phi_functions
from ._grid import Grid
from ._ic import (
    AbstractInitialCondition,
    ChannelAffine,
    DiffusedNoise,
    GaussianBlobs,
    GaussianRandomField,
    LogNormalVorticity,
    Normalization,
    RandomDiscontinuities,
    RandomFourierSeries,
)

__all__ = [
    "EQUATIONS",
    "ETDRK4_COX_MATTHEWS",
    "TABLEAUS",
    "AbstractDerivatives",
    "AbstractEquation",
    "AbstractInitialCondition",
    "Advection",
    "AdvectionDiffusion",
    "AllenCahn",
    "Burgers",
    "ChannelAffine",
    "DiffusedNoise",
    "Diffusion",
    "ETDRK",
    "ETDRKTableau",
    "EquationConfig",
    "FisherKPP",
    "FluxTerm",
    "GaussianBlobs",
    "GaussianRandomField",
    "GrayScott",
    "Grid",
    "KdV",
    "KolmogorovForcing",
    "KuramotoSivashinsky",
    "KuramotoSivashinskyFlame",
    "LinearTerm",
    "LogNormalVorticity",
    "NavierStokes2D",
    "NonLocalTermError",
    "Normalization",
    "RandomDiscontinuities",
    "RandomFourierSeries",
    "SpectralDerivatives",
    "SwiftHohenberg",
    "Wave",
    "phi_functions",
    "rollout",
]
