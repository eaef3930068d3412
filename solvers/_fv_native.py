"""The compiled FV time steps (``_fv_step.cpp``), built on first use.

:class:`~pdeforge.solvers._fv_strategies.NativeSteps` hands the op built here the solver's constants and its Butcher
tableau as a plan (:func:`plan`); the op runs ``n_steps`` steps without returning to Python, in plain loops over the
grid (one pass for the face values, limiter and fluxes of both components, one for their divergence with viscosity,
drag and forcing) and ATen's FFT for the projection. Where the op cannot be built (no C++ compiler or ninja, or
``PDEFORGE_NATIVE=0``), the reference step runs instead. ``torch.utils.cpp_extension`` caches the build per machine
and torch version (``TORCH_EXTENSIONS_DIR``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ._native import build, native_enabled

_SOURCE = Path(__file__).with_name("_fv_step.cpp")
_OP: list[Any | None] = []  # the op, or None where it cannot be built; made on first use
BUILD_SECONDS: list[float] = []  # how long the first use in this process took (a build, or a load from the cache)


def native_op() -> Any | None:
    """``torch.ops.pdeforge_fv.fv_steps``, built on first use (once per machine and torch version, ~20-40 s, which a
    line on stderr announces), or ``None`` where it cannot be (then a warning says why) or ``PDEFORGE_NATIVE=0``."""
    if not native_enabled():
        return None
    if not _OP:
        start = time.perf_counter()
        built = build("pdeforge_fv_step", _SOURCE, "the FV solver's step", "the reference step (~2-4x slower)")
        _OP.append(torch.ops.pdeforge_fv.fv_steps if built else None)
        BUILD_SECONDS.append(time.perf_counter() - start)
    return _OP[0]


def plan(a: Sequence[Sequence[float]], b: Sequence[float]) -> tuple[list[int], list[float]]:
    """A Butcher tableau in the layout ``_fv_step.cpp`` reads, as ``(plan, coefficients)``: ``plan = [n_stages,
    (n_terms, j...) per stage, n_terms, j...]`` over the nonzero ``a_ij`` of each stage and then the nonzero ``b_j``,
    their values in ``coefficients`` in the same order (the reference sums exactly these terms, in this order)."""
    layout, values = [len(b)], []
    rows = [(a[i] if i < len(a) else (), i) for i in range(len(b))] + [(b, len(b))]
    for row, n_known in rows:  # stage i sums the k_j it knows, j < i, as the reference's zip does
        terms = [(j, c) for j, c in enumerate(row) if c and j < n_known]
        layout += [len(terms), *(j for j, _ in terms)]
        values += [c for _, c in terms]
    return layout, values
