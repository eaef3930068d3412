"""A physics-informed neural network for viscous Burgers, trained through the run skeleton, then loaded and queried.

The residual a PINN minimises is `equation.residual(u_t, u, D)` of the very `Burgers` class the spectral solver of
example 01 steps, with autograd derivatives: one definition of the PDE, two uses. `configs/pinn_burgers.yaml` is
PINNacle's Burgers1d-C (`u_t + u u_x = (0.01 / pi) u_xx` on `[-1, 1] x [0, 1]`, `u0 = -sin(pi x)`, `u(+-1) = 0`):
Adam, then L-BFGS, and test errors against a spectral reference solution. Here the budget is cut to a few minutes
on a laptop CPU (an MLP 50 x 4, 2000 points, 2000 Adam steps and 1000 L-BFGS iterations); the config as shipped
(MLP 100 x 5, 8000 points, 5k + 15k iterations) is PINNacle's budget, whose errors docs/results/pinns.md reports.

    pdeforge train configs/pinn_burgers.yaml --run.run_dir examples_out/05_pinn_burgers    # the full budget
    python examples/05_pinn.py
"""

import os
from pathlib import Path

import torch

import pdeforge
from pdeforge.families import train

TINY = os.environ.get("PDEFORGE_EXAMPLE_TINY") == "1"  # a few seconds, for CI
OUT = Path(os.environ.get("PDEFORGE_EXAMPLE_OUT", "examples_out"))
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pinn_burgers.yaml"

run_dir = OUT / "05_pinn_burgers"
width, depth, points, adam, lbfgs = (20, 2, 256, 50, 10) if TINY else (50, 4, 2000, 2000, 1000)
overrides = ["--run.run_dir", str(run_dir), "--run.overwrite", "true", "--model.width", str(width)]
overrides += ["--model.depth", str(depth), "--data.n_residual", str(points)]
overrides += ["--optim.steps", str(adam), "--lbfgs.iters", str(lbfgs)]
if TINY:
    overrides += ["--eval.nx", "64", "--eval.nt", "11", "--run.progress", "false"]
metrics = train(CONFIG, overrides)  # prints the test rel L2 against the reference and the run folder

run = pdeforge.load_run(run_dir)  # run.model: the trained PINN, u = run.model(x, t) with x (N, 1), t (N, 1)
x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
for t in (0.0, 0.5, 1.0):
    u = run.model.predict(x, torch.full_like(x, t)).flatten()
    print(f"u(x, t = {t}) at x = -1, -0.75, ..., 1: {' '.join(f'{v:+.3f}' for v in u.tolist())}")
xt = torch.rand(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # in [0, 1)^2
residual = run.model.residual(2 * xt[:, :1] - 1, xt[:, 1:])  # u_t - (nu u_xx - u u_x) at (x, t), x in [-1, 1)
print(f"PDE residual at 1000 random points: rms {residual.pow(2).mean().sqrt():.3e}")
print(f"test rel L2 {metrics['test']['rel_l2']:.3e} against the spectral reference; plots in {run_dir}")
