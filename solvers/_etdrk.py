"""Exponential time differencing Runge-Kutta (ETDRK) steppers in Fourier space.

For ``u_t = L u + N(u)`` with the (matrix) Fourier symbol ``L`` and ``z = h L``, one step of the tableau
(:class:`ETDRKTableau`: ``c``, ``a_ij(z)``, ``b_i(z)``) is

    U_i = exp(c_i z) u_n + h sum_{j<i} a_ij(z) N(U_j),      u_{n+1} = exp(z) u_n + h sum_i b_i(z) N(U_i),

written out as such in :meth:`ETDRK.step_spectral`, the reference every faster strategy is tested against bit for
bit (:mod:`._etdrk_strategies`). The ``phi_k`` behind ``a_ij, b_i`` are evaluated once in complex128
(:func:`phi_functions`); coupled channels (the wave equation) use matrix functions per wavenumber.

The nonlinear term costs the FFTs; everything else is folded into the coefficients once: the 2/3 mask of the
products (into ``a_ij, b_i``), the mask of the factors (into the stage propagators ``exp(c_i z)``, where the terms
read ``u``'s values), and, for a single conservation-form flux ``c D^alpha f(u)``, its symbol ``c (ik)^alpha``.
Where one step shrinks the modes above N/3 below the dtype's resolution (KS at dt = 0.1: ``|exp(z)| < 1e-33``
there), ``exp(z)`` drops them too: the output is then exactly masked (its high modes would be under one rounding
unit of the input's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._derivatives import linear_symbol
from ._equations import AbstractEquation
from ._etdrk_strategies import AbstractSteps, CallableSteps, choose_steps
from ._etdrk_tableau import TABLEAUS, Coefficient, ETDRKTableau, phi_functions
from ._etdrk_terms import SpectralTerms
from ._grid import Grid

_REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64, torch.complex32: torch.float16}


@dataclass(frozen=True)
class Coefficients:
    """An :class:`ETDRK` stepper's coefficients on one dtype and device; ``m`` is the 2/3 mask, times the flux
    symbol where the equation's nonlinear part is a single flux. Diagonal: ``(C, *K)``; coupled: ``(C, C, *K)``.

    Attributes:
        E: ``exp(z)``, the update's propagator (times the mask where ``masks_output``).
        propagators: ``exp(c z)`` per stage node, times the mask where ``premasked``; ``None``: the identity.
        a: per stage, ``(j, h a_ij(z) m)`` for its nonzero ``a_ij``.
        b: ``(h b(z) m, stages)`` per distinct weight, with the stages that share it.
        symbols, source: the equation's flux symbols and masked source spectrum (see :class:`SpectralTerms`).
    """

    E: Tensor
    propagators: dict[float, Tensor | None]
    a: tuple[tuple[tuple[int, Tensor], ...], ...]
    b: tuple[tuple[Tensor, tuple[int, ...]], ...]
    mask: Tensor
    symbols: tuple[Tensor, ...]
    source: Tensor | None
    diagonal: bool
    premasked: bool
    masks_output: bool

    def times(self, coefficient: Tensor, v: Tensor) -> Tensor:
        """``coefficient v`` for ``v: (B, C, *K)`` (a matrix per wavenumber where the channels are coupled)."""
        return coefficient * v if self.diagonal else torch.einsum("oi...,bi...->bo...", coefficient, v)

    def add_times(self, acc: Tensor, coefficient: Tensor, v: Tensor) -> Tensor:
        """``acc + coefficient v`` (one fused kernel in the diagonal case)."""
        return torch.addcmul(acc, coefficient, v) if self.diagonal else acc + self.times(coefficient, v)


def _coefficients128(stepper: ETDRK, z: Tensor, n_contour: int) -> tuple[Coefficients, float]:
    """The complex128 coefficients of ``stepper`` (``masks_output`` off) and the largest ``|exp(z)|`` above N/3."""
    tableau, terms, grid, diagonal = stepper.tableau, stepper.terms, stepper.grid, stepper.diagonal
    layout = (lambda x: x.movedim(-1, 0)) if diagonal else (lambda x: x.movedim((-2, -1), (0, 1)))
    phis: dict[tuple[int, float], Tensor] = {}
    for c, max_k in tableau.phis.items():
        phis.update({(k, c): v for k, v in enumerate(phi_functions(c * z, max_k, diagonal, n_contour))})
    mask = grid.dealias_mask().to(torch.complex128)
    premasked = diagonal and terms.reads_values
    m = mask * (terms.fluxes[0].symbol if terms.single_flux else 1.0)

    def combine(co: Coefficient) -> Tensor:
        return layout(stepper.dt * sum(w * phis[(k, c)] for w, k, c in co)) * m

    def propagator(c: float) -> Tensor | None:  # exp(c z), masked where the stages' values are read
        if premasked:
            return layout(phis[(0, c)]) * mask
        return None if c == 0 else layout(phis[(0, c)])

    E = layout(phis[(0, 1.0)])
    high = ~grid.dealias_mask()
    survival = float(E[:, high].abs().max()) if premasked and bool(high.any()) else math.inf
    coefficients = Coefficients(
        E=E,
        propagators={c: propagator(c) for c in dict.fromkeys(tableau.c)},
        a=tuple(tuple((j, combine(co)) for j, co in row) for row in tableau.rows),
        b=tuple((combine(co), stages) for co, stages in tableau.weight_groups),
        mask=mask,
        symbols=tuple(f.symbol for f in terms.fluxes),
        source=terms.source,
        diagonal=diagonal,
        premasked=premasked,
        masks_output=False,
    )
    return coefficients, survival


class ETDRK:
    """Fourier-spectral ETDRK stepper ``u(t) -> u(t + dt)`` for an equation on a periodic grid.

    Arguments:
        equation: any :class:`AbstractEquation`.
        grid: the periodic :class:`Grid`.
        dt: the time step.
        order: 0 (exact linear propagator, nonlinear term ignored) to 4 (Krogstad's ETDRK4).
        n_contour: contour points for the ``phi`` functions (64 gives round-off accuracy).
        tableau: any :class:`ETDRKTableau` instead of ``TABLEAUS[order]`` (e.g. ``ETDRK4_COX_MATTHEWS``).

    ``stepper(u)`` maps ``u: (B, C, *grid.shape)`` to the same shape. dtype and device follow ``u``; the
    coefficients are computed once in complex128 and cast once per (dtype, device). Differentiable.
    The nonlinear products are dealiased with the 2/3 rule (factors and product both masked).
    """

    def __init__(
        self,
        equation: AbstractEquation,
        grid: Grid,
        dt: float,
        order: int = 4,
        n_contour: int = 64,
        tableau: ETDRKTableau | None = None,
    ) -> None:
        if tableau is None and order not in TABLEAUS:
            raise ValueError(f"order must be one of {sorted(TABLEAUS)}, got {order!r}")
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt!r}")
        equation.check_ndim(grid.ndim)
        self.equation, self.grid, self.dt = equation, grid, float(dt)
        self.tableau = TABLEAUS[order] if tableau is None else tableau
        self.order = self.tableau.order
        self.channels = len(equation.channels)
        self.terms = SpectralTerms(equation, grid)
        self._dims = tuple(range(-grid.ndim, 0))
        symbol = linear_symbol(grid, equation.linear_terms(grid.ndim), self.channels)  # (C, C, *K)
        off = symbol.clone()
        off[range(self.channels), range(self.channels)] = 0
        self.diagonal = bool((off == 0).all())
        z = dt * (symbol.diagonal(0, 0, 1) if self.diagonal else symbol.movedim((0, 1), (-2, -1)))
        self._coefficients128, self._high_mode_survival = _coefficients128(self, z, n_contour)
        self._cast: dict[tuple, Coefficients] = {}

    @property
    def linear(self) -> bool:
        """Whether the equation has no nonlinear part (then ``N`` is its source, or nothing)."""
        return self.terms.linear

    def coefficients(self, dtype: torch.dtype, device: torch.device | str) -> Coefficients:
        """The coefficients cast to the complex dtype matching the real ``dtype`` on ``device`` (cached); ``E``
        drops the modes above N/3 where one step shrinks them below ``dtype``'s resolution."""
        key = (dtype, torch.device(device))
        if key not in self._cast:
            cdtype = torch.complex64 if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.complex128
            co = self._coefficients128
            flush = self._high_mode_survival <= torch.finfo(dtype).eps

            def cast(x):
                return None if x is None else x.to(device=device, dtype=cdtype).contiguous()

            self._cast[key] = Coefficients(
                E=cast(co.E * co.mask if flush else co.E),
                propagators={c: cast(p) for c, p in co.propagators.items()},
                a=tuple(tuple((j, cast(x)) for j, x in row) for row in co.a),
                b=tuple((cast(x), stages) for x, stages in co.b),
                mask=cast(co.mask),
                symbols=tuple(cast(x) for x in co.symbols),
                source=cast(co.source),
                diagonal=co.diagonal,
                premasked=co.premasked,
                masks_output=flush,
            )
        return self._cast[key]

    def step_spectral(self, u_hat: Tensor) -> Tensor:
        """One step on the spectrum ``u_hat = rfftn(u)``, ``(B, C, *grid.spectral_shape)``: the tableau's stages, then
        their combination. The reference: every strategy of :func:`rollout` gives these numbers."""
        co = self.coefficients(_REAL_OF[u_hat.dtype], u_hat.device)
        out = co.times(co.E, u_hat)
        if not self.tableau.c or (self.linear and co.source is None):
            return out
        propagated = {c: u_hat if p is None else co.times(p, u_hat) for c, p in co.propagators.items()}
        N: list[Tensor] = []
        for c, row in zip(self.tableau.c, co.a):
            U = propagated[c]  # U_i = exp(c_i z) u_n + h sum_j a_ij N_j
            for j, a_ij in row:
                U = co.add_times(U, a_ij, N[j])
            N.append(self.terms(U, co.premasked, co.symbols, co.source))
        for b, stages in co.b:  # u_{n+1} = exp(z) u_n + h sum_i b_i N_i
            n = N[stages[0]]
            for i in stages[1:]:
                n = n + N[i]
            out = co.add_times(out, b, n)
        return out

    def strategy(self, u0: Tensor, n_steps: int, cuda_graph: bool | None = None) -> AbstractSteps:
        """How :func:`rollout` runs ``n_steps`` from ``u0`` (see :func:`choose_steps`)."""
        return choose_steps(self, u0, n_steps, cuda_graph)

    def check_input(self, u: Tensor) -> None:
        """Raise a helpful ``ValueError`` unless ``u`` is a real ``(B, C, *grid.shape)`` tensor."""
        if not isinstance(u, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(u).__name__}")
        self.grid.check_field(u)
        if u.shape[1] != self.channels:
            raise ValueError(
                f"{type(self.equation).__name__} has channels {self.equation.channels}: expected "
                f"(B, {self.channels}, {', '.join(map(str, self.grid.shape))}), got {tuple(u.shape)}"
            )
        if not u.is_floating_point():
            raise TypeError(f"expected a real floating-point field, got dtype {u.dtype}")

    def to_spectral(self, u: Tensor) -> Tensor:
        """``rfftn`` over the spatial axes."""
        return torch.fft.rfftn(u, dim=self._dims)

    def to_physical(self, u_hat: Tensor) -> Tensor:
        """``irfftn`` over the spatial axes back to ``grid.shape``."""
        return torch.fft.irfftn(u_hat, s=self.grid.shape, dim=self._dims)

    def __call__(self, u: Tensor) -> Tensor:
        """Advance ``u: (B, C, *space)`` by one step ``dt``; same shape and dtype."""
        self.check_input(u)
        return self.to_physical(self.step_spectral(self.to_spectral(u))).to(u.dtype)

    def __repr__(self) -> str:
        return f"ETDRK({self.equation!r}, {self.grid!r}, dt={self.dt}, order={self.order})"


def rollout(
    stepper, u0: Tensor, n_steps: int, save_every: int = 1, progress: bool = False, cuda_graph: bool | None = None
) -> Tensor:
    """Apply ``stepper`` ``n_steps`` times from ``u0``, keeping every ``save_every``-th state.

    Arguments:
        stepper: an :class:`ETDRK` (stays in Fourier space between saves) or any ``(B, C, *S) -> (B, C, *S)``.
        u0: ``(B, C, *space)`` initial state.
        progress: show a tqdm bar.
        cuda_graph: for an ETDRK stepper on a CUDA device without a gradient to ``u0``, 3 steps or more: replay
            one recorded step as a CUDA graph (``None``, the default) or never (``False``).

    The steps run as the strategy :meth:`ETDRK.strategy` chooses (:mod:`._etdrk_strategies`), each tested to give
    the reference step's numbers. Without a gradient to ``u0`` the states are inference tensors inside; the
    returned tensor is an ordinary one.

    Returns:
        ``(B, 1 + n_steps // save_every, C, *space)``, ``u0`` first.
    """
    if n_steps < 0 or save_every < 1:
        raise ValueError(f"need n_steps >= 0 and save_every >= 1, got {n_steps} and {save_every}")
    if isinstance(stepper, ETDRK):
        stepper.check_input(u0)
        steps = stepper.strategy(u0, n_steps, cuda_graph)
    else:
        steps = CallableSteps(stepper)
    out = u0.new_empty((u0.shape[0], 1 + n_steps // save_every, *u0.shape[1:]))  # written in place, no list
    out[:, 0] = u0
    with torch.inference_mode(steps.inference), tqdm(total=n_steps, disable=not progress, desc="rollout") as bar:
        steps.run(steps.start(u0), n_steps, save_every, out, bar)
    return out
