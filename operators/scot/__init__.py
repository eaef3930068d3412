"""scOT (Poseidon) in plain PyTorch: the scalable Operator Transformer of Herde et al. 2024,
"Poseidon: Efficient Foundation Models for PDEs", compatible with the released Hugging Face checkpoints
(camlab-ethz/Poseidon-T/B/L) without a `transformers` dependency.

    model = ScOT.from_pretrained("Poseidon-T")                       # a downloaded HF folder
    model = ScOT.from_pretrained("Poseidon-T", num_channels=2, num_out_channels=1)   # fine-tune to new fields
    opt = torch.optim.AdamW(finetune_parameter_groups(model))       # lr 5e-5 / 5e-4 / 5e-4
    pred = model(x, time)                                            # x (B, C_in, H, W), time (B,)
    loss = scot_loss(pred, y, [0, 1])
"""

from ._config import ScOTConfig
from ._io import finetune_parameter_groups, load_pretrained, read_state_dict, save_pretrained
from ._layers import ConditionalLayerNorm
from ._loss import median_relative_l1, relative_l1, scot_loss
from ._model import ScOT
from ._resample import spectral_resample

__all__ = [
    "ScOT",
    "ScOTConfig",
    "ConditionalLayerNorm",
    "scot_loss",
    "relative_l1",
    "median_relative_l1",
    "spectral_resample",
    "finetune_parameter_groups",
    "load_pretrained",
    "save_pretrained",
    "read_state_dict",
]
