"""The scOT family's run config (pretraining and fine-tuning on all pairs of snapshots): ``pdeforge train --help``.

Sections: ``run`` (shared), ``data`` (the datasets of the mixture and the all-pairs view), ``optim`` (AdamW and its
schedule), ``model`` (the scOT's hyper-parameters, and fine-tuning's shared options: ``reinit``, ``lr_groups``,
``freeze``, as the operator family's). No torch here: a config is read and checked before anything heavy is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...training.config import DataSection, OptimSection, RunSection, option, section

__all__ = ["ScOTRunConfig", "ScOTData", "ScOTModelSection", "SOURCE_KEYS"]

#: the keys of one entry of ``data.sources`` (the same as the data section's own)
SOURCE_KEYS = ("root", "preset", "preset_options", "storage_options")


@dataclass
class ScOTData(DataSection):
    """The datasets (a mixture: one all-pairs view each, padded to a shared channel layout) and the view."""

    sources: list = option(
        [],
        "the datasets of the mixture, each {root: PATH or URL[, storage_options: {...}]} or {preset: NAME, "
        "preset_options: {...}} (empty: the one dataset of data.root / data.preset)",
    )
    max_train_trajectories: int = option(0, "use the first N training trajectories of each dataset (0: all)", min=0)
    stride: int = option(2, "select the stored snapshots 0, stride, 2 stride, ...", min=1)
    n_snapshots: int = option(6, "... the first n_snapshots of them (0: up to the last stored one)", min=0)
    pairing: str = option(
        "all",
        "all (every t_i <= t_j, Poseidon's all2all) | next (consecutive) | from_first (u(t_0) -> u(t_j))",
        choices=("all", "next", "from_first"),
    )
    normalization: str = option(
        "zscore", "per dataset, with the train statistics of its root ('': none)", choices=("zscore", "rms", "")
    )
    channels: list = option([], "the channel layout (empty: the union of the datasets' channels)")


@dataclass
class ScOTModelSection:
    """The scOT: ``ScOTConfig.tiny`` (or, with ``run.init_from``, the pretrained config) with these changes, and how
    it is fine-tuned (the operator family's options)."""

    args: dict = option(
        {},
        "ScOTConfig fields changed from ScOTConfig.tiny() (with run.init_from: from the "
        "pretrained config); the channel counts and loss groups come from the data",
    )
    reinit: list = option([], "with run.init_from: parameter-name prefixes to re-initialise anyway")
    lr_groups: dict = option(
        {},
        "{parameter-name prefix or Poseidon's group embedding_recovery | time_embedding: learning rate}; "
        "the rest (the backbone) use optim.lr",
    )
    freeze: list = option([], "parameter-name prefixes (or embedding_recovery | time_embedding) not trained")


@dataclass
class ScOTRunConfig:
    """scOT (Poseidon) trained on all pairs of snapshots of one dataset or a mixture; fine-tuned with init_from."""

    family: str = option("scot", "the family", choices=("scot",))
    run: RunSection = section(RunSection, "where the run writes, its seed and device, resume and init_from")
    data: ScOTData = section(ScOTData, "the datasets and the all-pairs view")
    optim: OptimSection = section(
        lambda: OptimSection(
            steps=1000, batch_size=16, lr=1e-3, weight_decay=1e-6, warmup=0.05, grad_clip=5.0, eval_every=200
        ),
        "AdamW, warm-up + cosine",
    )
    model: ScOTModelSection = section(ScOTModelSection, "the scOT's hyper-parameters")

    @staticmethod
    def upgrade_values(values: Mapping[str, Any]) -> Mapping[str, Any]:
        """A config written before ``model.lr_groups`` (``optim.lr_embedding_recovery``, ``optim.lr_time_embedding``;
        0 meant ``optim.lr``) read as the named groups it meant, so that older run folders load and resume."""
        optim = dict(values.get("optim") or {})
        old = {key: optim.pop(key) for key in ("lr_embedding_recovery", "lr_time_embedding") if key in optim}
        if not old:
            return values
        model = dict(values.get("model") or {})
        groups = dict(model.get("lr_groups") or {})
        for key, lr in old.items():
            if lr:
                groups.setdefault(key.removeprefix("lr_"), lr)
        return {**values, "optim": optim, "model": {**model, "lr_groups": groups}}
