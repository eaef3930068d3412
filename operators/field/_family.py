"""The field-operator family: an FNO / TFNO / UNO / U-Net, a pretrained AViT / DPOT, or one of The Well's baselines
(``well_fno``, ``well_tfno``, ``well_unet_classic``, ``well_unet_convnext``), trained on a dataset root through the
run skeleton.

Fine-tuning (``run.init_from``: a run folder of this family, a weights file, or for the pretrained models a
pretrained source: ``avit`` / ``dpot`` a ``save_pretrained`` folder or a released ``.tar`` / ``.pth`` file, the
``well_*`` models a published folder or Hub id, ``polymathic-ai/FNO-active_matter``): the architecture is the
source's (its ``model.json`` spec, ``config.json``, or what the released file says: AViT's sizes read off its
weights, DPOT's from its file name ``model_Ti.pth``, else ``model.args``) with ``model.args`` changed and the
sizes of the data; the source's tensors are mapped onto the model (a pretrained source's keys under the config's
``STATE_PREFIX``) and loaded where name and shape match;
exactly the tensors whose shapes change (new channels, frames, vocabulary) keep their fresh initialisation, and
those under a ``model.reinit`` prefix. ``model.freeze`` prefixes are not trained, ``model.lr_groups`` give
prefixes their own learning rates (`pdeforge.training.prefix_parameter_groups`). ``model.json`` records it all
under ``finetune``: the source, the loaded, re-initialised and unused tensor names, the frozen ones, the groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ... import metrics as M
from ... import plots
from ..._device import compile_problem
from ...checkpoint import UnsafeCheckpointError, load_any_weights
from ...datasets import DatasetMetadata, Normalizer, load_stats, stats_path
from ...tasks import AbstractTask, NextStepTask, OperatorTask, Views, split_metrics, to_device
from ...training.data import dataset_root
from ...training.finetune import FineTuneRecord, prefix_parameter_groups
from ...training.loop import AbstractFamily, Environment
from ...training.run_folder import read_envelope
from .._build import (
    PRETRAINED_MODELS,
    FieldOperator,
    build_from_spec,
    build_model,
    config_from_dict,
    model_config_class,
)
from ._config import DEFAULT_ARGS, OperatorConfig, TaskSection

__all__ = ["FieldOperatorFamily", "make_task"]


def make_task(task: TaskSection) -> AbstractTask:
    """The task object a config's ``task`` section describes."""
    if task.kind == "operator":
        return OperatorTask(windows=task.windows, dt_stride=task.dt_stride)
    if task.dt_stride == 0:
        raise ValueError(
            "task.dt_stride 0: expected >= 1 (0, the last snapshot, is for task.kind operator with task.windows first)"
        )
    return NextStepTask(task.n_steps_input, task.n_steps_output, task.dt_stride, task.pushforward, task.rollout_steps)


