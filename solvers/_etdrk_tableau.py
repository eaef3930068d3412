"""Exponential Runge-Kutta tableaus as data that checks itself, and the phi functions of their coefficients.

For ``u_t = L u + N(u)`` with ``z = h L``, an exponential RK method (Hochbruck & Ostermann, Acta Numerica 19, 2010)
is

    U_i = exp(c_i z) u_n + h sum_{j<i} a_ij(z) N(U_j),      u_{n+1} = exp(z) u_n + h sum_i b_i(z) N(U_i),

with ``a_ij, b_i`` linear combinations of ``phi_k(c z)``, ``phi_0 = exp``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``.

Methods: ETDRK0 (exact linear propagator, nonlinear term ignored), ETDRK1 (exponential Euler), ETDRK2 and
ETDRK3 (Cox & Matthews, J. Comput. Phys. 176, 2002), ETDRK4 (Krogstad, J. Comput. Phys. 203, 2005: the same four
stages and cost as Cox-Matthews' ETDRK4, kept as ``ETDRK4_COX_MATTHEWS``, with a smaller error constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, cached_property

import torch
from torch import Tensor

# One coefficient: a sum of ``weight * phi_k(c z)`` given as (weight, k, c) triples.
Coefficient = tuple[tuple[float, int, float], ...]


def canonical(*coefficients: Coefficient) -> Coefficient:
    """The sum of ``coefficients`` with equal ``(k, c)`` merged, zeros dropped, in a fixed order; ``phi_k(0 z)``
    is the constant ``1/k!``, written ``(w / k!, 0, 0.0)``."""
    total: dict[tuple[int, float], float] = {}
    for co in coefficients:
        for w, k, c in co:
            key, w = ((0, 0.0), w / math.factorial(k)) if c == 0 else ((k, c), w)
            total[key] = total.get(key, 0.0) + w
    return tuple((w, k, c) for (k, c), w in sorted(total.items()) if abs(w) > 1e-14)


def at_zero(co: Coefficient) -> float:
    """The coefficient's value at ``z = 0`` (``phi_k(0) = 1/k!``)."""
    return sum(w / math.factorial(k) for w, k, _ in co)


@cache
def rooted_trees(order: int) -> tuple[tuple, ...]:
    """Butcher's rooted trees with ``order`` nodes, each a sorted tuple of its root's subtrees."""
    if order == 1:
        return ((),)
    found = {
        tuple(sorted((*rest, child)))
        for n in range(1, order)
        for child in rooted_trees(n)
        for rest in rooted_trees(order - n)
    }
    return tuple(sorted(found))


def _density(tree: tuple) -> int:
    return (1 + sum(_size(s) for s in tree)) * math.prod(_density(s) for s in tree)


def _size(tree: tuple) -> int:
    return 1 + sum(_size(s) for s in tree)


