"""Constrained 4x4 interpolation stencils and the learned face-value module of LI / TSM.

A stencil interpolates a staggered field ``f`` to a target point ``t`` (offset from the patch's anchor point,
in cells) from the ``4 x 4`` neighbourhood with offsets ``o_p, o_q in {-1, 0, 1, 2}`` (the layout of
:func:`pdeforge.solvers.fv.stencil_patches`):

    f(t) ~ sum_{p,q} w_pq f(o_p, o_q).

A stencil of accuracy ``order`` ``p`` is exact on every polynomial of total degree ``< p``:

    sum_{p,q} w_pq (o_p - t_x)^a (o_q - t_y)^b = [a = b = 0]      for all a + b < order,

a linear system ``A w = b`` with ``n_c = order (order + 1) / 2`` rows. Its solutions are the affine set
``w = w_0 + K z`` with ``K`` (``16 x (16 - n_c)``) an orthonormal basis of the null space of ``A`` and
``w_0`` the *base stencil*: linear interpolation between the two points around ``t`` (exact up to order 2),
projected onto the constraints when ``order > 2``. A network predicts the free logits ``z``; ``z = 0`` gives
``w_0`` exactly. For ``order = 1`` (Kochkov et al. 2021, "Machine learning-accelerated computational fluid
dynamics", PNAS) the only constraint is ``sum w = 1`` and each stencil has 15 logits; the 8 stencils per cell
(advected ``u_j`` and advecting ``u_d`` at the four flux locations ``(j, d)``) take 120 logits.

The advected values are wrapped in a TVD limiter (jax-cfd's ``apply_tvd_limiter`` with van Leer's limiter):
``q = q_up + phi(r) (q_learned - q_up)`` with ``phi(r) = 2 r / (1 + r)`` for ``r > 0``, else 0, and
``r = (q_U - q_UU) / (q_D - q_U)`` chosen by the sign of the advecting velocity. With ``z = 0`` the learned
value is linear interpolation and the module reproduces the solver's ``VanLeerInterpolation`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from einops import rearrange
from torch import Tensor

from ...solvers.fv import AbstractInterpolation, FaceValues, stencil_patches

STENCIL_SIZE = 4
STENCIL_OFFSETS = (-1.0, 0.0, 1.0, 2.0)  # stencil_patches(field, 4) offsets along each axis
X_TARGET = (0.5, 0.0)  # half a cell forward along x from the anchor point
Y_TARGET = (0.0, 0.5)  # half a cell forward along y


@dataclass(frozen=True)
class PolynomialStencil:
    """A ``4 x 4`` interpolation stencil exact on polynomials of total degree ``< order`` at ``target``.

    Attributes:
        target: ``(t_x, t_y)`` offset of the interpolation point from the anchor, in cells.
        order: accuracy order (1: constants, i.e. ``sum w = 1``; 2: affine fields; 3: quadratics ...).
    """

    target: tuple[float, float]
    order: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.order <= 4:
            raise ValueError(f"PolynomialStencil order must be in 1..4 for a 4x4 stencil, got {self.order}")

    @property
    def exponents(self) -> tuple[tuple[int, int], ...]:
        """The monomials ``(a, b)`` with ``a + b < order`` the stencil reproduces exactly."""
        return tuple((a, s - a) for s in range(self.order) for a in range(s + 1))

    def constraints(self) -> tuple[Tensor, Tensor]:
        """``(A, b)``: ``A`` ``(n_c, 16)`` (float64), ``b`` ``(n_c,)``; weights flattened as ``p * 4 + q``."""
        o = torch.tensor(STENCIL_OFFSETS, dtype=torch.float64)
        dx, dy = o - self.target[0], o - self.target[1]
        rows = [(dx[:, None] ** a * dy[None, :] ** b).reshape(-1) for a, b in self.exponents]
        rhs = torch.tensor([1.0 if a == b == 0 else 0.0 for a, b in self.exponents], dtype=torch.float64)
        return torch.stack(rows), rhs

    @cached_property
    def _affine(self) -> tuple[Tensor, Tensor]:
        a, b = self.constraints()
        # preferred stencil: linear interpolation between the two neighbours of the target along its axis
        pref = torch.zeros(4, 4, dtype=torch.float64)
        if self.target[0] != 0.0:
            pref[1, 1] = pref[2, 1] = 0.5
        else:
            pref[1, 1] = pref[1, 2] = 0.5
        pref = pref.reshape(-1)
        base = pref + torch.linalg.pinv(a) @ (b - a @ pref)
        _, s, vh = torch.linalg.svd(a)
        rank = int((s > 1e-10 * s[0]).sum())
        return base, vh[rank:].T.contiguous()

    @property
    def base(self) -> Tensor:
        """The base stencil ``w_0`` ``(16,)`` float64 (the weights at zero logits)."""
        return self._affine[0]

    @property
    def null_space(self) -> Tensor:
        """Orthonormal null-space basis ``K`` ``(16, n_logits)`` float64."""
        return self._affine[1]

    @property
    def n_logits(self) -> int:
        return STENCIL_SIZE**2 - len(self.exponents)

    def weights(self, logits: Tensor) -> Tensor:
        """``w_0 + K z``: logits ``(..., n_logits)`` -> weights ``(..., 16)`` (last axis)."""
        return self.base.to(logits) + logits @ self.null_space.to(logits).T


# Plain dicts, not functools.lru_cache: torch.compile traces a dict lookup but not lru_cache's lock, which would
# split a compiled solver step into pieces at every stage.
_STENCILS: dict[int, tuple[PolynomialStencil, PolynomialStencil]] = {}
_STACKED: dict[tuple[int, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _stencils(order: int) -> tuple[PolynomialStencil, PolynomialStencil]:
    """The x and y stencils of ``order``: the SVD of the constraints once per order, not at every solver stage."""
    if order not in _STENCILS:
        _STENCILS[order] = PolynomialStencil(X_TARGET, order), PolynomialStencil(Y_TARGET, order)
    return _STENCILS[order]


def _stacked_stencils(order: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The x and y stencils' null spaces ``(2, 16, n_logits)`` and base weights ``(2, 16)`` in ``dtype`` on
    ``device``, made once per (order, dtype, device): a host-to-device copy blocks."""
    key = (order, dtype, device)
    if key not in _STACKED:
        sx, sy = _stencils(order)
        with torch.inference_mode(False):  # made under inference mode, they could not be saved for a later backward
            k = torch.stack([sx.null_space, sy.null_space]).to(dtype=dtype, device=device)
            _STACKED[key] = k, torch.stack([sx.base, sy.base]).to(dtype=dtype, device=device)
    return _STACKED[key]


