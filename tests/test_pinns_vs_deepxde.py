"""benchmarks/pinns_vs_deepxde.py without DeepXDE: its exact solution, the exchange of points and weights into
pdeforge, the loss it then gives, the timing table."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pdeforge.pinns import spectral_reference
from pdeforge.solvers import Burgers, Grid

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "pinns_vs_deepxde.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("_bench_pinns_vs_deepxde", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_cole_hopf_solution_matches_the_spectral_solver(bench):
    """The exact solution by quadrature against pdeforge's ETDRK4 on the periodic extension (u0 is 2-periodic and
    odd), before the front steepens (t = 0.25, 1024 modes resolve it): agreement to 1e-6; and u(x, 0) = u0."""
    x = np.linspace(-1, 1, 65)
    t = np.array([0.0, 0.25])
    exact = bench.cole_hopf(x, t)
    assert np.array_equal(exact[0], -np.sin(np.pi * x))
    grid = Grid(1024, 2.0)
    xs = -1 + grid.coords()[0]
    u0 = -torch.sin(math.pi * xs)[None]
    _, traj = spectral_reference(Burgers(nu=bench.NU), grid, u0, 1e-3, 0.25, 0.25)
    u = traj[-1, 0].numpy()
    reference = np.interp(x, np.append(xs.numpy(), 1.0), np.append(u, u[0]))  # x on the grid: every 16th point
    assert np.abs(exact[1] - reference).max() < 1e-6
    assert np.abs(exact[1]).max() > 0.5


def _deepxde_like(seed: int):
    """What DeepXDE exports: a 2-20-20-20-1 tanh MLP on raw (x, t) and its points (2780 residual, 80 on x = +-1,
    160 at t = 0), here drawn at random."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [2, 20, 20, 20, 1]
    ex = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        ex[f"weight{i}"] = (torch.randn(b, a, generator=gen) / math.sqrt(a)).numpy()
        ex[f"bias{i}"] = (0.1 * torch.randn(b, generator=gen)).numpy()
    r = torch.rand(2780, 2, generator=gen) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])
    b = torch.rand(80, 2, generator=gen)
    b[:, 0] = torch.where(b[:, 0] < 0.5, -1.0, 1.0)
    i = torch.rand(160, 2, generator=gen) * 2 - 1
    i[:, 1] = 0
    ex.update(residual=r.numpy(), boundary=b.numpy(), initial=i.numpy())
    return {k: np.asarray(v, dtype=np.float32) for k, v in ex.items()}


def _raw_mlp(ex, z: torch.Tensor) -> torch.Tensor:
    for i in range(4):
        z = z @ torch.as_tensor(ex[f"weight{i}"], dtype=z.dtype).T + torch.as_tensor(ex[f"bias{i}"], dtype=z.dtype)
        z = torch.tanh(z) if i < 3 else z
    return z


def test_exchanged_weights_give_deepxdes_function_and_loss(bench):
    """pdeforge's PINN with the exported points and weights is DeepXDE's network on raw (x, t), with the same
    parameters, and its loss is DeepXDE's: the mean squares of the hand-written residual u_t + u u_x - nu u_xx on all
    residual points, of u on the boundary and of u - u0 at t = 0."""
    ex = _deepxde_like(0)
    pinn = bench.pdeforge_from_exchange(ex, dtype=torch.float64)
    z = torch.as_tensor(ex["residual"], dtype=torch.float64).requires_grad_(True)
    u = _raw_mlp(ex, z)
    assert torch.allclose(pinn.net(z[:, :1], z[:, 1:]), u, rtol=1e-12, atol=1e-12)
    for i, layer in enumerate(pinn.net.body.layers):  # the same parameters: Adam takes the same steps
        assert torch.equal(layer.weight, torch.as_tensor(ex[f"weight{i}"], dtype=torch.float64))
    (du,) = torch.autograd.grad(u.sum(), z, create_graph=True)
    (d2,) = torch.autograd.grad(du[:, 0].sum(), z)
    residual = du[:, 1:] + u * du[:, :1] - bench.NU * d2[:, :1]
    ub = _raw_mlp(ex, torch.as_tensor(ex["boundary"], dtype=torch.float64))
    x0 = torch.as_tensor(ex["initial"], dtype=torch.float64)
    u0 = _raw_mlp(ex, x0) + torch.sin(math.pi * x0[:, :1])
    means, _ = pinn.terms()
    assert means["residual"].item() == pytest.approx(residual.pow(2).mean().item(), rel=1e-5)
    assert means["boundary"].item() == pytest.approx(ub.pow(2).mean().item(), rel=1e-5)
    assert means["initial"].item() == pytest.approx(u0.pow(2).mean().item(), rel=1e-5)


def test_timing_table_takes_the_best_block_and_the_median_of_pairs(bench):
    blocks = {  # (wall s, cpu s, iterations, evaluations)
        "adam deepxde": [(1.0, 0.9, 100, 100), (0.5, 0.45, 100, 100)],
        "adam pdeforge": [(0.8, 0.7, 100, 100), (0.45, 0.4, 100, 100)],
        "lbfgs deepxde": [(2.0, 1.8, 100, 110), (2.2, 2.0, 100, 120)],
        "lbfgs pdeforge": [(1.8, 1.7, 100, 105), (2.4, 2.1, 100, 110)],
    }
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in bench.timing_table(blocks)[2:]]
    assert rows[0] == ["adam", "iteration", "wall", "5.00", "4.50", "0.900", "0.850"]
    assert rows[1][:3] == ["adam", "iteration", "cpu"] and rows[1][5] == f"{0.4 / 0.45:.3f}"
    assert rows[4][:3] == ["lbfgs", "evaluation", "wall"] and rows[4][5] == f"{(1.8 / 105) / (2.0 / 110):.3f}"
