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
from ._hidden import HiddenTermPINN, formula, polynomial_library, stlsq
from ._inverse import (
    AbstractDataFitPINN,
    InverseCoefficients,
    InversePINN,
    Observations,
    dataset_domain,
    observations_from_fields,
    sample_observations,
)
from ._lagrangian import LagrangianPINN, advection_velocity
from ._networks import MLP, FourierFeatures, InputEmbedding, NetworkConfig, PINNNet, RWFLinear
from ._optim import LBFGSReport, OptimConfig, adam, lbfgs
from ._problems import PROBLEMS, NamedProblem
from ._reference import TrigInterpolant, spectral_reference
from ._run import load, run
from ._sampling import SAMPLERS, rad, rar, sample_domain, sample_initial
from ._weighting import (
    AbstractWeighting,
    AmplificationWeights,
    CausalWeights,
    FixedWeights,
    GradNormWeights,
    NTKWeights,
    SelfAdaptiveWeights,
    reaction_rate,
)

__all__ = [
    "advection_velocity",
    "LagrangianPINN",
    "sample_observations",
    "observations_from_fields",
    "dataset_domain",
    "Observations",
    "InversePINN",
    "AbstractDataFitPINN",
    "InverseCoefficients",
    "stlsq",
    "polynomial_library",
    "formula",
    "HiddenTermPINN",
    "AbstractWeighting",
    "AmplificationWeights",
    "reaction_rate",
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
    "run",
    "load",
]
