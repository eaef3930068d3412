"""The field-operator family: FNO, TFNO, UNO (neuraloperator's layers) or a U-Net trained on a dataset root.

    python train.py                                  # the main job: this family on its embedded default
    pdeforge train configs/fno_navier_stokes.yaml    # a config of this family (family: operator, or none)

Config (:class:`OperatorConfig`): ``run`` and ``data`` as every family, ``task`` (operator map or next step),
``model`` (the architecture and its args), ``optim`` (AdamW, warm-up + cosine). Names are imported on first use,
so the config loads without torch.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_WHERE = {
    **dict.fromkeys(
        ("OperatorConfig", "OperatorData", "TaskSection", "ModelSection", "MODEL_NAMES", "DEFAULT_ARGS"), "._config"
    ),
    **dict.fromkeys(("FieldOperatorFamily", "make_task"), "._family"),
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
