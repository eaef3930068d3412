"""Pretrain a small scOT (Poseidon) on two flows, fine-tune it on a third, and compare with training from scratch.

scOT is the Swin-U-Net of Poseidon (Herde et al. 2024), conditioned on the lead time and trained on all pairs
`u(t_i) -> u(t_j)` of its trajectories. `configs/scot_pretrain.yaml` pretrains it on two decaying 2D Navier-Stokes
presets; `configs/scot_finetune.yaml` fine-tunes it on forced Kolmogorov flow from the pretrained run folder
(`--run.init_from`), with Poseidon's three learning-rate groups. The baseline trains the same model with the same
budget from random weights. The presets are generated once into `$PDEFORGE_CACHE` or `~/.cache/pdeforge/datasets`.

    pdeforge train configs/scot_pretrain.yaml --run.run_dir examples_out/04_scot_pretrain
    pdeforge train configs/scot_finetune.yaml --run.init_from examples_out/04_scot_pretrain
    python examples/04_finetune_scot.py        # the configs as shipped: 3 + 2 + 2 min on one CPU thread, and the data
"""

import os
from pathlib import Path

import pdeforge
from pdeforge.families import train

TINY = os.environ.get("PDEFORGE_EXAMPLE_TINY") == "1"  # a few seconds, for CI
OUT = Path(os.environ.get("PDEFORGE_EXAMPLE_OUT", "examples_out"))
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

tiny = []
if TINY:  # 3 trajectories per dataset, 2 optimiser steps
    tiny = ["--optim.batch_size", "4", "--run.max_steps", "2", "--run.progress", "false"]
    snapshots = "resolution: 32, save_every: 5, n_snapshots: 9"
    pretrain_data = [
        "--data.sources",
        f"[{{preset: navier_stokes_2d, preset_options: {{n_trajectories: 3, {snapshots}}}}},"
        f" {{preset: ns_grf_2d, preset_options: {{n_trajectories: 3, {snapshots}}}}}]",
    ]
    finetune_data = ["--data.preset_options.n_trajectories", "3"]
else:
    pretrain_data = finetune_data = []

pretrained = OUT / "04_scot_pretrain"
train(
    CONFIGS / "scot_pretrain.yaml", ["--run.run_dir", str(pretrained), "--run.overwrite", "true", *pretrain_data, *tiny]
)

results = {}
for name, init in (("finetune", ["--run.init_from", str(pretrained)]), ("scratch", ["--run.init_from", ""])):
    run_dir = OUT / f"04_scot_{name}"
    overrides = ["--run.run_dir", str(run_dir), "--run.overwrite", "true", *init, *finetune_data, *tiny]
    if name == "scratch":
        overrides += ["--optim.lr", "2.0e-3"]  # from random weights: the pretraining learning rate for every group
    results[name] = train(CONFIGS / "scot_finetune.yaml", overrides)["test"]["median_rel_l1"]

run = pdeforge.load_run(OUT / "04_scot_finetune")
print(f"fine-tuned {type(run.model).__name__}: {sum(p.numel() for p in run.model.parameters())} parameters")
for name, error in results.items():
    print(f"{name:>8}: test median rel L1 {error:.2f} % (kolmogorov_2d, lead times up to t = 0.4)")
