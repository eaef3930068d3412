"""Generate a dataset root with a preset, check and describe it, and read training windows from it.

`generate` solves the `burgers_nu_1d` preset (viscous Burgers with the viscosity drawn per trajectory, stored as the
scalar `nu`) for random initial conditions and writes a dataset root in The Well's layout: HDF5 files split into
`data/{train,valid,test}` and `stats.yaml`, fitted on the train split only. `validate` checks every file (what
`pdeforge inspect ROOT` prints), `TrajectoryDataset` reads windows lazily, channels first, and `plot_file` draws one
trajectory (what `pdeforge plot ROOT` draws). The same from the shell:

    pdeforge generate burgers_nu_1d --out examples_out/02_burgers_nu
    pdeforge inspect examples_out/02_burgers_nu
    pdeforge plot examples_out/02_burgers_nu

    python examples/02_generate_and_inspect.py
"""

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pdeforge.datasets import TrajectoryDataset, validate
from pdeforge.plots import plot_file
from pdeforge.solvers.generate import generate

TINY = os.environ.get("PDEFORGE_EXAMPLE_TINY") == "1"  # a few seconds, for CI
OUT = Path(os.environ.get("PDEFORGE_EXAMPLE_OUT", "examples_out"))

root = OUT / "02_burgers_nu"
n_trajectories, resolution = (10, 32) if TINY else (64, 256)
generate("burgers_nu_1d", root, n_trajectories=n_trajectories, resolution=resolution, progress=False, overwrite=True)

for info in validate(root):  # raises FormatError naming the file and key if anything is off
    print(f"{info.path}: {info.n_trajectories} trajectories x {info.n_steps} snapshots, grid {info.resolution}")

train = TrajectoryDataset(root, split="train", n_steps_input=2, n_steps_output=1, normalization="zscore")
meta = train.metadata  # what a model sizes itself from
print(f"fields {meta.field_names}, scalars {meta.scalar_names}, {meta.boundary_conditions[0]} grid {meta.resolution}")
print(f"dt {meta.dt:g}, domain length {meta.domain_lengths[0]:.4f}, {meta.n_trajectories} train trajectories")
print(f"{len(train)} windows of 2 input frames + 1 output frame")

batch = next(iter(DataLoader(train, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))))
for key, value in batch.items():
    print(f"  batch[{key!r}]: {tuple(value.shape)} {value.dtype}")
print(f"viscosity of each window: {[round(nu, 4) for nu in batch['scalars'][:, 0].tolist()]}")
x = batch["input_fields"]  # z-scored with the train split's statistics (ROOT/stats.yaml)
print(
    f"normalised input: mean {x.mean():.3f}, std {x.std():.3f}; in physical units: std {train.denormalize(x).std():.3f}"
)
png = plot_file(root, trajectory=0, out=OUT / "02_trajectory.png")
print(f"plot: {png}")
