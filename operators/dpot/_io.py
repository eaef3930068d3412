"""Reading and writing DPOT checkpoints.

What `load_pretrained` reads:
    a folder:   config.json (the constructor arguments, `DPOTConfig.to_dict`) and model.safetensors, or
                pytorch_model.bin, or a single *.pth / *.pt file;
    a file:     *.safetensors, or a pickled *.pth / *.pt / *.bin: a state dict, or the original's training
                checkpoint ({"model": state dict, "optimizer": ..., "args": ...}, what the released
                model_<size>.pth are), e.g. the files of the Hugging Face repository hzk17/DPOT.
Keys may carry DDP's `module.` (or torch.compile's `_orig_mod.`) prefix; it is removed. Pickles are read with
`torch.load(weights_only=True)`, which builds tensors and plain containers only; the one class it is allowed in
addition is `argparse.Namespace`, the plain attribute holder the original training script stores its
command-line arguments in. Anything else is refused with one line, and nothing of the file runs.

What `save_pretrained` writes: config.json and model.safetensors (original key names), each atomically.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...checkpoint import load_state, load_weights, save_pretrained_folder
from ._config import RELEASED_SIZES, DPOTConfig
from ._model import DPOT

__all__ = [
    "load_pretrained",
    "save_pretrained",
    "read_checkpoint",
    "reinitialised_keys",
    "released_size",
    "SAFETENSORS_NAME",
    "CONFIG_NAME",
]

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP, torch.compile
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin")
_HINT = "are the size, config or config.json given the ones of these weights?"
_RELEASED_NAME = re.compile(r"^model_(Ti|S|M|L|H)\.pth?$")


def _few(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def released_size(path: str | Path) -> str | None:
    """The size a released file's name says (`model_Ti.pth` -> "Ti"), or None."""
    match = _RELEASED_NAME.match(Path(path).name)
    return match.group(1) if match else None


def _weights_file(folder: Path) -> Path:
    for name in (SAFETENSORS_NAME, PYTORCH_NAME):
        if (folder / name).is_file():
            return folder / name
    pickles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".pth", ".pt"))
    if len(pickles) == 1:
        return pickles[0]
    if pickles:
        raise ValueError(f"{folder}: several checkpoints ({_few(p.name for p in pickles)}): pass the file to load")
    raise FileNotFoundError(
        f"{folder} has no weights: expected {SAFETENSORS_NAME}, {PYTORCH_NAME} or one *.pth file "
        f"(found {_few(sorted(p.name for p in folder.iterdir())) or 'nothing'})"
    )


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """The state dict in what a pickle held: a state dict itself, or a training checkpoint's "model" entry."""
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path}: expected a state dict of tensors or a training checkpoint with a 'model' entry")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if bad:
        raise ValueError(
            f"{path}: expected a state dict of tensors or a training checkpoint with a 'model' entry; the keys "
            f"[{_few(map(str, bad))}] do not hold tensors"
        )
    return dict(obj)


