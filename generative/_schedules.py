"""Noise schedules as data: ``x_t = alpha(t) x_0 + sigma(t) eps`` with ``eps ~ N(0, I)``, and their time grids.

Every schedule is a frozen dataclass with float64-exact tensor methods (dtype and device follow the input):
``alpha(t)``, ``sigma(t)``, the half log signal-to-noise ratio ``log_snr(t) = lambda(t) = log(alpha / sigma)``,
its inverse ``t_of_log_snr(lam)``, ``perturb(x0, t, noise)``, ``t_max`` and a default ``t_end``.

- :class:`VPSchedule`: the variance-preserving SDE (``alpha^2 + sigma^2 = 1``) of score SDE (Song et al., ICLR 2021)
  with a linear beta, ``log alpha(t) = -(beta_max - beta_min) t^2 / 4 - beta_min t / 2``, or the cosine schedule of
  Nichol & Dhariwal (ICML 2021), ``alpha(t) = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2 s/(1 + s))``, in continuous
  time as DPM-Solver (Lu et al., NeurIPS 2022) writes both.
- :class:`VESchedule`: the variance-exploding SDE, ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``.
- :class:`FlowSchedule`: rectified flow / flow matching (Liu et al., ICLR 2023; Lipman et al., ICLR 2023),
  ``x_t = (1 - t) x_0 + t eps``; its model predicts the velocity ``eps - x_0``.

Time grids (:func:`time_steps`) from ``t_max`` to ``t_end``: uniform in ``lambda`` (``"logSNR"``, DPM-Solver's
default), uniform in ``t`` (``"time_uniform"``) or uniform in ``sqrt(t)`` (``"time_quadratic"``, DPM-Solver's
``time_quadratic``, finer near the data).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AbstractSchedule", "VPSchedule", "VESchedule", "FlowSchedule", "SPACINGS", "time_steps"]

SPACINGS = ("logSNR", "time_uniform", "time_quadratic")


def _f64(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t).to(torch.float64)


def _like(value: Tensor, t: Tensor | float) -> Tensor:
    """float64 ``value`` cast back to ``t``'s floating dtype and device (float64 for a Python number)."""
    if isinstance(t, Tensor) and t.is_floating_point():
        return value.to(dtype=t.dtype, device=t.device)
    return value


