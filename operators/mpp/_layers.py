"""The layers of MPP's AViT. Attribute names follow the original module tree, so that `state_dict()` keys, shapes
and order are those of the released checkpoints (a module lists its own parameters first, then its children in the
order they were assigned).

Shapes: the processor works on `(T, B, E, h, w)` tokens (time first, E = embed_dim, h = H / 16, w = W / 16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

# T5 relative-position buckets as the original uses them: 32 buckets, 16 per direction, 8 exact, then logarithmic
# up to a distance of 32 (the module is given 128 but does not pass it on to the bucketing).
NUM_BUCKETS, MAX_EXACT, MAX_DISTANCE = 32, 8, 32


class RMSInstanceNorm2d(nn.Module):
    """x / (std_{H,W}(x) + eps) * weight, per sample and channel, the std with Bessel's correction (N - 1) and the
    mean NOT subtracted. `bias` exists because the released weights have it; it is never used.
    Shape: (N, C, H, W) -> (N, C, H, W); needs H * W > 1."""

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))  # in the released weights; unused, as in the original

    def forward(self, x: Tensor) -> Tensor:
        std = torch.std(x, dim=(-2, -1), keepdim=True)
        return x / (std + self.eps) * self.weight[:, None, None]


class SubsampledLinear(nn.Module):
    """The field embedding `space_bag`: a Linear(n_states -> dim_out) of which only the input columns of the fields
    present are used, scaled by sqrt(n_states / fields present) (the bias too).

    x (..., C) with `labels` (C,) indices into the vocabulary, in the channel order of x -> (..., dim_out)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.dim_in, self.dim_out = dim_in, dim_out
        init = nn.Linear(dim_in, dim_out)  # PyTorch's default Linear initialisation, as in the original
        self.weight = nn.Parameter(init.weight.detach().clone())
        self.bias = nn.Parameter(init.bias.detach().clone())

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        scale = (self.dim_in / labels.numel()) ** 0.5
        return scale * F.linear(x, self.weight[:, labels], self.bias)


class PatchStem(nn.Module):
    """16 x 16 pixels -> one token: three bias-free convolutions with kernel = stride 4, 2, 2 (E/4 -> E/4 -> E/4 -> E),
    each followed by an RMS instance norm, GELU after the first two. (N, E/4, H, W) -> (N, E, H/16, W/16)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        q = embed_dim // 4
        self.in_proj = nn.Sequential(
            nn.Conv2d(q, q, kernel_size=4, stride=4, bias=False),
            RMSInstanceNorm2d(q),
            nn.GELU(),
            nn.Conv2d(q, q, kernel_size=2, stride=2, bias=False),
            RMSInstanceNorm2d(q),
            nn.GELU(),
            nn.Conv2d(q, embed_dim, kernel_size=2, stride=2, bias=False),
            RMSInstanceNorm2d(embed_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.in_proj(x)


class PatchDecoder(nn.Module):
    """One token -> 16 x 16 pixels of the fields present: two bias-free transposed convolutions (kernel = stride 2,
    E -> E/4 -> E/4), each followed by an RMS instance norm and GELU, then the transposed convolution of kernel =
    stride 4 whose kernel `out_kernel` (E/4, n_states, 4, 4) and bias `out_bias` (n_states,) are sliced to the
    fields' labels. (N, E, h, w), labels (C,) -> (N, C, 16 h, 16 w)."""

    def __init__(self, embed_dim: int, n_states: int) -> None:
        super().__init__()
        q = embed_dim // 4
        self.out_proj = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, q, kernel_size=2, stride=2, bias=False),
            RMSInstanceNorm2d(q),
            nn.GELU(),
            nn.ConvTranspose2d(q, q, kernel_size=2, stride=2, bias=False),
            RMSInstanceNorm2d(q),
            nn.GELU(),
        )
        head = nn.ConvTranspose2d(q, n_states, kernel_size=4, stride=4)  # PyTorch's default initialisation
        self.out_kernel = nn.Parameter(head.weight.detach().clone())
        self.out_bias = nn.Parameter(head.bias.detach().clone())

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        x = self.out_proj(x)
        return F.conv_transpose2d(x, self.out_kernel[:, labels], self.out_bias[labels], stride=4)


