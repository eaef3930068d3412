"""Optimisation: Adam (exponential learning-rate decay), then L-BFGS with a strong-Wolfe line search that says why
it stopped.

:func:`adam` and :func:`lbfgs` train a PINN in memory (``PINN.fit``, the inverse and hidden-term PINNs); a config run
(``pdeforge train configs/pinn_*.yaml``) takes its Adam steps in the run skeleton (:class:`~pdeforge.pinns.PINNFamily`)
with the same schedule (:func:`pdeforge.training.lr_factor`, ``"exponential"``) and :func:`lbfgs` after them.

``torch.optim.LBFGS`` returns silently; users see "L-BFGS stopped after one iteration" with no reason. Here
:func:`lbfgs` runs the same iteration (Nocedal & Wright, Algorithms 7.4 and 7.5: the two-loop recursion over the
last ``history_size`` pairs, torch's strong-Wolfe line search, torch's first step and stopping tests) in a loop of
its own, which knows why it stops, in the order ``torch`` tests its conditions:

* ``"max iterations"``: the iteration budget is spent;
* ``"gradient tolerance reached"``: ``max |grad| <= tolerance_grad`` (possibly before the first iteration);
* ``"line search failed: not a descent direction"``: ``grad . d > -tolerance_change`` (the quasi-Newton
  direction went uphill or flat, typically round-off at a float32 minimum);
* ``"line search failed: step below tolerance_change"``: ``max |t d| <= tolerance_change``;
* ``"loss change below tolerance_change"``;
* ``"non-finite loss"``: the closure produced NaN/inf (L-BFGS is stopped at once, parameters restored to the
  last finite point).

A record is logged every ``chunk`` iterations and at the stop, from the accepted point's loss (no evaluation of
its own). The two-loop recursion is solved as two small triangular systems (``_Pairs``): about fifteen
operations per iteration whatever the history, where ``torch.optim.LBFGS`` dispatches about ten per stored pair
(with a history of 100 pairs, most of an iteration's cost beside the loss of a small network).

Every report carries the iteration and evaluation counts. TF32 matrix products are switched off (PINN
residuals need full float32 or float64 products); ``dtype=float64`` is chosen by the caller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim.lbfgs import _strong_wolfe  # torch's strong-Wolfe line search (a private helper, since torch 1.4)

# objective(step) -> (loss, record): step is the Adam step, or None during L-BFGS (no resampling, frozen weights);
# the record's values may be 0-d tensors: they become numbers (numbers(record)) only when a record is logged
Objective = Callable[[int | None], tuple[Tensor, dict]]


def numbers(record: dict) -> dict:
    """``record`` with its 0-d tensors as Python floats (what a log entry holds)."""
    return {k: float(v) if isinstance(v, Tensor) else v for k, v in record.items()}


@dataclass(frozen=True)
class OptimConfig:
    """Adam for ``adam_iters`` steps (learning rate ``lr decay_rate^(step / decay_every)``), then ``lbfgs_iters`` of
    L-BFGS; ``log_every``: Adam steps between records."""

    adam_iters: int = 1000
    lr: float = 1e-3
    decay_rate: float = 0.9
    decay_every: int = 1000
    lbfgs_iters: int = 0
    lbfgs_lr: float = 1.0
    history_size: int = 50
    tolerance_grad: float = 1e-10
    tolerance_change: float = 1e-14
    chunk: int = 500
    log_every: int = 100


@dataclass(frozen=True)
class LBFGSReport:
    """Why L-BFGS stopped, after how many iterations and closure evaluations, at which loss."""

    reason: str
    iterations: int
    evaluations: int
    loss: float

    def __str__(self) -> str:
        return (
            f"L-BFGS stopped: {self.reason} after {self.iterations} iterations "
            f"({self.evaluations} evaluations), loss {self.loss:.4g}"
        )


class _NonFinite(RuntimeError):
    """Raised inside the L-BFGS closure when the loss stops being finite (caught to report the stop reason)."""


def disable_tf32() -> None:
    """Full-precision float32 matrix products on GPUs (TF32 would cap residual accuracy near 1e-3)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def adam(
    objective: Objective,
    params: list[Tensor] | list[dict],
    config: OptimConfig,
    log: Callable[[dict], None] | None = None,
) -> float:
    """Run the Adam phase on ``params`` (tensors, or parameter groups: a group may set its own ``lr`` and
    ``maximize``); returns the last loss. The learning rate decays smoothly, ``lr decay_rate^(step / decay_every)``
    (the run skeleton's ``"exponential"`` schedule)."""
    from ..training.schedule import make_scheduler

    disable_tf32()
    opt = _adam(params, config.lr)
    constant = config.decay_rate == 1.0  # no schedule to step
    sched = (
        None
        if constant
        else make_scheduler(opt, config.adam_iters, 0.0, "exponential", config.decay_rate, config.decay_every)
    )
    loss_value, start = math.nan, time.perf_counter()
    for step in range(config.adam_iters):
        opt.zero_grad(set_to_none=True)
        loss, record = objective(step)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"Adam: non-finite loss {loss_value} at step {step}; lower the learning rate")
        if log is not None and (step % config.log_every == 0 or step == config.adam_iters - 1):
            log(
                {
                    "phase": "adam",
                    "step": step,
                    "loss": loss_value,
                    "lr": opt.param_groups[0]["lr"],
                    "time": time.perf_counter() - start,
                    **numbers(record),
                }
            )
    return loss_value


