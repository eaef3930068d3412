"""`DatasetMetadata`: the contract between data and models.

Models take their sizes from it (``in_channels = metadata.n_fields * n_steps_input`` ...), so ``train.py`` can wire any
model to any dataset without per-pair code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DatasetMetadata"]


@dataclass(frozen=True)
class DatasetMetadata:
    """What a model needs to know about a dataset to build itself.

    Attributes:
        dataset_name: the file's ``dataset_name`` attribute.
        field_names: flattened channel names of the time-varying fields, in The Well's flattening order
            (t0 fields in ``field_names`` order, then each t1 field's components ``velocity_x, velocity_y``, then t2).
            ``len(field_names)`` is the channel count ``C`` of ``input_fields (T_in, C, *space)``.
        constant_field_names: flattened channel names of the time-invariant fields (e.g. a Darcy coefficient).
        scalar_names: names of the time-invariant scalars (equation parameters), in ``scalars`` order.
        spatial_dims: names of the spatial axes (``("x",)``, ``("x", "y")``).
        resolution: grid points per spatial axis.
        domain_lengths: extent of the domain per axis (periodic: ``N * dx``; otherwise last - first coordinate).
        dt: time between stored snapshots (before ``dt_stride``).
        boundary_conditions: one of ``"periodic" | "wall" | "open"`` per spatial axis.
        parameters: file-level simulation parameters (root attributes listed in ``simulation_parameters``).
        n_trajectories: trajectories in the dataset (all files).
        n_steps: stored snapshots per trajectory.
        grid_type: ``"cartesian"`` (others are read but models assume cartesian).
        equation: provenance: the pdeforge equation that generated the data, if known.
    """

    dataset_name: str
    field_names: tuple[str, ...]
    constant_field_names: tuple[str, ...]
    scalar_names: tuple[str, ...]
    spatial_dims: tuple[str, ...]
    resolution: tuple[int, ...]
    domain_lengths: tuple[float, ...]
    dt: float
    boundary_conditions: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    n_trajectories: int = 0
    n_steps: int = 0
    grid_type: str = "cartesian"
    equation: str | None = None

    @property
    def n_spatial_dims(self) -> int:
        return len(self.resolution)

    @property
    def n_fields(self) -> int:
        """Channels of one time-varying frame."""
        return len(self.field_names)

    @property
    def n_constant_fields(self) -> int:
        return len(self.constant_field_names)

    @property
    def n_scalars(self) -> int:
        return len(self.scalar_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetMetadata:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(
                f"DatasetMetadata.from_dict: unknown keys {sorted(unknown)}; expected a subset of {sorted(names)}"
            )
        kw = dict(d)
        for key in ("field_names", "constant_field_names", "scalar_names", "spatial_dims", "boundary_conditions"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "resolution" in kw:
            kw["resolution"] = tuple(int(n) for n in kw["resolution"])
        if "domain_lengths" in kw:
            kw["domain_lengths"] = tuple(float(x) for x in kw["domain_lengths"])
        return cls(**kw)
