"""Safe checkpoints: weights in safetensors, training state via ``torch.load(weights_only=True)``, atomic writes.

Nothing here unpickles arbitrary objects: a downloaded checkpoint can carry code in a pickle, and
``weights_only=True`` refuses anything but tensors and plain containers. A refused file gets a clear error.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ._files import atomic_write

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "save_pretrained_folder",
    "save_weights",
    "load_weights",
    "save_state",
    "load_state",
    "UnsafeCheckpointError",
    "load_any_weights",
    "to_cpu",
]


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds more than tensors and plain containers (a pickle payload) and was refused."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_pretrained_folder(
    folder: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config_text: str,
    *,
    weights_name: str = "model.safetensors",
    header: Mapping[str, str] | None = None,
    pickle_name: str | None = None,
) -> Path:
    """A pretrained-model folder as Hugging Face's ``save_pretrained`` writes it: ``config.json`` and the weights
    (safetensors with ``header`` as its metadata; or, given ``pickle_name``, ``torch.save`` of plain tensors), each
    written to a temporary file and renamed, so a crash never leaves a half-written file under the final name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    if pickle_name is None:
        atomic_write(folder / weights_name, lambda tmp: save_file(state, str(tmp), metadata=dict(header or {}) or None))
    else:
        atomic_write(folder / pickle_name, lambda tmp: torch.save(state, tmp))
    atomic_write_text(folder / "config.json", config_text)
    return folder


def save_weights(
    path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
) -> None:
    """Write tensors to ``path`` (safetensors; shared storage is cloned; JSON metadata in the header)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights file (expected model.safetensors written by train.py)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def to_cpu(tree: Any) -> Any:
    """``tree`` (nested dicts, lists and tuples of tensors and plain values) with every tensor on the CPU; containers
    keep their type and attributes (a module state dict's OrderedDict and ``_metadata``), and tensors already on the
    CPU are the same objects, so a CPU state saves to the same bytes."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        out = copy.copy(tree)
        out.update((k, to_cpu(v)) for k, v in tree.items())
        return out
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(v) for v in tree)
    return tree


def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Training state (optimizer, scheduler, RNG, counters) with ``torch.save``; must hold only tensors and plain types.
    Tensors are written from the CPU (`to_cpu`), so a state saved on a GPU loads on any machine."""
    atomic_write(path, lambda tmp: torch.save(dict(to_cpu(state)), tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: refuses pickled objects with `UnsafeCheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or "reduce" in str(e).lower():  # a real pickle of objects: refused, and said why
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the file holds Python objects beyond tensors and plain containers, which "
                f"could run code when unpickled (torch.load(weights_only=True) said: {_reason(e)}). "
                f"Only load checkpoints you trust; pdeforge writes weights as safetensors."
            ) from None
        raise ValueError(f"{path}: {_not_a_checkpoint(path, e)}") from None
    except (KeyError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile) as e:  # torch.load's view of other bytes
        raise ValueError(f"{path}: {_not_a_checkpoint(path, e)}") from None


def _reason(error: Exception) -> str:
    """The line of torch's refusal that names what was refused (its message starts with advice, in ANSI bold)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    named = [line for line in lines if "GLOBAL" in line or "reduce" in line.lower()]
    return (named or [line for line in lines if line] or ["?"])[0].split(". ")[0]


def _not_a_checkpoint(path: Path, error: Exception) -> str:
    """What a file ``torch.load`` could not read is, for the message."""
    expected = "expected a .safetensors file, a torch.save state dict or a run folder"
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return f"an HDF5 file, not a checkpoint ({expected})"
    if head.startswith(b"PK") or "zip archive" in str(error):
        return (
            f"a damaged torch checkpoint: its zip archive is incomplete or corrupt (an interrupted copy?); {expected}"
        )
    return f"not a checkpoint ({'an empty file' if not head else 'torch.load cannot read it'}; {expected})"


def load_any_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights from a run folder, a ``.safetensors`` file, or a ``.pt/.bin/.pth`` state dict (weights_only)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"{p}: no such file or folder (expected a run folder, a .safetensors file or a state dict)"
        )
    if p.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (p / name).is_file():
                return load_any_weights(p / name)
        raise FileNotFoundError(f"{p}: no model.safetensors or pytorch_model.bin in this folder")
    if p.suffix == ".safetensors":
        return load_weights(p)
    state = load_state(p)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{p}: expected a state dict of tensors, found {type(state).__name__}")
    return state
