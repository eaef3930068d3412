"""The sampler table and :func:`sample`, the entry point of every sampler (re-exported by
:mod:`pdeforge.generative`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._samplers import (
    EULER,
    HEUN,
    AbstractSampler,
    AncestralSampler,
    DEISSampler,
    DPMSolverPlusPlusMultistep,
    Options,
    PredictorCorrector,
    SinglestepSampler,
    UniPCSampler,
    _Model,
    default_snr,
    dpm_solver_tableau,
    fits,
)
from ._schedules import AbstractSchedule, FlowSchedule, time_steps

__all__ = ["sample", "SAMPLERS", "ODE_METHODS", "FLOW_METHODS", "STOCHASTIC_METHODS", "METHODS", "ORDERS"]

_DPM = tuple(dpm_solver_tableau(k) for k in (1, 2, 3))

#: every sampler by its method name, written out once
SAMPLERS: dict[str, AbstractSampler] = {
    "ddim": AncestralSampler("ddim"),
    "dpm_solver_1": SinglestepSampler("dpm_solver_1", _DPM[:1]),
    "dpm_solver_2": SinglestepSampler("dpm_solver_2", _DPM[:2]),
    "dpm_solver_3": SinglestepSampler("dpm_solver_3", _DPM),
    "dpm_solver++2m": DPMSolverPlusPlusMultistep(),
    "deis": DEISSampler(),
    "unipc": UniPCSampler(),
    "ddpm": AncestralSampler("ddpm", fixed_eta=1.0),
    "pc": PredictorCorrector(),
    "euler": SinglestepSampler("euler", (EULER,), flow=True),
    "heun": SinglestepSampler("heun", (EULER, HEUN), flow=True),
}
#: the deterministic samplers of a noise-prediction model (VP / VE schedules; ``ddim`` with eta = 0)
ODE_METHODS: tuple[str, ...] = (
    "ddim",
    "dpm_solver_1",
    "dpm_solver_2",
    "dpm_solver_3",
    "dpm_solver++2m",
    "deis",
    "unipc",
)
#: the samplers of a velocity model on a FlowSchedule
FLOW_METHODS: tuple[str, ...] = ("euler", "heun")
#: the samplers that draw noise (with ``generator``)
STOCHASTIC_METHODS: tuple[str, ...] = ("ddpm", "pc")
METHODS: tuple[str, ...] = tuple(SAMPLERS)
#: the declared order of each method (weak order 1 for ddpm and pc)
ORDERS: dict[str, int] = {name: s.order for name, s in SAMPLERS.items()}


def sample(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    x_T: Tensor,
    schedule: AbstractSchedule,
    method: str = "dpm_solver++2m",
    steps: int = 20,
    t_end: float | None = None,
    *,
    spacing: str | None = None,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    corrector_steps: int = 1,
    snr: float | None = None,
    denoise_to_zero: bool = False,
    progress: bool = False,
) -> Tensor:
    """Integrate from ``x_T`` at ``schedule.t_max`` to ``t_end`` with ``method``; returns ``x`` at ``t_end``, a tensor
    like ``x_T`` ``(B, ...)``.

    Arguments:
        model_fn: ``model_fn(x, t)`` with ``x`` shaped like ``x_T`` and ``t`` a ``(B,)`` tensor of x's dtype; returns
            the predicted noise (VP/VE schedules) or the velocity ``eps - x_0`` (FlowSchedule, ``euler``/``heun``).
        x_T: the start, e.g. ``N(0, I)`` for VP, ``N(0, sigma_max^2 I)`` for VE.
        method: one of :data:`METHODS` (see :mod:`pdeforge.generative._samplers`).
        steps: network evaluations. A singlestep order-k method takes ``steps // k`` steps of order k and one of
            order ``steps % k`` for a remainder; ``pc`` needs a multiple of ``1 + corrector_steps``.
        t_end: where to stop (default the schedule's: 1e-3 VP, 1e-5 VE, 0 flow).
        spacing: ``"logSNR"`` (default for VP/VE), ``"time_uniform"`` (default for flow), ``"time_quadratic"``.
        generator: the noise of ``ddpm``, ``pc`` and ``ddim`` with ``eta > 0``.
        eta: DDIM's stochasticity (0: the ODE sampler).
        corrector_steps, snr: ``pc``'s Langevin steps per grid step and their signal-to-noise ratio (default 0.16
            for VE, 0.01 for VP).
        denoise_to_zero: finish with the data prediction ``x0 = (x - sigma eps) / alpha`` at ``t_end`` (one NFE more,
            not counted in ``steps``; DPM-Solver's option of that name).
        progress: print the network evaluations done to stderr.

    Gradients flow through the sampler; wrap the call in ``torch.no_grad()`` to sample without them.
    """
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {', '.join(METHODS)}")
    sampler = SAMPLERS[method]
    name = type(schedule).__name__
    if not isinstance(schedule, AbstractSchedule):
        raise ValueError(f"schedule: expected a VPSchedule, VESchedule or FlowSchedule, got {name}")
    if not fits(sampler, schedule):
        fit = [m for m, s in SAMPLERS.items() if fits(s, schedule)]
        raise ValueError(f"method {method!r} does not fit a {name}; for a {name} use one of {', '.join(fit)}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int (network evaluations), got {steps!r}")
    if not isinstance(x_T, Tensor) or not x_T.is_floating_point() or x_T.ndim < 1:
        raise ValueError(f"x_T: expected a floating tensor (B, ...), got {getattr(x_T, 'shape', type(x_T).__name__)}")
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be a non-negative int, got {corrector_steps!r}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta!r}")
    if t_end is not None and t_end <= 0 and not isinstance(schedule, FlowSchedule):
        raise ValueError(f"t_end {t_end!r}: a {name} needs t_end > 0 (sigma(0) = 0, lambda(0) = inf), e.g. 1e-3")
    opt = Options(generator, float(eta), corrector_steps, default_snr(schedule) if snr is None else float(snr))
    plan = sampler.plan(steps, opt)
    grid = time_steps(schedule, len(plan), t_end, spacing)
    model = _Model(model_fn, x_T, _printer(steps) if progress else None)
    x = sampler.integrate(model, x_T, schedule, grid, plan, opt)
    if denoise_to_zero:
        t = float(grid[-1])
        out = model(x, t)
        if isinstance(schedule, FlowSchedule):  # x_t = x0 + t v
            return x - t * out
        alpha, sigma = float(schedule.alpha(torch.tensor(t))), float(schedule.sigma(torch.tensor(t)))
        return (x - sigma * out) / alpha
    return x


def _printer(total: int) -> Callable[[], None]:
    import sys

    count = [0]

    def tick() -> None:
        count[0] += 1
        print(
            f"\rsampling: {count[0]}/{total} network evaluations",
            end="\n" if count[0] >= total else "",
            file=sys.stderr,
        )

    return tick
