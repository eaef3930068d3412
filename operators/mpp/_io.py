"""Reading and writing MPP AViT weights.

A pdeforge AViT folder (what `save_pretrained` writes, what `from_pretrained` reads first):
    config.json          the `AViTConfig` keys (the arguments of the original's `build_avit`)
    model.safetensors    the tensors under the original `state_dict()` key names

The released files and the original's training checkpoints load too, given the model size or config:
    MPP_AViT_Ti(.tar/.pth)   `torch.save` of a bare state dict, or of the training checkpoint dict of
                             `train_basic.py` (`model_state`, `optimizer_state_dict`, `epoch`, `iters`)
Keys may carry the `module.` prefix of a DistributedDataParallel wrapper. Pickles are read with
`torch.load(weights_only=True)` only: a file that needs code to unpickle is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...checkpoint import load_state, load_weights, save_pretrained_folder
from ._config import SIZES, AViTConfig
from ._model import AViT

__all__ = ["read_checkpoint", "load_pretrained", "save_pretrained", "describe_weights", "VOCABULARY_KEYS"]

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
PICKLE_NAME = "model.pth"
DDP_PREFIX = "module."

# the tensors indexed by the field vocabulary (their n_states axis): space_bag.weight (E/4, n_states),
# debed.out_kernel (E/4, n_states, 4, 4) and debed.out_bias (n_states,)
VOCABULARY_KEYS = ("space_bag.weight", "debed.out_kernel", "debed.out_bias")


def _few(keys: list[str], n: int = 5) -> str:
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _state_dict_of(obj: Any, path: Path) -> dict[str, Tensor]:
    """The model tensors of what `torch.load` / safetensors gave: a bare state dict or a training checkpoint with
    `model_state`; a `module.` prefix on every key is removed."""
    if isinstance(obj, Mapping) and "model_state" in obj:
        obj = obj["model_state"]
        where = f"{path}: 'model_state'"
    else:
        where = str(path)
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{where}: expected a state dict (names -> tensors), found {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        keys = [str(k) for k in obj][:6]
        raise ValueError(
            f"{where}: expected a state dict of tensors or a training checkpoint with 'model_state'; entries "
            f"{_few(bad)} are not tensors (keys: {keys})"
        )
    state = dict(obj)
    if all(k.startswith(DDP_PREFIX) for k in state):
        state = {k[len(DDP_PREFIX) :]: v for k, v in state.items()}
    return state


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The AViT tensors of a file (`.safetensors`, or a `torch.save` pickle read with weights_only) or of a folder
    (`model.safetensors`, else `model.pth`), under the original key names (a `module.` prefix removed, a training
    checkpoint's `model_state` taken)."""
    path = Path(path)
    if path.is_dir():
        for name in (SAFETENSORS_NAME, PICKLE_NAME):
            if (path / name).is_file():
                return read_checkpoint(path / name)
        found = sorted(p.name for p in path.iterdir())
        raise FileNotFoundError(f"{path} has no weights: expected {SAFETENSORS_NAME} or {PICKLE_NAME} (found {found})")
    if not path.is_file():
        raise FileNotFoundError(f"no AViT weights at {path}")
    obj = load_weights(path) if path.suffix == ".safetensors" else load_state(path)  # load_state: weights_only
    return _state_dict_of(obj, path)


def describe_weights(state: Mapping[str, Tensor]) -> dict[str, int] | None:
    """(embed_dim, num_heads, processor_blocks, n_states) read off an AViT state dict, or None if it is not one."""
    try:
        q, n_states = state["space_bag.weight"].shape
        heads = state["blocks.0.spatial.rel_pos_bias.relative_attention_bias.weight"].shape[1]
    except (KeyError, ValueError):
        return None
    blocks = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    return {"embed_dim": 4 * q, "num_heads": heads, "processor_blocks": blocks, "n_states": n_states}


def _guess(state: Mapping[str, Tensor]) -> str:
    d = describe_weights(state)
    if d is None:
        return ""
    size = [name for name, s in SIZES.items() if all(d[k] == v for k, v in s.items())]
    named = f", size {size[0]!r}" if size else ""
    return f" (the weights have embed_dim {d['embed_dim']}, num_heads {d['num_heads']}, processor_blocks " + (
        f"{d['processor_blocks']}, n_states {d['n_states']}{named})"
    )