def strip_wrapper_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove a prefix that every key carries (`module.` from DDP, `_orig_mod.` from torch.compile), repeatedly."""
    state = dict(state)
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a DPOT checkpoint (a file or a folder, see the module docstring), keys without wrapper
    prefixes. Raises `UnsafeCheckpointError` for a pickle that holds more than tensors and plain containers."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no DPOT checkpoint at {path}")
    file = _weights_file(path) if path.is_dir() else path
    if file.suffix == ".safetensors":
        return strip_wrapper_prefixes(load_weights(file))
    if file.suffix not in _PICKLE_SUFFIXES:
        raise ValueError(f"{file}: expected a .safetensors, .pth, .pt or .bin checkpoint")
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = load_state(file)
    return strip_wrapper_prefixes(_unwrap(obj, file))


def _config_from(value: DPOTConfig | Mapping[str, Any] | str | Path) -> DPOTConfig:
    if isinstance(value, DPOTConfig):
        return value
    if isinstance(value, Mapping):
        return DPOTConfig.from_dict(dict(value), source="config")
    return DPOTConfig.from_json(value)


def _stored_config(
    path: Path, size: str | None, config: DPOTConfig | Mapping[str, Any] | str | Path | None
) -> DPOTConfig:
    """The configuration the checkpoint at `path` was built with (see `load_pretrained` for the order)."""
    if config is not None:
        return _config_from(config)
    if size is not None:
        return DPOTConfig.released(size)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return DPOTConfig.from_json(path / CONFIG_NAME)
    named = released_size(path) or (released_size(_weights_file(path)) if path.is_dir() else None)
    if named is not None:
        return DPOTConfig.released(named)
    raise ValueError(
        f"{path}: cannot tell which DPOT this is: no {CONFIG_NAME} and not a released file name (model_Ti.pth ...); "
        f"pass size= one of {list(RELEASED_SIZES)} or config= the constructor arguments"
    )


def reinitialised_keys(stored: DPOTConfig, config: DPOTConfig) -> list[str]:
    """The state-dict keys whose shapes differ between a model of `stored` and one of `config` (what fine-tuning
    to `config` from a `stored` checkpoint initialises afresh), in state-dict order. A key absent from either is
    an error: the two configs differ in more than sizes (e.g. `depth`, `normalize`, `time_agg`)."""
    with torch.device("meta"):
        old, new = DPOT(stored).state_dict(), DPOT(config).state_dict()
    if list(old) != list(new):
        only_new, only_old = [k for k in new if k not in old], [k for k in old if k not in new]
        raise ValueError(
            f"the changed config has other tensors than the checkpoint's (new: [{_few(only_new)}]; gone: "
            f"[{_few(only_old)}]): only sizes (channels, frames, classes, grid, widths) can change when fine-tuning"
        )
    return [k for k in new if new[k].shape != old[k].shape]


def _check_keys(model: DPOT, state: Mapping[str, Tensor], stored: DPOTConfig, source: Path) -> None:
    """Raise unless `state` has exactly the keys and shapes of a model of `stored`."""
    with torch.device("meta"):
        own = DPOT(stored).state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise KeyError(
            f"{source}: the checkpoint does not match the DPOT config ({len(missing)} missing, {len(unexpected)} "
            f"unexpected keys); missing: [{_few(missing)}]; unexpected: [{_few(unexpected)}]; {_HINT}"
        )
    for key, value in own.items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise ValueError(
                f"{source}: shape mismatch for {key}: the config gives {tuple(value.shape)}, the checkpoint has "
                f"{tuple(state[key].shape)}; {_HINT}"
            )


def load_pretrained(
    path: str | Path,
    *,
    size: str | None = None,
    config: DPOTConfig | Mapping[str, Any] | str | Path | None = None,
    **config_changes: Any,
) -> DPOT:
    """Build a `DPOT` from a checkpoint with the original key names (see the module docstring for the files).

    Args:
        path: a folder or a file.
        size: "Ti", "S", "M", "L" or "H": the checkpoint is that released size.
        config: the checkpoint's constructor arguments (a `DPOTConfig`, a mapping, or a JSON file).
            Which architecture is used, first found: `config`, `size`, the folder's config.json, the file name
            `model_<size>.pth`.
        config_changes: `DPOTConfig` fields to change for fine-tuning (e.g. `in_channels`, `out_channels`,
            `in_timesteps`, `out_timesteps`, `n_cls`, `img_size`). The tensors whose shapes change as a result
            (`reinitialised_keys`) keep the fresh initialisation of `DPOT.reset_parameters`; every other tensor
            is the checkpoint's.

    Raises:
        FileNotFoundError: nothing at `path`, or a folder without weights.
        KeyError / ValueError: missing or unexpected keys, shape mismatches, an unreadable file, unknown config keys.
        UnsafeCheckpointError: a pickle holding objects other than tensors and plain containers.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no DPOT checkpoint at {path}")
    stored = _stored_config(path, size, config)
    state = read_checkpoint(path)
    target = stored.replace(**config_changes) if config_changes else stored
    reinit = set(reinitialised_keys(stored, target)) if config_changes else set()
    model = DPOT(target)
    _check_keys(model, state, stored, path)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key not in reinit:
                value.copy_(state[key])
    return model


def save_pretrained(model: DPOT, path: str | Path) -> Path:
    """Write `config.json` and `model.safetensors` into the folder `path` (created if needed), each through a
    temporary file and a rename, so that a crash never leaves a half-written file under the final name."""
    return save_pretrained_folder(
        path, model.state_dict(), model.config.to_json(), weights_name=SAFETENSORS_NAME, header={"format": "pt"}
    )
