"""Optimisation: Adam (exponential learning-rate decay), then L-BFGS with a strong-Wolfe line search that says why
it stopped.

:func:`adam` and :func:`lbfgs` train a PINN in memory (``PINN.fit``, the inverse and hidden-term PINNs); a config run
(``pdeforge train configs/pinn_*.yaml``) takes its Adam steps in the run skeleton (:class:`~pdeforge.pinns.PINNFamily`)
with the same schedule (:func:`pdeforge.training.lr_factor`, ``"exponential"``) and :func:`lbfgs` after them.

``torch.optim.LBFGS`` returns silently; users see "L-BFGS stopped after one iteration" with no reason. Here
L-BFGS runs in chunks of ``chunk`` iterations and each return is explained from the optimiser's state, in the
order ``torch`` tests its conditions:

* ``"max iterations"``: the iteration budget is spent;
* ``"max function evaluations"``: the line searches used the ``2 chunk + 1`` closure calls of a chunk (the
  next chunk goes on; only the iteration budget ends the run);
* ``"gradient tolerance reached"``: ``max |grad| <= tolerance_grad`` (possibly before the first iteration);
* ``"line search failed: not a descent direction"``: ``grad . d > -tolerance_change`` (the quasi-Newton
  direction went uphill or flat, typically round-off at a float32 minimum);
* ``"line search failed: step below tolerance_change"``: ``max |t d| <= tolerance_change``;
* ``"loss change below tolerance_change"``;
* ``"non-finite loss"``: the closure produced NaN/inf (L-BFGS is stopped at once, parameters restored to the
  last finite point).

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

# objective(step) -> (loss, record): step is the Adam step, or None during L-BFGS (no resampling, frozen weights)
Objective = Callable[[int | None], tuple[Tensor, dict]]


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
    opt = torch.optim.Adam(params, lr=config.lr)
    sched = make_scheduler(opt, config.adam_iters, 0.0, "exponential", config.decay_rate, config.decay_every)
    loss_value, start = math.nan, time.perf_counter()
    for step in range(config.adam_iters):
        opt.zero_grad(set_to_none=True)
        loss, record = objective(step)
        loss.backward()
        opt.step()
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
                    "lr": sched.get_last_lr()[0],
                    "time": time.perf_counter() - start,
                    **record,
                }
            )
    return loss_value


def lbfgs(
    objective: Objective, params: list[Tensor], config: OptimConfig, log: Callable[[dict], None] | None = None
) -> LBFGSReport:
    """Run L-BFGS (strong Wolfe) for up to ``config.lbfgs_iters`` iterations and explain why it stopped."""
    disable_tf32()
    opt = torch.optim.LBFGS(
        params,
        lr=config.lbfgs_lr,
        max_iter=config.chunk,
        history_size=config.history_size,
        tolerance_grad=config.tolerance_grad,
        tolerance_change=config.tolerance_change,
        line_search_fn="strong_wolfe",
    )
    group = opt.param_groups[0]
    last: dict = {}

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=False)
        loss, record = objective(None)
        if not torch.isfinite(loss):
            raise _NonFinite(float(loss.detach()))
        loss.backward()
        last.update(record, loss=float(loss.detach()))
        return loss

    state = opt.state[opt._params[0]]
    done, evals, start = 0, 0, time.perf_counter()
    reason, loss_value = "max iterations", math.nan
    while done < config.lbfgs_iters:
        n = min(config.chunk, config.lbfgs_iters - done)
        group["max_iter"], group["max_eval"] = n, 2 * n + 1
        it0, ev0 = state.get("n_iter", 0), state.get("func_evals", 0)
        backup = [p.detach().clone() for p in params]
        try:
            opt.step(closure)
        except _NonFinite:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
            done += state.get("n_iter", 0) - it0
            evals += state.get("func_evals", 0) - ev0
            reason = "non-finite loss"
            break
        it, ev = state["n_iter"] - it0, state["func_evals"] - ev0
        done, evals = done + it, evals + ev
        final = objective(None)[0]
        loss_value = float(final.detach())
        if not math.isfinite(loss_value):
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
            reason = "non-finite loss"
            break
        grads = torch.autograd.grad(final, params, allow_unused=True)
        gmax = max(float(g.abs().max()) for g in grads if g is not None)
        reason = _why(state, group, it, n, ev, config, loss_value, gmax)
        if log is not None:
            log(
                {
                    "phase": "lbfgs",
                    "step": done,
                    "loss": loss_value,
                    "evaluations": evals,
                    "reason": reason,
                    "time": time.perf_counter() - start,
                    **{k: v for k, v in last.items() if k != "loss"},
                }
            )
        if reason not in ("max iterations", "max function evaluations"):
            break  # a chunk that spent its evaluations goes on with the next chunk; the iteration budget bounds it
    return LBFGSReport(reason, done, evals, loss_value)


def _why(state: dict, group: dict, it: int, n: int, evals: int, config: OptimConfig, loss: float, gmax: float) -> str:
    """Replay torch's stopping tests on the final L-BFGS state (``gmax``: max |grad| at the final point)."""
    if it == n:
        return "max iterations"
    if it == 0 or gmax <= config.tolerance_grad:
        return "gradient tolerance reached"
    if evals >= group["max_eval"]:
        return "max function evaluations"
    d, t, g = state["d"], state["t"], state["prev_flat_grad"]
    if float(g.dot(d)) > -config.tolerance_change:
        return "line search failed: not a descent direction"
    if float(d.mul(t).abs().max()) <= config.tolerance_change:
        return "line search failed: step below tolerance_change"
    prev = state.get("prev_loss")
    if prev is not None and abs(loss - float(prev)) < config.tolerance_change:
        return "loss change below tolerance_change"
    return f"stopped early for an unrecognised reason (max |grad| = {gmax:.3g})"


__all__ = ["OptimConfig", "LBFGSReport", "adam", "lbfgs", "disable_tf32"]
