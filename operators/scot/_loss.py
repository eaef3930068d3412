"""The scOT training loss and the Poseidon evaluation metric."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# Added to each group's normaliser so that an all-zero target does not divide by zero (as in Poseidon).
LOSS_EPS = 1e-10


def _check_pair(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.dim() < 2:
        raise ValueError(f"{name}: expected (B, C, ...) tensors, got shape {tuple(pred.shape)}")


def _groups(channel_slice_list: Sequence[int], n_channels: int) -> list[tuple[int, int]]:
    csl = [int(c) for c in channel_slice_list]
    if len(csl) < 2 or csl[0] != 0 or any(a >= b for a, b in zip(csl, csl[1:])) or csl[-1] > n_channels:
        raise ValueError(
            f"channel_slice_list {csl} must start at 0, increase strictly and end at most at the {n_channels} "
            "channels of pred (e.g. [0, 1, 3, 4])"
        )
    return list(zip(csl, csl[1:]))


def scot_loss(pred: Tensor, target: Tensor, channel_slice_list: Sequence[int] | None = None, p: int = 1) -> Tensor:
    """Poseidon's training loss: the relative L^p loss per channel group, averaged over the groups.

    loss = mean_g  mean|pred_g - target_g|^p / (mean|target_g|^p + 1e-10),   g = channels [c_g, c_{g+1})

    (p = 1: L1, p = 2: mean squared error; the means run over batch, group channels and space.) Without a
    `channel_slice_list` it is the plain (absolute) mean |pred - target|^p.

    Args:
        pred, target: (B, C, *space).
        channel_slice_list: group boundaries [0, c_1, ..., c_G], e.g. [0, 1, 3, 4] for (rho, (u, v), p).
        p: 1 or 2.

    Returns:
        Scalar tensor.
    """
    _check_pair(pred, target, "scot_loss")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (L1) or 2 (MSE), got {p}")
    fn = F.l1_loss if p == 1 else F.mse_loss
    if channel_slice_list is None:
        return fn(pred, target)
    terms = [
        fn(pred[:, a:b], target[:, a:b]) / (fn(target[:, a:b], torch.zeros_like(target[:, a:b])) + LOSS_EPS)
        for a, b in _groups(channel_slice_list, pred.shape[1])
    ]
    return torch.stack(terms).mean()


def relative_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample relative L1 error in percent: 100 sum|pred - target| / sum|target| over channels and space
    (a zero target counts as 1e-10). Shapes: (B, C, *space) -> (B,)."""
    _check_pair(pred, target, "relative_l1")
    err = (pred - target).abs().flatten(1).sum(1)
    norm = target.abs().flatten(1).sum(1)
    norm = torch.where(norm == 0, torch.full_like(norm, LOSS_EPS), norm)
    return 100.0 * err / norm


def _median(x: Tensor) -> Tensor:
    """Median over axis 0, the mean of the two middle values for an even count (as numpy.median)."""
    return torch.quantile(x, 0.5, dim=0, interpolation="midpoint")


def median_relative_l1(pred: Tensor, target: Tensor, channel_slice_list: Sequence[int] | None = None) -> Tensor:
    """Poseidon's headline metric: the median over samples of the per-sample relative L1 error, in percent.

    With `channel_slice_list` the error is computed per channel group and a (G,) tensor of medians is
    returned (Poseidon reports these and their mean); without it, one scalar over all channels.

    Shapes: pred, target (B, C, *space) -> () or (G,).
    """
    _check_pair(pred, target, "median_relative_l1")
    if channel_slice_list is None:
        return _median(relative_l1(pred, target).double()).to(pred.dtype)
    errors = [relative_l1(pred[:, a:b], target[:, a:b]) for a, b in _groups(channel_slice_list, pred.shape[1])]
    return _median(torch.stack(errors, dim=1).double()).to(pred.dtype)
