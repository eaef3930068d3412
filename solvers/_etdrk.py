"""Exponential time differencing Runge-Kutta (ETDRK) steppers in Fourier space.

For ``u_t = L u + N(u)`` with the (matrix) Fourier symbol ``L`` and ``z = h L``, an exponential RK method is

    U_i = exp(c_i z) u_n + h sum_{j<i} a_ij(z) N(U_j),      u_{n+1} = exp(z) u_n + h sum_i b_i(z) N(U_i),

with ``a_ij, b_i`` linear combinations of ``phi_k(c z)``, ``phi_0 = exp``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``.
The ``phi_k`` are evaluated with the contour integral of Kassam & Trefethen (SIAM J. Sci. Comput. 26, 2005),
the mean of ``phi_k(z + e^{i theta_j})`` over a circle around each ``z``, in complex128, and the complex values
are kept: for advection and dispersion ``z`` is imaginary and dropping the imaginary part (as exponax does)
makes ETDRK2-4 first order. Coupled channels (the wave equation) use matrix functions per wavenumber.

Methods: ETDRK0 (exact linear propagator, nonlinear term ignored), ETDRK1 (exponential Euler), ETDRK2 and
ETDRK3 (Cox & Matthews, J. Comput. Phys. 176, 2002), ETDRK4 (Krogstad, J. Comput. Phys. 203, 2005: the same four
stages and cost as Cox-Matthews' ETDRK4, kept as ``ETDRK4_COX_MATTHEWS``, with a smaller error constant:
periodic Cole-Hopf Burgers at dt = 0.0125, max error 9.1e-9 against 1.2e-8).

The nonlinear term costs the FFTs; everything else is folded into the coefficients once: the 2/3 mask of the
products (into ``a_ij, b_i``), the mask of the factors (into the stage propagators ``exp(c_i z)``), and, for a
single conservation-form flux ``c D^alpha f(u)``, its symbol ``c (ik)^alpha``. Stages that share a weight ``b_i``
are summed before it is applied.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import _etdrk_kernel
from ._derivatives import SpectralDerivatives, derivative_symbol, linear_symbol
from ._equations import AbstractEquation, square
from ._grid import Grid


def _square_inplace(u: Tensor, D=None) -> Tensor:
    """``u^2`` for one channel, overwriting ``u`` (a fresh inverse transform)."""
    return u.square_()


_REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64, torch.complex32: torch.float16}

# One coefficient: a sum of ``weight * phi_k(c z)`` given as (weight, k, c) triples.
Coefficient = tuple[tuple[float, int, float], ...]


@dataclass(frozen=True)
class ETDRKTableau:
    """An exponential Runge-Kutta tableau (Hochbruck & Ostermann, Acta Numerica 2010, notation).

    Attributes:
        name: e.g. ``"ETDRK4"``.
        order: classical order of convergence in time.
        c: stage nodes ``c_1 = 0, c_2, ...``.
        a: ``a[i]`` holds the coefficients ``a_ij`` of stage ``i`` on the earlier stages ``j < i``.
        b: weights ``b_i`` of the update.
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[Coefficient, ...], ...]
    b: tuple[Coefficient, ...]


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


def _canonical(*coefficients: Coefficient) -> Coefficient:
    """The sum of ``coefficients`` with equal ``(k, c)`` merged, zeros dropped, in a fixed order."""
    total: dict[tuple[int, float], float] = {}
    for co in coefficients:
        for w, k, c in co:
            total[(k, c)] = total.get((k, c), 0.0) + w
    return tuple((w, k, c) for (k, c), w in sorted(total.items()) if w != 0.0)


