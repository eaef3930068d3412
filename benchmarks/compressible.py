"""Benchmark the compressible solver: cell-updates per second for 2D Euler on the CPU, against PDEBench's JAX solver.

    python benchmarks/compressible.py                      # pdeforge only: 256^2 and 512^2, float32 and float64
    python benchmarks/compressible.py --pdebench-python /work/envs/pdebench/bin/python \\
        --pdebench-dir PDEBench/pdebench/data_gen/data_gen_NLE/CompressibleFluid
    python benchmarks/compressible.py --device cuda        # the GPU figure (pdeforge)

The problem: PDEBench's 2D compressible data (``2D_Multi_Rand.yaml``: random sine superpositions, Mach 0.1, gamma
5/3, periodic, eta = zeta = 1e-8) at 256^2 and 512^2, one trajectory. A cell-update is one cell advanced by one
full time step: pdeforge's step is SSP-RK2 (two MUSCL-HLLC flux evaluations); PDEBench's (``CFD_multi_Hydra.py``)
is a predictor-corrector of two MUSCL-HLLC flux evaluations plus its split viscous update, on arrays with a padded
z axis (5 planes for ``nz = 1``). pdeforge is timed as the Euler solver (eta = zeta = 0) and with PDEBench's
viscosity 1e-8 (its viscous flux path on).

One thread each (``torch.set_num_threads(1)``; ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``), CPU time of the process (``time.process_time``). PDEBench's run is its own
script, unchanged, called through Hydra in its environment (jax, hydra-core; not a dependency of pdeforge); its
steps are counted by wrapping its ``Courant_HD`` (called once per step) with a ``jax.debug.callback``, and the
compile time is removed by timing two end times and taking the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import textwrap
import time

import torch

from pdeforge.solvers._presets import trajectory_generator
from pdeforge.solvers._presets_compressible import PDEBenchRandom2D
from pdeforge.solvers.compressible import CompressibleSolver, IdealGas

GAMMA = 5.0 / 3.0

DRIVER = textwrap.dedent(
    """
    import json, os, sys, time
    import jax
    import utils
    counter = {"n": 0}
    courant = utils.Courant_HD

    def counted(*args, **kwargs):
        jax.debug.callback(lambda: counter.__setitem__("n", counter["n"] + 1))
        return courant(*args, **kwargs)

    import CFD_multi_Hydra as m
    m.Courant_HD = counted
    n, fin, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    sys.argv = [
        "CFD_multi_Hydra.py", f"--config-path={os.getcwd()}/config", "+args=2D_Multi_Rand.yaml",
        f"++args.nx={n}", f"++args.ny={n}", "++args.numbers=1",
        f"++args.fin_time={fin}", f"++args.dt_save={fin}", "++args.show_steps=1", f"++args.save={out}/",
        "++args.if_show=0",
    ]
    start = time.process_time()
    m.main()
    print(json.dumps({"cpu_s": time.process_time() - start, "steps": counter["n"]}))
    """
)


def pdeforge_rate(n: int, dtype: torch.dtype, device: str, viscous: bool, steps: int) -> dict:
    gas = IdealGas(GAMMA, eta=1e-8, zeta=1e-8) if viscous else IdealGas(GAMMA)
    solver = CompressibleSolver((n, n), 1.0, gas=gas)
    x = solver.cell_centres()
    w = PDEBenchRandom2D(mach=0.1)(x, (1.0, 1.0), GAMMA, trajectory_generator(0, 0))
    u = solver.conserved(w).to(device=device, dtype=dtype)
    dt = solver.max_stable_dt(u)
    with torch.no_grad():
        u = solver.step(u, dt)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        clock = time.perf_counter if device == "cuda" else time.process_time
        start = clock()
        for _ in range(steps):
            u = solver.step(u, dt)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = clock() - start
    assert bool(torch.isfinite(u).all())
    return {"seconds_per_step": seconds / steps, "cell_updates_per_s": n * n * steps / seconds}


def pdebench_rate(python: str, directory: str, n: int, fin_times: tuple[float, float]) -> dict:
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([directory, os.path.dirname(os.path.abspath(directory))]),
    )
    runs = []
    for fin in fin_times:
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run(
                [python, "-c", DRIVER, str(n), str(fin), out],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
            )
        if r.returncode:
            raise RuntimeError(f"PDEBench run failed: {r.stderr[-3000:]}")
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    steps = runs[1]["steps"] - runs[0]["steps"]
    seconds = runs[1]["cpu_s"] - runs[0]["cpu_s"]
    return {
        "runs": runs,
        "seconds_per_step": seconds / steps,
        "cell_updates_per_s": n * n * steps / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pdebench-python", default=None)
    ap.add_argument("--pdebench-dir", default=None, help="PDEBench's data_gen_NLE/CompressibleFluid folder")
    ap.add_argument("--pdebench-times", default="0.002,0.03", help="two end times; the rate is from the difference")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {"load_average": os.getloadavg(), "device": args.device}
    for n in (int(s) for s in args.sizes.split(",")):
        row = {}
        for name, dtype, viscous in (
            ("pdeforge_float32_euler", torch.float32, False),
            ("pdeforge_float32_eta1e-8", torch.float32, True),
            ("pdeforge_float64_euler", torch.float64, False),
        ):
            row[name] = pdeforge_rate(n, dtype, args.device, viscous, args.steps)
            print(n, name, row[name], flush=True)
        if args.pdebench_python and args.pdebench_dir:
            times = tuple(float(t) for t in args.pdebench_times.split(","))
            row["pdebench_jax_float32"] = pdebench_rate(args.pdebench_python, args.pdebench_dir, n, times)
            print(n, "pdebench_jax_float32", row["pdebench_jax_float32"], flush=True)
            ratio = (
                row["pdeforge_float32_eta1e-8"]["cell_updates_per_s"]
                / row["pdebench_jax_float32"]["cell_updates_per_s"]
            )
            row["speed_ratio_pdeforge_viscous_over_pdebench"] = ratio
        results[str(n)] = row
    results["load_average_end"] = os.getloadavg()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
