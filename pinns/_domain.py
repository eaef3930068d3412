"""The space-time domain, boundary and initial conditions of a PINN problem, and how they are imposed.

A :class:`Problem` is an equation of :mod:`pdeforge.solvers` on a :class:`Domain` ``prod_d [a_d, b_d] x [t0, t1]``
with an initial condition ``u(x, t0) = u0(x)`` and, per spatial dimension, either periodicity or boundary
conditions at both ends:

* periodic dimensions are exact: the network sees ``x`` only through ``cos(2 pi k x / L), sin(2 pi k x / L)``
  (:class:`~pdeforge.pinns.InputEmbedding`), so every output is ``L``-periodic with all its derivatives;
* :class:`Dirichlet` ``u = g`` and :class:`Neumann` ``du/dn = g`` are soft (a loss term on boundary points)
  or hard: Dirichlet by the output transform ``u = g + B(x) N`` with ``B = prod 4 (x - a)(b - x) / (b - a)^2``
  (constant ``g``), homogeneous Neumann by feeding the network ``cos(pi (x - a) / (b - a))``, whose derivative
  vanishes at both ends;
* the initial condition is soft, or hard through ``u = u0(x) + ((t - t0) / (t1 - t0)) N`` (times ``B(x)``
  with hard Dirichlet, which then needs ``u0 = g`` on the boundary: checked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..solvers import AbstractEquation, Grid
from ._autograd import field_at, grad

InitialCondition = Callable[[Tensor], Tensor]  # x (N, d) -> u0 (N, C)


@dataclass(frozen=True)
class Domain:
    """``prod_d [lower_d, upper_d] x [t_span[0], t_span[1]]``; ``periodic[d]`` marks periodic dimensions."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    t_span: tuple[float, float]
    periodic: tuple[bool, ...]

    def __post_init__(self) -> None:
        n = len(self.lower)
        if not (len(self.upper) == len(self.periodic) == n) or n < 1:
            raise ValueError(
                "lower, upper and periodic need one entry per dimension, "
                f"got {self.lower}, {self.upper}, {self.periodic}"
            )
        if any(not b > a for a, b in zip(self.lower, self.upper)) or not self.t_span[1] > self.t_span[0]:
            raise ValueError(f"need lower < upper and t0 < t1, got {self.lower}, {self.upper}, t_span={self.t_span}")

    @classmethod
    def from_grid(cls, grid: Grid, t_span: tuple[float, float]) -> Domain:
        """The periodic box ``[0, L_d)`` of a solver :class:`~pdeforge.solvers.Grid`, over ``t_span``."""
        return cls((0.0,) * grid.ndim, tuple(grid.length), tuple(map(float, t_span)), (True,) * grid.ndim)

    @property
    def ndim(self) -> int:
        return len(self.lower)

    @property
    def lengths(self) -> tuple[float, ...]:
        return tuple(b - a for a, b in zip(self.lower, self.upper))


@dataclass(frozen=True)
class Dirichlet:
    """``u = value`` on both ends of dimension ``dim`` (a constant, or ``(x, t) -> (N, C)``); ``hard`` needs a
    constant."""

    dim: int
    value: float | Callable[[Tensor, Tensor], Tensor] = 0.0
    hard: bool = False


@dataclass(frozen=True)
class Neumann:
    """``du/dn = value`` (outward normal) on both ends of dimension ``dim``; ``hard`` needs ``value = 0``."""

    dim: int
    value: float = 0.0
    hard: bool = False


BoundaryCondition = Dirichlet | Neumann


@dataclass(frozen=True)
class Problem:
    """A forward problem: ``equation`` on ``domain`` with ``initial`` ``u0`` and ``boundary`` conditions.

    ``hard_initial`` imposes the initial condition through the output transform instead of a loss term.
    """

    equation: AbstractEquation
    domain: Domain
    initial: InitialCondition
    boundary: tuple[BoundaryCondition, ...] = field(default=())
    hard_initial: bool = False

    def __post_init__(self) -> None:
        self.equation.check_ndim(self.domain.ndim)
        covered = set()
        for bc in self.boundary:
            if not 0 <= bc.dim < self.domain.ndim:
                raise ValueError(f"{bc} refers to dimension {bc.dim}, the domain has {self.domain.ndim}")
            if self.domain.periodic[bc.dim]:
                raise ValueError(
                    f"{bc}: dimension {bc.dim} is periodic (exact through the embedding), drop the condition"
                )
            if bc.hard and isinstance(bc, Dirichlet) and callable(bc.value):
                raise ValueError(f"{bc}: a hard Dirichlet condition needs a constant value")
            if bc.hard and isinstance(bc, Neumann) and bc.value != 0:
                raise ValueError(f"{bc}: a hard Neumann condition needs value 0, use hard=False for {bc.value}")
            if bc.hard and bc.dim in {b.dim for b in self.boundary if b.hard and b is not bc}:
                raise ValueError(f"dimension {bc.dim} has two hard conditions: {self.boundary}")
            covered.add(bc.dim)
        missing = [d for d in range(self.domain.ndim) if not self.domain.periodic[d] and d not in covered]
        if missing:
            raise ValueError(f"non-periodic dimension(s) {missing} need a Dirichlet or Neumann condition")

    @property
    def channels(self) -> int:
        return len(self.equation.channels)

    def hard_dirichlet(self) -> tuple[Dirichlet, ...]:
        return tuple(b for b in self.boundary if isinstance(b, Dirichlet) and b.hard)

    def hard_neumann_dims(self) -> tuple[int, ...]:
        return tuple(b.dim for b in self.boundary if isinstance(b, Neumann) and b.hard)

    def soft_boundary(self) -> tuple[BoundaryCondition, ...]:
        return tuple(b for b in self.boundary if not b.hard)


