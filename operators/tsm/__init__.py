"""Temporal stencil modelling (TSM) and learned interpolation (LI) inside the finite-volume Navier-Stokes solver.

Papers: Kochkov et al. 2021 (PNAS, "Machine learning-accelerated computational fluid dynamics": LI) and
Sun, Yang, Yoo 2023 (ICML, "A neural PDE solver with temporal stencil modeling": TSM). A periodic CNN predicts,
per cell, 8 constrained 4x4 stencils (advected and advecting velocity at the four flux locations, 120 logits at
accuracy order 1, see :mod:`._stencils`) that replace the advection interpolation of
:class:`pdeforge.solvers.fv.StaggeredNavierStokes2D`; projection, viscosity and forcing are unchanged.
LI (:class:`LearnedInterpolation`) reads the current velocity; TSM (:class:`TemporalStencil`) reads HiPPO-LagT
features of each cell's last ``history`` frames (:mod:`._hippo`) and emits logits for ``bundle`` solver steps per
call; :class:`CoarseSolver` is the van Leer solver both start from.

Usage::

    pdeforge train configs/tsm_kolmogorov.yaml            # or configs/li_kolmogorov.yaml
    pdeforge train configs/tsm_kolmogorov.yaml --model.encoder frames --optim.steps 50
    pdeforge evaluate runs/tsm_kolmogorov

The data are the ``kolmogorov_fv_2d`` preset (DNS, face-averaged), generated once into the cache
(:mod:`._config` for the protocol). Training, checkpoints and the run folder are the run skeleton's
(:func:`pdeforge.training.fit`); the metrics (high-correlation duration and vorticity correlation curves of the
model and of the coarse solver) come from :meth:`TSMFamily.evaluate`.

Names are imported on first use (PEP 562): the config loads without torch.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

# every public name, with the module that defines it
_WHERE = {
    **dict.fromkeys(("TSMRunConfig", "TSMData", "TSMModelConfig", "TSMEval", "KOLMOGOROV_DATA"), "._config"),
    **dict.fromkeys(("TSMFamily", "build_stencil_model", "model_name"), "._family"),
    **dict.fromkeys(
        (
            "AbstractStencilModel",
            "CoarseSolver",
            "LearnedInterpolation",
            "TemporalStencil",
            "CNNConfig",
            "periodic_cnn",
            "Step",
        ),
        "._models",
    ),
    **dict.fromkeys(
        (
            "PolynomialStencil",
            "StencilInterpolation",
            "faces_from_logits",
            "stencil_weights",
            "tvd_limit",
            "logits_per_cell",
        ),
        "._stencils",
    ),
    **dict.fromkeys(
        ("HippoEncoder", "FrameStackEncoder", "lagt_transition", "bilinear", "lagt_kernel", "lagt_recurrence"),
        "._hippo",
    ),
    **dict.fromkeys(
        ("WindowSampler", "data_fingerprint", "training_windows", "split_trajectories", "train_moments", "flow_of"),
        "._data",
    ),
    **dict.fromkeys(("vorticity_rollout", "score"), "._evaluate"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
