"""The generative family's run config: ``pdeforge train --help``.

Sections: ``run`` and ``data`` (shared), ``task`` (the next-step windows), ``model`` (the network, the method, a
generator or a frame autoencoder, and the autoencoder run a latent generator works in), ``diffusion``, ``refiner``,
``autoencoder``, ``eval``, ``optim``. No torch here: a config is read and checked before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..training.config import DataSection, OptimSection, RunSection, option, section

__all__ = [
    "GenerativeRunConfig",
    "GenerativeData",
    "GenerativeTask",
    "GenerativeModel",
    "DiffusionSection",
    "RefinerSection",
    "AutoencoderSection",
    "EvalSection",
    "OBJECTIVES",
    "SCHEDULES",
]

#: the diffusion objectives and noise schedules (:class:`~pdeforge.generative._models.DiffusionMethod`)
OBJECTIVES = ("noise", "v", "flow")
SCHEDULES = ("vp_linear", "vp_cosine", "flow")


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
    kind: str = option(
        "generator",
        "generator (a next-step model) | autoencoder (a frame autoencoder, the autoencoder section, for latent "
        "diffusion)",
        choices=("generator", "autoencoder"),
    )
    autoencoder: str = option(
        "", "a trained autoencoder run folder: the generator works in its latent space, its weights frozen ('': none)"
    )


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
class AutoencoderSection:
    """The frame autoencoder (model.kind autoencoder): convolutions, periodic padding on periodic axes, each stage
    halving every axis."""

    latent_channels: int = option(4, "channels of the latent", min=1)
    stages: int = option(2, "downsampling stages (latent points: resolution / 2^stages per axis)", min=1)
    width: int = option(32, "channels of the hidden convolutions", min=1)


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
    autoencoder: AutoencoderSection = section(AutoencoderSection, "the frame autoencoder (model.kind autoencoder)")
    eval: EvalSection = section(EvalSection, "the probabilistic evaluation")
    optim: OptimSection = section(
        lambda: OptimSection(steps=2000, batch_size=32, lr=1e-3, warmup=0.02, grad_clip=1.0), "the optimiser (AdamW)"
    )
