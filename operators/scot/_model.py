"""`ScOT`: the scalable Operator Transformer of Poseidon (Herde et al. 2024) in plain PyTorch.

A U-shaped Swin-V2 transformer with time-conditioned layer norms. The module tree (and hence
`state_dict()`: key names, shapes and order) is that of camlab-ethz/poseidon's `scOT.model.ScOT`, so released
checkpoints load unchanged; see `_io.py` for the Hugging Face folder layout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from ._config import ScOTConfig
from ._layers import (
    FIXED_NORM_EPS,
    ConvNeXtBlock,
    PatchMerging,
    PatchUnmerging,
    ResNetBlock,
    SwinBlock,
    make_norm,
)
from ._loss import scot_loss
from ._resample import spectral_resample


class PatchEmbeddings(nn.Module):
    """Non-overlapping patches -> tokens: Conv2d(C_in, embed, k = stride = patch)."""

    def __init__(self, config: ScOTConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.projection = nn.Conv2d(config.num_channels, config.embed_dim, kernel_size=p, stride=p)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.projection(x), "b c h w -> b (h w) c")


class Embeddings(nn.Module):
    """Patch embedding, norm (eps 1e-5), optional absolute position embedding, dropout.
    Shapes: (B, C_in, S, S), time (B,) -> (B, (S/p)^2, embed)."""

    def __init__(self, config: ScOTConfig) -> None:
        super().__init__()
        self.patch_embeddings = PatchEmbeddings(config)
        if config.use_absolute_embeddings:
            self.position_embeddings = nn.Parameter(torch.zeros(1, config.grid_size**2, config.embed_dim))
        else:
            self.position_embeddings = None
        self.norm = make_norm(config, config.embed_dim, FIXED_NORM_EPS)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        x = self.norm(self.patch_embeddings(x), time)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings
        return self.dropout(x)


def _blocks(config: ScOTConfig, stage: int, drop_rates: list[float], mirrored: bool) -> nn.ModuleList:
    """Swin blocks of one stage. Block i of an encoder stage is shifted when i is odd; block k of a decoder
    stage is built like encoder block depth-1-k (the original builds them in reverse), with drop rate k."""
    depth, dim = config.depths[stage], config.embed_dim * 2**stage
    grid = config.grid_size // 2**stage
    window, shift = config.stage_window(stage)
    blocks = []
    for k in range(depth):
        i = depth - 1 - k if mirrored else k
        blocks.append(
            SwinBlock(
                config,
                dim,
                grid,
                config.num_heads[stage],
                window,
                shift if i % 2 else 0,
                drop_rates[k],
                config.pretrained_window_sizes[stage],
            )
        )
    return nn.ModuleList(blocks)


class EncodeStage(nn.Module):
    """Swin blocks, then patch merging of (blocks output + stage input); the skip is the blocks output."""

    def __init__(self, config: ScOTConfig, stage: int, drop_rates: list[float]) -> None:
        super().__init__()
        self.blocks = _blocks(config, stage, drop_rates, mirrored=False)
        last = stage == config.num_layers - 1
        self.downsample = None if last else PatchMerging(config, config.embed_dim * 2**stage)

    def forward(self, x: Tensor, hw: tuple[int, int], time: Tensor) -> tuple[Tensor, Tensor]:
        y = x
        for block in self.blocks:
            y = block(y, hw, time)
        out = y if self.downsample is None else self.downsample(y + x, hw, time)
        return out, y


class DecodeStage(nn.Module):
    """Swin blocks, then patch unmerging to the next (finer) grid (none on the finest stage)."""

    def __init__(self, config: ScOTConfig, stage: int, drop_rates: list[float]) -> None:
        super().__init__()
        self.blocks = _blocks(config, stage, drop_rates, mirrored=True)
        self.upsample = None if stage == 0 else PatchUnmerging(config, config.embed_dim * 2**stage)

    def forward(self, x: Tensor, hw: tuple[int, int], time: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, hw, time)
        if self.upsample is not None:
            x = self.upsample(x, hw, (2 * hw[0], 2 * hw[1]), time)
        return x


class Encoder(nn.Module):
    def __init__(self, config: ScOTConfig, drop_rates: list[float]) -> None:
        super().__init__()
        edges = [sum(config.depths[:i]) for i in range(config.num_layers + 1)]
        self.layers = nn.ModuleList(
            EncodeStage(config, i, drop_rates[edges[i] : edges[i + 1]]) for i in range(config.num_layers)
        )


class Decoder(nn.Module):
    """Stages deepest first: `layers[0]` has width embed * 2**(n-1)."""

    def __init__(self, config: ScOTConfig, drop_rates: list[float]) -> None:
        super().__init__()
        d = config.depths
        self.layers = nn.ModuleList(
            DecodeStage(config, i, drop_rates[sum(d[i + 1 :]) : sum(d[i:])]) for i in reversed(range(len(d)))
        )


class PatchRecovery(nn.Module):
    """Tokens -> pixels: ConvTranspose2d(embed, C_out, k = stride = patch), then `mixup`
    Conv2d(C_out, C_out, 5, padding 2, no bias). Shapes: (B, g*g, embed) -> (B, C_out, g*p, g*p)."""

    def __init__(self, config: ScOTConfig) -> None:
        super().__init__()
        p, c = config.patch_size, config.num_out_channels
        self.projection = nn.ConvTranspose2d(config.embed_dim, c, kernel_size=p, stride=p)
        self.mixup = nn.Conv2d(c, c, kernel_size=5, stride=1, padding=2, bias=False)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        return self.mixup(self.projection(rearrange(x, "b (h w) c -> b c h w", h=hw[0])))


class ScOT(nn.Module):
    """scOT / Poseidon: u(t) = ScOT(u(0), t) on a square grid of `config.image_size`.

    Encoder: patch embedding, then per stage i Swin-V2 blocks and patch merging (skip s_i = blocks output).
    Skips: s_i <- ConvNeXt^{skip_connections[i]}(s_i, t). Decoder, deepest first: x = s_{n-1}; for stage
    j = n-1 .. 0: x = x + s_j (j < n-1), Swin blocks, patch unmerging. Patch recovery to `num_out_channels`,
    plus the input if `learn_residual`.

    Inputs of another size than `image_size` are resampled spectrally (Fourier zero padding or truncation) to
    `image_size` and the prediction is resampled back, so the output always has the input's size.

    Examples:
        >>> model = ScOT(ScOTConfig.tiny())
        >>> model(torch.randn(2, 4, 32, 32), torch.tensor([0.5, 1.0])).shape
        torch.Size([2, 4, 32, 32])
    """

    def __init__(self, config: ScOTConfig) -> None:
        super().__init__()
        if not isinstance(config, ScOTConfig):
            raise TypeError(f"ScOT expects a ScOTConfig, got {type(config).__name__}: use ScOTConfig.from_dict")
        self.config = config
        n = 2 * sum(config.depths)
        rates = torch.linspace(0, config.drop_path_rate, n, device="cpu").tolist() if n > 0 else []
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config, rates[: n // 2])
        self.decoder = Decoder(config, rates[n // 2 :])
        self.patch_recovery = PatchRecovery(config)
        block = ConvNeXtBlock if config.residual_model == "convnext" else ResNetBlock
        self.residual_blocks = nn.ModuleList(
            nn.ModuleList(block(config, config.embed_dim * 2**i) for _ in range(depth))
            for i, depth in enumerate(config.skip_connections)
        )
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self, modules: list[nn.Module] | None = None) -> None:
        """Initialise like the original: every Linear / Conv weight ~ N(0, initializer_range), biases 0
        (the Linear(1, C) maps of the conditional norms included), plain norms 1 / 0, logit scale log 10,
        ConvNeXt layer scale 1e-6, position embedding 0. `modules`: only these (default: all)."""
        std = self.config.initializer_range
        for module in modules if modules is not None else self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                module.reset_parameters()
            elif isinstance(module, ConvNeXtBlock):
                nn.init.constant_(module.weight, 1e-6)
            elif isinstance(module, Embeddings) and module.position_embeddings is not None:
                nn.init.zeros_(module.position_embeddings)
            if hasattr(module, "logit_scale"):
                nn.init.constant_(module.logit_scale, math.log(10.0))

    # --------------------------------------------------------------- forward
    def _check(self, x: Tensor, time: Tensor | float | None) -> Tensor:
        c = self.config
        if x.dim() != 4:
            hint = " add a batch axis with x[None]" if x.dim() == 3 else ""
            raise ValueError(f"expected x of shape (B, {c.num_channels}, H, W), got {tuple(x.shape)}:{hint}")
        if x.shape[1] != c.num_channels:
            raise ValueError(
                f"expected {c.num_channels} input channels (config.num_channels), got x of shape {tuple(x.shape)}"
            )
        dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        if x.dtype != dtype:
            raise TypeError(f"x is {x.dtype} but the model is {dtype}: convert one (x.to({dtype}) or model.to(...))")
        b = x.shape[0]
        if time is None:
            if c.use_conditioning:
                raise ValueError("this model is time-conditioned: pass time of shape (B,), e.g. torch.ones(B)")
            return torch.zeros(b, dtype=x.dtype, device=x.device)
        time = torch.as_tensor(time, dtype=x.dtype, device=x.device)
        if time.dim() == 0:
            time = time.expand(b)
        if time.shape != (b,):
            raise ValueError(f"expected time of shape ({b},) (one lead time per sample), got {tuple(time.shape)}")
        return time

    def forward(self, x: Tensor, time: Tensor | float | None = None) -> Tensor:
        """Predict the solution at lead time `time` (normalised to [0, 1]; 1.0 for time-independent tasks).

        Args:
            x: (B, num_channels, H, W) input fields; resampled spectrally when (H, W) != image_size.
            time: (B,) lead times (a scalar is broadcast); may be None when `use_conditioning` is False.

        Returns:
            (B, num_out_channels, H, W), the same H x W as the input.
        """
        time = self._check(x, time)
        c, size = self.config, tuple(x.shape[-2:])
        if size != (c.image_size, c.image_size):
            x = spectral_resample(x, (c.image_size, c.image_size))
        g = c.grid_size
        h = self.embeddings(x, time)
        skips = []
        for i, stage in enumerate(self.encoder.layers):
            h, skip = stage(h, (g >> i, g >> i), time)
            skips.append(skip)
        for i, blocks in enumerate(self.residual_blocks):
            for block in blocks:
                skips[i] = block(skips[i], (g >> i, g >> i), time)
        n = c.num_layers
        h = skips[-1]
        for j, stage in enumerate(self.decoder.layers):
            level = n - 1 - j
            if j > 0:
                h = h + skips[level]
            h = stage(h, (g >> level, g >> level), time)
        out = self.patch_recovery(h, (g, g))
        if c.learn_residual:
            out = out + x[:, : c.num_out_channels]
        if size != tuple(out.shape[-2:]):
            out = spectral_resample(out, size)
        return out

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """The training loss of the config: `scot_loss` with `channel_slice_list_normalized_loss` and `p`."""
        return scot_loss(pred, target, self.config.channel_slice_list_normalized_loss, p=self.config.p)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        num_channels: int | None = None,
        num_out_channels: int | None = None,
        **config_changes: Any,
    ) -> ScOT:
        """Load a Hugging Face folder (`config.json` + `model.safetensors` or `pytorch_model.bin`).

        With `num_channels` / `num_out_channels` different from the checkpoint's, the tensors whose shapes
        change (within `embeddings.patch_embeddings.projection.*` and `patch_recovery.*`) are freshly
        initialised and all others are the checkpoint's (fine-tuning to another set of fields).
        `config_changes`: other fields to change (e.g. `channel_slice_list_normalized_loss`, dropouts).
        See `pdeforge.operators.scot.load_pretrained` for details and errors.
        """
        from ._io import load_pretrained

        return load_pretrained(path, num_channels=num_channels, num_out_channels=num_out_channels, **config_changes)

    def save_pretrained(self, path: str | Path, *, safe_serialization: bool = True) -> Path:
        """Write `config.json` and `model.safetensors` (or `pytorch_model.bin`) into the folder `path`,
        each file atomically (written beside, then renamed). Returns the folder."""
        from ._io import save_pretrained

        return save_pretrained(self, path, safe_serialization=safe_serialization)
