"""The Well's two U-Net baselines, rebuilt with the published ``state_dict()`` keys, shapes and order.

``WellUNetClassic`` (Ronneberger et al. 2015, arXiv:1505.04597), ``f = init_features``::

    enc_1 = B(x), enc_k = B(pool(enc_{k-1})) (k = 2..4, widths f, 2f, 4f, 8f), z = B(pool(enc_4)) (16f)
    dec_k = B(cat[up_k(dec_{k+1}), enc_k]) (k = 4..1, dec_5 = z),   y = T(dec_1)

with ``B = tanh . BN . conv3x3 . tanh . BN . conv3x3`` (convs without bias, BatchNorm eps 1e-5 using its running
statistics in eval mode), ``pool`` a 2x max pool, ``up_k`` a stride-2 transposed convolution and ``T`` a transposed
convolution of width 1 (weight ``[f, dim_out, 1, ...]``). Sizes must be divisible by 16; 1D, 2D and 3D.

``WellUNetConvNext`` (Liu et al. 2022, arXiv:2201.03545, in a U-Net), ``f = init_features``, ``s = stages``::

    x = in_proj(x) (3x3 conv);  encoder stage i (width f 2^i): keep its input, blocks, then Down -> f 2^(i+1)
    neck: blocks at f 2^s;  decoder stage j (width f 2^(s-j)): for j >= 1 x = skip_proj(cat[x, input of encoder
    stage s-j]) (1x1 conv 2C -> C), blocks, then Up -> C/2;  y = out_proj(x) (3x3 conv)

A block is ``x + gamma * Linear_2 GELU(Linear_1 LN(DWConv7(x)))`` (channels-last layer norm, eps 1e-6). ``Down`` /
``Up`` are ``x / max(||x||_2, 1e-6) * weight`` over channels (the original's "channels-first LayerNorm": an L2
normalisation whose saved ``bias`` is never used) followed by a stride-2 (transposed) convolution of width 2. The
input of encoder stage 0 is kept but never used. Sizes must be divisible by ``2^stages``; 2D and 3D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import AbstractWellBaseline

__all__ = ["WellUNetClassic", "WellUNetConvNext"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


def _classic_block(c_in: int, c_out: int, name: str, n: int) -> nn.Sequential:
    """conv3x3 -> BN -> tanh, twice; the layers are named ``<name>conv1``, ``<name>norm1``, ... as published."""
    block = nn.Sequential()
    for i, width_in in ((1, c_in), (2, c_out)):
        block.add_module(f"{name}conv{i}", _CONV[n](width_in, c_out, 3, padding=1, bias=False))
        block.add_module(f"{name}norm{i}", _BN[n](c_out))
        block.add_module(f"{name}tanh{i}", nn.Tanh())
    return block


class WellUNetClassic(AbstractWellBaseline):
    """The Well's UNetClassic: ``(B, dim_in, *S) -> (B, dim_out, *S)`` (see the module docstring).

    Args (the keys of the published ``config.json``): ``dim_in``, ``dim_out``, ``n_spatial_dims`` (1-3),
    ``spatial_resolution`` (recorded only), ``init_features`` (``f``; 48 published), ``gradient_checkpointing``
    (recorded; forward is the same).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        n_spatial_dims: int,
        spatial_resolution: tuple[int, ...] | list[int],
        init_features: int = 32,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        n, f = n_spatial_dims, init_features
        if n not in (1, 2, 3):
            raise ValueError(f"n_spatial_dims: UNetClassic is 1D, 2D or 3D, got {n}")
        self.n_spatial_dims = n
        self.config = {
            "dim_in": dim_in,
            "dim_out": dim_out,
            "gradient_checkpointing": bool(gradient_checkpointing),
            "init_features": f,
            "n_spatial_dims": n,
            "spatial_resolution": list(spatial_resolution),
        }
        widths = (f, 2 * f, 4 * f, 8 * f)
        for k, (c_in, c_out) in enumerate(zip((dim_in, *widths[:-1]), widths), start=1):
            self.add_module(f"encoder{k}", _classic_block(c_in, c_out, f"enc{k}", n))
            self.add_module(f"pool{k}", _POOL[n](kernel_size=2, stride=2))
        self.bottleneck = _classic_block(8 * f, 16 * f, "bottleneck", n)
        for k in (4, 3, 2, 1):
            c = widths[k - 1]
            self.add_module(f"upconv{k}", _CONV_T[n](2 * c, c, kernel_size=2, stride=2))
            self.add_module(f"decoder{k}", _classic_block(2 * c, c, f"dec{k}", n))
        self.conv = _CONV_T[n](f, dim_out, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, dim_in, *S)`` with every size divisible by 16 -> ``(B, dim_out, *S)``."""
        self.check_input(x, 16)
        skips = []
        for k in (1, 2, 3, 4):
            x = getattr(self, f"encoder{k}")(x)
            skips.append(x)
            x = getattr(self, f"pool{k}")(x)
        x = self.bottleneck(x)
        for k in (4, 3, 2, 1):
            x = getattr(self, f"upconv{k}")(x)
            x = getattr(self, f"decoder{k}")(torch.cat([x, skips[k - 1]], dim=1))
        return self.conv(x)


class _L2ChannelNorm(nn.Module):
    """``x / max(||x||_2 over channels, eps) * weight``; ``bias`` is stored (as published) and never used."""

    def __init__(self, channels: int, n: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, *(1,) * n))
        self.bias = nn.Parameter(torch.zeros(channels, *(1,) * n))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, p=2.0, dim=1, eps=self.eps) * self.weight


class _Resample(nn.Module):
    """``block.0`` (:class:`_L2ChannelNorm`) then ``block.1``, a stride-2 conv (down) or transposed conv (up)."""

    def __init__(self, c_in: int, c_out: int, n: int, up: bool) -> None:
        super().__init__()
        conv = (_CONV_T if up else _CONV)[n](c_in, c_out, kernel_size=2, stride=2)
        self.block = nn.Sequential(_L2ChannelNorm(c_in, n), conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class _ConvNeXtBlock(nn.Module):
    """``x + gamma * pwconv2 GELU(pwconv1 LN(dwconv(x)))``, the MLP in channels-last layout (``nn.Linear``)."""

    def __init__(self, dim: int, n: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))  # registered first: first in the state dict
        self.dwconv = _CONV[n](dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).movedim(1, -1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + y.movedim(-1, 1)


class _Stage(nn.Module):
    """``skip_proj`` (decoder stages after the first), ``resample`` (none at the neck), ``blocks``; runs
    skip_proj -> blocks -> resample."""

    def __init__(self, c_in: int, c_out: int, n: int, depth: int, resample: str | None, skip: bool) -> None:
        super().__init__()
        self.skip_proj = _CONV[n](2 * c_in, c_in, 1) if skip else nn.Identity()
        self.resample = _Resample(c_in, c_out, n, up=resample == "up") if resample else nn.Identity()
        self.blocks = nn.ModuleList(_ConvNeXtBlock(c_in, n) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        x = self.skip_proj(x)
        for block in self.blocks:
            x = block(x)
        return self.resample(x)


class WellUNetConvNext(AbstractWellBaseline):
    """The Well's UNetConvNext: ``(B, dim_in, *S) -> (B, dim_out, *S)`` (see the module docstring).

    Args (the keys of the published ``config.json``): ``dim_in``, ``dim_out``, ``n_spatial_dims`` (2 or 3),
    ``spatial_resolution`` (recorded only), ``stages`` (4), ``blocks_per_stage`` (2 published), ``blocks_at_neck``
    (1), ``init_features`` (42 published), ``gradient_checkpointing`` (recorded; forward is the same).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        n_spatial_dims: int,
        spatial_resolution: tuple[int, ...] | list[int],
        stages: int = 4,
        blocks_per_stage: int = 1,
        blocks_at_neck: int = 1,
        init_features: int = 32,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        n, f = n_spatial_dims, init_features
        if n not in (2, 3):
            raise ValueError(f"n_spatial_dims: UNetConvNext is 2D or 3D, got {n}")
        self.n_spatial_dims, self.stages = n, stages
        self.config = {
            "blocks_at_neck": blocks_at_neck,
            "blocks_per_stage": blocks_per_stage,
            "dim_in": dim_in,
            "dim_out": dim_out,
            "gradient_checkpointing": bool(gradient_checkpointing),
            "init_features": f,
            "n_spatial_dims": n,
            "spatial_resolution": list(spatial_resolution),
            "stages": stages,
        }
        widths = [f * 2**i for i in range(stages + 1)]
        self.in_proj = _CONV[n](dim_in, f, kernel_size=3, padding=1)
        self.out_proj = _CONV[n](f, dim_out, kernel_size=3, padding=1)
        self.encoder = nn.ModuleList(
            _Stage(widths[i], widths[i + 1], n, blocks_per_stage, "down", skip=False) for i in range(stages)
        )
        self.neck = _Stage(widths[-1], widths[-1], n, blocks_at_neck, None, skip=False)
        self.decoder = nn.ModuleList(
            _Stage(widths[stages - i], widths[stages - i - 1], n, blocks_per_stage, "up", skip=i > 0)
            for i in range(stages)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, dim_in, *S)`` with every size divisible by ``2**stages`` -> ``(B, dim_out, *S)``."""
        self.check_input(x, 2**self.stages)
        x = self.in_proj(x)
        skips = []
        for stage in self.encoder:
            skips.append(x)  # skips[0], the input of encoder stage 0, is never used (as in the original)
            x = stage(x)
        x = self.neck(x)
        for j, stage in enumerate(self.decoder):
            if j > 0:
                x = torch.cat([x, skips[-j]], dim=1)
            x = stage(x)
        return self.out_proj(x)
