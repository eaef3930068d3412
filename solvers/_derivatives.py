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
from torch.overrides import TorchFunctionMode

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

    The solver evaluates an equation's terms on :meth:`field` of its stage spectrum: derivatives of that field
    then cost one inverse FFT each instead of a forward and an inverse one.
    """

    def __init__(self, grid: Grid, dealias: bool = False) -> None:
        self.grid = grid
        self.dealias = dealias
        self._symbols: dict[tuple, Tensor] = {}
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

    def field(self, u_hat: Tensor, values: bool = True, masked: bool = False) -> SpectralField:
        """The derivative provider of the one field whose spectrum is ``u_hat`` (``(B, C, *grid.spectral_shape)``):
        see :class:`SpectralField`. ``values=False`` gives an empty handle (for terms that only differentiate the
        field: one inverse FFT saved); ``masked=True`` says ``u_hat`` already carries the 2/3 mask."""
        return SpectralField(self, u_hat, values, masked)

    def probe(self, term: Callable[[Tensor, AbstractDerivatives], Tensor | None], channels: int) -> tuple[bool, bool]:
        """Call ``term(u, D)`` once on a zero field and report ``(returns None, reads u's values)``.

        "Reads values" means any torch operation on ``u`` other than differentiating it through ``D``; a term that
        does not (vorticity convection) is later given an empty handle instead of ``u``. What the call does is
        recorded by a :class:`~torch.overrides.TorchFunctionMode` made for this one probe.
        """
        field = self.field(torch.zeros(1, channels, *self.grid.spectral_shape, dtype=torch.complex128))
        with _Reads(field.values) as reads:
            out = term(field.values, field)
        return out is None, reads.seen

    def _apply(self, u: Tensor, alpha: tuple[int, ...], inverse_laplacian: bool) -> Tensor:
        if tuple(u.shape[-self.grid.ndim :]) != self.grid.shape:
            raise ValueError(f"expected a field (..., {', '.join(map(str, self.grid.shape))}), got {tuple(u.shape)}")
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
        return tuple(x[None, None] for x in self.grid.mesh(torch.float64, "cpu"))


class SpectralField(AbstractDerivatives):
    """The derivatives of one field given by its spectrum: what the solver passes to an equation's terms at a stage.

    ``values`` is the field in physical space (dealiased if ``provider`` is), or an empty tensor where the terms
    only differentiate it. ``D(values, alpha)`` costs one inverse FFT of the spectrum, computed once per ``alpha``
    for this one evaluation (the memo lives here and goes with the object); any other tensor is differentiated by
    ``provider``.
    """

    def __init__(self, provider: SpectralDerivatives, u_hat: Tensor, values: bool = True, masked: bool = False):
        self.provider, self.spectrum = provider, u_hat
        self.memo: dict[tuple, Tensor] = {}
        grid = provider.grid
        if not values:
            self.values = u_hat.real.new_empty(0)
        else:
            if provider.dealias and not masked:
                u_hat = u_hat * provider.symbol((0,) * grid.ndim, False, u_hat.dtype, u_hat.device)
            self.values = torch.fft.irfftn(u_hat, s=grid.shape, dim=tuple(range(-grid.ndim, 0)))

    def _apply(self, u: Tensor, alpha: tuple[int, ...], inverse_laplacian: bool) -> Tensor:
        if u is not self.values:
            return (self.provider.inverse_laplacian if inverse_laplacian else self.provider)(u, alpha)
        key = (alpha, inverse_laplacian)
        if key not in self.memo:
            grid, spectrum = self.provider.grid, self.spectrum
            sym = self.provider.symbol(alpha, inverse_laplacian, spectrum.dtype, spectrum.device)
            self.memo[key] = torch.fft.irfftn(spectrum * sym, s=grid.shape, dim=tuple(range(-grid.ndim, 0)))
        return self.memo[key]

    def __call__(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        return self._apply(u, tuple(alpha), False)

    def inverse_laplacian(self, u: Tensor, alpha: tuple[int, ...]) -> Tensor:
        return self._apply(u, tuple(alpha), True)

    @property
    def ndim(self) -> int:
        return self.provider.grid.ndim

    def coords(self) -> tuple[Tensor, ...]:
        return tuple(x[None, None] for x in self.provider.grid.mesh(self.values.dtype, self.values.device))


class _Reads(TorchFunctionMode):
    """Records whether any torch function receives ``watched`` (see ``SpectralDerivatives.probe``)."""

    def __init__(self, watched: Tensor) -> None:
        super().__init__()
        self.watched, self.seen = watched, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.seen = self.seen or any(x is self.watched for x in _leaves((args, kwargs)))
        return func(*args, **kwargs)


def _leaves(tree) -> list:
    if isinstance(tree, (list, tuple)):
        return [leaf for x in tree for leaf in _leaves(x)]
    if isinstance(tree, dict):
        return _leaves(list(tree.values()))
    return [tree]


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


__all__ = [
    "AbstractDerivatives",
    "NonLocalTermError",
    "SpectralDerivatives",
    "SpectralField",
    "derivative_symbol",
    "linear_symbol",
]
