"""`DPOTFieldsConfig`: DPOT as a model of the operator family (``model.name: dpot``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor

from ._config import DPOTConfig
from ._model import DPOT

__all__ = ["DPOTFieldsConfig", "DATA_SIZED_KEYS"]

#: the `DPOTConfig` fields the data set (grid side, fields per frame, frames in and out)
DATA_SIZED_KEYS = ("img_size", "in_channels", "out_channels", "in_timesteps", "out_timesteps")


@dataclass(frozen=True)
class DPOTFieldsConfig:
    """The operator family's ``dpot`` (``model.name: dpot``, these fields in ``model.args``): the `DPOTConfig` fields
    that the data do not set (defaults: the released Ti); ``img_size``, ``in_channels = out_channels`` (the fields),
    ``in_timesteps`` and ``out_timesteps`` come from the dataset and the task.

    Its network (`build_frames`) is a `DPOT` on channels-first frames, ``(B, T_in, C, X, Y) -> (B, T_out, C, X, Y)``,
    the fields alone (no grid, scalars or constant fields). In the `FieldOperator` the DPOT's state-dict keys sit
    under `STATE_PREFIX`.
    """

    STATE_PREFIX: ClassVar[str] = "net.model."

    patch_size: int = 8
    mixing_type: str = "afno"
    n_blocks: int = 4
    embed_dim: int = 512
    out_layer_dim: int = 32
    depth: int = 4
    modes: int = 32
    mlp_ratio: float = 1.0
    n_cls: int = 12
    normalize: bool = False
    act: str = "gelu"
    time_agg: str = "exp_mlp"

    def build_frames(
        self, layout: Any, resolution: tuple[int, ...], periodic: tuple[bool, ...], field_names: list[str]
    ) -> DPOT:
        """The network of frames for ``layout`` (an `InputLayout`) on a square 2-D grid of side ``resolution[0]``."""
        if len(resolution) != 2 or resolution[0] != resolution[1]:
            raise ValueError(f"dpot needs a square 2-D grid: the data have resolution {list(resolution)}")
        sized = {
            "img_size": int(resolution[0]),
            "in_channels": layout.n_fields,
            "out_channels": layout.n_fields,
            "in_timesteps": layout.n_steps_input,
            "out_timesteps": layout.n_steps_output,
        }
        try:
            return DPOT(DPOTConfig(**dataclasses.asdict(self), **sized))
        except ValueError as e:
            raise ValueError(f"model.args: {e}") from None

    @staticmethod
    def read_pretrained(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
        """(the architecture's fields but the data-sized ones, the state dict with the original's keys) of a
        pretrained source: a `save_pretrained` folder (its ``config.json``), or a released weights file
        (``model_Ti.pth`` ... from hzk17/DPOT: the size its name says; another name: ``model.args``, by default the
        released Ti), a ``.pth`` / ``.pt`` / ``.bin`` read with ``weights_only`` only or a ``.safetensors``. None
        when ``path`` is neither (a run's own weights)."""
        from ._io import CONFIG_NAME, read_checkpoint, released_size

        path = Path(path)
        if path.is_dir():
            if not (path / CONFIG_NAME).is_file():
                return None
            config: DPOTConfig | None = DPOTConfig.from_json(path / CONFIG_NAME)
            state = read_checkpoint(path)
        elif path.is_file() and path.suffix in (".pth", ".pt", ".bin", ".safetensors"):
            state = read_checkpoint(path)
            if "pos_embed" not in state:  # not DPOT's keys: a run's own weights
                return None
            size = released_size(path)
            config = DPOTConfig.released(size) if size else None
        else:
            return None
        args = {} if config is None else {f.name: getattr(config, f.name) for f in dataclasses.fields(DPOTFieldsConfig)}
        return args, state
