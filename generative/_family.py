"""The generative next-step family: a conditional diffusion / flow-matching model, or PDE-Refiner, of the next
frame(s) given the previous ones, trained on a dataset root through the run skeleton.

    pdeforge train configs/diffusion_ks.yaml        # DPM-Solver++ 2M sampling of a noise-prediction U-Net
    pdeforge train configs/pde_refiner_ks.yaml      # PDE-Refiner, K = 3
    pdeforge evaluate runs/diffusion_ks             # one-step and rollout metrics of one draw, and the ensemble's

The data path is the field-operator family's: a dataset root (or a preset generated once), normalised with
statistics of its train split, windows of :class:`~pdeforge.tasks.NextStepTask`; rollouts go through
:func:`pdeforge.tasks.rollout` (the model draws one sample per step), so every number is computed as for the
deterministic models, in physical units. The probabilistic metrics come from ``eval.n_samples`` independent
rollouts per trajectory (an ensemble): CRPS, spread-skill ratio, rank histogram, energy score, and the
high-correlation duration of the members and of the ensemble mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .. import metrics as M
from .. import plots
from ..datasets import load_stats, stats_path
from ..operators._unet import UNetConfig
from ..tasks import NextStepTask, Views, rollout, rollout_metrics, split_metrics, to_device
from ..training.config import DataSection, OptimSection, RunSection, option, section
from ..training.data import dataset_root
from ..training.loop import AbstractFamily, Environment
from ._models import OBJECTIVES, SCHEDULES, ConditionalUNet, ConditionalUNetConfig, DiffusionMethod, GenerativeNextStep
from ._refiner import RefinerMethod

__all__ = [
    "GenerativeFamily",
    "GenerativeRunConfig",
    "build_from_spec",
    "method_of",
    "ensemble_rollouts",
    "ensemble_metrics",
]


# ------------------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------------------
@dataclass
class GenerativeData(DataSection):
    """The dataset root (or preset) and how its fields are normalised."""

    normalization: str = option(
        "zscore", "per-channel normalisation fitted on the train split only ('': none)", choices=("zscore", "rms", "")
    )
    max_train_trajectories: int = option(0, "use only the first N training trajectories (0: all)", min=0)
    num_workers: int = option(0, "DataLoader worker processes", min=0, resume_safe=True)


@dataclass
class GenerativeTask:
    """The next-step task (:class:`~pdeforge.tasks.NextStepTask`): frames in, frames drawn per model call."""

    n_steps_input: int = option(1, "conditioning frames", min=1)
    n_steps_output: int = option(1, "frames drawn per model call", min=1)
    dt_stride: int = option(1, "snapshots between frames", min=1)
    rollout_steps: int = option(0, "frames of the rollout evaluation (0: whole trajectories)", min=0)


@dataclass
class GenerativeModel:
    """The network and how it is trained: diffusion (or flow matching), or PDE-Refiner."""

    method: str = option(
        "diffusion", "diffusion (the diffusion section) | refiner (PDE-Refiner)", choices=("diffusion", "refiner")
    )
    unet: dict = option(
        {}, "the U-Net's sizes (UNetConfig keys; {}: init_features 16, n_stages 3, layer_scale_init 0.1)"
    )
    time_dim: int = option(64, "width of the time embedding", min=2)
    use_grid: bool = option(False, "grid coordinates in [0, 1] as extra conditioning channels")


@dataclass
class DiffusionSection:
    """Diffusion / flow matching (model.method diffusion)."""

    objective: str = option(
        "noise", "noise (eps-prediction) | v (v-prediction) | flow (flow matching)", choices=OBJECTIVES
    )
    schedule: str = option("vp_linear", "vp_linear | vp_cosine | flow (with objective flow)", choices=SCHEDULES)
    sampler: str = option(
        "dpm_solver++2m", "the sampler (pdeforge.generative.METHODS; flow: euler | heun)", resume_safe=True
    )
    steps: int = option(20, "sampler steps", min=1, resume_safe=True)
    t_min: float = option(1e-3, "smallest training time of a VP schedule", positive=True)


@dataclass
class RefinerSection:
    """PDE-Refiner (model.method refiner; Lippe et al. 2023)."""

    refiner_steps: int = option(3, "K, denoising refinement steps after the one-step prediction (0: MSE model)", min=0)
    min_noise_std: float = option(
        4e-7, "sigma_min, the noise std of the last refinement step (paper, KS: 4e-7)", positive=True
    )


@dataclass
class EvalSection:
    """The evaluation: members drawn per trajectory, and how much of the split."""

    n_samples: int = option(4, "ensemble members (independent rollouts) per trajectory", min=2, resume_safe=True)
    max_trajectories: int = option(8, "trajectories of a split evaluated (0: all)", min=0, resume_safe=True)
    valid_batches: int = option(8, "batches of valid windows for the selection loss", min=1, resume_safe=True)
    batch_size: int = option(8, "trajectories per rollout batch", min=1, resume_safe=True)
    seed: int = option(
        1234, "seed of the evaluation's noise (the same draws for every evaluation)", min=0, resume_safe=True
    )


@dataclass
class GenerativeRunConfig:
    """A conditional generative next-step model (diffusion, flow matching, PDE-Refiner) on a dataset root."""

    family: str = option("generative", "the model family", choices=("generative",))
    run: RunSection = section(RunSection, "where the run writes, how it starts and is saved")
    data: GenerativeData = section(
        lambda: GenerativeData(preset="ks_1d", preset_options={"n_trajectories": 64}), "the data"
    )
    task: GenerativeTask = section(GenerativeTask, "what the model draws")
    model: GenerativeModel = section(GenerativeModel, "the network")
    diffusion: DiffusionSection = section(DiffusionSection, "diffusion / flow matching (model.method diffusion)")
    refiner: RefinerSection = section(RefinerSection, "PDE-Refiner (model.method refiner)")
    eval: EvalSection = section(EvalSection, "the probabilistic evaluation")
    optim: OptimSection = section(
        lambda: OptimSection(steps=2000, batch_size=32, lr=1e-3, warmup=0.02, grad_clip=1.0), "the optimiser (AdamW)"
    )


# ------------------------------------------------------------------------------------------------------------
# the model from its spec
# ------------------------------------------------------------------------------------------------------------
def _method(spec: Mapping[str, Any]) -> DiffusionMethod | RefinerMethod:
    kind, args = spec["kind"], {k: v for k, v in spec.items() if k != "kind"}
    if kind == "diffusion":
        return DiffusionMethod(**args)
    if kind == "refiner":
        return RefinerMethod(**args)
    raise ValueError(f"model spec: method kind {kind!r}: expected diffusion or refiner")


def _method_spec(method: DiffusionMethod | RefinerMethod) -> dict[str, Any]:
    return {"kind": "diffusion" if isinstance(method, DiffusionMethod) else "refiner", **asdict(method)}


def build_from_spec(spec: Mapping[str, Any]) -> GenerativeNextStep:
    """A freshly initialised :class:`GenerativeNextStep` from its ``model_spec`` (load the weights after)."""
    missing = {"network", "method", "n_fields", "n_steps_input", "n_steps_output", "use_grid", "periodic"} - set(spec)
    if missing:
        raise ValueError(f"model spec lacks {sorted(missing)}; expected the dict stored as model_spec by this family")
    config = ConditionalUNetConfig.from_dict(spec["network"])
    n_dims = len(spec["periodic"])
    x_channels = spec["n_steps_output"] * spec["n_fields"]
    cond_channels = spec["n_steps_input"] * spec["n_fields"] + (n_dims if spec["use_grid"] else 0)
    net = ConditionalUNet(config, x_channels, cond_channels, tuple(bool(p) for p in spec["periodic"]))
    return GenerativeNextStep(
        net,
        _method(spec["method"]),
        n_fields=spec["n_fields"],
        n_steps_input=spec["n_steps_input"],
        n_steps_output=spec["n_steps_output"],
        use_grid=bool(spec["use_grid"]),
        spec=dict(spec),
    )


def method_of(config: GenerativeRunConfig) -> DiffusionMethod | RefinerMethod:
    """The training / sampling method a config describes (a bad combination is a one-line ValueError)."""
    if config.model.method == "refiner":
        r = config.refiner
        return RefinerMethod(r.refiner_steps, r.min_noise_std)
    d = config.diffusion
    method = DiffusionMethod(d.objective, d.schedule, d.sampler, d.steps, d.t_min)
    from . import FLOW_METHODS, METHODS

    if d.sampler not in METHODS:
        raise ValueError(f"diffusion.sampler {d.sampler!r}: expected one of {', '.join(METHODS)}")
    if d.sampler in FLOW_METHODS and d.schedule != "flow":
        raise ValueError(f"diffusion.sampler {d.sampler}: samples a flow (diffusion.schedule flow, objective flow)")
    return method


# ------------------------------------------------------------------------------------------------------------
# probabilistic evaluation
# ------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def ensemble_rollouts(
    model: nn.Module, dataset: Any, device: torch.device, n_members: int, max_steps: int | None, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_members`` autoregressive rollouts of every trajectory of a full-trajectory dataset, through
    :func:`pdeforge.tasks.rollout`: ``(members (N, M, T, C, *space), truth (N, T, C, *space))`` in physical units."""
    model.eval()
    preds, truths = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = to_device(batch, device)
        target = batch["output_fields"]
        n = target.shape[1] if max_steps is None else min(max_steps, target.shape[1])
        b = target.shape[0]
        rep = {k: v.repeat_interleave(n_members, 0) for k, v in batch.items()}
        pred = rollout(model, rep, n)
        preds.append(dataset.denormalize(pred).reshape(b, n_members, *pred.shape[1:]).cpu())
        truths.append(dataset.denormalize(target[:, :n]).cpu())
    return torch.cat(preds), torch.cat(truths)


