"""Neural surrogates for PDE fields: FNO, TFNO, UNO (neuraloperator's layers) and a ConvNeXt U-Net.

Public API::

    from pdeforge.operators import build_model, build_from_spec, FieldOperator, MODELS
    from pdeforge.operators import FNOConfig, TFNOConfig, UNOConfig, UNetConfig

    model = build_model(FNOConfig(n_modes=16), metadata, n_steps_input=4, n_steps_output=1)
    pred = model(batch["input_fields"])            # (B, T_in, C, *space) -> (B, T_out, C, *space)
    same = build_from_spec(model.model_spec)       # JSON-able spec -> same architecture

Importing this package imports neither torch nor ``neuralop`` (slow): names load on first use. The model families
that train these networks and others through the run skeleton are subpackages: ``pdeforge.operators.field`` (the
networks above on a dataset root), ``pdeforge.operators.tsm`` (temporal stencils / learned interpolation inside the
FV solver), ``pdeforge.operators.noda`` (prediction with data assimilation) and ``pdeforge.operators.scot``
(scOT / Poseidon: all-pairs pretraining and fine-tuning; ``ScOT`` and ``ScOTConfig`` are re-exported here).
"""

from __future__ import annotations

from .._lazy import lazy_exports

# every public name with the module that defines it; imported on first use, so that the families' config classes
# (``pdeforge.operators.field.OperatorConfig``, ...) load without torch and ``--help`` answers at once
_WHERE = {
    **dict.fromkeys(
        (
            "MODELS",
            "FieldOperator",
            "InputLayout",
            "build_model",
            "build_from_spec",
            "config_to_dict",
            "config_from_dict",
        ),
        "._build",
    ),
    **dict.fromkeys(("FNOConfig", "NeuralOperatorNet", "TFNOConfig", "UNOConfig"), "._neuralop"),
    **dict.fromkeys(("UNetConfig", "UNetConvNeXt"), "._unet"),
    **dict.fromkeys(("ScOT", "ScOTConfig"), ".scot"),
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
