"""Loading and saving The Well's published baselines (``polymathic-ai/<Model>-<dataset>`` on the Hugging Face Hub).

A published folder, as huggingface_hub's ``PyTorchModelHubMixin.save_pretrained`` writes it::

    config.json          the constructor's keyword arguments (dim_in, dim_out, n_spatial_dims, spatial_resolution,
                         gradient_checkpointing and the model's own: modes1..3 / hidden_channels, init_features, ...)
    model.safetensors    the state dict under the original key names (complex weights as real pairs)
    README.md            the model card (not read)

Which of the four models a folder holds is read off its weights (``model.fno_blocks.convs.weight.0.tensor``: FNO,
``...weight.0.core``: TFNO, ``encoder1.enc1conv1.weight``: UNetClassic, ``in_proj.weight``: UNetConvNext).
Loading is strict: every key and shape must match the model of ``config.json`` (the original mixin loads with
``strict=False`` and ignores what does not match).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import load_weights, save_pretrained_folder
from ._base import AbstractWellBaseline
from ._spectral import WellFNO, WellTFNO
from ._unets import WellUNetClassic, WellUNetConvNext

__all__ = ["WELL_BASELINES", "load_well_baseline", "save_well_baseline", "resolve_well_baseline", "model_name_of"]

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"

# The four baselines by The Well's class name (the first part of the Hub id).
WELL_BASELINES: dict[str, type[AbstractWellBaseline]] = {
    "FNO": WellFNO,
    "TFNO": WellTFNO,
    "UNetClassic": WellUNetClassic,
    "UNetConvNext": WellUNetConvNext,
}
# a key that only that model's state dict has
_SIGNATURE_KEYS = {
    "model.fno_blocks.convs.weight.0.tensor": "FNO",
    "model.fno_blocks.convs.weight.0.core": "TFNO",
    "encoder1.enc1conv1.weight": "UNetClassic",
    "in_proj.weight": "UNetConvNext",
}
_CONFIG_KEYS = {
    "FNO": {"modes1", "modes2", "modes3", "hidden_channels"},
    "TFNO": {"modes1", "modes2", "modes3", "hidden_channels"},
    "UNetClassic": {"init_features"},
    "UNetConvNext": {"stages", "blocks_per_stage", "blocks_at_neck", "init_features"},
}
_COMMON_KEYS = {"dim_in", "dim_out", "n_spatial_dims", "spatial_resolution", "gradient_checkpointing"}
_REQUIRED_KEYS = ("dim_in", "dim_out", "n_spatial_dims", "spatial_resolution")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def _few(keys: list[str], n: int = 4) -> str:
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def resolve_well_baseline(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """The local folder holding ``config.json`` and ``model.safetensors`` of ``source``: the folder itself, or for
    a Hub id (``polymathic-ai/FNO-active_matter``) the snapshot folder in huggingface_hub's cache, downloaded if
    needed. ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` use the cache only (``HF_HOME`` / ``HF_HUB_CACHE``, or
    ``cache_dir``)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path}: expected a folder with {CONFIG_NAME} and {SAFETENSORS_NAME}, got a file")
    repo_id = str(source)
    if not _HUB_ID.fullmatch(repo_id):
        raise FileNotFoundError(
            f"{source}: no such folder, and not a Hugging Face Hub id (owner/name, e.g. "
            "polymathic-ai/FNO-active_matter)"
        )
    from ..._hub import hub_folder

    folder = hub_folder(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    missing = [name for name in (CONFIG_NAME, SAFETENSORS_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"hf://{repo_id}: the repository has no {' or '.join(missing)} (not a Well baseline)")
    return folder


def model_name_of(state: dict[str, Any], where: str = "weights") -> str:
    """The Well model a state dict is of ("FNO", "TFNO", "UNetClassic" or "UNetConvNext"), read off its keys."""
    names = [name for key, name in _SIGNATURE_KEYS.items() if key in state]
    if len(names) != 1:
        raise ValueError(
            f"{where}: not one of The Well's baselines: expected exactly one of the keys {list(_SIGNATURE_KEYS)} "
            f"(FNO, TFNO, UNetClassic, UNetConvNext), found keys [{_few(list(state))}]"
        )
    return names[0]


def _read_config(file: Path, name: str) -> dict[str, Any]:
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{file}: not a readable JSON file ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{file}: expected a JSON object of constructor arguments, got {type(config).__name__}")
    allowed = _COMMON_KEYS | _CONFIG_KEYS[name]
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(f"{file}: unknown key {unknown[0]!r} for The Well's {name} (expected keys: {sorted(allowed)})")
    missing = [k for k in _REQUIRED_KEYS if k not in config]
    if missing:
        raise ValueError(f"{file}: missing key {missing[0]!r} (The Well's {name} needs {list(_REQUIRED_KEYS)})")
    return config


def load_well_baseline(
    source: str | Path,
    *,
    model: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> AbstractWellBaseline:
    """One of The Well's published baselines, in eval mode, with its published weights.

    The model's ``forward`` takes The Well's formatted input ``(B, T_in*F + F_const, *S)`` (frames time-major,
    constant fields last; :func:`well_format_input` builds it from a Well batch) and returns the next step
    ``(B, F, *S)``; ``forward_fields`` / ``forward_batch`` take pdeforge's ``(B, T_in, C, *S)`` and return
    ``(B, 1, C, *S)``. Trainable as it is, for fine-tuning.

    Args:
        source: a folder with ``config.json`` and ``model.safetensors``, or a Hub id
            (``polymathic-ai/FNO-active_matter``, ``polymathic-ai/UNetConvNext-turbulent_radiative_layer_2D``, ...).
        model: "FNO", "TFNO", "UNetClassic" or "UNetConvNext" to insist on; by default read off the weights.
        revision, cache_dir, local_files_only, token: for a Hub id, as in ``huggingface_hub.hf_hub_download``
            (``HF_HUB_OFFLINE=1`` works as ``local_files_only=True``).

    Raises:
        FileNotFoundError: no such folder, a Hub id that cannot be fetched or is not in the cache, a missing file.
        ValueError / KeyError: a bad ``config.json`` (key named), weights of another model, missing or unexpected
            keys, a shape mismatch (key, expected, found).
    """
    folder = resolve_well_baseline(
        source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
    )
    for name in (CONFIG_NAME, SAFETENSORS_NAME):
        if not (folder / name).is_file():
            found = sorted(p.name for p in folder.iterdir())
            raise FileNotFoundError(
                f"{folder}: no {name} (a Well baseline folder has {CONFIG_NAME} and {SAFETENSORS_NAME}; found {found})"
            )
    state = load_weights(folder / SAFETENSORS_NAME)
    name = model_name_of(state, str(folder / SAFETENSORS_NAME))
    if model is not None and model != name:
        if model not in WELL_BASELINES:
            raise ValueError(f"model={model!r}: expected one of {list(WELL_BASELINES)}")
        raise ValueError(f"{folder / SAFETENSORS_NAME}: holds The Well's {name}, not the {model} asked for")
    config = _read_config(folder / CONFIG_NAME, name)
    kwargs: dict[str, Any] = {}
    if name == "TFNO":  # the ranks are not in config.json; the checkpoint's core has them
        kwargs["ranks"] = tuple(state["model.fno_blocks.convs.weight.0.core"].shape[:-1])
    try:
        with torch.device("meta"):
            net = WELL_BASELINES[name](**config, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{folder / CONFIG_NAME}: cannot build The Well's {name} from it ({e})") from None
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise KeyError(
            f"{folder / SAFETENSORS_NAME}: the weights do not match The Well's {name} of {CONFIG_NAME} "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys); missing: [{_few(missing)}]; "
            f"unexpected: [{_few(unexpected)}]"
        )
    for key, value in own.items():
        if tuple(value.shape) != tuple(state[key].shape):
            raise ValueError(
                f"{folder / SAFETENSORS_NAME}: shape mismatch for {key}: {CONFIG_NAME} gives {tuple(value.shape)}, "
                f"the weights have {tuple(state[key].shape)}"
            )
        if value.dtype.is_floating_point != state[key].dtype.is_floating_point:
            raise ValueError(f"{folder / SAFETENSORS_NAME}: {key} has dtype {state[key].dtype}, expected {value.dtype}")
    net.load_state_dict(state, strict=True, assign=True)
    net.to(torch.float32)  # a float16 / bfloat16 file is read as float32, as the published files are stored
    return net.eval()


def save_well_baseline(model: AbstractWellBaseline, path: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` as the original ``save_pretrained`` does (same keys,
    float32), each through a temporary file and a rename, into the folder ``path``. Returns the folder."""
    return save_pretrained_folder(
        path, model.state_dict(), json.dumps(model.config, indent=2, sort_keys=True), weights_name=SAFETENSORS_NAME
    )
