"""Probabilistic surrogates: noise schedules, samplers (DDPM, DDIM, DPM-Solver, ...), conditional diffusion and
flow-matching next-step models, PDE-Refiner, latent diffusion over a frame autoencoder.

Names are imported on first use (PEP 562): the family's config (``GenerativeRunConfig``) loads without torch.

Examples:
    Sampling data ``N(mu, s^2 I)`` with its exact noise predictor under score SDE's VP SDE, 20 network
    evaluations of DPM-Solver++(2M), time steps uniform in log-SNR:

    >>> import torch
    >>> from pdeforge.generative import VPSchedule, sample
    >>> schedule, mu, s = VPSchedule.linear(beta_min=0.1, beta_max=20.0), 1.5, 0.5
    >>> def eps(x, t):  # t: (B,)
    ...     a, sg = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    ...     return sg * (x - a * mu) / (a**2 * s**2 + sg**2)
    >>> x_T = torch.randn(4096, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> x0 = sample(eps, x_T, schedule, method="dpm_solver++2m", steps=20, t_end=1e-3)
    >>> round(x0.mean().item(), 1), round(x0.std().item(), 1)
    (1.5, 0.5)
"""

from __future__ import annotations

from .._lazy import lazy_exports

# every public name with the module that defines it, imported on first use
_WHERE = {
    **dict.fromkeys(
        ("sample", "SAMPLERS", "ODE_METHODS", "FLOW_METHODS", "STOCHASTIC_METHODS", "METHODS", "ORDERS"), "._sample"
    ),
    **dict.fromkeys(
        ("VPSchedule", "VESchedule", "FlowSchedule", "AbstractSchedule", "SPACINGS", "time_steps"), "._schedules"
    ),
    "dpm_solver_tableau": "._samplers",
    "GenerativeRunConfig": "._config",
    "GenerativeFamily": "._family",
    **dict.fromkeys(("FrameAutoencoder", "LatentNextStep"), "._latent"),
}

__all__ = list(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
