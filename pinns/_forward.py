"""The forward PINN: a solution network trained on the residual of a shared equation, its initial and boundary
conditions.

Loss (Raissi, Perdikaris & Karniadakis 2019), every term a mean of squares over its points, weighted by an
:class:`~pdeforge.pinns.AbstractWeighting`::

    L = l_r mean |u_t - (L u + N(u) + f)|^2  +  l_0 mean |u(x, t0) - u0(x)|^2  +  l_b mean |B u - g|^2

The residual term can be causal (:class:`~pdeforge.pinns.CausalWeights`) and weighted by the growth of its errors
(:class:`~pdeforge.pinns.AmplificationWeights`); hard constraints drop the initial or
boundary terms (:class:`~pdeforge.pinns.Problem`). Residual points are fixed, resampled every
``resample_every`` Adam steps, or adapted by RAR / RAD (:class:`SamplingConfig`). L-BFGS uses the last
point set and frozen weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._autograd import pde_residual
from ._domain import Dirichlet, Problem, boundary_points, boundary_residual
from ._networks import NetworkConfig, PINNNet
from ._optim import LBFGSReport, OptimConfig, adam, lbfgs
from ._sampling import rad, rar, sample_domain, sample_initial
from ._weighting import AbstractWeighting, AmplificationWeights, CausalWeights, FixedWeights, SelfAdaptiveWeights


@dataclass(frozen=True)
class SamplingConfig:
    """Collocation points.

    Attributes:
        method: ``"uniform" | "lhs" | "sobol" | "grid"``.
        n_residual, n_initial, n_boundary: points per term (``n_boundary`` per end of each soft-boundary dimension).
        resample_every: draw fresh residual points every this many Adam steps (0: keep them).
        adaptive: ``None | "rar" | "rad"``; every ``adaptive_every`` steps from ``n_candidates`` candidates,
            RAR adds the ``rar_k`` worst, RAD redraws with ``p ∝ |r|^rad_k / mean + rad_c``.
    """

    method: str = "sobol"
    n_residual: int = 4096
    n_initial: int = 256
    n_boundary: int = 128
    resample_every: int = 0
    adaptive: str | None = None
    adaptive_every: int = 1000
    n_candidates: int = 20000
    rar_k: int = 100
    rad_k: float = 1.0
    rad_c: float = 1.0


class PINN(nn.Module):
    """A forward PINN for ``problem``.

    Arguments:
        problem: equation, domain, initial and boundary conditions.
        network: architecture of the solution net (:class:`NetworkConfig`).
        sampling: collocation points (:class:`SamplingConfig`).
        weighting: loss balancing (default fixed weights 1).
        causal: causal residual weighting, or ``None``.
        amplification: residuals weighted by how much their errors would grow (:class:`AmplificationWeights`), or
            ``None``.
        seed: weights and points.
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        device: where the network and the points live (weights and points are drawn on the CPU, from CPU
            generators, then moved: the same on every device; a self-adaptive ``weighting`` must be made there too).
    """

    def __init__(
        self,
        problem: Problem,
        network: NetworkConfig = NetworkConfig(),  # noqa: B008 (frozen)
        sampling: SamplingConfig = SamplingConfig(),
        weighting: AbstractWeighting | None = None,
        causal: CausalWeights | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        amplification: AmplificationWeights | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.problem, self.sampling, self.causal, self.dtype = problem, sampling, causal, dtype
        self.device = torch.device(device)
        self.amplification = amplification
        self.weighting = weighting if weighting is not None else FixedWeights()
        self.net = PINNNet(problem, network, seed).to(dtype).to(self.device)
        # self-adaptive per-point weights are parameters of the loss: saved and moved with the network
        self.weight_masks = nn.ParameterDict(
            self.weighting.masks if isinstance(self.weighting, SelfAdaptiveWeights) else {}
        )
        self.generator = torch.Generator().manual_seed(seed + 1)
        dom, on = problem.domain, self.device
        self.points = sample_domain(dom, sampling.n_residual, sampling.method, self.generator, dtype, on)
        self.initial_points = sample_initial(dom, sampling.n_initial, sampling.method, self.generator, dtype, on)
        self.boundary_sets = [
            (bc, *boundary_points(dom, bc.dim, sampling.n_boundary, self.generator, dtype, on))
            for bc in problem.soft_boundary()
        ]
        self._values: tuple | None = None  # the initial and Dirichlet point sets stacked, with their targets

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``u (N, C)`` at ``x (N, d)``, ``t (N, 1)``."""
        return self.net(x, t)

    def residual(self, x: Tensor, t: Tensor) -> Tensor:
        """The equation's residual ``(N, C)`` at the points (through ``equation.residual``)."""
        return pde_residual(self.problem.equation, self.net, x, t)[0]

    # -- loss ---------------------------------------------------------------------------------------------------
    def terms(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(means, values)``: the loss terms ``L_i`` and their per-point values ``(n, C)``."""
        values: dict[str, Tensor] = {}
        x, t = self.points
        values["residual"], u = pde_residual(self.problem.equation, self.net, x, t)
        values.update(self._condition_misfits())
        means = {}
        for name, v in values.items():
            sq = v.square().flatten() if v.shape[1] == 1 else v.square().sum(dim=1)
            sq = self.weighting.pointwise(name, sq)
            if name == "residual" and self.amplification is not None:
                sq = sq * self.amplification.factors(
                    self.problem.equation, u.detach(), x, t, self.problem.domain.t_span[1]
                )
            if name == "residual" and self.causal is not None:
                means[name] = self.causal.loss(sq, t, self.problem.domain.t_span)
            else:
                means[name] = sq.mean()
        return means, values

    def _condition_misfits(self) -> dict[str, Tensor]:
        """The soft initial and boundary misfits, ``(n, C)`` each. The values ``u - g`` (the initial condition and
        Dirichlet boundaries) come from one evaluation of the network on all their points: these sets are small, and
        a pass through the network costs them mostly its operations' fixed overhead."""
        sets = [] if self.problem.hard_initial else [self.initial_points]
        sets += [(xb, tb) for bc, xb, tb, _ in self.boundary_sets if isinstance(bc, Dirichlet)]
        if not sets:
            return {}
        key = tuple(p for pair in sets for p in pair)
        if (
            self._values is None
            or len(self._values[0]) != len(key)
            or any(a is not b for a, b in zip(self._values[0], key))
        ):
            # the point sets are new (drawn or replaced): stack them and compute their targets once
            targets: list[Tensor | float] = [] if self.problem.hard_initial else [self.problem.initial(sets[0][0])]
            targets += [
                bc.value(xb, tb) if callable(bc.value) else float(bc.value)
                for bc, xb, tb, _ in self.boundary_sets
                if isinstance(bc, Dirichlet)
            ]
            targets = [g.to(self.dtype) if isinstance(g, Tensor) else g for g in targets]
            xt = torch.cat([torch.cat([x, t], dim=1) for x, t in sets])
            self._values = (key, xt, [x.shape[0] for x, _ in sets], targets)
        _, xt, sizes, targets = self._values
        u = self.net.stacked(xt)
        misfits = [v - g if not (isinstance(g, float) and g == 0) else v for v, g in zip(u.split(sizes), targets)]
        out = {}
        if not self.problem.hard_initial:
            out["initial"] = misfits.pop(0)
        parts = []
        for bc, xb, tb, sb in self.boundary_sets:
            parts.append(misfits.pop(0) if isinstance(bc, Dirichlet) else boundary_residual(bc, self.net, xb, tb, sb))
        if parts:
            out["boundary"] = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out

    def objective(self, step: int | None) -> tuple[Tensor, dict]:
        """The weighted loss at Adam step ``step`` (``None`` during L-BFGS: no resampling, frozen weights)."""
        if step is not None:
            self._adapt_points(step)
        means, values = self.terms()
        if step is not None and not isinstance(self.weighting, FixedWeights):  # fixed weights need no gradients
            self.weighting.update(step, means, values, [p for p in self.net.parameters() if p.requires_grad])
        loss = self.weighting.combine(means)
        # tensors: numbers only when a record is logged (a float() per term and step costs what a small op costs)
        record: dict = {f"loss_{k}": v.detach() for k, v in means.items()}
        record.update({f"weight_{k}": w for k, w in self.weighting.weights.items()})
        if self.causal is not None and self.causal.last_weights is not None:
            record["causal_min_weight"] = self.causal.last_weights.min()
            if len(self.causal.epsilons) > 1:
                record["causal_epsilon"] = self.causal.epsilon
        return loss, record

    def _adapt_points(self, step: int) -> None:
        s = self.sampling
        if step == 0:
            return
        if s.resample_every and step % s.resample_every == 0:
            self.points = sample_domain(
                self.problem.domain, s.n_residual, s.method, self.generator, self.dtype, self.device
            )
        if s.adaptive and step % s.adaptive_every == 0:
            cand = sample_domain(
                self.problem.domain, s.n_candidates, "uniform", self.generator, self.dtype, self.device
            )
            r = self.residual(*cand).detach()
            if s.adaptive == "rar":
                self.points = rar(self.points, cand, r, s.rar_k)
            elif s.adaptive == "rad":
                self.points = rad(cand, r, s.n_residual, s.rad_k, s.rad_c, self.generator)
            else:
                raise ValueError(f"unknown adaptive sampling {s.adaptive!r}; choose 'rar' or 'rad'")

    # -- training -----------------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: the network's parameters, then the weighting's own (self-adaptive
        weights: ascent)."""
        return [
            {"params": [p for p in self.net.parameters() if p.requires_grad], "name": "network"},
            *self.weighting.parameter_groups(),
        ]

    def training_state(self) -> dict:
        """Beyond the parameters and the point generator, what the Adam phase changes: points, loss weights, the
        causal tolerance."""
        return {
            "points": [p.clone() for p in self.points],
            "weighting": self.weighting.state_dict(),
            "causal": None if self.causal is None else self.causal.state_dict(),
        }

    def load_training_state(self, state: dict) -> None:
        """Restore :meth:`training_state` (its tensors may be on any device: they move to this PINN's)."""
        self.points = tuple(p.to(self.device) for p in state["points"])
        self.weighting.load_state_dict(state["weighting"])
        if self.causal is not None:
            self.causal.load_state_dict(state["causal"])

    def lbfgs(self, optim: OptimConfig, log: Callable[[dict], None] | None = None) -> LBFGSReport:
        """L-BFGS on the network's parameters, on the last points with frozen weights (and causal tolerance)."""
        if self.causal is not None:
            self.causal.freeze()  # one fixed objective for the line searches
        return lbfgs(self.objective, [p for p in self.net.parameters() if p.requires_grad], optim, log)

    def fit(self, optim: OptimConfig, log: Callable[[dict], None] | None = None) -> LBFGSReport | None:
        """Adam then (if ``optim.lbfgs_iters``) L-BFGS, in memory; returns the L-BFGS report."""
        adam(self.objective, self.parameter_groups(), optim, log)
        return self.lbfgs(optim, log) if optim.lbfgs_iters else None

    @torch.no_grad()
    def predict(self, x: Tensor, t: Tensor, batch: int = 65536) -> Tensor:
        """``u (N, C)`` at many points, in batches, on the network's device (``x``, ``t`` may be on any)."""
        on = next(self.net.parameters()).device
        return torch.cat(
            [
                self.net(x[i : i + batch].to(on, self.dtype), t[i : i + batch].to(on, self.dtype))
                for i in range(0, x.shape[0], batch)
            ]
        )


__all__ = ["SamplingConfig", "PINN"]
