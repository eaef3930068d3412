"""Derivative providers: the small interface against which every equation writes its nonlinear term once.

An equation's nonlinear term calls ``D(u, alpha)`` (the derivative of ``u`` by the multi-index ``alpha``)
and ``D.coords()`` (the coordinates, for forcings). The spectral solver implements ``D`` with FFTs (and the
2/3 dealiasing rule); a PINN implements it with autograd. Channels sit on axis 1 in both worlds:
``(B, C, *space)`` on a grid, ``(N, C)`` on collocation points.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from ._grid import Grid


class NonLocalTermError(ValueError):
    """Raised when a derivative provider cannot evaluate a non-local operator (an inverse Laplacian)."""


class AbstractDerivatives(ABC):
    """Derivatives of fields with channels on axis 1.

    ``D(u, alpha)`` returns ``d^|alpha| u / dx_1^alpha_1 ... dx_d^alpha_d`` with the shape of ``u``.
    ``D.inverse_laplacian(u, alpha)`` returns ``D^alpha lap^{-1} u`` (zero-mean inverse); it is not a local
    operator, so point-wise providers (autograd) raise :class:`NonLocalTermError`.
    """

    @abstractmethod
    def __call__(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        """Derivative of ``u`` by the multi-index ``alpha`` (one entry per spatial dimension)."""

    @abstractmethod
    def coords(self) -> tuple[Tensor, ...]:
        """Coordinates, one tensor per dimension, broadcastable against the fields ``D`` differentiates."""

    @property
    def ndim(self) -> int:
        """The number of spatial dimensions (reads no field)."""
        return len(self.coords())

    def inverse_laplacian(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        """``D^alpha lap^{-1} u``; local providers cannot do this and raise :class:`NonLocalTermError`."""
        raise NonLocalTermError(
            f"{type(self).__name__} computes local derivatives only, but this equation needs the inverse "
            "Laplacian (e.g. the velocity from the stream function in vorticity form); evaluate its residual "
            "with SpectralDerivatives on a periodic grid, or use a velocity-pressure formulation"
        )


class SpectralDerivatives(AbstractDerivatives):
    """Fourier-spectral derivatives on a periodic :class:`Grid`, ``D^alpha u = F^{-1}[(i k)^alpha F u]``.

    Arguments:
        grid: the periodic grid; fields have shape ``(B, C, *grid.shape)``.
        dealias: multiply spectra by the 2/3-rule mask before transforming back (what the solver does for
            the factors of its nonlinear products). Residual checks on resolved fields use ``False``.

    Odd derivatives vanish on the Nyquist mode so that real fields stay real. Symbols are built in
    float64/complex128 and cached per (alpha, dtype, device).

    The solver binds its spectral state with :meth:`bind`: derivatives of the bound field then cost one
    inverse FFT each instead of a forward and an inverse one.
    """

    def __init__(self, grid: Grid, dealias: bool = False) -> None:
        self.grid = grid
        self.dealias = dealias
        self._symbols: dict[tuple, Tensor] = {}
        self._bound: Tensor | None = None
        self._bound_hat: Tensor | None = None
        self._memo: dict[tuple, Tensor] = {}  # derivatives of the bound field, computed once per bind
        self._dims = tuple(range(-grid.ndim, 0))

    # -- spectral helpers -------------------------------------------------------------------------------
    def symbol(self, alpha: tuple[int, ...], inverse_laplacian: bool, dtype: torch.dtype, device) -> Tensor:
        """``(i k)^alpha`` (divided by ``-|k|^2``, 0 at ``k = 0``, if ``inverse_laplacian``), masked if dealiasing."""
        if len(alpha) != self.grid.ndim or any(a < 0 for a in alpha):
            raise ValueError(f"alpha must hold {self.grid.ndim} non-negative orders, got {alpha!r}")
        key = (alpha, inverse_laplacian, dtype, device)
        if key not in self._symbols:
            self._symbols[key] = derivative_symbol(self.grid, alpha, inverse_laplacian, self.dealias).to(
                dtype=dtype, device=device
            )
        return self._symbols[key]

    def bind(self, u_hat: Tensor, values: bool = True, masked: bool = False) -> Tensor:
        """Remember the spectrum ``u_hat`` (``(B, C, *grid.spectral_shape)``) and return a handle to it.

        The handle is the physical field (dealiased when ``dealias`` is on) if ``values``, else an empty
        tensor, for terms that use only derivatives of the state (one inverse FFT saved). Passing the handle
        back to ``D`` reuses ``u_hat``. ``masked=True`` says ``u_hat`` already carries the 2/3 mask (the solver
        folds it into its stage propagators), which saves one multiplication.
        """
        self._bound_hat = u_hat
        self._memo.clear()
        if not values:
            self._bound = u_hat.real.new_empty(0)
        else:
            if self.dealias and not masked:
                u_hat = u_hat * self.symbol((0,) * self.grid.ndim, False, u_hat.dtype, u_hat.device)
            self._bound = torch.fft.irfftn(u_hat, s=self.grid.shape, dim=self._dims)
        return self._bound

    def probe(self, term: Callable[[Tensor, AbstractDerivatives], Tensor | None], channels: int) -> tuple[bool, bool]:
        """Call ``term(u, self)`` once on a bound zero state and report ``(returns None, reads u's values)``.

        "Reads values" means any torch operation on ``u`` other than differentiating it through ``self``;
        a term that does not (vorticity convection) is later given an empty handle instead of ``u``.
        """
        _ValueProbe.touched = False
        self._memo.clear()
        self._bound_hat = torch.zeros(1, channels, *self.grid.spectral_shape, dtype=torch.complex128)
        self._bound = torch.zeros(1, channels, *self.grid.shape, dtype=torch.float64).as_subclass(_ValueProbe)
        try:
            out = term(self._bound, self)
        finally:
            self.release()
        return out is None, _ValueProbe.touched

    def release(self) -> None:
        """Forget the bound spectrum."""
        self._bound = self._bound_hat = None
        self._memo.clear()

    def _apply(self, u: Tensor, alpha: tuple[int, ...], inverse_laplacian: bool) -> Tensor:
        if u is self._bound:
            key = (alpha, inverse_laplacian)
            if key not in self._memo:
                sym = self.symbol(alpha, inverse_laplacian, self._bound_hat.dtype, self._bound_hat.device)
                self._memo[key] = torch.fft.irfftn(self._bound_hat * sym, s=self.grid.shape, dim=self._dims)
            return self._memo[key]
        else:
            if tuple(u.shape[-self.grid.ndim :]) != self.grid.shape:
                raise ValueError(
                    f"expected a field (..., {', '.join(map(str, self.grid.shape))}), got {tuple(u.shape)}"
                )
            u_hat = torch.fft.rfftn(u, dim=self._dims)
        sym = self.symbol(alpha, inverse_laplacian, u_hat.dtype, u_hat.device)
        return torch.fft.irfftn(u_hat * sym, s=self.grid.shape, dim=self._dims)

    # -- the interface --------------------------------------------------------------------------------------
    def __call__(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        return self._apply(u, tuple(alpha), False)

    def inverse_laplacian(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        return self._apply(u, tuple(alpha), True)

    @property
    def ndim(self) -> int:
        return self.grid.ndim

    def coords(self) -> tuple[Tensor, ...]:
        dtype = self._bound.dtype if self._bound is not None else torch.float64
        device = self._bound.device if self._bound is not None else "cpu"
        return tuple(x[None, None] for x in self.grid.mesh(dtype, device))


class _ValueProbe(Tensor):
    """A tensor that records whether any torch function touched it (see ``SpectralDerivatives.probe``)."""

    touched = False

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.touched = True
        return super().__torch_function__(func, types, args, kwargs or {})


def derivative_symbol(
    grid: Grid, alpha: tuple[int, ...], inverse_laplacian: bool = False, dealias: bool = False
) -> Tensor:
    """The complex128 Fourier symbol of ``D^alpha`` (times ``lap^{-1}`` if asked) in ``rfftn`` layout.

    Returns:
        a tensor of shape ``grid.spectral_shape``.
    """
    k_all = grid.wavenumbers()
    k_odd = grid.wavenumbers(zero_nyquist=True)
    sym = torch.ones(grid.spectral_shape, dtype=torch.complex128)
    for a, k, ko in zip(alpha, k_all, k_odd):
        if a:
            sym = sym * (1j * (ko if a % 2 else k)) ** a
    if inverse_laplacian:
        k2 = sum(k**2 for k in k_all)
        inv = torch.where(k2 > 0, -1.0 / torch.where(k2 > 0, k2, torch.ones_like(k2)), torch.zeros_like(k2))
        sym = sym * inv
    if dealias:
        sym = sym * grid.dealias_mask()
    return sym


def linear_symbol(grid: Grid, terms, channels: int) -> Tensor:
    """The matrix symbol ``L[o, i](k) = sum c (i k)^alpha`` of a list of :class:`LinearTerm`.

    Returns:
        complex128 tensor of shape ``(C, C, *grid.spectral_shape)``; ``L[o, i]`` maps channel ``i`` into the
        time derivative of channel ``o``.
    """
    out = torch.zeros((channels, channels, *grid.spectral_shape), dtype=torch.complex128)
    for term in terms:
        out[term.out_channel, term.in_channel] += term.coefficient * derivative_symbol(grid, term.alpha)
    return out


__all__ = ["AbstractDerivatives", "NonLocalTermError", "SpectralDerivatives", "derivative_symbol", "linear_symbol"]
