"""Lagrangian PINN for convection-dominated problems (Mojgani, Balajewicz & Hassanzadeh, CMAME 2023).

For ``u_t + c . grad u = R(u)`` (constant velocity ``c``, read off the equation's first-order
:class:`~pdeforge.solvers.LinearTerm` s; ``R`` the rest), the network works in Lagrangian coordinates
``(xi, t)``, ``xi`` the foot of the characteristic at ``t0``. Two outputs:

* the characteristic ``phi(xi, t) = xi + (t - t0) N_phi(xi, t)`` (so ``phi(xi, t0) = xi``), trained on
  ``phi_t = c``;
* the state along it, ``U(xi, t) = u(phi(xi, t), t)``, with ``U_t = u_t + c . grad u`` (the material
  derivative). Since ``x = xi + c (t - t0)`` is a translation, ``grad_x = grad_xi`` and the Eulerian residual is
  ``equation.residual(U_t - c . grad_xi U, U, D_xi)`` -- the shared residual code again, with the autograd
  provider on ``xi``. For pure advection the state equation is ``U_t = 0``: no steep space-time gradients
  are left for the network to learn, which is what makes the plain PINN fail at ``c = 30``.

Predictions at Eulerian points ``(x, t)`` invert ``phi(xi, t) = x`` by Newton's method.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ._autograd import AutogradDerivatives, grad
from ._domain import Problem, embedding_kinds
from ._networks import MLP, InputEmbedding, NetworkConfig, PINNNet
from ._optim import LBFGSReport, OptimConfig, adam, lbfgs
from ._sampling import sample_domain


def advection_velocity(problem: Problem) -> tuple[float, ...]:
    """``c`` with ``u_t = -c . grad u + ...`` from the equation's first-order linear terms (single channel)."""
    ndim = problem.domain.ndim
    c = [0.0] * ndim
    for term in problem.equation.linear_terms(ndim):
        if sum(term.alpha) == 1:
            if term.in_channel != term.out_channel:
                raise ValueError(
                    f"{type(problem.equation).__name__}: first-order coupling between channels has no characteristics"
                )
            c[term.alpha.index(1)] -= float(term.coefficient)
    if not any(c):
        raise ValueError(f"{type(problem.equation).__name__} has no advection term: a Lagrangian PINN brings nothing")
    return tuple(c)


class LagrangianPINN(nn.Module):
    """Characteristic network ``phi`` and state network ``U`` for ``problem`` (periodic or box domain).

    The state network takes the problem's hard constraints (e.g. ``hard_initial``); the characteristic network
    sees the same input embedding. Weights and points are drawn on the CPU (CPU generators) and moved to ``device``.
    """

    def __init__(
        self,
        problem: Problem,
        network: NetworkConfig = NetworkConfig(width=50, depth=4),  # noqa: B008 (frozen)
        n_residual: int = 4096,
        n_initial: int = 256,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.problem = problem
        self.device = torch.device(device)
        self.velocity = advection_velocity(problem)
        self.state = PINNNet(problem, network, seed).double().to(self.device)
        dom = problem.domain
        self.char_embedding = InputEmbedding(
            embedding_kinds(problem), dom.lower, dom.upper, dom.t_span, network.harmonics
        )
        self.char_body = (
            MLP(self.char_embedding.out_features, dom.ndim, network, torch.Generator().manual_seed(seed + 7))
            .double()
            .to(self.device)
        )
        gen = torch.Generator().manual_seed(seed + 1)
        self.points = sample_domain(problem.domain, n_residual, "sobol", gen, device=self.device)
        self.initial_points = sample_domain(problem.domain, n_initial, "sobol", gen, device=self.device)[0]

    def phi(self, xi: Tensor, t: Tensor) -> Tensor:
        """The characteristic through ``xi``: ``(N, d)``."""
        t0 = self.problem.domain.t_span[0]
        raw = self.char_body(self.char_embedding(xi, t))
        return xi + (t - t0) * raw

    def objective(self, step: int | None) -> tuple[Tensor, dict]:
        xi, t = self.points
        xs = tuple(xi[:, i : i + 1].detach().requires_grad_(True) for i in range(xi.shape[1]))
        tt = t.detach().requires_grad_(True)
        x = torch.cat(xs, 1)
        # characteristics: phi_t = c
        phi = self.phi(x, tt)
        c = torch.tensor(self.velocity, dtype=phi.dtype, device=phi.device)
        phi_t = torch.cat([grad(phi[:, i : i + 1], tt) for i in range(phi.shape[1])], dim=1)
        loss_char = ((phi_t - c) ** 2).sum(1).mean()
        # state: Eulerian residual written in Lagrangian coordinates (see the module docstring)
        U = self.state(x, tt)
        U_t = torch.cat([grad(U[:, k : k + 1], tt) for k in range(U.shape[1])], dim=1)
        D = AutogradDerivatives(xs)
        ndim = len(xs)
        convective = sum(ci * D(U, tuple(int(i == d) for i in range(ndim))) for d, ci in enumerate(self.velocity) if ci)
        r = self.problem.equation.residual(U_t - convective, U, D)
        loss_state = (r**2).sum(1).mean()
        means = {"characteristic": loss_char, "residual": loss_state}
        if not self.problem.hard_initial:
            x0 = self.initial_points
            t0 = torch.full_like(x0[:, :1], self.problem.domain.t_span[0])
            means["initial"] = ((self.state(x0, t0) - self.problem.initial(x0)) ** 2).sum(1).mean()
        loss = sum(means.values())
        return loss, {f"loss_{k}": v.detach() for k, v in means.items()}

    def parameter_groups(self) -> list[dict]:
        """One group: both networks' parameters."""
        return [{"params": list(self.parameters()), "name": "network"}]

    def training_state(self) -> dict:
        """Nothing beyond the parameters changes during training (the points are fixed)."""
        return {}

    def load_training_state(self, state: dict) -> None:
        """Nothing to restore (see :meth:`training_state`)."""

    def lbfgs(self, optim: OptimConfig, log: Callable[[dict], None] | None = None) -> LBFGSReport:
        """L-BFGS on both networks' parameters."""
        return lbfgs(self.objective, list(self.parameters()), optim, log)

    def fit(self, optim: OptimConfig, log: Callable[[dict], None] | None = None) -> LBFGSReport | None:
        """Adam then (if ``optim.lbfgs_iters``) L-BFGS, in memory; returns the L-BFGS report."""
        adam(self.objective, self.parameter_groups(), optim, log)
        return self.lbfgs(optim, log) if optim.lbfgs_iters else None

    def predict(self, x: Tensor, t: Tensor, newton_steps: int = 8) -> Tensor:
        """``u (N, C)`` at Eulerian points: solve ``phi(xi, t) = x`` (Newton, from ``xi = x - c (t - t0)``), return
        ``U`` (on this PINN's device; ``x``, ``t`` may be on any)."""
        t0 = self.problem.domain.t_span[0]
        on = next(self.state.parameters()).device
        x, t = x.to(on, torch.float64), t.to(on, torch.float64)
        xi = x - torch.tensor(self.velocity, dtype=x.dtype, device=x.device) * (t - t0)
        for _ in range(newton_steps):
            xi = xi.detach().requires_grad_(True)
            gap = self.phi(xi, t) - x
            if xi.shape[1] == 1:
                slope = grad(gap, xi)
                xi = xi - gap / slope
            else:  # diagonal Newton: characteristics of a constant velocity are translations
                xi = xi - gap
        with torch.no_grad():
            return self.state(xi.detach(), t)


__all__ = ["LagrangianPINN", "advection_velocity"]
