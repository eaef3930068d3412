"""scOT (Poseidon) in plain PyTorch: the scalable Operator Transformer of Herde et al. 2024,
"Poseidon: Efficient Foundation Models for PDEs", compatible with the released Hugging Face checkpoints
(camlab-ethz/Poseidon-T/B/L) without a `transformers` dependency, and its training family.

    pdeforge train configs/scot_pretrain.yaml                        # ScOTFamily through the run skeleton
    pdeforge train configs/scot_finetune.yaml --run.init_from runs/scot_pretrain

`ScOTConfig` holds the model's hyper-parameters (a Hugging Face `config.json`); `ScOTRunConfig` is the family's run
config (sections run, data, optim, model). The family and its data helpers are imported on first use (PEP 562), so
importing this package does not load the dataset layer.

Examples:
    One fine-tuning step of a Hugging Face scOT folder on new fields (here a tiny scOT saved as such a folder; a
    downloaded ``camlab-ethz/Poseidon-T`` loads the same way), with Poseidon's three learning-rate groups:

    >>> import torch
    >>> from pdeforge.operators.scot import ScOT, ScOTConfig, finetune_parameter_groups, scot_loss
    >>> ScOT(ScOTConfig.tiny()).save_pretrained("scot-tiny")
    PosixPath('scot-tiny')
    >>> model = ScOT.from_pretrained("scot-tiny", num_channels=2, num_out_channels=1)  # fine-tune to new fields
    >>> opt = torch.optim.AdamW(finetune_parameter_groups(model))  # lr 5e-5 / 5e-4 / 5e-4
    >>> x, time, y = torch.randn(4, 2, 32, 32), torch.rand(4), torch.randn(4, 1, 32, 32)
    >>> pred = model(x, time)  # x (B, C_in, H, W), time (B,)
    >>> pred.shape
    torch.Size([4, 1, 32, 32])
    >>> loss = scot_loss(pred, y, [0, 1])  # relative L1 per channel group: channels [0, 1)
    >>> loss.backward()
    >>> opt.step()
"""

from __future__ import annotations

from ..._lazy import lazy_exports
from ._config import ScOTConfig
from ._io import finetune_parameter_groups, load_pretrained, named_parameter_groups, read_state_dict, save_pretrained
from ._layers import ConditionalLayerNorm
from ._loss import median_relative_l1, relative_l1, scot_loss
from ._model import ScOT
from ._resample import spectral_resample
from ._run_config import ScOTRunConfig

# imported on first use: the family and the evaluation helpers need the dataset layer
_LAZY = {
    "ScOTFamily": "._family",
    **dict.fromkeys(
        (
            "final_time_error",
            "lead_time_errors",
            "median_error",
            "open_split",
            "masked_scot_loss",
            "channel_groups",
            "selection",
        ),
        "._data",
    ),
}

__all__ = [
    "ScOT",
    "ScOTConfig",
    "ScOTRunConfig",
    "ScOTFamily",
    "ConditionalLayerNorm",
    "scot_loss",
    "relative_l1",
    "median_relative_l1",
    "spectral_resample",
    "finetune_parameter_groups",
    "named_parameter_groups",
    "load_pretrained",
    "save_pretrained",
    "read_state_dict",
    "final_time_error",
    "lead_time_errors",
    "median_error",
    "open_split",
    "masked_scot_loss",
    "channel_groups",
    "selection",
]

__getattr__ = lazy_exports(__name__, _LAZY)[0]  # the eager names above stay plain attributes
