"""Hugging Face folder I/O for scOT checkpoints and the fine-tuning helpers.

Layout (what `transformers`' `save_pretrained` writes for Poseidon, e.g. camlab-ethz/Poseidon-T):
    config.json                         the `ScOTConfig` keys
    model.safetensors                   tensors under their original key names, or
    model.safetensors.index.json (+ shards), or
    pytorch_model.bin                   a pickled state dict, read with torch.load(weights_only=True) only.
`model.safetensors` is preferred when several are present. A Hub id (``camlab-ethz/Poseidon-T``, ``hf://org/name@rev``)
in place of a folder resolves through `huggingface_hub`'s cache (`pdeforge._hub`).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ...checkpoint import save_pretrained_folder
from ._config import ScOTConfig
from ._layers import ConditionalLayerNorm
from ._model import ScOT

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
PYTORCH_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"

# Prefixes of the tensors whose shapes depend on the channel counts (re-initialised when these change).
CHANNEL_DEPENDENT_PREFIXES = ("embeddings.patch_embeddings.projection.", "patch_recovery.")


def _few(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _load_bin(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as err:
        raise ValueError(
            f"{path} is not a plain tensor state dict: refusing to unpickle it (torch.load weights_only=True "
            f"failed: {str(err).splitlines()[0][:200]}). Convert it to model.safetensors in a trusted environment."
        ) from err
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a mapping of names to tensors")
    return obj


def read_state_dict(folder: str | Path) -> dict[str, Tensor]:
    """The tensors of a Hugging Face model folder (see the module docstring for the accepted files)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    if (folder / SAFETENSORS_NAME).is_file():
        return load_file(folder / SAFETENSORS_NAME)
    if (folder / SAFETENSORS_INDEX_NAME).is_file():
        with open(folder / SAFETENSORS_INDEX_NAME) as f:
            weight_map: dict[str, str] = json.load(f)["weight_map"]
        state: dict[str, Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise FileNotFoundError(f"{folder / SAFETENSORS_INDEX_NAME} names the shard {shard}, which is missing")
            state.update(load_file(folder / shard))
        return state
    if (folder / PYTORCH_NAME).is_file():
        return _load_bin(folder / PYTORCH_NAME)
    raise FileNotFoundError(
        f"{folder} has no weights: expected {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME} or {PYTORCH_NAME} "
        f"(found {_few(sorted(p.name for p in folder.iterdir()))})"
    )


def check_state_dict(
    model: nn.Module, state: dict[str, Tensor], allow_shape_change: Callable[[str], bool] = lambda key: False
) -> list[str]:
    """Compare a checkpoint with a model: raise on missing or unexpected keys (listing a few) and on shape
    mismatches (naming key, expected, found) unless `allow_shape_change(key)`. Returns the keys whose shapes
    differ but are allowed to."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise KeyError(
            f"checkpoint does not match the model ({len(missing)} missing, {len(unexpected)} unexpected keys); "
            f"missing: [{_few(missing)}]; unexpected: [{_few(unexpected)}]. Does config.json describe these weights?"
        )
    changed = []
    for key, value in own.items():
        if value.shape != state[key].shape:
            if not allow_shape_change(key):
                raise ValueError(
                    f"shape mismatch for {key}: the model expects {tuple(value.shape)}, the checkpoint has "
                    f"{tuple(state[key].shape)}"
                )
            changed.append(key)
    return changed


def resolve_folder(
    path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local folder of `path`: a folder as it is; a Hub id (``org/name`` that is no local path, or
    ``hf://org/name[@revision]``) through `huggingface_hub`'s cache (``cache_dir``, ``$HF_HUB_CACHE``;
    ``HF_HUB_OFFLINE=1`` or ``local_files_only`` reads the cache only)."""
    from ..._hub import hub_folder, is_hub_url, looks_like_repo_id, parse_hub_url

    if is_hub_url(path) or looks_like_repo_id(path):
        repo, rev = parse_hub_url(str(path))
        if revision is not None and rev is not None and rev != revision:
            raise ValueError(f"{path}: revision {rev!r} in the URL but revision={revision!r} given; give one")
        note = "" if is_hub_url(path) else f" (no local folder {path})"
        return hub_folder(
            repo, revision=revision or rev, cache_dir=cache_dir, local_files_only=local_files_only, note=note
        )
    if revision is not None:
        raise ValueError(f"{path}: revision={revision!r} applies to a Hub id (org/name), not to a local folder")
    return Path(path)


def load_pretrained(
    path: str | Path,
    *,
    num_channels: int | None = None,
    num_out_channels: int | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    **config_changes: Any,
) -> ScOT:
    """Build a `ScOT` from a Hugging Face folder with the original key names.

    Args:
        path: folder with `config.json` and the weights, or a Hub model id (``"camlab-ethz/Poseidon-T"``,
            ``"hf://org/name@revision"``) resolved through `huggingface_hub` and its cache.
        revision, cache_dir, local_files_only: for a Hub id, as `huggingface_hub.snapshot_download` takes them
            (the branch, tag or commit; the cache folder, default ``$HF_HUB_CACHE``; read the cache only, as
            ``HF_HUB_OFFLINE=1`` does).
        num_channels, num_out_channels: new channel counts for fine-tuning. The tensors whose shapes change
            as a result (only `embeddings.patch_embeddings.projection.weight` for new inputs;
            `patch_recovery.projection.weight/bias` and `patch_recovery.mixup.weight` for new outputs) keep the
            fresh initialisation, N(0, initializer_range) weights and zero biases; every other tensor, the
            embedding bias included, is the checkpoint's. If the output channels change and the stored
            `channel_slice_list_normalized_loss` no longer fits, it becomes [0, num_out_channels] unless given.
        config_changes: other `ScOTConfig` fields to set (e.g. dropouts, `channel_slice_list_normalized_loss`).

    Raises:
        FileNotFoundError: no folder, no config.json or no weights file.
        KeyError / ValueError: missing or unexpected keys, shape mismatches, a pickle that is not a state dict.
    """
    folder = resolve_folder(path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME}")
    stored = ScOTConfig.from_json(folder / CONFIG_NAME)
    changes = dict(config_changes)
    if num_channels is not None:
        changes["num_channels"] = num_channels
    if num_out_channels is not None:
        changes["num_out_channels"] = num_out_channels
        csl = stored.channel_slice_list_normalized_loss
        if "channel_slice_list_normalized_loss" not in changes and csl is not None and csl[-1] != num_out_channels:
            changes["channel_slice_list_normalized_loss"] = (0, num_out_channels)
    config = stored.replace(**changes) if changes else stored
    state = read_state_dict(folder)
    model = ScOT(config)
    reinit = check_state_dict(
        model,
        state,
        allow_shape_change=lambda key: (
            key.startswith(CHANNEL_DEPENDENT_PREFIXES)
            and (config.num_channels != stored.num_channels or config.num_out_channels != stored.num_out_channels)
        ),
    )
    keep = {k: v for k, v in state.items() if k not in reinit}
    with torch.no_grad():
        own = model.state_dict()
        for key, value in keep.items():
            own[key].copy_(value)
    return model


def save_pretrained(model: ScOT, path: str | Path, *, safe_serialization: bool = True) -> Path:
    """Write `config.json` and the weights (`model.safetensors`, or `pytorch_model.bin` when
    `safe_serialization` is False) into the folder `path`, each through a temporary file and a rename so a
    crash never leaves a half-written file under the final name. Returns the folder."""
    return save_pretrained_folder(
        path,
        model.state_dict(),
        model.config.to_json(),
        weights_name=SAFETENSORS_NAME,
        header={"format": "pt"},
        pickle_name=None if safe_serialization else PYTORCH_NAME,
    )


def named_parameter_groups(model: ScOT) -> dict[str, tuple[str, ...]]:
    """Poseidon's fine-tuning groups (its `Trainer.create_optimizer`) as parameter-name prefixes, the names
    ``model.lr_groups`` and ``model.freeze`` of the scOT family take besides prefixes:

    - "embedding_recovery": everything under `embeddings` (its conditional norm included) and `patch_recovery`;
    - "time_embedding": the time-conditioned layer norms of the body (their Linear(1, C) maps), every
      `ConditionalLayerNorm` outside the embedding.

    The rest is the backbone.
    """
    outer = ("embeddings.", "patch_recovery.")
    norms = tuple(
        f"{name}."
        for name, module in model.named_modules()
        if isinstance(module, ConditionalLayerNorm) and not f"{name}.".startswith(outer)
    )
    return {"embedding_recovery": outer, "time_embedding": norms}


def finetune_parameter_groups(
    model: ScOT, lr: float = 5e-5, lr_embedding_recovery: float = 5e-4, lr_time_embedding: float = 5e-4
) -> list[dict[str, Any]]:
    """The three parameter groups Poseidon fine-tunes with (`named_parameter_groups`):

    - "backbone": everything else, at `lr`;
    - "embedding_recovery": every parameter under `embeddings` (its conditional norm included) or
      `patch_recovery`, at `lr_embedding_recovery`;
    - "time_embedding": the Linear(1, C) maps of the other time-conditioned layer norms, at `lr_time_embedding`.

    The groups partition `model.parameters()`; pass them to an optimizer (`torch.optim.AdamW(groups)`); each
    dict has "name", "params" and "lr". (Poseidon also exempts norms and biases from weight decay; set
    "weight_decay" per group if you need that.) The scOT family builds the same groups from ``model.lr_groups``
    (``{embedding_recovery: ..., time_embedding: ...}``, the rest at ``optim.lr``).
    """
    named = named_parameter_groups(model)
    groups: dict[str, list[nn.Parameter]] = {"backbone": [], "embedding_recovery": [], "time_embedding": []}
    for name, p in model.named_parameters():
        key = next((g for g, prefixes in named.items() if name.startswith(prefixes)), "backbone")
        groups[key].append(p)
    lrs = {"backbone": lr, "embedding_recovery": lr_embedding_recovery, "time_embedding": lr_time_embedding}
    return [{"name": name, "params": params, "lr": lrs[name]} for name, params in groups.items()]
