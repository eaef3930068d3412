"""NODA as the run skeleton sees it: data, model, the unrolled loss, the rollout evaluation, plots, rebuild.

The loss of one window (Singh et al., ICLR 2024, with a misfit term), over the ``unroll`` differentiated steps::

    mean_k ( |z_k^a - z_k|^2 + |z_k^f - z_k|^2 ) / |z_k|^2  +  misfit_weight * sum |m (E z_k^f - y_k)|^2 / sum |m y_k|^2

the first part averaged over the windows and steps, the misfit summed over the steps where a measurement arrived and
normalised by the measurements of the whole (global) batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ...datasets import DatasetMetadata, ObservationConfig, ObservationView, TrajectoryDataset
from ...training import AbstractFamily, Environment, RunFolder, dataset_root
from ._config import NODAConfig, NODARunConfig, check_config
from ._data import WindowSampler, open_windows
from ._eval import (
    baseline_errors,
    curve_table,
    load_baseline,
    plot_errors,
    plot_snapshot,
    rollout,
    rollout_errors,
    summary_line,
)
from ._model import NODA, build_noda

__all__ = ["NODAFamily"]


def _rel_sq(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over (batch, step) of ``|pred - target|^2 / |target|^2``; pred, target: (B, T, C, *space)."""
    dims = tuple(range(2, pred.ndim))
    return (((pred - target) ** 2).sum(dims) / (target**2).sum(dims).clamp_min(1e-12)).mean()


