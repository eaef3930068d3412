"""Samplers as data: each a frozen dataclass that declares its order, for the schedules of :mod:`._schedules`.

A noise-prediction model ``eps(x, t)`` defines the probability-flow ODE of ``x_t = alpha x_0 + sigma eps``. In the
variables ``u = x / sigma`` and ``lambda = log(alpha / sigma)`` it reads (Lu et al., "DPM-Solver", NeurIPS 2022)

    du/dlambda = u - eps(sigma u, t(lambda)),

a linear part ``L = 1`` and a nonlinear term ``N = -eps``: DPM-Solver-k is an exponential Runge-Kutta method in
``lambda`` with ``z = h L = h``, written here as an :class:`~pdeforge.solvers.ETDRKTableau` (the tableaus of the
ETDRK solvers, which check their own order conditions). With the data prediction ``x0 = (x - sigma eps) / alpha``
and ``v = x / alpha`` the same ODE is ``dv/dlambda = -v + x0``, the form of DPM-Solver++ (Lu et al. 2022b).

Methods (``steps`` counts network evaluations, NFE):

- ``ddim`` (Song et al., ICLR 2021): ``x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps + c z`` with
  ``c = eta sigma_t sqrt(1 - e^{-2h})``; for ``eta = 0`` (the default) it equals ``dpm_solver_1``.
- ``ddpm``: ancestral sampling, the Gaussian posterior ``q(x_t | x_s, x0)`` between grid times with ``x0``
  predicted (Ho et al., NeurIPS 2020): ``ddim`` with ``eta = 1``; weak order 1.
- ``dpm_solver_1/2/3``: singlestep, order k costs k NFE per step (``r1 = 1/2`` for order 2, ``r1 = 1/3``,
  ``r2 = 2/3`` for order 3). Given ``steps`` not a multiple of k, the ``steps // k`` steps of order k are followed
  by one step of order ``steps % k`` (DPM-Solver's own remainder rule puts the lower orders last as well).
- ``dpm_solver++2m``: multistep, data prediction, order 2 (Lu et al. 2022b, Algorithm 2); its first step is
  DPM-Solver++-1.
- ``deis``: rhoAB-DEIS of order 3 (Zhang & Chen, ICLR 2023): with ``y = x / alpha`` and ``rho = sigma / alpha``
  the ODE is ``dy/drho = eps``, stepped by Adams-Bashforth on the non-uniform grid (the Lagrange polynomial through
  the last three ``eps`` integrated exactly); its first two steps use the history they have (orders 1, 2).
- ``unipc``: UniPC-2 with the bh2 variant (Zhao et al., NeurIPS 2023), multistep predictor-corrector whose
  corrector reuses the next step's evaluation: order 3 for one NFE per step.
- ``pc``: score SDE's predictor-corrector (Song et al., ICLR 2021): per grid step ``corrector_steps`` Langevin
  steps at the current time with signal-to-noise ``snr`` (0.16 for VE, 0.01 for VP as the paper), then the
  reverse-diffusion predictor from the exact forward transition ``x_s = (alpha_s/alpha_t) x_t + g z``,
  ``g^2 = sigma_s^2 - (alpha_s/alpha_t)^2 sigma_t^2``: ``x_t = (2 - alpha_s/alpha_t) x_s + g^2 score + g z``;
  ``1 + corrector_steps`` NFE per grid step (``steps`` must be a multiple). The Langevin step size is score SDE's,
  ``2 (alpha_s/alpha_t)^2 (snr ||z|| / ||score||)^2`` with the norms per sample averaged over the batch, the factor
  ``(alpha_s / alpha_t)^2`` being score SDE's discrete ``1 - beta_i``. Langevin steps without a Metropolis test
  widen the variance by about ``snr^2`` relative (2.6 % at VE's 0.16).
- ``euler``, ``heun``: the flow ODE ``dx/dt = v(x, t)`` of a :class:`FlowSchedule` velocity model, from t = 1 to
  ``t_end``; Heun takes 2 NFE per step (an odd ``steps`` ends with one Euler step).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..solvers import ETDRKTableau
from ._schedules import AbstractSchedule, FlowSchedule, VESchedule

__all__ = [
    "SinglestepSampler",
    "AncestralSampler",
    "DPMSolverPlusPlusMultistep",
    "DEISSampler",
    "PredictorCorrector",
    "UniPCSampler",
    "dpm_solver_tableau",
    "phi",
]

ModelFn = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------------------------- phi functions
def phi(k: int, z: float) -> float:
    """``phi_k(z) = sum_n z^n / (n + k)!`` for a real scalar, without cancellation near 0 (Taylor series for
    ``|z| < 1``, the recursion ``phi_{k+1} = (phi_k - 1/k!) / z`` elsewhere)."""
    if abs(z) < 1.0:
        return sum(z**n / math.factorial(n + k) for n in range(30))
    value = math.exp(z)
    for j in range(k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def _coefficient(co: tuple[tuple[float, int, float], ...], z: float) -> float:
    return sum(w * phi(k, c * z) for w, k, c in co)


def dpm_solver_tableau(order: int, r1: float | None = None, r2: float | None = None) -> ETDRKTableau:
    """DPM-Solver-``order`` (Lu et al. 2022, Algorithms 1-2) as an exponential RK tableau for ``u' = u + N(u)``,
    ``N = -eps``, in ``lambda``. Defaults: ``r1 = 1/2`` for order 2; ``r1 = 1/3``, ``r2 = 2/3`` for order 3.

    Order 2: ``u_1 = e^{r1 h} u + r1 h phi_1(r1 h) N_0``, ``u_new = e^h u + h [(1 - 1/(2 r1)) phi_1 N_0 +
    phi_1 / (2 r1) N_1]``. Order 3 adds ``a_32 = r2^2/r1 phi_2(r2 z)`` and weights ``b = (phi_1 - phi_2/r2, 0,
    phi_2/r2)``: the paper's ``(e^h - 1)/h - 1 = h phi_2(h)``.
    """
    if order == 1:
        return ETDRKTableau("DPM-Solver-1", 1, c=(0.0,), a=((),), b=(((1.0, 1, 1.0),),))
    if order == 2:
        r1 = 0.5 if r1 is None else r1
        return ETDRKTableau(
            "DPM-Solver-2",
            2,
            c=(0.0, r1),
            a=((), (((r1, 1, r1),),)),
            b=(((1 - 1 / (2 * r1), 1, 1.0),), ((1 / (2 * r1), 1, 1.0),)),
        )
    if order == 3:
        r1 = 1 / 3 if r1 is None else r1
        r2 = 2 / 3 if r2 is None else r2
        return ETDRKTableau(
            "DPM-Solver-3",
            3,
            c=(0.0, r1, r2),
            a=((), (((r1, 1, r1),),), (((r2, 1, r2), (-(r2**2) / r1, 2, r2)), ((r2**2 / r1, 2, r2),))),
            b=(((1.0, 1, 1.0), (-1 / r2, 2, 1.0)), (), ((1 / r2, 2, 1.0),)),
        )
    raise ValueError(f"DPM-Solver has orders 1, 2, 3, not {order!r}")


#: classical explicit RK methods written as exponential RK tableaus, evaluated at z = 0 (phi_k(0) = 1/k!)
EULER = ETDRKTableau("Euler", 1, c=(0.0,), a=((),), b=(((1.0, 1, 1.0),),))
HEUN = ETDRKTableau("Heun", 2, c=(0.0, 1.0), a=((), (((1.0, 1, 1.0),),)), b=(((0.5, 1, 1.0),), ((0.5, 1, 1.0),)))


# ----------------------------------------------------------------------------------------------- the model call
class _Model:
    """``model_fn`` called with ``t`` as a ``(B,)`` tensor of x's dtype, its output checked, its calls counted."""

    def __init__(self, model_fn: ModelFn, x: Tensor, progress: Callable[[], None] | None) -> None:
        self.fn, self.shape, self.nfe, self.progress = model_fn, x.shape, 0, progress

    def __call__(self, x: Tensor, t: float) -> Tensor:
        out = self.fn(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))
        if not isinstance(out, Tensor) or out.shape != self.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"model_fn(x, t) returned {got}; expected a tensor shaped like x, {tuple(self.shape)}")
        self.nfe += 1
        if self.progress is not None:
            self.progress()
        return out


