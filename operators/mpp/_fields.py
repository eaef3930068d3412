"""MPP's field vocabulary and the channels-first adapter that runs an `AViT` on pdeforge samples.

The released weights index their fields in the order the original's data code assigns with `use_all_fields`
(PolymathicAI/multiple_physics_pretraining, `data_utils/datasets.py`, `DSET_NAME_TO_OBJECT` order):

    index  dataset     field        pdeforge names mapped to it by `field_labels`
    0      swe         h            h, height, water_height
    1      incompNS    Vx           velocity_x, Vx, vx, u_x (when the data has neither density nor pressure)
    2      incompNS    Vy           velocity_y, Vy, vy, u_y (idem)
    3      incompNS    particles    particles
    4      diffre2d    activator    activator
    5      diffre2d    inhibitor    inhibitor
    6      compNS      Vx           velocity_x, Vx, vx, u_x (when the data has density or pressure)
    7      compNS      Vy           velocity_y, Vy, vy, u_y (idem)
    8      compNS      density      density, rho
    9      compNS      pressure     pressure, p
    10, 11 unused by the released weights: free for new fields when fine-tuning

Other names (e.g. the ``u, v`` of PDEBench's diffusion-reaction, or ``vorticity``) have no index of their own: pass
``field_indices={"u": 4, "v": 5}`` (any index below ``n_states``; 10 and 11 are unused), or a larger ``n_states``.

Boundary conditions: the original's ``bcs[0]`` governs the attention along the LAST grid axis (W) and ``bcs[1]``
along H; `boundary_flags` maps ``DatasetMetadata.boundary_conditions`` (one per spatial axis, in axis order) to
them: ``[periodic(axis -1), periodic(axis -2)]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ._config import AViTConfig
from ._model import AViT

__all__ = ["FIELDS", "field_labels", "boundary_flags", "AViTForFields", "AViTFieldsConfig"]

#: the weights files ``read_pretrained`` takes (the released ``MPP_AViT_*`` files are ``torch.save`` pickles)
RELEASED_SUFFIXES = (".tar", ".pth", ".pt", ".bin", ".safetensors")

# (dataset, field) of each index of the released vocabulary (n_states 12; 10 and 11 unused)
FIELDS: tuple[tuple[str, str] | None, ...] = (
    ("swe", "h"),
    ("incompNS", "Vx"),
    ("incompNS", "Vy"),
    ("incompNS", "particles"),
    ("diffre2d", "activator"),
    ("diffre2d", "inhibitor"),
    ("compNS", "Vx"),
    ("compNS", "Vy"),
    ("compNS", "density"),
    ("compNS", "pressure"),
    None,
    None,
)

_FIXED_NAMES = {
    **dict.fromkeys(("h", "height", "water_height"), 0),
    "particles": 3,
    "activator": 4,
    "inhibitor": 5,
    **dict.fromkeys(("density", "rho"), 8),
    **dict.fromkeys(("pressure", "p"), 9),
}
_VELOCITY = {
    **dict.fromkeys(("velocity_x", "Vx", "vx", "u_x"), 0),
    **dict.fromkeys(("velocity_y", "Vy", "vy", "u_y"), 1),
}


def field_labels(
    field_names: tuple[str, ...] | list[str], field_indices: Mapping[str, int] | None = None, n_states: int = 12
) -> list[int]:
    """The vocabulary index of each channel name (see the module docstring), `field_indices` first.

    Velocities go to the compressible slots (6, 7) when the fields include density or pressure, else to the
    incompressible ones (1, 2). Raises a ValueError naming the field when a name has no index, an index is out of
    range or two channels share one."""
    names = list(field_names)
    given = dict(field_indices or {})
    unknown_given = sorted(set(given) - set(names))
    if unknown_given:
        raise ValueError(f"field_indices names {unknown_given}, which are not among the fields {names}")
    compressible = any(_FIXED_NAMES.get(n) in (8, 9) for n in names if n not in given)
    labels = []
    for name in names:
        if name in given:
            index = given[name]
        elif name in _FIXED_NAMES:
            index = _FIXED_NAMES[name]
        elif name in _VELOCITY:
            index = _VELOCITY[name] + (6 if compressible else 1)
        else:
            raise ValueError(
                f"field {name!r} has no index in MPP's field vocabulary (known: h, velocity_x/y, particles, activator, "
                f"inhibitor, density, pressure): pass field_indices={{{name!r}: i}} with i < n_states={n_states} "
                "(10 and 11 are unused by the released weights)"
            )
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_states:
            raise ValueError(f"field {name!r}: index {index!r}, expected an integer in [0, n_states={n_states})")
        labels.append(index)
    if len(set(labels)) != len(labels):
        pairs = [f"{n}->{i}" for n, i in zip(names, labels)]
        raise ValueError(f"two fields share a vocabulary index ({', '.join(pairs)}): give each its own")
    return labels


def boundary_flags(boundary_conditions: tuple[str, ...] | list[str]) -> list[int]:
    """The original's `bcs` row for a 2-D grid: [periodic along the last axis, periodic along the first axis]."""
    bcs = list(boundary_conditions)
    if len(bcs) != 2:
        raise ValueError(f"AViT works on 2-D grids: got boundary conditions for {len(bcs)} axes {bcs}")
    return [int(bcs[1] == "periodic"), int(bcs[0] == "periodic")]


