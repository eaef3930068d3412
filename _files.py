"""Writing files safely: a temporary file next to the target, then a rename (no torch here: plots and the dataset
layer use it too)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write"]


def _umask() -> int:
    """The process umask (read from /proc where it can be, without changing it; else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, then rename it to ``path``: a crash never leaves a
    half-written file under the final name, and two writers of one file never share a temporary file. The temporary
    name keeps the extension (matplotlib and PIL pick the format from it). The file gets the permissions a plain
    ``open(path, "w")`` would give (a temporary file is created owner-only, which would hide results from the group
    on a shared machine)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
