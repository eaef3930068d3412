"""The TSM / LI run config: sections ``run``, ``data`` (the FV Kolmogorov preset and the window view), ``optim``
(the papers' optimiser), ``model`` (the learned solver) and ``eval`` (the high-correlation threshold).

The defaults are the CPU-scale protocol: Kolmogorov flow (``sin(4 y)`` forcing, drag 0.1, Re 500) by DNS at 256^2
(8x the solver's grid) after 20 time units of warm-up, stored face-averaged at 32^2 every 0.02 (8 time units per
trajectory); the solver step is ``stride`` = 2 frames, dt = 0.04; 16 train / 8 valid / 16 test trajectories;
CNN 4 layers x 32 channels (last layer zero-initialised, so an untrained model is exactly the coarse van Leer
solver); history 16 frames, HiPPO N = 32; bundle 4; unroll 8; batch 4; 600 AdamW steps (beta2 0.98, weight decay
1e-4, clip 0.25, lr 1e-3 cosine with 5% warm-up). The papers use 2048^2 DNS to 64^2, Re 1000, CNN 6 x 256, 32
frames and ~10^5 steps on accelerators.

No torch at import: ``pdeforge train --help`` reads this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...training.config import DataSection, OptimSection, RunSection, option, section

__all__ = ["TSMRunConfig", "TSMData", "TSMModelConfig", "TSMEval", "KOLMOGOROV_DATA"]

#: the data of the protocol: the ``kolmogorov_fv_2d`` preset's options (the DNS of the first 16 + 8 + 16 trajectories
#: drawn jointly from seed 0, solved in batches of 4 in float32: the bytes of fv.kolmogorov_fv_trajectories(40, 32,
#: ..., torch.Generator().manual_seed(0), torch.float32, batch_size=4))
KOLMOGOROV_DATA = {
    "n_trajectories": 40,
    "splits": [0.4, 0.2, 0.4],
    "resolution": 32,
    "seed": 0,
    "batch_size": 4,
    "dns_resolution": 256,
    "reynolds": 500.0,
    "warmup_time": 20.0,
    "frame_interval": 0.02,
    "n_frames": 400,
    "dtype": "float32",
    "initial_draw": "joint",
    "dns_batch": 4,
}


@dataclass
class TSMData(DataSection):
    """The data: a dataset root of staggered velocities (the ``kolmogorov_fv_2d`` preset), read as windows of
    ``history + unroll`` solver steps of ``stride`` frames each."""

    preset: str = option("kolmogorov_fv_2d", "a `pdeforge generate` preset (used when root is empty)")
    preset_options: dict = option(
        dict(KOLMOGOROV_DATA),
        "the preset's options: n_trajectories, splits, resolution, "
        "seed, batch_size and its DNS fields (dns_resolution, reynolds, warmup_time, "
        "frame_interval, n_frames, dtype, initial_draw, dns_batch)",
    )
    stride: int = option(2, "frames per solver step: the solver's dt is stride x the frame interval", min=1)
    unroll: int = option(8, "solver steps unrolled through the solver in training", min=1)
    max_trajectories: int = option(0, "use only the first N trajectories of each split (0: all)", min=0)


@dataclass
class TSMModelConfig:
    """The learned solver (:class:`TemporalStencil` or :class:`LearnedInterpolation`)."""

    variant: str = option(
        "tsm",
        "tsm: temporal stencils from the last `history` frames | li: learned interpolation from the current velocity",
        choices=("tsm", "li"),
    )
    encoder: str = option(
        "hippo",
        "TSM's input: hippo (LagT features) | frames (the stacked frames, an ablation)",
        choices=("hippo", "frames"),
    )
    history: int = option(16, "frames of history (TSM encodes them; every model starts from frame history - 1)", min=1)
    hippo_order: int = option(32, "LagT coefficients per velocity component", min=1)
    memory: str = option(
        "window",
        "TSM's HiPPO features: of the last `history` frames | running: one state over the whole rollout (TSM's code)",
        choices=("window", "running"),
    )
    bundle: int = option(4, "TSM: solver steps per CNN call", min=1)
    li_calls: str = option(
        "step",
        "LI: the CNN once per solver step (the papers) | stage: at each SSP-RK3 stage",
        choices=("step", "stage"),
    )
    order: int = option(1, "stencil accuracy order (1: 15 logits per stencil, 120 per cell)", min=1)
    layers: int = option(4, "CNN depth", min=1)
    channels: int = option(32, "CNN width", min=1)
    compile: bool = option(
        False,
        "torch.compile the solver step for training (~1 min first; on a CPU a step "
        "1.2-1.7x faster); eager's numbers to rounding",
        resume_safe=True,
    )


@dataclass
class TSMEval:
    """The evaluation: vorticity correlation against the reference, rolled out from frame history - 1."""

    threshold: float = option(
        0.8,
        "high-correlation threshold: the duration is the time until the vorticity correlation drops below it",
        positive=True,
    )


@dataclass
class TSMRunConfig:
    """A TSM / LI run (``family: tsm``)."""

    family: str = option("tsm", "the family")
    run: RunSection = section(RunSection, "the run")
    data: TSMData = section(TSMData, "the data and the window view")
    optim: OptimSection = section(
        lambda: OptimSection(
            steps=600, batch_size=4, lr=1e-3, betas=[0.9, 0.98], weight_decay=1e-4, warmup=0.05, grad_clip=0.25
        ),
        "the optimiser (the papers': AdamW, beta2 0.98, clip 0.25)",
    )
    model: TSMModelConfig = section(TSMModelConfig, "the learned solver")
    eval: TSMEval = section(TSMEval, "the evaluation")
