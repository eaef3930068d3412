"""The scOT family: pretraining and fine-tuning on all pairs of snapshots (Poseidon's all2all training) through the
run skeleton.

    pdeforge train configs/scot_pretrain.yaml                                    # a mixture of two NS datasets
    pdeforge train configs/scot_finetune.yaml --run.init_from runs/scot_pretrain # new physics, 3 lr groups
    pdeforge train configs/scot_finetune.yaml --run.init_from "" --optim.lr 2e-3 --run.run_dir runs/scot_scratch
    torchrun --nproc_per_node 4 -m pdeforge.cli train configs/scot_pretrain.yaml # DDP: each process its share

The model learns ``S(u(t_i), (t_j - t_i) / span) = u(t_j)`` on every pair ``t_i <= t_j`` of the selected snapshots
(`pdeforge.datasets.AllPairsDataset`; ``data.pairing: next`` trains on consecutive snapshots only, for comparison)
of every dataset of ``data.sources``, padded to their shared channel layout, with the relative L1 loss per channel
group (masked where a dataset lacks a channel). Selection metric (``validate``) and the valid/test metrics: the
median over trajectories of the relative L1 error (%) of u(t_first) -> u(t_last) (Poseidon's metric), the mean over
the datasets of the mixture; by rollout over the selection for ``pairing: next``.

Fine-tuning (``run.init_from``: a scOT run folder, or a Hugging Face scOT folder as ``ScOT.from_pretrained`` reads)
takes the operator family's path (`pdeforge.training.FineTuneRecord`): the pretrained architecture with the data's
channel counts (and ``model.args``); every tensor whose name and shape match is loaded, exactly those whose shape
changes with the channel count (embedding and recovery) keep their fresh initialisation, and those under a
``model.reinit`` prefix; ``model.freeze`` prefixes are not trained; ``model.lr_groups`` give prefixes, or Poseidon's
named groups ``embedding_recovery`` and ``time_embedding`` (`named_parameter_groups`), their own learning rates, the
backbone ``optim.lr``. ``model.json`` records it all under ``finetune``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import plots
from ...checkpoint import load_weights
from ...datasets import AllPairsDataset, AllPairsMixture, channel_union, load_stats, stats_path
from ...training.finetune import FineTuneRecord, prefix_parameter_groups
from ...training.loop import AbstractFamily, Environment
from ...training.run_folder import RunFolder, read_envelope
from ._config import ScOTConfig
from ._data import (
    channel_groups,
    final_time_error,
    masked_scot_loss,
    open_split,
    resolve_sources,
    selection,
    source_labels,
)
from ._io import CONFIG_NAME, named_parameter_groups, read_state_dict, resolve_folder
from ._model import ScOT
from ._run_config import ScOTRunConfig

__all__ = ["ScOTFamily", "read_source"]

_BATCH_KEYS = ("input_fields", "lead_time", "output_fields", "channel_mask")


def read_source(path: str | Path) -> tuple[ScOTConfig, Any]:
    """(the stored config, a function returning the weights) of a scOT run folder (``model.json`` naming the family
    scot) or a Hugging Face scOT folder (``config.json``), local or a Hub id (``camlab-ethz/Poseidon-T``,
    ``hf://org/name@revision``: `huggingface_hub`'s cache, ``$HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1`` reads only it);
    anything else is a FileNotFoundError / ValueError."""
    folder = resolve_folder(path)
    if (folder / "model.json").is_file():
        envelope = read_envelope(folder)
        if envelope["family"] != "scot":
            raise ValueError(f"{folder} is a run folder of the {envelope['family']} family, not a scOT one")
        return ScOTConfig.from_dict(envelope["model_spec"]), lambda: load_weights(folder / "model.safetensors")
    if (folder / CONFIG_NAME).is_file():
        return ScOTConfig.from_json(folder / CONFIG_NAME), lambda: read_state_dict(folder)
    raise FileNotFoundError(
        f"{folder}: expected a scOT run folder (model.json) or a Hugging Face scOT folder ({CONFIG_NAME} + weights)"
    )


class ScOTFamily(AbstractFamily):
    """scOT on all pairs of snapshots of a mixture of datasets; best-by-valid weights (median relative L1)."""

    name = "scot"
    config_class = ScOTRunConfig

    def __init__(self, config: ScOTRunConfig, env: Environment) -> None:
        super().__init__(config, env)
        self.finetune = FineTuneRecord()  # what run.init_from loaded and re-initialised, what is frozen (model.json)
        self.splits: dict[str, list] = {}  # the valid / test datasets, opened on first use

    # -- data and model -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg, env = self.config, self.env
        self.roots = resolve_sources(cfg.data, progress=cfg.run.progress, env=env)
        data = cfg.data
        self.train = [open_split(r, "train", data.normalization, data.max_train_trajectories) for r in self.roots]
        self.channels = tuple(data.channels) or channel_union([d.metadata for d in self.train])
        self.groups = channel_groups(self.channels)
        self.snapshots = [selection(d.n_steps, data.stride, data.n_snapshots) for d in self.train]
        self.labels = source_labels(self.train)
        self.mixture = AllPairsMixture(
            [
                AllPairsDataset(d, s, pairing=data.pairing, channels=self.channels)
                for d, s in zip(self.train, self.snapshots)
            ]
        )
        if env.is_main:  # on stderr: stdout stays for results (pdeforge evaluate prints JSON)
            print(
                f"scot data: channels {list(self.channels)}, {len(self.mixture)} train pairs ({data.pairing}) from "
                f"{sum(len(d.trajectories) for d in self.train)} trajectories of {len(self.roots)} dataset(s)",
                file=sys.stderr,
            )

    def _split(self, split: str) -> list:
        if split not in self.splits:
            self.splits[split] = [open_split(r, split, self.config.data.normalization) for r in self.roots]
        return self.splits[split]

    def _model_config(self) -> ScOTConfig:
        """The scOT to build: ``ScOTConfig.tiny`` or the ``run.init_from`` checkpoint's config, with the data's channel
        counts and loss groups and ``model.args``."""
        n = len(self.channels)
        changes = {
            "num_channels": n,
            "num_out_channels": n,
            **self.config.model.args,
            "channel_slice_list_normalized_loss": tuple(self.groups),
        }
        source = self.config.run.init_from
        try:
            base = read_source(source)[0] if source else None
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"--run.init_from {source}: {e}") from None
        try:
            return base.replace(**changes) if base is not None else ScOTConfig.tiny(**changes)
        except TypeError as e:  # an unknown field
            raise ValueError(f"scot: model.args {self.config.model.args}: {e}; expected ScOTConfig fields") from None

    def build_model(self) -> nn.Module:
        model, m = ScOT(self._model_config()), self.config.model
        prefix_parameter_groups(model, m.lr_groups, m.freeze, named=named_parameter_groups(model))  # said up front
        return model

    def init_from(self, model: nn.Module, source: str) -> str:
        return self.finetune.load(model, read_source(source)[1](), source, tuple(self.config.model.reinit))

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """``model.freeze`` left out; a group per ``model.lr_groups`` entry (a prefix or a named group of
        `named_parameter_groups`), the rest (the backbone) at ``optim.lr``."""
        m = self.config.model
        return self.finetune.groups(model, m.lr_groups, m.freeze, named=named_parameter_groups(model))

    def training_state(self) -> dict[str, Any]:
        return {"finetune": self.finetune.record} if self.finetune.record else {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.finetune.record = dict(state.get("finetune", {}))

    # -- training -------------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return len(self.mixture) // (self.config.optim.batch_size * self.env.world)

    def train_batches(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of a permutation of the mixture fixed by (seed, epoch); process ``rank`` takes its slice of each
        global batch of ``batch_size * world`` pairs."""
        g = torch.Generator().manual_seed(1_000_003 * self.config.run.seed + epoch)
        order = torch.randperm(len(self.mixture), generator=g).tolist()
        bs, world, rank = self.config.optim.batch_size, self.env.world, self.env.rank
        for k in range(start, self.steps_per_epoch()):
            idx = order[k * bs * world : (k + 1) * bs * world][rank * bs : (rank + 1) * bs]
            samples = [self.mixture[i] for i in idx]
            yield {key: torch.stack([s[key] for s in samples]).to(self.env.device) for key in _BATCH_KEYS}

    def loss(self, net: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        pred = net(batch["input_fields"], batch["lead_time"])
        reduce = None
        if self.env.world > 1:
            import torch.distributed as dist

            def reduce(t: torch.Tensor) -> torch.Tensor:
                dist.all_reduce(t)
                return t

        return masked_scot_loss(pred, batch["output_fields"], batch["channel_mask"], self.groups, reduce)

    # -- evaluation -----------------------------------------------------------------------------------------
    def _errors(self, model: nn.Module, split: str) -> dict[str, float]:
        return {
            label: final_time_error(model, d, s, self.channels, self.config.data.pairing)
            for label, d, s in zip(self.labels, self._split(split), self.snapshots)
        }

    def validate(self, model: nn.Module) -> float:
        """The mean over the datasets of the median relative L1 (%) at the final time, on valid."""
        return float(np.mean(list(self._errors(model, "valid").values())))

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        errors = self._errors(model, split)
        return {"median_rel_l1": float(np.mean(list(errors.values()))), "median_rel_l1_per_dataset": errors}

    # -- the run folder -------------------------------------------------------------------------------------
    def envelope(self, model: nn.Module) -> dict[str, Any]:
        """``metadata``: the first dataset's (its grid and time step; the model's channels are ``view.channels``);
        ``datasets``: every dataset's; ``view``: the channel layout, snapshots, pairing and sizes of the training."""
        view = {
            "channels": list(self.channels),
            "channel_groups": self.groups,
            "labels": self.labels,
            "roots": [str(r) for r in self.roots],
            "snapshots": self.snapshots,
            "pairing": self.config.data.pairing,
            "normalization": self.config.data.normalization,
            "train_pairs": len(self.mixture),
            "train_trajectories": sum(len(d.trajectories) for d in self.train),
        }
        stats = {label: load_stats(stats_path(r)) for label, r in zip(self.labels, self.roots)}
        return {
            "model_spec": json.loads(model.config.to_json()),
            "metadata": self.train[0].metadata.to_dict(),
            "datasets": [d.metadata.to_dict() for d in self.train],
            "view": view,
            "stats": json.loads(json.dumps(stats, default=_plain)),
            **({"finetune": self.finetune.record} if self.finetune.record else {}),
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> nn.Module:
        return ScOT(ScOTConfig.from_dict(envelope["model_spec"]))

    def plots(self, model: nn.Module, run: RunFolder, metrics: Mapping[str, Any]) -> None:
        plots.plot_losses(
            run.log,
            run.plot_path("loss.png"),
            loss_label="train loss (relative L1)",
            valid_label="valid median relative L1 (%)",
        )

    def summary(self, metrics: Mapping[str, Any]) -> str:
        return (
            f"test median rel L1 {metrics['test']['median_rel_l1']:.3f}% (valid "
            f"{metrics['valid']['median_rel_l1']:.3f}%, best step {metrics['best_step']})"
        )


def _plain(x: Any) -> Any:
    """NumPy values and arrays in the statistics as JSON numbers and lists."""
    return x.tolist() if hasattr(x, "tolist") else str(x)
