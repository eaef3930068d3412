"""The PDE catalogue: one small class per equation, used by the spectral solver and the PINN residual alike.

Every equation is written ``u_t = sum_terms c D^alpha u[in] + N(u, D) + f(x)``:

* the linear part is data, a tuple of :class:`LinearTerm` (coefficient, derivative multi-index, channel
  coupling); the spectral solver turns it into the Fourier symbol, a PINN into autograd derivatives;
* the nonlinear term is conservation-form data, a tuple of :class:`FluxTerm` (``c D^alpha flux(u, D)``), plus
  ``nonlinear_term(u, D)`` written once against a derivative provider
  (:class:`~pdeforge.solvers.AbstractDerivatives`): FFTs with 2/3 dealiasing in the solver, autograd in a PINN;
* ``source_term(coords)`` is a time-independent forcing ``f(x)`` (or ``None``).

``equation.residual(u_t, u, D)`` returns ``u_t - rhs`` in physical space, channels on axis 1.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ._derivatives import AbstractDerivatives


@dataclass(frozen=True)
class LinearTerm:
    """``coefficient * D^alpha u[in_channel]`` added to the time derivative of ``u[out_channel]``."""

    coefficient: float
    alpha: tuple[int, ...]
    out_channel: int = 0
    in_channel: int = 0


@dataclass(frozen=True)
class FluxTerm:
    """``coefficient * D^alpha flux(u, D)`` added to the time derivative of ``u[out_channel]``: a nonlinear term in
    conservation form, e.g. Burgers' ``-u u_x = -1/2 (u^2)_x`` is ``FluxTerm(-0.5, (1,), square)``.

    ``flux(u, D)`` maps the state ``(B, C, *space)`` (or ``(N, C)`` at points) to one channel; it may take
    derivatives of ``u`` through ``D`` (the 2D vorticity form needs the velocity). The spectral solver evaluates the
    terms with one forward FFT per distinct flux function per stage (terms that share a function share the FFT; the
    derivative is a symbol in Fourier space); a PINN differentiates ``flux(u, D)`` by autograd. Conservation form
    also keeps the mean exactly.
    """

    coefficient: float
    alpha: tuple[int, ...]
    flux: Callable[[Tensor, AbstractDerivatives], Tensor]
    out_channel: int = 0


def square(u: Tensor, D: AbstractDerivatives | None = None) -> Tensor:
    """``u[0]^2`` (keeps the channel axis)."""
    v = u[:, :1]
    return v * v


def unit(ndim: int, d: int, order: int) -> tuple[int, ...]:
    """The multi-index ``order * e_d`` in ``ndim`` dimensions."""
    return tuple(order if i == d else 0 for i in range(ndim))


def identity_term(coefficient: float, ndim: int, channel: int = 0) -> tuple[LinearTerm, ...]:
    """``coefficient * u`` (the zero multi-index)."""
    return (LinearTerm(coefficient, (0,) * ndim, channel, channel),) if coefficient else ()


def laplacian_terms(
    coefficient: float, ndim: int, out_channel: int = 0, in_channel: int | None = None
) -> tuple[LinearTerm, ...]:
    """``coefficient * lap u = coefficient * sum_d u_{x_d x_d}``."""
    src = out_channel if in_channel is None else in_channel
    if not coefficient:
        return ()
    return tuple(LinearTerm(coefficient, unit(ndim, d, 2), out_channel, src) for d in range(ndim))


def bilaplacian_terms(coefficient: float, ndim: int, channel: int = 0) -> tuple[LinearTerm, ...]:
    """``coefficient * lap^2 u = coefficient * sum_{d, e} u_{x_d x_d x_e x_e}``."""
    terms = []
    for d in range(ndim):
        for e in range(ndim):
            alpha = tuple(2 * ((i == d) + (i == e)) for i in range(ndim))
            terms.append(LinearTerm(coefficient, alpha, channel, channel))
    return tuple(terms)


class AbstractEquation(ABC):
    """A PDE ``u_t = L u + N(u) + f(x)`` on a periodic domain, channels on axis 1.

    Subclasses are frozen keyword-only dataclasses that set ``name``, ``channels``, ``ndims`` and answer the one
    required hook, ``linear_terms``. The nonlinear part is what they have of the two optional hooks:
    ``flux_terms`` (conservation form, as data) and ``nonlinear_term`` (any other term, in physical space); a
    linear PDE leaves both out. ``source_term`` defaults to no forcing.
    """

    name: ClassVar[str]
    channels: ClassVar[tuple[str, ...]] = ("u",)
    ndims: ClassVar[tuple[int, ...]] = (1, 2, 3)

    @abstractmethod
    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        """The linear part ``L u`` as data, for ``ndim`` spatial dimensions."""

    def flux_terms(self, ndim: int) -> tuple[FluxTerm, ...]:
        """The conservation-form part of ``N(u)`` as data (default none)."""
        return ()

    def nonlinear_term(self, u: Tensor, D: AbstractDerivatives) -> Tensor | None:
        """The rest of ``N(u)`` in physical space, same shape as ``u``; ``None`` (the default) where there is none."""
        return None

    def source_term(self, coords: tuple[Tensor, ...]) -> Tensor | None:
        """A time-independent forcing ``f(x)`` broadcastable against ``u`` (channels on axis 1), or ``None``."""
        return None

    # -- shared machinery -----------------------------------------------------------------------------------
    def check_ndim(self, ndim: int) -> None:
        """Raise ``ValueError`` if the equation is not defined in ``ndim`` dimensions."""
        if ndim not in self.ndims:
            raise ValueError(f"{type(self).__name__} is defined for ndim in {self.ndims}, got a {ndim}D grid")

    def parameters(self) -> dict:
        """The parameters as a flat dict of plain values (for file metadata)."""
        out: dict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                out[f.name] = getattr(value, "name", type(value).__name__)
                for g in dataclasses.fields(value):
                    out[f"{f.name}_{g.name}"] = getattr(value, g.name)
            else:
                out[f.name] = value
        return out

    def linear(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        """``L u`` in physical space via ``D`` (channels on axis 1)."""
        ndim = D.ndim
        out = [torch.zeros_like(u[:, :1]) for _ in self.channels]
        for t in self.linear_terms(ndim):
            ui = u[:, t.in_channel : t.in_channel + 1]
            out[t.out_channel] = out[t.out_channel] + t.coefficient * (D(ui, t.alpha) if any(t.alpha) else ui)
        return torch.cat(out, dim=1)

    def fluxes(self, u: Tensor, D: AbstractDerivatives) -> Tensor | None:
        """The flux terms ``sum c D^alpha flux(u)`` in physical space via ``D`` (``None`` if there are none)."""
        terms = self.flux_terms(D.ndim)
        if not terms:
            return None
        out = [torch.zeros_like(u[:, :1]) for _ in self.channels]
        for t in terms:
            out[t.out_channel] = out[t.out_channel] + t.coefficient * D(t.flux(u, D), t.alpha)
        return torch.cat(out, dim=1)

    def rhs(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        """``L u + N(u) + f`` in physical space (``N`` = flux terms + ``nonlinear_term``)."""
        out = self.linear(u, D)
        for n in (self.fluxes(u, D), self.nonlinear_term(u, D)):
            if n is not None:
                out = out + n
        f = self.source_term(D.coords())
        return out if f is None else out + f

    def residual(self, u_t: Tensor, u: Tensor, D: AbstractDerivatives) -> Tensor:
        """The PDE residual ``u_t - (L u + N(u) + f)``, shape of ``u``.

        ``u`` is ``(B, C, *space)`` on a grid (``D`` spectral) or ``(N, C)`` at points (``D`` autograd).
        """
        if u.ndim < 2 or u.shape[1] != len(self.channels):
            raise ValueError(
                f"{type(self).__name__} has channels {self.channels}: expected u with {len(self.channels)} "
                f"channel(s) on axis 1, got shape {tuple(u.shape)}"
            )
        return u_t - self.rhs(u, D)


def _velocity(velocity: float | tuple[float, ...], ndim: int) -> tuple[float, ...]:
    if isinstance(velocity, (int, float)):
        return (float(velocity),) * ndim
    if len(velocity) != ndim:
        raise ValueError(f"velocity needs {ndim} components on a {ndim}D grid, got {velocity!r}")
    return tuple(float(v) for v in velocity)


def _ones_like_coords(coords: tuple[Tensor, ...]) -> Tensor:
    return sum(0 * x for x in coords) + 1


# ---------------------------------------------------------------------------------------------------------
# linear PDEs
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Advection(AbstractEquation):
    """Linear advection ``u_t + c . grad u = 0``; a scalar ``velocity`` means the same speed along every axis."""

    velocity: float | tuple[float, ...] = 1.0
    name: ClassVar[str] = "advection"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return tuple(LinearTerm(-c, unit(ndim, d, 1)) for d, c in enumerate(_velocity(self.velocity, ndim)) if c)


@dataclass(frozen=True, kw_only=True)
class Diffusion(AbstractEquation):
    """Diffusion (heat equation) ``u_t = nu lap u``."""

    nu: float = 0.01
    name: ClassVar[str] = "diffusion"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return laplacian_terms(self.nu, ndim)


@dataclass(frozen=True, kw_only=True)
class AdvectionDiffusion(AbstractEquation):
    """Advection-diffusion ``u_t + c . grad u = nu lap u``."""

    velocity: float | tuple[float, ...] = 1.0
    nu: float = 0.01
    name: ClassVar[str] = "advection_diffusion"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return Advection(velocity=self.velocity).linear_terms(ndim) + laplacian_terms(self.nu, ndim)


@dataclass(frozen=True, kw_only=True)
class Wave(AbstractEquation):
    """The wave equation ``u_tt = c^2 lap u`` as a first-order system in ``(u, u_t)``:

    ``u_t = v``, ``v_t = c^2 lap u`` (the linear part couples the two channels).
    """

    c: float = 1.0
    name: ClassVar[str] = "wave"
    channels: ClassVar[tuple[str, ...]] = ("u", "u_t")

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return (LinearTerm(1.0, (0,) * ndim, 0, 1),) + laplacian_terms(self.c**2, ndim, out_channel=1, in_channel=0)


# ---------------------------------------------------------------------------------------------------------
# 1D nonlinear PDEs in conservation form (the spatial mean is conserved)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Burgers(AbstractEquation):
    """Viscous Burgers ``u_t + u u_x = nu u_xx`` (1D)."""

    nu: float = 0.01
    name: ClassVar[str] = "burgers"
    ndims: ClassVar[tuple[int, ...]] = (1,)

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return laplacian_terms(self.nu, ndim)

    def flux_terms(self, ndim: int) -> tuple[FluxTerm, ...]:
        return (FluxTerm(-0.5, (1,), square),)  # -u u_x = -(u^2 / 2)_x


@dataclass(frozen=True, kw_only=True)
class KdV(AbstractEquation):
    """Korteweg-de Vries ``u_t + a u u_x + b u_xxx = nu u_xx`` with ``a = nonlinear`` (6), ``b = dispersion`` (1).

    The soliton ``u = (c / 2) sech^2(sqrt(c) / 2 (x - c t))`` solves the default ``a = 6, b = 1, nu = 0``.
    """

    nonlinear: float = 6.0
    dispersion: float = 1.0
    nu: float = 0.0
    name: ClassVar[str] = "kdv"
    ndims: ClassVar[tuple[int, ...]] = (1,)

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return (LinearTerm(-self.dispersion, (3,)),) + laplacian_terms(self.nu, ndim)

    def flux_terms(self, ndim: int) -> tuple[FluxTerm, ...]:
        return (FluxTerm(-0.5 * self.nonlinear, (1,), square),)  # -a u u_x = -(a u^2 / 2)_x


@dataclass(frozen=True, kw_only=True)
class KuramotoSivashinsky(AbstractEquation):
    """Kuramoto-Sivashinsky ``u_t + u u_x + u_xx + u_xxxx = 0`` (1D, chaotic for domains longer than ~ 2 pi * 4)."""

    name: ClassVar[str] = "kuramoto_sivashinsky"
    ndims: ClassVar[tuple[int, ...]] = (1,)

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return (LinearTerm(-1.0, (2,)), LinearTerm(-1.0, (4,)))

    def flux_terms(self, ndim: int) -> tuple[FluxTerm, ...]:
        return (FluxTerm(-0.5, (1,), square),)  # -u u_x = -(u^2 / 2)_x


@dataclass(frozen=True, kw_only=True)
class KuramotoSivashinskyFlame(AbstractEquation):
    """Kuramoto-Sivashinsky in Sivashinsky's flame-front form, any dimension:
    ``h_t + 1/2 |grad h|^2 + lap h + lap^2 h = 0``.

    In 1D the slope ``u = h_x`` solves :class:`KuramotoSivashinsky`. The mean of ``h`` is not conserved: it falls
    at the rate ``1/2 <|grad h|^2>`` (the front's speed). The fourth-order term is the isotropic ``lap^2``;
    exponax's ``KuramotoSivashinsky`` ("combustion format") uses ``sum_d d_d^4`` in 2D and 3D instead.
    """

    name: ClassVar[str] = "kuramoto_sivashinsky_flame"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return laplacian_terms(-1.0, ndim) + bilaplacian_terms(-1.0, ndim)

    def nonlinear_term(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        ndim = D.ndim
        grad_sq = sum(D(u, unit(ndim, d, 1)) ** 2 for d in range(ndim))
        return -0.5 * grad_sq


# ---------------------------------------------------------------------------------------------------------
# reaction-diffusion and pattern formation (any dimension)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AllenCahn(AbstractEquation):
    """Allen-Cahn ``u_t = nu lap u + u - u^3``; ``tanh(x / sqrt(2 nu))`` is a stationary front."""

    nu: float = 0.01
    name: ClassVar[str] = "allen_cahn"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return laplacian_terms(self.nu, ndim) + identity_term(1.0, ndim)

    def nonlinear_term(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        return -(u**3)


@dataclass(frozen=True, kw_only=True)
class FisherKPP(AbstractEquation):
    """Fisher-KPP ``u_t = nu lap u + r u (1 - u)``.

    Ablowitz-Zeppetella travelling wave: ``u = (1 + exp(sqrt(r / (6 nu)) (x - s t)))^{-2}``,
    ``s = 5 sqrt(r nu / 6)``.
    """

    nu: float = 0.01
    r: float = 1.0
    name: ClassVar[str] = "fisher_kpp"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return laplacian_terms(self.nu, ndim) + identity_term(self.r, ndim)

    def nonlinear_term(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        return -self.r * u**2


@dataclass(frozen=True, kw_only=True)
class GrayScott(AbstractEquation):
    """Gray-Scott reaction-diffusion (Pearson 1993) in ``(u, v)``:

    ``u_t = nu_u lap u - u v^2 + feed (1 - u)``, ``v_t = nu_v lap v + u v^2 - (feed + kill) v``.
    """

    feed: float = 0.04
    kill: float = 0.06
    nu_u: float = 2e-5
    nu_v: float = 1e-5
    name: ClassVar[str] = "gray_scott"
    channels: ClassVar[tuple[str, ...]] = ("u", "v")

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return (
            laplacian_terms(self.nu_u, ndim, 0)
            + laplacian_terms(self.nu_v, ndim, 1)
            + identity_term(-self.feed, ndim, 0)
            + identity_term(-(self.feed + self.kill), ndim, 1)
        )

    def nonlinear_term(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        uvv = u[:, :1] * u[:, 1:2] ** 2
        return torch.cat([-uvv, uvv], dim=1)

    def source_term(self, coords: tuple[Tensor, ...]) -> Tensor:
        one = _ones_like_coords(coords)
        return torch.cat([self.feed * one, 0 * one], dim=1)


@dataclass(frozen=True, kw_only=True)
class SwiftHohenberg(AbstractEquation):
    """Swift-Hohenberg ``u_t = r u - (k0^2 + lap)^2 u + g u^2 - u^3``."""

    r: float = 0.7
    k0: float = 1.0
    g: float = 1.0
    name: ClassVar[str] = "swift_hohenberg"

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return (
            identity_term(self.r - self.k0**4, ndim)
            + laplacian_terms(-2 * self.k0**2, ndim)
            + bilaplacian_terms(-1.0, ndim)
        )

    def nonlinear_term(self, u: Tensor, D: AbstractDerivatives) -> Tensor:
        return self.g * u**2 - u**3


# ---------------------------------------------------------------------------------------------------------
# 2D incompressible Navier-Stokes in vorticity form
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class KolmogorovForcing:
    """The body force ``F = (amplitude sin(k y), 0)``; its curl ``f = -amplitude k cos(k y)`` drives the vorticity.

    ``k = wavenumber`` is angular: on a domain of length ``L_y`` it is periodic when ``k L_y / (2 pi)`` is an
    integer (the usual ``[0, 2 pi)^2`` box with ``k = 4``).
    """

    wavenumber: float = 4
    amplitude: float = 1.0
    name: ClassVar[str] = "kolmogorov"

    def vorticity_source(self, coords: tuple[Tensor, ...]) -> Tensor:
        """``f(x, y) = -amplitude k cos(k y)``, broadcastable against the vorticity."""
        x, y = coords
        return 0 * x - self.amplitude * self.wavenumber * torch.cos(self.wavenumber * y)


@dataclass(frozen=True, kw_only=True)
class NavierStokes2D(AbstractEquation):
    """2D incompressible Navier-Stokes in vorticity form on a periodic box:

    ``w_t + u . grad w = nu lap w - drag w + f``, ``w = v_x - u_y``, ``lap psi = -w``, ``(u, v) = (psi_y, -psi_x)``.

    (exponax uses the opposite sign of ``w``.) The velocity needs the inverse Laplacian, which is not a local
    operator: point-wise (autograd) derivative providers raise :class:`NonLocalTermError` in ``residual``; the
    spectral solver and :class:`SpectralDerivatives` evaluate it in Fourier space.
    """

    nu: float = 1e-3
    drag: float = 0.0
    forcing: KolmogorovForcing | None = field(default=None)
    name: ClassVar[str] = "navier_stokes_2d"
    channels: ClassVar[tuple[str, ...]] = ("vorticity",)
    ndims: ClassVar[tuple[int, ...]] = (2,)

    def linear_terms(self, ndim: int) -> tuple[LinearTerm, ...]:
        return laplacian_terms(self.nu, ndim) + identity_term(-self.drag, ndim)

    def flux_terms(self, ndim: int) -> tuple[FluxTerm, ...]:
        # -u . grad w in Basdevant's form (J. Comput. Phys. 50, 1983), exact for div u = 0:
        # u . grad w = (d_xx - d_yy)(u v) + d_xy (v^2 - u^2). The solver needs u and v (two inverse FFTs) and the
        # two products (two forward FFTs) per stage, where u w_x + v w_y needs four inverse FFTs and one forward.
        return (
            FluxTerm(1.0, (2, 0), _minus_velocity_product),  # -(d_xx - d_yy)(u v), the sign in the coefficients
            FluxTerm(-1.0, (0, 2), _minus_velocity_product),
            FluxTerm(-1.0, (1, 1), _velocity_square_difference),
        )

    def source_term(self, coords: tuple[Tensor, ...]) -> Tensor | None:
        return None if self.forcing is None else self.forcing.vorticity_source(coords)

    def velocity(self, w: Tensor, D: AbstractDerivatives) -> Tensor:
        """The velocity ``(u, v)`` of the vorticity ``w`` ``(B, 1, X, Y)``, returned as ``(B, 2, X, Y)``."""
        minus_u, v = _minus_u_and_v(w, D)
        return torch.cat([-minus_u, v], dim=1)


def _minus_u_and_v(w: Tensor, D: AbstractDerivatives) -> tuple[Tensor, Tensor]:
    """``(-u, v) = (d_y lap^-1 w, d_x lap^-1 w)`` from the stream function of the vorticity ``w`` (``-u``: the
    fluxes below use it as is, which saves the solver a negation per evaluation)."""
    return D.inverse_laplacian(w, (0, 1)), D.inverse_laplacian(w, (1, 0))


def _minus_velocity_product(w: Tensor, D: AbstractDerivatives) -> Tensor:
    """``-u v`` of the vorticity ``w`` (the sign goes into the flux terms' coefficients: no negation per stage)."""
    minus_u, v = _minus_u_and_v(w, D)
    return minus_u * v


def _velocity_square_difference(w: Tensor, D: AbstractDerivatives) -> Tensor:
    """``v^2 - u^2 = (v - u)(v + u)`` of the vorticity ``w``."""
    minus_u, v = _minus_u_and_v(w, D)
    return (v + minus_u) * (v - minus_u)


# Declared: these flux functions are the two products of Basdevant's form of 2D incompressible vorticity advection,
# of (-u, v) = (d_y lap^-1 w, d_x lap^-1 w) (masked): 0 is -u v, 1 is (v + (-u))(v - (-u)), each computed as
# written above. A solver may evaluate them as such (the fused vorticity ETDRK strategy on the CPU).
BASDEVANT_PRODUCTS: dict[Callable, int] = {_minus_velocity_product: 0, _velocity_square_difference: 1}
