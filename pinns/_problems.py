"""Named benchmark problems, each a :class:`~pdeforge.pinns.Problem` on a shared equation plus its reference solution.

``PROBLEMS`` lists them in one place; ``run`` configs name one of them (``problem: burgers``).

* ``burgers`` (PINNacle Burgers1d-C, Raissi et al. 2019): ``u_t + u u_x = (0.01 / pi) u_xx`` on
  ``[-1, 1] x [0, 1]``, ``u0 = -sin(pi x)``, ``u(+-1, t) = 0`` (hard). Reference: ETDRK4 on the periodic
  extension (``u0`` is 2-periodic and odd, so the periodic solution keeps ``u(+-1) = 0``), ``N = 4096``,
  ``dt = 1e-4``.
* ``allen_cahn`` (Raissi et al. 2019; Wang et al. 2024): ``u_t = 1e-4 u_xx - 5 u^3 + 5 u``, ``u0 = x^2 cos(pi x)``,
  periodic on ``[-1, 1]``, ``t in [0, 1]``. Expressed through the catalogue's ``AllenCahn(nu)``
  (``u_s = nu u_xx + u - u^3``) with the time ``s = 5 t`` and ``nu = 2e-5``: the problem's time axis is ``s in
  [0, 5]``; the error is the same on either axis. Reference: ETDRK4, ``N = 4096``, ``ds = 5e-4``.
* ``advection`` (Krishnapriyan et al. 2021, "failure modes"): ``u_t + 30 u_x = 0``, ``u0 = sin(x)`` on the
  periodic ``[0, 2 pi)``, ``t in [0, 1]``; exact solution ``sin(x - 30 t)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..solvers import Advection, AllenCahn, Burgers, Grid
from ._domain import Dirichlet, Domain, Problem
from ._reference import spectral_reference

# reference(nx, nt) -> (x (nx,), t (nt,), u (nt, C, nx)) on the problem's own axes
Reference = Callable[[int, int], tuple[Tensor, Tensor, Tensor]]


@dataclass(frozen=True)
class NamedProblem:
    """A problem, its reference solution and a sentence saying where it comes from."""

    problem: Problem
    reference: Reference
    summary: str


def _burgers_u0(x: Tensor) -> Tensor:
    return -torch.sin(math.pi * x[:, :1])


def _allen_cahn_u0(x: Tensor) -> Tensor:
    return x[:, :1] ** 2 * torch.cos(math.pi * x[:, :1])


def _periodic_reference(problem: Problem, u0_fn, n: int, dt: float) -> Reference:
    """ETDRK4 on ``[a, a + L)`` with ``n`` points; sampled at ``nx`` points (``n % nx == 0``) and ``nt`` times."""
    dom = problem.domain
    a, length = dom.lower[0], dom.lengths[0]
    cache: dict = {}

    def reference(nx: int, nt: int) -> tuple[Tensor, Tensor, Tensor]:
        if n % nx:
            raise ValueError(f"nx must divide the reference resolution {n}, got {nx}")
        t0, t1 = dom.t_span
        key = nt
        if key not in cache:
            grid = Grid(n, length)
            x = a + grid.coords()[0]
            u0 = u0_fn(x[:, None]).T  # (C, n)
            times, traj = spectral_reference(problem.equation, grid, u0, dt, t1 - t0, (t1 - t0) / (nt - 1))
            cache[key] = (x, t0 + times, traj)
        x, t, traj = cache[key]
        step = n // nx
        return x[::step], t, traj[..., ::step]

    return reference


def burgers() -> NamedProblem:
    problem = Problem(
        Burgers(nu=0.01 / math.pi),
        Domain((-1.0,), (1.0,), (0.0, 1.0), (False,)),
        _burgers_u0,
        boundary=(Dirichlet(0, 0.0, hard=True),),
        hard_initial=True,
    )
    # the reference solves the periodic extension: same equation on a periodic domain
    periodic = Problem(problem.equation, Domain((-1.0,), (1.0,), (0.0, 1.0), (True,)), _burgers_u0)
    return NamedProblem(problem, _periodic_reference(periodic, _burgers_u0, 4096, 1e-4), "PINNacle Burgers1d-C")


def allen_cahn() -> NamedProblem:
    problem = Problem(
        AllenCahn(nu=2e-5), Domain((-1.0,), (1.0,), (0.0, 5.0), (True,)), _allen_cahn_u0, hard_initial=True
    )
    return NamedProblem(
        problem,
        _periodic_reference(problem, _allen_cahn_u0, 4096, 5e-4),
        "Allen-Cahn u_t = 1e-4 u_xx - 5u^3 + 5u as AllenCahn(nu=2e-5) in s = 5t",
    )


def advection(velocity: float = 30.0) -> NamedProblem:
    problem = Problem(
        Advection(velocity=velocity), Domain((0.0,), (2 * math.pi,), (0.0, 1.0), (True,)), lambda x: torch.sin(x[:, :1])
    )

    def reference(nx: int, nt: int) -> tuple[Tensor, Tensor, Tensor]:
        x = torch.arange(nx, dtype=torch.float64) * 2 * math.pi / nx
        t = torch.linspace(0, 1, nt, dtype=torch.float64)
        return x, t, torch.sin(x[None, None, :] - velocity * t[:, None, None])

    return NamedProblem(problem, reference, f"advection u_t + {velocity:g} u_x = 0, u0 = sin x (failure-mode case)")


PROBLEMS: dict[str, Callable[[], NamedProblem]] = {
    "burgers": burgers,
    "allen_cahn": allen_cahn,
    "advection": advection,
}

__all__ = ["NamedProblem", "PROBLEMS", "burgers", "allen_cahn", "advection"]
