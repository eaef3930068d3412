"""`DPOTConfig`: the DPOT hyper-parameters, read from and written to a `config.json` of constructor arguments.

The field names and defaults are the keyword arguments of the original constructor (`DPOTNet` in
HaoZhongkai/DPOT, `models/dpot.py`), so a `config.json` holding those arguments (what the released checkpoints
were built with) describes the same network here. The released sizes are `DPOTConfig.released("Ti")` ... `("H")`.

Keys of a `config.json` that are not fields:
- the original's arguments that build nothing and change no output (`representation_size`, `uniform_drop`,
  `drop_rate`, `drop_path_rate`, `dropcls`: its forward has no dropout or drop-path) are kept verbatim in
  `DPOTConfig.extra` and written back unchanged;
- any other key is refused (the original constructor would refuse it too).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...datasets import DatasetMetadata

__all__ = ["DPOTConfig", "ACTIVATIONS", "RELEASED_SIZES", "RELEASED_PARAMETERS", "INERT_KEYS"]

# `act` names of the original, each with the torch module it stands for (see `_model.activation`)
ACTIVATIONS = ("gelu", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "ELU", "silu")

# arguments of the original constructor that have no effect on the network (kept in `extra`)
INERT_KEYS = ("representation_size", "uniform_drop", "drop_rate", "drop_path_rate", "dropcls")

# The released checkpoints (Hugging Face hzk17/DPOT, model_<size>.pth): what differs between sizes, and the
# parameter count of each. Ti is the authors' README loading example; S, M, L from the README table and the
# repository's configs; H from the README table only (mlp_ratio 4, out_layer_dim 128 give its 1.03B).
RELEASED_SIZES: dict[str, dict[str, Any]] = {
    "Ti": dict(embed_dim=512, depth=4, n_blocks=4, mlp_ratio=1, out_layer_dim=32),
    "S": dict(embed_dim=1024, depth=6, n_blocks=8, mlp_ratio=1, out_layer_dim=32),
    "M": dict(embed_dim=1024, depth=12, n_blocks=8, mlp_ratio=4, out_layer_dim=32),
    "L": dict(embed_dim=1536, depth=24, n_blocks=16, mlp_ratio=4, out_layer_dim=128),
    "H": dict(embed_dim=2048, depth=27, n_blocks=8, mlp_ratio=4, out_layer_dim=128),
}
RELEASED_PARAMETERS = {"Ti": 7_534_643, "S": 30_801_459, "M": 122_125_875, "L": 509_018_739, "H": 1_031_082_099}
_SIZE_ALIASES = {"tiny": "Ti", "small": "S", "medium": "M", "large": "L", "huge": "H"}
# what every released size shares: 128 x 128 grids, 4 channels, 10 input frames -> 1, 12 pretraining datasets
_RELEASED_BASE: dict[str, Any] = dict(
    img_size=128,
    patch_size=8,
    mixing_type="afno",
    in_channels=4,
    out_channels=4,
    in_timesteps=10,
    out_timesteps=1,
    modes=32,
    n_cls=12,
    normalize=False,
    act="gelu",
    time_agg="exp_mlp",
)


@dataclass(frozen=True)
class DPOTConfig:
    """Hyper-parameters of DPOT (Hao et al., ICML 2024, "DPOT: Auto-Regressive Denoising Operator Transformer for
    Large-Scale PDE Pre-Training"), named as the original constructor's arguments, with its defaults.

    The network maps `in_timesteps` frames of `in_channels` fields on an `img_size` x `img_size` grid to
    `out_timesteps` frames of `out_channels` fields (and a classification of the dataset into `n_cls` classes):
    patches of `patch_size` x `patch_size` embedded into `embed_dim` channels, the frames aggregated over time,
    `depth` AFNO blocks (Fourier mixing on `modes` x `modes` modes in `n_blocks` channel blocks, then a channel MLP
    of width `embed_dim * mlp_ratio`), and a transposed-convolution head of width `out_layer_dim`.

    Fields:
        img_size: side of the square grid; inputs must have exactly this size (the model does not resample).
        patch_size: side of a patch; must divide `img_size`.
        mixing_type: "afno", the only token mixer of the released models.
        in_channels, out_channels: fields per input / output frame.
        in_timesteps, out_timesteps: input frames (the model takes exactly this many) and predicted frames.
        n_blocks: channel blocks of the AFNO filter; must divide `embed_dim`.
        embed_dim: latent channels; a multiple of 8 (the block norms are GroupNorm with 8 groups).
        out_layer_dim: width of the prediction head.
        depth: number of blocks.
        modes: Fourier modes kept per latent axis (indices 0 .. modes-1 of the FFT array; the rest are zeroed).
        mlp_ratio: hidden width of the block MLP, `int(embed_dim * mlp_ratio)`.
        n_cls: classes of the dataset classifier (`cls_pred`).
        normalize: standardise each sample's channels and feed their mean and std to the latent (needs
            `in_channels == out_channels`; no released checkpoint uses it).
        act: activation, one of `ACTIVATIONS`.
        time_agg: "exp_mlp" (the released one: a learned cosine time encoding, then a linear map over frames and
            channels) or "mlp" (without the cosine).
        extra: the original's arguments that change nothing (see the module docstring), kept verbatim.
    """

    img_size: int = 224
    patch_size: int = 16
    mixing_type: str = "afno"
    in_channels: int = 1
    out_channels: int = 3
    in_timesteps: int = 1
    out_timesteps: int = 1
    n_blocks: int = 4
    embed_dim: int = 768
    out_layer_dim: int = 32
    depth: int = 12
    modes: int = 32
    mlp_ratio: float = 1.0
    n_cls: int = 1
    normalize: bool = False
    act: str = "gelu"
    time_agg: str = "exp_mlp"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", dict(self.extra))
        self._validate()

    def _validate(self) -> None:
        for name in (
            "img_size",
            "patch_size",
            "in_channels",
            "out_channels",
            "in_timesteps",
            "out_timesteps",
            "n_blocks",
            "embed_dim",
            "out_layer_dim",
            "modes",
            "n_cls",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DPOTConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            raise ValueError(f"DPOTConfig.depth must be an integer >= 0, got {self.depth!r}")
        if self.mixing_type != "afno":
            raise ValueError(
                f"DPOTConfig.mixing_type must be 'afno' (the only mixer DPOT has), got {self.mixing_type!r}"
            )
        if self.img_size % self.patch_size:
            raise ValueError(f"DPOTConfig.img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % 8:
            raise ValueError(
                f"DPOTConfig.embed_dim must be a multiple of 8 (GroupNorm with 8 groups), got {self.embed_dim}"
            )
        if self.embed_dim % self.n_blocks:
            raise ValueError(f"DPOTConfig.embed_dim {self.embed_dim} is not divisible by n_blocks {self.n_blocks}")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"DPOTConfig.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        if int(self.embed_dim * self.mlp_ratio) < 1:
            raise ValueError(
                f"DPOTConfig: embed_dim * mlp_ratio = {self.embed_dim * self.mlp_ratio} gives no MLP width"
            )
        if self.act not in ACTIVATIONS:
            raise ValueError(f"DPOTConfig.act {self.act!r} is not supported; expected one of {ACTIVATIONS}")
        if self.time_agg not in ("exp_mlp", "mlp"):
            raise ValueError(f"DPOTConfig.time_agg must be 'exp_mlp' or 'mlp', got {self.time_agg!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"DPOTConfig.normalize must be true or false, got {self.normalize!r}")
        if self.normalize and self.in_channels != self.out_channels:
            raise ValueError(
                "DPOTConfig.normalize de-standardises the prediction with the input's statistics: it needs "
                f"in_channels == out_channels, got {self.in_channels} and {self.out_channels}"
            )
        unknown = sorted(set(self.extra) - set(INERT_KEYS))
        if unknown:
            raise ValueError(f"DPOTConfig.extra: unknown keys {unknown}; only the inert {list(INERT_KEYS)} are kept")

    # ------------------------------------------------------------- geometry
    @property
    def grid_size(self) -> int:
        """Side of the latent (patch) grid, `img_size // patch_size`."""
        return self.img_size // self.patch_size

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the block MLP, `int(embed_dim * mlp_ratio)`."""
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def patch_hidden(self) -> int:
        """Width of the patch embedding's hidden layer: `out_channels * patch_size + 3` (the original sizes it
        from the OUTPUT channel count)."""
        return self.out_channels * self.patch_size + 3

    # -------------------------------------------------------------- presets
    @classmethod
    def released(cls, size: str, **overrides: Any) -> DPOTConfig:
        """The configuration of a released checkpoint: `size` is "Ti", "S", "M", "L" or "H" (or "tiny" ...
        "huge"). All sizes take 10 frames of 4 channels on 128 x 128 and predict 1 frame; `overrides` change any
        field (e.g. `in_channels=2` to fine-tune to other data)."""
        key = _SIZE_ALIASES.get(str(size).lower(), size)
        if key not in RELEASED_SIZES:
            raise ValueError(
                f"unknown DPOT size {size!r}; expected one of {list(RELEASED_SIZES)} (or {list(_SIZE_ALIASES)})"
            )
        return cls(**{**_RELEASED_BASE, **RELEASED_SIZES[key], **overrides})

    @classmethod
    def from_metadata(
        cls,
        metadata: DatasetMetadata,
        n_steps_input: int,
        n_steps_output: int = 1,
        *,
        size: str | None = None,
        ignore_conditioning: bool = False,
        **overrides: Any,
    ) -> DPOTConfig:
        """A config sized for a dataset: `in_channels = out_channels = metadata.n_fields` (the time-varying
        fields, in The Well's flattening order), `img_size = metadata.resolution`, `in_timesteps = n_steps_input`,
        `out_timesteps = n_steps_output`; the architecture is that of `size` (a released size) or the defaults,
        and `overrides` set any field.

        DPOT takes the time-varying fields only: a dataset with constant fields or scalars (equation parameters)
        is refused unless `ignore_conditioning` is true, since the model would not see what distinguishes its
        trajectories. Needs a square 2D grid whose side is a multiple of `patch_size`.
        """
        if metadata.n_spatial_dims != 2 or metadata.resolution[0] != metadata.resolution[1]:
            raise ValueError(
                f"DPOT needs a square 2D grid; dataset {metadata.dataset_name!r} has resolution "
                f"{tuple(metadata.resolution)}"
            )
        if not ignore_conditioning and (metadata.n_constant_fields or metadata.n_scalars):
            raise ValueError(
                f"dataset {metadata.dataset_name!r} has constant fields {list(metadata.constant_field_names)} and "
                f"scalars {list(metadata.scalar_names)}, which DPOT does not take as inputs: pass "
                "ignore_conditioning=True to train on the time-varying fields alone"
            )
        sized = {
            "img_size": int(metadata.resolution[0]),
            "in_channels": metadata.n_fields,
            "out_channels": metadata.n_fields,
            "in_timesteps": int(n_steps_input),
            "out_timesteps": int(n_steps_output),
        }
        if size is not None:
            return cls.released(size, **{**sized, **overrides})
        return cls(**{**sized, **overrides})

    def replace(self, **changes: Any) -> DPOTConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ (de)serialise
    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> DPOTConfig:
        """Build from the original constructor's keyword arguments (a `config.json` mapping); `source` names the
        file in error messages."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object of DPOT constructor arguments, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(d) - names - set(INERT_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {unknown}; expected DPOT constructor arguments {sorted(names)} "
                f"(or the inert {list(INERT_KEYS)})"
            )
        kwargs = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k in INERT_KEYS}
        try:
            return cls(**kwargs, extra=extra)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> DPOTConfig:
        """Read a `config.json` (a file, or a folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(d, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments (`DPOTNet(**config.to_dict())` builds the same network), then `extra`."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**d, **self.extra}

    def to_json(self) -> str:
        """`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=1) + "\n"
