"""Building blocks of scOT: time-conditioned layer norm, Swin-V2 window attention and block, patch (un)merging,
ConvNeXt / ResNet skip blocks.

Inside the network tokens are channels last, `(B, L, C)` with `L = H * W` in row-major order, as in the
original, so that the parameter names and the checkpoint layout stay those of camlab-ethz/poseidon.
Sub-module names (`attention.self.query`, `intermediate.dense`, ...) are the checkpoint's key names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ._config import ScOTConfig

# Norms of the patch embedding and the patch (un)merging layers always use this eps (original behaviour).
FIXED_NORM_EPS = 1e-5
# Value added to the attention logits of token pairs from different regions of a shifted window.
MASK_VALUE = -100.0


def activation(name: str) -> nn.Module:
    """The block MLP activation for a `hidden_act` name (`gelu` is the exact erf GELU)."""
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return {"relu": nn.ReLU(), "silu": nn.SiLU(), "swish": nn.SiLU(), "tanh": nn.Tanh()}[name]


class ConditionalLayerNorm(nn.Module):
    """Layer norm over the last axis whose gain and shift are affine functions of the lead time t.

    y = (W_g t + b_g) * (x - E[x]) / sqrt(E[x^2] - E[x]^2 + eps) + (W_s t + b_s)

    with `weight = Linear(1, C)` giving the gain and `bias = Linear(1, C)` the shift (no affine of its own).
    The variance is computed as E[x^2] - E[x]^2, as in Poseidon.

    Shapes: x (B, ..., C), time (B,) -> (B, ..., C).
    """

    def __init__(self, dim: int, eps: float = FIXED_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Linear(1, dim)
        self.bias = nn.Linear(1, dim)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = (x * x).mean(dim=-1, keepdim=True) - mean * mean
        x = (x - mean) / torch.sqrt(var + self.eps)
        t = time.reshape(-1, 1).to(x.dtype)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return self.weight(t).reshape(shape) * x + self.bias(t).reshape(shape)


class LayerNorm(nn.LayerNorm):
    """Plain layer norm (used when `use_conditioning` is False); takes and ignores the time."""

    def forward(self, x: Tensor, time: Tensor | None = None) -> Tensor:  # noqa: ARG002 - same call as above
        return super().forward(x)


def make_norm(config: ScOTConfig, dim: int, eps: float) -> nn.Module:
    """The layer norm the config asks for: time-conditioned or plain."""
    return ConditionalLayerNorm(dim, eps) if config.use_conditioning else LayerNorm(dim, eps=eps)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample with probability `p` in
    training and rescale the kept ones by 1/(1-p); identity in evaluation."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


# --------------------------------------------------------------------------------------------- attention
def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C), windows in row-major order per sample."""
    return rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c", wh=window, ww=window)


