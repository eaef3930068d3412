"""`ScOTConfig`: the scOT / Poseidon hyper-parameters, read from and written to a Hugging Face `config.json`.

The field names are the keys of the `config.json` that the original implementation (camlab-ethz/poseidon,
`scOT/model.py`, a `transformers.PretrainedConfig`) writes, so a released Poseidon folder loads unchanged.

Rule for the other keys of a `config.json`:
- derived keys (`num_layers`, `hidden_size`) are checked against `depths` / `embed_dim` and recomputed on write;
  `model_type` must be "swinv2" and `architectures` is rewritten as ["ScOT"];
- every other key that is not a field (the generic `transformers` keys such as `torch_dtype`,
  `transformers_version`, `id2label`, ...) is kept verbatim in `ScOTConfig.extra` and written back unchanged.
  Nothing in `extra` changes the model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ScOTConfig", "ACTIVATIONS"]

# hidden_act values understood by the MLP of each block (the names `transformers.ACT2FN` uses).
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish", "tanh")

_DERIVED_KEYS = ("num_layers", "hidden_size", "model_type", "architectures")


@dataclass(frozen=True)
class ScOTConfig:
    """Hyper-parameters of scOT (Herde et al. 2024, "Poseidon: Efficient Foundation Models for PDEs").

    Architecture (U-shaped Swin-V2 transformer): a patch embedding of `patch_size` x `patch_size` pixels into
    `embed_dim` channels on a grid of `image_size / patch_size` tokens, `len(depths)` encoder stages of
    `depths[i]` Swin-V2 blocks (width `embed_dim * 2**i`, `num_heads[i]` heads, windows of `window_size`)
    joined by patch merging, the mirrored decoder joined by patch unmerging, skip connections through
    `skip_connections[i]` ConvNeXt blocks, and a patch recovery to `num_out_channels`.

    Optional fields default to the original `ScOTConfig` defaults (note `drop_path_rate=0.1` and
    `use_conditioning=False` there; Poseidon itself uses 0.0 and True, see the presets).

    Fields:
        image_size: side of the square grid the model works on; other inputs are resampled spectrally.
        patch_size: side of a patch; `image_size / patch_size` must be divisible by `2**(len(depths)-1)`.
        num_channels, num_out_channels: input and output channels.
        embed_dim: channels after the patch embedding (stage i has `embed_dim * 2**i`).
        depths, num_heads, skip_connections: per stage: blocks, heads, ConvNeXt blocks on the skip.
        window_size: attention window (reduced to the stage grid where the grid is smaller).
        mlp_ratio: hidden width of the block MLP relative to the stage width.
        qkv_bias: bias on query and value (the key never has one, as in Swin-V2).
        hidden_dropout_prob, attention_probs_dropout_prob, drop_path_rate: regularisation (0 in Poseidon).
        hidden_act: block MLP activation, one of `ACTIVATIONS`.
        use_absolute_embeddings: learned absolute position embedding added after the patch embedding.
        initializer_range: std of the normal initialisation of every Linear / Conv weight.
        layer_norm_eps: eps of the block and ConvNeXt norms (embedding and (un)merging norms use 1e-5).
        p: 1 (L1) or 2 (MSE) training loss.
        channel_slice_list_normalized_loss: channel group boundaries of the relative loss, e.g. [0, 1, 3, 4];
            None gives the plain (absolute) loss.
        residual_model: "convnext" (Poseidon) or "resnet" for the skip blocks.
        use_conditioning: time-conditioned layer norms (gain and shift are affine functions of the time).
        learn_residual: add the input (its first `num_out_channels` channels) to the prediction; only with
            `use_conditioning` (the original silently turns it off otherwise; so does this class).
        pretrained_window_sizes: Swin-V2 window the position-bias coordinates are normalised by (0: own).
        extra: other `config.json` keys, kept verbatim (see the module docstring).
    """

    image_size: int
    patch_size: int
    num_channels: int
    num_out_channels: int
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    skip_connections: tuple[int, ...]
    window_size: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    hidden_act: str = "gelu"
    use_absolute_embeddings: bool = False
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    p: int = 1
    channel_slice_list_normalized_loss: tuple[int, ...] | None = None
    residual_model: str = "convnext"
    use_conditioning: bool = False
    learn_residual: bool = False
    pretrained_window_sizes: tuple[int, ...] = (0, 0, 0, 0)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("depths", "num_heads", "skip_connections", "pretrained_window_sizes"):
            fix(name, tuple(int(v) for v in getattr(self, name)))
        if self.channel_slice_list_normalized_loss is not None:
            fix("channel_slice_list_normalized_loss", tuple(int(v) for v in self.channel_slice_list_normalized_loss))
        if not self.use_conditioning and self.learn_residual:
            fix("learn_residual", False)
        fix("extra", dict(self.extra))
        self._validate()

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        n = len(self.depths)
        if n < 1:
            raise ValueError("depths must name at least one stage, got ()")
        for name in ("num_heads", "skip_connections"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries but depths has {n} stages: "
                    f"give one value per stage ({name}={list(getattr(self, name))}, depths={list(self.depths)})"
                )
        if len(self.pretrained_window_sizes) < n:
            raise ValueError(f"pretrained_window_sizes needs {n} entries, got {list(self.pretrained_window_sizes)}")
        for name in ("image_size", "patch_size", "num_channels", "num_out_channels", "embed_dim", "window_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if any(d < 0 for d in self.depths) or any(s < 0 for s in self.skip_connections):
            raise ValueError(f"depths and skip_connections must be >= 0, got {self.depths}, {self.skip_connections}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        grid = self.image_size // self.patch_size
        if grid % 2 ** (n - 1):
            raise ValueError(
                f"the token grid image_size/patch_size = {grid} must be divisible by 2**(len(depths)-1) = "
                f"{2 ** (n - 1)} so that every patch merging halves it exactly"
            )
        for i, heads in enumerate(self.num_heads):
            width = self.embed_dim * 2**i
            if heads < 1 or width % heads:
                raise ValueError(f"stage {i}: width embed_dim*2**{i} = {width} is not divisible by num_heads {heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; expected one of {ACTIVATIONS}")
        if self.residual_model not in ("convnext", "resnet"):
            raise ValueError(f"residual_model must be 'convnext' or 'resnet', got {self.residual_model!r}")
        if self.p not in (1, 2):
            raise ValueError(f"p must be 1 (L1 loss) or 2 (MSE loss), got {self.p}")
        csl = self.channel_slice_list_normalized_loss
        if csl is not None:
            ok = len(csl) >= 2 and csl[0] == 0 and all(a < b for a, b in zip(csl, csl[1:]))
            if not ok or csl[-1] > self.num_out_channels:
                raise ValueError(
                    f"channel_slice_list_normalized_loss {list(csl)} must start at 0, increase strictly and end at "
                    f"most at num_out_channels = {self.num_out_channels} (e.g. [0, 1, 3, 4] for rho, (u, v), p)"
                )
        if self.learn_residual and self.num_channels < self.num_out_channels:
            raise ValueError(
                f"learn_residual adds the input to the output: needs num_channels >= num_out_channels, got "
                f"{self.num_channels} < {self.num_out_channels}"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    # ------------------------------------------------------------- geometry
    @property
    def num_layers(self) -> int:
        """Number of encoder (and decoder) stages."""
        return len(self.depths)

    @property
    def hidden_size(self) -> int:
        """Width of the deepest stage, `embed_dim * 2**(num_layers-1)`."""
        return int(self.embed_dim * 2 ** (self.num_layers - 1))

    @property
    def grid_size(self) -> int:
        """Side of the token grid of the first stage, `image_size // patch_size`."""
        return self.image_size // self.patch_size

    # -------------------------------------------------------------- presets
    @classmethod
    def poseidon_T(cls, **overrides: Any) -> ScOTConfig:
        """Poseidon-T (20,774,444 parameters): embed 48, depths [4,4,4,4], on 128x128 with 4 -> 4 channels."""
        return cls._poseidon(embed_dim=48, depths=(4, 4, 4, 4), **overrides)

    @classmethod
    def poseidon_B(cls, **overrides: Any) -> ScOTConfig:
        """Poseidon-B (157,729,988 parameters): embed 96, depths [8,8,8,8] (poseidon `scOT/train.py` MODEL_MAP)."""
        return cls._poseidon(embed_dim=96, depths=(8, 8, 8, 8), **overrides)

    @classmethod
    def poseidon_L(cls, **overrides: Any) -> ScOTConfig:
        """Poseidon-L (628,575,524 parameters): embed 192, depths [8,8,8,8] (poseidon `scOT/train.py` MODEL_MAP)."""
        return cls._poseidon(embed_dim=192, depths=(8, 8, 8, 8), **overrides)

    @classmethod
    def _poseidon(cls, embed_dim: int, depths: tuple[int, ...], **overrides: Any) -> ScOTConfig:
        base = dict(
            image_size=128,
            patch_size=4,
            num_channels=4,
            num_out_channels=4,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=(3, 6, 12, 24),
            skip_connections=(2, 2, 2, 0),
            window_size=16,
            mlp_ratio=4.0,
            drop_path_rate=0.0,
            channel_slice_list_normalized_loss=(0, 1, 3, 4),
            use_conditioning=True,
            learn_residual=False,
        )
        return cls(**{**base, **overrides})

    @classmethod
    def tiny(cls, **overrides: Any) -> ScOTConfig:
        """A CPU-sized scOT (363,480 parameters): 32x32, patch 2, embed 8, depths [2,2,2,2], window 4.

        Defaults to 4 -> 4 channels with a plain (absolute) loss; override as needed.
        """
        base = dict(
            image_size=32,
            patch_size=2,
            num_channels=4,
            num_out_channels=4,
            embed_dim=8,
            depths=(2, 2, 2, 2),
            num_heads=(1, 2, 4, 8),
            skip_connections=(2, 1, 1, 0),
            window_size=4,
            drop_path_rate=0.0,
            use_conditioning=True,
        )
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> ScOTConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ (de)serialise
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScOTConfig:
        """Build from a `config.json` mapping; see the module docstring for keys that are not fields."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in d]
        if missing:
            raise KeyError(f"config is missing required key(s) {missing}; present keys: {sorted(d)[:30]}")
        if d.get("model_type", "swinv2") != "swinv2":
            raise ValueError(f"model_type {d['model_type']!r} is not a scOT config (expected 'swinv2')")
        kwargs = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in _DERIVED_KEYS}
        config = cls(**kwargs, extra=extra)
        for key in ("num_layers", "hidden_size"):
            if key in d and d[key] != getattr(config, key):
                raise ValueError(
                    f"config.json says {key} = {d[key]} but depths/embed_dim give {getattr(config, key)}: "
                    "the file is inconsistent"
                )
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> ScOTConfig:
        """Read a Hugging Face `config.json` (a file, or a folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        """The `config.json` mapping: fields, derived keys, and the kept `extra` keys (sorted)."""
        d: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        d["num_layers"] = self.num_layers
        d["hidden_size"] = self.hidden_size
        d["model_type"] = "swinv2"
        d["architectures"] = ["ScOT"]
        return dict(sorted(d.items()))

    def to_json(self) -> str:
        """`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def stage_window(self, stage: int) -> tuple[int, int]:
        """(window, shift) of the shifted blocks of `stage`: the window shrinks to the stage grid when the grid
        is not larger, and then nothing is shifted."""
        grid = self.grid_size // 2**stage
        if grid <= self.window_size:
            return grid, 0
        return self.window_size, self.window_size // 2
