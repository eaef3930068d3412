"""Neural surrogates for PDE fields: FNO, TFNO, UNO (neuraloperator's layers) and a ConvNeXt U-Net.

Public API: ``build_model``, ``build_from_spec``, ``FieldOperator``, ``MODELS``, ``FNOConfig``, ``TFNOConfig``,
``UNOConfig``, ``UNetConfig``. A model takes its sizes from the data's metadata; on data with equation parameters
(``scalar_names``) or constant fields it needs them at every call, which ``forward_batch`` takes from a batch of
``TrajectoryDataset`` samples (``input_fields (B, T_in, C, *space)``, ``scalars (B, S)``, ``constant_fields``).

The model works in whatever units it was trained in (normalised, for the operator family); a trained run predicts
in physical units with ``pdeforge.load_run(RUN).predict(batch)``.

Importing this package imports neither torch nor ``neuralop`` (slow): names load on first use. The model families
that train these networks and others through the run skeleton are subpackages: ``pdeforge.operators.field`` (the
networks above on a dataset root), ``pdeforge.operators.tsm`` (temporal stencils / learned interpolation inside the
FV solver), ``pdeforge.operators.noda`` (prediction with data assimilation) and ``pdeforge.operators.scot``
(scOT / Poseidon: all-pairs pretraining and fine-tuning; ``ScOT`` and ``ScOTConfig`` are re-exported here).

Examples:
    An FNO for one field and one equation parameter (``nu``), four frames in and one out:

    >>> import torch
    >>> from pdeforge.datasets import DatasetMetadata
    >>> from pdeforge.operators import FNOConfig, build_from_spec, build_model
    >>> metadata = DatasetMetadata(
    ...     dataset_name="burgers_1d", field_names=("u",), constant_field_names=(), scalar_names=("nu",),
    ...     spatial_dims=("x",), resolution=(64,), domain_lengths=(1.0,), dt=0.01, boundary_conditions=("periodic",),
    ... )
    >>> model = build_model(FNOConfig(n_modes=8, hidden_channels=16), metadata, n_steps_input=4, n_steps_output=1)
    >>> batch = {"input_fields": torch.randn(8, 4, 1, 64), "scalars": torch.full((8, 1), 0.01)}
    >>> model.forward_batch(batch).shape  # (B, T_in, C, *space) and the scalars -> (B, T_out, C, *space)
    torch.Size([8, 1, 1, 64])
    >>> model(batch["input_fields"], scalars=batch["scalars"]).shape  # the same call, by keyword
    torch.Size([8, 1, 1, 64])
    >>> build_from_spec(model.model_spec).layout == model.layout  # JSON-able spec -> the same architecture
    True
"""

from __future__ import annotations

from .._lazy import lazy_exports

# every public name with the module that defines it; imported on first use, so that the families' config classes
# (``pdeforge.operators.field.OperatorConfig``, ...) load without torch and ``--help`` answers at once
_WHERE = {
    **dict.fromkeys(
        (
            "MODELS",
            "FRAME_MODELS",
            "FramesNet",
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
    **dict.fromkeys(("AViT", "AViTConfig"), ".mpp"),
    **dict.fromkeys(("DPOT", "DPOTConfig"), ".dpot"),
    "load_well_baseline": ".well",
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