class OutputTransform(nn.Module):
    """Hard constraints on the raw network output ``N (n, C)`` (see the module docstring).

    ``u = g + B(x) N`` (hard Dirichlet), ``u = u0(x) + tau B(x) N`` (hard initial condition, ``tau`` the
    normalised time), or the identity when nothing is hard.
    """

    def __init__(self, problem: Problem) -> None:
        super().__init__()
        self.problem = problem
        dom = problem.domain
        self.dirichlet = problem.hard_dirichlet()
        if problem.hard_initial and self.dirichlet:
            for bc in self.dirichlet:
                for end in (dom.lower[bc.dim], dom.upper[bc.dim]):
                    x = torch.tensor([[0.5 * (a + b) for a, b in zip(dom.lower, dom.upper)]], dtype=torch.float64)
                    x[0, bc.dim] = end
                    gap = (problem.initial(x) - float(bc.value)).abs().max().item()
                    if gap > 1e-6:
                        raise ValueError(
                            f"hard initial and Dirichlet conditions disagree at x_{bc.dim} = {end}: "
                            f"u0 - g = {gap:.3g}; make one of them soft"
                        )
        values = {float(bc.value) for bc in self.dirichlet}
        if len(values) > 1:
            raise ValueError(f"hard Dirichlet conditions need one common value, got {sorted(values)}")
        self.g = values.pop() if values else 0.0

    @property
    def is_identity(self) -> bool:
        return not self.dirichlet and not self.problem.hard_initial

    def bubble(self, x: Tensor) -> Tensor:
        """``B(x) = prod_d 4 (x_d - a_d)(b_d - x_d) / (b_d - a_d)^2`` over hard-Dirichlet dimensions, ``(n, 1)``."""
        dom = self.problem.domain
        out = torch.ones_like(x[:, :1])
        for bc in self.dirichlet:
            a, b = dom.lower[bc.dim], dom.upper[bc.dim]
            xd = x[:, bc.dim : bc.dim + 1]
            out = out * 4 * (xd - a) * (b - xd) / (b - a) ** 2
        return out

    def forward(self, raw: Tensor, x: Tensor, t: Tensor) -> Tensor:
        if self.is_identity:
            return raw
        out = raw * self.bubble(x) if self.dirichlet else raw
        if self.problem.hard_initial:
            t0, t1 = self.problem.domain.t_span
            return self.problem.initial(x).to(raw.dtype) + (t - t0) / (t1 - t0) * out
        return self.g + out

    def stacked(self, raw: Tensor, xt: Tensor) -> Tensor:
        """:meth:`forward` at the stacked points ``xt (n, d + 1)`` (space then time)."""
        if self.is_identity:
            return raw
        d = self.problem.domain.ndim
        return self(raw, xt[:, :d], xt[:, d:])


def embedding_kinds(problem: Problem) -> tuple[str, ...]:
    """Per spatial dimension: ``"periodic"``, ``"neumann"`` (hard, cosine feature) or ``"box"`` (scaled to [-1, 1])."""
    neumann = problem.hard_neumann_dims()
    return tuple(
        "periodic" if p else ("neumann" if d in neumann else "box") for d, p in enumerate(problem.domain.periodic)
    )


def boundary_points(
    domain: Domain,
    dim: int,
    n: int,
    generator: torch.Generator,
    dtype=torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` random points on each end of dimension ``dim``: ``x (2n, d)``, ``t (2n, 1)``, outward normal sign
    ``(2n, 1)``, on ``device`` (drawn on the CPU from ``generator``, a CPU generator: the same points on every
    device)."""
    lo = torch.tensor(domain.lower, dtype=dtype)
    hi = torch.tensor(domain.upper, dtype=dtype)
    x = lo + (hi - lo) * torch.rand(2 * n, domain.ndim, generator=generator, dtype=dtype)
    x[:n, dim] = domain.lower[dim]
    x[n:, dim] = domain.upper[dim]
    t0, t1 = domain.t_span
    t = t0 + (t1 - t0) * torch.rand(2 * n, 1, generator=generator, dtype=dtype)
    sign = torch.cat([-torch.ones(n, 1, dtype=dtype), torch.ones(n, 1, dtype=dtype)])
    return x.to(device), t.to(device), sign.to(device)


def boundary_residual(bc: BoundaryCondition, fn, x: Tensor, t: Tensor, sign: Tensor) -> Tensor:
    """``u - g`` (Dirichlet) or ``sign * du/dx_dim - g`` (Neumann) at boundary points, ``(n, C)``."""
    if isinstance(bc, Dirichlet):
        u = fn(x, t)
        if callable(bc.value):
            return u - bc.value(x, t)
        return u - bc.value if bc.value != 0 else u
    xt = torch.cat([x, t], dim=1).detach().requires_grad_(True)
    u = field_at(fn, xt, x.shape[1])
    du = torch.cat([grad(u[:, c : c + 1], xt)[:, bc.dim : bc.dim + 1] for c in range(u.shape[1])], 1)
    return sign * du - bc.value


__all__ = [
    "Domain",
    "Dirichlet",
    "Neumann",
    "Problem",
    "OutputTransform",
    "embedding_kinds",
    "boundary_points",
    "boundary_residual",
]
