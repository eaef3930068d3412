"""scOT (Poseidon) in plain PyTorch: the scalable Operator Transformer of Herde et al. 2024,
"Poseidon: Efficient Foundation Models for PDEs", compatible with the released Hugging Face checkpoints
(camlab-ethz/Poseidon-T/B/L) without a `transformers` dependency, and its training family.

    model = ScOT.from_pretrained("Poseidon-T")                       # a downloaded HF folder
    model = ScOT.from_pretrained("Poseidon-T", num_channels=2, num_out_channels=1)   # fine-tune to new fields
    opt = torch.optim.AdamW(finetune_parameter_groups(model))       # lr 5e-5 / 5e-4 / 5e-4
    pred = model(x, time)                                            # x (B, C_in, H, W), time (B,)
    loss = scot_loss(pred, y, [0, 1])

    pdeforge train configs/scot_pretrain.yaml                        # ScOTFamily through the run skeleton
    pdeforge train configs/scot_finetune.yaml --run.init_from runs/scot_pretrain

`ScOTConfig` holds the model's hyper-parameters (a Hugging Face `config.json`); `ScOTRunConfig` is the family's run
config (sections run, data, optim, model). The family and its data helpers are imported on first use (PEP 562), so
importing this package does not load the dataset layer.
"""

from __future__ import annotations

from ..._lazy import lazy_exports
from ._config import ScOTConfig
from ._io import finetune_parameter_groups, load_pretrained, read_state_dict, save_pretrained
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