def _adam(params: list[Tensor] | list[dict], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` with its fused kernel where this torch has one for these parameters (one kernel for all
    parameters instead of about ten operations per tensor: 0.1 ms instead of 0.4 ms per step for a 2-20-20-20-1 MLP
    on one CPU thread), else the default implementation; both compute the same update (to round-off)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=lr)


def lbfgs(
    objective: Objective, params: list[Tensor], config: OptimConfig, log: Callable[[dict], None] | None = None
) -> LBFGSReport:
    """Run L-BFGS (strong Wolfe) for up to ``config.lbfgs_iters`` iterations and explain why it stopped (see the module
    docstring); ``params`` end at the last accepted point."""
    disable_tf32()
    params = list(params)
    last: dict = {}

    def evaluate() -> tuple[float, Tensor]:
        """The loss and its flat gradient at the parameters' values."""
        for p in params:
            p.grad = None
        loss, record = objective(None)
        if not torch.isfinite(loss):
            raise _NonFinite(float(loss.detach()))
        loss.backward()
        last.update(record)
        return float(loss.detach()), _flat([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])

    def put(x: Tensor) -> None:
        with torch.no_grad():
            offset = 0
            for p in params:
                p.copy_(x[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def along(x0: Tensor, t: float, d: Tensor) -> tuple[float, Tensor]:  # the line search's trial point
        put(x0 + float(t) * d)
        return evaluate()

    start, reason = time.perf_counter(), "max iterations"
    x = _flat([p.detach() for p in params])
    pairs = _Pairs(config.history_size)
    done = evals = 0
    loss, d, t, scale = math.nan, None, 0.0, 1.0

    def record(why: str) -> None:
        if log is not None:
            entry = {"phase": "lbfgs", "step": done, "loss": loss, "evaluations": evals, "reason": why}
            log({**entry, "time": time.perf_counter() - start, **{k: v for k, v in numbers(last).items()}})

    try:
        loss, g = evaluate()
        g_prev, evals = g, 1
        if float(g.abs().max()) <= config.tolerance_grad:
            reason = "gradient tolerance reached"
        while reason == "max iterations" and done < config.lbfgs_iters:
            if d is not None:  # the new curvature pair, then the quasi-Newton direction
                y, step = g - g_prev, d * t
                ys = float(y.dot(step))
                if ys > 1e-10:
                    pairs.push(step, y)
                    scale = ys / float(y.dot(y))
                d = pairs.direction(g, scale)
            else:
                d = g.neg()
            g_prev, loss_prev = g, loss
            t = min(1.0, 1.0 / float(g.abs().sum())) * config.lbfgs_lr if done == 0 else config.lbfgs_lr
            gtd = g.dot(d)
            if float(gtd) > -config.tolerance_change:
                reason = "line search failed: not a descent direction"
                break
            loss, g, t, n = _strong_wolfe(along, x, t, d, loss, g, gtd)
            x = x + float(t) * d
            put(x)
            done, evals = done + 1, evals + n
            if done == config.lbfgs_iters:
                break
            if float(g.abs().max()) <= config.tolerance_grad:
                reason = "gradient tolerance reached"
            elif float((d * t).abs().max()) <= config.tolerance_change:
                reason = "line search failed: step below tolerance_change"
            elif abs(loss - loss_prev) < config.tolerance_change:
                reason = "loss change below tolerance_change"
            elif done % config.chunk == 0:
                record("max iterations")  # a chunk's iterations are done; the run goes on
    except _NonFinite:
        put(x)  # back to the last accepted point
        reason = "non-finite loss"
    record(reason)
    return LBFGSReport(reason, done, evals, loss)


def _flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([v.reshape(-1) for v in tensors])


class _Pairs:
    """The last ``size`` curvature pairs ``(s_i, y_i)``, oldest first, as the rows of ``S`` and ``Y`` ``(k, n)``, with
    ``P = S Y^T`` (``P_ij = s_i . y_j``), kept up to date at each new pair (two matrix-vector products).

    :meth:`direction` is the two-loop recursion (Nocedal & Wright, Algorithm 7.4) written as the two triangular
    systems it solves by substitution: the first loop's ``alpha_i = rho_i s_i . (q - sum_{j > i} alpha_j y_j)`` is
    ``(I + rho U) alpha = rho S q`` with ``U`` the strict upper triangle of ``P``; the second loop's ``beta`` solves
    ``(I + rho L) beta = rho (Y r_0 + L alpha)`` with ``L`` the strict lower triangle of ``P^T``. About fifteen
    operations whatever the history, where the loops take four per stored pair (tested against
    ``torch.optim.LBFGS``'s iterates).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.S = self.Y = self.P = None

    def push(self, s: Tensor, y: Tensor) -> None:
        if self.S is None:
            self.S, self.Y, self.P = s[None], y[None], s.dot(y).reshape(1, 1)
            return
        row, col = self.Y @ s, self.S @ y  # s_new . y_j, s_i . y_new
        corner = s.dot(y).reshape(1)
        P = torch.cat([torch.cat([self.P, col[:, None]], 1), torch.cat([row, corner])[None]], 0)
        S, Y = torch.cat([self.S, s[None]]), torch.cat([self.Y, y[None]])
        if S.shape[0] > self.size:
            S, Y, P = S[1:], Y[1:], P[1:, 1:]
        self.S, self.Y, self.P = S, Y, P

    def direction(self, g: Tensor, scale: float) -> Tensor:
        """``-H g`` with ``H_0 = scale I`` (``-scale g`` while no pair is stored)."""
        if self.S is None:
            return g.neg().mul_(scale)
        S, Y, P = self.S, self.Y, self.P
        rho = 1.0 / P.diagonal()
        q = g.neg()
        # unitriangular: the solver reads the strict triangle only (the diagonal is taken as 1)
        upper = rho[:, None] * P
        alpha = torch.linalg.solve_triangular(upper, (rho * (S @ q))[:, None], upper=True, unitriangular=True)[:, 0]
        r = torch.addmv(q, Y.T, alpha, alpha=-1.0).mul_(scale)
        low = P.T.tril(-1)
        beta = torch.linalg.solve_triangular(
            rho[:, None] * low, (rho * torch.addmv(Y @ r, low, alpha))[:, None], upper=False, unitriangular=True
        )[:, 0]
        return torch.addmv(r, S.T, alpha - beta)


__all__ = ["OptimConfig", "LBFGSReport", "adam", "lbfgs", "disable_tf32", "numbers"]
