"""Build a surrogate model from :class:`~pdeforge.datasets.DatasetMetadata`, and rebuild it from its spec.

A :class:`FieldOperator` wraps a network ``(B, C_in, *space) -> (B, C_out, *space)`` (FNO, TFNO, UNO, U-Net) and
owns the input layout: it stacks the ``T_in`` input frames on channels, appends the optional extra channels and
unstacks the output into ``T_out`` frames::

    channels in  = [frame_0 (C), ..., frame_{T_in-1} (C), grid (n_dims), scalars (S), constant fields (C_const)]
    channels out = [frame_0 (C), ..., frame_{T_out-1} (C)]

``grid`` holds the coordinates normalised to [0, 1] (``x_i = i / (N - 1)`` per axis), ``scalars`` the sample's
equation parameters broadcast over space. An operator task (Darcy: coefficient -> solution) uses
``n_steps_input=0`` and the constant fields only.

The pretrained models of frames, AViT (MPP) and DPOT (:data:`FRAME_MODELS`), take the history of frames of the
fields alone (no grid, scalars or constant fields): their network (:class:`FramesNet`) unstacks the frames,
runs the model on ``(B, T_in, C, *space)`` and stacks its ``(B, T_out, C, *space)`` again. The Well's baselines
(``well_*``) take the stacked channels as published. The configs of these pretrained models
(:data:`PRETRAINED_MODELS`) say where the original's state-dict keys sit in the :class:`FieldOperator`
(``STATE_PREFIX``) and read a pretrained source (``read_pretrained``: a ``save_pretrained`` folder, a released
weights file, a Hub id), which is how ``--run.init_from`` fine-tunes them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._neuralop import FNOConfig, TFNOConfig, UNOConfig
from ._unet import UNetConfig
from .dpot._fields import DPOTFieldsConfig
from .mpp._fields import AViTFieldsConfig
from .well._fields import WellFNOConfig, WellTFNOConfig, WellUNetClassicConfig, WellUNetConvNextConfig

if TYPE_CHECKING:
    from ..datasets import DatasetMetadata

__all__ = [
    "MODELS",
    "FRAME_MODELS",
    "PRETRAINED_MODELS",
    "WELL_MODELS",
    "FramesNet",
    "InputLayout",
    "FieldOperator",
    "build_model",
    "build_from_spec",
    "config_to_dict",
    "config_from_dict",
    "model_config_class",
]

ModelConfig = (
    FNOConfig
    | TFNOConfig
    | UNOConfig
    | UNetConfig
    | AViTFieldsConfig
    | DPOTFieldsConfig
    | WellFNOConfig
    | WellTFNOConfig
    | WellUNetClassicConfig
    | WellUNetConvNextConfig
)

# Every model family, by the name used in configs and run folders.
MODELS: dict[str, type] = {
    "fno": FNOConfig,
    "tfno": TFNOConfig,
    "uno": UNOConfig,
    "unet": UNetConfig,
    "avit": AViTFieldsConfig,
    "dpot": DPOTFieldsConfig,
}
#: The Well's published baselines (`pdeforge.operators.well`) as networks of stacked channels, 2-D and 3-D only (the
#: FNO and TFNO have no 1-D); a table of their own beside :data:`MODELS`, whose catalogue test walks 1-D and 2-D
WELL_MODELS: dict[str, type] = {
    "well_fno": WellFNOConfig,
    "well_tfno": WellTFNOConfig,
    "well_unet_classic": WellUNetClassicConfig,
    "well_unet_convnext": WellUNetConvNextConfig,
}
#: the models of frames (``build_frames``); the others map stacked channels
FRAME_MODELS = ("avit", "dpot")
#: the pretrained models: their configs read a pretrained source (``read_pretrained``) whose keys sit under their
#: ``STATE_PREFIX`` in the :class:`FieldOperator`
PRETRAINED_MODELS = ("avit", "dpot", "well_fno", "well_tfno", "well_unet_classic", "well_unet_convnext")


@dataclass(frozen=True)
class InputLayout:
    """What goes into the network's channels and what comes out.

    Attributes:
        n_fields: channels ``C`` of one time-varying frame.
        n_steps_input: frames stacked on the input (0 for an operator task driven by constant fields).
        n_steps_output: frames predicted at once.
        n_spatial_dims: spatial axes.
        use_grid: append the normalised grid coordinates (``n_spatial_dims`` channels).
        n_scalars: equation parameters appended as constant channels (0: none).
        n_constant_fields: time-invariant fields appended (0: none).
    """

    n_fields: int
    n_steps_input: int
    n_steps_output: int
    n_spatial_dims: int
    use_grid: bool = False
    n_scalars: int = 0
    n_constant_fields: int = 0

    @property
    def in_channels(self) -> int:
        grid = self.n_spatial_dims if self.use_grid else 0
        return self.n_steps_input * self.n_fields + grid + self.n_scalars + self.n_constant_fields

    @property
    def out_channels(self) -> int:
        return self.n_steps_output * self.n_fields


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """A model config as a JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def config_from_dict(name: str, d: Mapping[str, Any]) -> ModelConfig:
    """Inverse of :func:`config_to_dict` for the model family ``name`` (a key of :data:`MODELS` or
    :data:`WELL_MODELS`)."""
    cls = model_config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}; expected a subset of {sorted(fields)}")
    return cls(**{k: _tuples(v) for k, v in d.items()})