class AbstractSchedule(abc.ABC):
    """A Gaussian perturbation ``x_t = alpha(t) x_0 + sigma(t) eps``; subclasses give ``log alpha``, ``log sigma``
    and the inverse of ``lambda = log alpha - log sigma``, in float64."""

    t_max: float = 1.0
    t_end: float = 1e-3
    default_spacing: str = "logSNR"

    @abc.abstractmethod
    def _log_alpha(self, t: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def _log_sigma(self, t: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def _t_of_lambda(self, lam: Tensor) -> Tensor: ...

    def alpha(self, t: Tensor | float) -> Tensor:
        """``alpha(t)``, the scale of the data in ``x_t``."""
        return _like(torch.exp(self._log_alpha(_f64(t))), t)

    def sigma(self, t: Tensor | float) -> Tensor:
        """``sigma(t)``, the scale of the noise in ``x_t``."""
        return _like(torch.exp(self._log_sigma(_f64(t))), t)

    def log_snr(self, t: Tensor | float) -> Tensor:
        """``lambda(t) = log(alpha(t) / sigma(t))``, decreasing in ``t``."""
        t64 = _f64(t)
        return _like(self._log_alpha(t64) - self._log_sigma(t64), t)

    def t_of_log_snr(self, lam: Tensor | float) -> Tensor:
        """The inverse of :meth:`log_snr`."""
        return _like(self._t_of_lambda(_f64(lam)), lam)

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``alpha(t) x0 + sigma(t) noise``; x0, noise: ``(B, ...)``, t: ``(B,)`` (or a scalar), broadcast over the
        other axes."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x0.device)
        shape = (-1,) + (1,) * (x0.ndim - 1) if t.ndim == 1 else ()
        a = self.alpha(t).reshape(shape).to(x0.dtype)
        s = self.sigma(t).reshape(shape).to(x0.dtype)
        return a * x0 + s * noise


@dataclass(frozen=True)
class VPSchedule(AbstractSchedule):
    """The variance-preserving SDE, ``sigma = sqrt(1 - alpha^2)``; build it with :meth:`linear` or :meth:`cosine`.

    Attributes:
        kind: ``"linear"`` (beta(t) = beta_min + t (beta_max - beta_min)) or ``"cosine"``.
        beta_min, beta_max: the linear schedule's beta at t = 0 and t = 1 (score SDE's defaults 0.1, 20).
        s: the cosine schedule's offset (0.008, Nichol & Dhariwal).
        t_max: the noisiest time; 1 for linear. The cosine schedule has ``alpha(1) = 0`` (lambda = -inf); it stops
            at DPM-Solver's ``T = 0.9946`` (lambda(T) = -4.78), short of where its beta reaches 999 (t = 0.998).
        t_end: 1e-3 (DPM-Solver's recommendation for continuous-time models).
    """

    kind: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    s: float = 0.008
    t_max: float = 1.0
    t_end: float = 1e-3

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine"):
            raise ValueError(f"VPSchedule: kind must be 'linear' or 'cosine', got {self.kind!r}")
        if self.kind == "linear" and not 0 <= self.beta_min < self.beta_max:
            raise ValueError(
                f"VPSchedule.linear: expected 0 <= beta_min < beta_max, got {self.beta_min}, {self.beta_max}"
            )
        if self.kind == "cosine" and not self.s > 0:
            raise ValueError(f"VPSchedule.cosine: expected s > 0, got {self.s}")
        if self.kind == "cosine" and not 0 < self.t_max < 1:
            raise ValueError(
                f"VPSchedule: the cosine schedule has alpha(1) = 0, so t_max must be below 1, got {self.t_max}; "
                "use VPSchedule.cosine() (t_max 0.9946)"
            )

    @classmethod
    def linear(cls, beta_min: float = 0.1, beta_max: float = 20.0) -> VPSchedule:
        """Score SDE's VP SDE, ``beta(t) = beta_min + t (beta_max - beta_min)``, t in [t_end, 1]."""
        return cls("linear", beta_min=float(beta_min), beta_max=float(beta_max))

    @classmethod
    def cosine(cls, s: float = 0.008) -> VPSchedule:
        """Nichol & Dhariwal's cosine schedule in continuous time, t in [t_end, t_max ~ 0.9946]."""
        return cls("cosine", s=float(s), t_max=0.9946)

    def _log_alpha(self, t: Tensor) -> Tensor:
        if self.kind == "linear":
            return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        c = math.pi / 2 / (1 + self.s)
        return torch.log(torch.cos((t + self.s) * c)) - math.log(math.cos(self.s * c))

    def _log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * torch.log(-torch.expm1(2 * self._log_alpha(t)))

    def _t_of_lambda(self, lam: Tensor) -> Tensor:
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2 * lam)  # alpha^2 = 1 / (1 + e^{-2 lambda})
        if self.kind == "linear":
            # solve (beta_max - beta_min) t^2 / 4 + beta_min t / 2 = -log alpha in the cancellation-free form
            d = self.beta_max - self.beta_min
            tmp = -4 * log_alpha  # = d t^2 + 2 beta_min t
            return tmp / (torch.sqrt(self.beta_min**2 + d * tmp) + self.beta_min)
        c = math.pi / 2 / (1 + self.s)
        return torch.arccos(torch.exp(log_alpha + math.log(math.cos(self.s * c)))) / c - self.s


@dataclass(frozen=True)
class VESchedule(AbstractSchedule):
    """The variance-exploding SDE of score SDE: ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max/sigma_min)^t``.

    ``t_end``: 1e-5 (score SDE's sampling end for VE models).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_max: float = 1.0
    t_end: float = 1e-5

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"VESchedule: expected 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def _log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return math.log(self.sigma_min) + t * math.log(self.sigma_max / self.sigma_min)

    def _t_of_lambda(self, lam: Tensor) -> Tensor:
        return (-lam - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)


@dataclass(frozen=True)
class FlowSchedule(AbstractSchedule):
    """Rectified flow: ``x_t = (1 - t) x_0 + t eps``, t in [0, 1]; the model predicts the velocity
    ``dx_t/dt = eps - x_0``. ``lambda = log((1 - t)/t)`` is infinite at both ends, so its grids are uniform in
    ``t`` by default and its default ``t_end`` is 0."""

    t_max: float = 1.0
    t_end: float = 0.0
    default_spacing: str = "time_uniform"

    def _log_alpha(self, t: Tensor) -> Tensor:
        return torch.log1p(-t)

    def _log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(t)

    def _t_of_lambda(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-lam)

    def alpha(self, t: Tensor | float) -> Tensor:
        return _like(1 - _f64(t), t)

    def sigma(self, t: Tensor | float) -> Tensor:
        return _like(_f64(t).clone(), t)


def time_steps(
    schedule: AbstractSchedule, steps: int, t_end: float | None = None, spacing: str | None = None
) -> Tensor:
    """The float64 grid ``t_max = t_0 > t_1 > ... > t_steps = t_end``, shape ``(steps + 1,)``.

    spacing: ``"logSNR"`` (uniform in ``lambda``; the default of VP/VE schedules), ``"time_uniform"`` (the default
    of :class:`FlowSchedule`) or ``"time_quadratic"`` (uniform in ``sqrt(t)``). t_end: the schedule's default when
    None.
    """
    spacing = schedule.default_spacing if spacing is None else spacing
    t_end = schedule.t_end if t_end is None else float(t_end)
    name = type(schedule).__name__
    if spacing not in SPACINGS:
        raise ValueError(f"spacing {spacing!r}: expected one of {', '.join(SPACINGS)}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0 <= t_end < schedule.t_max:
        raise ValueError(f"t_end {t_end!r}: expected 0 <= t_end < t_max = {schedule.t_max} of the {name}")
    if spacing == "logSNR":
        lam = schedule.log_snr(torch.tensor([schedule.t_max, t_end], dtype=torch.float64))
        if not torch.isfinite(lam).all():
            raise ValueError(
                f"spacing 'logSNR': log-SNR of the {name} is infinite at t_max = {schedule.t_max} or t_end = {t_end}; "
                "use spacing 'time_uniform' or 'time_quadratic'"
            )
        grid = schedule.t_of_log_snr(torch.linspace(float(lam[0]), float(lam[1]), steps + 1, dtype=torch.float64))
    elif spacing == "time_uniform":
        grid = torch.linspace(schedule.t_max, t_end, steps + 1, dtype=torch.float64)
    else:
        grid = torch.linspace(math.sqrt(schedule.t_max), math.sqrt(t_end), steps + 1, dtype=torch.float64) ** 2
    grid[0], grid[-1] = schedule.t_max, t_end  # the ends exactly, not through the inverse
    return grid
