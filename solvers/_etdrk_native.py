"""The compiled loop of the fused flux-square ETDRK strategy (``_etdrk_fused.cpp``), built on first use.

:class:`~pdeforge.solvers._etdrk_strategies.FusedFluxSquareSteps` hands its plan (which coefficient each operation
reads) to the op built here, which runs the steps between two saves without returning to Python: at N = 256 and
batch 50 the Python between the 23 operations of an ETDRK4 step is ~15 % of it. Where the op cannot be built (no
C++ compiler or ninja, or ``PDEFORGE_NATIVE=0``), the strategy's Python loop runs the same operations instead.
``torch.utils.cpp_extension`` caches the build per machine and torch version (``TORCH_EXTENSIONS_DIR``).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name("_etdrk_fused.cpp")
_OP: list[Any | None] = []  # the op, or None where it cannot be built; made on first use


def fused_op() -> Any | None:
    """``torch.ops.pdeforge``, holding ``etdrk_fused_flux_square`` (the steps between two saves) and
    ``etdrk_fused_rollout`` (a run of saves, each frame written to the output), built on first use (once per machine
    and torch version, ~10-30 s, which a line on stderr announces), or ``None`` where it cannot be (then a warning
    says why)."""
    if not _OP:
        _OP.append(_build())
    return _OP[0]


def _build() -> Any | None:
    if os.environ.get("PDEFORGE_NATIVE", "1") == "0":
        return None
    # a load from torch's cache takes well under a second: the line shows only when it compiles
    notice = threading.Timer(
        2.0,
        print,
        ("pdeforge: compiling the fused ETDRK step for this machine, once (~10-30 s; PDEFORGE_NATIVE=0 skips it)",),
        {"file": sys.stderr},
    )
    notice.start()
    try:
        from torch.utils.cpp_extension import load

        load(
            name="pdeforge_etdrk_fused",
            sources=[str(_SOURCE)],
            extra_cflags=["-O2", "-DTORCH_ASSERT_ONLY_METHOD_OPERATORS"],
            is_python_module=False,
            verbose=False,
        )
        return torch.ops.pdeforge
    except Exception as err:  # noqa: BLE001 - any failure (no compiler, no ninja, a toolchain error): run in Python
        reason = (str(err).splitlines() or [repr(err)])[0].split(": [")[0][:160]  # not the compiler's command line
        warnings.warn(
            f"pdeforge: the fused ETDRK step could not be compiled ({reason}); its Python loop runs instead (~15 % "
            "slower; PDEFORGE_NATIVE=0 skips the attempt)",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    finally:
        notice.cancel()


def pack(
    products: list[Tensor | None],
    shared: int,
    E: Tensor,
    stages: list[tuple[int, tuple[int, Tensor] | None, tuple[tuple[int, Tensor], ...], bool]],
    groups: tuple[tuple[Tensor, tuple[int, ...]], ...],
) -> tuple[Tensor, list[int]]:
    """The coefficients stacked (one row each) and the plan as integers, in the layout ``_etdrk_fused.cpp`` reads
    (see there); the arguments are those of ``FusedFluxSquareSteps``."""
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
    return torch.stack(rows), plan
