"""The exact Riemann solver for the 1D Euler equations of an ideal gas (Toro, "Riemann Solvers and Numerical Methods
for Fluid Dynamics", 3rd ed., ch. 4), vectorised over sample points and over a batch of problems, in float64.

The star-region pressure ``p*`` solves ``f(p) = f_L(p, W_L) + f_R(p, W_R) + u_R - u_L = 0`` (Toro eq. 4.5) with

    f_K(p) = (p - p_K) sqrt(A_K / (p + B_K))                       p > p_K (shock),
             2 c_K / (gamma - 1) ((p / p_K)^((gamma - 1) / (2 gamma)) - 1)   p <= p_K (rarefaction),

``A_K = 2 / ((gamma + 1) rho_K)``, ``B_K = (gamma - 1) / (gamma + 1) p_K`` (eqs. 4.6-4.7), by Newton's method from the
primitive-variable guess (eq. 4.47); ``u* = (u_L + u_R + f_R - f_L) / 2`` (eq. 4.9). The solution at ``x / t`` is
sampled as in Toro section 4.5 (shock or rarefaction on each side, the fan's interior by eqs. 4.56 and 4.63).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["exact_riemann", "riemann_star_state", "riemann_cell_averages"]

State = Sequence[float] | np.ndarray  # (rho, u, p), each a scalar or an array of a batch of problems


def _split(state: State, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        rho, u, p = (np.asarray(v, dtype=np.float64) for v in state)
    except (TypeError, ValueError):
        raise ValueError(f"exact_riemann: {side} state {state!r}: expected (rho, u, p)") from None
    if np.any(~(rho > 0)) or np.any(~(p > 0)):
        raise ValueError(f"exact_riemann: {side} state {state!r}: density and pressure must be > 0")
    return rho, u, p


def _f(p: np.ndarray, rho: np.ndarray, pk: np.ndarray, ck: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Toro's ``f_K(p)`` and its derivative (eqs. 4.6, 4.7 and 4.37)."""
    a = 2.0 / ((gamma + 1.0) * rho)
    b = (gamma - 1.0) / (gamma + 1.0) * pk
    shock = p > pk
    q = np.sqrt(a / (p + b))
    f_shock = (p - pk) * q
    df_shock = q * (1.0 - 0.5 * (p - pk) / (p + b))
    ratio = p / pk
    e = (gamma - 1.0) / (2.0 * gamma)
    f_rare = 2.0 * ck / (gamma - 1.0) * (ratio**e - 1.0)
    df_rare = ratio ** (-(gamma + 1.0) / (2.0 * gamma)) / (rho * ck)
    return np.where(shock, f_shock, f_rare), np.where(shock, df_shock, df_rare)