def _difference_stages(tableau: ETDRKTableau) -> tuple[tuple[bool, ...], list[list[Coefficient]], list[Coefficient]]:
    """Stages that are their predecessor plus one product: ``U_i = U_{i-1} + a_{i,i-1} (N_{i-1} - N_{i-2})``.

    That holds where stage ``i`` has the node of stage ``i - 1``, the same coefficients on ``N_0 .. N_{i-3}``, and
    ``a_{i,i-2} + a_{i,i-1} = a_{i-1,i-2}`` (both ETDRK4s: their stage 3 is stage 2 plus ``phi_2(z/2)`` or
    ``phi_1(z/2)/2`` times ``N_2 - N_1``). Such a stage costs one subtraction and one multiply-add instead of two
    multiply-adds. The difference takes the place of ``N_{i-1}``, so every later row and the weights ``b`` that
    read ``N_{i-1}`` with ``w`` read ``N_{i-2}`` with ``w`` more. Returns (which stages are differences, the rows
    ``a`` and weights ``b`` on the stored values)."""
    rows = [[tuple(co) for co in row] for row in tableau.a]
    b = [tuple(co) for co in tableau.b]
    diff = [False] * len(rows)
    for i in range(2, len(rows)):
        row, prev = rows[i], rows[i - 1]
        if (
            tableau.c[i] != tableau.c[i - 1]
            or diff[i - 1]
            or not _canonical(row[i - 1])
            or not any(_canonical(co) for co in prev)
        ):  # U_{i-1} must be a value of its own to add to
            continue
        if all(_canonical(row[j]) == _canonical(prev[j]) for j in range(i - 2)) and _canonical(
            row[i - 2], row[i - 1]
        ) == _canonical(prev[i - 2]):
            diff[i] = True
            for later in (*rows[i + 1 :], b):
                later[i - 2] = _canonical(later[i - 2], later[i - 1])
    return tuple(diff), rows, b