def ensemble_metrics(members: torch.Tensor, truth: torch.Tensor, n_spatial_dims: int, dt: float) -> dict[str, Any]:
    """The probabilistic metrics of ``members (N, M, T, C, *space)`` against ``truth (N, T, C, *space)``: CRPS
    (fair, mean over everything, and per step), spread-skill ratio, rank histogram (frequencies of the truth's rank
    among the members, M + 1 bins), energy score (fair; one vector per trajectory: its whole rollout, mean over
    trajectories), and the high-correlation duration (correlation >= 0.8) of the members (mean and std over members
    and trajectories) and of the ensemble mean; ``dt`` is the time between predicted frames."""
    crps = M.crps_ensemble(members, truth, member_dim=1, reduction="none")  # (N, T, C, *space)
    per_step = crps.transpose(0, 1).flatten(1).mean(1)
    n, m = members.shape[:2]
    hcd_members = M.high_correlation_duration(
        members.flatten(0, 1), truth.repeat_interleave(m, 0), n_spatial_dims, dt=dt, reduction="sample"
    )
    hcd_mean = M.high_correlation_duration(members.mean(1), truth, n_spatial_dims, dt=dt, reduction="sample")
    ties = torch.Generator().manual_seed(0)  # the rank histogram's draws among tied members: fixed
    hist = M.rank_histogram(members, truth, member_dim=1, generator=ties).double()
    out = {
        "crps": float(crps.mean()),
        "crps_per_step": [float(x) for x in per_step],
        "spread_skill": float(M.spread_skill_ratio(members, truth, member_dim=1)),
        "rank_histogram": [float(x) for x in hist / hist.sum()],
        "energy_score": float(M.energy_score(members, truth, member_dim=1)),
        "high_correlation_duration_members": float(hcd_members.mean()),
        "high_correlation_duration_members_std": float(hcd_members.std()) if hcd_members.numel() > 1 else 0.0,
        "high_correlation_duration_ensemble_mean": float(hcd_mean.mean()),
        "n_trajectories": int(n),
        "n_samples": int(m),
        "steps": int(truth.shape[1]),
        "dt": float(dt),
    }
    return out


