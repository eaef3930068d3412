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
* ``adaptive``: no target, a table: each adaptive part (RAD, RAR, causal, amplification, self-adaptive, annealing
  and NTK weights) alone against plain on Allen-Cahn with a soft initial condition, over the seeds
  (``benchmarks/pinns_vs_deepxde.py`` has the same table on Burgers).
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


ADAPTIVE = ("plain", "rad", "rar", "causal", "amplification", "self_adaptive", "annealing", "ntk")


def soft_allen_cahn():
    """The named Allen-Cahn problem with a soft initial condition (so that loss balancing has two terms to balance)."""
    import dataclasses

    from pdeforge.pinns import PROBLEMS

    named = PROBLEMS["allen_cahn"]()
    return dataclasses.replace(named, problem=dataclasses.replace(named.problem, hard_initial=False))


def adaptive_part(named, part: str, seed: int, adam_steps: int, lbfgs_iters: int) -> tuple[float, float]:
    """``named`` (:func:`soft_allen_cahn`) plain or with one adaptive part at its defaults; ``(rel L2 after Adam,
    after L-BFGS)`` against the spectral reference."""
    from pdeforge.pinns import (
        PINN,
        AmplificationWeights,
        CausalWeights,
        LearningRateAnnealingWeights,
        NTKWeights,
        SamplingConfig,
        SelfAdaptiveWeights,
        reference_errors,
    )

    n_residual, n_initial = 2048, 256
    sampling = SamplingConfig("sobol", n_residual, n_initial, adaptive={"rad": "rad", "rar": "rar"}.get(part))
    weighting = {
        "self_adaptive": lambda: SelfAdaptiveWeights(
            {"residual": n_residual, "initial": n_initial}, dtype=torch.float32
        ),
        "annealing": LearningRateAnnealingWeights,
        "ntk": NTKWeights,
    }.get(part, lambda: None)()
    pinn = PINN(
        named.problem,
        NetworkConfig(width=64, depth=4, harmonics=4),
        sampling,
        weighting,
        CausalWeights() if part == "causal" else None,
        seed=seed,
        dtype=torch.float32,
        amplification=AmplificationWeights() if part == "amplification" else None,
    )
    pinn.fit(OptimConfig(adam_iters=adam_steps, log_every=10**9))
    after_adam = reference_errors(pinn, named)[0]["rel_l2"]
    if lbfgs_iters:
        pinn.lbfgs(OptimConfig(lbfgs_iters=lbfgs_iters))
    return after_adam, reference_errors(pinn, named)[0]["rel_l2"]


def adaptive(seeds: list[int], scale: float, out: Path) -> None:
    """Each adaptive part alone against plain on Allen-Cahn (soft initial condition, MLP 64x4 with 4 periodic
    harmonics, float32, 2048 Sobol residual and 256 initial points, 3000 Adam steps + 1000 L-BFGS iterations at
    scale 1): mean +- std of the rel L2 over the seeds."""
    start = time.perf_counter()
    adam_steps, lbfgs_iters = max(1, int(3000 * scale)), int(1000 * scale)
    named = soft_allen_cahn()
    named.reference(256, 101)  # computed once (ETDRK4, N = 4096), kept by the problem
    rows = []
    for part in ADAPTIVE:
        errors = []
        for seed in seeds:
            t0 = time.perf_counter()
            errors.append(adaptive_part(named, part, seed, adam_steps, lbfgs_iters))
            print(
                f"  allen_cahn {part} seed {seed}: rel L2 {errors[-1][0]:.3e} after Adam, {errors[-1][1]:.3e} after "
                f"L-BFGS ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        rows.append((part, *(_spread([e[i] for e in errors]) for i in (0, 1))))
    print(f"| Allen-Cahn, {adam_steps} Adam + {lbfgs_iters} L-BFGS | rel L2 after Adam | after L-BFGS |")
    print("|---|---|---|")
    for part, a, b in rows:
        print(f"| {part} | {a} | {b} |")
    _report("adaptive", f"{len(ADAPTIVE)} parts x {len(seeds)} seeds (a table, no target)", True, start)


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2e}"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.2e} +- {std:.1e}"


FIGURES = ("advection", "hidden", "inverse", "burgers", "allen_cahn", "adaptive")
THREADS = 1  # torch CPU threads of every figure (--threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=FIGURES, default=list(FIGURES[:-1]))
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
        elif name == "adaptive":
            adaptive(args.seeds, args.scale, out)
        else:
            {"advection": advection, "inverse": inverse, "hidden": hidden}[name](args.scale, out)


if __name__ == "__main__":
    main()
