"""HiPPO translated-Laguerre (LagT) features of each cell's recent history (Gu et al. 2020, NeurIPS, "HiPPO:
Recurrent memory with optimal polynomial projections"; used as TSM's temporal encoder, Sun et al. 2023).

The LagT memory of a signal ``f`` is the projection onto exponentially weighted Laguerre functions,

    c_n(t) = int_{-inf}^t f(s) L_n(t - s) exp(-(t - s) / 2) ds,        n = 0 .. N - 1,

which, since ``L_n' = -sum_{k<n} L_k`` and ``L_n(0) = 1``, obeys the linear ODE

    dc/dt = A c + B f,      A = I / 2 - tril(ones),   B = ones        (A_nn = -1/2, A_nk = -1 for k < n).

Discretised with the bilinear (Tustin) rule and step ``dt`` (``dt = 1``: one frame per unit, as in TSM),

    c_k = Abar c_{k-1} + Bbar f_k,   Abar = (I - dt A / 2)^{-1} (I + dt A / 2),   Bbar = (I - dt A / 2)^{-1} dt B,

from ``c_{-1} = 0``. Over a window of ``H`` frames this is a fixed linear map ``c_{H-1} = sum_k K_k f_k`` with
``K_k = Abar^{H-1-k} Bbar`` (:func:`lagt_kernel`), applied per cell and per velocity component.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn


def lagt_transition(n: int) -> tuple[Tensor, Tensor]:
    """Continuous LagT ``(A (n, n), B (n,))`` in float64."""
    a = torch.eye(n, dtype=torch.float64) / 2 - torch.tril(torch.ones(n, n, dtype=torch.float64))
    return a, torch.ones(n, dtype=torch.float64)


def bilinear(a: Tensor, b: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Bilinear (Tustin) discretisation ``(Abar, Bbar)`` of ``dc/dt = A c + B f`` with step ``dt``."""
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    lhs = eye - dt / 2 * a
    return torch.linalg.solve(lhs, eye + dt / 2 * a), torch.linalg.solve(lhs, dt * b)


def lagt_recurrence(signal: Tensor, n: int, dt: float = 1.0) -> Tensor:
    """Run ``c_k = Abar c_{k-1} + Bbar f_k`` over ``signal (T,)``; returns all states ``(T, n)`` (float64)."""
    abar, bbar = bilinear(*lagt_transition(n), dt)
    c = torch.zeros(n, dtype=torch.float64)
    out = []
    for f in signal.to(torch.float64):
        c = abar @ c + bbar * f
        out.append(c)
    return torch.stack(out)


def lagt_kernel(n: int, history: int, dt: float = 1.0) -> Tensor:
    """``K (n, history)``: ``c_{H-1} = K @ (f_0, .., f_{H-1})``, the recurrence unrolled (float64)."""
    abar, bbar = bilinear(*lagt_transition(n), dt)
    cols, v = [], bbar
    for _ in range(history):  # column H-1-k is Abar^k Bbar
        cols.append(v)
        v = abar @ v
    return torch.stack(cols[::-1], dim=1)


class HippoEncoder(nn.Module):
    """LagT features of a history of frames: ``(B, H, C, X, Y) -> (B, C * n, X, Y)`` (channel ``c * n + i``).

    ``scale`` divides the frames first (a typical velocity magnitude), so the features are O(1).

    Two ways to use it: ``forward(frames)``, the memory of exactly the last ``history`` frames (a window, from
    ``c = 0`` at its first frame); or a running memory, as TSM's own code keeps it: ``start(frames)`` gives the
    state after the given frames, ``update(state, frame)`` adds one more frame (``c <- Abar c + Bbar f``), and
    ``features(state)`` is what the network reads. The running state after ``history + k`` frames equals the window
    features of all of them: nothing is forgotten except through LagT's own exponential decay.
    """

    def __init__(self, n: int, history: int, scale: float = 1.0) -> None:
        super().__init__()
        self.n, self.history, self.scale = n, history, scale
        # float64, cast to the frames' dtype where used (``.double()`` on a float32 copy would keep its rounding)
        self.register_buffer("kernel", lagt_kernel(n, history), persistent=False)
        abar, bbar = bilinear(*lagt_transition(n), 1.0)
        self.register_buffer("abar", abar, persistent=False)
        self.register_buffer("bbar", bbar, persistent=False)

    def start(self, frames: Tensor) -> Tensor:
        """The LagT state ``(B, C, n, X, Y)`` after ``frames (B, history, C, X, Y)``."""
        if frames.ndim != 5 or frames.shape[1] != self.history:
            raise ValueError(f"expected frames (B, {self.history}, C, X, Y), got {tuple(frames.shape)}")
        return torch.einsum("nh,bhcxy->bcnxy", self.kernel.to(frames), frames / self.scale)

    def update(self, state: Tensor, frame: Tensor) -> Tensor:
        """The state after one more ``frame (B, C, X, Y)``."""
        return (
            torch.einsum("nm,bcmxy->bcnxy", self.abar.to(state), state)
            + self.bbar.to(state)[:, None, None] * (frame / self.scale)[:, :, None]
        )

    @staticmethod
    def features(state: Tensor) -> Tensor:
        """``(B, C, n, X, Y) -> (B, C * n, X, Y)``."""
        return rearrange(state, "b c n x y -> b (c n) x y")

    def forward(self, frames: Tensor) -> Tensor:
        return self.features(self.start(frames))


class FrameStackEncoder(nn.Module):
    """The ablation: raw stacked frames ``(B, H, C, X, Y) -> (B, H * C, X, Y)`` (scaled like the HiPPO input)."""

    def __init__(self, history: int, scale: float = 1.0) -> None:
        super().__init__()
        self.history, self.scale = history, scale

    def forward(self, frames: Tensor) -> Tensor:
        if frames.ndim != 5 or frames.shape[1] != self.history:
            raise ValueError(f"expected frames (B, {self.history}, C, X, Y), got {tuple(frames.shape)}")
        return rearrange(frames / self.scale, "b h c x y -> b (h c) x y")