def relative_position_buckets(length: int, periodic: bool, device: torch.device | None = None) -> Tensor:
    """The bucket (0..31) of every (query i, key j) pair of a sequence of `length` tokens, (length, length) int64.

    r = j - i; periodic axes first remap r with h = length // 2: r < -h -> r mod h (in [0, h)), r > h ->
    r mod -h (in (-h, 0]), as the original does (for odd lengths this is not the usual wrap: length 5, r = 4 -> 0).
    Then with n = -r: offset 16 if n < 0 (the key comes after the query); |n| < 8 -> |n|; otherwise
    8 + floor(ln(|n| / 8) / ln(32 / 8) * 8), at most 15.
    """
    pos = torch.arange(length, dtype=torch.long, device=device)
    r = pos[None, :] - pos[:, None]
    if periodic:
        h = length // 2
        r = torch.where(r < -h, torch.remainder(r, h) if h else r, r)
        r = torch.where(r > h, torch.remainder(r, -h) if h else r, r)
    n = -r
    half = NUM_BUCKETS // 2
    offset = (n < 0).long() * half
    n = n.abs()
    # the same float32 expression as the original, so the bucket edges (n = 16, 32, ...) round alike
    large = (
        MAX_EXACT
        + (
            torch.log(n.clamp(min=1).float() / MAX_EXACT) / math.log(MAX_DISTANCE / MAX_EXACT) * (half - MAX_EXACT)
        ).long()
    )
    large = large.clamp(max=half - 1)
    return offset + torch.where(n < MAX_EXACT, n, large)


