"""Neural surrogates for PDE fields: FNO, TFNO, UNO (neuraloperator's layers) and a ConvNeXt U-Net.

Public API::

    from pdeforge.operators import build_model, build_from_spec, FieldOperator, MODELS
    from pdeforge.operators import FNOConfig, TFNOConfig, UNOConfig, UNetConfig

    model = build_model(FNOConfig(n_modes=16), metadata, n_steps_input=4, n_steps_output=1)
    pred = model(batch["input_fields"])            # (B, T_in, C, *space) -> (B, T_out, C, *space)
    same = build_from_spec(model.model_spec)       # JSON-able spec -> same architecture

Importing this package does not import ``neuralop`` (slow); that happens when an FNO/TFNO/UNO is built.
scOT (Poseidon) lives in ``pdeforge.operators.scot``; ``ScOT`` and ``ScOTConfig`` are re-exported here lazily.
Families with their own training loop are public modules, imported on use: ``pdeforge.operators.tsm`` (temporal
stencils / learned interpolation inside the FV solver), ``pdeforge.operators.noda`` (prediction with data
assimilation) and ``pdeforge.operators.scot.training`` (all-pairs pretraining and fine-tuning).
"""

from __future__ import annotations

import importlib
from typing import Any

# every public name with the module that defines it; imported on first use, so that the families' config classes
# (``pdeforge.operators.field.OperatorConfig``, ...) load without torch and ``--help`` answers at once
_WHERE = {
    **dict.fromkeys(("MODELS", "FieldOperator", "InputLayout", "build_model", "build_from_spec", "config_to_dict",
                     "config_from_dict"), "._build"),
    **dict.fromkeys(("FNOConfig", "NeuralOperatorNet", "TFNOConfig", "UNOConfig"), "._neuralop"),
    **dict.fromkeys(("UNetConfig", "UNetConvNeXt"), "._unet"),
    **dict.fromkeys(("ScOT", "ScOTConfig"), ".scot"),
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


def __dir__() -> list[str]:
    return __all__
