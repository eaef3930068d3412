"""pdeforge.pinns: physics-informed neural networks on the shared PDE definitions of :mod:`pdeforge.solvers`.

The residual of every PINN here is ``equation.residual(u_t, u, D)`` with an autograd derivative provider
(:class:`AutogradDerivatives`): the very code path the spectral solver's equations define. Non-local equations
(:class:`~pdeforge.solvers.NavierStokes2D` in vorticity form, which needs the inverse Laplacian) raise
:class:`~pdeforge.solvers.NonLocalTermError`.

A config run goes through the run skeleton (:class:`PINNFamily`, :class:`PINNConfig`); ``pdeforge.load_run(RUN)``
gives back its trained PINN (``run.model``):

    pdeforge train configs/pinn_burgers.yaml --run.run_dir runs/burgers
    pdeforge evaluate runs/burgers                   # its errors against the reference solution, and its plots

Names are imported on first use (PEP 562): the config (:class:`PINNConfig`) loads without torch.

Examples:
    In memory, a PINN trains with its own ``fit`` (Adam, then L-BFGS; the inverse and hidden-term PINNs likewise).
    PINNacle's Burgers problem on a budget far below a real one (``configs/pinn_burgers.yaml``: an MLP 100 x 5,
    8000 points, 5000 Adam steps, then 15000 of L-BFGS):

    >>> import torch
    >>> from pdeforge.pinns import PINN, PROBLEMS, NetworkConfig, OptimConfig, SamplingConfig
    >>> problem = PROBLEMS["burgers"]().problem  # u_t + u u_x = (0.01 / pi) u_xx, u0 = -sin(pi x), u(+-1, t) = 0
    >>> pinn = PINN(problem, NetworkConfig(width=20, depth=3), SamplingConfig(n_residual=512))
    >>> print(pinn.fit(OptimConfig(adam_iters=20, lbfgs_iters=5)))  # doctest: +ELLIPSIS
    L-BFGS stopped: ... after 5 iterations (... evaluations), loss ...
    >>> x = torch.tensor([[-1.0], [-0.5], [1.0]], dtype=torch.float64)
    >>> u = pinn.predict(x, torch.zeros_like(x))  # u (N, C) at the points (x, t = 0)
    >>> torch.allclose(u.flatten(), -torch.sin(torch.pi * x.flatten()))  # the conditions are hard constraints
    True
"""

from __future__ import annotations

from .._lazy import lazy_exports

# every public name, with the module that defines it
_WHERE = {
    **dict.fromkeys(("AutogradDerivatives", "pde_residual"), "._autograd"),
    **dict.fromkeys(("PINNConfig", "PINNData", "PINNEval", "PINNLBFGS", "PINNLoss", "PINNModel"), "._config"),
    **dict.fromkeys(("Dirichlet", "Domain", "Neumann", "OutputTransform", "Problem"), "._domain"),
    **dict.fromkeys(("PINNFamily", "build_pinn", "reference_errors"), "._family"),
    **dict.fromkeys(("PINN", "SamplingConfig"), "._forward"),
    **dict.fromkeys(("HiddenTermPINN", "formula", "polynomial_library", "stlsq"), "._hidden"),
    **dict.fromkeys(
        (
            "AbstractDataFitPINN",
            "InverseCoefficients",
            "InversePINN",
            "Observations",
            "dataset_domain",
            "observations_from_fields",
            "sample_observations",
        ),
        "._inverse",
    ),
    **dict.fromkeys(("LagrangianPINN", "advection_velocity"), "._lagrangian"),
    **dict.fromkeys(
        ("MLP", "FourierFeatures", "InputEmbedding", "NetworkConfig", "PINNNet", "RWFLinear"), "._networks"
    ),
    **dict.fromkeys(("LBFGSReport", "OptimConfig", "adam", "lbfgs"), "._optim"),
    **dict.fromkeys(("PROBLEMS", "NamedProblem"), "._problems"),
    **dict.fromkeys(("TrigInterpolant", "spectral_reference"), "._reference"),
    **dict.fromkeys(("SAMPLERS", "rad", "rar", "sample_domain", "sample_initial"), "._sampling"),
    **dict.fromkeys(
        (
            "AbstractWeighting",
            "AmplificationWeights",
            "CausalWeights",
            "FixedWeights",
            "LearningRateAnnealingWeights",
            "NTKWeights",
            "SelfAdaptiveWeights",
            "reaction_rate",
        ),
        "._weighting",
    ),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
