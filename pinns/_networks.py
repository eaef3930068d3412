"""PINN networks: input embedding, optional Fourier features, a tanh MLP with optional random weight factorisation.

``PINNNet(x (N, d), t (N, 1)) -> u (N, C)`` composes

1. :class:`InputEmbedding`: periodic dimensions as ``cos(2 pi k x / L), sin(2 pi k x / L)``, ``k = 1..K``
   (exact periodicity), hard-Neumann dimensions as ``cos(pi (x - a) / (b - a))``, other dimensions and time
   scaled to ``[-1, 1]``;
2. :class:`FourierFeatures` (Tancik et al. 2020; Wang, Wang & Perdikaris 2021): ``[cos(2 pi z B), sin(2 pi z B)]``
   with a fixed Gaussian ``B ~ N(0, sigma^2)``;
3. :class:`MLP`: ``tanh`` hidden layers; with ``rwf`` each weight matrix is factorised ``W = diag(exp(s)) V``
   (random weight factorisation, Wang et al. 2022, ``s ~ N(mu, sigma)``);
4. the problem's :class:`~pdeforge.pinns.OutputTransform` (hard constraints).

Everything needed to rebuild the net is in :class:`NetworkConfig` (saved as JSON next to the weights).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ._domain import OutputTransform, Problem, embedding_kinds


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture of a :class:`PINNNet`.

    Attributes:
        width, depth: hidden width and number of hidden layers (PINNacle's 100 x 5 by default).
        harmonics: ``K`` Fourier modes per periodic dimension in the input embedding.
        fourier_features: number ``m`` of random Fourier features (0: none); ``fourier_sigma`` their scale.
        rwf: random weight factorisation with ``s ~ N(rwf_mu, rwf_sigma)``.
    """

    width: int = 100
    depth: int = 5
    harmonics: int = 1
    fourier_features: int = 0
    fourier_sigma: float = 1.0
    rwf: bool = False
    rwf_mu: float = 0.5
    rwf_sigma: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class InputEmbedding(nn.Module):
    """``(x (N, d), t (N, 1)) -> z (N, F)``; ``kinds[d]`` in ``{"periodic", "neumann", "box"}``.

    :meth:`stacked` takes the space-time points as one tensor ``xt (N, d + 1)`` (``(N, d)`` without time): one affine
    map scales every column (box dimensions and time to ``[-1, 1]``, periodic and Neumann ones to their phase), then
    periodic and Neumann columns go through their cosines and sines.
    """

    def __init__(
        self,
        kinds: tuple[str, ...],
        lower: tuple[float, ...],
        upper: tuple[float, ...],
        t_span: tuple[float, float],
        harmonics: int = 1,
        use_time: bool = True,
    ) -> None:
        super().__init__()
        self.kinds, self.lower, self.upper, self.t_span = tuple(kinds), lower, upper, t_span
        self.harmonics, self.use_time = harmonics, use_time
        self.out_features = sum(2 * harmonics if k == "periodic" else 1 for k in self.kinds) + int(use_time)
        # the affine map of every column: box -> 2 (x - a) / (b - a) - 1, periodic -> 2 pi (x - a) / (b - a),
        # neumann -> pi (x - a) / (b - a), time -> [-1, 1]; float64, cast to the points' dtype (not saved)
        scale, shift = [], []
        for kind, a, b in zip(self.kinds, lower, upper):
            s = {"periodic": 2 * math.pi, "neumann": math.pi, "box": 2.0}[kind] / (b - a)
            scale.append(s)
            shift.append(-s * a - (kind == "box"))
        if use_time:
            t0, t1 = t_span
            scale.append(2 / (t1 - t0))
            shift.append(-2 * t0 / (t1 - t0) - 1)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64), persistent=False)
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float64), persistent=False)
        self.register_buffer("k", torch.arange(1, harmonics + 1, dtype=torch.float64), persistent=False)
        self._affine_only = all(k == "box" for k in self.kinds)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.stacked(torch.cat([x, t], dim=1) if self.use_time else x)

    def stacked(self, xt: Tensor) -> Tensor:
        """``z (N, F)`` at ``xt (N, d + 1)`` (space then time; ``(N, d)`` without time)."""
        s = torch.addcmul(self.shift.to(xt.dtype), xt, self.scale.to(xt.dtype))
        if self._affine_only:
            return s
        cols = []
        for d, kind in enumerate(self.kinds):
            sd = s[:, d : d + 1]
            if kind == "periodic":
                phase = sd * self.k.to(xt.dtype)
                cols += [torch.cos(phase), torch.sin(phase)]
            elif kind == "neumann":
                cols.append(torch.cos(sd))
            else:
                cols.append(sd)
        if self.use_time:
            cols.append(s[:, -1:])
        return torch.cat(cols, dim=1)


