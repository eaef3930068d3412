"""The Well's four baselines as models of the operator family (``model.name: well_fno | well_tfno | well_unet_classic
| well_unet_convnext``), fine-tunable with ``--run.init_from`` a published folder or Hub id.

The Well's formatted input is the operator family's stacked layout without extras: the ``T_in`` frames flattened
frame-major, then the constant fields (``pdeforge.operators.InputLayout`` with ``use_grid`` false and no scalars),
so the network is a Well baseline as published, ``(B, T_in * C + C_const, *S) -> (B, T_out * C, *S)``, under the
key prefix :attr:`STATE_PREFIX`. ``model.args`` hold the architecture's own ``config.json`` keys (defaults: the
published sizes of The Well's benchmark, ``the_well/benchmark/configs/model/*.yaml``); ``dim_in``, ``dim_out``,
``n_spatial_dims`` and ``spatial_resolution`` come from the data and the task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from ._base import AbstractWellBaseline
from ._io import CONFIG_NAME, WELL_BASELINES, load_well_baseline

__all__ = ["WellFNOConfig", "WellTFNOConfig", "WellUNetClassicConfig", "WellUNetConvNextConfig"]


class _WellModel:
    """What the four configs share: ``build`` from the data's sizes and ``read_pretrained`` of a published folder."""

    STATE_PREFIX: ClassVar[str] = "net."
    WELL_NAME: ClassVar[str]

    def build(
        self, in_channels: int, out_channels: int, resolution: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> AbstractWellBaseline:
        """The Well's network ``(B, in_channels, *resolution) -> (B, out_channels, *resolution)``."""
        sized = {
            "dim_in": in_channels,
            "dim_out": out_channels,
            "n_spatial_dims": len(resolution),
            "spatial_resolution": list(resolution),
        }
        args = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        try:
            return WELL_BASELINES[self.WELL_NAME](**sized, **args)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model.args: The Well's {self.WELL_NAME}: {e}") from None

    @classmethod
    def read_pretrained(cls, source: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
        """(the architecture's fields, the state dict under the published keys) of a published folder
        (``config.json`` + ``model.safetensors``) or Hub id (``polymathic-ai/FNO-active_matter``, through
        `load_well_baseline`: strict, safetensors only); None for a weights file (a run's own weights)."""
        path = Path(source)
        if path.is_file() or (path.is_dir() and not (path / CONFIG_NAME).is_file()):
            return None
        net = load_well_baseline(source, model=cls.WELL_NAME)
        names = {f.name for f in dataclasses.fields(cls)}
        args = {k: v for k, v in net.config.items() if k in names}
        if "ranks" in names:  # TFNO: the Tucker ranks of the checkpoint's cores
            args["ranks"] = list(net.state_dict()["model.fno_blocks.convs.weight.0.core"].shape[:-1])
        return args, net.state_dict()


@dataclass(frozen=True)
class WellFNOConfig(_WellModel):
    """``model.name: well_fno``: The Well's FNO (`WellFNO`); defaults as published (modes 16, width 128)."""

    WELL_NAME: ClassVar[str] = "FNO"

    modes1: int = 16
    modes2: int = 16
    modes3: int = 16
    hidden_channels: int = 128
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class WellTFNOConfig(WellFNOConfig):
    """``model.name: well_tfno``: The Well's TFNO (`WellTFNO`), the FNO's options plus ``ranks`` (None: `tucker_ranks`
    of the weights)."""

    WELL_NAME: ClassVar[str] = "TFNO"

    ranks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class WellUNetClassicConfig(_WellModel):
    """``model.name: well_unet_classic``: The Well's UNetClassic (`WellUNetClassic`), 48 features as published."""

    WELL_NAME: ClassVar[str] = "UNetClassic"

    init_features: int = 48
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class WellUNetConvNextConfig(_WellModel):
    """``model.name: well_unet_convnext``: The Well's UNetConvNext (`WellUNetConvNext`), as published."""

    WELL_NAME: ClassVar[str] = "UNetConvNext"

    stages: int = 4
    blocks_per_stage: int = 2
    blocks_at_neck: int = 1
    init_features: int = 42
    gradient_checkpointing: bool = False
