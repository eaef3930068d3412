"""Collocation points in space-time and residual-based adaptive resampling.

Samplers draw ``n`` points of the box ``prod [a_d, b_d] x [t0, t1]`` as ``(x (n, d), t (n, 1))``:

* ``"uniform"``: i.i.d. uniform;
* ``"lhs"``: Latin hypercube (one point per stratum ``[(i - 1)/n, i/n)`` in every coordinate, strata shuffled);
* ``"sobol"``: scrambled Sobol sequence (``torch.quasirandom.SobolEngine``);
* ``"grid"``: the tensor grid with ``round(n^(1/(d+1)))`` points per axis (cell centres in space, so periodic
  ends are not sampled twice; ``t`` includes both ends).

Points are drawn on the CPU from a CPU generator and then moved to ``device``: the same points on every device.

Adaptive refinement from a dense candidate set with residuals ``r``:

* :func:`rar` (residual-based adaptive refinement, Lu et al. 2021, DeepXDE): add the ``k`` candidates with the
  largest ``|r|``;
* :func:`rad` (residual-based adaptive distribution, Wu et al. 2023): draw a new set with probability
  ``p(x) ∝ |r|^k / mean(|r|^k) + c``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._domain import Domain

Points = tuple[Tensor, Tensor]  # x (n, d), t (n, 1)


def _unit_uniform(n: int, dim: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, dim, generator=generator, dtype=torch.float64)


def _unit_lhs(n: int, dim: int, generator: torch.Generator) -> Tensor:
    jitter = torch.rand(n, dim, generator=generator, dtype=torch.float64)
    strata = torch.stack([torch.randperm(n, generator=generator) for _ in range(dim)], dim=1).to(torch.float64)
    return (strata + jitter) / n


def _unit_sobol(n: int, dim: int, generator: torch.Generator) -> Tensor:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)


def _unit_grid(n: int, dim: int, generator: torch.Generator) -> Tensor:
    m = max(2, round(n ** (1.0 / dim)))
    axes = [(torch.arange(m, dtype=torch.float64) + 0.5) / m for _ in range(dim - 1)]
    axes.append(torch.linspace(0, 1, m, dtype=torch.float64))
    return torch.stack([a.reshape(-1) for a in torch.meshgrid(*axes, indexing="ij")], dim=1)


SAMPLERS: dict[str, Callable[[int, int, torch.Generator], Tensor]] = {
    "uniform": _unit_uniform,
    "lhs": _unit_lhs,
    "sobol": _unit_sobol,
    "grid": _unit_grid,
}


def sample_domain(
    domain: Domain,
    n: int,
    method: str = "sobol",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Points:
    """``n`` points of the space-time box (``"grid"`` returns the nearest full grid): ``x (n, d)``, ``t (n, 1)`` on
    ``device`` (drawn on the CPU from ``generator``, a CPU generator)."""
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {sorted(SAMPLERS)}")
    if n < 1:
        raise ValueError(f"need n >= 1 points, got {n}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    u = SAMPLERS[method](n, domain.ndim + 1, generator)
    lo = torch.tensor((*domain.lower, domain.t_span[0]), dtype=torch.float64)
    hi = torch.tensor((*domain.upper, domain.t_span[1]), dtype=torch.float64)
    z = (lo + (hi - lo) * u).to(dtype)
    return z[:, :-1].contiguous().to(device), z[:, -1:].contiguous().to(device)


def sample_initial(
    domain: Domain,
    n: int,
    method: str = "sobol",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Points:
    """``n`` points at ``t = t0``, on ``device``."""
    x, t = sample_domain(domain, n, method, generator, dtype, device)
    return x, torch.full_like(t, domain.t_span[0])


def rar(points: Points, candidates: Points, residual: Tensor, k: int) -> Points:
    """Residual-based adaptive refinement: ``points`` plus the ``k`` candidates of largest ``|residual|``.

    Arguments:
        residual: ``(n_candidates, C)`` or ``(n_candidates,)`` residuals at ``candidates``.
    """
    score = _score(residual, candidates)
    idx = torch.topk(score, min(k, score.numel())).indices
    return torch.cat([points[0], candidates[0][idx]]), torch.cat([points[1], candidates[1][idx]])


def rad(
    candidates: Points,
    residual: Tensor,
    n: int,
    k: float = 1.0,
    c: float = 1.0,
    generator: torch.Generator | None = None,
) -> Points:
    """Residual-based adaptive distribution: ``n`` candidates drawn without replacement with
    ``p ∝ |r|^k / mean(|r|^k) + c`` (drawn on the CPU, from ``generator``, a CPU generator)."""
    score = _score(residual, candidates).double().cpu() ** k
    p = score / score.mean().clamp_min(1e-300) + c
    idx = torch.multinomial(p / p.sum(), n, replacement=False, generator=generator).to(candidates[0].device)
    return candidates[0][idx], candidates[1][idx]


def _score(residual: Tensor, candidates: Points) -> Tensor:
    r = residual.detach()
    r = r.abs() if r.ndim == 1 else r.abs().sum(dim=1)
    if r.shape[0] != candidates[0].shape[0]:
        raise ValueError(f"{r.shape[0]} residuals for {candidates[0].shape[0]} candidate points")
    return r


__all__ = ["SAMPLERS", "Points", "sample_domain", "sample_initial", "rar", "rad"]
