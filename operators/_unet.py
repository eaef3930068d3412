"""A U-Net of ConvNeXt blocks in 1D and 2D ("CNextU-net", The Well's strongest baseline).

ConvNeXt block (Liu et al. 2022, arXiv:2201.03545), with ``x`` channels first::

    y = x + gamma * W2 GELU(W1 LN(DWConv_k(x)))

a depthwise convolution of width ``k`` (7), a layer norm over channels, a pointwise expansion to 4x the width and
back, and a learnt per-channel layer scale ``gamma`` (initialised small so each block starts near the identity).
The U-Net (Ronneberger et al. 2015) stacks ``n_stages`` of these blocks, halving the grid with a stride-2 convolution
and doubling the width after each stage; the decoder mirrors it with stride-2 transposed convolutions, concatenating
the encoder's features of the same scale (fused back to the stage width by a 1x1 convolution).

Boundaries: on periodic axes every convolution pads circularly, so the network commutes with shifts by multiples of
``2**n_stages`` grid points; on other axes it zero-pads. Resolutions that are not multiples of ``2**n_stages`` are
padded on both sides (circularly on periodic axes, by edge replication otherwise) and the output is cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNetConfig", "UNetConvNeXt", "pad_axes"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


def pad_axes(x: Tensor, pads: tuple[tuple[int, int], ...], periodic: tuple[bool, ...], fill: str = "zeros") -> Tensor:
    """Pad the trailing spatial axes of ``x: (B, C, *space)``, axis by axis.

    pads: ``(left, right)`` per spatial axis. Periodic axes wrap around (``[x[-l:], x, x[:r]]``); the others are
    filled with zeros (``fill="zeros"``) or with copies of the edge value (``fill="replicate"``).
    """
    n = len(pads)
    for i, ((left, right), wrap) in enumerate(zip(pads, periodic)):
        if left == 0 and right == 0:
            continue
        ax = x.ndim - n + i
        size = x.shape[ax]
        if wrap:
            if left > size or right > size:
                raise ValueError(f"circular padding of {left, right} exceeds the axis length {size}")
            parts = [x.narrow(ax, size - left, left), x, x.narrow(ax, 0, right)]
        elif fill == "replicate":
            first, last = x.narrow(ax, 0, 1), x.narrow(ax, size - 1, 1)
            parts = [first.repeat_interleave(left, dim=ax), x, last.repeat_interleave(right, dim=ax)]
        elif fill == "zeros":
            shape_l = [left if d == ax else s for d, s in enumerate(x.shape)]
            shape_r = [right if d == ax else s for d, s in enumerate(x.shape)]
            parts = [x.new_zeros(shape_l), x, x.new_zeros(shape_r)]
        else:
            raise ValueError(f"fill must be 'zeros' or 'replicate', got {fill!r}")
        x = torch.cat(parts, dim=ax)
    return x


class _PaddedConv(nn.Module):
    """A stride-1 convolution of odd width with 'same' padding, circular on periodic axes, zeros elsewhere."""

    def __init__(self, c_in: int, c_out: int, kernel: int, periodic: tuple[bool, ...], groups: int = 1) -> None:
        super().__init__()
        self.periodic = periodic
        self.half = kernel // 2
        self.conv = _CONV[len(periodic)](c_in, c_out, kernel, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(pad_axes(x, ((self.half, self.half),) * len(self.periodic), self.periodic))


class _ChannelNorm(nn.Module):
    """Layer norm over the channel axis of ``(B, C, *space)``, with a per-channel affine map."""

    def __init__(self, channels: int, n_spatial_dims: int, eps: float = 1e-6) -> None:
        super().__init__()
        shape = (channels,) + (1,) * n_spatial_dims
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class _ConvNeXtBlock(nn.Module):
    """``x + gamma * W2 GELU(W1 LN(DWConv(x)))`` (see module docstring)."""

    def __init__(self, dim: int, kernel: int, periodic: tuple[bool, ...], layer_scale_init: float) -> None:
        super().__init__()
        n = len(periodic)
        self.dwconv = _PaddedConv(dim, dim, kernel, periodic, groups=dim)
        self.norm = _ChannelNorm(dim, n)
        self.expand = _CONV[n](dim, 4 * dim, 1)
        self.contract = _CONV[n](4 * dim, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim,) + (1,) * n, float(layer_scale_init)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.gamma * self.contract(F.gelu(self.expand(self.norm(self.dwconv(x)))))


class _Stage(nn.Sequential):
    """``depth`` ConvNeXt blocks at one width."""

    def __init__(self, dim: int, depth: int, kernel: int, periodic: tuple[bool, ...], layer_scale_init: float) -> None:
        super().__init__(*[_ConvNeXtBlock(dim, kernel, periodic, layer_scale_init) for _ in range(depth)])


class _Down(nn.Sequential):
    """Layer norm, then a stride-2 convolution of width 2: halves the grid, ``c_in -> c_out`` channels."""

    def __init__(self, c_in: int, c_out: int, n: int) -> None:
        super().__init__(_ChannelNorm(c_in, n), _CONV[n](c_in, c_out, 2, stride=2))


class _Up(nn.Sequential):
    """Layer norm, then a stride-2 transposed convolution: doubles the grid, ``c_in -> c_out`` channels."""

    def __init__(self, c_in: int, c_out: int, n: int) -> None:
        super().__init__(_ChannelNorm(c_in, n), _CONV_T[n](c_in, c_out, 2, stride=2))


@dataclass(frozen=True)
class UNetConfig:
    """ConvNeXt U-Net (see the module docstring).

    Attributes:
        init_features: width of the first stage; stage ``i`` has ``init_features * 2**i`` channels.
        n_stages: number of down/up-sampling steps (the grid is coarsened ``2**n_stages`` times at the neck).
        blocks_per_stage: ConvNeXt blocks in each encoder and decoder stage.
        blocks_at_neck: ConvNeXt blocks at the coarsest scale.
        kernel_size: width of the depthwise convolutions (odd).
        layer_scale_init: initial value of every block's layer scale ``gamma``.
    """

    init_features: int = 32
    n_stages: int = 4
    blocks_per_stage: int = 1
    blocks_at_neck: int = 1
    kernel_size: int = 7
    layer_scale_init: float = 1e-6

    def build(
        self, in_channels: int, out_channels: int, resolution: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> UNetConvNeXt:
        """A U-Net mapping ``(B, in_channels, *resolution) -> (B, out_channels, *resolution)``."""
        net = UNetConvNeXt(self, in_channels, out_channels, periodic)
        net.check_size(tuple(resolution))
        return net


class UNetConvNeXt(nn.Module):
    """ConvNeXt U-Net ``(B, C_in, *space) -> (B, C_out, *space)`` for 1D and 2D grids of any size.

    Args:
        config: sizes (:class:`UNetConfig`).
        in_channels, out_channels: channel counts.
        periodic: one flag per spatial axis; its length sets the dimension (1 or 2).
    """

    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int, periodic: tuple[bool, ...]) -> None:
        super().__init__()
        n = len(periodic)
        if n not in _CONV:
            raise ValueError(f"UNetConvNeXt supports 1 or 2 spatial dims, got {n} (periodic flags {periodic})")
        if config.kernel_size % 2 != 1 or config.kernel_size < 1:
            raise ValueError(f"UNetConfig.kernel_size must be odd, got {config.kernel_size}")
        if config.n_stages < 1 or config.init_features < 1:
            raise ValueError(f"UNetConfig needs n_stages >= 1 and init_features >= 1, got {config}")
        self.periodic = tuple(bool(p) for p in periodic)
        self.factor = 2**config.n_stages
        self.n_stages, self.kernel_size = config.n_stages, config.kernel_size
        dims = [config.init_features * 2**i for i in range(config.n_stages + 1)]
        k, ls = config.kernel_size, config.layer_scale_init
        self.in_proj = _PaddedConv(in_channels, dims[0], 3, self.periodic)
        self.encoder = nn.ModuleList(_Stage(d, config.blocks_per_stage, k, self.periodic, ls) for d in dims[:-1])
        self.down = nn.ModuleList(_Down(dims[i], dims[i + 1], n) for i in range(config.n_stages))
        self.neck = _Stage(dims[-1], config.blocks_at_neck, k, self.periodic, ls)
        self.up = nn.ModuleList(_Up(dims[i + 1], dims[i], n) for i in reversed(range(config.n_stages)))
        self.fuse = nn.ModuleList(_CONV[n](2 * dims[i], dims[i], 1) for i in reversed(range(config.n_stages)))
        self.decoder = nn.ModuleList(
            _Stage(dims[i], config.blocks_per_stage, k, self.periodic, ls) for i in reversed(range(config.n_stages))
        )
        self.out_proj = _PaddedConv(dims[0], out_channels, 3, self.periodic)

    def blocks(self) -> dict[str, nn.Module]:
        """Every stage of the network by name, in the order data flows through them."""
        out: dict[str, nn.Module] = {"in_proj": self.in_proj}
        for i, (enc, down) in enumerate(zip(self.encoder, self.down)):
            out[f"encoder_{i}"], out[f"down_{i}"] = enc, down
        out["neck"] = self.neck
        for i, (up, fuse, dec) in enumerate(zip(self.up, self.fuse, self.decoder)):
            out[f"up_{i}"], out[f"fuse_{i}"], out[f"decoder_{i}"] = up, fuse, dec
        out["out_proj"] = self.out_proj
        return out

    def check_size(self, space: tuple[int, ...]) -> None:
        """Refuse a grid whose periodic axes shrink, at the neck, below the half-width of the convolutions (their
        circular padding would wrap more than the whole axis), naming what would fit."""
        half = self.kernel_size // 2
        for size, wrap in zip(space, self.periodic):
            neck = -(-size // self.factor)
            if wrap and neck < half:
                fits = max((s for s in range(1, self.n_stages + 1) if -(-size // 2**s) >= half), default=0)
                raise ValueError(
                    f"UNet: n_stages {self.n_stages} coarsens a periodic axis of {size} points to {neck} at the neck, "
                    f"fewer than the convolutions' half-width {half} (kernel_size {self.kernel_size}); for this grid "
                    + (f"use n_stages <= {fits}" if fits else "use a smaller kernel_size")
                    + f" (model_args) or a grid of at least {half * self.factor} points"
                )

    def _pads(self, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        pads = []
        for size in shape:
            extra = (-size) % self.factor
            pads.append((extra // 2, extra - extra // 2))
        return tuple(pads)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, *space) -> (B, C_out, *space)."""
        n = len(self.periodic)
        if x.ndim != n + 2:
            raise ValueError(f"UNetConvNeXt: expected (B, C, *space) with {n} spatial axes, got shape {tuple(x.shape)}")
        space = tuple(x.shape[-n:])
        self.check_size(space)
        pads = self._pads(space)
        h = self.in_proj(pad_axes(x, pads, self.periodic, fill="replicate"))
        skips = []
        for enc, down in zip(self.encoder, self.down):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.neck(h)
        for up, fuse, dec, skip in zip(self.up, self.fuse, self.decoder, reversed(skips)):
            h = dec(fuse(torch.cat([up(h), skip], dim=1)))
        h = self.out_proj(h)
        crop = (Ellipsis, *[slice(left, left + size) for (left, _), size in zip(pads, space)])
        return h[crop]
