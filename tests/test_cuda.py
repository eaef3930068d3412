"""The same numbers on a CUDA device as on the CPU: initial conditions, both solvers, gradients, generation, training.

Marked ``gpu`` and deselected by default (CI has no GPU); on a machine with one: ``python -m pytest -m gpu``.
float64 where the solvers are compared (cuFFT and pocketfft round differently, so agreement is to ~1e-12 relative,
not bitwise); the initial conditions are drawn on the CPU and moved, so they are bitwise equal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pdeforge.solvers import (
    EQUATIONS,
    ETDRK,
    Burgers,
    DiffusedNoise,
    GaussianBlobs,
    GaussianRandomField,
    Grid,
    LogNormalVorticity,
    RandomDiscontinuities,
    RandomFourierSeries,
    fv,
    rollout,
)
from pdeforge.solvers.generate import PRESETS, generate, with_overrides

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)"),
]

CUDA = "cuda"  # the device compared with the CPU


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.cpu() - b.cpu()).abs().max() / b.cpu().abs().max().clamp_min(1e-300))


@pytest.mark.parametrize(
    "ic",
    [
        RandomFourierSeries(max_wavenumber=5),
        GaussianRandomField(exponent=3.0),
        DiffusedNoise(),
        RandomDiscontinuities(),
        GaussianBlobs(width=0.1),
        LogNormalVorticity(peak_wavenumber=3.0),
    ],
    ids=lambda ic: type(ic).__name__,
)
def test_initial_conditions_are_identical_on_cpu_and_cuda(ic) -> None:
    grid = Grid((32, 32))
    on_cpu = ic(grid, 3, torch.Generator().manual_seed(7))
    on_cuda = ic(grid, 3, torch.Generator().manual_seed(7), device=CUDA)
    assert on_cuda.device.type == CUDA
    assert torch.equal(on_cuda.cpu(), on_cpu)
    assert on_cpu.std() > 0


@pytest.mark.parametrize("cfg", EQUATIONS, ids=lambda c: c.equation.name)
def test_etdrk4_rollout_on_cuda_matches_cpu(cfg) -> None:
    u0 = cfg.initial_state(batch=2)
    n = min(cfg.n_steps, 10)
    on_cpu = rollout(cfg.stepper(4), u0, n)
    on_cuda = rollout(cfg.stepper(4), u0.to(CUDA), n)
    assert on_cuda.device.type == CUDA and on_cuda.dtype == torch.float64
    assert _relative(on_cuda, on_cpu) < 1e-10
    assert _relative(on_cpu[:, -1], on_cpu[:, 0]) > 1e-6  # the state moved


@pytest.mark.parametrize(
    "cfg",
    [c for c in EQUATIONS if c.equation.name in ("kuramoto_sivashinsky", "navier_stokes_2d", "gray_scott")],
    ids=lambda c: c.equation.name,
)
@pytest.mark.parametrize("save_every", [1, 3])
def test_rollout_replayed_as_a_cuda_graph_equals_the_eager_steps(cfg, save_every: int) -> None:
    """The graph records the eager step's kernels: the same bytes, for the lean one-flux step (KS), the generic one
    (NS, with forcing) and two channels (Gray-Scott); and no warning, i.e. the graph was recorded."""
    import warnings

    u0 = cfg.initial_state(batch=3, dtype=torch.float32).to(CUDA)
    eager = rollout(cfg.stepper(4), u0, 12, save_every=save_every, cuda_graph=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphed = rollout(cfg.stepper(4), u0, 12, save_every=save_every)
    assert torch.equal(graphed, eager)
    assert _relative(eager[:, -1], eager[:, 0]) > 1e-4


def test_etdrk_float32_on_cuda_stays_close_to_float64() -> None:
    grid = Grid(128)
    u0 = RandomFourierSeries(max_wavenumber=4)(grid, 4, torch.Generator().manual_seed(1))
    stepper = ETDRK(Burgers(nu=0.05), grid, dt=0.01)
    ref = rollout(stepper, u0, 100)
    single = rollout(stepper, u0.float().to(CUDA), 100)
    assert single.dtype == torch.float32
    assert _relative(single.double(), ref) < 1e-5


def test_gradient_through_a_rollout_on_cuda_matches_cpu() -> None:
    grid = Grid(64)
    stepper = ETDRK(Burgers(nu=0.05), grid, dt=0.02)
    u0 = RandomFourierSeries(max_wavenumber=3)(grid, 2, torch.Generator().manual_seed(2))
    grads = []
    for device in ("cpu", CUDA):
        x = u0.to(device).clone().requires_grad_(True)  # a leaf of its own on each device
        (rollout(stepper, x, 20)[:, -1] ** 2).sum().backward()
        grads.append(x.grad)
    assert grads[0].abs().max() > 1e-3
    assert _relative(grads[1], grads[0]) < 1e-10


def test_finite_volume_solver_on_cuda_matches_cpu() -> None:
    grid = fv.StaggeredGrid(32)
    flow = fv.FlowParameters(viscosity=1e-3, drag=0.1, forcing=fv.KolmogorovForcing())
    solver = fv.StaggeredNavierStokes2D(grid, flow)
    v0 = fv.random_divergence_free_velocity(grid, 2, generator=torch.Generator().manual_seed(3))
    out = []
    for device in ("cpu", CUDA):
        v = v0.to(device)
        for _ in range(20):
            v = solver.step(v, 0.01)
        out.append(v)
    assert _relative(out[1], out[0]) < 1e-10
    assert _relative(out[0], v0) > 1e-3


@pytest.mark.parametrize("name", ["burgers_1d", "kolmogorov_2d"])
def test_generate_on_cuda_matches_cpu(tmp_path: Path, name: str) -> None:
    from pdeforge.datasets import TrajectoryDataset

    preset = with_overrides(PRESETS[name], n_snapshots=5, **({"warmup": 0.5} if name == "kolmogorov_2d" else {}))
    for i, device in enumerate(("cpu", CUDA)):
        generate(preset, tmp_path / str(i), n_trajectories=6, resolution=32, device=device, progress=False)
    a = TrajectoryDataset(tmp_path / "0", split="train")
    b = TrajectoryDataset(tmp_path / "1", split="train")
    assert len(a) == len(b) > 0
    xa, xb = a[0]["input_fields"], b[0]["input_fields"]
    assert _relative(xb, xa) < 1e-4  # stored float32; the solve itself agrees to ~1e-12 in float64


@pytest.mark.parametrize("model", ["fno", "unet"])
def test_train_on_cuda_reaches_the_cpu_figure(tmp_path: Path, model: str) -> None:
    """The same tiny job on both devices: same data, seed and schedule; float32 arithmetic differs, the outcome
    does not (test rel L2 within 10 % of the CPU's)."""
    if model == "fno":
        pytest.importorskip("neuralop")
    from pdeforge import train

    data = tmp_path / "data"
    generate(
        with_overrides(PRESETS["burgers_1d"], n_snapshots=9), data, n_trajectories=20, resolution=32, progress=False
    )
    args = {"fno": {"n_modes": 8, "hidden_channels": 16, "n_layers": 2}, "unet": {"init_features": 8, "n_stages": 2}}[
        model
    ]
    figures = []
    for i, device in enumerate(("cpu", CUDA)):
        run = tmp_path / f"run{i}"
        out = train.main(
            [
                "--data.root",
                str(data),
                "--model.name",
                model,
                "--model.args",
                json.dumps(args),
                "--optim.epochs",
                "5",
                "--optim.batch_size",
                "4",
                "--task.kind",
                "next_step",
                "--task.dt_stride",
                "1",
                "--run.seed",
                "0",
                "--run.device",
                device,
                "--run.progress",
                "false",
                "--run.run_dir",
                str(run),
            ]
        )
        figures.append(out["test"]["rel_l2"])
        assert (run / "model.safetensors").is_file()
    assert math.isfinite(figures[1]) and 0 < figures[1] < 1
    assert abs(figures[1] - figures[0]) < 0.1 * figures[0], figures