@dataclass(frozen=True)
class Options:
    """What ``sample`` passes on besides the grid: the random generator and the stochastic samplers' options."""

    generator: torch.Generator | None = None
    eta: float = 0.0
    corrector_steps: int = 1
    snr: float = 0.01


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _ab(schedule: AbstractSchedule, t: float) -> tuple[float, float, float]:
    """(alpha, sigma, lambda) at ``t`` as Python floats (float64)."""
    tt = torch.tensor(t, dtype=torch.float64)
    return float(schedule.alpha(tt)), float(schedule.sigma(tt)), float(schedule.log_snr(tt))


# ----------------------------------------------------------------------------------------------- samplers
class AbstractSampler(abc.ABC):
    """A sampler: its ``name``, declared ``order``, whether it is for a velocity model on a :class:`FlowSchedule`
    (``flow``) or a noise model on VP/VE, and whether it draws noise (``stochastic``)."""

    name: str
    order: int
    flow: bool = False
    stochastic: bool = False

    def plan(self, steps: int, opt: Options) -> tuple[int, ...]:
        """The NFE of each grid step for a budget of ``steps`` NFE (one each by default)."""
        return (1,) * steps

    @abc.abstractmethod
    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        """From ``x`` at ``grid[0]`` to ``grid[-1]``, grid step ``i`` taking ``plan[i]`` NFE."""