# ------------------------------------------------------------------------------------------------------------
# the family
# ------------------------------------------------------------------------------------------------------------
class GenerativeFamily(AbstractFamily):
    """A conditional generative next-step model on a dataset root; selection by the objective on valid windows."""

    name = "generative"
    config_class = GenerativeRunConfig

    def __init__(self, config: GenerativeRunConfig, env: Environment) -> None:
        super().__init__(config, env)
        t = config.task
        self.task = NextStepTask(t.n_steps_input, t.n_steps_output, t.dt_stride, 1, t.rollout_steps)
        self.method = method_of(config)  # a bad sampler / objective said before any data is made
        self._restored, self._run_stats = False, None

    # -- data and model -------------------------------------------------------------------------------------
    def restore(self, envelope: Mapping[str, Any]) -> None:
        """The run's own normalisation (fitted on its train split), whatever dataset root it is evaluated on."""
        stats = envelope.get("stats")
        if self.config.data.normalization and not stats:
            raise ValueError("model.json: no normalisation statistics ('stats'); expected a run trained with them")
        self._restored, self._run_stats = True, stats if self.config.data.normalization else None

    def prepare(self) -> None:
        cfg = self.config
        self.root = dataset_root(cfg.data, where="generative", progress=cfg.run.progress, env=self.env)
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

    def build_model(self) -> GenerativeNextStep:
        cfg, meta = self.config, self.metadata
        unet = {"init_features": 16, "n_stages": 3, "layer_scale_init": 0.1, **cfg.model.unet}
        try:
            network = ConditionalUNetConfig(UNetConfig(**unet), cfg.model.time_dim).to_dict()
        except TypeError as e:
            raise ValueError(f"--model.unet: {e}; expected keys of {sorted(UNetConfig.__dataclass_fields__)}") from None
        spec = {
            "network": network,
            "method": _method_spec(self.method),
            "n_fields": meta.n_fields,
            "n_steps_input": cfg.task.n_steps_input,
            "n_steps_output": cfg.task.n_steps_output,
            "use_grid": cfg.model.use_grid,
            "periodic": [bc == "periodic" for bc in meta.boundary_conditions],
            "resolution": [int(s) for s in meta.resolution],
        }
        self.model = build_from_spec(spec)
        self.model.net.unet.check_size(tuple(meta.resolution))
        return self.model

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
        loader = DataLoader(
            self.train_ds,
            batch_size=bs,
            sampler=list(sampler)[start * bs :],
            drop_last=True,
            num_workers=self.config.data.num_workers,
        )
        for batch in loader:
            yield to_device(batch, env.device)

    def loss(self, net: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        cond = self.model.conditioning(batch["input_fields"])
        return self.method.loss(net, self.model.target(batch["output_fields"]), cond)

    # -- evaluation -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        """torch's global generator forked and seeded with ``eval.seed``: the same draws at every evaluation, and
        the training's random stream left as it was."""
        dev = self.env.device
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(self.config.eval.seed)
            yield

    @torch.no_grad()
    def validate(self, model: nn.Module) -> float:
        """The training objective on the first ``eval.valid_batches`` valid batches, with seeded noise."""
        model.eval()
        total, count = 0.0, 0
        with self._seeded():
            loader = DataLoader(self.valid_ds, batch_size=self.config.optim.batch_size, shuffle=False)
            for i, batch in enumerate(loader):
                if i >= self.config.eval.valid_batches:
                    break
                batch = to_device(batch, self.env.device)
                cond = model.conditioning(batch["input_fields"])
                total += float(model.method.loss(model, model.target(batch["output_fields"]), cond)) * len(cond)
                count += len(cond)
        return total / max(count, 1)

    def rollout_dataset(self, split: str) -> Any:
        """The full trajectories of ``split`` (the first ``eval.max_trajectories``), as the task rolls them out."""
        t = self.task
        n = self.config.eval.max_trajectories or None
        return self.views.open(
            split, n_steps_input=t.n_steps_input, dt_stride=t.dt_stride, full_trajectory=True, max_trajectories=n
        )

    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        """One draw: the one-step metrics of the task's windows and the rollout metrics (as the deterministic models
        report them); the ensemble of ``eval.n_samples`` rollouts: the probabilistic metrics (:func:`ensemble_metrics`).
        All of the first ``eval.max_trajectories`` trajectories of ``split``, in physical units."""
        ev, device = self.config.eval, self.env.device
        windows = self.task.dataset(self.views, split, max_trajectories=ev.max_trajectories or None)
        roll = self.rollout_dataset(split)
        steps = self.task.rollout_steps or None
        with self._seeded():
            out: dict[str, Any] = split_metrics(model, windows, device, batch_size=self.config.optim.batch_size)
            out["rollout"] = rollout_metrics(model, roll, device, max_steps=steps, batch_size=ev.batch_size)
            members, truth = ensemble_rollouts(model, roll, device, ev.n_samples, steps, ev.batch_size)
        dt = roll.metadata.dt * roll.dt_stride
        out["probabilistic"] = ensemble_metrics(members, truth, self.metadata.n_spatial_dims, dt)
        return out

    def envelope(self, model: nn.Module) -> dict[str, Any]:
        return {
            "model_spec": model.model_spec,
            "metadata": self.metadata.to_dict(),
            "stats": self.stats,
            "data_root": str(self.root),
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> GenerativeNextStep:
        return build_from_spec(envelope["model_spec"])

    def plots(self, model: nn.Module, run: Any, metrics: Mapping[str, Any]) -> None:
        plots.plot_losses(
            run.log,
            run.plot_path("loss.png"),
            loss_label="train loss: the objective (normalised units)",
            valid_label="valid objective (seeded noise; selects the weights)",
            ylabel="objective",
        )
        roll = metrics["test"].get("rollout")
        if roll:
            plots.plot_rollout_error(roll, roll["dt"], run.plot_path("rollout_error.png"))

    def summary(self, metrics: Mapping[str, Any]) -> str:
        t = metrics["test"]
        p = t["probabilistic"]
        return (
            f"test one draw: rel L2 {t['rel_l2']:.4g}; rollout rel L2 mean {t['rollout']['rel_l2_mean']:.4g}; "
            f"ensemble of {p['n_samples']}: CRPS {p['crps']:.4g}, spread-skill {p['spread_skill']:.3g}, "
            f"high-correlation time {p['high_correlation_duration_members']:.3g} (members), "
            f"{p['high_correlation_duration_ensemble_mean']:.3g} (mean)"
        )
