"""`DPOT`: the Denoising Pre-training Operator Transformer of Hao et al. (ICML 2024) in plain PyTorch.

Written from the paper ("DPOT: Auto-Regressive Denoising Operator Transformer for Large-Scale PDE
Pre-Training") and from facts about the released checkpoints (key names, shapes, order of operations); the
module tree, and hence `state_dict()` (keys, shapes, order), is that of the original `DPOTNet`, so the released
weights (Hugging Face hzk17/DPOT) load unchanged. See `_io.py` for the files that are read.

Shapes below: B batch, X x Y the grid (`img_size`), T time frames, C channels, D `embed_dim`, x y the latent
grid (`img_size / patch_size`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from ._config import DPOTConfig

__all__ = ["DPOT", "AFNOFilter", "AFNOBlock", "PatchEmbed", "TimeAggregator", "activation", "coordinates"]

N_COORDINATES = 3  # x, y and time are appended to the input channels


def activation(name: str) -> nn.Module:
    """The activation module of the original's `act` names (GELU is the exact, erf form)."""
    modules = {
        "gelu": nn.GELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "softplus": nn.Softplus,
        "ELU": nn.ELU,
        "silu": nn.SiLU,
    }
    return modules[name]()


def coordinates(x: Tensor) -> Tensor:
    """The coordinate channels DPOT appends to an input `x` (B, X, Y, T, C): (B, X, Y, T, 3) holding x, y and t,
    each evenly spaced from 0 to 1 inclusive along its axis (a single frame gets t = 0)."""
    b, nx, ny, nt, _ = x.shape
    axes = [torch.linspace(0.0, 1.0, n, dtype=x.dtype, device=x.device) for n in (nx, ny, nt)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, T, 3)
    return grid.expand(b, *grid.shape)


