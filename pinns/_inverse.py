"""Inverse problems: unknown equation coefficients learned from sparse noisy observations (Raissi et al. 2019, sec. 4).

The coefficients are log-parameterised scalars ``theta = exp(s)`` (positive, scale-free steps); each training
step rebuilds the equation with ``dataclasses.replace(equation, nu=exp(s))`` and evaluates
``equation.residual`` on it, so the inverse PINN uses the same residual code as the forward one. Loss::

    L = mean |u(x_i, t_i) - u_i^obs|^2 / mean |u^obs|^2  +  l_r mean |u_t - (L_theta u + N_theta(u))|^2

Observations are random points of one trajectory of a :class:`~pdeforge.datasets.TrajectoryDataset` with
relative Gaussian noise ``u_obs = u + noise * std(u) * eps`` (the convention of Raissi et al.: ``noise = 0.01``
is 1% of the standard deviation of the observed values), seeded.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._device import check_device, resolve_device
from ..datasets import TrajectoryDataset
from ..solvers import AbstractEquation
from ._autograd import pde_residual
from ._domain import Domain, Problem
from ._networks import NetworkConfig, PINNNet
from ._optim import LBFGSReport, OptimConfig, adam, lbfgs
from ._sampling import sample_domain


@dataclass(frozen=True)
class Observations:
    """Point observations: ``x (n, d)``, ``t (n, 1)``, noisy ``u (n, C)`` and the clean values ``u_clean``."""

    x: Tensor
    t: Tensor
    u: Tensor
    u_clean: Tensor

    def misfit(self, net: nn.Module) -> Tensor:
        """Mean squared data misfit of ``net(x, t)``, relative to the mean square of the observations."""
        return ((net(self.x, self.t) - self.u) ** 2).mean() / (self.u**2).mean()

    def to(self, device: torch.device | str) -> Observations:
        """The same observations on ``device``."""
        return Observations(*(v.to(device) for v in (self.x, self.t, self.u, self.u_clean)))


def data_problem(equation: AbstractEquation, domain: Domain) -> Problem:
    """A :class:`Problem` for fitting data: the initial condition is never used (zeros, for the interface)."""
    return Problem(equation, domain, lambda x: torch.zeros(x.shape[0], len(equation.channels), dtype=x.dtype))


def observations_from_fields(
    fields: Tensor,
    times: Tensor,
    coords: Sequence[Tensor],
    n_points: int,
    noise: float = 0.01,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Observations:
    """``n_points`` distinct random samples of ``fields (T, C, *space)`` at ``times (T,)`` on the axes ``coords``.

    Noise: ``u + noise * std(u) * N(0, 1)`` per channel (``std`` over the drawn points), seeded by ``seed``.
    """
    if fields.ndim != 2 + len(coords) or fields.shape[0] != times.shape[0]:
        raise ValueError(
            f"expected fields (T, C, *space) with T = {times.shape[0]} and {len(coords)} spatial axes, "
            f"got {tuple(fields.shape)}"
        )
    gen = torch.Generator().manual_seed(seed)
    n_total = fields.shape[0] * math.prod(fields.shape[2:])
    if not 0 < n_points <= n_total:
        raise ValueError(f"n_points must be in 1..{n_total} (the trajectory's space-time points), got {n_points}")
    flat = torch.randperm(n_total, generator=gen)[:n_points]
    idx = torch.unravel_index(flat, (fields.shape[0], *fields.shape[2:]))
    ti, xi = idx[0], idx[1:]
    u = torch.stack([fields[(ti, c, *xi)] for c in range(fields.shape[1])], dim=1).to(dtype)
    x = torch.stack([torch.as_tensor(c, dtype=dtype)[i] for c, i in zip(coords, xi)], dim=1)
    t = times.to(dtype)[ti][:, None]
    noisy = u + noise * u.std(dim=0, keepdim=True) * torch.randn(u.shape, generator=gen, dtype=dtype)
    return Observations(x, t, noisy, u)


def sample_observations(
    dataset: TrajectoryDataset,
    trajectory: int,
    n_points: int,
    noise: float = 0.01,
    seed: int = 0,
    time_indices: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> Observations:
    """Random noisy point observations of trajectory ``trajectory`` of ``dataset`` (all stored times by default)."""
    if not 0 <= trajectory < len(dataset.trajectories):
        raise IndexError(f"trajectory {trajectory} outside 0..{len(dataset.trajectories) - 1}")
    times = list(range(dataset.n_steps)) if time_indices is None else list(time_indices)
    sample = dataset.read(trajectory, times)
    return observations_from_fields(
        sample["fields"], sample["time"], _axes(sample["grid"]), n_points, noise, seed, dtype
    )


def dataset_domain(dataset: TrajectoryDataset, time_indices: Sequence[int] | None = None) -> Domain:
    """The periodic box of a spectral-solver dataset (``[0, N dx)`` per axis) over its (selected) time span."""
    times = dataset.read(0, list(range(dataset.n_steps)) if time_indices is None else list(time_indices))["time"]
    axes = _axes(dataset.grid)
    lower = tuple(float(a[0]) for a in axes)
    upper = tuple(float(a[0] + (a[1] - a[0]) * a.shape[0]) for a in axes)
    return Domain(lower, upper, (float(times.min()), float(times.max())), (True,) * len(axes))


def _axes(grid: Tensor) -> list[Tensor]:
    """The 1D coordinate axes (float64) of a meshgrid ``(n_dims, *space)`` (ij indexing)."""
    n = grid.shape[0]
    return [grid[d][(0,) * d + (slice(None),) + (0,) * (n - 1 - d)].double() for d in range(n)]


class InverseCoefficients(nn.Module):
    """Unknown scalar coefficients of ``equation``, ``theta = exp(s)``, starting from ``initial`` guesses.

    ``equation()`` returns the equation with the current values (tensors, differentiable).
    """

    def __init__(self, equation: AbstractEquation, initial: dict[str, float]) -> None:
        super().__init__()
        names = {f.name for f in dataclasses.fields(equation)}
        for name, value in initial.items():
            if name not in names:
                raise ValueError(f"{type(equation).__name__} has no coefficient {name!r}; it has {sorted(names)}")
            if not value > 0:
                raise ValueError(f"log-parameterised coefficient {name!r} needs a positive initial guess, got {value}")
        self.base = equation
        self.log = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(math.log(v), dtype=torch.float64)) for k, v in initial.items()}
        )

    def equation(self) -> AbstractEquation:
        return dataclasses.replace(self.base, **{k: torch.exp(s) for k, s in self.log.items()})

    def values(self) -> dict[str, float]:
        return {k: float(torch.exp(s.detach())) for k, s in self.log.items()}


class AbstractDataFitPINN(nn.Module):
    """A solution network fitted to :class:`Observations` and to a residual on fixed Sobol points: what
    :class:`InversePINN` and :class:`~pdeforge.pinns.HiddenTermPINN` share. A subclass adds its unknowns (registered
    after the solution net, so :meth:`fit` optimises the net first, then them) and its ``objective``.

    Arguments:
        problem: the data problem of the solution net (:func:`data_problem`).
        domain, observations, network, n_residual, residual_weight, seed: as in the subclasses.
        device: where the networks, unknowns, points and observations live: a torch device, or ``cpu`` | ``cuda`` |
            ``cuda:N`` | ``auto`` (refused with a one-line ValueError where it is not here). Weights and points are
            drawn on the CPU from CPU generators, then moved: the same start on every device.
    """

    def __init__(
        self,
        problem: Problem,
        domain: Domain,
        observations: Observations,
        network: NetworkConfig,
        n_residual: int,
        residual_weight: float,
        seed: int,
        device: torch.device | str,
    ) -> None:
        super().__init__()
        if isinstance(device, str):  # refused in one line if it is not here; "auto": cuda if available
            check_device(device, type(self).__name__)
            device = resolve_device(device)
        self.device = torch.device(device)
        self.net = PINNNet(problem, network, seed).double().to(self.device)
        self.observations = observations.to(self.device)
        self.points = sample_domain(
            domain, n_residual, "sobol", torch.Generator().manual_seed(seed + 1), device=self.device
        )
        self.residual_weight = residual_weight

    @abstractmethod
    def objective(self, step: int | None) -> tuple[Tensor, dict]:
        """``(loss, record)``: the data misfit plus the weighted residual, and what to log."""

    def fit(self, optim: OptimConfig, log: Callable[[dict], None] | None = None) -> LBFGSReport | None:
        """Adam, then L-BFGS if ``optim.lbfgs_iters``, on every parameter (the net's, then the unknowns)."""
        params = list(self.parameters())
        adam(self.objective, params, optim, log)
        return lbfgs(self.objective, params, optim, log) if optim.lbfgs_iters else None


class InversePINN(AbstractDataFitPINN):
    """Solution network plus :class:`InverseCoefficients`, fitted to :class:`Observations` and the residual.

    Arguments:
        equation: the equation with placeholder values for the unknowns.
        initial: initial guesses of the unknown coefficients, e.g. ``{"nu": 0.05}``.
        domain: the space-time box (e.g. :func:`dataset_domain`).
        observations: the data.
        n_residual: residual points (Sobol, fixed); residual_weight: ``l_r``.
        device: where everything lives (see :class:`AbstractDataFitPINN`).
    """

    def __init__(
        self,
        equation: AbstractEquation,
        initial: dict[str, float],
        domain: Domain,
        observations: Observations,
        network: NetworkConfig = NetworkConfig(width=50, depth=4),  # noqa: B008 (frozen)
        n_residual: int = 4096,
        residual_weight: float = 1.0,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        problem = data_problem(equation, domain)
        super().__init__(problem, domain, observations, network, n_residual, residual_weight, seed, device)
        self.problem = problem
        self.coefficients = InverseCoefficients(equation, initial).to(self.device)

    def objective(self, step: int | None) -> tuple[Tensor, dict]:
        data = self.observations.misfit(self.net)
        r, _ = pde_residual(self.coefficients.equation(), self.net, *self.points)
        res = (r**2).mean()
        record = {
            "loss_data": data.detach(),
            "loss_residual": res.detach(),
            **{f"coef_{k}": v for k, v in self.coefficients.values().items()},
        }
        return data + self.residual_weight * res, record


__all__ = [
    "Observations",
    "observations_from_fields",
    "sample_observations",
    "dataset_domain",
    "InverseCoefficients",
    "InversePINN",
    "AbstractDataFitPINN",
]
