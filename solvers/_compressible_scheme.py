"""Finite-volume building blocks of the compressible solver: ghost cells, limited MUSCL reconstruction, the HLLC and
Rusanov fluxes and the viscous / heat-conduction fluxes, each on whole ``(B, C, *space)`` tensors.

States are channels first. Conserved ``U = (rho, rho u_1, ..., rho u_d, E)``, primitive ``W = (rho, u_1, ..., u_d,
p)``, ideal gas ``E = p / (gamma - 1) + rho |u|^2 / 2``. A flux along axis ``a`` (tensor dim ``2 + a``) is held on
the ``N_a + 1`` faces of that axis.

References: Toro, "Riemann Solvers and Numerical Methods for Fluid Dynamics", 3rd ed.: MUSCL-Hancock's
reconstruction and slope limiters (section 13.4, 14.2), HLLC (section 10.4, eqs. 10.37-10.39 with the wave speeds
of eq. 10.48), Rusanov (eq. 10.56). The low-Mach correction of the face velocities: Thornber, Mosedale, Drikakis,
Youngs and Williams, "An improved reconstruction method for compressible flows with low Mach number features",
J. Comput. Phys. 227 (2008) 4873-4894.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "LIMITERS",
    "FLUXES",
    "BOUNDARIES",
    "to_primitive",
    "to_conserved",
    "pad",
    "reconstruct",
    "low_mach_correction",
    "riemann_flux",
    "viscous_fluxes",
]

LIMITERS = ("minmod", "van_leer", "mc")
FLUXES = ("hllc", "rusanov")
BOUNDARIES = ("periodic", "outflow", "wall")


def to_primitive(u: Tensor, gamma: float) -> Tensor:
    """``(rho, m, E) -> (rho, m / rho, (gamma - 1) (E - |m|^2 / (2 rho)))``, ``(B, 2 + d, *space)``."""
    rho, m, e = u[:, :1], u[:, 1:-1], u[:, -1:]
    vel = m / rho
    p = (gamma - 1.0) * (e - 0.5 * (m * vel).sum(1, keepdim=True))
    return torch.cat([rho, vel, p], 1)


def to_conserved(w: Tensor, gamma: float) -> Tensor:
    """``(rho, u, p) -> (rho, rho u, p / (gamma - 1) + rho |u|^2 / 2)``, ``(B, 2 + d, *space)``."""
    rho, vel, p = w[:, :1], w[:, 1:-1], w[:, -1:]
    m = rho * vel
    return torch.cat([rho, m, p / (gamma - 1.0) + 0.5 * (m * vel).sum(1, keepdim=True)], 1)


def _flip_normal(x: Tensor, normal: int) -> Tensor:
    sign = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
    sign[normal] = -1.0
    return x * sign.view(1, -1, *[1] * (x.ndim - 2))


def pad(x: Tensor, dim: int, n: int, low: str, high: str, normal: int) -> Tensor:
    """``n`` ghost cells on both ends of tensor dim ``dim``: periodic (the other end's cells), outflow (the edge cell
    repeated: zero gradient) or wall (the mirror image with channel ``normal``, the normal velocity or momentum,
    negated: a reflective, free-slip wall)."""
    size = x.shape[dim]

    def ghost(kind: str, at_low: bool) -> Tensor:
        if kind == "periodic":
            return x.narrow(dim, size - n, n) if at_low else x.narrow(dim, 0, n)
        edge = x.narrow(dim, 0, n) if at_low else x.narrow(dim, size - n, n)
        if kind == "outflow":
            one = edge.narrow(dim, 0, 1) if at_low else edge.narrow(dim, n - 1, 1)
            return one.expand_as(edge)
        return _flip_normal(edge.flip(dim), normal)

    return torch.cat([ghost(low, True), x, ghost(high, False)], dim)


def _limited_slope(a: Tensor, b: Tensor, limiter: str) -> Tensor:
    """TVD-limited slope from the backward and forward differences ``a``, ``b`` (Toro section 13.4/14.2)."""
    ab = a * b
    smooth = ab > 0
    if limiter == "minmod":
        s = torch.sign(a) * torch.minimum(a.abs(), b.abs())
    elif limiter == "van_leer":
        s = 2.0 * ab / torch.where(smooth, a + b, torch.ones_like(a))
    else:  # monotonised central: minmod(2a, 2b, (a + b) / 2)
        s = torch.sign(a) * torch.minimum(2.0 * torch.minimum(a.abs(), b.abs()), 0.5 * (a + b).abs())
    return torch.where(smooth, s, torch.zeros_like(s))


def reconstruct(w: Tensor, dim: int, limiter: str | None) -> tuple[Tensor, Tensor]:
    """Face states ``(W_L, W_R)`` on the ``M - 3`` faces between cells ``1 .. M - 2`` of ``w`` (``M`` cells along
    ``dim``, two ghosts at each end): piecewise-linear in primitive variables with the limited slope, or piecewise
    constant (``limiter=None``). A cell whose reconstructed density or pressure would not be positive at one of
    its faces falls back to a constant (the first-order scheme's positivity is then that of HLLC / Rusanov)."""
    m = w.shape[dim]
    centre = w.narrow(dim, 1, m - 2)
    if limiter is None:
        return centre.narrow(dim, 0, m - 3), centre.narrow(dim, 1, m - 3)
    d = w.diff(dim=dim)
    half = 0.5 * _limited_slope(d.narrow(dim, 0, m - 2), d.narrow(dim, 1, m - 2), limiter)
    minus, plus = centre - half, centre + half
    ends = torch.cat([minus[:, :1], minus[:, -1:], plus[:, :1], plus[:, -1:]], 1)
    if not bool((ends > 0).all()):  # rare: the fallback costs a few more kernels only where it is needed
        bad = (ends <= 0).any(1, keepdim=True)
        minus, plus = torch.where(bad, centre, minus), torch.where(bad, centre, plus)
    return plus.narrow(dim, 0, m - 3), minus.narrow(dim, 1, m - 3)


def low_mach_correction(wl: Tensor, wr: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Thornber et al.'s (2008) low-Mach correction of the reconstructed face states: every velocity component's jump
    across the face is scaled by ``z = min(1, max(M_L, M_R))``, ``M = |u| / c`` (all components),

        u_L' = (u_L + u_R) / 2 + z (u_L - u_R) / 2,      u_R' = (u_L + u_R) / 2 - z (u_L - u_R) / 2,

    density and pressure unchanged. The upwind flux's dissipation of the velocity, which scales with the sound
    speed, is then of the order of the flow speed (at ``M >= 1`` the states are unchanged). ``wl``, ``wr``:
    primitive ``(B, 2 + d, *faces)``."""
    vl, vr = wl[:, 1:-1], wr[:, 1:-1]
    ml = (vl.square().sum(1, keepdim=True) * wl[:, :1] / (gamma * wl[:, -1:])).sqrt()
    mr = (vr.square().sum(1, keepdim=True) * wr[:, :1] / (gamma * wr[:, -1:])).sqrt()
    z = torch.maximum(ml, mr).clamp(max=1.0)
    mean, half = 0.5 * (vl + vr), 0.5 * z * (vl - vr)
    return torch.cat([wl[:, :1], mean + half, wl[:, -1:]], 1), torch.cat([wr[:, :1], mean - half, wr[:, -1:]], 1)


def _physical_flux(w: Tensor, u: Tensor, normal: int) -> Tensor:
    """The Euler flux along the axis whose velocity channel is ``normal``: ``(rho u_n, rho u_n u + p e_n, u_n (E +
    p))``, from primitive ``w`` and conserved ``u`` of the same states."""
    un = w[:, normal : normal + 1]
    f = u * un
    f[:, normal : normal + 1] += w[:, -1:]
    f[:, -1:] += w[:, -1:] * un
    return f


def riemann_flux(wl: Tensor, wr: Tensor, normal: int, gamma: float, kind: str) -> Tensor:
    """The numerical flux between face states ``wl``, ``wr`` (primitive, ``(B, 2 + d, *faces)``) along the axis whose
    velocity channel is ``normal``.

    ``kind="hllc"``: Toro's HLLC (eqs. 10.37-10.39), wave speeds ``S_L = min(u_L - c_L, u_R - c_R)``, ``S_R =
    max(u_L + c_L, u_R + c_R)`` (Davis, eq. 10.48). ``kind="rusanov"``: ``(F_L + F_R) / 2 - s (U_R - U_L) / 2`` with
    ``s = max(|u_L| + c_L, |u_R| + c_R)`` (eq. 10.56).
    """
    ul, ur = to_conserved(wl, gamma), to_conserved(wr, gamma)
    fl, fr = _physical_flux(wl, ul, normal), _physical_flux(wr, ur, normal)
    rl, rr = wl[:, :1], wr[:, :1]
    pl, pr = wl[:, -1:], wr[:, -1:]
    vl, vr = wl[:, normal : normal + 1], wr[:, normal : normal + 1]
    cl, cr = torch.sqrt(gamma * pl / rl), torch.sqrt(gamma * pr / rr)
    if kind == "rusanov":
        s = torch.maximum(vl.abs() + cl, vr.abs() + cr)
        return 0.5 * (fl + fr) - 0.5 * s * (ur - ul)
    sl = torch.minimum(vl - cl, vr - cr)
    sr = torch.maximum(vl + cl, vr + cr)
    ql, qr = rl * (sl - vl), rr * (sr - vr)  # q_L < 0 < q_R strictly
    s_star = (pr - pl + ql * vl - qr * vr) / (ql - qr)

    def star_flux(w: Tensor, u: Tensor, f: Tensor, s: Tensor, q: Tensor, v: Tensor) -> Tensor:
        # U*_K = q_K / (S_K - S*) (1, u with u_n -> S*, E_K / rho_K + (S* - u_K)(S* + p_K / q_K)), eq. 10.39
        factor = q / (s - s_star)
        u_star = factor * w  # tangential momenta factor * u_t; the other channels are set below
        u_star[:, :1] = factor
        u_star[:, normal : normal + 1] = factor * s_star
        u_star[:, -1:] = factor * (u[:, -1:] / w[:, :1] + (s_star - v) * (s_star + w[:, -1:] / q))
        return f + s * (u_star - u)

    fsl = star_flux(wl, ul, fl, sl, ql, vl)
    fsr = star_flux(wr, ur, fr, sr, qr, vr)
    return torch.where(sl >= 0, fl, torch.where(s_star >= 0, fsl, torch.where(sr > 0, fsr, fr)))


def viscous_fluxes(w1: Tensor, spacing: tuple[float, ...], eta: float, zeta: float, kappa: float) -> list[Tensor]:
    """The viscous and heat-conduction part of the flux on the faces of every axis, to be added to the Euler flux.

    Stress ``sigma = eta (grad u + grad u^T - 2/3 div u I) + zeta div u I``, heat flux ``q = -kappa grad T`` with
    ``T = p / rho``; the face flux along ``a`` is ``(0, -sigma_a., -(u . sigma_a. + kappa dT/dx_a))``. Face gradients
    are second order: the normal derivative by the compact difference across the face, tangential ones as the mean
    of the two cells' central differences.

    Args:
        w1: primitive states with one ghost cell on every side of every axis (corners included), ``(B, 2 + d, *(N +
            2))``.
    Returns:
        one flux per axis ``a``, ``(B, 2 + d, *space)`` with ``N_a + 1`` along axis ``a``.
    """
    d = w1.ndim - 2
    vel = w1[:, 1:-1]
    temp = w1[:, -1:] / w1[:, :1]
    n = [s - 2 for s in w1.shape[2:]]

    def interior(x: Tensor, skip: int) -> Tensor:
        """Drop the ghost rows of every axis but ``skip`` (those still holding them)."""
        for b in range(d):
            if b != skip and x.shape[2 + b] == n[b] + 2:
                x = x.narrow(2 + b, 1, n[b])
        return x

    def compact(x: Tensor, a: int) -> Tensor:  # d/dx_a across the faces of axis a
        return interior((x.narrow(2 + a, 1, n[a] + 1) - x.narrow(2 + a, 0, n[a] + 1)) / spacing[a], a)

    def mean(x: Tensor, a: int) -> Tensor:  # the two cells' mean at the faces of axis a
        return interior(0.5 * (x.narrow(2 + a, 1, n[a] + 1) + x.narrow(2 + a, 0, n[a] + 1)), a)

    # central differences along b, over all ghost rows of the other axes: (B, d, ..., N_b, ...)
    central = [(vel.narrow(2 + b, 2, n[b]) - vel.narrow(2 + b, 0, n[b])) / (2.0 * spacing[b]) for b in range(d)]
    fluxes = []
    for a in range(d):
        grad = [compact(vel, a) if b == a else mean(interior(central[b], a), a) for b in range(d)]  # d_b u at faces
        div = sum(grad[b][:, b : b + 1] for b in range(d))
        sigma = eta * (grad[a] + torch.cat([grad[k][:, a : a + 1] for k in range(d)], 1))
        sigma[:, a : a + 1] += (zeta - 2.0 / 3.0 * eta) * div
        work = (mean(vel, a) * sigma).sum(1, keepdim=True)
        if kappa:
            work = work + kappa * compact(temp, a)
        fluxes.append(-torch.cat([torch.zeros_like(div), sigma, work], 1))
    return fluxes
