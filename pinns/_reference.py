"""Reference solutions for PINNs from the spectral solver, and a differentiable interpolant of a rollout.

:class:`TrigInterpolant` turns snapshots of a periodic field into a smooth torch function of ``(x, t)``:
the trigonometric interpolant in space (exact for the resolved Fourier modes, Nyquist modes dropped) and the
Lagrange polynomial through the snapshot times in time::

    u(x, t) = sum_j l_j(t) Re sum_m c_{j,m} exp(i k_m . (x - x_0)),    l_j(t) = prod_{i != j} (t - t_i) / (t_j - t_i)

It is differentiable by autograd, so ``pde_residual`` of the solver's own solution measures how consistent the
PINN residual is with the spectral right-hand side (the shared-definition test).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..solvers import ETDRK, AbstractEquation, Grid, rollout


class TrigInterpolant(torch.nn.Module):
    """Space-time interpolant of snapshots ``fields (T, C, *grid.shape)`` at ``times (T,)`` on ``grid``.

    Arguments:
        origin: physical coordinate of grid point 0 per dimension (the grid covers ``[origin, origin + L)``).
        tol: drop Fourier modes with ``|c| <= tol * max |c|`` (speed; 0 keeps all).

    Call with ``x (N, d)``, ``t (N, 1)``; returns ``u (N, C)``. Use few snapshots (a polynomial in time).
    """

    def __init__(
        self, fields: Tensor, times: Tensor, grid: Grid, origin: tuple[float, ...] | None = None, tol: float = 1e-15
    ) -> None:
        super().__init__()
        if fields.ndim != grid.ndim + 2 or tuple(fields.shape[2:]) != grid.shape or fields.shape[0] != times.shape[0]:
            raise ValueError(
                f"expected fields (T, C, {grid.shape}) with T = {times.shape[0]}, got {tuple(fields.shape)}"
            )
        dims = tuple(range(2, 2 + grid.ndim))
        coef = torch.fft.fftn(fields.to(torch.float64), dim=dims) / math.prod(grid.shape)  # (T, C, *shape)
        ks = []
        for d, (n, length) in enumerate(zip(grid.shape, grid.length)):
            m = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
            if n % 2 == 0:  # the Nyquist mode has no real interpolant with a well-defined derivative
                index = [slice(None)] * fields.ndim
                index[2 + d] = n // 2
                coef[tuple(index)] = 0
            ks.append(m * 2 * math.pi / length)
        k = torch.stack([g.reshape(-1) for g in torch.meshgrid(*ks, indexing="ij")], dim=1)  # (M, d)
        c = coef.reshape(coef.shape[0], coef.shape[1], -1)  # (T, C, M)
        keep = c.abs().amax(dim=(0, 1)) > tol * c.abs().max()
        self.register_buffer("k", k[keep])
        self.register_buffer("re", c.real[..., keep].transpose(1, 2).contiguous())  # (T, M, C)
        self.register_buffer("im", c.imag[..., keep].transpose(1, 2).contiguous())
        self.register_buffer("times", times.to(torch.float64))
        self.origin = tuple(origin) if origin is not None else (0.0,) * grid.ndim

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        phase = (x - torch.tensor(self.origin, dtype=x.dtype, device=x.device)) @ self.k.T.to(x.dtype)  # (N, M)
        cos, sin = torch.cos(phase), torch.sin(phase)
        out = 0
        tau = self.times.to(x.dtype)
        for j in range(tau.shape[0]):
            lj = 1
            for i in range(tau.shape[0]):
                if i != j:
                    lj = lj * (t - tau[i]) / (tau[j] - tau[i])
            out = out + lj * (cos @ self.re[j].to(x.dtype) - sin @ self.im[j].to(x.dtype))
        return out


def spectral_reference(
    equation: AbstractEquation, grid: Grid, u0: Tensor, dt: float, t_final: float, save_every_time: float
) -> tuple[Tensor, Tensor]:
    """Solve with ETDRK4 from ``u0 (C, *grid.shape)``; returns ``times (T,)`` and ``fields (T, C, *grid.shape)``."""
    n_steps = round(t_final / dt)
    save_every = max(1, round(save_every_time / dt))
    if abs(n_steps * dt - t_final) > 1e-9 * max(1.0, t_final) or n_steps % save_every:
        raise ValueError(f"t_final={t_final} must be a multiple of the save interval {save_every * dt} (dt={dt})")
    with torch.no_grad():
        traj = rollout(ETDRK(equation, grid, dt), u0[None].to(torch.float64), n_steps, save_every)[0]
    times = torch.arange(traj.shape[0], dtype=torch.float64) * save_every * dt
    return times, traj


__all__ = ["TrigInterpolant", "spectral_reference"]
