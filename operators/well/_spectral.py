"""The Well's FNO and TFNO baselines (neuraloperator 0.3.0's ``FNO`` / ``TFNO`` in The Well's wrapper), rebuilt
with the same ``state_dict()`` keys, shapes and order, so that the published checkpoints load and compute the same.

Network (Li et al. 2021, arXiv:2010.08895), ``x: (B, dim_in, *S) -> (B, dim_out, *S)``::

    v_0     = P2 GELU(P1 x)                                   lifting: 1x1 convs dim_in -> 256 -> C
    v_{i+1} = sigma_i( irfftn(W_i . rfftn(v_i)) + b_i + K_i v_i ),   i = 0..3, sigma = GELU except after the last
    y       = Q2 GELU(Q1 v_4)                                 projection: 1x1 convs C -> 256 -> dim_out

``W_i`` multiplies the kept frequencies channel-wise, ``out[b, o, k] = sum_i x[b, i, k] W[i, o, k]`` (weight laid
out ``[in, out, *modes]``), ``K_i`` is a 1x1 convolution without bias. FFTs are unnormalised forward, ``1/N``
inverse. Along each axis but the last, ``modesK`` is the total number of frequencies kept, a centred block of the
``fftshift``-ed spectrum (``-m/2 .. m/2-1`` for even sizes); on the last axis ``m//2 + 1`` frequencies ``0..m//2``.
As in the original, the spectrum is shifted back with ``fftshift`` (not ``ifftshift``): on an odd size along an
axis but the last, every kept frequency ``k`` comes out at ``k - 1``. We keep that, so that outputs match the
published models on any grid.

FNO keeps a dense complex weight per layer; TFNO a complex Tucker tensor (Kossaifi et al. 2023, arXiv:2310.00120)
``W[i,o,x,y] = sum core[a,b,c,d] U0[i,a] U1[o,b] U2[x,c] U3[y,d]`` whose ranks are a parameter fraction of 1.0
(tensorly's rule, :func:`tucker_ranks`). Complex tensors are stored as real tensors with a trailing axis of 2
(real, imaginary), as in the published ``model.safetensors``.
"""

from __future__ import annotations

import math

import opt_einsum  # a dependency of neuraloperator
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import AbstractWellBaseline

__all__ = ["WellFNO", "WellTFNO", "tucker_ranks", "N_LAYERS", "LIFTING_CHANNELS"]

N_LAYERS = 4  # neuraloperator 0.3.0's FNO default; The Well does not change it
LIFTING_CHANNELS = 256  # lifting and projection hidden width (neuraloperator default), whatever hidden_channels is
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tucker_ranks(shape: tuple[int, ...], fraction: float = 1.0) -> tuple[int, ...]:
    """Tucker ranks that keep ``fraction`` of the dense tensor's parameters (tensorly ``validate_tucker_rank``).

    Solves ``c^N prod(I) + c sum(I_k^2) = fraction * prod(I)`` for ``c`` and returns ``max(round(c I_k), 1)``
    (round half to even, as numpy). The published 128-channel, 16-mode weight ``(128, 128, 16, 9)`` gets full
    ranks; small shapes get less, e.g. ``(16, 16, 4, 3) -> (15, 15, 4, 3)``.
    """
    n, total, squares = len(shape), math.prod(shape), sum(s * s for s in shape)

    def excess(c: float) -> float:
        return total * c**n + squares * c - fraction * total

    lo, hi = 0.0, max(fraction, 1.0)
    for _ in range(200):  # bisection to machine precision; the function is increasing on [0, hi]
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    c = 0.5 * (lo + hi)
    return tuple(max(int(round(s * c)), 1) for s in shape)