class FourierFeatures(nn.Module):
    """``z -> [cos(2 pi z B), sin(2 pi z B)]``, ``B (F, m)`` fixed, ``B ~ N(0, sigma^2)`` (a buffer, saved)."""

    def __init__(
        self, in_features: int, n_features: int, sigma: float, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.register_buffer("B", sigma * torch.randn(in_features, n_features, generator=generator))
        self.out_features = 2 * n_features

    def forward(self, z: Tensor) -> Tensor:
        proj = 2 * math.pi * z @ self.B.to(z.dtype)
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=1)


class RWFLinear(nn.Module):
    """``y = (diag(exp(s)) V) z + b``: a Glorot-initialised ``W`` factorised as ``s ~ N(mu, sigma)``,
    ``V = W / exp(s)``."""

    def __init__(
        self, in_features: int, out_features: int, mu: float, sigma: float, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        w = torch.empty(out_features, in_features)
        nn.init.xavier_normal_(w, generator=generator)
        s = mu + sigma * torch.randn(out_features, 1, generator=generator)
        self.s = nn.Parameter(s)
        self.v = nn.Parameter(w / torch.exp(s))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, z: Tensor) -> Tensor:
        return z @ (torch.exp(self.s) * self.v).T + self.bias


class MLP(nn.Module):
    """``tanh`` multilayer perceptron ``in -> width (x depth) -> out``, Glorot-normal weights, zero biases."""

    def __init__(
        self, in_features: int, out_features: int, config: NetworkConfig, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        sizes = [in_features] + [config.width] * config.depth + [out_features]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            if config.rwf:
                layers.append(RWFLinear(a, b, config.rwf_mu, config.rwf_sigma, generator))
            else:
                lin = nn.Linear(a, b)
                nn.init.xavier_normal_(lin.weight, generator=generator)
                nn.init.zeros_(lin.bias)
                layers.append(lin)
        self.layers = nn.ModuleList(layers)

    def forward(self, z: Tensor) -> Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            z = torch.tanh(layer(z))
        return last(z)


class PINNNet(nn.Module):
    """The solution network of a :class:`~pdeforge.pinns.Problem`: ``(x (N, d), t (N, 1)) -> u (N, C)``.

    Arguments:
        problem: gives the embedding (periodic / hard Neumann dimensions), the channels and the output transform.
        config: the architecture.
        seed: seeds the initial weights and the Fourier-feature matrix.
    """

    def __init__(self, problem: Problem, config: NetworkConfig = NetworkConfig(), seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        dom = problem.domain
        self.config = config
        self.embedding = InputEmbedding(embedding_kinds(problem), dom.lower, dom.upper, dom.t_span, config.harmonics)
        n_in = self.embedding.out_features
        self.features = None
        if config.fourier_features:
            self.features = FourierFeatures(n_in, config.fourier_features, config.fourier_sigma, gen)
            n_in = self.features.out_features
        self.body = MLP(n_in, problem.channels, config, gen)
        self.transform = OutputTransform(problem)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim != 2 or t.ndim != 2 or t.shape[1] != 1 or x.shape[0] != t.shape[0]:
            raise ValueError(
                f"expected x (N, d) and t (N, 1), got {tuple(x.shape)} and {tuple(t.shape)}: use t[:, None]"
            )
        return self.stacked(torch.cat([x, t], dim=1))

    def stacked(self, xt: Tensor) -> Tensor:
        """``u (N, C)`` at the stacked points ``xt (N, d + 1)``, space then time (what
        :func:`~pdeforge.pinns.pde_residual` differentiates: one leaf, no split and re-join)."""
        z = self.embedding.stacked(xt)
        if self.features is not None:
            z = self.features(z)
        return self.transform.stacked(self.body(z), xt)


__all__ = ["NetworkConfig", "InputEmbedding", "FourierFeatures", "RWFLinear", "MLP", "PINNNet"]
