"""The generative next-step family: a conditional diffusion / flow-matching model, or PDE-Refiner, of the next
frame(s) given the previous ones, trained on a dataset root through the run skeleton.

    pdeforge train configs/diffusion_ks.yaml        # DPM-Solver++ 2M sampling of a noise-prediction U-Net
    pdeforge train configs/pde_refiner_ks.yaml      # PDE-Refiner, K = 3
    pdeforge train configs/latent_autoencoder_ks.yaml   # a frame autoencoder (model.kind autoencoder), then
    pdeforge train configs/latent_diffusion_ks.yaml     # diffusion in its latent space (model.autoencoder RUN)
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
from dataclasses import asdict
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import metrics as M
from .. import plots
from ..datasets import load_stats, stats_path
from ..operators._unet import UNetConfig
from ..tasks import NextStepTask, Views, rollout, rollout_metrics, split_metrics, to_device, train_batches
from ..training.data import dataset_root
from ..training.loop import AbstractFamily, Environment
from ._config import GenerativeRunConfig
from ._latent import FrameAutoencoder, LatentNextStep, reconstruction_loss
from ._models import ConditionalUNet, ConditionalUNetConfig, DiffusionMethod, GenerativeNextStep
from ._refiner import RefinerMethod

__all__ = [
    "GenerativeFamily",
    "GenerativeRunConfig",
    "build_from_spec",
    "load_autoencoder",
    "method_of",
    "ensemble_rollouts",
    "ensemble_metrics",
]


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


def _network(spec: Mapping[str, Any], n_channels: int) -> ConditionalUNet:
    """The denoiser of a generator spec whose frames (or latents) have ``n_channels`` channels each."""
    config = ConditionalUNetConfig.from_dict(spec["network"])
    n_dims = len(spec["periodic"])
    x_channels = spec["n_steps_output"] * n_channels
    cond_channels = spec["n_steps_input"] * n_channels + (n_dims if spec["use_grid"] else 0)
    return ConditionalUNet(config, x_channels, cond_channels, tuple(bool(p) for p in spec["periodic"]))


def _autoencoder(spec: Mapping[str, Any]) -> FrameAutoencoder:
    missing = {"n_fields", "latent_channels", "stages", "width", "periodic"} - set(spec)
    if missing:
        raise ValueError(f"autoencoder spec lacks {sorted(missing)}; expected the dict stored as model_spec")
    periodic = tuple(bool(p) for p in spec["periodic"])
    return FrameAutoencoder(spec["n_fields"], spec["latent_channels"], spec["stages"], spec["width"], periodic)


def build_from_spec(spec: Mapping[str, Any]) -> GenerativeNextStep | LatentNextStep | FrameAutoencoder:
    """A freshly initialised model from its ``model_spec`` (load the weights after): a
    :class:`GenerativeNextStep`, a :class:`~pdeforge.generative._latent.LatentNextStep` (a spec with an
    ``autoencoder``), or a :class:`~pdeforge.generative._latent.FrameAutoencoder` (``kind: autoencoder``)."""
    if spec.get("kind") == "autoencoder":
        model = _autoencoder(spec)
        model.model_spec = dict(spec)
        return model
    missing = {"network", "method", "n_fields", "n_steps_input", "n_steps_output", "use_grid", "periodic"} - set(spec)
    if missing:
        raise ValueError(f"model spec lacks {sorted(missing)}; expected the dict stored as model_spec by this family")
    layout = {k: spec[k] for k in ("n_fields", "n_steps_input", "n_steps_output")}
    if spec.get("autoencoder"):
        ae = _autoencoder(spec["autoencoder"]["spec"])
        net = _network(spec, ae.latent_channels)
        return LatentNextStep(
            net,
            _method(spec["method"]),
            ae,
            latent_scale=spec["autoencoder"]["latent_scale"],
            use_grid=bool(spec["use_grid"]),
            spec=dict(spec),
            **layout,
        )
    net = _network(spec, spec["n_fields"])
    return GenerativeNextStep(net, _method(spec["method"]), use_grid=bool(spec["use_grid"]), spec=dict(spec), **layout)


def load_autoencoder(run_dir: str) -> tuple[FrameAutoencoder, dict[str, Any]]:
    """The frozen autoencoder of a ``model.kind autoencoder`` run folder and its ``model.json`` envelope; anything
    else (no run, another family or kind, weights that do not fit) is a one-line ValueError."""
    from ..checkpoint import load_weights
    from ..training.run_folder import read_envelope

    where = f"model.autoencoder {run_dir}"
    try:
        envelope = read_envelope(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{where}: {str(e).splitlines()[0]}; expected a run of model.kind autoencoder") from None
    spec = envelope.get("model_spec") or {}
    if envelope.get("family") != "generative" or spec.get("kind") != "autoencoder":
        raise ValueError(
            f"{where}: a {envelope.get('family')} run of kind {spec.get('kind', 'generator')}; expected a generative "
            "run of model.kind autoencoder"
        )
    model = _autoencoder(spec)
    weights = load_weights(f"{run_dir}/model.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ValueError(f"{where}: the weights do not fit its model.json: {str(e).splitlines()[0]}") from None
    return model.requires_grad_(False).eval(), envelope


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
    """A conditional generative next-step model on a dataset root (on its fields, or in the latent space of a frame
    autoencoder run: ``model.autoencoder``), or that frame autoencoder itself (``model.kind autoencoder``: the
    reconstruction of every frame of the task's windows); selection by the objective on valid windows."""

    name = "generative"
    config_class = GenerativeRunConfig

    def __init__(self, config: GenerativeRunConfig, env: Environment) -> None:
        super().__init__(config, env)
        t = config.task
        self.task = NextStepTask(t.n_steps_input, t.n_steps_output, t.dt_stride, 1, t.rollout_steps)
        model = config.model
        if model.kind == "autoencoder" and model.autoencoder:
            raise ValueError(
                f"model.autoencoder {model.autoencoder}: set with model.kind autoencoder; expected it only on a "
                "generator (model.kind generator) that works in that autoencoder's latent space"
            )
        # a bad sampler / objective said before any data is made
        self.method = None if model.kind == "autoencoder" else method_of(config)
        self._restored, self._run_stats = False, None
        self._autoencoder: tuple[FrameAutoencoder, dict[str, Any]] | None = None

    @property
    def is_autoencoder(self) -> bool:
        return self.method is None

    # -- data and model -------------------------------------------------------------------------------------
    def restore(self, envelope: Mapping[str, Any]) -> None:
        """The run's own normalisation (fitted on its train split), whatever dataset root it is evaluated on."""
        stats = envelope.get("stats")
        if self.config.data.normalization and not stats:
            raise ValueError("model.json: no normalisation statistics ('stats'); expected a run trained with them")
        self._restored, self._run_stats = True, stats if self.config.data.normalization else None

    def prepare(self) -> None:
        cfg = self.config
        if cfg.model.autoencoder and not self._restored:  # a bad autoencoder run said before any data is made
            self._autoencoder = load_autoencoder(cfg.model.autoencoder)
            theirs = self._autoencoder[1]["config"]["data"].get("normalization", "")
            if theirs != cfg.data.normalization:
                raise ValueError(
                    f"model.autoencoder {cfg.model.autoencoder}: trained with data.normalization {theirs!r}, this run "
                    f"has {cfg.data.normalization!r}; expected the same normalisation"
                )
        self.root = dataset_root(cfg.data, where="generative", progress=cfg.run.progress, env=self.env)
        if self._restored:
            self.stats = self._run_stats
        elif self._autoencoder is not None:  # the frames the autoencoder was trained on: its own statistics
            self.stats = self._autoencoder[1].get("stats") if cfg.data.normalization else None
        else:
            self.stats = load_stats(stats_path(self.root)) if cfg.data.normalization else None
        self.views = Views(self.root, cfg.data.normalization or None, self.stats)
        self.train_ds = self.task.dataset(
            self.views, "train", training=True, max_trajectories=cfg.data.max_train_trajectories
        )
        self.valid_ds = self.task.dataset(self.views, "valid")
        self.metadata = self.train_ds.metadata

    def build_model(self) -> GenerativeNextStep | LatentNextStep | FrameAutoencoder:
        cfg, meta = self.config, self.metadata
        periodic = [bc == "periodic" for bc in meta.boundary_conditions]
        resolution = tuple(int(s) for s in meta.resolution)
        if self.is_autoencoder:
            a = cfg.autoencoder
            spec = {
                "kind": "autoencoder",
                "n_fields": meta.n_fields,
                "latent_channels": a.latent_channels,
                "stages": a.stages,
                "width": a.width,
                "periodic": periodic,
                "resolution": list(resolution),
            }
            self.model = build_from_spec(spec)
            self.model.check_size(resolution, where="autoencoder.stages")
            return self.model
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
            "periodic": periodic,
            "resolution": list(resolution),
        }
        if self._autoencoder is None:
            self.model = build_from_spec(spec)
            self.model.net.unet.check_size(resolution)
            return self.model
        ae, envelope = self._autoencoder
        where = f"model.autoencoder {cfg.model.autoencoder}"
        fields = list(envelope.get("metadata", {}).get("field_names", []))
        if fields != list(meta.field_names) or list(envelope["model_spec"]["periodic"]) != periodic:
            raise ValueError(
                f"{where}: trained on fields {fields} with periodic axes {envelope['model_spec']['periodic']}, the "
                f"data have {list(meta.field_names)} and {periodic}; expected an autoencoder of the same data"
            )
        ae.check_size(resolution, where=where)
        spec["autoencoder"] = {
            "run": str(cfg.model.autoencoder),
            "spec": envelope["model_spec"],
            "latent_scale": self._latent_scale(ae),
        }
        self.model = build_from_spec(spec)
        self.model.autoencoder.load_state_dict(ae.state_dict())
        self.model.net.unet.check_size(tuple(s // ae.factor for s in resolution))
        return self.model

    @torch.no_grad()
    def _latent_scale(self, ae: FrameAutoencoder, max_batches: int = 8) -> float:
        """One over the std of the latents of the first training windows' input frames (in order)."""
        loader = DataLoader(self.train_ds, batch_size=self.config.optim.batch_size, shuffle=False)
        zs = []
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            zs.append(ae.encode(batch["input_fields"].flatten(0, 1)).double())
        std = float(torch.cat(zs).std()) if zs else 1.0
        return 1.0 / std if std > 0 else 1.0

    # -- training -------------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return (len(self.train_ds) // self.env.world) // self.config.optim.batch_size

    def train_batches(self, epoch: int, start: int) -> Iterator[dict[str, torch.Tensor]]:
        env, cfg = self.env, self.config
        return train_batches(
            self.train_ds,
            cfg.optim.batch_size,
            epoch=epoch,
            start=start,
            seed=cfg.run.seed,
            world=env.world,
            rank=env.rank,
            device=env.device,
            num_workers=cfg.data.num_workers,
        )

    def loss(self, net: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.is_autoencoder:
            return reconstruction_loss(net, batch)
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
                if self.is_autoencoder:
                    n = len(batch["input_fields"])
                    total, count = total + float(reconstruction_loss(model, batch)) * n, count + n
                    continue
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
        if self.is_autoencoder:
            return self._reconstruction_metrics(model, windows)
        roll = self.rollout_dataset(split)
        steps = self.task.rollout_steps or None
        with self._seeded():
            out: dict[str, Any] = split_metrics(model, windows, device, batch_size=self.config.optim.batch_size)
            out["rollout"] = rollout_metrics(model, roll, device, max_steps=steps, batch_size=ev.batch_size)
            members, truth = ensemble_rollouts(model, roll, device, ev.n_samples, steps, ev.batch_size)
        dt = roll.metadata.dt * roll.dt_stride
        out["probabilistic"] = ensemble_metrics(members, truth, self.metadata.n_spatial_dims, dt)
        return out

    @torch.no_grad()
    def _reconstruction_metrics(self, model: nn.Module, windows: Any) -> dict[str, Any]:
        """The autoencoder's reconstruction of every frame of ``windows``: the mean squared error in normalised units
        (the training objective) and the relative L2 error per frame in physical units (mean over frames)."""
        model.eval()
        mse, rel, n = 0.0, 0.0, 0
        for batch in DataLoader(windows, batch_size=self.config.optim.batch_size, shuffle=False):
            batch = to_device(batch, self.env.device)
            frames = torch.cat([batch["input_fields"], batch["output_fields"]], dim=1).flatten(0, 1)
            recon = model(frames)
            mse += float(((recon - frames) ** 2).flatten(1).mean(1).sum())
            truth, pred = windows.denormalize(frames), windows.denormalize(recon)
            rel += float(((pred - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1).clamp_min(1e-12)).sum())
            n += len(frames)
        return {"reconstruction_mse": mse / max(n, 1), "reconstruction_rel_l2": rel / max(n, 1), "n_frames": n}

    def envelope(self, model: nn.Module) -> dict[str, Any]:
        return {
            "model_spec": model.model_spec,
            "metadata": self.metadata.to_dict(),
            "stats": self.stats,
            "data_root": str(self.root),
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> GenerativeNextStep | LatentNextStep | FrameAutoencoder:
        return build_from_spec(envelope["model_spec"])

    def plots(self, model: nn.Module, run: Any, metrics: Mapping[str, Any]) -> None:
        plots.plot_losses(
            run.log,
            run.plot_path("loss.png"),
            loss_label="train loss: the objective (normalised units)",
            valid_label="valid objective (seeded noise; selects the weights)",
            ylabel="objective",
        )
        if self.is_autoencoder:
            return
        roll = metrics["test"].get("rollout")
        if roll:
            plots.plot_rollout_error(roll, roll["dt"], run.plot_path("rollout_error.png"))

    def summary(self, metrics: Mapping[str, Any]) -> str:
        t = metrics["test"]
        if self.is_autoencoder:
            return (
                f"test reconstruction: rel L2 {t['reconstruction_rel_l2']:.4g}, "
                f"MSE {t['reconstruction_mse']:.4g} (normalised units)"
            )
        p = t["probabilistic"]
        return (
            f"test one draw: rel L2 {t['rel_l2']:.4g}; rollout rel L2 mean {t['rollout']['rel_l2_mean']:.4g}; "
            f"ensemble of {p['n_samples']}: CRPS {p['crps']:.4g}, spread-skill {p['spread_skill']:.3g}, "
            f"high-correlation time {p['high_correlation_duration_members']:.3g} (members), "
            f"{p['high_correlation_duration_ensemble_mean']:.3g} (mean)"
        )