def riemann_star_state(
    left: State, right: State, *, gamma: float = 1.4, tol: float = 1e-14, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """The star-region pressure and velocity ``(p*, u*)`` of the Riemann problem ``left | right`` (Toro ch. 4.3).

    ``left = (rho, u, p)`` and ``right`` likewise; each entry a scalar or an array (a batch of problems, broadcast).
    Raises ``ValueError`` when the data generate vacuum (``2 (c_L + c_R) / (gamma - 1) <= u_R - u_L``, eq. 4.40).
    """
    rl, ul, pl = _split(left, "left")
    rr, ur, pr = _split(right, "right")
    cl, cr = np.sqrt(gamma * pl / rl), np.sqrt(gamma * pr / rr)
    if np.any(2.0 * (cl + cr) / (gamma - 1.0) <= ur - ul):
        raise ValueError(
            f"exact_riemann: left {tuple(left)} and right {tuple(right)} generate vacuum "
            "(pressure positivity condition, Toro eq. 4.40); this solver handles non-vacuum data only"
        )
    # primitive-variable (linearised) guess, Toro eq. 4.47, kept positive
    p = np.maximum(0.5 * (pl + pr) - 0.125 * (ur - ul) * (rl + rr) * (cl + cr), 1e-8 * np.minimum(pl, pr))
    du = ur - ul
    for _ in range(max_iter):
        fl, dfl = _f(p, rl, pl, cl, gamma)
        fr, dfr = _f(p, rr, pr, cr, gamma)
        p_new = np.maximum(p - (fl + fr + du) / (dfl + dfr), 1e-3 * p)  # Newton, never below zero
        change = np.max(2.0 * np.abs(p_new - p) / (p_new + p))
        p = p_new
        if change < tol:
            break
    else:
        raise RuntimeError(f"exact_riemann: Newton's iteration for p* did not converge in {max_iter} steps")
    fl, _ = _f(p, rl, pl, cl, gamma)
    fr, _ = _f(p, rr, pr, cr, gamma)
    return p, 0.5 * (ul + ur) + 0.5 * (fr - fl)


def exact_riemann(
    left: State,
    right: State,
    x: np.ndarray,
    t: float,
    *,
    gamma: float = 1.4,
    x_interface: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact solution ``(density, velocity, pressure)`` of the Euler Riemann problem at points ``x``, time ``t``.

    ``rho_t + (rho u)_x = 0``, ``(rho u)_t + (rho u^2 + p)_x = 0``, ``E_t + (u (E + p))_x = 0``,
    ``E = p / (gamma - 1) + rho u^2 / 2``, from ``left`` for ``x < x_interface`` and ``right`` beyond (Toro ch. 4).

    Args:
        left, right: ``(rho, u, p)``; each entry a scalar, or an array of shape ``(B,)`` for a batch of problems
            (then ``x`` broadcasts against ``(B, 1)``, e.g. ``x`` of shape ``(N,)`` gives ``(B, N)``).
        x: sample points (any shape).
        t: time ``>= 0`` (``t = 0`` returns the initial data).
        gamma: ratio of specific heats.
        x_interface: position of the initial discontinuity.

    Returns:
        float64 arrays ``density, velocity, pressure``, shaped as ``x`` (broadcast with the batch).

    Examples:
        >>> import numpy as np
        >>> rho, u, p = exact_riemann((1.0, 0.0, 1.0), (0.125, 0.0, 0.1), np.array([0.5]), 0.2, x_interface=0.5)
        >>> round(float(p[0]), 5), round(float(u[0]), 5)  # Sod: p* and u* (Toro table 4.2)
        (0.30313, 0.92745)
    """
    rl, ul, pl = _split(left, "left")
    rr, ur, pr = _split(right, "right")
    x = np.asarray(x, dtype=np.float64)
    if rl.ndim:  # a batch of problems: (B, 1, ...) against x
        expand = (...,) + (None,) * x.ndim
        rl, ul, pl, rr, ur, pr = (v[expand] for v in (rl, ul, pl, rr, ur, pr))
    if not t > 0:
        if t < 0:
            raise ValueError(f"exact_riemann: t = {t}: expected t >= 0")
        on_left = x < x_interface
        return tuple(np.where(on_left, a, b) * np.ones_like(x) for a, b in ((rl, rr), (ul, ur), (pl, pr)))
    ps, us = riemann_star_state((rl, ul, pl), (rr, ur, pr), gamma=gamma)
    g1, g2 = (gamma - 1.0) / (gamma + 1.0), (gamma - 1.0) / (2.0 * gamma)
    s = (x - x_interface) / t

    def side(rk, uk, pk, sign):
        """The solution on the side of ``k`` (sign = -1 left, +1 right), written in the left wave's frame: the right
        side is the mirror image ``u -> -u, s -> -s`` of a left wave (Toro's sampling, section 4.5)."""
        u_m, us_m, s_m = sign * -uk, sign * -us, sign * -s
        ck = np.sqrt(gamma * pk / rk)
        ratio = ps / pk
        # shock
        s_shock = u_m - ck * np.sqrt((gamma + 1.0) / (2.0 * gamma) * ratio + g2)
        rho_shock = rk * (ratio + g1) / (g1 * ratio + 1.0)
        # rarefaction: head, tail, fan
        c_star = ck * ratio**g2
        head, tail = u_m - ck, us_m - c_star
        rho_star_rare = rk * ratio ** (1.0 / gamma)
        base = np.maximum(2.0 / (gamma + 1.0) + g1 / ck * (u_m - s_m), 0.0)
        rho_fan = rk * base ** (2.0 / (gamma - 1.0))
        u_fan = 2.0 / (gamma + 1.0) * (ck + 0.5 * (gamma - 1.0) * u_m + s_m)
        p_fan = pk * base ** (2.0 * gamma / (gamma - 1.0))
        shock = ps > pk
        undisturbed = np.where(shock, s_m <= s_shock, s_m <= head)
        rho_star = np.where(shock, rho_shock, rho_star_rare)
        in_fan = ~shock & (s_m > head) & (s_m <= tail)
        rho = np.where(undisturbed, rk, np.where(in_fan, rho_fan, rho_star))
        u = np.where(undisturbed, u_m, np.where(in_fan, u_fan, us_m))
        p = np.where(undisturbed, pk, np.where(in_fan, p_fan, ps))
        return rho, sign * -u, p

    left_of_contact = s <= us
    wl, wr = side(rl, ul, pl, -1.0), side(rr, ur, pr, 1.0)
    return tuple(np.where(left_of_contact, a, b) for a, b in zip(wl, wr))


def riemann_cell_averages(
    left: State,
    right: State,
    edges: np.ndarray,
    t: float,
    *,
    gamma: float = 1.4,
    x_interface: float = 0.0,
    n_sub: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell averages of the exact solution over the cells ``[edges[i], edges[i + 1])``, as a finite-volume scheme
    holds them: the conserved variables ``(rho, rho u, E)`` are averaged (the midpoint rule on ``n_sub`` sub-cells,
    error ``O(jump / n_sub)`` in a cell a discontinuity crosses, ``O(n_sub^-2)`` elsewhere), then returned as
    primitive ``(density, velocity, pressure)``, each ``(n_cells,)``."""
    edges = np.asarray(edges, dtype=np.float64)
    width = np.diff(edges)
    frac = (np.arange(n_sub) + 0.5) / n_sub
    pts = edges[:-1, None] + width[:, None] * frac[None, :]
    rho, u, p = exact_riemann(left, right, pts, t, gamma=gamma, x_interface=x_interface)
    mass, mom = rho.mean(-1), (rho * u).mean(-1)
    energy = (p / (gamma - 1.0) + 0.5 * rho * u**2).mean(-1)
    vel = mom / mass
    return mass, vel, (gamma - 1.0) * (energy - 0.5 * mass * vel**2)
