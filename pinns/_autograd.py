"""Autograd derivative provider: the PINN side of the shared equation code path.

An equation writes its nonlinear term once against ``D(u, alpha)`` (see
:class:`pdeforge.solvers.AbstractDerivatives`). Here ``D`` differentiates a field ``u`` of shape ``(N, C)``,
evaluated at ``N`` collocation points, with respect to the coordinates ``x_1 .. x_d`` (each ``(N, 1)``) and, if
given, the time ``t`` it was computed from.

Each backward pass (``torch.autograd.grad`` with ``create_graph=True``) through the network costs about as much as
the network itself, and the training step then differentiates every pass once more; ``D`` takes as few passes as
the equation needs:

* coordinates that are columns of one leaf, ``xt[:, i : i + 1]`` of the stacked space-time points
  ``xt (N, d + 1)`` (what :func:`pde_residual` makes), are differentiated together: one pass per field column
  gives ``u_x1 .. u_xd`` and ``u_t`` at once, one more from ``u_x`` gives ``u_xx``, ``u_xy``, ``u_xt``;
  separate leaves (one ``(N, 1)`` tensor per coordinate) cost one pass per coordinate;
* every derivative is kept per field, channel and multi-index, lower orders are reused by higher ones
  (``u_xxx`` from ``u_xx``), and channel slices of the field (``u[:, c : c + 1]``, as the linear terms take them)
  share the field's derivatives, so the time derivative and all the terms of an equation share them;
* the first derivative of a point-wise function of the field, ``D(f(u), e_i)`` (the conservation-form fluxes:
  Burgers' ``-(u^2 / 2)_x``), is ``f'(u) u_{x_i}`` by the chain rule, where ``f'(u)`` comes from a backward pass
  through ``f`` alone (a few operations) and ``u_{x_i}`` from the kept derivatives, instead of a pass through the
  network. Whether ``f(u)`` depends on the field and nothing else is read from its autograd graph (at most
  ``64`` nodes are walked); a flux of the coordinates or of derivatives takes the reverse-mode path, and
  ``chain_rule=False`` takes it always (the reference path; both are tested to agree).

Viscous Burgers' residual so costs two passes through the network (``u_x, u_t``, then ``u_xx``), DeepXDE's count
for the hand-written ``u u_x`` form, where one pass per derivative and a separate one for the flux cost four.

Orders ``>= forward_from_order`` (``u_xxx`` of KdV, ``u_xxxx`` of Kuramoto-Sivashinsky and Swift-Hohenberg) may
instead come from nested forward-mode ``torch.func.jvp`` of the point-wise field function along the coordinate
directions, when the field (or one of its channel columns) comes from that function. Both give the same values and
parameter gradients (tested). Measured on CPU (2000 points, tanh MLP 64x2, float64, residual + backward): KdV
0.34 s forward vs 0.05 s reverse, Kuramoto-Sivashinsky 0.22 s vs 0.06 s -- nested jvp recomputes every lower order
and pays the functorch overhead, while kept reverse-mode derivatives are reused. On the Burgers setting of
``benchmarks/pinns_vs_deepxde.py`` (2780 points, 2-20-20-20-1, float32, one CPU thread, residual + backward) the
two reverse passes took 13 ms where batched ``torch.func.jvp`` took 24 ms, ``vmap`` of per-point ``jacfwd`` 57 ms,
and a hand-written Taylor-mode forward pass through the tanh MLP 1.3 times the reverse passes' time. So the
default is reverse mode (``forward_from_order=None``); try ``3`` on accelerators.

``pde_residual(equation, fn, x, t)`` is the one entry point every PINN in this package uses: it stacks ``(x, t)``
into one leaf, evaluates ``u = fn(x, t)``, ``u_t`` by autograd and returns ``equation.residual(u_t, u, D)``, the same
method the spectral solver's consistency tests call with :class:`~pdeforge.solvers.SpectralDerivatives`.

Non-local terms (the inverse Laplacian of :class:`~pdeforge.solvers.NavierStokes2D` in vorticity form) raise
:class:`~pdeforge.solvers.NonLocalTermError`: a point-wise network has no Biot-Savart law.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..solvers import AbstractDerivatives, AbstractEquation

# fn(x, t) -> u: x (N, d), t (N, 1) -> u (N, C); must act point by point (row n of u depends on row n only).
# A network may also have a method ``stacked(xt)``: u at the stacked points xt (N, d + 1), space then time
# (:class:`~pdeforge.pinns.PINNNet` has): pde_residual then calls it on its leaf directly.
FieldFunction = Callable[[Tensor, Tensor], Tensor]

_WALK = 64  # autograd nodes walked at most to decide that a tensor is a point-wise function of the field alone


def grad(y: Tensor, x: Tensor) -> Tensor:
    """``d y / d x`` for point-wise ``y (N, 1)`` and ``x (N, k)`` (a leaf or any tensor ``y`` was computed from),
    differentiable (``create_graph=True``): ``(N, k)``, row ``n`` holding the derivatives of ``y_n``.

    Returns zeros when ``y`` does not depend on ``x``.
    """
    if not y.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _leaf_column(x: Tensor) -> tuple[Tensor, int]:
    """``(leaf, column)`` if ``x (N, 1)`` is the column view ``leaf[:, column : column + 1]`` of a 2D leaf that
    requires grad, else ``(x, 0)`` (``x`` is differentiated on its own)."""
    base = x._base
    if (
        base is not None
        and x.requires_grad
        and base.is_leaf
        and base.requires_grad
        and base.ndim == 2
        and base.shape[0] == x.shape[0]
        and base.stride(1) == 1
        and x.stride(0) == base.stride(0)
    ):
        column = x.storage_offset() - base.storage_offset()
        if 0 <= column < base.shape[1]:
            return base, column
    return x, 0


def _function_of(v: Tensor, u: Tensor) -> bool:
    """Whether ``v``'s autograd graph reaches no leaf but through ``u`` (``v = f(u)`` and constants), judged from at
    most ``_WALK`` nodes (beyond: no)."""
    target, nr = u.grad_fn, u.output_nr
    if target is None or v.grad_fn is None:
        return False
    stack, seen = [v.grad_fn], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if len(seen) > _WALK:
            return False
        for nxt, out in node.next_functions:
            if nxt is None:
                continue
            if nxt is target:
                if out != nr:  # another output of the node that made u: not u
                    return False
                continue
            if nxt.name() == "torch::autograd::AccumulateGrad":  # a leaf: coordinates or parameters
                return False
            stack.append(nxt)
    return True


class AutogradDerivatives(AbstractDerivatives):
    """Point-wise derivatives ``D(u, alpha)`` of fields ``(N, C)`` by automatic differentiation (see the module
    docstring for how the passes are shared).

    Arguments:
        coords: ``(x_1, ..., x_d)``, each ``(N, 1)`` with ``requires_grad``: leaves, or column views of one leaf
            (then differentiated together); the fields were computed from them.
        field: the field ``u`` the equation is evaluated on (``(N, C)``): its channel slices share its derivatives,
            point-wise functions of it are differentiated by the chain rule, and it enables forward mode.
        function: ``coords -> (N, C)``, point-wise; needed for forward mode.
        forward_from_order: use nested ``torch.func.jvp`` for ``|alpha| >=`` this (``None``: never, the default).
        time: the time ``t (N, 1)`` (a leaf, or a column of the same leaf as the coordinates), for
            :meth:`time_derivative`.
        chain_rule: differentiate point-wise functions of ``field`` by the chain rule (``False``: always by a pass
            through their whole graph, the reference path).
    """

    def __init__(
        self,
        coords: tuple[Tensor, ...],
        field: Tensor | None = None,
        function: Callable[..., Tensor] | None = None,
        forward_from_order: int | None = None,
        time: Tensor | None = None,
        chain_rule: bool = True,
    ) -> None:
        axes = tuple(coords) + (() if time is None else (time,))
        for i, x in enumerate(axes):
            name = "time" if i == len(coords) else f"coordinate {i}"
            if x.ndim != 2 or x.shape[1] != 1:
                raise ValueError(f"{name}: expected shape (N, 1), got {tuple(x.shape)}: use x[:, None]")
        self._coords = tuple(coords)
        self._has_time = time is not None
        self._field = field
        self._function = function
        self.forward_from_order = forward_from_order
        self.chain_rule = chain_rule
        # each axis (coordinates, then time) is a column of one of the leaves
        self._leaves: list[Tensor] = []
        self._where: list[tuple[int, int]] = []
        for x in axes:
            leaf, column = _leaf_column(x)
            index = next((k for k, known in enumerate(self._leaves) if known is leaf), None)
            if index is None:
                self._leaves.append(leaf)
                index = len(self._leaves) - 1
            self._where.append((index, column))
        self._rows: dict[tuple, Tensor] = {}  # (id(y), c, beta, leaf) -> d(D^beta y_c) / d leaf, (N, k)
        self._derivatives: dict[tuple, Tensor] = {}  # (id(y), c, beta) -> D^beta y_c, (N, 1)
        self._keep: list[Tensor] = []  # keeps the keys' tensors alive so that their ids stay unique

    def coords(self) -> tuple[Tensor, ...]:
        return self._coords

    def __call__(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        alpha = tuple(int(a) for a in alpha)
        if len(alpha) != len(self._coords) or any(a < 0 for a in alpha):
            raise ValueError(f"alpha must hold {len(self._coords)} non-negative orders, got {alpha!r}")
        if u.ndim != 2 or u.shape[0] != self._coords[0].shape[0]:
            raise ValueError(
                f"expected a point-wise field (N, C) with N = {self._coords[0].shape[0]}, got {tuple(u.shape)}"
            )
        if not any(alpha):
            return u
        columns = self._columns_of_field(u)
        if (
            self.forward_from_order is not None
            and sum(alpha) >= self.forward_from_order
            and columns is not None
            and self._function is not None
        ):
            return self._forward(alpha)[:, columns]
        return self._derivative(u, alpha + (0,) * self._has_time, columns)

    def time_derivative(self, u: Tensor) -> Tensor:
        """``du/dt (N, C)`` (needs ``time``)."""
        if not self._has_time:
            raise ValueError("this AutogradDerivatives was made without a time coordinate")
        return self._derivative(u, (0,) * len(self._coords) + (1,), self._columns_of_field(u))

    # -- reverse mode ---------------------------------------------------------------------------------------
    def _derivative(self, u: Tensor, beta: tuple[int, ...], columns: slice | None) -> Tensor:
        """``D^beta u`` over the axes (coordinates, then time): from the field's own derivatives, by the chain rule,
        or by reverse mode on ``u``."""
        if columns is not None:
            return _join([self._reverse(self._field, c, beta) for c in range(columns.start, columns.stop)])
        if self.chain_rule and self._field is not None and _function_of(u, self._field):
            return self._chain(u, beta)
        return _join([self._reverse(u, c, beta) for c in range(u.shape[1])])

    def _reverse(self, y: Tensor, c: int, beta: tuple[int, ...]) -> Tensor:
        """``D^beta y_c (N, 1)``: the last axis differentiated last, the lower order's gradient row kept whole (one
        pass gives the derivatives along every column of a stacked leaf)."""
        if not any(beta):
            return y[:, c : c + 1]
        key = (id(y), c, beta)
        hit = self._derivatives.get(key)
        if hit is not None:
            return hit
        d = max(i for i, b in enumerate(beta) if b)
        lower = tuple(b - (i == d) for i, b in enumerate(beta))
        leaf, column = self._where[d]
        row_key = (id(y), c, lower, leaf)
        row = self._rows.get(row_key)
        if row is None:
            row = grad(self._reverse(y, c, lower), self._leaves[leaf])
            self._rows[row_key] = row
        out = row[:, column : column + 1]
        self._derivatives[key] = out
        self._keep.append(y)
        return out

    def _chain(self, v: Tensor, beta: tuple[int, ...]) -> Tensor:
        """``D^beta v`` for ``v = f(field)`` point-wise: ``f'(u) . D^{e_d} u`` (the field's kept first derivatives),
        then reverse mode for the rest of ``beta``."""
        key = (id(v), -1, beta)
        hit = self._derivatives.get(key)
        if hit is not None:
            return hit
        u = self._field
        d = max(i for i, b in enumerate(beta) if b)
        first = tuple(int(i == d) for i in range(len(beta)))
        lower = tuple(b - (i == d) for i, b in enumerate(beta))
        out = []
        for j in range(v.shape[1]):
            vj = v if v.shape[1] == 1 else v[:, j : j + 1]
            (slope,) = torch.autograd.grad(vj, u, torch.ones_like(vj), create_graph=True)  # f'(u), point-wise
            terms = [slope[:, c : c + 1] * self._reverse(u, c, first) for c in range(u.shape[1])]
            w = terms[0] if len(terms) == 1 else torch.stack(terms).sum(0)
            out.append(self._reverse(w, 0, lower))
        result = _join(out)
        self._derivatives[key] = result
        self._keep.append(v)
        return result

    # -- forward mode ---------------------------------------------------------------------------------------
    def _columns_of_field(self, u: Tensor) -> slice | None:
        """The channel columns of ``field`` that ``u`` is (``u`` itself or a column slice of it), else None."""
        f = self._field
        if f is None:
            return None
        if u is f:
            return slice(0, f.shape[1])
        if u._base is not None and (u._base is f or u._base is f._base) and f._base is None and f.is_contiguous():
            offset = u.storage_offset() - f.storage_offset()
            if u.stride() == f.stride() and 0 <= offset and offset + u.shape[1] <= f.shape[1]:
                return slice(offset, offset + u.shape[1])
        return None

    def _forward(self, alpha: tuple[int, ...]) -> Tensor:
        key = (id(self._field), -2, alpha)
        if key not in self._derivatives:
            g = self._function
            for d, a in enumerate(alpha):
                for _ in range(a):
                    g = _directional(g, d)
            self._derivatives[key] = g(*self._coords)
        return self._derivatives[key]


def _join(columns: list[Tensor]) -> Tensor:
    """The columns ``(N, 1)`` side by side (one column as it is: no copy)."""
    return columns[0] if len(columns) == 1 else torch.cat(columns, dim=1)


def _directional(g: Callable[..., Tensor], d: int) -> Callable[..., Tensor]:
    """``coords -> d g / d x_d`` by one forward-mode Jacobian-vector product (point-wise ``g``)."""

    def dg(*coords: Tensor) -> Tensor:
        tangents = tuple(torch.ones_like(x) if i == d else torch.zeros_like(x) for i, x in enumerate(coords))
        return torch.func.jvp(g, coords, tangents)[1]

    return dg


def field_at(fn: FieldFunction, xt: Tensor, ndim: int) -> Tensor:
    """``u = fn(x, t)`` at the stacked points ``xt (N, ndim + 1)`` (``fn.stacked(xt)`` where the network has it)."""
    stacked = getattr(fn, "stacked", None)
    return stacked(xt) if callable(stacked) else fn(xt[:, :ndim], xt[:, ndim:])


def pde_residual(
    equation: AbstractEquation, fn: FieldFunction, x: Tensor, t: Tensor, forward_from_order: int | None = None
) -> tuple[Tensor, Tensor]:
    """The residual ``u_t - (L u + N(u) + f)`` of ``equation`` for the field ``u = fn(x, t)`` at points.

    ``(x, t)`` become one leaf ``xt (N, d + 1)``: one backward pass gives ``u_x`` and ``u_t`` together (see the
    module docstring).

    Arguments:
        equation: any local equation of :mod:`pdeforge.solvers` (its ``residual`` method is called).
        fn: point-wise ``(x (N, d), t (N, 1)) -> u (N, C)``, or a network with ``stacked(xt)``.
        x: ``(N, d)`` spatial points; t: ``(N, 1)`` times.

    Returns:
        ``(residual (N, C), u (N, C))``.
    """
    if x.ndim != 2 or t.ndim != 2 or t.shape != (x.shape[0], 1):
        raise ValueError(f"expected x (N, d) and t (N, 1), got {tuple(x.shape)} and {tuple(t.shape)}")
    ndim = x.shape[1]
    equation.check_ndim(ndim)
    xt = torch.cat([x, t], dim=1).detach().requires_grad_(True)
    xs = tuple(xt[:, i : i + 1] for i in range(ndim))
    tt = xt[:, ndim:]
    u = field_at(fn, xt, ndim)
    if u.ndim != 2 or u.shape[0] != x.shape[0]:
        raise ValueError(f"fn must return (N, C) = ({x.shape[0]}, C), got {tuple(u.shape)}")

    def field(*cs: Tensor) -> Tensor:  # forward mode differentiates along the coordinates one at a time
        return fn(torch.cat(cs, dim=1), tt)

    D = AutogradDerivatives(xs, field=u, function=field, forward_from_order=forward_from_order, time=tt)
    return equation.residual(D.time_derivative(u), u, D), u