def _config_of(config: AViTConfig | dict[str, Any] | str | Path) -> AViTConfig:
    if isinstance(config, AViTConfig):
        return config
    if isinstance(config, dict):
        return AViTConfig.from_dict(config)
    return AViTConfig.from_json(config)


def load_pretrained(
    path: str | Path,
    *,
    size: str | None = None,
    config: AViTConfig | dict[str, Any] | str | Path | None = None,
    **config_changes: Any,
) -> AViT:
    """Build an `AViT` from MPP weights.

    Args:
        path: a folder with `config.json` and `model.safetensors` (or `model.pth`), or a weights file: a released
            `.tar` / `.pth` (bare state dict or `train_basic.py` checkpoint, DDP `module.` prefix allowed) or
            `.safetensors`.
        size: "Ti", "S", "B" or "L" (n_states 12), for a file without `config.json`.
        config: the config instead of `size` (an `AViTConfig`, a dict, or a path to a `config.json`); overrides
            the folder's `config.json`.
        config_changes: `AViTConfig` fields to change. A larger `n_states` extends the vocabulary as the original's
            `expand_projections` does: the first columns of `space_bag.weight` and `debed.out_kernel` / `out_bias`
            are the checkpoint's, the new ones freshly initialised. Other shape changes are refused.

    Raises:
        FileNotFoundError: no folder or file, no config for a file, no weights in a folder.
        KeyError: missing or unexpected keys (a few listed, with what the weights look like).
        ValueError: a shape mismatch (key, expected, found), a file that is not a state dict, a bad config.
        pdeforge.checkpoint.UnsafeCheckpointError: a pickle that needs code to load (refused, nothing run).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no AViT weights at {path}: expected a folder with {CONFIG_NAME} or a weights file")
    if size is not None and config is not None:
        raise ValueError("give size or config, not both")
    state = read_checkpoint(path)
    if config is not None:
        stored = _config_of(config)
    elif size is not None:
        stored = AViTConfig.size(
            size, n_states=state["space_bag.weight"].shape[1] if "space_bag.weight" in state else 12
        )
    elif path.is_dir() and (path / CONFIG_NAME).is_file():
        stored = AViTConfig.from_json(path / CONFIG_NAME)
    else:
        where = f"{path} has no {CONFIG_NAME}" if path.is_dir() else f"{path} is a weights file without a config"
        raise FileNotFoundError(f"{where}: pass size='Ti'|'S'|'B'|'L' or config=...{_guess(state)}")
    model_config = stored.replace(**config_changes) if config_changes else stored
    model = AViT(model_config)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise KeyError(
            f"{path}: the weights do not match the AViT of {stored.to_dict()} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys); missing: [{_few(missing)}]; unexpected: [{_few(unexpected)}]"
            f"{_guess(state)}"
        )
    grow = model_config.n_states - state["space_bag.weight"].shape[1]
    with torch.no_grad():
        for key, value in own.items():
            src = state[key]
            if src.shape == value.shape:
                value.copy_(src)
                continue
            axis = 0 if key == "debed.out_bias" else 1
            same_elsewhere = src.dim() == value.dim() and all(
                src.shape[i] == value.shape[i] for i in range(src.dim()) if i != axis
            )
            if key in VOCABULARY_KEYS and grow > 0 and same_elsewhere and src.shape[axis] < value.shape[axis]:
                value.narrow(axis, 0, src.shape[axis]).copy_(src)  # the original's expand_projections
                continue
            raise ValueError(
                f"{path}: shape mismatch for {key}: the model expects {tuple(value.shape)}, the weights have "
                f"{tuple(src.shape)}{_guess(state)}"
            )
    return model


def save_pretrained(model: AViT, path: str | Path, *, safe_serialization: bool = True) -> Path:
    """Write `config.json` and the weights (`model.safetensors`, or `model.pth` with `torch.save` when
    `safe_serialization` is False) into the folder `path`, each through a temporary file and a rename. Returns the
    folder."""
    return save_pretrained_folder(
        path,
        model.state_dict(),
        model.config.to_json(),
        weights_name=SAFETENSORS_NAME,
        header={"format": "pt"},
        pickle_name=None if safe_serialization else PICKLE_NAME,
    )
