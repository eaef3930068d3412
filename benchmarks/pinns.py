"""PINN benchmark figures (the full acceptance targets of ``pdeforge.pinns``), each printed with its wall time.

    python benchmarks/pinns.py                       # everything at the full budgets (hours on 2 CPU cores)
    python benchmarks/pinns.py --only advection hidden inverse
    python benchmarks/pinns.py --only burgers --seeds 0 --scale 0.2   # 20% of the iteration budget

Figures and targets:

The config figures train the shipped configs through the run skeleton (``pdeforge.families.train``, the code path of
``pdeforge train``), with ``--scale`` shortening ``optim.steps`` (Adam) and ``lbfgs.iters``.

* ``burgers``: PINNacle Burgers1d-C, MLP 100x5, 20k iterations (5k Adam + 15k L-BFGS), 8000 Sobol points,
  hard initial/boundary conditions; relative L2 <= 1e-2, mean over seeds 0, 1, 2. Reference: ETDRK4 on the
  periodic extension, N = 4096, dt = 1e-4.
* ``allen_cahn``: relative L2 <= 1e-3 (configs/pinn_allen_cahn.yaml: periodic embedding, RWF, RAD points, causal
  and amplification weights, float32, 35k Adam steps; measured 6.65e-4, 68-96 min on one core by load).
* ``inverse``: Burgers viscosity (true 0.01, initial guess 0.05) from 1000 points with 1% noise of a
  ``pdeforge generate burgers_1d`` trajectory (256 points, t in [0, 0.5]: 1000 of 2816 values); error <= 1%.
* ``hidden``: Fisher-KPP u_t = 0.05 u_xx + F(u), F = u (1 - u) hidden; STLSQ must return exactly u and u^2 with
  coefficients within 5%.
* ``advection``: u_t + 30 u_x = 0: plain PINN relative L2 > 0.5, Lagrangian PINN <= 0.05.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import yaml
from pdeforge.families import train
from pdeforge.pinns import (
    HiddenTermPINN,
    InversePINN,
    NetworkConfig,
    OptimConfig,
    dataset_domain,
    formula,
    observations_from_fields,
    sample_observations,
    spectral_reference,
)
from pdeforge.solvers import Burgers, Diffusion, FisherKPP, Grid

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _budget(config: dict, scale: float) -> list[str]:
    """The overrides of a config's Adam steps (``optim.steps``) and L-BFGS iterations (``lbfgs.iters``) at ``scale``
    of its budget: at least 1 each, and a phase the config switches off (0) stays off."""
    steps = config.get("optim", {}).get("steps", 0)
    iters = config.get("lbfgs", {}).get("iters", 0)
    scaled = [max(1, int(n * scale)) if n > 0 else 0 for n in (steps, iters)]
    return ["--optim.steps", str(scaled[0]), "--lbfgs.iters", str(scaled[1])]


def _run(name: str, scale: float, out: Path, *overrides: str) -> dict:
    """Train configs/NAME.yaml at ``scale`` of its budget into ``out`` (replacing a run there); its metrics."""
    path = CONFIGS / f"{name}.yaml"
    return train(
        path,
        [
            *_budget(yaml.safe_load(path.read_text()), scale),
            "--run.run_dir",
            str(out),
            "--run.overwrite",
            "true",
            "--run.progress",
            "false",
            "--run.threads",
            str(THREADS),
            *overrides,
        ],
    )


def _lbfgs_reason(metrics: dict) -> str | None:
    return metrics.get("finish", {}).get("lbfgs", {}).get("reason")


def _progress(entry: dict) -> None:
    if entry["phase"] == "lbfgs" or entry["step"] % 1000 == 0:
        extra = {k: v for k, v in entry.items() if k.startswith(("loss_", "coef_")) or k == "reason"}
        print(f"    {entry['phase']} {entry['step']}: loss {entry['loss']:.3e} {extra}", flush=True)


def _report(name: str, value: str, ok: bool, start: float) -> None:
    print(f"{name:<12} {value:<70} {'PASS' if ok else 'MISS'}  wall {time.perf_counter() - start:8.1f} s", flush=True)


def burgers(seeds: list[int], scale: float, out: Path) -> None:
    start = time.perf_counter()
    errors = []
    for seed in seeds:
        t0 = time.perf_counter()
        m = _run("pinn_burgers", scale, out / f"burgers_{seed}", "--run.seed", str(seed))
        errors.append(m["test"]["rel_l2"])
        print(
            f"  burgers seed {seed}: rel_l2 {errors[-1]:.3e} ({_lbfgs_reason(m)}), {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    mean = sum(errors) / len(errors)
    _report("burgers", f"rel L2 mean {mean:.3e} over seeds {seeds} (target <= 1e-2)", mean <= 1e-2, start)


def allen_cahn(scale: float, out: Path) -> None:
    start = time.perf_counter()
    m = _run("pinn_allen_cahn", scale, out / "allen_cahn")
    e = m["test"]["rel_l2"]
    _report("allen_cahn", f"rel L2 {e:.3e} (target <= 1e-3)", e <= 1e-3, start)


def advection(scale: float, out: Path) -> None:
    start = time.perf_counter()
    plain = _run("pinn_advection", scale, out / "advection")
    lag = _run("pinn_advection_lagrangian", scale, out / "lagrangian")
    ep, el = plain["test"]["rel_l2"], lag["test"]["rel_l2"]
    _report(
        "advection", f"plain rel L2 {ep:.3f} (> 0.5), Lagrangian {el:.2e} (<= 0.05)", ep > 0.5 and el <= 0.05, start
    )


def inverse(scale: float, out: Path) -> None:
    from pdeforge.datasets import TrajectoryDataset
    from pdeforge.solvers.generate import generate

    start = time.perf_counter()
    root = out / "burgers_data"
    generate("burgers_1d", root, n_trajectories=10, resolution=256, seed=0, progress=False)
    ds = TrajectoryDataset(root, split="test")
    times = list(range(11))  # t in [0, 0.5]
    obs = sample_observations(ds, 0, 1000, noise=0.01, seed=0, time_indices=times)
    model = InversePINN(
        Burgers(nu=1.0),
        {"nu": 0.05},
        dataset_domain(ds, times),
        obs,
        NetworkConfig(width=50, depth=4, harmonics=5),
        n_residual=4000,
    )
    report = model.fit(OptimConfig(adam_iters=int(3000 * scale), lbfgs_iters=int(5000 * scale)), _progress)
    nu = model.coefficients.values()["nu"]
    err = abs(nu - 0.01) / 0.01
    _report("inverse", f"nu = {nu:.5f} (true 0.01), error {100 * err:.2f}% (<= 1%); {report}", err <= 0.01, start)


def hidden(scale: float, out: Path) -> None:
    start = time.perf_counter()
    grid = Grid(128, 2 * math.pi)
    x = grid.coords()[0]
    times, traj = spectral_reference(FisherKPP(nu=0.05, r=1.0), grid, (0.5 + 0.45 * torch.sin(x))[None], 0.01, 3.0, 0.1)
    obs = observations_from_fields(traj, times, [x], 1000, noise=0.01, seed=0)
    from pdeforge.pinns import Domain

    model = HiddenTermPINN(
        Diffusion(nu=0.05),
        Domain((0.0,), (2 * math.pi,), (0.0, 3.0), (True,)),
        obs,
        NetworkConfig(width=32, depth=3),
        n_residual=1000,
    )
    model.fit(OptimConfig(adam_iters=int(1000 * scale), lbfgs_iters=int(3000 * scale)), _progress)
    coef, names = model.discover(degree=3, threshold=0.05)
    terms = {n: float(c) for n, c in zip(names, coef) if c != 0}
    ok = set(terms) == {"u", "u^2"} and abs(terms["u"] - 1) <= 0.05 and abs(terms["u^2"] + 1) <= 0.05
    _report("hidden", f"F(u) = {formula(coef, names)} (true +1 u -1 u^2)", ok, start)


FIGURES = ("advection", "hidden", "inverse", "burgers", "allen_cahn")
THREADS = 1  # torch CPU threads of every figure (--threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=FIGURES, default=list(FIGURES))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each iteration budget")
    parser.add_argument("--out", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="pinn_bench_"))
    print(f"run folders under {out}; budget scale {args.scale}", flush=True)
    for name in args.only:
        if name == "burgers":
            burgers(args.seeds, args.scale, out)
        elif name == "allen_cahn":
            allen_cahn(args.scale, out)
        else:
            {"advection": advection, "inverse": inverse, "hidden": hidden}[name](args.scale, out)


if __name__ == "__main__":
    main()