def prepare_stencils(order: int, dtype: torch.dtype, device: torch.device | str) -> None:
    """Make the stencil constants of ``order`` for ``dtype`` on ``device`` now: a compiled solver step then finds
    them instead of tracing their construction."""
    _stacked_stencils(order, dtype, torch.empty(0, device=device).device)  # "cuda" -> cuda:0, as a tensor's


def logits_per_cell(order: int = 1) -> int:
    """Number of logits per cell for the 8 stencils (120 for ``order = 1``)."""
    return 8 * PolynomialStencil(X_TARGET, order).n_logits


def _grouped(logits: Tensor, nl: int, order: int) -> Tensor:
    """``logits (B, 8 nl, N, N)`` as ``(B, kind, j, d, nl, N, N)``; another channel count is refused naming it."""
    if logits.shape[1] != 8 * nl:
        raise ValueError(f"expected logits (B, {8 * nl}, N, N) for order {order}, got {tuple(logits.shape)}")
    return rearrange(logits, "b (kind j d l) x y -> b kind j d l x y", kind=2, j=2, d=2)


def stencil_weights(logits: Tensor, order: int = 1) -> Tensor:
    """All 8 stencils of every cell from the logits.

    Args:
        logits: ``(B, 8 * n_logits, N, N)``, grouped as ``[kind, j, d, logit]`` with kind 0 = advected ``u_j``,
            1 = advecting ``u_d`` at flux location ``(j, d)``.
    Returns:
        weights ``(B, 2, 2, 2, 16, N, N)`` indexed ``[b, kind, j, d, p * 4 + q, x, y]``; each stencil satisfies
        the constraints of its :class:`PolynomialStencil` (target along ``d`` for advected values, along ``j``
        for the advecting velocity).
    """
    b, _, n1, n2 = logits.shape
    sx, sy = _stencils(order)
    nl = sx.n_logits
    z = _grouped(logits, nl, order)
    # target axis per (kind, j, d): advected -> d, advecting -> j
    out = torch.empty(b, 2, 2, 2, 16, n1, n2, dtype=logits.dtype, device=logits.device)
    for kind in range(2):
        for j in range(2):
            for d in range(2):
                st = (sx, sy)[d if kind == 0 else j]
                k = st.null_space.to(logits)
                w = torch.einsum("kl,blxy->bkxy", k, z[:, kind, j, d])
                out[:, kind, j, d] = w + st.base.to(logits)[None, :, None, None]
    return out