def model_config_class(name: str) -> type:
    """The config class of the model ``name`` (a key of :data:`MODELS` or :data:`WELL_MODELS`)."""
    table = {**MODELS, **WELL_MODELS}
    if name not in table:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(table)}")
    return table[name]


def _name_of(config: ModelConfig) -> str:
    table = {**MODELS, **WELL_MODELS}
    for name, cls in table.items():
        if type(config) is cls:
            return name
    raise TypeError(f"expected a model name or one of {[c.__name__ for c in table.values()]}, got {config!r}")


class FieldOperator(nn.Module):
    """A network plus its input layout: frames and extra channels in, frames out.

    Args:
        net: ``(B, layout.in_channels, *space) -> (B, layout.out_channels, *space)``.
        layout: the channel layout (:class:`InputLayout`).
        spec: JSON-able description to rebuild the model (:func:`build_from_spec`); stored as ``model_spec``. Its
            ``residual`` (True: :func:`build_model`'s ``residual``) makes every output frame the last input frame
            plus the network's output.
    """

    def __init__(self, net: nn.Module, layout: InputLayout, spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net = net
        self.layout = layout
        self.model_spec = spec or {}
        self.residual = bool(self.model_spec.get("residual", False))
        if self.residual and layout.n_steps_input == 0:
            raise ValueError("residual: the layout has no input frame to add the output to (n_steps_input=0)")

    # ------------------------------------------------------------------------------------------- layout
    def stack_inputs(
        self, input_fields: Tensor | None = None, constant_fields: Tensor | None = None, scalars: Tensor | None = None
    ) -> Tensor:
        """The network input ``(B, C_in, *space)`` (channel order in the module docstring).

        Args:
            input_fields: (B, T_in, C, *space); may be None when ``n_steps_input == 0``.
            constant_fields: (B, C_const, *space); needed when the layout uses constant fields.
            scalars: (B, S); needed when the layout uses scalars.
        """
        lay, n = self.layout, self.layout.n_spatial_dims
        parts: list[Tensor] = []
        space: tuple[int, ...] | None = None
        batch: int | None = None
        if lay.n_steps_input > 0:
            if (
                input_fields is None
                or input_fields.ndim != n + 3
                or input_fields.shape[1:3] != (lay.n_steps_input, lay.n_fields)
            ):
                got = None if input_fields is None else tuple(input_fields.shape)
                raise ValueError(
                    f"input_fields: expected (B, T_in={lay.n_steps_input}, C={lay.n_fields}, *space) "
                    f"with {n} spatial axes, got {got}; a single sample needs a batch axis: u[None]"
                )
            batch, space = input_fields.shape[0], tuple(input_fields.shape[-n:])
            parts.append(input_fields.flatten(1, 2))  # (B, T_in*C, *space), frame-major
        if lay.n_constant_fields > 0:
            if (
                constant_fields is None
                or constant_fields.ndim != n + 2
                or constant_fields.shape[1] != lay.n_constant_fields
            ):
                got = None if constant_fields is None else tuple(constant_fields.shape)
                raise ValueError(
                    f"constant_fields: expected (B, C_const={lay.n_constant_fields}, *space) "
                    f"with {n} spatial axes, got {got}"
                )
            cshape = tuple(constant_fields.shape[-n:])
            if space is not None and (cshape != space or constant_fields.shape[0] != batch):
                raise ValueError(
                    f"constant_fields {tuple(constant_fields.shape)} do not match "
                    f"input_fields (B={batch}, space={space})"
                )
            batch, space = constant_fields.shape[0], cshape
        if space is None:
            raise ValueError("the layout has no spatial input (n_steps_input=0 and no constant fields)")
        ref = parts[0] if parts else constant_fields
        if lay.use_grid:
            axes = [torch.linspace(0.0, 1.0, s, dtype=ref.dtype, device=ref.device) for s in space]
            grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (n, *space)
            parts.append(grid.expand(batch, *grid.shape))
        if lay.n_scalars > 0:
            if scalars is None or tuple(scalars.shape) != (batch, lay.n_scalars):
                got = None if scalars is None else tuple(scalars.shape)
                raise ValueError(f"scalars: expected (B={batch}, S={lay.n_scalars}), got {got}")
            parts.append(
                scalars.to(ref.dtype).reshape(batch, lay.n_scalars, *(1,) * n).expand(batch, lay.n_scalars, *space)
            )
        if lay.n_constant_fields > 0:
            parts.append(constant_fields)
        return torch.cat(parts, dim=1)

    def unstack_outputs(self, y: Tensor) -> Tensor:
        """(B, T_out*C, *space) -> (B, T_out, C, *space)."""
        lay = self.layout
        return y.reshape(y.shape[0], lay.n_steps_output, lay.n_fields, *y.shape[2:])

    # ------------------------------------------------------------------------------------------- forward
    def forward(
        self, input_fields: Tensor | None = None, constant_fields: Tensor | None = None, scalars: Tensor | None = None
    ) -> Tensor:
        """Predict ``(B, T_out, C, *space)`` from the inputs of :meth:`stack_inputs` (residual: the last input frame
        plus the network's output, for every output frame)."""
        y = self.unstack_outputs(self.net(self.stack_inputs(input_fields, constant_fields, scalars)))
        return y + input_fields[:, -1:] if self.residual else y

    def forward_batch(self, batch: Mapping[str, Tensor]) -> Tensor:
        """:meth:`forward` on a batched sample dict (``input_fields``, ``constant_fields``, ``scalars``)."""
        lay = self.layout
        return self(
            batch.get("input_fields") if lay.n_steps_input > 0 else None,
            batch.get("constant_fields") if lay.n_constant_fields > 0 else None,
            batch.get("scalars") if lay.n_scalars > 0 else None,
        )

    def blocks(self) -> dict[str, nn.Module]:
        """The network's blocks by name (see the network's own ``blocks``)."""
        return self.net.blocks()


def _use(flag: bool | None, available: int, what: str) -> int:
    if flag is None:
        return available
    if flag and available == 0:
        raise ValueError(f"use_{what}=True but the dataset's metadata lists no {what}")
    return available if flag else 0


def build_model(
    model: str | ModelConfig,
    metadata: DatasetMetadata,
    n_steps_input: int = 1,
    n_steps_output: int = 1,
    use_grid: bool = True,
    use_scalars: bool | None = None,
    use_constant_fields: bool | None = None,
    residual: bool = False,
) -> FieldOperator:
    """A :class:`FieldOperator` sized from the dataset's metadata.

    Args:
        model: a name in :data:`MODELS` (default config) or a config instance (``FNOConfig(n_modes=16)``).
        metadata: channel names, resolution and boundary conditions of the data.
        n_steps_input: frames in (0: operator task from the constant fields alone).
        n_steps_output: frames out.
        use_grid: append the grid coordinates, normalised to [0, 1], as channels (default True, as
            ``model.use_grid`` of the operator family's config: what ``train.py`` trains).
        use_scalars, use_constant_fields: append the sample's scalars / constant fields; None: whenever the
            dataset has them and the model takes them (the pretrained models, :data:`PRETRAINED_MODELS`, take no
            scalars; AViT and DPOT no constant fields either).
        residual: predict the change: each output frame is the last input frame plus the network's output (the
            same fields; needs ``n_steps_input >= 1``). Recorded in the spec as ``residual`` (only when True).
    """
    config = model_config_class(model)() if isinstance(model, str) else model
    name = _name_of(config)
    n = metadata.n_spatial_dims
    if len(metadata.boundary_conditions) != n:
        raise ValueError(
            f"metadata.boundary_conditions {metadata.boundary_conditions} "
            f"needs one entry per axis of {metadata.resolution}"
        )
    if n_steps_input < 0 or n_steps_output < 1:
        raise ValueError(f"expected n_steps_input >= 0 and n_steps_output >= 1, got {n_steps_input}, {n_steps_output}")
    if residual and n_steps_input == 0:
        raise ValueError("residual=True needs an input frame to add the output to; got n_steps_input=0")
    layout = InputLayout(
        n_fields=metadata.n_fields,
        n_steps_input=n_steps_input,
        n_steps_output=n_steps_output,
        n_spatial_dims=n,
        use_grid=bool(use_grid),
        # the pretrained models take no equation parameters, the models of frames no constant fields either: None
        # leaves them out (the published architectures have no such inputs)
        n_scalars=_use(
            False if use_scalars is None and name in PRETRAINED_MODELS else use_scalars, metadata.n_scalars, "scalars"
        ),
        n_constant_fields=_use(
            False if use_constant_fields is None and name in FRAME_MODELS else use_constant_fields,
            metadata.n_constant_fields,
            "constant_fields",
        ),
    )
    if n_steps_input == 0 and layout.n_constant_fields == 0:
        raise ValueError(
            "n_steps_input=0 (operator task) needs constant fields as input; "
            "the dataset has none or use_constant_fields=False"
        )
    spec = {
        "name": name,
        "config": config_to_dict(config),
        "layout": dataclasses.asdict(layout),
        "resolution": [int(s) for s in metadata.resolution],
        "periodic": [bc == "periodic" for bc in metadata.boundary_conditions],
        "in_channels": layout.in_channels,
        "out_channels": layout.out_channels,
        "field_names": list(metadata.field_names),
    }
    if residual:
        spec["residual"] = True
    return build_from_spec(spec)


def build_from_spec(spec: Mapping[str, Any]) -> FieldOperator:
    """Rebuild a :class:`FieldOperator` (freshly initialised) from its ``model_spec``; load weights after."""
    missing = {"name", "config", "layout", "resolution", "periodic"} - set(spec)
    if missing:
        raise ValueError(f"model spec lacks {sorted(missing)}; expected the dict stored as FieldOperator.model_spec")
    config = config_from_dict(spec["name"], spec["config"])
    layout = InputLayout(**spec["layout"])
    resolution = tuple(int(s) for s in spec["resolution"])
    periodic = tuple(bool(p) for p in spec["periodic"])
    if spec["name"] in FRAME_MODELS:
        net: nn.Module = FramesNet(
            config.build_frames(layout, resolution, periodic, list(spec.get("field_names", ()))), layout
        )
    else:
        net = config.build(layout.in_channels, layout.out_channels, resolution, periodic)
    return FieldOperator(net, layout, json.loads(json.dumps(dict(spec))))


class FramesNet(nn.Module):
    """A model of frames (its ``forward_batch({"input_fields": (B, T_in, C, *space)}) -> (B, T_out, C, *space)``)
    as a :class:`FieldOperator`'s network on stacked channels ``(B, T_in * C, *space) -> (B, T_out * C, *space)``.
    The layout must hold the frames alone (no grid, scalars or constant fields)."""

    def __init__(self, model: nn.Module, layout: InputLayout) -> None:
        super().__init__()
        extras = {
            "model.use_grid true": layout.use_grid,
            f"{layout.n_scalars} scalars": layout.n_scalars,
            f"{layout.n_constant_fields} constant fields": layout.n_constant_fields,
            "n_steps_input 0": layout.n_steps_input == 0,
        }
        given = [k for k, v in extras.items() if v]
        if given:
            raise ValueError(
                f"{type(model).__name__} takes the history of frames of the fields alone, got {', '.join(given)}: "
                "set model.use_grid false, a dataset without scalars or constant fields, and n_steps_input >= 1"
            )
        self.model = model
        self.n_steps_input, self.n_fields = layout.n_steps_input, layout.n_fields

    def forward(self, x: Tensor) -> Tensor:
        """(B, T_in * C, *space) -> (B, T_out * C, *space)."""
        frames = x.unflatten(1, (self.n_steps_input, self.n_fields))
        return self.model.forward_batch({"input_fields": frames}).flatten(1, 2)

    def blocks(self) -> dict[str, nn.Module]:
        """The pretrained model's top-level modules by name (below any adapter of one child: AViTForFields)."""
        inner = self.model
        while len(children := dict(inner.named_children())) == 1:
            inner = next(iter(children.values()))
        return children
