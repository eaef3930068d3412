"""One RNG bundle: every random state a run draws from, captured into a checkpoint and put back on resume.

The bundle holds Python's ``random``, NumPy's global state, torch's CPU generator, every CUDA device's generator
(when CUDA is in use), and the named generators a family keeps of its own (``torch.Generator`` or
``numpy.random.Generator``), all as tensors and plain containers, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["seed_everything", "capture_rng", "restore_rng"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    return x


def _tuples(x: Any) -> Any:
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def capture_rng(generators: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The bundle: ``{"python", "numpy", "torch", "cuda", "generators": {name: state}}``."""
    gens = {}
    for name, g in (generators or {}).items():
        gens[name] = g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "python": _plain(random.getstate()),
        "numpy": _plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "generators": gens,
    }


def restore_rng(bundle: Mapping[str, Any], generators: Mapping[str, Any] | None = None) -> None:
    """Put the states of ``bundle`` back (the named ``generators`` too; a name the bundle lacks is a KeyError naming
    it). CUDA states are restored for the devices present; a bundle from a CPU run leaves CUDA as it is."""
    random.setstate(_tuples(bundle["python"]))
    kind, keys, pos, has_gauss, cached = bundle["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(bundle["torch"])
    if bundle.get("cuda") and torch.cuda.is_available():
        for i, state in enumerate(bundle["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, i)
    for name, g in (generators or {}).items():
        if name not in bundle["generators"]:
            raise KeyError(
                f"the checkpoint's RNG bundle has no generator {name!r} (it has {sorted(bundle['generators'])})"
            )
        state = bundle["generators"][name]
        if isinstance(g, torch.Generator):
            g.set_state(state)
        else:
            g.bit_generator.state = state
