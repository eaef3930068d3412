"""`AViT`: the axial vision transformer of MPP (McCabe et al. 2024, "Multiple Physics Pretraining for Physical
Surrogate Models") in plain PyTorch, with the module tree (hence `state_dict()` keys, shapes and order) of the
original (PolymathicAI/multiple_physics_pretraining, `models/avit.py`), so the released Ti/S/B/L weights load
unchanged; see `_io.py` for the files it reads and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._config import AViTConfig
from ._layers import PatchDecoder, PatchStem, SpaceTimeBlock, SubsampledLinear

__all__ = ["AViT"]

# per-sample, per-channel statistics of the input: std + 1e-7 (Bessel-corrected std over time and space)
INPUT_STD_EPS = 1e-7


class AViT(nn.Module):
    """MPP's AViT: predicts the next frame of a history of T frames of any subset of the fields of its vocabulary.

    Forward (as the original): `output = model(x, state_labels, bcs)`.

    1. Normalise per sample and channel over time and space: (x - mean) / (std + 1e-7), std with Bessel's correction,
       statistics without gradient.
    2. Embed each pixel's field vector with `space_bag` (the columns of `state_labels`, times sqrt(n_states / C)).
    3. Patch stem per frame: tokens of 16 x 16 pixels, (T, B, E, H/16, W/16).
    4. `processor_blocks` space-time blocks: attention over time, then axial attention over space and an MLP.
    5. Decode the last frame with the label-selected output head and undo step 1 with the same mean and std.

    Args of `forward`:
        x: (T, B, C, H, W), time first; H and W multiples of 16 (and at least 32 on one axis).
        state_labels: (B, C) int64, the index of each channel of x in the field vocabulary (`n_states`); only row 0
            is read, so every sample must have the same fields. A (C,) vector is accepted too.
        bcs: (B, 2) int64, 1 = periodic, 0 = not: `bcs[:, 0]` for the W axis (last), `bcs[:, 1]` for the H axis;
            only row 0 is read. A (2,) vector is accepted too.

    Returns:
        (B, C, H, W): the predicted next frame, in the units of x.

    Examples:
        >>> model = AViT(AViTConfig.tiny()).eval()
        >>> x = torch.randn(4, 2, 3, 32, 32)  # (T, B, C, H, W)
        >>> model(x, torch.tensor([[1, 2, 3]] * 2), torch.tensor([[1, 1]] * 2)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, config: AViTConfig) -> None:
        super().__init__()
        if not isinstance(config, AViTConfig):
            raise TypeError(f"AViT expects an AViTConfig, got {type(config).__name__}: use AViTConfig.from_dict")
        self.config = config
        e, n = config.embed_dim, config.processor_blocks
        rates = [config.drop_path * i / (n - 1) if n > 1 else 0.0 for i in range(n)]  # linear from 0
        self.space_bag = SubsampledLinear(config.n_states, e // 4)
        self.embed = PatchStem(e)
        self.blocks = nn.ModuleList(SpaceTimeBlock(e, config.num_heads, r, config.bias_type) for r in rates)
        self.debed = PatchDecoder(e, config.n_states)

    # --------------------------------------------------------------- checks
    def _check(self, x: Tensor, state_labels: Tensor, bcs: Tensor) -> tuple[Tensor, bool, bool]:
        """(labels (C,) on x's device, periodic along W, periodic along H), or a ValueError saying what to fix."""
        if x.dim() != 5:
            hint = " add a batch axis with x[:, None]" if x.dim() == 4 else ""
            raise ValueError(f"expected x of shape (T, B, C, H, W) (time first), got {tuple(x.shape)}:{hint}")
        _, b, c, h, w = x.shape
        if h % 16 or w % 16 or (h // 16) * (w // 16) < 2:
            raise ValueError(
                f"x has a {h} x {w} grid: H and W must be multiples of 16 (one token per 16 x 16 pixels) with at "
                "least two tokens (e.g. 32 x 16); pad or crop the grid"
            )
        dtype = self.space_bag.weight.dtype
        if x.dtype != dtype:
            raise TypeError(f"x is {x.dtype} but the model is {dtype}: convert one (x.to({dtype}) or model.to(...))")
        state_labels, bcs = torch.as_tensor(state_labels), torch.as_tensor(bcs)
        if state_labels.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
            raise TypeError(f"state_labels must be integer indices, got {state_labels.dtype}")
        if state_labels.dim() == 1:
            state_labels = state_labels[None]
        if state_labels.dim() != 2 or state_labels.shape[1] != c:
            raise ValueError(
                f"expected state_labels of shape (B, C={c}) (one vocabulary index per channel of x), "
                f"got {tuple(state_labels.shape)}"
            )
        labels = state_labels.detach().cpu()
        if not (labels == labels[:1]).all():
            raise ValueError(
                "state_labels differ between samples: the model reads row 0 only, so every sample of a batch must "
                f"have the same fields (got {labels.tolist()})"
            )
        first = labels[0]
        if first.min() < 0 or first.max() >= self.config.n_states or len(set(first.tolist())) != c:
            raise ValueError(
                f"state_labels {first.tolist()}: expected {c} distinct indices in [0, n_states={self.config.n_states})"
            )
        if bcs.dim() == 1:
            bcs = bcs[None]
        if bcs.dim() != 2 or bcs.shape[1] != 2:
            raise ValueError(f"expected bcs of shape (B, 2) (W axis, H axis; 1 = periodic), got {tuple(bcs.shape)}")
        flags = bcs[0].detach().cpu().tolist()
        if any(f not in (0, 1) for f in flags):
            raise ValueError(f"bcs {flags}: expected 0 (not periodic) or 1 (periodic) per axis")
        return first.to(device=x.device, dtype=torch.long), bool(flags[0]), bool(flags[1])

    # -------------------------------------------------------------- forward
    def forward(self, x: Tensor, state_labels: Tensor, bcs: Tensor) -> Tensor:
        """See the class docstring: x (T, B, C, H, W), state_labels (B, C), bcs (B, 2) -> (B, C, H, W)."""
        labels, periodic_w, periodic_h = self._check(x, state_labels, bcs)
        t = x.shape[0]
        with torch.no_grad():
            std, mean = torch.std_mean(x, dim=(0, -2, -1), keepdim=True)  # (1, B, C, 1, 1)
            std = std + INPUT_STD_EPS
        x = (x - mean) / std
        x = self.space_bag(rearrange(x, "t b c h w -> t b h w c"), labels)
        x = self.embed(rearrange(x, "t b h w c -> (t b) c h w"))
        x = rearrange(x, "(t b) c h w -> t b c h w", t=t)
        for block in self.blocks:
            if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, periodic_w, periodic_h, use_reentrant=False)
            else:
                x = block(x, periodic_w, periodic_h)
        # the decoder works frame by frame, so decoding the last frame alone gives the original's x[-1]
        out = self.debed(x[-1], labels)
        return out * std[0] + mean[0]

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        size: str | None = None,
        config: AViTConfig | dict[str, Any] | str | Path | None = None,
        **config_changes: Any,
    ) -> AViT:
        """Load MPP weights: a folder with `config.json` + `model.safetensors`, or a released / training file
        (`.pth`, `.tar`, `.pt`, `.safetensors`) with its `size` ("Ti", "S", "B", "L") or `config` (an `AViTConfig`, a
        dict of its keys or a `config.json` path). The original's training checkpoints (`model_state`), DDP key
        prefixes (`module.`) and bare state dicts are accepted; pickles are read with `torch.load(weights_only=True)`
        only. `config_changes`: other fields (e.g. a larger `n_states` for new fields: the vocabulary's rows are
        extended as the original's `expand_projections` does). See `pdeforge.operators.mpp.load_pretrained`."""
        from ._io import load_pretrained

        return load_pretrained(path, size=size, config=config, **config_changes)

    def save_pretrained(self, path: str | Path, *, safe_serialization: bool = True) -> Path:
        """Write `config.json` and `model.safetensors` (or `model.pth` when `safe_serialization` is False) into the
        folder `path`, each atomically. Returns the folder."""
        from ._io import save_pretrained

        return save_pretrained(self, path, safe_serialization=safe_serialization)
