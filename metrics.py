"""Error metrics for predicted fields, shared by every model family (operators, PINNs, solvers).

All functions take channels-first tensors ``pred`` and ``target`` of the same shape, either one frame per sample
``(B, C, *space)`` or a rollout ``(B, T, C, *space)``, and the number of spatial axes ``n_spatial_dims`` (the
trailing axes). Every metric is first computed over space for each sample, time step and channel, giving a
``(B, [T,] C)`` tensor, then reduced:

- ``reduction="mean"`` (default): a 0-d tensor, the mean over channels and steps of each sample, then over the batch;
- ``reduction="sample"``: ``(B,)``, the per-sample values (mean over channels and steps);
- ``reduction="none"``: the raw ``(B, [T,] C)`` values.

With ``e = pred - target`` and means over the spatial grid (N points)::

    rel_l2   = ||e||_2 / ||target||_2                  rel_l1 = ||e||_1 / ||target||_1
    rmse     = sqrt(mean(e^2))                         nrmse  = rmse / sqrt(mean(target^2))      (PDEBench nRMSE)
    max_err  = max |e|                                 crmse  = |mean(pred) - mean(target)|     (PDEBench cRMSE)
    brmse    = sqrt(mean of e^2 over the boundary points)                                       (PDEBench bRMSE)
    vrmse    = sqrt(mean(e^2) / (var(target) + eps))   (The Well VRMSE, population variance)
    correlation = cov(pred, target) / (std(pred) std(target))   (Pearson over space)
    frmse    = Fourier-band RMSE (PDEBench fRMSE, see :func:`frmse`)

Differences from the reference codes, all in the batch reduction: PDEBench takes the root of the batch mean for
cRMSE and fRMSE and the batch maximum for the max error; here every metric is per sample first, then averaged, so
that ``reduction="sample"`` is meaningful. For one sample the definitions coincide. The Well divides by the unbiased
variance; here the population variance is used, so the mean predictor scores exactly ``vrmse = 1`` (for eps = 0).

Ensembles (``members`` with a member axis, against ``truth``): the fair CRPS, the spread-skill ratio, the rank
histogram, the energy score, and the high-correlation duration of the ensemble mean and of its members
(:func:`crps_ensemble` and the functions after it; :func:`evaluate_ensemble` gives them all).

Rollouts: ``pred`` and ``target`` must be aligned on the predicted steps only. Initial (input) frames are never
counted as predictions, and mismatched time lengths are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "rel_l2",
    "rel_l1",
    "rmse",
    "nrmse",
    "max_error",
    "crmse",
    "brmse",
    "frmse",
    "frmse_spectrum",
    "vrmse",
    "correlation",
    "high_correlation_duration",
    "crps_ensemble",
    "spread_skill_ratio",
    "rank_histogram",
    "energy_score",
    "ensemble_high_correlation_duration",
    "evaluate_ensemble",
    "rollout_curve",
    "rollout_curves",
    "evaluate_all",
    "FOURIER_BANDS",
    "POINTWISE_METRICS",
]

# PDEBench band limits on the shell index k: low [0, 4), mid [4, 12), high [12, k_max].
FOURIER_BANDS: dict[str, tuple[int, int | None]] = {"low": (0, 4), "mid": (4, 12), "high": (12, None)}

_REDUCTIONS = ("mean", "sample", "none")


# ----------------------------------------------------------------------------------------------- input checks
def _check(pred: Tensor, target: Tensor, n_spatial_dims: int, *, need_time: bool = False) -> bool:
    """Validate a (pred, target) pair; return whether it carries a time axis."""
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"pred and target must be torch tensors, got {type(pred).__name__} and {type(target).__name__}")
    if not isinstance(n_spatial_dims, int) or n_spatial_dims < 1:
        raise ValueError(f"n_spatial_dims must be a positive int, got {n_spatial_dims!r}")
    n = n_spatial_dims
    for name, t in (("pred", pred), ("target", target)):
        if t.ndim not in (n + 2, n + 3):
            raise ValueError(
                f"{name}: expected (B, C, *space) or (B, T, C, *space) with {n} spatial axes, i.e. {n + 2} or {n + 3} "
                f"dims, got shape {tuple(t.shape)}: add batch and channel axes with u[None, None] or fix n_spatial_dims"
            )
    has_time = pred.ndim == n + 3
    if pred.ndim == n + 3 and target.ndim == n + 3 and pred.shape[1] != target.shape[1]:
        raise ValueError(
            f"pred has {pred.shape[1]} time steps but target has {target.shape[1]} (shapes {tuple(pred.shape)} and "
            f"{tuple(target.shape)}): align both on the predicted steps only, e.g. target[:, n_steps_input:]; "
            "initial frames are never counted as predictions"
        )
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if need_time and not has_time:
        raise ValueError(
            f"expected a rollout (B, T, C, *space) with {n} spatial axes, got shape {tuple(pred.shape)}: "
            "add a time axis with u[:, None]"
        )
    return has_time


def _reduce(values: Tensor, reduction: str) -> Tensor:
    """(B, [T,] C) -> per ``reduction``."""
    if reduction == "none":
        return values
    per_sample = values.reshape(values.shape[0], -1).mean(dim=1)
    if reduction == "sample":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _space(n: int) -> tuple[int, ...]:
    return tuple(range(-n, 0))


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


# ----------------------------------------------------------------------------------------------- pointwise metrics
def rel_l2(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Relative L2 error ``||pred - target||_2 / ||target||_2`` over space.

    pred, target: (B, [T,] C, *space). Returns per ``reduction`` (see module docstring).
    """
    _check(pred, target, n_spatial_dims)
    s = _space(n_spatial_dims)
    num = torch.sqrt(((pred - target) ** 2).sum(dim=s))
    den = torch.sqrt((target**2).sum(dim=s)).clamp_min(_tiny(target))
    return _reduce(num / den, reduction)


