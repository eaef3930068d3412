"""AViT of MPP in plain PyTorch: the axial vision transformer of McCabe et al., "Multiple Physics Pretraining for
Physical Surrogate Models" (NeurIPS 2024; PolymathicAI/multiple_physics_pretraining, MIT licence), compatible with
the released Ti / S / B / L weights (7.3M to 407M parameters): the same `state_dict()` keys, shapes and order, the
same forward `model(x, state_labels, bcs)` with time first, `x (T, B, C, H, W) -> (B, C, H, W)`.

`AViT.from_pretrained(path)` reads a folder with `config.json` (the original `build_avit` arguments, `AViTConfig`)
and `model.safetensors`, or a released / training file (`.tar`, `.pth`) given `size="Ti"` (or S, B, L) or
`config=...`; bare state dicts, the original's training checkpoint dict (`model_state`) and DDP `module.` prefixes
load alike, pickles only through `torch.load(weights_only=True)`. `save_pretrained(folder)` writes the folder.

`FIELDS` is the field vocabulary of the released weights; `field_labels` / `boundary_flags` map a dataset's field
names and boundary conditions to the model's `state_labels` and `bcs`, and `AViTForFields` runs the model on
pdeforge's channels-first samples (`input_fields (B, T_in, C, H, W) -> (B, 1, C, H, W)`).

Examples:
    >>> import torch
    >>> model = AViT(AViTConfig.tiny(n_states=5)).eval()
    >>> folder = model.save_pretrained("avit_tiny")  # config.json + model.safetensors
    >>> same = AViT.from_pretrained(folder).eval()
    >>> x = torch.randn(4, 2, 2, 32, 48)  # (T, B, C, H, W): 4 frames of 2 fields on a 32 x 48 grid
    >>> labels, bcs = torch.tensor([[3, 0], [3, 0]]), torch.tensor([[0, 1], [0, 1]])
    >>> out = same(x, labels, bcs)
    >>> out.shape, torch.equal(out, model(x, labels, bcs))
    (torch.Size([2, 2, 32, 48]), True)
"""

from __future__ import annotations

from ._config import SIZES, AViTConfig
from ._fields import FIELDS, AViTFieldsConfig, AViTForFields, boundary_flags, field_labels
from ._io import VOCABULARY_KEYS, describe_weights, load_pretrained, read_checkpoint, save_pretrained
from ._layers import RMSInstanceNorm2d, relative_position_buckets
from ._model import AViT

__all__ = [
    "AViT",
    "AViTConfig",
    "AViTForFields",
    "AViTFieldsConfig",
    "SIZES",
    "FIELDS",
    "VOCABULARY_KEYS",
    "field_labels",
    "boundary_flags",
    "load_pretrained",
    "save_pretrained",
    "read_checkpoint",
    "describe_weights",
    "RMSInstanceNorm2d",
    "relative_position_buckets",
]
