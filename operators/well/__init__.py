"""The Well's published baselines (FNO, TFNO, UNetClassic, UNetConvNext), loaded exactly.

Polymathic AI publish, for each dataset of The Well (Ohana et al. 2024, arXiv:2412.00568), the four benchmark
baselines trained on it as ``polymathic-ai/<Model>-<dataset>`` on the Hugging Face Hub (FNO and TFNO built with
neuraloperator 0.3.0, which cannot be installed beside neuraloperator 2.x). These modules are written anew with the
same ``state_dict()`` keys, shapes and order and the same computation, so the published ``config.json`` +
``model.safetensors`` load strictly and give the original outputs (bit for bit on one CPU thread).

- ``load_well_baseline(folder or Hub id)``: the network, eval mode. ``model(x)`` takes The Well's formatted input
  ``(B, T_in*F + F_const, *S)`` (time-major frames, constant fields last) and returns ``(B, F, *S)``;
  ``model.forward_fields(input_fields (B, T_in, C, *S), constant_fields)`` / ``model.forward_batch(batch)`` serve
  pdeforge's tasks, ``-> (B, 1, C, *S)``.
- ``well_format_input`` / ``well_format_output``: The Well's formatter, from and to its channels-last batches.
- ``save_well_baseline(model, folder)``: the same two files, e.g. after fine-tuning.
- ``WellFNO``, ``WellTFNO``, ``WellUNetClassic``, ``WellUNetConvNext``: the networks, built from the
  ``config.json`` keys; ``tucker_ranks``: TFNO's Tucker ranks (parameter fraction 1.0, tensorly's rule).
- ``WellFNOConfig``, ``WellTFNOConfig``, ``WellUNetClassicConfig``, ``WellUNetConvNextConfig``: the four as
  models of the operator family (``model.name: well_fno``, ``well_tfno``, ``well_unet_classic``,
  ``well_unet_convnext``), fine-tuned with ``pdeforge train configs/well_finetune.yaml --run.init_from FOLDER``
  (or a Hub id).

The Well's models see z-scored fields (each field's mean and std from the dataset's ``stats.yaml``) and their
predictions are de-normalised for validation; evaluate with ``pdeforge.metrics.vrmse``, The Well's VRMSE.

Examples:
    A tiny FNO saved in the published layout and loaded back; its input is four frames of three fields:

    >>> import torch
    >>> net = WellFNO(dim_in=12, dim_out=3, n_spatial_dims=2, spatial_resolution=[16, 16], modes1=4, modes2=4,
    ...               hidden_channels=8)
    >>> folder = save_well_baseline(net, "fno_small")  # config.json + model.safetensors
    >>> model = load_well_baseline(folder)  # or load_well_baseline("polymathic-ai/FNO-active_matter")
    >>> frames = torch.randn(2, 4, 3, 16, 16)  # (B, T_in, C, X, Y)
    >>> model.forward_fields(frames).shape  # (B, T_out=1, C, X, Y)
    torch.Size([2, 1, 3, 16, 16])
    >>> torch.equal(model(frames.flatten(1, 2)), net.eval()(frames.flatten(1, 2)))  # The Well's layout
    True
"""

from __future__ import annotations

from ._base import AbstractWellBaseline, well_format_input, well_format_output
from ._fields import WellFNOConfig, WellTFNOConfig, WellUNetClassicConfig, WellUNetConvNextConfig
from ._io import WELL_BASELINES, load_well_baseline, model_name_of, resolve_well_baseline, save_well_baseline
from ._spectral import WellFNO, WellTFNO, tucker_ranks
from ._unets import WellUNetClassic, WellUNetConvNext

__all__ = [
    "AbstractWellBaseline",
    "WELL_BASELINES",
    "WellFNOConfig",
    "WellTFNOConfig",
    "WellUNetClassicConfig",
    "WellUNetConvNextConfig",
    "WellFNO",
    "WellTFNO",
    "WellUNetClassic",
    "WellUNetConvNext",
    "load_well_baseline",
    "model_name_of",
    "resolve_well_baseline",
    "save_well_baseline",
    "tucker_ranks",
    "well_format_input",
    "well_format_output",
]
