"""An equation's nonlinear part ``N(u) + f`` in Fourier space, as the ETDRK stepper evaluates it at each stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._derivatives import AbstractDerivatives, SpectralDerivatives, derivative_symbol
from ._equations import AbstractEquation
from ._grid import Grid


@dataclass(frozen=True)
class SpectralFlux:
    """The flux terms ``c D^alpha flux(u)`` of one channel that share a flux function: one forward FFT of the flux,
    times the summed symbol ``sum c (ik)^alpha`` (complex128, ``grid.spectral_shape``)."""

    channel: int
    function: Callable[[Tensor, AbstractDerivatives], Tensor]
    symbol: Tensor


class SpectralTerms:
    """``N(u) + f`` of ``equation`` on ``grid`` in Fourier space, found out once by calling the equation's hooks on a
    zero field (:meth:`SpectralDerivatives.probe`).

    Attributes:
        fluxes: the equation's :class:`~pdeforge.solvers.FluxTerm` grouped by (channel, flux function).
        source: ``rfftn(f) * mask`` ``(1, C, *spectral_shape)`` (complex128), or ``None``.
        has_term: whether ``nonlinear_term`` returns a field (not ``None``).
        reads_values: whether a term reads ``u``'s values (otherwise it only differentiates ``u``).
        linear: no nonlinear part (``N = f`` or nothing).
        single_flux: ``N`` is one flux of the values of one channel, nothing else (Burgers, KdV, KS): its symbol is
            then folded into the stepper's coefficients and a stage's ``N`` is the transformed flux alone.
    """

    def __init__(self, equation: AbstractEquation, grid: Grid) -> None:
        self.equation, self.grid = equation, grid
        self.derivatives = SpectralDerivatives(grid, dealias=True)
        self.dims = tuple(range(-grid.ndim, 0))
        channels = len(equation.channels)
        terms = equation.flux_terms(grid.ndim)
        grouped: dict[tuple, Tensor] = {}
        for t in terms:
            key = (t.out_channel, t.flux)
            grouped[key] = grouped.get(key, 0) + t.coefficient * derivative_symbol(grid, t.alpha)
        self.fluxes = tuple(SpectralFlux(c, f, symbol) for (c, f), symbol in grouped.items())
        no_term, term_reads = self.derivatives.probe(equation.nonlinear_term, channels)
        _, flux_reads = self.derivatives.probe(lambda u, D: [t.flux(u, D) for t in terms], channels)
        f = equation.source_term(tuple(x[None, None] for x in grid.mesh()))
        self.source = None
        if f is not None:
            f = torch.broadcast_to(f, (1, channels, *grid.shape))
            self.source = torch.fft.rfftn(f, dim=self.dims) * grid.dealias_mask()
        self.has_term = not no_term
        self.reads_values = term_reads or (flux_reads and bool(terms))
        self.linear = no_term and not self.fluxes
        self.single_flux = (
            self.reads_values and channels == 1 and no_term and len(self.fluxes) == 1 and self.source is None
        )

    def __call__(self, u_hat: Tensor, masked: bool, symbols: tuple[Tensor, ...], source: Tensor | None) -> Tensor:
        """``N(U) + f`` for the stage spectrum ``u_hat`` ``(B, C, *spectral_shape)``, without the 2/3 mask of the
        product (the stepper folds it into its coefficients, and for a single flux its symbol too).

        Arguments:
            masked: ``u_hat`` already carries the 2/3 mask (the stepper's stage propagators do).
            symbols: the fluxes' symbols cast to ``u_hat``'s dtype and device; ``source``: the same for ``f``.
        """
        field = self.derivatives.field(u_hat, values=self.reads_values, masked=masked)
        u = field.values
        if self.single_flux:
            return torch.fft.rfftn(self.fluxes[0].function(u, field), dim=self.dims)
        n = self.equation.nonlinear_term(u, field) if self.has_term else None
        parts = [] if n is None else [torch.fft.rfftn(n, dim=self.dims)]
        if self.fluxes:
            per: list[Tensor | None] = [None] * u_hat.shape[1]
            for flux, symbol in zip(self.fluxes, symbols):
                f_hat = torch.fft.rfftn(flux.function(u, field), dim=self.dims)
                c = flux.channel
                per[c] = symbol * f_hat if per[c] is None else torch.addcmul(per[c], symbol, f_hat)
            if len(per) == 1:
                parts.append(per[0])
            else:
                parts.append(torch.cat([torch.zeros_like(u_hat[:, :1]) if p is None else p for p in per], dim=1))
        n_hat = source
        for p in parts:
            n_hat = p if n_hat is None else n_hat + p
        return n_hat