class NODAFamily(AbstractFamily):
    """NODA (:mod:`pdeforge.operators.noda`): config :class:`NODARunConfig`, model :class:`NODA`."""

    name = "noda"
    config_class = NODARunConfig

    def __init__(self, config: NODARunConfig, env: Environment) -> None:
        super().__init__(config, env)
        check_config(config)
        self._baseline: tuple[nn.Module, str] | None = None

    # -- data and model -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg, env = self.config, self.env
        self.root = dataset_root(cfg.data, where="noda", progress=cfg.run.progress, env=env)
        length = cfg.window.spinup + cfg.window.unroll + 1
        self.sampler = WindowSampler(
            open_windows(self.root, cfg.data, "train", length), cfg.observations, cfg.window, cfg.run.seed
        )
        self.metadata: DatasetMetadata = self.sampler.dataset.metadata

    def build_model(self) -> nn.Module:
        return build_noda(self.config.model, self.metadata)

    def steps_per_epoch(self) -> int:
        return len(self.sampler) // (self.config.optim.batch_size * self.env.world)

    def train_batches(self, epoch: int, start: int) -> Iterator[dict[str, Tensor]]:
        """Global batch ``k`` is positions ``[k B W, (k + 1) B W)`` of the epoch's order; this process takes its
        ``B`` of them (B: optim.batch_size, W: processes)."""
        bs, world, rank = self.config.optim.batch_size, self.env.world, self.env.rank
        order = self.sampler.order(epoch)
        for k in range(start, self.steps_per_epoch()):
            first = k * bs * world + rank * bs
            batch = self.sampler.batch(epoch, range(first, first + bs), order)
            yield {key: v.to(self.env.device) for key, v in batch.items()}

    def loss(self, net: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        W, U = self.config.window.spinup, self.config.window.unroll
        state, y, m, a = batch["start"], batch["observations"], batch["mask"], batch["arrived"]
        if W:
            with torch.no_grad():
                state = net(state, W, y[:, :W], m, a[:, :W])["analysis"][:, -1]
        out = net(state, U, y[:, W:], m, a[:, W:])
        truth = batch["truth"][:, W:]
        loss = _rel_sq(out["analysis"], truth) + _rel_sq(out["forecast"], truth)
        model = getattr(net, "module", net)  # the NODA inside DDP
        if self.config.window.misfit_weight:
            f, yy = out["forecast"], y[:, W:]
            arrived = a[:, W:].to(f.dtype).reshape(*a[:, W:].shape, *(1,) * (f.ndim - 2))
            measured = model.measurement(f.flatten(0, 1)).reshape(f.shape)
            num = ((m[:, None] * (measured - yy)) ** 2 * arrived).sum()
            den = (yy**2).sum().detach()  # zero where nothing arrived: the measurements of the batch
            if self.env.world > 1:  # normalised by the global batch's measurements, as one process would
                import torch.distributed as dist

                dist.all_reduce(den)
                num = num * self.env.world  # DDP averages the gradients of the processes
            loss = loss + self.config.window.misfit_weight * num / den.clamp_min(1e-12)
        # a batch without measurements leaves the gain out of the graph, and DDP needs every parameter in each
        # backward: a zero-weighted term keeps them in (their gradient is 0, as it is in one process)
        return loss + 0.0 * sum((torch.view_as_real(p) if p.is_complex() else p).sum() for p in model.parameters())

    # -- evaluation -----------------------------------------------------------------------------------------
    def _split(self, split: str) -> TrajectoryDataset:
        return TrajectoryDataset(self.root, 1, 1, self.config.data.dt_stride, split=split)

    def _view(self, ds: TrajectoryDataset, alpha: float) -> ObservationView:
        obs, ev = self.config.observations, self.config.eval
        n_frames = min(ev.horizon + 1, len(range(0, ds.n_steps, ds.dt_stride))) if ev.horizon else None
        return ObservationView(
            ds,
            config=ObservationConfig(
                alpha=float(alpha), mask=obs.mask, fraction=obs.fraction, noise=obs.noise, seed=ev.seed
            ),
            n_frames=n_frames,
        )

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        ev = self.config.eval
        ds = self._split(split)
        curves = {}
        for alpha in ev.alphas:
            curves[f"noda_alpha_{alpha:g}"] = rollout_errors(model, self._view(ds, alpha), batch_size=ev.batch_size)
        horizon = len(next(iter(curves.values())))
        if ev.baseline_run:
            if self._baseline is None:
                self._baseline = load_baseline(ev.baseline_run, self.metadata, next(model.parameters()).device)
            curves["baseline"] = baseline_errors(*self._baseline, ds, horizon, ev.batch_size)
        table, tail = curve_table(curves, ev.long_fraction)
        return {
            "table": table,
            "horizon_steps": horizon,
            "dt": self.metadata.dt,
            "long_horizon_steps": tail,
            "curves": {k: [float(x) for x in v] for k, v in curves.items()},
            "n_trajectories": len(ds.trajectories),
        }

    def plots(self, model: nn.Module, run: RunFolder, metrics: Mapping[str, Any]) -> None:
        from ...plots import plot_losses

        plot_losses(
            run.log,
            run.plot_path("loss.png"),
            loss_label="train loss: squared rel L2 of the analysis + of the forecast",
            ylabel="squared rel L2 (analysis + forecast)",
        )
        plot_errors(metrics["test"]["curves"], self.metadata.dt, run.plot_path("error_vs_time.png"))
        ds = self._split("test")
        lo, hi = min(self.config.eval.alphas), max(self.config.eval.alphas)
        views = {alpha: self._view(ds, alpha) for alpha in (lo, hi)}
        horizon = len(views[lo].frames) - 1
        free, assimilated = (rollout(model, views[a], [0], horizon) for a in (lo, hi))
        plot_snapshot(
            [
                ("truth", free["truth"][0]),
                (f"NODA alpha={lo:g}", free["analysis"][0]),
                (f"NODA alpha={hi:g}", assimilated["analysis"][0]),
            ],
            self.metadata,
            run.plot_path("snapshot.png"),
        )

    def summary(self, metrics: Mapping[str, Any]) -> str:
        return summary_line(metrics)

    # -- the run folder's model -----------------------------------------------------------------------------
    def envelope(self, model: nn.Module) -> dict[str, Any]:
        return {"model_spec": model.model_spec["config"], "metadata": model.model_spec["metadata"], "stats": None}

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> NODA:
        return build_noda(NODAConfig.from_dict(envelope["model_spec"]), DatasetMetadata.from_dict(envelope["metadata"]))