class RelativePositionBias(nn.Module):
    """Learned additive attention bias per head from a table of 32 T5 buckets: (1, heads, L, L)."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.relative_attention_bias = nn.Embedding(NUM_BUCKETS, num_heads)

    def forward(self, length: int, periodic: bool = False) -> Tensor:
        weight = self.relative_attention_bias.weight
        buckets = relative_position_buckets(length, periodic, weight.device)
        return rearrange(self.relative_attention_bias(buckets), "i j he -> 1 he i j")


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero the residual branch of whole entries along the FIRST axis with probability `rate`,
    scaling the kept ones by 1 / (1 - rate) (timm's DropPath, which the original uses; identity in eval)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def _attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """Scaled dot-product attention (scale 1/sqrt(head_dim), no mask, no dropout) with an additive logit bias."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class TemporalAttention(nn.Module):
    """Attention over time, for every pixel and head independently:
    x + gamma * output_head(norm2(attn(qnorm(q), knorm(k), v) + bias)) with q, k, v = input_head(norm1(x)).

    norm1 / norm2 are `nn.InstanceNorm2d(affine=True)` over (h, w) of each frame; q, k, v are grouped per head
    (channel = head * 3 * head_dim + {q: 0, k: 1, v: 2} * head_dim + d); the bias is the non-periodic T5 bias over T.
    Shape: (T, B, E, h, w) -> (T, B, E, h, w)."""

    def __init__(self, embed_dim: int, num_heads: int, drop_path: float, bias_type: str) -> None:
        super().__init__()
        self.num_heads, self.drop_path = num_heads, float(drop_path)
        self.gamma = nn.Parameter(1e-6 * torch.ones(embed_dim))
        self.norm1 = nn.InstanceNorm2d(embed_dim, affine=True)
        self.norm2 = nn.InstanceNorm2d(embed_dim, affine=True)
        self.input_head = nn.Conv2d(embed_dim, 3 * embed_dim, 1)
        self.output_head = nn.Conv2d(embed_dim, embed_dim, 1)
        self.qnorm = nn.LayerNorm(embed_dim // num_heads)
        self.knorm = nn.LayerNorm(embed_dim // num_heads)
        self.rel_pos_bias = RelativePositionBias(num_heads) if bias_type == "rel" else None

    def forward(self, x: Tensor) -> Tensor:
        t, _, _, h, w = x.shape
        y = self.input_head(self.norm1(rearrange(x, "t b c h w -> (t b) c h w")))
        y = rearrange(y, "(t b) (he c) h w -> (b h w) he t c", t=t, he=self.num_heads)
        q, k, v = y.chunk(3, dim=-1)
        bias = None if self.rel_pos_bias is None else self.rel_pos_bias(t)
        y = _attention(self.qnorm(q), self.knorm(k), v, bias)
        y = rearrange(y, "(b h w) he t c -> (t b) (he c) h w", h=h, w=w)
        y = rearrange(self.output_head(self.norm2(y)), "(t b) c h w -> t b c h w", t=t)
        return x + drop_path(y * self.gamma[:, None, None], self.drop_path, self.training)


class MLP(nn.Module):
    """Linear(E -> 4E), exact GELU, Linear(4E -> E), over the last axis."""

    def __init__(self, embed_dim: int, expansion: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, expansion * embed_dim)
        self.fc2 = nn.Linear(expansion * embed_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class AxialAttention(nn.Module):
    """Axial spatial attention and the MLP, per frame:

        y = x + gamma_att * output_head(norm2((attn_rows + attn_columns) / 2))
        out = y + gamma_mlp * mlp_norm(MLP(y))

    with one q, k, v = input_head(norm1(x)) (q, k layer-normed per head) shared by the attention along W (each row,
    periodic if `bcs[0]`) and along H (each column, periodic if `bcs[1]`), and one bias table for both.
    norm1, norm2 and mlp_norm are `RMSInstanceNorm2d`. Shape: (N, E, h, w) -> (N, E, h, w)."""

    def __init__(self, embed_dim: int, num_heads: int, drop_path: float, bias_type: str) -> None:
        super().__init__()
        self.num_heads, self.drop_path = num_heads, float(drop_path)
        self.gamma_att = nn.Parameter(1e-6 * torch.ones(embed_dim))
        self.gamma_mlp = nn.Parameter(1e-6 * torch.ones(embed_dim))
        self.norm1 = RMSInstanceNorm2d(embed_dim)
        self.norm2 = RMSInstanceNorm2d(embed_dim)
        self.input_head = nn.Conv2d(embed_dim, 3 * embed_dim, 1)
        self.output_head = nn.Conv2d(embed_dim, embed_dim, 1)
        self.qnorm = nn.LayerNorm(embed_dim // num_heads)
        self.knorm = nn.LayerNorm(embed_dim // num_heads)
        self.rel_pos_bias = RelativePositionBias(num_heads) if bias_type == "rel" else None
        self.mlp = MLP(embed_dim)
        self.mlp_norm = RMSInstanceNorm2d(embed_dim)

    def _bias(self, length: int, periodic: bool) -> Tensor | None:
        return None if self.rel_pos_bias is None else self.rel_pos_bias(length, periodic)

    def forward(self, x: Tensor, periodic_w: bool, periodic_h: bool) -> Tensor:
        _, _, h, w = x.shape
        y = rearrange(self.input_head(self.norm1(x)), "n (he c) h w -> n he h w c", he=self.num_heads)
        q, k, v = y.chunk(3, dim=-1)
        q, k = self.qnorm(q), self.knorm(k)
        rows = _attention(*(rearrange(a, "n he h w c -> (n h) he w c") for a in (q, k, v)), self._bias(w, periodic_w))
        cols = _attention(*(rearrange(a, "n he h w c -> (n w) he h c") for a in (q, k, v)), self._bias(h, periodic_h))
        rows = rearrange(rows, "(n h) he w c -> n (he c) h w", h=h)
        cols = rearrange(cols, "(n w) he h c -> n (he c) h w", w=w)
        y = self.output_head(self.norm2((rows + cols) / 2))
        x = x + drop_path(y * self.gamma_att[:, None, None], self.drop_path, self.training)
        y = rearrange(self.mlp(rearrange(x, "n c h w -> n h w c")), "n h w c -> n c h w")
        return x + drop_path(self.gamma_mlp[:, None, None] * self.mlp_norm(y), self.drop_path, self.training)


class SpaceTimeBlock(nn.Module):
    """Temporal attention FIRST, then the axial spatial block on every frame (the state dict lists `spatial`
    before `temporal` because the original assigns it first). (T, B, E, h, w) -> (T, B, E, h, w)."""

    def __init__(self, embed_dim: int, num_heads: int, drop_path: float, bias_type: str) -> None:
        super().__init__()
        self.spatial = AxialAttention(embed_dim, num_heads, drop_path, bias_type)
        self.temporal = TemporalAttention(embed_dim, num_heads, drop_path, bias_type)

    def forward(self, x: Tensor, periodic_w: bool, periodic_h: bool) -> Tensor:
        t = x.shape[0]
        x = self.temporal(x)
        x = self.spatial(rearrange(x, "t b c h w -> (t b) c h w"), periodic_w, periodic_h)
        return rearrange(x, "(t b) c h w -> t b c h w", t=t)
