"""DPOT in plain PyTorch: the Auto-Regressive Denoising Operator Transformer of Hao et al. (ICML 2024), "DPOT:
Auto-Regressive Denoising Operator Transformer for Large-Scale PDE Pre-Training", compatible with the released
checkpoints (Hugging Face hzk17/DPOT, model_Ti.pth ... model_H.pth: 7.5M to 1.03B parameters): the same
`state_dict()` keys, shapes and order, the same forward `pred, cls_pred = model(x)` with
`x (B, X, Y, T_in, C_in) -> pred (B, X, Y, T_out, C_out)`.

`DPOT.from_pretrained(path)` reads a folder with `config.json` (the original constructor's arguments, `DPOTConfig`)
and `model.safetensors`, or a released / training file (`.pth`): its size from the name `model_<size>.pth`, or
`size="Ti"` (S, M, L, H), or `config=...`. Bare state dicts, the original's training checkpoint dict (its "model"
entry) and DDP `module.` prefixes load alike, pickles only through `torch.load(weights_only=True)`. Extra
keyword arguments change sizes for fine-tuning; the tensors whose shapes change are initialised afresh
(`reinitialised_keys`). `save_pretrained(folder)` writes the folder.

`forward_fields` / `forward_batch` run the model in pdeforge's channels-first layout
(`input_fields (B, T_in, C, X, Y) -> (B, T_out, C, X, Y)`) and `DPOTConfig.from_metadata` sizes it from a dataset.

The implementation is written from the paper and from facts about the checkpoint format, without the authors'
code (their repository carries no licence); the released weights come with their authors' terms, see the Hugging
Face repository.

Examples:
    A small DPOT saved as a pretrained folder, loaded again, and loaded for fine-tuning to 2 fields and 4 frames
    (a downloaded `model_Ti.pth` loads the same way):

    >>> import torch
    >>> config = DPOTConfig(img_size=16, patch_size=4, in_channels=3, out_channels=3, in_timesteps=3,
    ...                     embed_dim=16, depth=2, modes=2, n_cls=2)
    >>> model = DPOT(config).eval()
    >>> folder = model.save_pretrained("dpot_small")  # config.json + model.safetensors
    >>> same = DPOT.from_pretrained(folder).eval()
    >>> x = torch.randn(4, 16, 16, 3, 3)  # (B, X, Y, T_in, C_in)
    >>> pred, cls_pred = same(x)
    >>> pred.shape, cls_pred.shape, torch.equal(pred, model(x)[0])
    (torch.Size([4, 16, 16, 1, 3]), torch.Size([4, 2]), True)
    >>> tuned = DPOT.from_pretrained(folder, in_channels=2, out_channels=2, in_timesteps=4)
    >>> print(*reinitialised_keys(config, tuned.config), sep="\\n")  # fresh; every other tensor is the checkpoint's
    patch_embed.proj.0.weight
    patch_embed.proj.0.bias
    patch_embed.proj.2.weight
    time_agg_layer.w
    out_layer.4.weight
    out_layer.4.bias
    >>> tuned.forward_fields(torch.randn(4, 4, 2, 16, 16)).shape  # channels first: (B, T_in, C, X, Y)
    torch.Size([4, 1, 2, 16, 16])
"""

from __future__ import annotations

from ._config import ACTIVATIONS, INERT_KEYS, RELEASED_PARAMETERS, RELEASED_SIZES, DPOTConfig
from ._fields import DPOTFieldsConfig
from ._io import load_pretrained, read_checkpoint, reinitialised_keys, released_size, save_pretrained
from ._model import DPOT, AFNOBlock, AFNOFilter, PatchEmbed, TimeAggregator, coordinates

__all__ = [
    "DPOT",
    "DPOTConfig",
    "DPOTFieldsConfig",
    "RELEASED_SIZES",
    "RELEASED_PARAMETERS",
    "ACTIVATIONS",
    "INERT_KEYS",
    "load_pretrained",
    "save_pretrained",
    "read_checkpoint",
    "reinitialised_keys",
    "released_size",
    "AFNOFilter",
    "AFNOBlock",
    "PatchEmbed",
    "TimeAggregator",
    "coordinates",
]
