"""The learning-rate schedule of every family: linear warm-up, then cosine decay to 0 (or constant, or exponential
decay as PINNs use), stepped per optimiser step."""

from __future__ import annotations

import math

import torch

__all__ = ["lr_factor", "make_scheduler", "warmup_steps"]


def warmup_steps(total: int, warmup: float) -> int:
    """The number of warm-up steps: ``warmup`` as a fraction of ``total`` (at least 1 when ``warmup`` > 0)."""
    return max(1, int(warmup * total)) if warmup > 0 else 0


def lr_factor(
    step: int, total: int, warm: int, kind: str = "cosine", decay_rate: float = 0.9, decay_every: int = 1000
) -> float:
    """The multiplier of the peak learning rate at optimiser step ``step`` (0-based) of ``total``.

    ``(step + 1) / warm`` for the first ``warm`` steps; then for ``kind="cosine"``
    ``0.5 (1 + cos(pi (step - warm) / (total - warm)))``, which falls from 1 to 0 at ``total`` (and stays 0 past
    it); for ``kind="constant"`` 1; for ``kind="exponential"`` ``decay_rate ** ((step - warm) / decay_every)``
    (smooth exponential decay, the PINN literature's schedule: Wang, Teng & Perdikaris 2021).
    """
    if step < warm:
        return (step + 1) / warm
    if kind == "constant":
        return 1.0
    if kind == "exponential":
        return decay_rate ** ((step - warm) / decay_every)
    if kind != "cosine":
        raise ValueError(f"schedule {kind!r}: expected 'cosine', 'constant' or 'exponential'")
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    total: int,
    warmup: float,
    kind: str = "cosine",
    decay_rate: float = 0.9,
    decay_every: int = 1000,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`lr_factor` (its state dict holds only the step count: it resumes exactly)."""
    warm = warmup_steps(total, warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warm, kind, decay_rate, decay_every)
    )