@dataclass(frozen=True)
class ETDRKTableau:
    """An exponential Runge-Kutta tableau (Hochbruck & Ostermann's notation), checked on construction.

    Attributes:
        name: e.g. ``"ETDRK4"``.
        order: classical order of convergence in time.
        c: stage nodes ``c_1 = 0, c_2, ...``.
        a: ``a[i]`` holds the coefficients ``a_ij`` of stage ``i`` on the earlier stages ``j < i``.
        b: weights ``b_i`` of the update.

    Checks (``ValueError`` naming the tableau and the failed condition): the method is explicit; each row sums to
    ``c_i phi_1(c_i z)`` and the weights to ``phi_1(z)`` for every ``z`` (constant forcing is integrated exactly);
    at ``z = 0`` the method is an explicit Runge-Kutta method that meets Butcher's conditions up to ``order``.
    A tableau without stages (ETDRK0) declares order 0.
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[Coefficient, ...], ...]
    b: tuple[Coefficient, ...]

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or len(self.b) != s or any(len(row) > i for i, row in enumerate(self.a)):
            raise ValueError(
                f"ETDRKTableau {self.name!r}: expected {s} rows a[i] of at most i coefficients and {s} weights b "
                f"(an explicit method), got {len(self.a)} rows of lengths {[len(r) for r in self.a]} and {len(self.b)}"
            )
        if not s:
            if self.order != 0:
                raise ValueError(f"ETDRKTableau {self.name!r}: a tableau without stages has order 0, not {self.order}")
            return
        for i, (row, ci) in enumerate(zip(self.a, self.c)):
            if not _close(canonical(*row), canonical(((ci, 1, ci),))):
                raise ValueError(
                    f"ETDRKTableau {self.name!r}: row {i + 1} of a sums to {canonical(*row)}, expected "
                    f"c_{i + 1} phi_1(c_{i + 1} z) with c_{i + 1} = {ci}"
                )
        if not _close(canonical(*self.b), ((1.0, 1, 1.0),)):
            raise ValueError(
                f"ETDRKTableau {self.name!r}: the weights b sum to {canonical(*self.b)}, expected phi_1(z)"
            )
        a0 = [[at_zero(co) for co in row] for row in self.a]
        b0 = [at_zero(co) for co in self.b]
        for p in range(1, self.order + 1):
            for tree in rooted_trees(p):
                got = sum(bi * _weight(a0, i, tree) for i, bi in enumerate(b0))
                if abs(got - 1 / _density(tree)) > 1e-12:
                    raise ValueError(
                        f"ETDRKTableau {self.name!r} declares order {self.order}, but at z = 0 it misses Butcher's "
                        f"order-{p} condition for the tree {tree}: {got!r} instead of 1/{_density(tree)}"
                    )

    # -- derived properties: what the stepper and its strategies read -------------------------------------------
    @cached_property
    def rows(self) -> tuple[tuple[tuple[int, Coefficient], ...], ...]:
        """Per stage, its nonzero coefficients as ``(j, a_ij)``, in the order of ``j``."""
        return tuple(tuple((j, co) for j, co in enumerate(row) if canonical(co)) for row in self.a)

    @cached_property
    def weight_groups(self) -> tuple[tuple[Coefficient, tuple[int, ...]], ...]:
        """The distinct weights and the stages that share each (summed before it is applied: both ETDRK4s weigh
        stages 2 and 3 alike), in the order of their first stage."""
        groups: dict[Coefficient, list[int]] = {}
        for i, co in enumerate(self.b):
            if canonical(co):
                groups.setdefault(canonical(co), []).append(i)
        return tuple((co, tuple(stages)) for co, stages in groups.items())

    @cached_property
    def last_at_node(self) -> tuple[bool, ...]:
        """Per stage, whether no later stage starts from its node's ``exp(c z) u_n``: a fused step may then
        accumulate the stage in place of that product."""
        return tuple(ci not in self.c[i + 1 :] for i, ci in enumerate(self.c))

    @cached_property
    def phis(self) -> dict[float, int]:
        """For each ``c`` the tableau needs (its nodes and 1), the highest ``k`` of the ``phi_k(c z)`` it reads."""
        needed = {c: 0 for c in (*self.c, 1.0)}
        for co in (*(co for row in self.a for co in row), *self.b):
            for _, k, c in co:
                needed[c] = max(needed.get(c, 0), k)
        return needed


def _close(x: Coefficient, y: Coefficient) -> bool:
    return [(k, c) for _, k, c in x] == [(k, c) for _, k, c in y] and all(
        abs(u[0] - v[0]) <= 1e-12 for u, v in zip(x, y)
    )


def _weight(a0: list[list[float]], i: int, tree: tuple) -> float:
    """Butcher's elementary weight of ``tree`` at stage ``i`` (without ``b``) for the matrix ``a0``."""
    return math.prod(sum(aij * _weight(a0, j, sub) for j, aij in enumerate(a0[i])) for sub in tree)


_HALF_PHI1: Coefficient = ((0.5, 1, 0.5),)