@dataclass(frozen=True)
class SinglestepSampler(AbstractSampler):
    """An exponential Runge-Kutta method per grid step: DPM-Solver-k in ``lambda`` on ``u = x / sigma`` (``z = h``,
    ``N = -eps``) for a noise model, or the classical method (``z = 0``) on ``x`` in ``t`` with ``N = v`` for a
    velocity model (``flow``). ``tableaus[k - 1]`` is the method with k stages, used for a remainder of k NFE."""

    name: str
    tableaus: tuple[ETDRKTableau, ...]
    flow: bool = False

    def __post_init__(self) -> None:
        for k, tab in enumerate(self.tableaus, start=1):
            if len(tab.c) != k or tab.c[0] != 0:
                raise ValueError(f"{self.name}: tableaus[{k - 1}] must have {k} stages starting at c = 0")

    @property
    def order(self) -> int:  # type: ignore[override]
        return self.tableaus[-1].order

    def plan(self, steps: int, opt: Options) -> tuple[int, ...]:
        k = len(self.tableaus)
        return (k,) * (steps // k) + ((steps % k,) if steps % k else ())

    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        for i, stages in enumerate(plan):
            tab = self.tableaus[stages - 1]
            t_s, t_t = float(grid[i]), float(grid[i + 1])
            if self.flow:
                x = _exp_rk_step(tab, x, 0.0, t_t - t_s, lambda xi, c, t0=t_s, dt=t_t - t_s: model(xi, t0 + c * dt))
                continue
            _, sigma_s, lam_s = _ab(schedule, t_s)
            _, sigma_t, lam_t = _ab(schedule, t_t)
            h = lam_t - lam_s

            def n_of(ui: Tensor, c: float, t_s=t_s, sigma_s=sigma_s, lam_s=lam_s, h=h) -> Tensor:
                if c == 0:
                    return -model(ui * sigma_s, t_s)
                ti = float(schedule.t_of_log_snr(torch.tensor(lam_s + c * h, dtype=torch.float64)))
                return -model(ui * _ab(schedule, ti)[1], ti)

            x = _exp_rk_step(tab, x / sigma_s, h, h, n_of) * sigma_t
        return x


def _exp_rk_step(tab: ETDRKTableau, u: Tensor, z: float, h: float, n_of: Callable[[Tensor, float], Tensor]) -> Tensor:
    """One exponential RK step ``U_i = e^{c_i z} u + h sum_j a_ij(z) N(U_j)``, ``u_new = e^z u + h sum_i b_i(z)
    N(U_i)`` with scalar ``z`` (coefficients in float64)."""
    stages: list[Tensor] = []
    for ci, row in zip(tab.c, tab.a):
        ui = u * math.exp(ci * z)
        for j, co in enumerate(row):
            if co:
                ui = ui + (h * _coefficient(co, z)) * stages[j]
        stages.append(n_of(ui, ci))
    out = u * math.exp(z)
    for co, n_i in zip(tab.b, stages):
        if co:
            out = out + (h * _coefficient(co, z)) * n_i
    return out


@dataclass(frozen=True)
class AncestralSampler(AbstractSampler):
    """DDIM with ``eta`` (``ddim``; 0: deterministic, equal to DPM-Solver-1) and DDPM ancestral sampling
    (``ddpm``: ``eta = 1`` fixed, the posterior ``q(x_t | x_s, x0_pred)``, variance ``sigma_t^2 (1 - e^{-2h})``).
    """

    name: str
    order: int = 1
    fixed_eta: float | None = None

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.fixed_eta is not None

    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        eta = opt.eta if self.fixed_eta is None else self.fixed_eta
        for i in range(len(plan)):
            t_s, t_t = float(grid[i]), float(grid[i + 1])
            alpha_s, sigma_s, lam_s = _ab(schedule, t_s)
            alpha_t, sigma_t, lam_t = _ab(schedule, t_t)
            eps = model(x, t_s)
            c = eta * sigma_t * math.sqrt(-math.expm1(-2 * (lam_t - lam_s)))
            # alpha_t x0 + sqrt(sigma_t^2 - c^2) eps with x0 = (x - sigma_s eps) / alpha_s
            x = (alpha_t / alpha_s) * x + (math.sqrt(max(sigma_t**2 - c**2, 0.0)) - alpha_t * sigma_s / alpha_s) * eps
            if c > 0:
                x = x + c * _noise(x, opt.generator)
        return x


@dataclass(frozen=True)
class DPMSolverPlusPlusMultistep(AbstractSampler):
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), data prediction ``x0 = (x - sigma eps) / alpha``:
    ``x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) D``, ``D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev``,
    ``r = h_prev / h``; the first step takes ``D = x0_s``."""

    name: str = "dpm_solver++2m"
    order: int = 2

    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        prev: tuple[Tensor, float] | None = None
        for i in range(len(plan)):
            t_s, t_t = float(grid[i]), float(grid[i + 1])
            alpha_s, sigma_s, lam_s = _ab(schedule, t_s)
            alpha_t, sigma_t, lam_t = _ab(schedule, t_t)
            h = lam_t - lam_s
            x0 = (x - sigma_s * model(x, t_s)) / alpha_s
            d = x0
            if prev is not None:
                r = (lam_s - prev[1]) / h
                d = x0 + (x0 - prev[0]) / (2 * r)
            x = (sigma_t / sigma_s) * x - (alpha_t * math.expm1(-h)) * d
            prev = (x0, lam_s)
        return x


@dataclass(frozen=True)
class DEISSampler(AbstractSampler):
    """rhoAB-DEIS (Zhang & Chen 2023): Adams-Bashforth of order ``order`` for ``dy/drho = eps`` with
    ``y = x / alpha``, ``rho = sigma / alpha``: ``y_t = y_s + sum_j eps_j int_{rho_s}^{rho_t} l_j(rho) drho`` over
    the Lagrange basis ``l_j`` of the last ``order`` nodes (fewer at the start)."""

    name: str = "deis"
    order: int = 3

    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        history: list[tuple[float, Tensor]] = []
        for i in range(len(plan)):
            t_s, t_t = float(grid[i]), float(grid[i + 1])
            alpha_s, sigma_s, _ = _ab(schedule, t_s)
            alpha_t, sigma_t, _ = _ab(schedule, t_t)
            rho_s, rho_t = sigma_s / alpha_s, sigma_t / alpha_t
            history = [*history, (rho_s, model(x, t_s))][-self.order :]
            y = x / alpha_s
            for w, (_, eps) in zip(_lagrange_integrals([r for r, _ in history], rho_s, rho_t), history):
                y = y + w * eps
            x = alpha_t * y
        return x


@dataclass(frozen=True)
class UniPCSampler(AbstractSampler):
    """UniPC (Zhao et al., NeurIPS 2023), noise prediction, variant ``B(h) = e^h - 1`` (bh2): per step the
    predictor UniP-``p`` from the last ``p`` evaluations, then the corrector UniC with the evaluation at the new
    point, which the next step reuses (one NFE per step; the last step is not corrected, as the authors' code).
    With ``x_base = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps_s`` and ``D_k = (eps_k - eps_s) / r_k``,
    ``r_k = (lambda_k - lambda_s) / h``::

        x_t = x_base - sigma_t B(h) sum_k rho_k D_k,        R rho = g,  R_ik = r_k^(i-1),
        g_i = (i-1)! h phi_{i+1}(h) / B(h)   (h phi_2 = (e^h - 1)/h - 1, h phi_{k+1} = h phi_k / h - 1/k!)

    the predictor on ``r_1..r_{p-1}`` (``rho = 1/2`` for ``p = 2``), the corrector on them and ``r = 1`` with
    ``D = eps(x_t) - eps_s``; UniC raises the order to ``p + 1``. The first ``p - 1`` steps use the history they have.
    """

    name: str = "unipc"
    predictor_order: int = 2

    @property
    def order(self) -> int:  # type: ignore[override]
        return self.predictor_order + 1

    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        n = len(plan)
        history = [(float(grid[0]), model(x, float(grid[0])))]
        for i in range(n):
            t_s, t_t = float(grid[i]), float(grid[i + 1])
            p = min(self.predictor_order, i + 1)
            alpha_s, _, lam_s = _ab(schedule, t_s)
            alpha_t, sigma_t, lam_t = _ab(schedule, t_t)
            h = lam_t - lam_s
            eps_s = history[-1][1]
            rks, diffs = [], []
            for k in range(1, p):
                t_k, eps_k = history[-(k + 1)]
                rks.append((_ab(schedule, t_k)[2] - lam_s) / h)
                diffs.append((eps_k - eps_s) / rks[-1])
            rho_p, rho_c = _unipc_weights([*rks, 1.0], h, p)
            b_h = math.expm1(h)
            base = (alpha_t / alpha_s) * x - (sigma_t * b_h) * eps_s
            x_t = base
            for r, d in zip(rho_p, diffs):
                x_t = x_t - (sigma_t * b_h * r) * d
            if i < n - 1:  # UniC, with the evaluation the next step starts from
                eps_t = model(x_t, t_t)
                x_t = base - (sigma_t * b_h * rho_c[-1]) * (eps_t - eps_s)
                for r, d in zip(rho_c[:-1], diffs):
                    x_t = x_t - (sigma_t * b_h * r) * d
                history = [*history, (t_t, eps_t)][-self.predictor_order :]
            x = x_t
        return x


def _unipc_weights(rks: list[float], h: float, p: int) -> tuple[list[float], list[float]]:
    """UniPC-bh2's predictor and corrector weights ``rho`` (see :class:`UniPCSampler`), in float64."""
    b_h = math.expm1(h)
    h_phi = math.expm1(h) / h - 1  # h phi_2(h)
    rows, g, factorial = [], [], 1
    for i in range(1, p + 1):
        rows.append([r ** (i - 1) for r in rks])
        g.append(h_phi * factorial / b_h)
        factorial *= i + 1
        h_phi = h_phi / h - 1 / factorial
    big, rhs = torch.tensor(rows, dtype=torch.float64), torch.tensor(g, dtype=torch.float64)
    rho_p = [0.5] if p == 2 else torch.linalg.solve(big[:-1, :-1], rhs[:-1]).tolist() if p > 2 else []
    rho_c = [0.5] if p == 1 else torch.linalg.solve(big, rhs).tolist()
    return rho_p, rho_c


def _lagrange_integrals(nodes: list[float], a: float, b: float) -> list[float]:
    """``int_a^b l_j(r) dr`` for the Lagrange basis ``l_j`` on ``nodes``, in the scaled variable
    ``theta = (r - a) / (b - a)`` (nodes of order one on a geometric grid)."""
    delta = b - a
    theta = [(r - a) / delta for r in nodes]
    out = []
    for j, tj in enumerate(theta):
        poly = [1.0]  # coefficients of prod_{m != j} (theta - t_m) / (t_j - t_m), lowest degree first
        for m, tm in enumerate(theta):
            if m != j:
                scale = 1.0 / (tj - tm)
                shifted = [0.0, *poly]
                poly = [(s - tm * p) * scale for s, p in zip(shifted, [*poly, 0.0])]
        out.append(delta * sum(c / (n + 1) for n, c in enumerate(poly)))
    return out


@dataclass(frozen=True)
class PredictorCorrector(AbstractSampler):
    """Score SDE's PC sampler: ``corrector_steps`` Langevin steps, then the reverse-diffusion predictor, per grid
    step (see the module docstring); score ``= -eps / sigma``."""

    name: str = "pc"
    order: int = 1
    stochastic: bool = True

    def plan(self, steps: int, opt: Options) -> tuple[int, ...]:
        k = 1 + opt.corrector_steps
        if steps % k:
            raise ValueError(
                f"method 'pc' with corrector_steps={opt.corrector_steps} takes {k} network evaluations per step; "
                f"steps={steps} is not a multiple of {k}"
            )
        return (k,) * (steps // k)

    def integrate(
        self, model: _Model, x: Tensor, schedule: AbstractSchedule, grid: Tensor, plan: tuple[int, ...], opt: Options
    ) -> Tensor:
        batch_axes = tuple(range(1, x.ndim))
        for i in range(len(plan)):
            t_s, t_t = float(grid[i]), float(grid[i + 1])
            alpha_s, sigma_s, _ = _ab(schedule, t_s)
            alpha_t, sigma_t, _ = _ab(schedule, t_t)
            ratio = alpha_s / alpha_t
            for _ in range(opt.corrector_steps):
                score = -model(x, t_s) / sigma_s
                z = _noise(x, opt.generator)
                # score SDE's step size: the norms per sample, averaged over the batch (per-sample ratios would
                # give the samples nearest the mode huge steps where the field has few points)
                norm_z = torch.linalg.vector_norm(z, dim=batch_axes).mean()
                norm_g = torch.linalg.vector_norm(score, dim=batch_axes).mean()
                step = float(2 * ratio**2 * (opt.snr * norm_z / norm_g.clamp_min(torch.finfo(x.dtype).tiny)) ** 2)
                x = x + step * score + math.sqrt(2 * step) * z
            g2 = sigma_s**2 - ratio**2 * sigma_t**2
            score = -model(x, t_s) / sigma_s
            x = (2 - ratio) * x + g2 * score + math.sqrt(max(g2, 0.0)) * _noise(x, opt.generator)
        return x


def default_snr(schedule: AbstractSchedule) -> float:
    """Score SDE's Langevin signal-to-noise ratio: 0.16 for VE, 0.01 for VP."""
    return 0.16 if isinstance(schedule, VESchedule) else 0.01


def fits(sampler: AbstractSampler, schedule: AbstractSchedule) -> bool:
    """Whether ``sampler`` takes ``schedule``: velocity samplers a FlowSchedule, the others VP/VE."""
    return sampler.flow == isinstance(schedule, FlowSchedule)
