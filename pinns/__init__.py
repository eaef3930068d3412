"""pdeforge.pinns: physics-informed neural networks on the shared PDE definitions of :mod:`pdeforge.solvers`.

The residual of every PINN here is ``equation.residual(u_t, u, D)`` with an autograd derivative provider
(:class:`AutogradDerivatives`): the very code path the spectral solver's equations define. Non-local equations
(:class:`~pdeforge.solvers.NavierStokes2D` in vorticity form, which needs the inverse Laplacian) raise
:class:`~pdeforge.solvers.NonLocalTermError`.

    from pdeforge.pinns import PINN, OptimConfig, PROBLEMS
    problem = PROBLEMS["burgers"]().problem
    pinn = PINN(problem)
    pinn.fit(OptimConfig(adam_iters=1000, lbfgs_iters=1000))
"""

from ._autograd import AutogradDerivatives, pde_residual
from ._domain import Dirichlet, Domain, Neumann, OutputTransform, Problem
from ._forward import PINN, SamplingConfig
from ._networks import MLP, FourierFeatures, InputEmbedding, NetworkConfig, PINNNet, RWFLinear
from ._optim import LBFGSReport, OptimConfig, adam, lbfgs
from ._problems import PROBLEMS, NamedProblem
from ._reference import TrigInterpolant, spectral_reference
from ._sampling import SAMPLERS, rad, rar, sample_domain, sample_initial
from ._weighting import (
    AbstractWeighting,
    CausalWeights,
    FixedWeights,
    GradNormWeights,
    NTKWeights,
    SelfAdaptiveWeights,
)

__all__ = [
    "AbstractWeighting",
    "AutogradDerivatives",
    "CausalWeights",
    "Dirichlet",
    "Domain",
    "FixedWeights",
    "FourierFeatures",
    "GradNormWeights",
    "InputEmbedding",
    "LBFGSReport",
    "MLP",
    "NTKWeights",
    "NamedProblem",
    "NetworkConfig",
    "Neumann",
    "OptimConfig",
    "OutputTransform",
    "PINN",
    "PINNNet",
    "PROBLEMS",
    "Problem",
    "RWFLinear",
    "SAMPLERS",
    "SamplingConfig",
    "SelfAdaptiveWeights",
    "TrigInterpolant",
    "adam",
    "lbfgs",
    "pde_residual",
    "rad",
    "rar",
    "sample_domain",
    "sample_initial",
    "spectral_reference",
]
