"""Building the solvers' small compiled ops (``_etdrk_fused.cpp``, ``_fv_step.cpp``) on first use, one way.

``torch.utils.cpp_extension.load`` compiles a source once per machine and torch version (it caches the build in
``TORCH_EXTENSIONS_DIR``; a later process loads it in well under a second). Where it cannot (no C++ compiler or
ninja, a toolchain error) or ``PDEFORGE_NATIVE=0``, the caller runs its Python reference instead, after one warning.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

# no FMA contraction: the compiled loops must round as the reference's separate operations do
CFLAGS = ("-O3", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", "-DTORCH_ASSERT_ONLY_METHOD_OPERATORS")


def native_enabled() -> bool:
    """Whether the compiled ops may be used (``PDEFORGE_NATIVE=0`` turns them all off)."""
    return os.environ.get("PDEFORGE_NATIVE", "1") != "0"


def build(name: str, source: Path, what: str, fallback: str, cflags: tuple[str, ...] = CFLAGS) -> bool:
    """Compile (or load from torch's cache) the op library ``name`` from ``source``; whether it worked.

    ``what`` names it in the line announcing a compilation (shown only when one takes longer than 2 s) and in the
    warning of a failure, which says that ``fallback`` runs instead."""
    notice = threading.Timer(
        2.0,
        print,
        (f"pdeforge: compiling {what} for this machine, once (~20-40 s; PDEFORGE_NATIVE=0 skips it)",),
        {"file": sys.stderr},
    )
    notice.start()
    try:
        from torch.utils.cpp_extension import load

        load(name=name, sources=[str(source)], extra_cflags=list(cflags), is_python_module=False, verbose=False)
        return True
    except Exception as err:  # noqa: BLE001 - any failure (no compiler, no ninja, a toolchain error): run in Python
        import warnings

        reason = (str(err).splitlines() or [repr(err)])[0].split(": [")[0][:160]  # not the compiler's command line
        warnings.warn(
            f"pdeforge: {what} could not be compiled ({reason}); {fallback} runs instead (PDEFORGE_NATIVE=0 skips "
            "the attempt)",
            RuntimeWarning,
            stacklevel=5,
        )
        return False
    finally:
        notice.cancel()