class FieldOperatorFamily(AbstractFamily):
    """A field operator (:data:`pdeforge.operators.MODELS`, The Well's baselines) on a dataset root, for a task
    (operator map or next step); best-by-valid weights."""

    name = "operator"
    config_class = OperatorConfig

    def __init__(self, config: OperatorConfig, env: Environment) -> None:
        super().__init__(config, env)
        self.task = make_task(config.task)
        if config.model.compile and (problem := compile_problem(env.device)):
            raise ValueError(f"--model.compile: {problem}; install it or set model.compile false")
        self._compiled: tuple[nn.Module, nn.Module] | None = None
        self._restored, self._run_stats = False, None  # a saved run's statistics (restore), else the root's
        self.finetune = FineTuneRecord()  # what run.init_from loaded and re-initialised, what is frozen (model.json)
        self._pretrained: dict[str, torch.Tensor] | None = None  # the weights of a pretrained folder (init_from)

    # -- data and model -------------------------------------------------------------------------------------
    def restore(self, envelope: Mapping[str, Any]) -> None:
        """The run's own normalisation (fitted on its train split), whatever dataset root it is evaluated on."""
        self._restored, self._run_stats = True, run_statistics(self.config, envelope)

    def prepare(self) -> None:
        cfg, env = self.config, self.env
        self.root = dataset_root(cfg.data, where="operator", progress=cfg.run.progress, env=env)
        if self._restored:
            self.stats = self._run_stats
        else:
            self.stats = load_stats(stats_path(self.root)) if cfg.data.normalization else None
        self.views = Views(self.root, cfg.data.normalization or None, self.stats)
        self.train_ds = self.task.dataset(
            self.views, "train", training=True, max_trajectories=cfg.data.max_train_trajectories
        )
        self.valid_ds = self.task.dataset(self.views, "valid")
        self.metadata = self.train_ds.metadata

    def build_model(self) -> FieldOperator:
        m = self.config.model
        base = self._source_args()
        args = dict(m.args or DEFAULT_ARGS.get(m.name, {})) if base is None else {**base, **m.args}
        try:
            model_config = config_from_dict(m.name, args)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--model.args: {e}") from None
        n_in, n_out = self.task.frames(self.train_ds)
        if m.residual and n_in == 0:
            raise ValueError(
                "--model.residual true: the task has no input frame to add the output to (steady data: constant "
                "fields -> solution); set model.residual false"
            )
        self.model = build_model(
            model_config,
            self.metadata,
            n_steps_input=n_in,
            n_steps_output=n_out,
            use_grid=m.use_grid,
            residual=m.residual,
        )
        prefix_parameter_groups(self.model, m.lr_groups, m.freeze)  # a prefix matching nothing: said before any work
        return self.model

    def _source_args(self) -> dict[str, Any] | None:
        """The architecture of ``run.init_from`` (None: none to take, ``model.args`` or the defaults say it): a run
        of this family with the same model (its ``model.json``), or for a pretrained model a pretrained source
        (its config's ``read_pretrained``; its weights are kept for :meth:`init_from`)."""
        source, name = self.config.run.init_from, self.config.model.name
        if not source:
            return None
        folder = Path(source)
        try:
            if (folder / "model.json").is_file():
                envelope = read_envelope(folder)
                spec = envelope.get("model_spec") or {}
                same = envelope.get("family") == self.name and spec.get("name") == name
                trained = bool(spec.get("residual", False))
                if same and trained != self.config.model.residual:  # its weights predict the change, or the state
                    raise ValueError(
                        f"trained with model.residual {str(trained).lower()}, this run has model.residual "
                        f"{str(self.config.model.residual).lower()}: set --model.residual {str(trained).lower()} to "
                        "fine-tune it as it was trained"
                    )
                return dict(spec["config"]) if same else None
            found = model_config_class(name).read_pretrained(source) if name in PRETRAINED_MODELS else None
            if found is not None:
                args, self._pretrained = found
                return args
        except (FileNotFoundError, KeyError, ValueError, UnsafeCheckpointError) as e:
            raise ValueError(f"--run.init_from {source}: {e}") from None
        return None

    def init_from(self, model: nn.Module, source: str) -> str:
        if self._pretrained is not None:
            prefix = model_config_class(self.config.model.name).STATE_PREFIX
            weights = {prefix + k: v for k, v in self._pretrained.items()}
        else:
            weights = load_any_weights(source)
        return self.finetune.load(model, weights, source, tuple(self.config.model.reinit))

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """``model.freeze`` prefixes left out; one group per ``model.lr_groups`` prefix (first match wins), then the
        rest at ``optim.lr``."""
        return self.finetune.groups(model, self.config.model.lr_groups, self.config.model.freeze)

    def training_state(self) -> dict[str, Any]:
        return {"finetune": self.finetune.record} if self.finetune.record else {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.finetune.record = dict(state.get("finetune", {}))

    # -- training -------------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return (len(self.train_ds) // self.env.world) // self.config.optim.batch_size

    def train_batches(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        env, bs = self.env, self.config.optim.batch_size
        sampler = DistributedSampler(
            self.train_ds,
            num_replicas=env.world,
            rank=env.rank,
            shuffle=True,
            seed=self.config.run.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)[start * bs :]
        loader = DataLoader(
            self.train_ds,
            batch_size=bs,
            sampler=indices,
            drop_last=True,
            num_workers=self.config.data.num_workers,
            pin_memory=env.device.type == "cuda",
        )
        for batch in loader:
            yield to_device(batch, env.device)

    def _net(self, net: nn.Module) -> nn.Module:
        if not self.config.model.compile:
            return net
        if self._compiled is None or self._compiled[0] is not net:
            self._compiled = (net, torch.compile(net))
        return self._compiled[1]

    def loss(self, net: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        pred, target = self.task.prediction_and_target(self._net(net), self.model, batch)
        if self.config.task.loss == "mse":
            return torch.mean((pred.float() - target) ** 2)
        denorm = self.train_ds.denormalize
        return M.rel_l2(denorm(pred.float()), denorm(target), self.metadata.n_spatial_dims)

    # -- evaluation -----------------------------------------------------------------------------------------
    def validate(self, model: nn.Module) -> float:
        return split_metrics(model, self.valid_ds, self.env.device, batch_size=self.config.optim.batch_size)["rel_l2"]

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        return self.task.evaluate(model, self.views, split, self.env.device)

    def envelope(self, model: nn.Module) -> dict[str, Any]:
        return {
            "model_spec": model.model_spec,
            "metadata": self.metadata.to_dict(),
            "stats": self.stats,
            "data_root": str(self.root),
            **({"finetune": self.finetune.record} if self.finetune.record else {}),
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> FieldOperator:
        return build_from_spec(envelope["model_spec"])

    def plots(self, model: nn.Module, run, metrics: Mapping[str, Any]) -> None:
        loss = {"rel_l2": "rel L2 (physical units)", "mse": "MSE (normalised units)"}[self.config.task.loss]
        plots.plot_losses(
            run.log,
            run.plot_path("loss.png"),
            loss_label=f"train loss: {loss}",
            valid_label="valid rel L2 (physical units; selects the weights)",
            ylabel="rel L2" if self.config.task.loss == "rel_l2" else "train MSE; valid rel L2",
        )
        test_ds = self.task.dataset(self.views, "test")
        sample = test_ds[0]
        with torch.no_grad():
            one = {k: v[None].to(self.env.device) for k, v in sample.items()}
            pred = test_ds.denormalize(model.forward_batch(one)[0, 0].float()).cpu().numpy()
        truth = test_ds.denormalize(sample["output_fields"][0]).numpy()
        meta = self.metadata
        steady = meta.n_steps == 1  # one snapshot per trajectory (Darcy): no time to name
        options: dict[str, Any] = {"time": None if steady else float(sample["output_time"][0])}
        if sample["input_fields"].shape[0]:
            inp = test_ds.denormalize(sample["input_fields"][-1]).numpy()
            options["input_time"] = float(sample["input_time"][-1])
        elif "constant_fields" in sample:  # the coefficient (Darcy) as stored, not normalised
            const = sample["constant_fields"]
            if self.views.normalization:
                const = _normalizers(self.stats, meta, self.views.normalization)[1].denormalize(
                    const, meta.n_spatial_dims
                )
            inp, options["input_names"] = const.numpy(), list(meta.constant_field_names)
        else:
            inp = None
        options["coords"] = dict(zip(meta.spatial_dims, grid_axes(sample["grid"].numpy())))
        options["title"] = f"{meta.dataset_name}: test trajectory {int(sample['trajectory'])}"
        plots.plot_prediction(inp, truth, pred, list(meta.field_names), run.plot_path("prediction.png"), **options)
        if "rollout" in metrics["test"]:
            roll = metrics["test"]["rollout"]
            plots.plot_rollout_error(roll, roll["dt"], run.plot_path("rollout_error.png"))

    # -- a trained run, in physical units (pdeforge.load_run) --------------------------------------------------
    @classmethod
    def physical_dataset(
        cls, config: OperatorConfig, split: str, root: str | Path | None = None
    ) -> torch.utils.data.Dataset:
        """The samples the run is evaluated on (its task's windows of ``split``), in physical units, from the run's
        own dataset root or ``root``."""
        data = config.data if root is None else dataclasses.replace(config.data, root=str(root))
        return make_task(config.task).dataset(Views(dataset_root(data, where="load_run", progress=False)), split)

    @classmethod
    @torch.no_grad()
    def predict_physical(
        cls, model: FieldOperator, config: OperatorConfig, envelope: Mapping[str, Any], batch: Mapping[str, Any]
    ) -> torch.Tensor:
        """``model`` on a batch of physical samples (``input_fields (B, T_in, C, *space)``, ``constant_fields``,
        ``scalars``): normalised with the run's statistics, then denormalised; ``(B, T_out, C, *space)`` in physical
        units, on the model's device."""
        meta = DatasetMetadata.from_dict(envelope["metadata"])
        kind = config.data.normalization or None
        fields, constants = _normalizers(run_statistics(config, envelope), meta, kind) if kind else (None, None)
        weight = next(p for p in model.parameters() if p.is_floating_point())
        x = {
            k: batch[k].to(weight.device, weight.dtype)
            for k in ("input_fields", "constant_fields", "scalars")
            if k in batch
        }
        n = meta.n_spatial_dims
        if fields is not None and "input_fields" in x:
            x["input_fields"] = fields.normalize(x["input_fields"], n)
        if constants is not None and "constant_fields" in x:
            x["constant_fields"] = constants.normalize(x["constant_fields"], n)
        out = model.forward_batch(x).float()
        return fields.denormalize(out, n) if fields is not None else out

    def summary(self, metrics: Mapping[str, Any]) -> str:
        t = metrics["test"]
        line = (
            f"test rel L2 {t['rel_l2']:.4g}  nRMSE {t['nrmse']:.4g}  VRMSE {t['vrmse']:.4g}  "
            f"({t['n_samples']} windows; best step {metrics['best_step']})"
        )
        if "rollout" in t:
            line += f"; rollout rel L2 mean {t['rollout']['rel_l2_mean']:.4g} over {t['rollout']['steps']} steps"
        return line


def run_statistics(config: OperatorConfig, envelope: Mapping[str, Any]) -> dict | None:
    """The normalisation statistics a run was trained with (``model.json``'s ``stats``, fitted on its train split);
    None without normalisation."""
    stats = envelope.get("stats")
    if config.data.normalization and not stats:
        raise ValueError(
            f"model.json: no normalisation statistics ('stats') for data.normalization {config.data.normalization}; "
            "expected the run folder of a training with normalisation (retrain it)"
        )
    return stats if config.data.normalization else None


def grid_axes(grid: Any) -> list[Any]:
    """The 1D coordinates of each axis of a meshgrid ``(n_dims, *space)`` (ij indexing): ``[x, y, ...]``."""
    n = grid.shape[0]
    return [grid[i][tuple(slice(None) if j == i else 0 for j in range(n))] for i in range(n)]


def _field_groups(channels: Sequence[str], dims: Sequence[str], known: Collection[str]) -> tuple[list[str], list[int]]:
    """The fields behind flattened channel names, with their channel counts (``velocity_x, velocity_y`` in 2D ->
    ``velocity``, 2): the inverse of TrajectoryDataset's flattening, resolved by the names in the statistics."""
    names, counts, i = [], [], 0
    while i < len(channels):
        for order in (2, 1, 0):
            comps = [""]
            for _ in range(order):
                comps = [c + d for c in comps for d in dims]
            core = channels[i] if order == 0 else channels[i].rsplit("_", 1)[0]
            if core in known and list(channels[i : i + len(comps)]) == [f"{core}_{c}" if c else core for c in comps]:
                names.append(core)
                counts.append(len(comps))
                i += len(comps)
                break
        else:
            raise ValueError(
                f"model.json: channel {channels[i]!r} has no normalisation statistics (they list {sorted(known)})"
            )
    return names, counts


def _normalizers(stats: dict, meta: DatasetMetadata, kind: str) -> tuple[Normalizer, Normalizer | None]:
    """The normalisers of the time-varying and the constant fields of ``meta``, as a TrajectoryDataset with
    ``normalization=kind, stats=stats`` builds them."""
    known = stats["mean"]
    out = []
    for channels in (meta.field_names, meta.constant_field_names):
        names, counts = _field_groups(channels, meta.spatial_dims, known)
        out.append(Normalizer(stats, kind, names, counts) if names else None)
    return out[0], out[1]