class PatchEmbed(nn.Module):
    """Each frame's patches -> latent vectors: Conv2d(C_in + 3, H, k = stride = patch), activation, 1x1 Conv2d
    (H, D), with H = `config.patch_hidden`. Shapes: (N, C_in + 3, X, Y) -> (N, D, x, y)."""

    def __init__(self, config: DPOTConfig) -> None:
        super().__init__()
        p, hidden = config.patch_size, config.patch_hidden
        self.proj = nn.Sequential(
            nn.Conv2d(config.in_channels + N_COORDINATES, hidden, kernel_size=p, stride=p),
            activation(config.act),
            nn.Conv2d(hidden, config.embed_dim, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class TimeAggregator(nn.Module):
    """Collapse T frames into one: out_j = sum_{k, i} f_k,i * c_k,i * w[k, i, j], with c_k,i = cos(t_k gamma_i)
    for "exp_mlp" (t_k evenly spaced over [0, 1], gamma learned) and c = 1 for "mlp".
    Shapes: (B, T, D, x, y) -> (B, D, x, y); the number of frames is fixed at T = `in_timesteps`."""

    def __init__(self, config: DPOTConfig) -> None:
        super().__init__()
        t, d = config.in_timesteps, config.embed_dim
        self.kind = config.time_agg
        self.w = nn.Parameter(torch.empty(t, d, d))
        self.gamma = nn.Parameter(torch.empty(1, d)) if self.kind == "exp_mlp" else None

    def reset_parameters(self) -> None:
        """The original's initialisation: w ~ N(0, 1) / (T sqrt(D)); gamma = 2^linspace(-10, 10, D), so the
        channels cover frequencies from 1e-3 to 1e3."""
        t, d, _ = self.w.shape
        with torch.no_grad():
            nn.init.normal_(self.w, 0.0, 1.0 / (t * math.sqrt(d)))
            if self.gamma is not None:
                self.gamma.copy_(2.0 ** torch.linspace(-10.0, 10.0, d)[None])

    def forward(self, x: Tensor) -> Tensor:
        if self.gamma is not None:
            t = torch.linspace(0.0, 1.0, x.shape[1], dtype=x.dtype, device=x.device)
            encoding = torch.cos(t[:, None] * self.gamma)  # (T, D)
            x = x * encoding[None, :, :, None, None]
        return torch.einsum("tij,btixy->bjxy", self.w, x)


class AFNOFilter(nn.Module):
    """Adaptive Fourier neural operator mixing (Guibas et al. 2022) as DPOT uses it, on (B, D, x, y).

    z = rfft2(u) (norm "ortho"; rfft along y); on the modes with both indices < `modes` (0 .. modes-1 of the FFT
    array along x: the negative x frequencies are not kept) and per block of D / n_blocks channels, a two-layer
    complex MLP h = act(z W1 + b1), o = h W2 + b2 with W = w[0] + i w[1], b = b[0] + i b[1], where `act` acts on
    the real and the imaginary part separately; every other mode is zero. Output: irfft2(o) + u.
    """

    def __init__(self, config: DPOTConfig) -> None:
        super().__init__()
        nb = config.n_blocks
        bs = config.embed_dim // nb
        self.modes = config.modes
        self.act = activation(config.act)
        self.w1 = nn.Parameter(torch.empty(2, nb, bs, bs))
        self.b1 = nn.Parameter(torch.empty(2, nb, bs))
        self.w2 = nn.Parameter(torch.empty(2, nb, bs, bs))
        self.b2 = nn.Parameter(torch.empty(2, nb, bs))

    def reset_parameters(self) -> None:
        """The original's initialisation: every tensor uniform on [0, 1 / block_size^2)."""
        bs = self.w1.shape[-1]
        for p in (self.w1, self.b1, self.w2, self.b2):
            nn.init.uniform_(p, 0.0, 1.0 / bs**2)

    def forward(self, u: Tensor) -> Tensor:
        nx, ny = u.shape[-2:]
        # the FFT runs in float32 at least (no complex half); the result is cast back to u's dtype
        work = u.float() if u.dtype in (torch.float16, torch.bfloat16) else u
        z = torch.fft.rfft2(work, dim=(-2, -1), norm="ortho")  # (B, D, x, y//2+1)
        m = self.modes
        kept = rearrange(z[..., :m, :m], "b (n i) kx ky -> b kx ky n i", n=self.w1.shape[1])
        w1, w2 = (torch.complex(w[0], w[1]).to(z.dtype) for w in (self.w1, self.w2))
        b1, b2 = (torch.complex(b[0], b[1]).to(z.dtype) for b in (self.b1, self.b2))
        h = torch.einsum("...ni,nio->...no", kept, w1) + b1
        h = torch.complex(self.act(h.real), self.act(h.imag))
        o = torch.einsum("...ni,nio->...no", h, w2) + b2
        out = torch.zeros_like(z)
        out[..., :m, :m] = rearrange(o, "b kx ky n i -> b (n i) kx ky")
        return torch.fft.irfft2(out, s=(nx, ny), dim=(-2, -1), norm="ortho").to(u.dtype) + u


class AFNOBlock(nn.Module):
    """One DPOT block on (B, D, x, y): u + MLP(GN2(F(GN1(u)))), F the AFNO filter (which adds its own, normalised,
    input), GN GroupNorm with 8 groups, MLP 1x1 Conv2d(D, D * mlp_ratio), activation, 1x1 Conv2d back to D."""

    def __init__(self, config: DPOTConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.norm1 = nn.GroupNorm(8, d)
        self.filter = AFNOFilter(config)
        self.norm2 = nn.GroupNorm(8, d)
        self.mlp = nn.Sequential(
            nn.Conv2d(d, config.mlp_hidden, kernel_size=1),
            activation(config.act),
            nn.Conv2d(config.mlp_hidden, d, kernel_size=1),
        )

    def forward(self, u: Tensor) -> Tensor:
        return u + self.mlp(self.norm2(self.filter(self.norm1(u))))


class DPOT(nn.Module):
    """DPOT: `pred, cls_pred = model(x)`, the next `out_timesteps` frames of `in_timesteps` given ones.

    Forward, as the original (input and output channels last, time before channels):
    1. with `normalize`: per sample and channel, standardise by the mean and the unbiased std over x, y and t;
    2. append the coordinates x, y, t (`coordinates`), embed every frame's patches (`PatchEmbed`), add `pos_embed`;
    3. aggregate the frames into one latent field (`TimeAggregator`); with `normalize`, scale and shift it by
       linear maps of the channel means and stds;
    4. `depth` AFNO blocks (`AFNOBlock`);
    5. `cls_pred` = cls_head(mean of the latent over x, y), the logits of the pretraining dataset's class;
       `pred` = out_layer(latent): ConvTranspose2d(D, out_layer_dim, k = stride = patch), activation, 1x1 conv,
       activation, 1x1 conv to out_timesteps x out_channels, unpacked time-major (channel t * C_out + c); with
       `normalize`, de-standardised with the input's statistics.

    The model does not resample: inputs must be `img_size` x `img_size` with exactly `in_timesteps` frames.
    `forward_fields` is the same map in pdeforge's channels-first layout (B, T, C, X, Y).

    Examples:
        >>> config = DPOTConfig(img_size=16, patch_size=4, in_channels=2, out_channels=2, in_timesteps=3,
        ...                     embed_dim=16, depth=1, modes=2, n_cls=2)
        >>> pred, cls_pred = DPOT(config)(torch.randn(5, 16, 16, 3, 2))
        >>> pred.shape, cls_pred.shape
        (torch.Size([5, 16, 16, 1, 2]), torch.Size([5, 2]))
    """

    def __init__(self, config: DPOTConfig) -> None:
        super().__init__()
        if not isinstance(config, DPOTConfig):
            raise TypeError(
                f"DPOT expects a DPOTConfig, got {type(config).__name__}: use DPOTConfig(**kwargs) or "
                "DPOTConfig.released(size)"
            )
        self.config = config
        c, d, g = config, config.embed_dim, config.grid_size
        # registration order gives the original's state_dict order: pos_embed, patch_embed, blocks,
        # [scale_feats_mu, scale_feats_sigma], cls_head, time_agg_layer, out_layer
        self.pos_embed = nn.Parameter(torch.empty(1, d, g, g))
        self.patch_embed = PatchEmbed(c)
        self.blocks = nn.ModuleList(AFNOBlock(c) for _ in range(c.depth))
        if c.normalize:
            self.scale_feats_mu = nn.Linear(2 * c.in_channels, d)
            self.scale_feats_sigma = nn.Linear(2 * c.in_channels, d)
        self.cls_head = nn.Sequential(
            nn.Linear(d, d), activation(c.act), nn.Linear(d, d), activation(c.act), nn.Linear(d, c.n_cls)
        )
        self.time_agg_layer = TimeAggregator(c)
        p = c.patch_size
        self.out_layer = nn.Sequential(
            nn.ConvTranspose2d(d, c.out_layer_dim, kernel_size=p, stride=p),
            activation(c.act),
            nn.Conv2d(c.out_layer_dim, c.out_layer_dim, kernel_size=1),
            activation(c.act),
            nn.Conv2d(c.out_layer_dim, c.out_timesteps * c.out_channels, kernel_size=1),
        )
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self, modules: list[nn.Module] | None = None) -> None:
        """Initialise like the original: `pos_embed` ~ truncated N(0, 0.02^2) on [-2, 2]; AFNO weights uniform
        on [0, 1/block_size^2); time aggregation as in `TimeAggregator.reset_parameters`; every Linear, Conv and
        GroupNorm torch's default. `modules`: only these (default: all; the model itself means `pos_embed`).
        On the meta device (shapes only) nothing is drawn: there are no values, and torch's meta `normal_` costs
        seconds on first use."""
        if self.pos_embed.is_meta:
            return
        for module in modules if modules is not None else list(self.modules()):
            if module is self:
                nn.init.trunc_normal_(self.pos_embed, std=0.02)
            elif isinstance(module, (AFNOFilter, TimeAggregator, nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                module.reset_parameters()
            elif isinstance(module, nn.GroupNorm):
                module.reset_parameters()

    # --------------------------------------------------------------- forward
    def _check(self, x: Tensor) -> None:
        c = self.config
        want = (c.img_size, c.img_size, c.in_timesteps, c.in_channels)
        if x.dim() != 5 or tuple(x.shape[1:]) != want:
            hint = " add a batch axis with x[None]" if x.dim() == 4 else ""
            raise ValueError(
                f"DPOT expects x of shape (B, X={want[0]}, Y={want[1]}, T_in={want[2]}, C_in={want[3]}) "
                f"(channels last, time before channels), got {tuple(x.shape)}:{hint or ' the model does not resample'}"
            )
        dtype = self.pos_embed.dtype
        if x.dtype != dtype:
            raise TypeError(f"x is {x.dtype} but the model is {dtype}: convert one (x.to({dtype}) or model.to(...))")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The original call.

        Args:
            x: (B, X, Y, T_in, C_in) input frames, channels last.

        Returns:
            pred (B, X, Y, T_out, C_out), the predicted frames; cls_pred (B, n_cls), the dataset-class logits.
        """
        self._check(x)
        c = self.config
        if c.normalize:
            mu = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1, C)
            sigma = x.std(dim=(1, 2, 3), keepdim=True) + 1e-6
            x = (x - mu) / sigma
            stats = torch.cat([mu, sigma], dim=-1)[:, 0, 0, 0]  # (B, 2C): means, then stds
        n_frames = x.shape[3]
        x = torch.cat([x, coordinates(x)], dim=-1)
        h = self.patch_embed(rearrange(x, "b x y t c -> (b t) c x y")) + self.pos_embed
        h = self.time_agg_layer(rearrange(h, "(b t) d x y -> b t d x y", t=n_frames))
        if c.normalize:
            h = self.scale_feats_sigma(stats)[..., None, None] * h + self.scale_feats_mu(stats)[..., None, None]
        for block in self.blocks:
            h = block(h)
        cls_pred = self.cls_head(h.mean(dim=(2, 3)))
        pred = rearrange(self.out_layer(h), "b (t c) x y -> b x y t c", t=c.out_timesteps)
        if c.normalize:
            pred = pred * sigma + mu
        return pred, cls_pred

    def forward_fields(self, input_fields: Tensor) -> Tensor:
        """The prediction in pdeforge's channels-first layout: (B, T_in, C_in, X, Y) -> (B, T_out, C_out, X, Y).

        The same map as `forward` (`cls_pred` dropped): `input_fields[b, t, c, i, j]` is DPOT's `x[b, i, j, t, c]`,
        so a `TrajectoryDataset` sample's `input_fields` (frames oldest first, channels in `field_names` order)
        goes in as it is and the result compares with its `output_fields`.
        """
        c = self.config
        if input_fields.dim() != 5:
            hint = " add a batch axis with u[None]" if input_fields.dim() == 4 else ""
            raise ValueError(
                f"expected input_fields of shape (B, T_in={c.in_timesteps}, C={c.in_channels}, X, Y), got "
                f"{tuple(input_fields.shape)}:{hint}"
            )
        pred, _ = self(rearrange(input_fields, "b t c x y -> b x y t c"))
        return rearrange(pred, "b x y t c -> b t c x y")

    def forward_batch(self, batch: Mapping[str, Tensor]) -> Tensor:
        """`forward_fields(batch["input_fields"])` for a batch of `TrajectoryDataset` samples (other keys, such as
        constant fields and scalars, are not inputs of DPOT)."""
        return self.forward_fields(batch["input_fields"])

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        size: str | None = None,
        config: DPOTConfig | Mapping[str, Any] | str | Path | None = None,
        **config_changes: Any,
    ) -> DPOT:
        """Load a checkpoint: a folder (`config.json` + `model.safetensors`), or a released file (`model_Ti.pth`
        ..., a training checkpoint dict whose "model" entry is the state dict; `module.` prefixes are removed).

        The architecture comes from `config` (a `DPOTConfig`, a mapping of constructor arguments or a JSON file),
        else `size` ("Ti" ... "H"), else the folder's `config.json`, else the released file name `model_<size>.pth`.
        `config_changes` set fields for fine-tuning (e.g. `in_channels=2`, `in_timesteps=4`): the tensors whose
        shapes change (`reinitialised_keys`) keep a fresh initialisation, all others are the checkpoint's.
        Pickled files are read with `torch.load(weights_only=True)` only. See `pdeforge.operators.dpot.load_pretrained`.
        """
        from ._io import load_pretrained

        return load_pretrained(path, size=size, config=config, **config_changes)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write `config.json` (the constructor arguments) and `model.safetensors` (the original key names) into the
        folder `path`, each file atomically. Returns the folder."""
        from ._io import save_pretrained

        return save_pretrained(self, path)
