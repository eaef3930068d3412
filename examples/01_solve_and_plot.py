"""Solve a PDE and plot it: viscous Burgers ``u_t + u u_x = nu u_xx`` on a periodic line, in ten lines.

The Fourier-spectral ETDRK4 solver of `pdeforge.solvers` steps a batch of random initial conditions; `rollout`
keeps every `save_every`-th state, channels first: `(batch, time, channel, x)`. Burgers conserves the mean of `u`
(its flux `u^2 / 2` is periodic), which the script checks, and the plot is a space-time image: the initial waves
steepen into shocks that viscosity smooths.

    python examples/01_solve_and_plot.py       # writes examples_out/01_burgers.png
"""

import math
import os
from pathlib import Path

import torch

from pdeforge.plots import plot_trajectory
from pdeforge.solvers import ETDRK, Burgers, Grid, RandomFourierSeries, rollout

TINY = os.environ.get("PDEFORGE_EXAMPLE_TINY") == "1"  # a few seconds, for CI
OUT = Path(os.environ.get("PDEFORGE_EXAMPLE_OUT", "examples_out"))

grid = Grid(64 if TINY else 512, length=2 * math.pi)
u0 = RandomFourierSeries(max_wavenumber=5)(grid, batch=1, generator=torch.Generator().manual_seed(0))  # (1, 1, N)
dt, save_every, n_steps = 0.01, 10, 100 if TINY else 300
traj = rollout(ETDRK(Burgers(nu=0.01), grid, dt=dt), u0, n_steps=n_steps, save_every=save_every)  # (1, T, 1, N)
times = dt * save_every * torch.arange(traj.shape[1])

png = plot_trajectory(traj[0].numpy(), times.numpy(), [grid.coords()[0].numpy()], ["u"], OUT / "01_burgers.png")
mean = traj.mean(dim=-1)[0, :, 0]  # the spatial mean of u at each saved time
print(f"solved {tuple(traj.shape)} (batch, time, channel, x) to t = {times[-1]:.2f} on {grid.shape[0]} points")
print(f"mean of u: {mean[0]:.6f} at t = 0, {mean[-1]:.6f} at t = {times[-1]:.2f} (drift {abs(mean[-1] - mean[0]):.1e})")
print(f"max |u|: {traj[0, 0].abs().max():.3f} at t = 0, {traj[0, -1].abs().max():.3f} at t = {times[-1]:.2f}")
print(f"plot: {png}")
