"""The compiled loop of the fused flux-square ETDRK strategy (``_etdrk_fused.cpp``), built on first use.

:class:`~pdeforge.solvers._etdrk_strategies.FusedFluxSquareSteps` hands its plan (which coefficient each operation
reads) to the op built here, which runs the steps between two saves without returning to Python, its FFTs
through ATen and the complex multiply-adds between them in its own loops (at N = 256 and batch 50 an ETDRK4 step
in ~0.12 ms, where the Python loop's 8 FFTs and 15 ATen pointwise calls take ~0.16 ms). Where the op cannot be
built (no C++ compiler or ninja, or ``PDEFORGE_NATIVE=0``), the strategy's Python loop runs the same arithmetic.
``torch.utils.cpp_extension`` caches the build per machine and torch version (``TORCH_EXTENSIONS_DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._native import build, native_enabled

_SOURCE = Path(__file__).with_name("_etdrk_fused.cpp")
_OP: list[Any | None] = []  # the op, or None where it cannot be built; made on first use


def fused_op() -> Any | None:
    """``torch.ops.pdeforge``, holding ``etdrk_fused_flux_square`` (the steps between two saves) and
    ``etdrk_fused_rollout`` (a run of saves, each frame written to the output), built on first use (once per machine
    and torch version, ~10-30 s, which a line on stderr announces; ``_native.CFLAGS``: no FMA contraction, the loops
    round as ATen's operations do), or ``None`` where it cannot be (then a warning says why)."""
    if not _OP:
        _OP.append(_build())
    return _OP[0]


def _build() -> Any | None:
    if not native_enabled():
        return None
    built = build(
        "pdeforge_etdrk_fused",
        _SOURCE,
        "the fused ETDRK step",
        "its Python loop (~30 % slower)",
    )
    return torch.ops.pdeforge if built else None


def pack(
    products: list[Tensor | None],
    shared: int,
    E: Tensor,
    stages: list[tuple[int, tuple[int, Tensor] | None, tuple[tuple[int, Tensor], ...], bool]],
    groups: tuple[tuple[Tensor, tuple[int, ...]], ...],
    vorticity: tuple[Tensor, Tensor, tuple[tuple[int, Tensor], ...], Tensor | None] | None = None,
) -> tuple[Tensor, list[int]]:
    """The coefficients stacked (one row each) and the plan as integers, in the layout ``_etdrk_fused.cpp`` reads
    (see there); the arguments are those of ``FusedFluxSquareSteps``, and for the vorticity kind
    (``FusedVorticitySteps``) ``(velocity symbol of -u, of v, ((product, flux symbol), ...), source or None)``."""
    rows: list[Tensor] = []

    def row(x: Tensor) -> int:
        rows.append(x)
        return len(rows) - 1

    plan = [len(products), *(-1 if p is None else row(p) for p in products), shared, row(E), len(stages)]
    for slot, first, rest, write in stages:
        terms = ([first] if first is not None else []) + list(rest)
        plan += [slot, int(write), len(terms), *(v for j, a in terms for v in (j, row(a)))]
    plan.append(len(groups))
    for b, members in groups:
        plan += [row(b), len(members), *members]
    if vorticity is not None:
        minus_u, v, fluxes, source = vorticity
        plan += [1, row(minus_u), row(v), *(x for product, symbol in fluxes for x in (product, row(symbol)))]
        plan.append(-1 if source is None else row(source))
    return torch.stack(rows), plan
