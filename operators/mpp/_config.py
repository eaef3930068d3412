"""`AViTConfig`: the hyper-parameters of MPP's AViT, read from and written to a `config.json`.

The keys are the arguments the original `build_avit(params)` reads (PolymathicAI/multiple_physics_pretraining,
`models/avit.py` and the `basic_config` of `config/mpp_avit_{ti,s,b,L}_config.yaml`), so a `config.json` holding
exactly those keys describes a released model:

    {"embed_dim": 192, "num_heads": 3, "processor_blocks": 12, "n_states": 12, "patch_size": [16, 16],
     "block_type": "axial", "space_type": "axial_attention", "time_type": "attention", "bias_type": "rel",
     "gradient_checkpointing": false}

`drop_path` (the stochastic-depth rate of the last block, 0.2 in the original, where the yaml value is not read) is
written only when it differs from 0.2.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AViTConfig", "SIZES"]

# the released sizes (README of the original: n_states 12 for all released weights)
SIZES: dict[str, dict[str, int]] = {
    "Ti": {"embed_dim": 192, "num_heads": 3, "processor_blocks": 12},
    "S": {"embed_dim": 384, "num_heads": 6, "processor_blocks": 12},
    "B": {"embed_dim": 768, "num_heads": 12, "processor_blocks": 12},
    "L": {"embed_dim": 1024, "num_heads": 16, "processor_blocks": 24},
}

# the only values the original builds (it raises NotImplementedError for the others)
_FIXED = {"block_type": "axial", "space_type": "axial_attention", "time_type": "attention"}
_BIAS_TYPES = ("rel", "none")
_DEFAULT_DROP_PATH = 0.2


@dataclass(frozen=True)
class AViTConfig:
    """Hyper-parameters of the AViT of McCabe et al., "Multiple Physics Pretraining for Physical Surrogate Models"
    (NeurIPS 2024).

    Fields:
        embed_dim: token width; the field embedding and the patch stem's inner width are `embed_dim / 4`.
        num_heads: attention heads (head width `embed_dim / num_heads`).
        processor_blocks: space-time blocks (temporal attention, then axial spatial attention + MLP).
        n_states: size of the field vocabulary (12 for every released model; see `pdeforge.operators.mpp.FIELDS`).
        patch_size: (16, 16): the original stem is three strided convolutions of 4, 2, 2 whatever this says; other
            values are refused rather than silently ignored.
        block_type, space_type, time_type: "axial", "axial_attention", "attention" (the only ones the original has).
        bias_type: "rel" (T5 relative-position buckets, the released models) or "none" (no position bias).
            The original's "continuous" bias is not implemented.
        gradient_checkpointing: recompute each block's activations in the backward pass (saves memory in training).
        drop_path: stochastic-depth rate of the last block; block i uses `drop_path * i / (processor_blocks - 1)`.
    """

    embed_dim: int
    num_heads: int
    processor_blocks: int
    n_states: int
    patch_size: tuple[int, int] = (16, 16)
    block_type: str = "axial"
    space_type: str = "axial_attention"
    time_type: str = "attention"
    bias_type: str = "rel"
    gradient_checkpointing: bool = False
    drop_path: float = _DEFAULT_DROP_PATH

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        for name in ("embed_dim", "num_heads", "processor_blocks", "n_states"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AViTConfig: {name} = {value!r}, expected a positive integer")
        if self.embed_dim % 4:
            raise ValueError(
                f"AViTConfig: embed_dim = {self.embed_dim}, expected a multiple of 4 (the stem is embed/4)"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"AViTConfig: embed_dim = {self.embed_dim} is not divisible by num_heads = {self.num_heads}"
            )
        if self.patch_size != (16, 16):
            raise ValueError(
                f"AViTConfig: patch_size = {list(self.patch_size)}, expected [16, 16] (the original's stem is fixed "
                "at 16 x 16 pixels per token and ignores this value)"
            )
        for name, value in _FIXED.items():
            if getattr(self, name) != value:
                raise ValueError(f"AViTConfig: {name} = {getattr(self, name)!r}, expected {value!r} (the only one)")
        if self.bias_type not in _BIAS_TYPES:
            raise ValueError(f"AViTConfig: bias_type = {self.bias_type!r}, expected one of {list(_BIAS_TYPES)}")
        if not 0.0 <= float(self.drop_path) < 1.0:
            raise ValueError(f"AViTConfig: drop_path = {self.drop_path!r}, expected a rate in [0, 1)")

    # ------------------------------------------------------------------ presets
    @classmethod
    def size(cls, name: str, n_states: int = 12, **changes: Any) -> AViTConfig:
        """A released size: "Ti" (7.3M parameters), "S" (29M), "B" (116M) or "L" (407M), n_states 12."""
        key = {k.lower(): k for k in SIZES}.get(str(name).lower())
        if key is None:
            raise ValueError(f"unknown AViT size {name!r}: expected one of {list(SIZES)}")
        return cls(**SIZES[key], n_states=n_states, **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> AViTConfig:
        """A small model for tests and CPU runs: embed 16, 2 heads, 2 blocks, 12 states (about 11k parameters)."""
        return cls(**{"embed_dim": 16, "num_heads": 2, "processor_blocks": 2, "n_states": 12, **changes})

    def replace(self, **changes: Any) -> AViTConfig:
        return dataclasses.replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The `build_avit` keys (plus `drop_path` when not 0.2), JSON-able."""
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        if d["drop_path"] == _DEFAULT_DROP_PATH:
            del d["drop_path"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "AViTConfig") -> AViTConfig:
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object of AViT settings, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; expected a subset of {names}")
        missing = [n for n in ("embed_dim", "num_heads", "processor_blocks", "n_states") if n not in d]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> AViTConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(d, where=str(path))
