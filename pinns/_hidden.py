"""Hidden-term discovery (universal PINNs, Podina, Eastman & Kohandel 2022) followed by sparse regression.

The PDE is partly known: ``u_t = K(u) + F(u)`` with the known part ``K`` an equation of the catalogue (e.g.
``Diffusion(nu=D)`` for Fisher-KPP ``u_t = D u_xx + r u (1 - u)``) and ``F`` unknown. A second network
``F_theta(u)`` stands for the hidden term; both networks are fitted to sparse noisy observations::

    L = mean |u(x_i, t_i) - u_i^obs|^2 / mean |u^obs|^2  +  l_r mean |K.residual(u_t, u, D) - F_theta(u)|^2

(``K.residual`` is ``u_t - K(u)``, the shared residual code). Then the learned ``F_theta`` is turned into a
formula by sequentially thresholded least squares (STLSQ, Brunton, Proctor & Kutz 2016) over a library of
candidate terms ``Theta(u) = [1, u, u^2, ..., u^p]`` evaluated on the range of the observed ``u``::

    xi = argmin |Theta xi - F|^2;  repeat: zero |xi_k| < threshold, refit on the rest.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..solvers import AbstractEquation
from ._autograd import pde_residual
from ._domain import Domain
from ._inverse import AbstractDataFitPINN, Observations, data_problem
from ._networks import MLP, NetworkConfig


def polynomial_library(u: Tensor, degree: int = 3) -> tuple[Tensor, list[str]]:
    """``Theta (n, degree + 1) = [1, u, ..., u^degree]`` of a single-channel ``u (n,)`` or ``(n, 1)``, with names."""
    u = u.reshape(-1)
    theta = torch.stack([u**k for k in range(degree + 1)], dim=1)
    names = ["1", "u"] + [f"u^{k}" for k in range(2, degree + 1)]
    return theta, names


def stlsq(theta: Tensor, y: Tensor, threshold: float = 0.05, max_iter: int = 20) -> Tensor:
    """Sequentially thresholded least squares: sparse ``xi (p,)`` with ``theta xi ≈ y``.

    Columns are normalised to unit RMS before thresholding, so ``threshold`` applies to the coefficient of each
    term scaled to a unit-size feature; the returned coefficients are in the original units.
    """
    if theta.ndim != 2 or y.reshape(-1).shape[0] != theta.shape[0]:
        raise ValueError(f"expected theta (n, p) and y (n,), got {tuple(theta.shape)} and {tuple(y.shape)}")
    y = y.reshape(-1, 1).double()
    scale = theta.double().pow(2).mean(0).sqrt().clamp_min(1e-300)
    A = theta.double() / scale
    active = torch.ones(theta.shape[1], dtype=torch.bool)
    xi = torch.zeros(theta.shape[1], dtype=torch.float64)
    for _ in range(max_iter):
        xi = torch.zeros_like(xi)
        if active.any():
            xi[active] = torch.linalg.lstsq(A[:, active], y).solution.reshape(-1)
        keep = active & (xi.abs() >= threshold * y.pow(2).mean().sqrt().item())
        if torch.equal(keep, active):
            break
        active = keep
    return xi / scale


def formula(coefficients: Tensor, names: list[str], digits: int = 4) -> str:
    """``"+0.9987 u -0.9991 u^2"`` from the non-zero coefficients."""
    parts = [f"{c:+.{digits}g}" + ("" if n == "1" else f" {n}") for c, n in zip(coefficients.tolist(), names) if c != 0]
    return " ".join(parts) if parts else "0"


class HiddenTermPINN(AbstractDataFitPINN):
    """Solution network ``u(x, t)`` and hidden-term network ``F(u)`` for ``u_t = K(u) + F(u)``.

    Arguments:
        known: the known part ``K`` as a catalogue equation (its ``residual`` gives ``u_t - K(u)``).
        domain: the space-time box of the data.
        observations: sparse noisy data.
        network: the solution net; hidden: the (small) net for ``F``.
        device: where everything lives (see :class:`~pdeforge.pinns.AbstractDataFitPINN`).
    """

    def __init__(
        self,
        known: AbstractEquation,
        domain: Domain,
        observations: Observations,
        network: NetworkConfig = NetworkConfig(width=50, depth=4),  # noqa: B008 (frozen)
        hidden: NetworkConfig = NetworkConfig(width=32, depth=3),  # noqa: B008 (frozen)
        n_residual: int = 4096,
        residual_weight: float = 1.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(
            data_problem(known, domain), domain, observations, network, n_residual, residual_weight, seed, device
        )
        self.known = known
        channels = len(known.channels)
        self.hidden = MLP(channels, channels, hidden, torch.Generator().manual_seed(seed + 2)).double().to(self.device)

    def objective(self, step: int | None) -> tuple[Tensor, dict]:
        data = self.observations.misfit(self.net)
        r, u = pde_residual(self.known, self.net, *self.points)
        res = ((r - self.hidden(u)) ** 2).mean()
        return data + self.residual_weight * res, {
            "loss_data": data.detach(),
            "loss_residual": res.detach(),
        }

    @torch.no_grad()
    def discover(self, degree: int = 3, threshold: float = 0.05, n: int = 512) -> tuple[Tensor, list[str]]:
        """STLSQ of ``F_theta(u)`` on ``n`` values spanning the observed range of ``u``: ``(coefficients, names)``."""
        lo, hi = float(self.observations.u.min()), float(self.observations.u.max())
        u = torch.linspace(lo, hi, n, dtype=torch.float64)[:, None]
        theta, names = polynomial_library(u, degree)
        return stlsq(theta, self.hidden(u.to(self.device))[:, 0].cpu(), threshold), names


__all__ = ["polynomial_library", "stlsq", "formula", "HiddenTermPINN"]