def window_merge(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of `window_partition`: (B * h/w * w/w, w*w, C) -> (B, h, w, C)."""
    return rearrange(windows, "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c", nh=h // window, nw=w // window, wh=window)


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> Tensor:
    """Attention mask (nW, w*w, w*w) of a cyclically shifted window layout: 0 for token pairs that were
    neighbours before the roll, `MASK_VALUE` for pairs brought together by the roll (Liu et al. 2021)."""
    region = torch.zeros(h, w)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    label = 0
    for r0, r1 in bounds:
        for c0, c1 in bounds:
            region[slice(r0, r1), slice(c0, c1)] = label
            label += 1
    ids = window_partition(region[None, :, :, None], window).squeeze(-1)  # (nW, w*w)
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(MASK_VALUE), torch.tensor(0.0))


def relative_coords_table(window: int, pretrained_window: int) -> Tensor:
    """Log-spaced relative coordinates (1, 2w-1, 2w-1, 2) fed to the Swin-V2 position-bias MLP.

    d -> sign(d) log2(1 + 8 |d| / (w0 - 1)) / log2(8), w0 = pretrained window (or w), for offsets |d| < w.
    A 1 x 1 window has the single offset 0 (the original divides 0 by 0 there; we return 0).
    """
    d = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1)[None]
    norm = (pretrained_window if pretrained_window > 0 else window) - 1
    if norm > 0:
        table = table / norm
    table = table * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(window: int) -> Tensor:
    """(w*w, w*w) index into the (2w-1)^2 table of relative offsets between the tokens of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class SelfAttention(nn.Module):
    """Swin-V2 scaled cosine window attention with a continuous position bias (Liu et al. 2022).

    logits_h = cos(q_i, k_j) * exp(min(s_h, log 100)) + 16 sigmoid(MLP(coords(i - j)))_h (+ mask, added twice,
    as in the original), attention = softmax(logits) v. Query and value carry a bias, the key does not.

    Shapes: x (B*nW, N, C), mask (nW, N, N) or None -> (B*nW, N, C), N = window**2.
    """

    def __init__(self, config: ScOTConfig, dim: int, num_heads: int, window: int, pretrained_window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.continuous_position_bias_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        self.register_buffer(
            "relative_coords_table", relative_coords_table(window, pretrained_window), persistent=False
        )
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.query = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def position_bias(self) -> Tensor:
        """16 sigmoid(MLP(table)) gathered to (heads, N, N)."""
        n = self.relative_position_index.shape[0]
        table = self.continuous_position_bias_mlp(self.relative_coords_table).reshape(-1, self.num_heads)
        bias = table[self.relative_position_index.reshape(-1)].reshape(n, n, self.num_heads)
        return 16 * torch.sigmoid(bias.permute(2, 0, 1))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        bw, n, c = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = logits * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        logits = logits + self.position_bias().to(x.dtype)[None]
        if mask is not None:
            nw = mask.shape[0]
            m = mask.to(x.dtype)[None, :, None]
            logits = (logits.reshape(bw // nw, nw, self.num_heads, n, n) + m + m).reshape(bw, self.num_heads, n, n)
        probs = self.dropout(torch.softmax(logits, dim=-1))
        return (probs @ v).transpose(1, 2).reshape(bw, n, c)


class _Dense(nn.Module):
    """`dense` Linear, then an activation or dropout (the checkpoint's `intermediate` / `output` modules)."""

    def __init__(self, d_in: int, d_out: int, after: nn.Module) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.after = after

    def forward(self, x: Tensor) -> Tensor:
        return self.after(self.dense(x))


class Attention(nn.Module):
    """`self` (the window attention) followed by the output projection `output.dense`."""

    def __init__(self, config: ScOTConfig, dim: int, num_heads: int, window: int, pretrained_window: int) -> None:
        super().__init__()
        self.self = SelfAttention(config, dim, num_heads, window, pretrained_window)
        self.output = _Dense(dim, dim, nn.Dropout(config.attention_probs_dropout_prob))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.output(self.self(x, mask))


class SwinBlock(nn.Module):
    """Post-norm Swin-V2 block on an (h, w) token grid, time-conditioned norms:

    x = x + drop(norm_1(W-MSA(shift(x)), t)); x = x + drop(norm_2(MLP(x), t)).

    The grid is zero-padded to a multiple of the window; shifted blocks roll by -shift first and mask the
    attention between tokens brought together by the roll. Shapes: x (B, h*w, C), time (B,) -> (B, h*w, C).
    """

    def __init__(
        self,
        config: ScOTConfig,
        dim: int,
        grid: int,
        num_heads: int,
        window: int,
        shift: int,
        drop_path: float,
        pretrained_window: int,
    ) -> None:
        super().__init__()
        self.grid, self.window, self.shift = grid, window, shift
        self.attention = Attention(config, dim, num_heads, window, pretrained_window)
        self.layernorm_before = make_norm(config, dim, config.layer_norm_eps)
        self.drop_path = DropPath(drop_path)
        self.intermediate = _Dense(dim, int(config.mlp_ratio * dim), activation(config.hidden_act))
        self.output = _Dense(int(config.mlp_ratio * dim), dim, nn.Dropout(config.hidden_dropout_prob))
        self.layernorm_after = make_norm(config, dim, config.layer_norm_eps)
        padded = -(-grid // window) * window
        mask = shifted_window_mask(padded, padded, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor, hw: tuple[int, int], time: Tensor) -> Tensor:
        (h, w), (b, _, c), win = hw, x.shape, self.window
        y = x.reshape(b, h, w, c)
        hp, wp = -(-h // win) * win, -(-w // win) * win
        if (hp, wp) != (h, w):
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
        if self.shift > 0:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_merge(self.attention(window_partition(y, win), self.attn_mask), win, hp, wp)
        if self.shift > 0:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w, :].reshape(b, h * w, c)
        x = x + self.drop_path(self.layernorm_before(y, time))
        return x + self.drop_path(self.layernorm_after(self.output(self.intermediate(x)), time))


# ------------------------------------------------------------------------------------- (un)merging
class PatchMerging(nn.Module):
    """Halve the grid: concatenate each 2x2 neighbourhood (order (0,0), (1,0), (0,1), (1,1)), a bias-free
    Linear 4C -> 2C, then the norm. Shapes: (B, h*w, C) -> (B, h/2*w/2, 2C)."""

    def __init__(self, config: ScOTConfig, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = make_norm(config, 2 * dim, FIXED_NORM_EPS)

    def forward(self, x: Tensor, hw: tuple[int, int], time: Tensor) -> Tensor:
        (h, w), (b, _, c) = hw, x.shape
        x = x.reshape(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.norm(self.reduction(x.reshape(b, -1, 4 * c)), time)


class PatchUnmerging(nn.Module):
    """Double the grid: a bias-free Linear C -> 2C read as a 2x2 block of C/2 channels per token (pixel
    shuffle), the norm, then a bias-free Linear `mixup` C/2 -> C/2. Shapes: (B, h*w, C) -> (B, 4*h*w, C/2)."""

    def __init__(self, config: ScOTConfig, dim: int) -> None:
        super().__init__()
        self.upsample = nn.Linear(dim, 2 * dim, bias=False)
        self.mixup = nn.Linear(dim // 2, dim // 2, bias=False)
        self.norm = make_norm(config, dim // 2, FIXED_NORM_EPS)

    def forward(self, x: Tensor, hw: tuple[int, int], out_hw: tuple[int, int], time: Tensor) -> Tensor:
        (h, w), (b, _, c) = hw, x.shape
        x = rearrange(self.upsample(x), "b (h w) (i j c) -> b (h i) (w j) c", h=h, w=w, i=2, j=2)  # pixel shuffle
        x = x[:, : out_hw[0], : out_hw[1]]
        return self.mixup(self.norm(x.reshape(b, -1, c // 2), time))


# ------------------------------------------------------------------------------------- skip blocks
class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022) on the token grid, time-conditioned norm, layer scale `weight`:

    x = x + gamma * Linear(GELU(Linear(norm(DWConv7x7(x), t)))).

    Shapes: x (B, h*w, C), time (B,) -> (B, h*w, C).
    """

    def __init__(self, config: ScOTConfig, dim: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(layer_scale_init * torch.ones(dim))
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = make_norm(config, dim, config.layer_norm_eps)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor, hw: tuple[int, int], time: Tensor) -> Tensor:
        (h, w), (b, _, c) = hw, x.shape
        y = self.dwconv(x.reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y, time))))
        return x + (self.weight * y).reshape(b, h * w, c)


class ResNetBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a leaky ReLU between, plus the identity (no time input).

    Shapes: x (B, h*w, C) -> (B, h*w, C).
    """

    def __init__(self, config: ScOTConfig, dim: int) -> None:  # noqa: ARG002 - same signature as ConvNeXtBlock
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(dim)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor, hw: tuple[int, int], time: Tensor) -> Tensor:  # noqa: ARG002
        (h, w), (b, _, c) = hw, x.shape
        y = x.reshape(b, h, w, c).permute(0, 3, 1, 2)
        y = self.bn2(self.conv2(F.leaky_relu(self.bn1(self.conv1(y)))))
        return x + y.permute(0, 2, 3, 1).reshape(b, h * w, c)