def phi_functions(z: Tensor, max_k: int, diagonal: bool, n_contour: int = 64) -> list[Tensor]:
    """``[phi_0(z), ..., phi_max_k(z)]`` by the Kassam-Trefethen contour mean, complex128.

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
        if tableau is None:
            if order not in TABLEAUS:
                raise ValueError(f"order must be one of {sorted(TABLEAUS)}, got {order!r}")
            tableau = TABLEAUS[order]
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt!r}")
        equation.check_ndim(grid.ndim)
        self.equation, self.grid, self.dt, self.order = equation, grid, float(dt), tableau.order
        self.tableau = tableau
        self.channels = len(equation.channels)
        self.derivatives = SpectralDerivatives(grid, dealias=True)
        self._dims = tuple(range(-grid.ndim, 0))

        symbol = linear_symbol(grid, equation.linear_terms(grid.ndim), self.channels)  # (C, C, *K)
        off = symbol.clone()
        off[range(self.channels), range(self.channels)] = 0
        self.diagonal = bool((off == 0).all())
        z = dt * (symbol.diagonal(0, 0, 1) if self.diagonal else symbol.movedim((0, 1), (-2, -1)))

        f = equation.source_term(tuple(x[None, None] for x in grid.mesh()))
        self._source_hat = None
        if f is not None:
            f = torch.broadcast_to(f, (1, self.channels, *grid.shape))
            self._source_hat = torch.fft.rfftn(f, dim=self._dims) * grid.dealias_mask()
        no_term, term_reads = self.derivatives.probe(equation.nonlinear_term, self.channels)
        # flux terms c D^alpha flux(u, D): the symbol c (ik)^alpha applied in Fourier space; terms sharing a flux
        # function share its forward FFT (their symbols are summed)
        flux_terms = equation.flux_terms(grid.ndim)
        _, flux_reads = self.derivatives.probe(lambda u, D: [t.flux(u, D) for t in flux_terms], self.channels)
        grouped: dict[tuple, Tensor] = {}
        for t in flux_terms:
            key = (t.out_channel, t.flux)
            grouped[key] = grouped.get(key, 0) + t.coefficient * derivative_symbol(grid, t.alpha)
        self._fluxes = [(c, f, sym) for (c, f), sym in grouped.items()]
        self._reads_values = term_reads or (flux_reads and bool(flux_terms))
        self.linear = no_term and not self._fluxes
        mask = grid.dealias_mask().to(torch.complex128)
        # the stages' physical values are dealiased: fold the factor mask into the stage propagators
        self._premask = self.diagonal and self._reads_values
        # one flux of the values and nothing else (Burgers, KdV, KS): its symbol goes into a_ij and b_i
        self._single_flux = (
            self._premask and self.channels == 1 and no_term and len(self._fluxes) == 1 and self._source_hat is None
        )
        n_symbol = mask * (self._fluxes[0][2] if self._single_flux else 1.0)  # multiplies every N(U_j)
        self._lean = self._single_flux and bool(tableau.c)  # use _step_single_flux (False: the generic loop)
        if self._single_flux:  # partials, not closures: the stepper stays picklable
            one_d = grid.ndim == 1
            self._lean_ops = (
                partial(torch.fft.irfft, n=grid.shape[0])
                if one_d
                else partial(torch.fft.irfftn, s=grid.shape, dim=self._dims),
                torch.fft.rfft if one_d else partial(torch.fft.rfftn, dim=self._dims),
                None if self._fluxes[0][1] is square else self._fluxes[0][1],
            )

        # every (k, c) the tableau needs, then each coefficient times h
        needed = {(k, c) for coefs in (*tableau.a, tableau.b) for co in coefs for (_, k, c) in co}
        phis: dict[tuple[int, float], Tensor] = {}
        for c in sorted({c for _, c in needed} | set(tableau.c) | {1.0}):
            values = phi_functions(c * z, max((k for k, cc in needed if cc == c), default=0), self.diagonal, n_contour)
            phis.update({(k, c): v for k, v in enumerate(values)})

        def combine(co: Coefficient) -> Tensor | None:
            if not co:
                return None
            return self._layout(dt * sum(w * phis[(k, c)] for w, k, c in co)) * n_symbol

        # stage propagators exp(c_i z) (masked if premasking), one per distinct node; slot -1: the stage is u_n itself
        nodes = [c for c in dict.fromkeys(tableau.c) if self._premask or c != 0]
        slots = tuple(nodes.index(c) if c in nodes else -1 for c in tableau.c)
        propagators = [self._layout(phis[(0, c)]) * (mask if self._premask else 1.0) for c in nodes]

        # the lean step (_step_single_flux): per stage its propagator slot, the stored values it reads, whether it is
        # its predecessor plus a difference, whether it reads its slot's product last (may write into it) and whether
        # its node is 0; the node c = 1 and the largest |exp(z)| above N/3 (how much of the input's unresolved modes
        # survives one step) for its flush
        diff, lean_rows, lean_b = _difference_stages(tableau)
        users = [i for i in range(len(slots)) if not diff[i]]
        self._lean_program = tuple(
            (
                slot,
                tuple(j for j, co in enumerate(row) if _canonical(co)),
                d,
                not d and all(slots[later] != slot for later in users if later > i),
                tableau.c[i] == 0,
            )
            for i, (slot, row, d) in enumerate(zip(slots, lean_rows, diff))
        )
        self._lean_nodes = tuple(nodes)
        self._lean_one = nodes.index(1.0) if 1.0 in nodes else -1
        high = grid.dealias_mask().logical_not()
        self._high_mode_survival = (
            float(self._layout(phis[(0, 1.0)])[:, high].abs().max())
            if self._single_flux and bool(high.any())
            else math.inf
        )
        self._masked_out: tuple | None = None  # (weakref, version) of the last output known to be masked

        def grouped(weights) -> list[tuple[Tensor, tuple[int, ...]]]:  # stages sharing a weight are summed first
            groups: dict[Coefficient, list[int]] = {}
            for i, co in enumerate(weights):
                if _canonical(co):
                    groups.setdefault(_canonical(co), []).append(i)
            return [(combine(co), tuple(idx)) for co, idx in groups.items()]

        self._coefficients64 = {
            "E": self._layout(phis[(0, 1.0)]),
            "E_c": propagators,
            "slots": slots,
            "a": [[combine(co) for co in row] for row in tableau.a],
            "b": grouped(tableau.b),
            "lean_a": [
                [combine(co) if not d or j == i - 1 else None for j, co in enumerate(row)]
                for i, (row, d) in enumerate(zip(lean_rows, diff))
            ],
            "lean_b": grouped(lean_b),
            "b_sum": combine(tuple(t for co in tableau.b for t in co)),
            "source": self._source_hat,
            "fluxes": [(c, f, sym) for c, f, sym in self._fluxes],
            "mask": mask,
        }
        # the lean step of both ETDRK4s with the flux u^2 is also written out in _etdrk_kernel, which rollouts on the
        # CPU call once per saved state
        structure = [(slot, None if d else reads, d) for slot, reads, d, _, _ in self._lean_program]
        self._kernel = (
            self._lean
            and self._lean_ops[2] is None
            and self._lean_nodes == (0.0, 0.5, 1.0)
            and structure == [(0, (), False), (1, (0,), False), (1, None, True), (2, (0, 2), False)]
            and [idx for _, idx in self._coefficients64["lean_b"]] == [(0,), (1, 2), (3,)]
        )
        self._cache: dict[tuple, dict] = {}
        self._last: tuple | None = None  # (dtype, device, coefficients) of the previous call

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_masked_out": None}  # a weak reference does not pickle

    def _layout(self, x: Tensor) -> Tensor:
        # diagonal: (*K, C) -> (C, *K); matrix: (*K, C, C) -> (C, C, *K)
        return x.movedim(-1, 0) if self.diagonal else x.movedim((-2, -1), (0, 1))

    def coefficients(self, dtype: torch.dtype, device: torch.device) -> dict:
        """The coefficients cast to the complex dtype matching real ``dtype`` on ``device`` (cached)."""
        last = self._last
        if last is not None and last[0] is dtype and last[1] == device:
            return last[2]
        key = (dtype, torch.device(device))
        if key not in self._cache:
            cdtype = torch.complex64 if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.complex128

            def cast(x):
                if x is None or callable(x) or isinstance(x, int):
                    return x
                if isinstance(x, (tuple, list)):
                    return type(x)(cast(y) for y in x)
                return x.to(device=device, dtype=cdtype).contiguous()

            self._cache[key] = {name: cast(v) for name, v in self._coefficients64.items()}
            # the lean step drops the input's modes above N/3 when one step shrinks them below the dtype's resolution
            self._cache[key]["flush"] = self._high_mode_survival <= torch.finfo(dtype).eps
        self._last = (dtype, device, self._cache[key])
        return self._cache[key]

    def _apply(self, coef: Tensor, v_hat: Tensor) -> Tensor:
        if self.diagonal:
            return coef * v_hat
        return torch.einsum("oi...,bi...->bo...", coef, v_hat)

    def _accumulate(self, acc: Tensor, coef: Tensor, v_hat: Tensor) -> Tensor:
        """``acc + coef v_hat`` (one fused kernel in the diagonal case: the 1D jobs are launch-bound)."""
        if self.diagonal:
            return torch.addcmul(acc, coef, v_hat)
        return acc + torch.einsum("oi...,bi...->bo...", coef, v_hat)

    def _nonlinear_hat(self, u_hat: Tensor, co: dict) -> Tensor | None:
        """``N(u)`` in Fourier space without the 2/3 mask, which is folded into ``a, b`` (for a single flux, its
        symbol too: then this is just the transformed flux)."""
        if self._single_flux:  # Burgers, KdV, KS: these 1D jobs are bound by the number of operations launched
            f = self._fluxes[0][1](self.derivatives.bind(u_hat, masked=True), self.derivatives)
            self.derivatives.release()
            return torch.fft.rfftn(f, dim=self._dims)
        n_hat = co["source"]
        if self.linear:
            return n_hat
        u = self.derivatives.bind(u_hat, values=self._reads_values, masked=self._premask)
        n = self.equation.nonlinear_term(u, self.derivatives)
        parts = [] if n is None else [torch.fft.rfftn(n, dim=self._dims)]
        if self._fluxes:
            per: list[Tensor | None] = [None] * self.channels
            for channel, flux, sym in co["fluxes"]:
                f_hat = torch.fft.rfftn(flux(u, self.derivatives), dim=self._dims)
                per[channel] = sym * f_hat if per[channel] is None else torch.addcmul(per[channel], sym, f_hat)
            if self.channels == 1:
                parts.append(per[0])
            else:
                parts.append(torch.cat([torch.zeros_like(u_hat[:, :1]) if p is None else p for p in per], dim=1))
        self.derivatives.release()
        for p in parts:
            n_hat = p if n_hat is None else n_hat + p
        return n_hat

    def _step_single_flux(self, u_hat: Tensor, co: dict, masked: bool | None = None) -> Tensor:
        """``step_spectral`` for one flux of the values (Burgers, KdV, KS): the generic loop's stages with less
        Python between them, in-place accumulation where autograd allows, and a stage that is its predecessor plus
        one product computed so (``_difference_stages``: stage 3 of ETDRK4, one multiply-add fewer per step).

        Where one step shrinks the modes above N/3 below the dtype's resolution (``co["flush"]``: KS at dt = 0.1,
        where ``|exp(z)| < 1e-33`` there) the input's high modes are dropped: the stages read masked values anyway,
        and the output's high modes would be ``exp(z) u_hat``, under one rounding unit of ``|u_hat|``. The output
        is then exactly masked, and a rollout passing it back skips the mask: two of the four propagator products
        go (5 % of a KS step at N = 256, B = 50). ``masked``: whether ``u_hat`` is known to be such an output
        (:func:`rollout` knows: it passes back its own state); ``None`` asks the weak reference to the last output,
        which also checks that it was not changed in place since. ``_lean = False`` selects the generic loop."""
        physical, spectral, flux = self._lean_ops
        inplace = not (u_hat.requires_grad and torch.is_grad_enabled())
        if flux is None:  # the flux is u^2: square the fresh inverse transform in place
            flux = _square_inplace if inplace else square
        D = self.derivatives  # unbound: a flux that differentiates through D pays one forward FFT there
        flush = co["flush"]
        if flush:
            if masked is None:  # an inference tensor has no version counter: it is masked again
                known = self._masked_out
                masked = (
                    known is not None
                    and known[0]() is u_hat
                    and not u_hat.is_inference()
                    and u_hat._version == known[1]
                )
            source = u_hat if masked else co["mask"] * u_hat
        else:
            source = u_hat
        E_c, lean_a = co["E_c"], co["lean_a"]
        one = self._lean_one if flush else -1  # its product exp(z) m is also where the output starts
        bases: list[Tensor | None] = [None] * len(E_c)  # exp(c z) u_hat, shared by the stages of one node
        stages: list[Tensor] = []  # N(U_j), or N(U_j) - N(U_{j-1}) where stage j + 1 is a difference stage
        stage = source
        for i, (slot, reads, diff, last, zero) in enumerate(self._lean_program):
            row = lean_a[i]
            if diff:  # U_i = U_{i-1} + a_{i,i-1} (N_{i-1} - N_{i-2}); the difference takes N_{i-1}'s place
                d = stages[i - 1] = stages[i - 1].sub_(stages[i - 2]) if inplace else stages[i - 1] - stages[i - 2]
                stage = stage.addcmul_(row[i - 1], d) if inplace else torch.addcmul(stage, row[i - 1], d)
            else:
                stage = bases[slot]
                if stage is None:
                    stage = bases[slot] = source if flush and zero else E_c[slot] * source
                if reads:  # write into the product only where no later stage (nor the output) starts from it
                    j = reads[0]
                    if inplace and last and slot != one and stage is not source:
                        stage = stage.addcmul_(row[j], stages[j])
                    else:
                        stage = torch.addcmul(stage, row[j], stages[j])
                    for j in reads[1:]:
                        stage = (
                            stage.addcmul_(row[j], stages[j]) if inplace else torch.addcmul(stage, row[j], stages[j])
                        )
            stages.append(spectral(flux(physical(stage), D)))
        out = bases[one] if one >= 0 else None  # exp(z) m, read by no more stages
        if out is None:
            out = co["E"] * source
        for b, idx in co["lean_b"]:
            n = stages[idx[0]]
            for j in idx[1:]:
                n = n.add_(stages[j]) if inplace else n + stages[j]
            out = out.addcmul_(b, n) if inplace else torch.addcmul(out, b, n)
        if flush and not out.is_inference():
            self._masked_out = (weakref.ref(out), out._version)
        return out

    def step_spectral(self, u_hat: Tensor) -> Tensor:
        """One step on the spectrum ``u_hat = rfftn(u)``, ``(B, C, *grid.spectral_shape)``."""
        return self._step(u_hat)

    def _step(self, u_hat: Tensor, own: bool = False) -> Tensor:
        """``step_spectral``; ``own``: ``u_hat`` is this stepper's previous output, unchanged (from :func:`rollout`)."""
        co = self.coefficients(_REAL_OF[u_hat.dtype], u_hat.device)
        if self._lean:
            return self._step_single_flux(u_hat, co, True if own else None)
        out = self._apply(co["E"], u_hat)
        if not self.tableau.c or (self.linear and co["source"] is None):
            return out
        if self.linear:  # N is the constant source: every stage sees the same N
            return self._accumulate(out, co["b_sum"], co["source"])
        stages: list[Tensor] = []
        propagated: list[Tensor | None] = [None] * len(co["E_c"])  # exp(c z) u_hat, shared by equal nodes
        for slot, row in zip(co["slots"], co["a"]):
            if slot < 0:
                stage = u_hat
            else:
                stage = propagated[slot]
                if stage is None:
                    stage = propagated[slot] = self._apply(co["E_c"][slot], u_hat)
            for a_ij, n_j in zip(row, stages):
                if a_ij is not None:
                    stage = self._accumulate(stage, a_ij, n_j)
            stages.append(self._nonlinear_hat(stage, co))
        for b, idx in co["b"]:
            n = stages[idx[0]]
            for j in idx[1:]:
                n = n + stages[j]
            out = self._accumulate(out, b, n)
        return out

    def _advance(self, u_hat: Tensor, n_steps: int, own: bool = False) -> Tensor:
        """``n_steps`` steps without autograd (``rollout``'s loop between two saves); ``own`` as in ``_step``.
        On the CPU, where :mod:`._etdrk_kernel` applies, in one call of it; elsewhere step by step."""
        if not (self._kernel and u_hat.device.type == "cpu" and n_steps > 0):
            for i in range(n_steps):
                u_hat = self._step(u_hat, own=own or i > 0)
            return u_hat
        co = self.coefficients(_REAL_OF[u_hat.dtype], u_hat.device)
        if co["flush"] and not own:  # the kernel takes a masked input where it drops the high modes
            u_hat = co["mask"] * u_hat
        (b1, _), (b23, _), (b4, _) = co["lean_b"]
        a = co["lean_a"]
        return _etdrk_kernel.kernel()(
            u_hat,
            co["mask"],
            co["E_c"][1],
            co["E_c"][2],
            co["E"],
            a[1][0],
            a[2][1],
            a[3][0],
            a[3][2],
            b1,
            b23,
            b4,
            n_steps,
            co["flush"],
            list(self.grid.shape),
            list(self._dims),
        )

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
        cuda_graph: replay one recorded step as a CUDA graph (one launch instead of a few dozen kernels and the
            Python between them): an ETDRK stepper on a CUDA device, no gradient to ``u0``, 3 steps or more.
            ``None`` (default): wherever that applies; ``False``: never. The graph runs the eager step's kernels,
            so the numbers are the same.

    On the CPU, without a gradient to ``u0``, ETDRK4 for a flux ``u^2`` (Burgers, KdV, KS) runs the steps between
    two saves in one call of the step written out in :mod:`._etdrk_kernel` (the same bytes as step by step).

    Returns:
        ``(B, 1 + n_steps // save_every, C, *space)``, ``u0`` first.
    """
    if n_steps < 0 or save_every < 1:
        raise ValueError(f"need n_steps >= 0 and save_every >= 1, got {n_steps} and {save_every}")
    spectral = isinstance(stepper, ETDRK)
    if spectral:
        stepper.check_input(u0)
    # written in place: no list of frames and no second copy of the trajectory at the end
    out = u0.new_empty((u0.shape[0], 1 + n_steps // save_every, *u0.shape[1:]))
    out[:, 0] = u0
    no_grad = spectral and not (torch.is_grad_enabled() and u0.requires_grad)
    graphed = cuda_graph is not False and no_grad and _graphable(u0) and n_steps >= 3
    graph = None
    # an ETDRK stepper has nothing to learn: without a gradient to u0 its states are inference tensors (less
    # bookkeeping per operation: ~4 % of a KS step at N = 256, B = 50), kept inside; `out` is an ordinary tensor
    with torch.inference_mode(no_grad):
        state = stepper.to_spectral(u0) if spectral else u0
        bar = tqdm(total=n_steps, disable=not progress, desc="rollout")
        done = 0
        while done < n_steps:  # to the next save (or through the steps after the last one)
            todo = k = min(save_every, n_steps - done)
            if graphed and graph is None:  # the first step masks u0's spectrum; a graph of the next repeats the rest
                state = stepper._step(state)
                graph, state = _record_step(stepper, state)
                graphed, k = graph is not None, k - 1
            if graph is not None:
                for _ in range(k):
                    graph.replay()  # advances `state`, the graph's own buffer, in place
            elif not spectral:
                for _ in range(k):
                    state = stepper(state)
            elif no_grad:
                state = stepper._advance(state, k, own=done + todo - k > 0)
            else:
                for i in range(k):
                    state = stepper._step(state, own=done + todo - k + i > 0)
            done += todo
            bar.update(todo)
            if done % save_every == 0:
                out[:, done // save_every] = stepper.to_physical(state) if spectral else state
        bar.close()
    return out


def _graphable(u0: Tensor) -> bool:
    """Whether ``rollout`` replays its steps as a CUDA graph (a function of its own so the CPU tests can walk the
    graph branch with a stand-in for :func:`_record_step`)."""
    return u0.is_cuda


def _record_step(stepper: ETDRK, state: Tensor) -> tuple[torch.cuda.CUDAGraph | None, Tensor]:
    """A CUDA graph of ``buffer <- step(buffer)`` on a copy of ``state`` (the stepper's own output), or
    ``(None, state)`` with a warning where recording fails (the rollout then goes on eagerly)."""
    buffer = state.clone()
    device = state.device
    try:
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture: FFT plans, cast coefficients, allocator
            for _ in range(2):
                stepper._step(buffer.clone(), own=True)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            buffer.copy_(stepper._step(buffer, own=True))
    except RuntimeError as err:  # e.g. a driver without graph support: correct, only slower
        warnings.warn(
            f"rollout: recording a CUDA graph of the step failed ({str(err).splitlines()[0]}); "
            "stepping eagerly (pass cuda_graph=False to skip the attempt)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None, state
    return graph, buffer
