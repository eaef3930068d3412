"""What the four Well baselines share: The Well's input layout, and pdeforge's common layout on top of it.

The Well feeds its baselines one tensor (``DefaultChannelsFirstFormatter``)::

    x[b, t*F + f, *S] = input_fields[b, t, *S, f]      t = 0 (oldest) .. T_in-1, all fields of one step together
    x[b, T_in*F + c, *S] = constant_fields[b, *S, c]   constant fields last
    x = nan_to_num(x)

and the network returns the next step ``(B, F, *S)``, which The Well puts back as ``(B, 1, *S, F)``. In pdeforge's
channels-first layout the same stacking is ``input_fields (B, T_in, C, *S)`` flattened frame-major, then the
constant fields ``(B, C_const, *S)``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AbstractWellBaseline", "well_format_input", "well_format_output"]


def well_format_input(input_fields: Tensor, constant_fields: Tensor | None = None) -> Tensor:
    """The Well's formatter: ``input_fields (B, T_in, *S, F)`` and ``constant_fields (B, *S, F_c)`` (channels last,
    as a Well DataLoader yields them) -> the network input ``(B, T_in*F + F_c, *S)``, NaNs set to 0."""
    if input_fields.ndim < 4:
        raise ValueError(f"input_fields: expected (B, T_in, *space, F), got {tuple(input_fields.shape)}")
    n = input_fields.ndim - 3
    x = input_fields.movedim(-1, 2).flatten(1, 2)  # (B, T_in*F, *S), channel t*F + f
    if constant_fields is not None:
        if tuple(constant_fields.shape[:-1]) != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"constant_fields: expected (B, *space, F_c) = ({x.shape[0]}, {', '.join(map(str, x.shape[2:]))}, "
                f"F_c) with {n} spatial axes, got {tuple(constant_fields.shape)}"
            )
        x = torch.cat([x, constant_fields.movedim(-1, 1)], dim=1)
    return torch.nan_to_num(x)


def well_format_output(y: Tensor) -> Tensor:
    """The network output ``(B, F, *S)`` -> The Well's prediction layout ``(B, 1, *S, F)``."""
    return y.movedim(1, -1).unsqueeze(1)


class AbstractWellBaseline(nn.Module):
    """A Well baseline network: ``forward(x (B, dim_in, *S)) -> (B, dim_out, *S)`` on The Well's formatted input,
    with the published ``state_dict()`` keys. ``config`` holds the ``config.json`` keys it was built from.

    :meth:`forward_fields` and :meth:`forward_batch` run it in pdeforge's layout,
    ``(B, T_in, C, *space)`` (+ constant fields ``(B, C_const, *space)``) -> ``(B, T_out=1, C, *space)``.
    """

    config: dict[str, Any]

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, dim_in, *S)`` -> ``(B, dim_out, *S)``."""

    def check_input(self, x: Tensor, multiple: int = 1) -> None:
        """Raise unless ``x`` is ``(B, dim_in, *S)`` with ``n_spatial_dims`` axes, each a multiple of ``multiple``."""
        n, dim_in = self.config["n_spatial_dims"], self.config["dim_in"]
        if x.ndim != n + 2 or x.shape[1] != dim_in or any(s % multiple for s in x.shape[2:]):
            sizes = f", each spatial size a multiple of {multiple}" if multiple > 1 else ""
            raise ValueError(
                f"{type(self).__name__}: expected input (B, dim_in={dim_in}, *space) with {n} spatial axes{sizes} "
                f"(The Well's layout: T_in*F + F_const channels), got {tuple(x.shape)}"
            )

    @property
    def n_fields(self) -> int:
        """Fields per time step ``F`` (= ``dim_out``)."""
        return int(self.config["dim_out"])

    def forward_fields(self, input_fields: Tensor, constant_fields: Tensor | None = None) -> Tensor:
        """``input_fields (B, T_in, C, *S)``, ``constant_fields (B, C_const, *S)`` -> ``(B, 1, C, *S)``.

        ``T_in * C + C_const`` must be the network's ``dim_in`` and ``C`` its ``dim_out`` (The Well's benchmark:
        ``T_in = 4``).
        """
        n, (dim_in, c) = self.config["n_spatial_dims"], (self.config["dim_in"], self.n_fields)
        n_const = 0 if constant_fields is None else constant_fields.shape[1]
        if input_fields.ndim != n + 3 or input_fields.shape[2] != c or input_fields.shape[1] * c + n_const != dim_in:
            raise ValueError(
                f"input_fields: expected (B, T_in, C={c}, *space) with {n} spatial axes and T_in*C + C_const = "
                f"dim_in = {dim_in} (C_const = {n_const}), got {tuple(input_fields.shape)}"
            )
        x = input_fields.flatten(1, 2)
        if constant_fields is not None:
            if constant_fields.shape[0] != x.shape[0] or constant_fields.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"constant_fields: expected (B, C_const, *space) matching input_fields "
                    f"{tuple(input_fields.shape)}, got {tuple(constant_fields.shape)}"
                )
            x = torch.cat([x, constant_fields.to(x.dtype)], dim=1)
        return self(torch.nan_to_num(x)).unsqueeze(1)

    def forward_batch(self, batch: Mapping[str, Tensor]) -> Tensor:
        """:meth:`forward_fields` on a batch of pdeforge samples (``input_fields``, optional ``constant_fields``)."""
        return self.forward_fields(batch["input_fields"], batch.get("constant_fields"))
