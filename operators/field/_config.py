"""The field-operator family's config (FNO, TFNO, UNO, U-Net, the pretrained AViT and DPOT and The Well's baselines,
on a dataset root):
``python train.py --help``.

No torch here: the config is read and checked, and ``--help`` printed, before anything heavy is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...training.config import DataSection, OptimSection, RunSection, option, section

__all__ = ["OperatorConfig", "OperatorData", "TaskSection", "ModelSection", "MODEL_NAMES", "DEFAULT_ARGS"]

# pdeforge.operators.MODELS, without importing torch
MODEL_NAMES = (
    "fno",
    "tfno",
    "uno",
    "unet",
    "avit",
    "dpot",
    "well_fno",
    "well_tfno",
    "well_unet_classic",
    "well_unet_convnext",
)
#: ``model.args`` when none are given (written into model.json as used); the other models: their own defaults
DEFAULT_ARGS = {"fno": {"n_modes": 16, "hidden_channels": 48, "n_layers": 4}}


@dataclass
class OperatorData(DataSection):
    """The dataset root (or preset) and how its fields are normalised."""

    normalization: str = option(
        "zscore", "per-channel normalisation fitted on the train split only ('': none)", choices=("zscore", "rms", "")
    )
    max_train_trajectories: int = option(0, "use only the first N training trajectories (0: all)", min=0)
    num_workers: int = option(0, "DataLoader worker processes", min=0, resume_safe=True)


@dataclass
class TaskSection:
    """What the model maps: a one-shot operator, or the next frames (autoregressive, rollout-evaluated)."""

    kind: str = option(
        "operator", "operator (one-shot map) | next_step (autoregressive)", choices=("operator", "next_step")
    )
    windows: str = option(
        "all", "operator on time-dependent data: all start times | first (u0 -> u(T))", choices=("all", "first")
    )
    n_steps_input: int = option(1, "frames in (next_step)", min=1)
    n_steps_output: int = option(1, "frames out per model call (next_step)", min=1)
    dt_stride: int = option(10, "snapshots between frames (windows first: 0 is the last snapshot)", min=0)
    pushforward: int = option(1, "next_step: model calls unrolled per sample, gradient through the last", min=1)
    rollout_steps: int = option(0, "next_step: frames of the rollout evaluation (0: whole trajectories)", min=0)
    loss: str = option(
        "rel_l2",
        "rel_l2 (per-sample relative L2 in physical units) | mse (normalised space)",
        choices=("rel_l2", "mse"),
    )


@dataclass
class ModelSection:
    """The network, sized from the data's metadata."""

    name: str = option("fno", "the architecture", choices=MODEL_NAMES)
    args: dict = option(
        {},
        "the architecture's config ({}: fno n_modes 16, hidden_channels 48, n_layers 4; the others their defaults); "
        "with run.init_from, changes to the source's (a run's model.json, a pretrained folder's config.json)",
    )
    use_grid: bool = option(True, "grid coordinates as extra input channels (avit, dpot, well_*: false)")
    residual: bool = option(
        False,
        "predict the change: each output frame is the last input frame plus the network's output (per field "
        "channel; needs an input frame of the same fields, so not steady data); with run.init_from a run of this "
        "family, it must equal the source's",
    )
    compile: bool = option(False, "torch.compile the model", resume_safe=True)
    reinit: list = option([], "with run.init_from: parameter-name prefixes to re-initialise anyway")
    lr_groups: dict = option({}, "{parameter-name prefix: learning rate}; the rest use optim.lr")
    freeze: list = option([], "parameter-name prefixes not trained (kept as initialised or loaded)")


@dataclass
class OperatorConfig:
    """A field operator trained on a dataset root (the main job: Burgers data generated once, an FNO)."""

    family: str = option("operator", "the model family", choices=("operator",))
    run: RunSection = section(RunSection, "where the run writes, how it starts and is saved")
    data: OperatorData = section(
        lambda: OperatorData(preset="burgers_1d", preset_options={"n_trajectories": 160, "resolution": 128}), "the data"
    )
    task: TaskSection = section(TaskSection, "what the model maps")
    model: ModelSection = section(ModelSection, "the network")
    optim: OptimSection = section(
        lambda: OptimSection(epochs=30, batch_size=32, lr=3e-3, weight_decay=1e-4, warmup=0.05, grad_clip=1.0),
        "the optimiser (AdamW)",
    )
