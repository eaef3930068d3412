"""Loss balancing for PINNs: ``L = sum_i lambda_i L_i`` over the terms (``residual``, ``initial``, ``boundary``,
``data``).

* :class:`FixedWeights`: constant ``lambda_i``.
* :class:`LearningRateAnnealingWeights`: learning-rate annealing (Wang, Teng & Perdikaris, SIAM J. Sci. Comput.
  2021) in the gradient-norm form of Wang, Wang & Perdikaris 2023 ("An expert's guide to training PINNs"; their
  code, jaxpi, calls it ``grad_norm``; it is not GradNorm, Chen et al. 2018, which trains the weights): every
  ``every`` steps ``hat lambda_i = mean_j g_j / (g_i + eps mean_j g_j)`` with ``g_i = ||grad_theta L_i||`` over
  all network parameters, and ``lambda_i <- alpha lambda_i + (1 - alpha) hat lambda_i`` from ``lambda_i = 1``:
  every weighted term then pushes with the same gradient norm. The authors' settings, kept here: all terms, all
  parameters, every 1000 steps, ``alpha = 0.9``, ``eps = 1e-5`` (a weight is at most ``1 / eps``). Their 2021
  code instead fixes the residual's weight at 1, updates every 10 steps and uses
  ``max |grad L_r| / mean |grad lambda_i L_i|`` over the weight matrices.
* :class:`NTKWeights`: neural-tangent-kernel weights (Wang, Yu & Perdikaris, J. Comput. Phys. 2022):
  ``hat lambda_i = mean_j m_j / (m_i + eps mean_j m_j)`` with ``m_i`` the mean NTK diagonal
  ``||d r_n / d theta||^2`` over a few points of term ``i``, the same moving average and cadence.

Both balance *gradients*, not progress: a term that is already satisfied has small gradients and so gains weight,
one that is far from satisfied loses it. On Burgers with soft initial and boundary terms that works against the
solution: the zero field nearly satisfies the residual and the boundary, only the initial term moves the solution
away from it, and it is the term that loses weight (``docs/results/pinns.md``: weights, losses and errors, with
seeds).
* :class:`SelfAdaptiveWeights` (McClenny & Braga-Neto 2023): one trainable weight ``s_n`` per point of a fixed
  point set, the term becomes ``mean(s_n^2 r_n^2)``; the network minimises, the weights ascend (``maximize``) in
  the same optimiser step (their parameter group).
* :class:`CausalWeights` (Wang, Sankaran & Perdikaris 2024, "Respecting causality"): the residual loss over
  ``M`` time chunks ``L_r = (1/M) sum_i w_i L_i`` with ``w_i = exp(-epsilon sum_{k<i} L_k)`` (no gradient):
  later times count only once earlier ones are resolved; a list of tolerances is walked through as in the
  paper (the next one once every weight exceeds 0.99).
* :class:`AmplificationWeights` (pdeforge): a residual error at ``(x, t)`` grows like ``exp(g (T - t))`` until the
  end time ``T`` where the local reaction rate ``g = d f / d u`` of the equation's point-wise terms is positive
  (Allen-Cahn near its unstable state ``u = 0``: ``g = 1 - 3 u^2``), and is damped where it is negative. The
  squared residuals are multiplied by ``exp(power max(g, 0) (T - t))`` (no gradient, mean 1 over the points), so
  the network is most exact where its errors would grow most. Measured on Allen-Cahn (``benchmarks/pinns.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..solvers import AbstractDerivatives, AbstractEquation


class AbstractWeighting(ABC):
    """Weights ``lambda_i`` of the loss terms; ``update`` may change them during training.

    ``combine`` and ``pointwise`` are final; strategies differ only in ``update`` (and self-adaptive weights in
    the per-point factors they hold).
    """

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights: dict[str, float] = dict(weights or {})

    def pointwise(self, name: str, sq: Tensor) -> Tensor:
        """Per-point squared errors ``(n,)`` as they enter the term's mean (self-adaptive weights scale them)."""
        return sq

    def combine(self, means: dict[str, Tensor]) -> Tensor:
        """``sum_i lambda_i L_i`` (missing weights are 1)."""
        total = None
        for name, value in means.items():
            w = self.weights.get(name, 1.0)
            term = value if isinstance(w, float) and w == 1.0 else w * value
            total = term if total is None else total + term
        return total

    @abstractmethod
    def update(self, step: int, means: dict[str, Tensor], values: dict[str, Tensor], params: list[Tensor]) -> None:
        """Adapt the weights at optimiser step ``step``.

        Arguments:
            means: the terms ``L_i`` (scalars, in the graph).
            values: per-point values ``(n, C)`` of each term (residuals, misfits), in the graph.
            params: the trainable network parameters.
        """

    def parameter_groups(self) -> list[dict]:
        """Optimiser parameter groups of weights that are trained with the network (self-adaptive: ascent)."""
        return []

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly (tensors and plain types)."""
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])


class FixedWeights(AbstractWeighting):
    """Constant weights."""

    def update(self, step: int, means: dict[str, Tensor], values: dict[str, Tensor], params: list[Tensor]) -> None:
        return None


def _grad_norm(y: Tensor, params: list[Tensor]) -> float:
    gs = torch.autograd.grad(y, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.detach() ** 2).sum() for g in gs if g is not None)))


def _balanced(stats: dict[str, float], eps: float) -> dict[str, float]:
    """``mean_j s_j / (s_i + eps mean_j s_j)`` of positive statistics (at most ``1 / eps``; all 1 if all vanish)."""
    mean = sum(stats.values()) / len(stats)
    if mean <= 0:
        return dict.fromkeys(stats, 1.0)
    return {name: mean / max(value + eps * mean, 1e-30 * mean) for name, value in stats.items()}


class _AbstractMovingAverage(AbstractWeighting):
    def __init__(self, every: int = 100, alpha: float = 0.9, weights: dict[str, float] | None = None) -> None:
        super().__init__(weights)
        if every < 1 or not 0 <= alpha < 1:
            raise ValueError(f"need every >= 1 and 0 <= alpha < 1, got every={every}, alpha={alpha}")
        self.every, self.alpha = every, alpha

    def _blend(self, hat: dict[str, float]) -> None:
        """``lambda <- alpha lambda + (1 - alpha) hat``, from the weights in use (missing: 1, as in :meth:`combine`)."""
        for name, value in hat.items():
            self.weights[name] = self.alpha * self.weights.get(name, 1.0) + (1 - self.alpha) * value


class LearningRateAnnealingWeights(_AbstractMovingAverage):
    """Learning-rate annealing (Wang, Teng & Perdikaris 2021) in the gradient-norm form of Wang, Wang & Perdikaris
    2023 (see the module docstring): every ``every`` steps, with ``g_i = ||grad_theta L_i||`` over every trainable
    parameter of the network,

        hat lambda_i = mean_j g_j / (g_i + eps mean_j g_j),    lambda_i <- alpha lambda_i + (1 - alpha) hat lambda_i.

    Arguments:
        every: Adam steps between updates (the authors' code: 1000).
        alpha: the share of the old weight in the moving average (0.9).
        weights: the starting weights (missing: 1).
        eps: bounds every weight by ``1 / eps`` (a term whose gradient vanishes); ``1e-5`` as the authors'.

    The weighted terms' gradients all get the norm ``mean_j g_j``, so a term that is already satisfied (its
    gradient tiny) gets a weight of up to ``1 / eps`` and the least satisfied term loses weight. On Burgers with soft
    conditions that is the initial condition: the weights drift the wrong way (``docs/results/pinns.md``: within the
    seeds' spread of fixed weights after 3000 steps at this cadence; 1.8 to 5 times worse on every seed as the class
    was before, updating every 100 steps from ``hat lambda`` without a bound). The authors' Burgers has no boundary
    term.
    """

    def __init__(
        self,
        every: int = 1000,
        alpha: float = 0.9,
        weights: dict[str, float] | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(every, alpha, weights)
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.eps = float(eps)

    def update(self, step: int, means: dict[str, Tensor], values: dict[str, Tensor], params: list[Tensor]) -> None:
        if step % self.every:
            return
        self._blend(_balanced({name: _grad_norm(m, params) for name, m in means.items()}, self.eps))


class NTKWeights(_AbstractMovingAverage):
    """NTK-trace weights from ``n_points`` per term (see the module docstring); ``eps`` bounds them by ``1 / eps``."""

    def __init__(
        self,
        every: int = 1000,
        alpha: float = 0.9,
        n_points: int = 16,
        weights: dict[str, float] | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(every, alpha, weights)
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.n_points, self.eps = n_points, float(eps)

    def update(self, step: int, means: dict[str, Tensor], values: dict[str, Tensor], params: list[Tensor]) -> None:
        if step % self.every:
            return
        traces = {}
        for name, v in values.items():
            rows = v.reshape(v.shape[0], -1).sum(dim=1)
            idx = torch.linspace(0, rows.shape[0] - 1, min(self.n_points, rows.shape[0])).long()
            traces[name] = sum(_grad_norm(rows[i], params) ** 2 for i in idx) / len(idx)
        self._blend(_balanced(traces, self.eps))


class SelfAdaptiveWeights(AbstractWeighting):
    """Per-point trainable weights ``s_n`` for fixed point sets, ``L_i = mean(s_n^2 r_n^2)``, ``s`` ascends.

    The weights ``masks[name] (n,)`` are parameters trained in the network's optimiser step, in a parameter group
    of their own (:meth:`parameter_groups`: learning rate ``lr``, ``maximize=True``, no weight decay).

    Arguments:
        sizes: number of points of each adaptive term, e.g. ``{"residual": 8000, "initial": 256}``; the points
            must stay fixed (no resampling) for these terms.
        lr: learning rate of the ascent.
        device: where the weights live (the PINN's device).
    """

    def __init__(
        self,
        sizes: dict[str, int],
        lr: float = 5e-3,
        init: float = 1.0,
        weights: dict[str, float] | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(weights)
        self.masks = {
            name: torch.nn.Parameter(torch.full((n,), float(init), dtype=dtype, device=device))
            for name, n in sizes.items()
        }
        self.lr = lr

    def pointwise(self, name: str, sq: Tensor) -> Tensor:
        if name not in self.masks:
            return sq
        s = self.masks[name]
        if s.shape[0] != sq.shape[0]:
            raise ValueError(
                f"self-adaptive weights for {name!r} hold {s.shape[0]} points, got {sq.shape[0]}: "
                "these terms need a fixed point set (no resampling)"
            )
        return s.to(sq.dtype) ** 2 * sq

    def update(self, step: int, means: dict[str, Tensor], values: dict[str, Tensor], params: list[Tensor]) -> None:
        return None

    def parameter_groups(self) -> list[dict]:
        return [
            {
                "params": list(self.masks.values()),
                "lr": self.lr,
                "maximize": True,
                "weight_decay": 0.0,
                "name": "self_adaptive",
            }
        ]


class CausalWeights:
    """Causal residual loss over ``n_chunks`` time slabs with tolerance ``epsilon`` (see the module docstring).

    ``epsilon`` may be a list, the paper's annealing (e.g. ``[1e-2, 1e-1, 1, 10, 100]``): training moves to the
    next tolerance once every weight exceeds ``advance_at`` (all of time is resolved at the current one), so
    causality keeps acting as the residuals shrink; at a fixed tolerance the weights all reach ~1 once
    ``epsilon * sum L_k << 1`` and the loss no longer prefers early times. ``freeze()`` stops the schedule (the
    L-BFGS phase needs one fixed objective).
    """

    def __init__(
        self, n_chunks: int = 32, epsilon: float | list[float] | tuple[float, ...] = 1.0, advance_at: float = 0.99
    ) -> None:
        epsilons = tuple(float(e) for e in epsilon) if isinstance(epsilon, (list, tuple)) else (float(epsilon),)
        if n_chunks < 2 or not epsilons or min(epsilons) < 0:
            raise ValueError(f"need n_chunks >= 2 and every epsilon >= 0, got {n_chunks}, {epsilon!r}")
        if not 0 < advance_at < 1:
            raise ValueError(f"advance_at must be in (0, 1), got {advance_at}")
        self.n_chunks, self.epsilons, self.advance_at = n_chunks, epsilons, advance_at
        self.level, self.frozen = 0, False
        self.last_weights: Tensor | None = None

    @property
    def epsilon(self) -> float:
        """The tolerance in use."""
        return self.epsilons[self.level]

    def freeze(self) -> None:
        """Keep the current tolerance from now on."""
        self.frozen = True

    def state_dict(self) -> dict:
        return {"level": self.level, "frozen": self.frozen}

    def load_state_dict(self, state: dict) -> None:
        self.level, self.frozen = int(state["level"]), bool(state["frozen"])

    def loss(self, sq: Tensor, t: Tensor, t_span: tuple[float, float]) -> Tensor:
        """``(1/M) sum_i w_i L_i`` from per-point squared residuals ``sq (n,)`` at times ``t (n, 1)``."""
        t0, t1 = t_span
        chunk = ((t.detach().reshape(-1) - t0) / (t1 - t0) * self.n_chunks).long().clamp(0, self.n_chunks - 1)
        sums = torch.zeros(self.n_chunks, dtype=sq.dtype, device=sq.device).index_add(0, chunk, sq)
        counts = torch.bincount(chunk, minlength=self.n_chunks).to(sq.dtype).clamp_min(1)
        per_chunk = sums / counts
        before = torch.cumsum(per_chunk.detach(), 0) - per_chunk.detach()
        w = torch.exp(-self.epsilon * before)
        self.last_weights = w
        if not self.frozen and self.level + 1 < len(self.epsilons) and bool(w.min() > self.advance_at):
            self.level += 1  # from the next evaluation on
        return (w * per_chunk).mean()


class _PointwiseOnly(AbstractDerivatives):
    """Derivatives of order > 0 are 0: ``equation.rhs`` then holds only its point-wise (reaction) terms."""

    def __init__(self, coords: tuple[Tensor, ...]) -> None:
        self._coords = coords

    def __call__(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        return u if not any(alpha) else torch.zeros_like(u)

    def coords(self) -> tuple[Tensor, ...]:
        return self._coords


def reaction_rate(equation: AbstractEquation, u: Tensor, x: Tensor) -> Tensor:
    """``d f / d u (N, 1)`` of the point-wise terms ``f(u)`` of a one-channel equation's right-hand side at ``u (N, 1)``
    (terms with derivatives of ``u`` left out): Allen-Cahn ``1 - 3 u^2``, Fisher-KPP ``r (1 - 2 u)``, Burgers 0."""
    if u.ndim != 2 or u.shape[1] != 1:
        raise ValueError(
            f"amplification weights need a one-channel equation, got u of shape {tuple(u.shape)} "
            f"for {type(equation).__name__}"
        )
    with torch.enable_grad():
        v = u.detach().requires_grad_(True)
        f = equation.rhs(v, _PointwiseOnly(tuple(x[:, i : i + 1].detach() for i in range(x.shape[1]))))
        if not f.requires_grad:  # no term depends on u point-wise
            return torch.zeros_like(v)
        (g,) = torch.autograd.grad(f.sum(), v)
    return g


class AmplificationWeights:
    """Per-point factors ``exp(power max(g, 0) (T - t))`` of the squared residuals, normalised to mean 1 over the
    points, with ``g`` the :func:`reaction_rate` at the network's current values (see the module docstring)."""

    def __init__(self, power: float = 1.0) -> None:
        if not power > 0:
            raise ValueError(f"amplification power must be > 0, got {power!r}")
        self.power = float(power)

    def factors(self, equation: AbstractEquation, u: Tensor, x: Tensor, t: Tensor, t_end: float) -> Tensor:
        """``(N,)`` factors for the points ``x (N, d)``, ``t (N, 1)`` where the network gives ``u (N, 1)``."""
        with torch.no_grad():
            g = reaction_rate(equation, u, x)[:, 0]
            a = self.power * g.clamp_min(0) * (t_end - t[:, 0])
            w = torch.exp(a - a.max())  # shifted: no overflow for fast growth or long spans
            return w / w.mean()


__all__ = [
    "AbstractWeighting",
    "FixedWeights",
    "LearningRateAnnealingWeights",
    "NTKWeights",
    "SelfAdaptiveWeights",
    "CausalWeights",
    "AmplificationWeights",
    "reaction_rate",
]