TABLEAUS: dict[int, ETDRKTableau] = {
    0: ETDRKTableau("ETDRK0", 0, c=(), a=(), b=()),
    1: ETDRKTableau("ETDRK1", 1, c=(0.0,), a=((),), b=(((1.0, 1, 1.0),),)),
    2: ETDRKTableau(
        "ETDRK2", 2, c=(0.0, 1.0), a=((), (((1.0, 1, 1.0),),)), b=(((1.0, 1, 1.0), (-1.0, 2, 1.0)), ((1.0, 2, 1.0),))
    ),
    3: ETDRKTableau(
        "ETDRK3",
        3,
        c=(0.0, 0.5, 1.0),
        a=((), (_HALF_PHI1,), (((-1.0, 1, 1.0),), ((2.0, 1, 1.0),))),
        b=(
            ((1.0, 1, 1.0), (-3.0, 2, 1.0), (4.0, 3, 1.0)),
            ((4.0, 2, 1.0), (-8.0, 3, 1.0)),
            ((-1.0, 2, 1.0), (4.0, 3, 1.0)),
        ),
    ),
}

_B4: tuple[Coefficient, ...] = (
    ((1.0, 1, 1.0), (-3.0, 2, 1.0), (4.0, 3, 1.0)),
    ((2.0, 2, 1.0), (-4.0, 3, 1.0)),
    ((2.0, 2, 1.0), (-4.0, 3, 1.0)),
    ((-1.0, 2, 1.0), (4.0, 3, 1.0)),
)

#: Cox & Matthews' ETDRK4 (the scheme of Kassam & Trefethen's paper).
ETDRK4_COX_MATTHEWS = ETDRKTableau(
    "ETDRK4-CM",
    4,
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (_HALF_PHI1,), ((), _HALF_PHI1), (((1.0, 1, 1.0), (-1.0, 1, 0.5)), (), ((1.0, 1, 0.5),))),
    b=_B4,
)

#: Krogstad's ETDRK4 ("Generalized integrating factor methods for stiff PDEs", 2005): stages 3 and 4 add phi_2
#: terms; same nodes and weights b as Cox-Matthews.
ETDRK4_KROGSTAD = ETDRKTableau(
    "ETDRK4",
    4,
    c=(0.0, 0.5, 0.5, 1.0),
    a=(
        (),
        (_HALF_PHI1,),
        (((0.5, 1, 0.5), (-1.0, 2, 0.5)), ((1.0, 2, 0.5),)),
        (((1.0, 1, 1.0), (-2.0, 2, 1.0)), (), ((2.0, 2, 1.0),)),
    ),
    b=_B4,
)
TABLEAUS[4] = ETDRK4_KROGSTAD


def phi_functions(z: Tensor, max_k: int, diagonal: bool, n_contour: int = 64) -> list[Tensor]:
    """``[phi_0(z), ..., phi_max_k(z)]`` by the contour mean of Kassam & Trefethen (SIAM J. Sci. Comput. 26, 2005):
    the mean of ``phi_k(z + e^{i theta_j})`` over a circle around each ``z``, in complex128.

    The complex values are kept: for advection and dispersion ``z`` is imaginary, and dropping the imaginary part
    (as exponax does) makes ETDRK2-4 first order. Coupled channels use matrix functions per wavenumber.

    Arguments:
        z: ``(..., C)`` scalars per channel if ``diagonal`` else ``(..., C, C)`` matrices.
        n_contour: points on the unit circle around each ``z`` (full circle: ``z`` is complex).
    """
    z = z.to(torch.complex128).contiguous()
    theta = 2 * math.pi * (torch.arange(n_contour, dtype=torch.float64) + 0.5) / n_contour
    r = torch.exp(1j * theta).to(torch.complex128)
    if diagonal:
        out = [torch.exp(z)]
        w = z[..., None] + r  # (..., C, M)
        p = torch.exp(w)
        for k in range(1, max_k + 1):
            p = (p - 1.0 / math.factorial(k - 1)) / w
            out.append(p.mean(-1))
        return out
    n = z.shape[-1]
    eye = torch.eye(n, dtype=torch.complex128)
    out = [torch.linalg.matrix_exp(z)]
    w = (z[..., None, :, :] + r[:, None, None] * eye).contiguous()  # (..., M, C, C)
    p = torch.exp(r)[:, None, None] * out[0][..., None, :, :]  # exp(z + r I) = e^r exp(z): r I commutes
    for k in range(1, max_k + 1):
        p = torch.linalg.solve(w, p - eye / math.factorial(k - 1))
        out.append(p.mean(-3))
    return out