def _van_leer_phi(s_up: Tensor, s_down: Tensor) -> Tensor:
    """Van Leer limiter ``phi(r) = 2 r / (1 + r)`` (0 for ``r <= 0``) at ``r = s_up / s_down``, NaN-free."""
    positive = s_up * s_down > 0
    denom = torch.where(positive, s_up + s_down, torch.ones_like(s_up))
    return torch.where(positive, 2 * s_up / denom, torch.zeros_like(s_up))


def tvd_limit(
    q: Tensor, high: Tensor, a: Tensor, axis: int | None = None, neighbours: tuple[Tensor, Tensor, Tensor] | None = None
) -> Tensor:
    """Blend first-order upwind and a high-order face value of ``q`` at the face forward along ``axis``.

    ``q``, ``high``, ``a`` (advecting velocity at the face): ``(B, N, N)`` (or any shapes that broadcast). Returns
    ``q_U + phi(r) (high - q_U)`` with ``r = (q_U - q_UU) / (q_D - q_U)`` upwind by the sign of ``a``.
    Either ``axis`` (the neighbours are ``q`` rolled along it, periodic) or ``neighbours``: ``q`` at the points
    -1, +1, +2 along the face's axis, if the caller has them.
    """
    if neighbours is None:
        if axis is None:
            raise ValueError("tvd_limit needs the axis of the faces or the neighbours of q along it")
        neighbours = torch.roll(q, 1, axis), torch.roll(q, -1, axis), torch.roll(q, -2, axis)
    q_m1, q_p1, q_p2 = neighbours
    pos = a >= 0
    up = torch.where(pos, q, q_p1)
    phi = torch.where(pos, _van_leer_phi(q - q_m1, q_p1 - q), _van_leer_phi(q_p1 - q_p2, q - q_p1))
    return up + phi * (high - up)


def faces_from_logits(velocity: Tensor, logits: Tensor, order: int = 1, limiter: bool = True) -> FaceValues:
    """Face values of the learned interpolation: ``velocity (B, 2, N, N)``, ``logits (B, 8 n_logits, N, N)``.

    Equal to contracting :func:`stencil_weights` with the 4x4 patches, computed as
    ``w_0 . P + z . (K^T P)`` so that all 8 stencils take a few batched operations. The limiter reads its
    neighbours from the same patches.
    """
    b, _, n1, n2 = logits.shape
    sx, sy = _stencils(order)
    nl = sx.n_logits
    z = _grouped(logits, nl, order)
    k, w0 = _stacked_stencils(order, logits.dtype, logits.device)  # (t, 16, nl), (t, 16); t = target axis
    square = stencil_patches(velocity)  # (B, f, 4, 4, N, N): offsets -1..2 along x, then y
    patches = square.flatten(2, 3)  # (B, f, 16, N, N)
    q = torch.einsum("tkl,bfkxy->btflxy", k, patches)  # (B, t, f, nl, N, N)
    q0 = torch.einsum("tk,bfkxy->btfxy", w0, patches)  # (B, t, f, N, N)
    # advected u_j at (j, d): target axis d, field j -> index [t=d, f=j]; advecting u_d: [t=j, f=d]
    z_advected, z_advecting = z.unbind(1)  # not z[:, k]: a select's backward zero-fills all of z
    advected = q0.transpose(1, 2) + (z_advected * q.transpose(1, 2)).sum(3)
    advecting = q0 + (z_advecting * q).sum(3)
    if limiter:  # all four (j, d) at once; u_j's neighbours at offsets -1, +1, +2 along d from the patches
        # (B, j, d, offset -1..2, N, N): the patch row through the cell along x, the column along y (views and one
        # stack: no index tensor to copy to the device at every stage)
        m1, _, p1, p2 = torch.stack([square[:, :, :, 1], square[:, :, 1]], dim=2).unbind(3)
        advected = tvd_limit(velocity[:, :, None], advected, advecting, neighbours=(m1, p1, p2))
    return FaceValues(advected, advecting)


class StencilInterpolation(AbstractInterpolation):
    """Learned face values from a ``logits_fn(velocity) -> (B, 8 n_logits, N, N)`` called on every velocity it is
    given (LI with a CNN call at each Runge-Kutta stage)."""

    def __init__(self, logits_fn: torch.nn.Module, order: int = 1, limiter: bool = True) -> None:
        super().__init__()
        self.logits_fn = logits_fn
        self.order = order
        self.limiter = limiter

    def forward(self, velocity: Tensor) -> FaceValues:
        return faces_from_logits(velocity, self.logits_fn(velocity), self.order, self.limiter)


__all__ = [
    "PolynomialStencil",
    "StencilInterpolation",
    "faces_from_logits",
    "logits_per_cell",
    "stencil_weights",
    "tvd_limit",
    "STENCIL_OFFSETS",
]
