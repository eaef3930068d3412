"""pdeforge.pinns: physics-informed neural networks on the shared PDE definitions of :mod:`pdeforge.solvers`.

The residual of every PINN here is ``equation.residual(u_t, u, D)`` with an autograd derivative provider
(:class:`AutogradDerivatives`): the very code path the spectral solver's equations define. Non-local equations
(:class:`~pdeforge.solvers.NavierStokes2D` in vorticity form, which needs the inverse Laplacian) raise
:class:`~pdeforge.solvers.NonLocalTermError`.

A config run goes through the run skeleton (:class:`PINNFamily`, :class:`PINNConfig`)::

    pdeforge train configs/pinn_burgers.yaml --run.run_dir runs/burgers
    run = pdeforge.load_run("runs/burgers")          # run.model: the trained PINN

In memory, a PINN trains with its own ``fit`` (Adam, then L-BFGS; the inverse and hidden-term PINNs likewise)::

    from pdeforge.pinns import PINN, OptimConfig, PROBLEMS
    problem = PROBLEMS["burgers"]().problem
    pinn = PINN(problem)
    pinn.fit(OptimConfig(adam_iters=1000, lbfgs_iters=1000))

Names are imported on first use (PEP 562): the config (:class:`PINNConfig`) loads without torch.
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
            "GradNormWeights",
            "NTKWeights",
            "SelfAdaptiveWeights",
            "reaction_rate",
        ),
        "._weighting",
    ),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
