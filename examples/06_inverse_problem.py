"""An inverse problem: recover the viscosity of Burgers' equation from sparse noisy observations of one trajectory.

`pdeforge generate` writes reference data (viscous Burgers, `nu = 0.01`); `sample_observations` draws random
space-time points of one trajectory with 1 % Gaussian noise. `InversePINN` fits a solution network to them while
the residual of `Burgers(nu)` (the solver's own equation class) holds everywhere, with `nu = exp(s)` a trainable
parameter started from a wrong guess, 0.05 (Raissi et al. 2019). Only the observations and the form of the PDE are
given; the viscosity comes out of the fit.

    python examples/06_inverse_problem.py      # 2000 Adam steps, then 1000 of L-BFGS: minutes on a CPU
"""

import os
from pathlib import Path

from pdeforge.datasets import TrajectoryDataset
from pdeforge.pinns import InversePINN, NetworkConfig, OptimConfig, dataset_domain, sample_observations
from pdeforge.solvers import Burgers
from pdeforge.solvers.generate import generate

TINY = os.environ.get("PDEFORGE_EXAMPLE_TINY") == "1"  # a few seconds, for CI
OUT = Path(os.environ.get("PDEFORGE_EXAMPLE_OUT", "examples_out"))

root = OUT / "06_burgers"
generate("burgers_1d", root, n_trajectories=10, resolution=32 if TINY else 256, progress=False, overwrite=True)
data = TrajectoryDataset(root, split="test")
times = list(range(11))  # the first 11 snapshots: t in [0, 0.5]
obs = sample_observations(data, trajectory=0, n_points=200 if TINY else 1000, noise=0.01, seed=0, time_indices=times)
domain = dataset_domain(data, times)  # the periodic box of the data, over the observed times
x0, x1, (t0, t1) = domain.lower[0], domain.upper[0], domain.t_span
print(f"{obs.u.shape[0]} noisy observations of u on x in [{x0:g}, {x1:.4f}), t in [{t0:g}, {t1:g}]")

pinn = InversePINN(
    Burgers(nu=1.0),  # the form of the PDE; nu is the unknown
    {"nu": 0.05},  # the initial guess
    domain,
    obs,
    NetworkConfig(width=20 if TINY else 50, depth=2 if TINY else 4, harmonics=5),  # periodic in x
    n_residual=256 if TINY else 2000,
)
pinn.fit(OptimConfig(adam_iters=100 if TINY else 2000, lbfgs_iters=20 if TINY else 1000))
nu = pinn.coefficients.values()["nu"]
print(f"learned nu = {nu:.5f} (true 0.01, initial guess 0.05): {100 * abs(nu - 0.01) / 0.01:.1f} % off")
