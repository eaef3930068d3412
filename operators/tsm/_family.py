"""TSM / LI as the run skeleton sees it: data from a dataset root (the ``kolmogorov_fv_2d`` preset), the learned
solver, the unrolled loss, the correlation evaluation and its plots.

Training (as the papers): encode the history, unroll ``data.unroll`` solver steps, mean squared velocity error
through the solver divided by the train split's velocity variance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..._device import compile_problem
from ...solvers import fv
from ...training.data import dataset_root
from ...training.loop import AbstractFamily
from ...training.run_folder import RunFolder
from ._config import TSMRunConfig
from ._data import WindowSampler, data_fingerprint, flow_of, split_trajectories, train_moments, training_windows
from ._evaluate import correlation_plot, score, snapshot_plot, vorticity_rollout
from ._models import AbstractStencilModel, CNNConfig, CoarseSolver, LearnedInterpolation, TemporalStencil

__all__ = ["TSMFamily", "build_stencil_model", "model_name"]


def build_stencil_model(spec: Mapping[str, Any]) -> AbstractStencilModel:
    """The learned solver of a model spec: the ``model`` section's options plus the data's ``resolution``, solver
    ``dt``, ``reynolds``, ``drag`` and the ``velocity_scale`` of the train split."""
    common = dict(
        grid=fv.StaggeredGrid(spec["resolution"]),
        flow=flow_of(spec),
        dt=spec["dt"],
        velocity_scale=spec["velocity_scale"],
        order=spec["order"],
    )
    cnn = CNNConfig(spec["layers"], spec["channels"])
    if spec["variant"] == "li":
        return LearnedInterpolation(**common, cnn=cnn, calls=spec["li_calls"])
    return TemporalStencil(
        **common,
        cnn=cnn,
        history=spec["history"],
        encoder=spec["encoder"],
        hippo_order=spec["hippo_order"],
        bundle=spec["bundle"],
        memory=spec["memory"],
    )


def model_name(spec: Mapping[str, Any]) -> str:
    """``li``, ``tsm-hippo``, ``tsm-frames`` or ``tsm-hippo-running``: how plots and summaries name the model."""
    if spec["variant"] == "li":
        return "li" if spec["li_calls"] == "step" else "li-stage"
    return f"tsm-{spec['encoder']}" + ("-running" if spec["memory"] == "running" else "")


class TSMFamily(AbstractFamily):
    """Temporal stencil modelling and learned interpolation inside the FV Navier-Stokes solver."""

    name = "tsm"
    config_class = TSMRunConfig

    # -- data and model -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg, env = self.config, self.env
        m, d = cfg.model, cfg.data
        if m.compile and (problem := compile_problem(env.device)):
            raise ValueError(f"tsm: model.compile true: {problem}; install it or set model.compile false")
        self.root = dataset_root(d, where="tsm", progress=cfg.run.progress, env=env)
        self.windows = training_windows(self.root, m.history, d.unroll, d.stride, d.max_trajectories)
        meta = self.windows.metadata
        if meta.field_names != ("velocity_x", "velocity_y") or len(set(meta.resolution)) != 1:
            raise ValueError(
                f"tsm: data {self.root}: expected the staggered velocity (velocity_x, velocity_y) on a "
                f"square grid (the kolmogorov_fv_2d preset), found {meta.field_names} at "
                f"{meta.resolution}"
            )
        self.scale, self.variance = train_moments(self.root, d.stride, d.max_trajectories)
        self.spec = {
            **asdict(m),
            "resolution": meta.resolution[0],
            "dt": meta.dt,
            "reynolds": meta.parameters["reynolds"],
            "drag": meta.parameters["drag"],
            "velocity_scale": self.scale,
        }
        del self.spec["compile"]  # how the step runs, not what the model is
        self.sampler = WindowSampler(len(self.windows), cfg.optim.batch_size, cfg.run.seed, env.rank, env.world)
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._coarse: dict[str, dict[str, Any]] = {}
        self._step = None

    def build_model(self) -> nn.Module:
        return build_stencil_model(self.spec)

    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    def train_batches(self, epoch: int, start: int) -> Iterator[Any]:
        for idx in self.sampler.batches(epoch, start):
            samples = [self.windows[i] for i in idx]
            frames = torch.stack([s["input_fields"] for s in samples]).to(self.env.device)
            target = torch.stack([s["output_fields"] for s in samples]).to(self.env.device)
            yield frames, target

    def loss(self, net: nn.Module, batch: Any) -> torch.Tensor:
        frames, target = batch
        if self.config.model.compile and self._step is None:
            self._step = getattr(net, "module", net).compiled_step(frames.dtype, frames.device)
        pred = net(frames, target.shape[1], self._step)
        return ((pred - target) ** 2).mean() / self.variance

    # -- evaluation -----------------------------------------------------------------------------------------
    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (B, history, 2, N, N), targets (B, T, 2, N, N))`` of ``split``: every trajectory, every
        ``stride``-th frame (read once)."""
        if split not in self._splits:
            d = self.config.data
            self._splits[split] = split_trajectories(
                self.root, split, self.config.model.history, d.stride, d.max_trajectories
            )
        return self._splits[split]

    def coarse_score(self, split: str) -> dict[str, Any]:
        """The coarse solver's rollout of ``split`` (the same for every model of these data: made once)."""
        if split not in self._coarse:
            s = self.spec
            coarse = CoarseSolver(fv.StaggeredGrid(s["resolution"]), flow_of(s), s["dt"])
            self._coarse[split] = score(coarse, *self.split(split), self.config.eval.threshold)
        return self._coarse[split]

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        res = score(model, *self.split(split), self.config.eval.threshold)
        ref = self.coarse_score(split)
        return {
            "model": model_name(self.spec),
            "duration_mean": float(res["duration"].mean()),
            "duration_std": float(res["duration"].std(unbiased=False)),
            "duration_per_trajectory": res["duration"].tolist(),
            "coarse_duration_mean": float(ref["duration"].mean()),
            "coarse_duration_std": float(ref["duration"].std(unbiased=False)),
            "coarse_duration_per_trajectory": ref["duration"].tolist(),
            "correlation_curve": res["corr"].tolist(),
            "coarse_correlation_curve": ref["corr"].tolist(),
            "dt": self.spec["dt"],
            "threshold": self.config.eval.threshold,
        }

    def envelope(self, model: nn.Module) -> dict[str, Any]:
        return {
            "model_spec": dict(self.spec),
            "metadata": self.windows.metadata.to_dict(),
            "stats": {"velocity_std": self.scale, "velocity_variance": self.variance},
            "data_fingerprint": data_fingerprint(self.root),
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> nn.Module:
        return build_stencil_model(envelope["model_spec"])

    # -- plots and summary ------------------------------------------------------------------------------------
    def plots(self, model: nn.Module, run: RunFolder, metrics: Mapping[str, Any]) -> None:
        name, test = model_name(self.spec), metrics["test"]
        dt, threshold = self.spec["dt"], self.config.eval.threshold
        correlation_plot(
            {name: test["correlation_curve"], "coarse": test["coarse_correlation_curve"]},
            dt,
            threshold,
            run.plot_path("correlation_vs_time.png"),
        )
        inputs, targets = self.split("test")
        pred = score(model, inputs[:1], targets[:1], threshold)["pred"]
        coarse = self.coarse_score("test")["pred"][:1]
        k = min(targets.shape[1] - 1, int(round(2.0 / dt)))
        grid = fv.StaggeredGrid(self.spec["resolution"])
        res = self.spec["resolution"]
        snaps = {
            "reference": vorticity_rollout(targets[:1, k : k + 1], grid)[0, 0, 0],
            f"coarse {res}^2": vorticity_rollout(coarse[:, k : k + 1], grid)[0, 0, 0],
            name: vorticity_rollout(pred[:, k : k + 1], grid)[0, 0, 0],
        }
        snapshot_plot(snaps, (k + 1) * dt, run.plot_path("vorticity_snapshots.png"), length=grid.length)

    def summary(self, metrics: Mapping[str, Any]) -> str:
        t = metrics["test"]
        return (
            f"{t['model']}: high-correlation duration {t['duration_mean']:.3f} +- {t['duration_std']:.3f} "
            f"(coarse {t['coarse_duration_mean']:.3f} +- {t['coarse_duration_std']:.3f})"
        )