class AViTForFields(nn.Module):
    """An `AViT` on pdeforge's channels-first samples: `input_fields (B, T_in, C, H, W)` -> `(B, 1, C, H, W)`, the
    next frame, with the fields' vocabulary indices and the boundary flags fixed from the dataset's metadata.

    Args:
        model: the AViT.
        state_labels: the vocabulary index of each channel (`field_labels`).
        bcs: [periodic along W, periodic along H] (`boundary_flags`).

    Examples:
        >>> from pdeforge.datasets import DatasetMetadata
        >>> from pdeforge.operators.mpp import AViTConfig
        >>> metadata = DatasetMetadata(
        ...     dataset_name="cns", field_names=("density", "pressure", "velocity_x", "velocity_y"),
        ...     constant_field_names=(), scalar_names=(), spatial_dims=("x", "y"), resolution=(32, 32),
        ...     domain_lengths=(1.0, 1.0), dt=0.1, boundary_conditions=("periodic", "periodic"),
        ... )
        >>> net = AViTForFields.from_metadata(AViT(AViTConfig.tiny()), metadata)
        >>> net.state_labels.tolist(), net.bcs.tolist()  # compNS density, pressure, Vx, Vy; periodic W and H
        ([8, 9, 6, 7], [1, 1])
        >>> net(torch.randn(2, 4, 4, 32, 32)).shape  # (B, T_in, C, H, W) -> (B, 1, C, H, W)
        torch.Size([2, 1, 4, 32, 32])
    """

    def __init__(self, model: AViT, state_labels: list[int], bcs: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("state_labels", torch.tensor(state_labels, dtype=torch.long), persistent=False)
        self.register_buffer("bcs", torch.tensor(bcs, dtype=torch.long), persistent=False)

    @classmethod
    def from_metadata(cls, model: AViT, metadata: Any, field_indices: Mapping[str, int] | None = None) -> AViTForFields:
        """Labels from `metadata.field_names` and flags from `metadata.boundary_conditions` (a `DatasetMetadata`)."""
        if len(metadata.resolution) != 2:
            raise ValueError(f"AViT works on 2-D grids: {metadata.dataset_name} has resolution {metadata.resolution}")
        labels = field_labels(metadata.field_names, field_indices, model.config.n_states)
        return cls(model, labels, boundary_flags(metadata.boundary_conditions))

    def forward(self, input_fields: Tensor) -> Tensor:
        """input_fields (B, T_in, C, H, W) -> the next frame (B, 1, C, H, W)."""
        if input_fields.dim() != 5 or input_fields.shape[2] != self.state_labels.numel():
            raise ValueError(
                f"input_fields: expected (B, T_in, C={self.state_labels.numel()}, H, W), got "
                f"{tuple(input_fields.shape)}; a single sample needs a batch axis: u[None]"
            )
        b = input_fields.shape[0]
        x = input_fields.transpose(0, 1)  # (T, B, C, H, W): the original's time-first layout
        out = self.model(x, self.state_labels.expand(b, -1), self.bcs.expand(b, -1))
        return out[:, None]

    def forward_batch(self, batch: Mapping[str, Tensor]) -> Tensor:
        """The prediction for a batch of `TrajectoryDataset` samples (its `input_fields`)."""
        return self(batch["input_fields"])


@dataclass(frozen=True)
class AViTFieldsConfig:
    """The operator family's ``avit`` (``model.name: avit``, these fields in ``model.args``): an `AViTConfig`'s fields
    (defaults: the released Ti) and ``field_indices``, the vocabulary index of each field outside `FIELDS`' names.

    Its network (`build_frames`) is an `AViTForFields` with the labels of the dataset's ``field_names`` and the flags
    of its boundary conditions; it predicts one frame from the history of frames, the fields alone (no grid, scalars
    or constant fields). In the `FieldOperator` the AViT's state-dict keys sit under `STATE_PREFIX`.
    """

    STATE_PREFIX: ClassVar[str] = "net.model.model."

    embed_dim: int = 192
    num_heads: int = 3
    processor_blocks: int = 12
    n_states: int = 12
    patch_size: tuple[int, int] = (16, 16)
    block_type: str = "axial"
    space_type: str = "axial_attention"
    time_type: str = "attention"
    bias_type: str = "rel"
    gradient_checkpointing: bool = False
    drop_path: float = 0.2
    field_indices: dict = field(default_factory=dict)

    def avit_config(self) -> AViTConfig:
        """The `AViTConfig` of these fields (``field_indices`` left out)."""
        d = dataclasses.asdict(self)
        del d["field_indices"]
        return AViTConfig.from_dict(d, where="model.args")

    def build_frames(
        self, layout: Any, resolution: tuple[int, ...], periodic: tuple[bool, ...], field_names: list[str]
    ) -> AViTForFields:
        """The network of frames for ``layout`` (an `InputLayout`): ``(B, T_in, C, H, W) -> (B, 1, C, H, W)``."""
        if len(resolution) != 2:
            raise ValueError(f"avit works on 2-D grids: the data have resolution {list(resolution)}")
        if layout.n_steps_output != 1:
            raise ValueError(f"avit predicts one frame at a time: got n_steps_output {layout.n_steps_output}")
        model = AViT(self.avit_config())
        labels = field_labels(list(field_names), self.field_indices, model.config.n_states)
        return AViTForFields(model, labels, boundary_flags(["periodic" if p else "wall" for p in periodic]))

    @staticmethod
    def read_pretrained(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
        """(the architecture's fields, the state dict with the original's keys) of a pretrained source: a
        `save_pretrained` folder (its ``config.json``), or a released weights file (``MPP_AViT_Ti.tar``, a ``.pth``
        bare state dict or ``train_basic.py`` checkpoint, a ``.safetensors`` with the original's keys), whose
        ``embed_dim``, ``num_heads``, ``processor_blocks`` and ``n_states`` are read off its tensors (the size it
        is: Ti, S, B, L); the other fields are the released ones. Pickles are read with ``weights_only`` only.
        None when ``path`` is neither (a run's own weights)."""
        from ._io import CONFIG_NAME, describe_weights, read_checkpoint

        path = Path(path)
        if path.is_dir():
            if not (path / CONFIG_NAME).is_file():
                return None
            return AViTConfig.from_json(path / CONFIG_NAME).to_dict(), read_checkpoint(path)
        if not path.is_file() or path.suffix not in RELEASED_SUFFIXES:
            return None
        state = read_checkpoint(path)
        sizes = describe_weights(state)
        return None if sizes is None else (sizes, state)