def _centred(size: int, kept: int) -> slice:
    """The centred block of ``kept`` entries of an axis of length ``size`` (neuraloperator's slicing rule)."""
    start = size - kept
    return slice(start // 2, -start // 2) if start else slice(None)


class _DenseWeight(nn.Module):
    """One layer's dense complex spectral weight ``[in, out, *modes]``, stored as ``tensor [in, out, *modes, 2]``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        scale = 1.0 / (shape[0] * shape[1])
        self.tensor = nn.Parameter(scale * torch.randn(*shape, 2) / math.sqrt(2.0))

    @property
    def shape(self) -> tuple[int, ...]:
        """The complex weight's shape ``(in, out, *modes)``."""
        return tuple(self.tensor.shape[:-1])

    def contract(self, x: Tensor, mode_slices: tuple[slice, ...]) -> Tensor:
        """``out[b,o,k] = sum_i x[b,i,k] W[i,o,k]`` on the kept modes; x ``(B, in, *kept)`` complex."""
        w = torch.view_as_complex(self.tensor)[(slice(None), slice(None), *mode_slices)]
        s = _LETTERS[: x.ndim - 2]
        return torch.einsum(f"BI{s},IO{s}->BO{s}", x, w)


class _Factors(nn.Module):
    """The Tucker factors ``factor_0 .. factor_{N-1}`` (each ``[dim_k, rank_k, 2]``, complex as real pairs)."""

    def __init__(self, shape: tuple[int, ...], ranks: tuple[int, ...]) -> None:
        super().__init__()
        for k, (dim, rank) in enumerate(zip(shape, ranks)):
            self.register_parameter(f"factor_{k}", nn.Parameter(torch.randn(dim, rank, 2) / math.sqrt(2.0 * rank)))

    def __getitem__(self, k: int) -> Tensor:
        return getattr(self, f"factor_{k}")


class _TuckerWeight(nn.Module):
    """One layer's complex Tucker spectral weight: ``core [r_0, .., r_{N-1}, 2]`` and ``factors.factor_k
    [dim_k, r_k, 2]`` (k = 0: in channels, 1: out channels, 2..: modes)."""

    def __init__(self, shape: tuple[int, ...], ranks: tuple[int, ...]) -> None:
        super().__init__()
        scale = 1.0 / (shape[0] * shape[1])
        self.core = nn.Parameter(scale * torch.randn(*ranks, 2) / math.sqrt(2.0))
        self.factors = _Factors(shape, ranks)

    @property
    def shape(self) -> tuple[int, ...]:
        """The complex weight's shape ``(in, out, *modes)``."""
        return tuple(self.factors[k].shape[0] for k in range(self.core.ndim - 1))

    def contract(self, x: Tensor, mode_slices: tuple[slice, ...]) -> Tensor:
        """The factorised contraction (no dense weight is formed), as neuraloperator 0.3.0's Tucker implementation:
        ``x[b,i,k..], core[p,q,r..], U0[i,p], U1[o,q], U_k[k,r] -> out[b,o,k..]``, through opt_einsum's "optimal"
        sequence of pairwise contractions (what tensorly runs there), so the sums are taken in the same order."""
        n_modes = self.core.ndim - 3
        core = torch.view_as_complex(self.core)
        factors = [torch.view_as_complex(self.factors[k]) for k in range(n_modes + 2)]
        factors[2:] = [f[s] for f, s in zip(factors[2:], mode_slices)]
        modes, ranks = _LETTERS[:n_modes], _LETTERS[n_modes : 2 * n_modes]
        subs = ",".join(["IP", "OQ", *(m + r for m, r in zip(modes, ranks))])
        return opt_einsum.contract(f"BI{modes},PQ{ranks},{subs}->BO{modes}", x, core, *factors, optimize="optimal")


class _SpectralConvs(nn.Module):
    """The spectral convolutions of all layers: ``bias [L, C, *1]`` (one tensor) and ``weight.<i>`` per layer."""

    def __init__(self, channels: int, modes: tuple[int, ...], n_layers: int, ranks: tuple[int, ...] | None) -> None:
        super().__init__()
        self.bias = nn.Parameter(0.02 * torch.randn(n_layers, channels, *(1,) * len(modes)))
        shape = (channels, channels, *modes[:-1], modes[-1] // 2 + 1)
        self.weight = nn.ModuleList(
            _DenseWeight(shape) if ranks is None else _TuckerWeight(shape, ranks) for _ in range(n_layers)
        )

    def forward(self, x: Tensor, layer: int) -> Tensor:
        """Layer ``layer``'s spectral convolution plus its bias, ``(B, C, *S) -> (B, C, *S)``."""
        space = tuple(x.shape[2:])
        dims = tuple(range(-len(space), 0))
        spec = torch.fft.rfftn(x, dim=dims)  # norm "backward": neuraloperator 0.3.0's FNOBlocks never passes fft_norm
        if len(space) > 1:
            spec = torch.fft.fftshift(spec, dim=dims[:-1])
        weight = self.weight[layer]
        c_out, w_modes, f_size = weight.shape[1], weight.shape[2:], spec.shape[2:]
        kept = [min(s, m) for s, m in zip(f_size, w_modes)]  # a grid coarser than the modes uses fewer of them
        w_slices = (*(_centred(m, k) for m, k in zip(w_modes[:-1], kept[:-1])), slice(0, kept[-1]))
        x_slices = (slice(None), slice(None), *(_centred(s, k) for s, k in zip(f_size[:-1], kept[:-1])))
        x_slices = (*x_slices, slice(0, kept[-1]))
        out = spec.new_zeros(spec.shape[0], c_out, *f_size)
        out[x_slices] = weight.contract(spec[x_slices], w_slices)
        if len(space) > 1:
            out = torch.fft.fftshift(out, dim=dims[:-1])  # the original's choice (not ifftshift): module docstring
        return torch.fft.irfftn(out, s=space, dim=dims) + self.bias[layer]


class _FNOBlocks(nn.Module):
    """``convs`` (spectral, with the bias) and ``fno_skips`` (1x1 convs without bias), GELU between layers."""

    def __init__(self, channels: int, modes: tuple[int, ...], ranks: tuple[int, ...] | None) -> None:
        super().__init__()
        self.convs = _SpectralConvs(channels, modes, N_LAYERS, ranks)
        conv = _CONV[len(modes)]
        self.fno_skips = nn.ModuleList(conv(channels, channels, 1, bias=False) for _ in range(N_LAYERS))

    def forward(self, x: Tensor) -> Tensor:
        for i in range(N_LAYERS):
            x = self.convs(x, i) + self.fno_skips[i](x)
            if i < N_LAYERS - 1:
                x = F.gelu(x)
        return x


class _PointwiseMLP(nn.Module):
    """``fcs.0`` (1x1 conv), exact GELU, ``fcs.1`` (1x1 conv): neuraloperator 0.3.0's two-layer ``MLP``."""

    def __init__(self, c_in: int, c_hidden: int, c_out: int, n_spatial_dims: int) -> None:
        super().__init__()
        conv = _CONV[n_spatial_dims]
        self.fcs = nn.ModuleList([conv(c_in, c_hidden, 1), conv(c_hidden, c_out, 1)])

    def forward(self, x: Tensor) -> Tensor:
        return self.fcs[1](F.gelu(self.fcs[0](x)))


class _FNONet(nn.Module):
    """The neuraloperator network: ``fno_blocks`` first in the state dict, then ``lifting``, then ``projection``."""

    def __init__(
        self, dim_in: int, dim_out: int, hidden: int, modes: tuple[int, ...], ranks: tuple[int, ...] | None
    ) -> None:
        super().__init__()
        n = len(modes)
        self.fno_blocks = _FNOBlocks(hidden, modes, ranks)
        self.lifting = _PointwiseMLP(dim_in, LIFTING_CHANNELS, hidden, n)
        self.projection = _PointwiseMLP(hidden, LIFTING_CHANNELS, dim_out, n)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(self.fno_blocks(self.lifting(x)))


class _FourierBaseline(AbstractWellBaseline):
    """The Well's FNO (``tucker = False``) or TFNO (``tucker = True``): ``(B, dim_in, *S) -> (B, dim_out, *S)``,
    2D or 3D, keys ``model.*`` as published.

    Args (the keys of the published ``config.json``, and ``ranks``):
        dim_in, dim_out: channels in (``T_in * F + F_const``) and out (``F``).
        n_spatial_dims: 2 or 3 (The Well's FNO has no 1D).
        spatial_resolution: the dataset's grid (recorded only: any grid size runs).
        modes1, modes2, modes3: frequencies kept per axis (``modes3`` only in 3D); the last axis keeps
            ``m//2 + 1`` of them.
        hidden_channels: the width ``C`` of the four Fourier layers.
        gradient_checkpointing: accepted and recorded; forward is the same.
        ranks: TFNO's Tucker ranks ``(r_in, r_out, *r_modes)``; default :func:`tucker_ranks` of the weight shape.
    """

    tucker: bool

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        n_spatial_dims: int,
        spatial_resolution: tuple[int, ...] | list[int],
        modes1: int,
        modes2: int,
        modes3: int = 16,
        hidden_channels: int = 64,
        gradient_checkpointing: bool = False,
        ranks: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if n_spatial_dims not in (2, 3):
            raise ValueError(f"n_spatial_dims: The Well's FNO/TFNO are 2D or 3D, got {n_spatial_dims}")
        modes = (modes1, modes2, modes3)[:n_spatial_dims]
        self.config = {
            "dim_in": dim_in,
            "dim_out": dim_out,
            "gradient_checkpointing": bool(gradient_checkpointing),
            "hidden_channels": hidden_channels,
            "modes1": modes1,
            "modes2": modes2,
            "modes3": modes3,
            "n_spatial_dims": n_spatial_dims,
            "spatial_resolution": list(spatial_resolution),
        }
        shape = (hidden_channels, hidden_channels, *modes[:-1], modes[-1] // 2 + 1)
        if not self.tucker and ranks is not None:
            raise ValueError(f"ranks: only TFNO has Tucker ranks, got ranks={ranks} for {type(self).__name__}")
        if self.tucker:
            ranks = tucker_ranks(shape) if ranks is None else tuple(ranks)
            if len(ranks) != len(shape):
                raise ValueError(f"ranks: expected {len(shape)} Tucker ranks for the weight {shape}, got {ranks}")
        self.model = _FNONet(dim_in, dim_out, hidden_channels, modes, ranks)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, dim_in, *S)`` -> ``(B, dim_out, *S)``, any grid size."""
        self.check_input(x)
        return self.model(x)


class WellFNO(_FourierBaseline):
    """The Well's FNO: one dense complex spectral weight per layer (``weight.<i>.tensor``); see
    :class:`_FourierBaseline` for the arguments."""

    tucker = False


class WellTFNO(_FourierBaseline):
    """The Well's TFNO: complex Tucker spectral weights of parameter fraction 1.0 (``weight.<i>.core``,
    ``weight.<i>.factors.factor_k``); see :class:`_FourierBaseline` for the arguments.

    ``ranks`` (``(r_in, r_out, r_mode1, ..)``) defaults to :func:`tucker_ranks` of the weight shape, which is what
    the original computes; loading a checkpoint takes them from its ``core`` shapes instead.
    """

    tucker = True
