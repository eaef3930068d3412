"""Train a Fourier neural operator through the run skeleton, then load the run and predict with it.

`configs/fno_burgers.yaml` is the FNO paper's Burgers task: the map from `u(0)` to `u(T = 2)`, learned from the
`burgers_1d` preset (generated once into `$PDEFORGE_CACHE` or `~/.cache/pdeforge/datasets`). `train(config,
overrides)` is `pdeforge train CONFIG --section.key value ...` from Python: it writes the run folder (config, metrics,
weights, plots, checkpoint) and returns the metrics. `pdeforge.load_run` rebuilds the trained model from the folder.

    pdeforge train configs/fno_burgers.yaml --run.run_dir examples_out/03_fno_burgers    # the same run
    python examples/03_train_fno.py            # the config as shipped: 1600 optimiser steps, minutes on a CPU
"""

import os
from pathlib import Path

import torch

import pdeforge
from pdeforge.families import train
from pdeforge.metrics import rel_l2

TINY = os.environ.get("PDEFORGE_EXAMPLE_TINY") == "1"  # a few seconds, for CI
OUT = Path(os.environ.get("PDEFORGE_EXAMPLE_OUT", "examples_out"))
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fno_burgers.yaml"

run_dir = OUT / "03_fno_burgers"
overrides = ["--run.run_dir", str(run_dir), "--run.overwrite", "true"]
if TINY:  # 20 trajectories of 32 points, a small FNO, 20 epochs
    overrides += ["--data.preset_options", "{n_trajectories: 20, resolution: 32}", "--optim.batch_size", "4"]
    overrides += ["--optim.epochs", "20", "--model.args", "{n_modes: 8, hidden_channels: 16, n_layers: 2}"]
metrics = train(CONFIG, overrides)  # prints the test figures and the run folder

run = pdeforge.load_run(run_dir)  # run.model (eval mode), run.config, run.metadata
print(f"loaded {type(run.model).__name__} ({sum(p.numel() for p in run.model.parameters())} parameters)")

# The test split again, by hand: run.loader gives its samples in physical units, run.predict normalises them with the
# run's statistics, calls the model and denormalises its output: (B, T_out, C, x)
errors = torch.cat([rel_l2(run.predict(batch), batch["output_fields"], 1, "sample") for batch in run.loader("test")])
print(f"rel L2 per test trajectory: {[round(e, 4) for e in errors.tolist()]}")
print(f"mean {errors.mean():.4f} (the run's metrics.json: {metrics['test']['rel_l2']:.4f})")
print(f"run folder: {run_dir} (loss.png, prediction.png, metrics.json, model.safetensors)")
