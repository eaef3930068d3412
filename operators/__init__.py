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

from ._build import MODELS, FieldOperator, InputLayout, build_from_spec, build_model, config_from_dict, config_to_dict
from ._neuralop import FNOConfig, NeuralOperatorNet, TFNOConfig, UNOConfig
from ._unet import UNetConfig, UNetConvNeXt

__all__ = [
    "MODELS",
    "FieldOperator",
    "InputLayout",
    "build_model",
    "build_from_spec",
    "config_to_dict",
    "config_from_dict",
    "FNOConfig",
    "TFNOConfig",
    "UNOConfig",
    "NeuralOperatorNet",
    "UNetConfig",
    "UNetConvNeXt",
    "ScOT",
    "ScOTConfig",
]


def __getattr__(name: str):
    # scOT is a separate family with its own subpackage; import it on first use only.
    if name in ("ScOT", "ScOTConfig"):
        from . import scot

        return getattr(scot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