def rel_l1(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Relative L1 error ``sum|pred - target| / sum|target|`` over space. Shapes as :func:`rel_l2`."""
    _check(pred, target, n_spatial_dims)
    s = _space(n_spatial_dims)
    num = (pred - target).abs().sum(dim=s)
    den = target.abs().sum(dim=s).clamp_min(_tiny(target))
    return _reduce(num / den, reduction)


def rmse(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Root mean squared error ``sqrt(mean((pred - target)^2))`` over space. Shapes as :func:`rel_l2`."""
    _check(pred, target, n_spatial_dims)
    return _reduce(torch.sqrt(((pred - target) ** 2).mean(dim=_space(n_spatial_dims))), reduction)


def nrmse(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Normalised RMSE (PDEBench nRMSE): ``rmse / sqrt(mean(target^2))`` over space. Shapes as :func:`rel_l2`."""
    _check(pred, target, n_spatial_dims)
    s = _space(n_spatial_dims)
    num = torch.sqrt(((pred - target) ** 2).mean(dim=s))
    den = torch.sqrt((target**2).mean(dim=s)).clamp_min(_tiny(target))
    return _reduce(num / den, reduction)


def max_error(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Maximum absolute error ``max |pred - target|`` over space. Shapes as :func:`rel_l2`."""
    _check(pred, target, n_spatial_dims)
    err = (pred - target).abs().flatten(start_dim=-n_spatial_dims)
    return _reduce(err.amax(dim=-1), reduction)


def crmse(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Conserved-quantity error (PDEBench cRMSE): ``|mean(pred) - mean(target)|`` over space.

    The spatial mean is the conserved quantity (mass) per unit volume. Shapes as :func:`rel_l2`.
    """
    _check(pred, target, n_spatial_dims)
    s = _space(n_spatial_dims)
    return _reduce((pred.mean(dim=s) - target.mean(dim=s)).abs(), reduction)


def brmse(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Boundary RMSE (PDEBench bRMSE): RMS of the error over the boundary faces of the grid.

    For every spatial axis the first and last slices are boundary faces; the squared errors of all faces are summed
    and divided by the total number of face points (corners belong to several faces and count once per face, as in
    PDEBench). In 1D this is ``sqrt((e_0^2 + e_{N-1}^2) / 2)``. Shapes as :func:`rel_l2`.
    """
    _check(pred, target, n_spatial_dims)
    n = n_spatial_dims
    err2 = (pred - target) ** 2
    space_shape = err2.shape[-n:]
    face_space = tuple(range(-(n - 1), 0))  # the n-1 spatial axes left on a face
    total = torch.zeros(err2.shape[: err2.ndim - n], dtype=err2.dtype, device=err2.device)
    count = 0
    for ax in range(-n, 0):
        for idx in (0, space_shape[ax] - 1):
            face = err2.select(ax, idx)
            total = total + (face.sum(dim=face_space) if face_space else face)
            count += math.prod(space_shape) // space_shape[ax]
    return _reduce(torch.sqrt(total / count), reduction)


def frmse_spectrum(
    pred: Tensor, target: Tensor, n_spatial_dims: int, domain_lengths: tuple[float, ...] | None = None
) -> Tensor:
    """Error spectrum on wavenumber shells, PDEBench's normalisation: returns ``(B, [T,] C, K)``.

    With ``E = fftn(pred - target)`` over space (unnormalised DFT), ``N = prod(N_d)`` and ``L = prod(L_d)``::

        spec[k] = sqrt( sum_{i in shell k} |E_i|^2 ) / N * L

    1D (as PDEBench): shells are the rfft indices ``k = 0 .. N//2``. nD: only the non-negative orthant
    ``0 <= i_d < N_d // 2`` is summed, shell ``k = floor(|i|)``, kept for ``k < min_d N_d // 2``. A sine of
    amplitude A at wavenumber k gives ``spec[k] = A L / 2``.
    """
    _check(pred, target, n_spatial_dims)
    n = n_spatial_dims
    space_shape = pred.shape[-n:]
    lengths = (1.0,) * n if domain_lengths is None else tuple(float(x) for x in domain_lengths)
    if len(lengths) != n:
        raise ValueError(f"domain_lengths must have {n} entries (one per spatial axis), got {domain_lengths!r}")
    scale = math.prod(lengths) / math.prod(space_shape)
    err = pred - target
    if n == 1:
        power = torch.fft.rfft(err, dim=-1).abs() ** 2  # (..., N//2 + 1)
        return torch.sqrt(power) * scale
    power = torch.fft.fftn(err, dim=_space(n)).abs() ** 2
    half = [s // 2 for s in space_shape]
    power = power[(Ellipsis, *[slice(0, h) for h in half])]
    k_max = min(half)
    grids = torch.meshgrid(*[torch.arange(h, dtype=torch.float64) for h in half], indexing="ij")
    shell = torch.floor(torch.sqrt(sum(g**2 for g in grids))).long().flatten()
    keep = shell < k_max
    flat = power.flatten(start_dim=-n)[..., keep]
    out = torch.zeros((*flat.shape[:-1], k_max), dtype=flat.dtype, device=flat.device)
    out.index_add_(-1, shell[keep].to(flat.device), flat)
    return torch.sqrt(out) * scale


def frmse(
    pred: Tensor,
    target: Tensor,
    n_spatial_dims: int,
    band: str = "low",
    domain_lengths: tuple[float, ...] | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Fourier-band RMSE (PDEBench fRMSE): the mean of :func:`frmse_spectrum` over the shells of one band.

    Bands (:data:`FOURIER_BANDS`, PDEBench iLow=4, iHigh=12): ``low`` k in [0, 4), ``mid`` [4, 12), ``high`` [12, K).
    domain_lengths: extent per axis (default 1.0, as PDEBench). Shapes as :func:`rel_l2`.
    """
    if band not in FOURIER_BANDS:
        raise ValueError(f"band must be one of {tuple(FOURIER_BANDS)}, got {band!r}")
    spec = frmse_spectrum(pred, target, n_spatial_dims, domain_lengths)
    lo, hi = FOURIER_BANDS[band]
    sel = spec[..., lo:hi]
    if sel.shape[-1] == 0:
        raise ValueError(
            f"band {band!r} (shells {lo}..{hi}) is empty for a grid of {tuple(pred.shape[-n_spatial_dims:])} "
            f"({spec.shape[-1]} shells): use a finer grid"
        )
    return _reduce(sel.mean(dim=-1), reduction)


def vrmse(pred: Tensor, target: Tensor, n_spatial_dims: int, eps: float = 1e-7, reduction: str = "mean") -> Tensor:
    """Variance-scaled RMSE (The Well): ``sqrt(mean((pred - target)^2) / (var(target) + eps))`` over space.

    ``var`` is the population variance over space, so predicting the spatial mean gives ``sqrt(var/(var+eps))``,
    i.e. 1 up to eps. Shapes as :func:`rel_l2`.
    """
    _check(pred, target, n_spatial_dims)
    s = _space(n_spatial_dims)
    mse = ((pred - target) ** 2).mean(dim=s)
    var = target.var(dim=s, unbiased=False)
    return _reduce(torch.sqrt(mse / (var + eps).clamp_min(_tiny(target))), reduction)


def correlation(pred: Tensor, target: Tensor, n_spatial_dims: int, reduction: str = "mean") -> Tensor:
    """Pearson correlation over space, per sample, step and channel: ``cov(p, y) / (std(p) std(y))``.

    A constant field has no defined correlation; its std is clamped to the smallest normal float, giving 0.
    Shapes as :func:`rel_l2`.
    """
    _check(pred, target, n_spatial_dims)
    s = _space(n_spatial_dims)
    p = pred - pred.mean(dim=s, keepdim=True)
    y = target - target.mean(dim=s, keepdim=True)
    cov = (p * y).mean(dim=s)
    std = torch.sqrt((p**2).mean(dim=s) * (y**2).mean(dim=s)).clamp_min(_tiny(target))
    return _reduce(cov / std, reduction)


# The metrics that take (pred, target, n_spatial_dims, reduction=...) and nothing else, by name.
POINTWISE_METRICS: dict[str, Callable[..., Tensor]] = {
    "rel_l2": rel_l2,
    "rel_l1": rel_l1,
    "rmse": rmse,
    "nrmse": nrmse,
    "max_error": max_error,
    "crmse": crmse,
    "brmse": brmse,
    "vrmse": vrmse,
    "correlation": correlation,
}


# ----------------------------------------------------------------------------------------------- rollouts
def high_correlation_duration(
    pred: Tensor, target: Tensor, n_spatial_dims: int, dt: float, threshold: float = 0.8, reduction: str = "mean"
) -> Tensor:
    """Time for which the prediction stays correlated with the target: ``dt * (first step with corr < threshold)``.

    pred, target: rollouts ``(B, T, C, *space)`` aligned on the predicted steps (step 0 is the first prediction).
    The correlation is averaged over channels per step. A rollout that never drops below ``threshold`` scores
    ``T * dt``; one that starts below scores 0. Returns ``(B,)`` for ``reduction="sample"`` (or ``"none"``), else
    the batch mean.
    """
    _check(pred, target, n_spatial_dims, need_time=True)
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    corr = correlation(pred, target, n_spatial_dims, reduction="none").mean(dim=-1)  # (B, T)
    below = corr < threshold
    n_steps = corr.shape[1]
    steps = torch.arange(n_steps, device=corr.device).expand_as(corr)
    first = torch.where(below, steps, torch.full_like(steps, n_steps)).amin(dim=1)
    duration = first.to(pred.dtype) * dt
    if reduction in ("sample", "none"):
        return duration
    if reduction == "mean":
        return duration.mean()
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def rollout_curve(
    metric: str | Callable[..., Tensor], pred: Tensor, target: Tensor, n_spatial_dims: int, **kwargs
) -> Tensor:
    """A metric per step of a rollout, averaged over batch and channels: returns ``(T,)``.

    metric: a name in :data:`POINTWISE_METRICS` or ``frmse_low|mid|high``, or a function with the signature of
    :func:`rel_l2`. pred, target: ``(B, T, C, *space)`` aligned on predicted steps only (same T, else an error).
    """
    _check(pred, target, n_spatial_dims, need_time=True)
    if isinstance(metric, str):
        if metric.startswith("frmse_"):
            fn, kwargs = frmse, {"band": metric.removeprefix("frmse_"), **kwargs}
        elif metric in POINTWISE_METRICS:
            fn = POINTWISE_METRICS[metric]
        else:
            raise ValueError(
                f"unknown metric {metric!r}; expected one of {sorted(POINTWISE_METRICS)} or frmse_low|mid|high"
            )
    else:
        fn = metric
    values = fn(pred, target, n_spatial_dims, reduction="none", **kwargs)  # (B, T, C)
    return values.mean(dim=(0, 2))


def rollout_curves(
    pred: Tensor,
    target: Tensor,
    n_spatial_dims: int,
    metrics: tuple[str, ...] = ("rmse", "nrmse", "vrmse", "correlation"),
) -> dict[str, Tensor]:
    """:func:`rollout_curve` for several metric names: ``{name: (T,)}``."""
    return {name: rollout_curve(name, pred, target, n_spatial_dims) for name in metrics}


def evaluate_all(
    pred: Tensor,
    target: Tensor,
    n_spatial_dims: int,
    domain_lengths: tuple[float, ...] | None = None,
    dt: float | None = None,
    threshold: float = 0.8,
) -> dict[str, float]:
    """Every metric, batch-mean reduced, as plain floats (JSON-able).

    Keys: the :data:`POINTWISE_METRICS` names, ``frmse_low``, ``frmse_mid``, ``frmse_high`` (when the grid has
    shells in that band), and ``high_correlation_duration`` for rollouts ``(B, T, C, *space)`` when ``dt`` is given.
    """
    has_time = _check(pred, target, n_spatial_dims)
    with torch.no_grad():
        out = {name: float(fn(pred, target, n_spatial_dims)) for name, fn in POINTWISE_METRICS.items()}
        n_shells = frmse_spectrum(pred[:1], target[:1], n_spatial_dims, domain_lengths).shape[-1]
        for band, (lo, _) in FOURIER_BANDS.items():
            if n_shells > lo:
                out[f"frmse_{band}"] = float(frmse(pred, target, n_spatial_dims, band, domain_lengths))
        if has_time and dt is not None:
            out["high_correlation_duration"] = float(
                high_correlation_duration(pred, target, n_spatial_dims, dt, threshold)
            )
    return out


# ----------------------------------------------------------------------------------------------- ensembles
# Probabilistic metrics of an ensemble ``members`` (the member axis ``member_dim``, default 0) against ``truth``
# (``members`` without that axis). Pointwise scores are reduced as ``reduction`` says: "mean" (a 0-d tensor over
# every point), "sample" (``(B,)``, the mean over all axes of truth but its first) or "none" (truth's shape).
def _members(members: Tensor, truth: Tensor, member_dim: int) -> Tensor:
    """``members`` with the member axis moved first; checks that it is ``truth`` with one more axis."""
    if not isinstance(members, Tensor) or not isinstance(truth, Tensor):
        raise TypeError(
            f"members and truth must be torch tensors, got {type(members).__name__}, {type(truth).__name__}"
        )
    if members.ndim != truth.ndim + 1 or not -members.ndim <= member_dim < members.ndim:
        raise ValueError(
            f"members {tuple(members.shape)} must be truth {tuple(truth.shape)} with a member axis at member_dim="
            f"{member_dim}: expected {truth.ndim + 1} dims"
        )
    moved = members.movedim(member_dim, 0)
    if moved.shape[1:] != truth.shape:
        raise ValueError(
            f"members {tuple(members.shape)} without the member axis (member_dim={member_dim}) is "
            f"{tuple(moved.shape[1:])}, but truth is {tuple(truth.shape)}"
        )
    return moved


def _reduce_points(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sample":
        return values.reshape(values.shape[0], -1).mean(dim=1)
    if reduction == "mean":
        return values.mean()
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _mean_pair_distance(x: Tensor, fair: bool) -> Tensor:
    """``sum_{i,j} |x_i - x_j| / (m (m - 1))`` (fair) or ``/ m^2``, over axis 0, in O(m log m) by sorting:
    ``sum_{i<j} (x_(j) - x_(i)) = sum_k (2k - m - 1) x_(k)`` for the order statistics ``k = 1..m``."""
    m = x.shape[0]
    k = torch.arange(1, m + 1, dtype=x.dtype, device=x.device).reshape((m,) + (1,) * (x.ndim - 1))
    pairs = 2 * ((2 * k - m - 1) * torch.sort(x, dim=0).values).sum(dim=0)
    return pairs / (m * (m - 1) if fair else m * m)


def crps_ensemble(
    members: Tensor, truth: Tensor, member_dim: int = 0, fair: bool = True, reduction: str = "mean"
) -> Tensor:
    """Continuous ranked probability score of an ensemble, pointwise, then reduced (see above)::

        CRPS = 1/m sum_i |X_i - y| - 1/(2 m (m - 1)) sum_{i,j} |X_i - X_j|     (fair, Ferro 2014; Zamo & Naveau 2018)
        CRPS = 1/m sum_i |X_i - y| - 1/(2 m^2)       sum_{i,j} |X_i - X_j|     (fair=False: the CRPS of the
                                                                                empirical distribution)

    The fair score's expectation over members drawn from F equals the CRPS of F itself for any m >= 2; the plain
    one is larger by ``E|X - X'| / (2m)``. Lower is better; it has the units of the field.
    """
    x = _members(members, truth, member_dim)
    m = x.shape[0]
    if fair and m < 2:
        raise ValueError(f"the fair CRPS needs at least 2 members, got {m}; use fair=False for one")
    skill = (x - truth).abs().mean(dim=0)
    return _reduce_points(skill - 0.5 * _mean_pair_distance(x, fair), reduction)


def spread_skill_ratio(members: Tensor, truth: Tensor, member_dim: int = 0, reduction: str = "mean") -> Tensor:
    """``sqrt((m + 1) / m) * spread / skill`` (Fortin et al., Mon. Wea. Rev. 142, 2014): ``spread^2`` is the mean
    over points of the unbiased ensemble variance, ``skill^2`` the mean squared error of the ensemble mean. A
    calibrated ensemble (truth exchangeable with the members) scores 1 in expectation: ``E[(mean - y)^2] =
    (1 + 1/m) var``, which the factor removes. Below 1: under-dispersed (over-confident); above 1: over-dispersed.
    ``reduction``: "mean" (one ratio over all points) or "sample" (one per index of truth's first axis)."""
    x = _members(members, truth, member_dim)
    m = x.shape[0]
    if m < 2:
        raise ValueError(f"the spread needs at least 2 members, got {m}")
    var = x.var(dim=0, unbiased=True)
    err2 = (x.mean(dim=0) - truth) ** 2
    if reduction == "sample":
        var, err2 = var.reshape(var.shape[0], -1).mean(dim=1), err2.reshape(err2.shape[0], -1).mean(dim=1)
    elif reduction == "mean":
        var, err2 = var.mean(), err2.mean()
    else:
        raise ValueError(f"reduction must be 'mean' or 'sample', got {reduction!r}")
    return math.sqrt((m + 1) / m) * torch.sqrt(var / err2.clamp_min(_tiny(err2)))


def rank_histogram(
    members: Tensor, truth: Tensor, member_dim: int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """Talagrand's rank histogram: counts ``(m + 1,)`` (int64) of the rank of the truth among the m members, over
    every point. The rank is the number of members below the truth, plus a uniform draw among the tied ones
    (``generator``), so that ties (e.g. a clipped field) do not pile up in one bin. Flat for a calibrated ensemble,
    U-shaped for an under-dispersed one, peaked in the middle for an over-dispersed one."""
    x = _members(members, truth, member_dim)
    m = x.shape[0]
    below = (x < truth).sum(dim=0)
    ties = (x == truth).sum(dim=0)
    u = torch.rand(ties.shape, generator=generator, dtype=torch.float64).to(ties.device)
    rank = below + torch.floor(u * (ties + 1)).to(below.dtype)
    return torch.bincount(rank.flatten(), minlength=m + 1)


def energy_score(
    members: Tensor, truth: Tensor, member_dim: int = 0, fair: bool = True, reduction: str = "mean"
) -> Tensor:
    """The energy score (Gneiting & Raftery, JASA 102, 2007), the CRPS of a multivariate forecast: with ``||.||``
    the Euclidean norm over all axes of truth but its first (the whole field of a sample)::

        ES = 1/m sum_i ||X_i - y|| - 1/(2 m (m - 1)) sum_{i,j} ||X_i - X_j||      (fair; fair=False: / (2 m^2))

    Returns ``(B,)`` for ``reduction="sample"`` (or "none"), else the mean. Costs m^2 field differences."""
    x = _members(members, truth, member_dim)
    m = x.shape[0]
    if fair and m < 2:
        raise ValueError(f"the fair energy score needs at least 2 members, got {m}; use fair=False for one")
    flat = x.reshape(m, x.shape[1], -1)
    skill = torch.linalg.vector_norm(flat - truth.reshape(1, truth.shape[0], -1), dim=-1).mean(dim=0)
    pairs = sum(torch.linalg.vector_norm(flat[i] - flat, dim=-1).sum(dim=0) for i in range(m))
    score = skill - 0.5 * pairs / (m * (m - 1) if fair else m * m)
    if reduction in ("sample", "none"):
        return score
    if reduction == "mean":
        return score.mean()
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def ensemble_high_correlation_duration(
    members: Tensor, truth: Tensor, n_spatial_dims: int, dt: float, threshold: float = 0.8, member_dim: int = 0
) -> dict[str, Tensor]:
    """:func:`high_correlation_duration` of the ensemble mean (``"mean"``, 0-d) and of each member (``"members"``,
    ``(m,)``, each the batch mean) for rollouts ``(B, T, C, *space)`` with the member axis at ``member_dim``."""
    x = _members(members, truth, member_dim)
    mean = high_correlation_duration(x.mean(dim=0), truth, n_spatial_dims, dt, threshold)
    each = torch.stack([high_correlation_duration(xi, truth, n_spatial_dims, dt, threshold) for xi in x])
    return {"mean": mean, "members": each}


def evaluate_ensemble(
    members: Tensor,
    truth: Tensor,
    n_spatial_dims: int,
    member_dim: int = 0,
    domain_lengths: tuple[float, ...] | None = None,
    dt: float | None = None,
    threshold: float = 0.8,
) -> dict[str, float]:
    """:func:`evaluate_all` of the ensemble mean, plus ``crps``, ``spread_skill``, ``energy_score`` and, for
    rollouts with ``dt``, ``high_correlation_duration_members`` (the members' mean duration), as plain floats."""
    x = _members(members, truth, member_dim)
    with torch.no_grad():
        out = evaluate_all(x.mean(dim=0), truth, n_spatial_dims, domain_lengths, dt, threshold)
        out["crps"] = float(crps_ensemble(x, truth))
        out["spread_skill"] = float(spread_skill_ratio(x, truth))
        out["energy_score"] = float(energy_score(x, truth))
        if "high_correlation_duration" in out:
            hcd = ensemble_high_correlation_duration(x, truth, n_spatial_dims, dt, threshold)
            out["high_correlation_duration_members"] = float(hcd["members"].mean())
    return out
