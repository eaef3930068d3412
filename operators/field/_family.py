"""The field-operator family: an FNO / TFNO / UNO / U-Net trained on a dataset root through the run skeleton."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ... import metrics as M
from ... import plots
from ..._device import compile_problem
from ...checkpoint import load_any_weights
from ...datasets import load_stats
from ...tasks import AbstractTask, NextStepTask, OperatorTask, Views, split_metrics, to_device
from ...training.data import dataset_root
from ...training.loop import AbstractFamily, Environment, init_matching
from .._build import FieldOperator, build_from_spec, build_model, config_from_dict
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
    """FNO, TFNO, UNO or U-Net on a dataset root, for a task (operator map or next step); best-by-valid weights."""

    name = "operator"
    config_class = OperatorConfig

    def __init__(self, config: OperatorConfig, env: Environment) -> None:
        super().__init__(config, env)
        self.task = make_task(config.task)
        if config.model.compile and (problem := compile_problem(env.device)):
            raise ValueError(f"--model.compile: {problem}; install it or set model.compile false")
        self._compiled: tuple[nn.Module, nn.Module] | None = None

    # -- data and model -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg, env = self.config, self.env
        self.root = dataset_root(cfg.data, where="operator", progress=cfg.run.progress, env=env)
        self.stats = load_stats(self.root / "stats.yaml") if cfg.data.normalization else None
        self.views = Views(self.root, cfg.data.normalization or None, self.stats)
        self.train_ds = self.task.dataset(
            self.views, "train", training=True, max_trajectories=cfg.data.max_train_trajectories
        )
        self.valid_ds = self.task.dataset(self.views, "valid")
        self.metadata = self.train_ds.metadata

    def build_model(self) -> FieldOperator:
        m = self.config.model
        args = m.args or dict(DEFAULT_ARGS.get(m.name, {}))
        try:
            model_config = config_from_dict(m.name, args)
        except ValueError as e:
            raise ValueError(f"--model.args: {e}") from None
        n_in, n_out = self.task.frames(self.train_ds)
        self.model = build_model(
            model_config, self.metadata, n_steps_input=n_in, n_steps_output=n_out, use_grid=m.use_grid
        )
        return self.model

    def init_from(self, model: nn.Module, source: str) -> str:
        report = init_matching(model, load_any_weights(source), tuple(self.config.model.reinit))
        return f"{report['loaded']} tensors loaded, re-initialised {report['reinitialised']}"

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """One group per ``model.lr_groups`` prefix (first match wins), then the rest at ``optim.lr``."""
        prefixes = self.config.model.lr_groups
        buckets: dict[str, list] = {p: [] for p in prefixes}
        rest = []
        for name, p in model.named_parameters():
            prefix = next((q for q in prefixes if name.startswith(q)), None)
            (buckets[prefix] if prefix is not None else rest).append(p)
        empty = [q for q, ps in buckets.items() if not ps]
        if empty:
            names = sorted({n.rsplit(".", 2)[0] for n, _ in model.named_parameters()})[:12]
            raise ValueError(
                f"model.lr_groups: prefixes {empty} match no parameter; parameter names start like {names}"
            )
        groups = [{"params": ps, "lr": float(prefixes[q]), "name": q} for q, ps in buckets.items()]
        return groups + ([{"params": rest, "name": "rest"}] if rest else [])

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
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> FieldOperator:
        return build_from_spec(envelope["model_spec"])

    def plots(self, model: nn.Module, run, metrics: Mapping[str, Any]) -> None:
        plots.plot_losses(run.log, run.plot_path("loss.png"))
        test_ds = self.task.dataset(self.views, "test")
        sample = test_ds[0]
        with torch.no_grad():
            one = {k: v[None].to(self.env.device) for k, v in sample.items()}
            pred = test_ds.denormalize(model.forward_batch(one)[0, 0].float()).cpu().numpy()
        truth = test_ds.denormalize(sample["output_fields"][0]).numpy()
        if sample["input_fields"].shape[0]:
            inp = test_ds.denormalize(sample["input_fields"][-1]).numpy()
        else:
            inp = sample["constant_fields"].numpy() if "constant_fields" in sample else None
        plots.plot_prediction(inp, truth, pred, list(self.metadata.field_names), run.plot_path("prediction.png"))
        if "rollout" in metrics["test"]:
            roll = metrics["test"]["rollout"]
            plots.plot_rollout_error(roll, roll["dt"], run.plot_path("rollout_error.png"))

    def summary(self, metrics: Mapping[str, Any]) -> str:
        t = metrics["test"]
        line = (
            f"test rel L2 {t['rel_l2']:.4g}  nRMSE {t['nrmse']:.4g}  VRMSE {t['vrmse']:.4g}  "
            f"({t['n_samples']} windows; best step {metrics['best_step']})"
        )
        if "rollout" in t:
            line += f"; rollout rel L2 mean {t['rollout']['rel_l2_mean']:.4g} over {t['rollout']['steps']} steps"
        return line
