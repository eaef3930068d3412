"""Writing files safely: a temporary file next to the target, then a rename (no torch here: plots and the dataset
layer use it too)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, then rename it to ``path``: a crash never leaves a
    half-written file under the final name, and two writers of one file never share a temporary file. The temporary
    name keeps the extension (matplotlib and PIL pick the format from it). The file gets the permissions a plain
    ``open(path, "w")`` would give (``tempfile.mkstemp`` makes files owner-only, which would hide results from the
    group on a shared machine)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode 0o666 less the umask, as open() gives
    mode = tmp.stat().st_mode & 0o777
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer that replaces the file (safetensors does) may leave it owner-only
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
