"""Benchmark the finite-volume Navier-Stokes solver against google's jax-cfd 0.2.1, side by side in one process.

    python benchmarks/fv.py                 # 64^2 B=1, 128^2 B=8, 256^2 B=4; forward Euler and SSP-RK3; 1000 steps
    python benchmarks/fv.py --quick         # one timed repetition instead of three
    python benchmarks/fv.py --cases 1,2 --schemes euler --steps 300

jax-cfd is not a dependency of pdeforge: install it into an environment of its own that also sees pdeforge, e.g.

    python -m venv --system-site-packages /work/envs/jaxcfd      # from the python that has torch and pdeforge
    /work/envs/jaxcfd/bin/pip install jax-cfd==0.2.1 tree-math   # jax, jaxlib, numpy, scipy come along if missing
    /work/envs/jaxcfd/bin/python benchmarks/fv.py

(a venv made from another venv's python sees that python's base site-packages only: a ``.pth`` line
``import site; site.addsitedir('<the other venv>/lib/python3.X/site-packages')`` makes it see torch and pdeforge.)
Without jax-cfd the pdeforge columns are printed alone.

The same scheme in both: MAC grid on [0, 2 pi)^2, van Leer face values (jax-cfd: ``apply_tvd_limiter`` on
``lax_wendroff`` with its Courant factor switched off, i.e. called with ``dt = 0``), explicit 5-point viscosity
``nu = 0.01``, Kolmogorov forcing ``sin(4 y)`` with drag 0.1 (jax-cfd: ``simple_turbulence_forcing``), the FFT
pressure projection after every stage (jax-cfd: ``solve_fast_diag(implementation="rfft")``), forward Euler or SSP-RK3
(jax-cfd: ``navier_stokes_rk`` with that tableau), float32, the same initial velocity (pdeforge's
``random_divergence_free_velocity``, peak wavenumber 4, max speed 1, projected), ``dt`` from CFL 0.5 at speed 4.
jax-cfd has no batch axis: its step is ``jax.vmap``-ed over the batch, the steps run in one ``jax.lax.scan``
(``funcutils.repeated``), jit-compiled.

Timing: the CPU time of the process (``time.process_time``; on a shared machine what other programs do stalls the
wall clock, not this; XLA's threads belong to the process and are counted), one thread each (``torch``:
``set_num_threads(1)``; XLA: ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``). Warm: the best
of ``--repeats`` runs of ``--steps`` steps after a first one. Cold: construction of the solver + (jax-cfd: tracing
and compilation) + the first run; pdeforge's figure also includes loading its compiled step from the on-disk cache
of ``torch.utils.cpp_extension`` (once per process, counted in every cold figure). The first-ever build of that op
on a machine (~20-40 s, once) is printed on its own line when it happens in this run. The reference column is the
eager step (``StaggeredNavierStokes2D.reference_step``) per step, over ``--reference-steps`` steps: the cost before
the compiled step, and the path gradients still take.

Agreement: the largest difference of the two end states after ``--steps`` steps, absolute and relative to the
largest velocity. The flow is chaotic: float32 round-off (~1e-7) grows along the run, more on long runs in time.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from pdeforge._device import synchronize
from pdeforge.solvers import KolmogorovForcing
from pdeforge.solvers._fv_native import BUILD_SECONDS, native_op
from pdeforge.solvers.fv import (
    FORWARD_EULER,
    SSP_RK3,
    ButcherTableau,
    FlowParameters,
    StaggeredGrid,
    StaggeredNavierStokes2D,
    random_divergence_free_velocity,
    stable_time_step,
)


@dataclass(frozen=True)
class Case:
    n: int
    batch: int


CASES = (Case(64, 1), Case(128, 8), Case(256, 4))
SCHEMES = {"euler": FORWARD_EULER, "rk3": SSP_RK3}
NU, DRAG, WAVENUMBER, AMPLITUDE, CFL, SPEED = 0.01, 0.1, 4, 1.0, 0.5, 4.0
DEVICE = torch.device("cpu")  # set by main()
CLOCK = time.process_time  # set by main(): CPU time on the CPU, the wall clock on a GPU


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn) -> tuple[object, float]:
    synchronize(DEVICE)
    t0 = CLOCK()
    out = fn()
    synchronize(DEVICE)
    return out, CLOCK() - t0


def best(fn, repeats: int) -> float:
    return min(timed(fn)[1] for _ in range(repeats))


def setup(case: Case) -> tuple[StaggeredGrid, float, torch.Tensor]:
    grid = StaggeredGrid(case.n)
    dt = stable_time_step(SPEED, CFL, grid, NU)
    solver = StaggeredNavierStokes2D(grid, flow())
    v0 = random_divergence_free_velocity(grid, case.batch, 1.0, 4.0, torch.Generator().manual_seed(0))
    return grid, dt, solver.project(v0).float().to(DEVICE)


def flow() -> FlowParameters:
    return FlowParameters(NU, DRAG, KolmogorovForcing(wavenumber=WAVENUMBER, amplitude=AMPLITUDE))


@torch.no_grad()
def pdeforge_case(case: Case, tableau: ButcherTableau, steps: int, repeats: int, reference_steps: int):
    """(end state, warm s, cold s without the op's load, reference s per step)."""
    grid, dt, v0 = setup(case)

    def cold():
        solver = StaggeredNavierStokes2D(grid, flow(), tableau=tableau)
        return solver, solver.rollout(v0, dt, 2, steps)[:, -1]

    (solver, end), t_cold = timed(cold)
    t_warm = best(lambda: solver.rollout(v0, dt, 2, steps), repeats)
    t_ref = math.nan
    if reference_steps:

        def reference():
            v = v0
            for _ in range(reference_steps):
                v = solver.reference_step(v, dt)
            return v

        t_ref = best(reference, 1) / reference_steps
    return end.cpu(), t_warm, t_cold, t_ref


def jaxcfd_case(case: Case, tableau: ButcherTableau, steps: int, repeats: int):
    """(end state, warm s, cold s) of jax-cfd on the same problem, or None without jax-cfd."""
    try:
        import jax
        import jax_cfd.base as cfd  # noqa: F401
    except ImportError:
        return None
    from jax_cfd.base import (
        advection,
        boundaries,
        equations,
        forcings,
        funcutils,
        grids,
        interpolation,
        pressure,
        time_stepping,
    )

    if not hasattr(jax, "tree_map"):  # removed from jax 0.6; jax-cfd 0.2.1's sum_fields still calls it
        jax.tree_map = jax.tree_util.tree_map
    _, dt, v0 = setup(case)
    u0, w0 = (jax.numpy.asarray(v0[:, c].cpu().numpy()) for c in range(2))

    def build():
        grid = grids.Grid((case.n, case.n), domain=((0, 2 * math.pi), (0, 2 * math.pi)))

        def lax_wendroff_no_courant(c, offset, v, dt_):
            return interpolation.lax_wendroff(c, offset, v, 0.0)  # Courant factor off: linear high-order value

        van_leer = interpolation.apply_tvd_limiter(lax_wendroff_no_courant, limiter=interpolation.van_leer_limiter)

        def convect(v):
            return tuple(advection.advect_general(u, v, interpolation.linear, van_leer, dt) for u in v)

        butcher = time_stepping.ButcherTableau(a=[list(r) for r in tableau.a[1:]], b=list(tableau.b))
        step = equations.semi_implicit_navier_stokes(
            density=1.0,
            viscosity=NU,
            dt=dt,
            grid=grid,
            convect=convect,
            pressure_solve=functools.partial(pressure.solve_fast_diag, implementation="rfft"),
            forcing=forcings.simple_turbulence_forcing(grid, AMPLITUDE, WAVENUMBER, -DRAG, "kolmogorov"),
            time_stepper=lambda equation, time_step: time_stepping.navier_stokes_rk(butcher, equation, time_step),
        )
        bc = boundaries.periodic_boundary_conditions(2)

        def run(u, w):
            velocity = tuple(
                grids.GridVariable(grids.GridArray(x, offset, grid), bc) for x, offset in ((u, (1, 0.5)), (w, (0.5, 1)))
            )
            out = funcutils.repeated(step, steps)(velocity)
            return out[0].data, out[1].data

        return jax.jit(jax.vmap(run))

    def call(fn):
        out = fn(u0, w0)
        jax.block_until_ready(out)
        return out

    def cold():
        fn = build()
        return fn, call(fn)

    t0 = CLOCK()
    fn, out = cold()
    t_cold = CLOCK() - t0
    t_warm = min(timed(lambda: call(fn))[1] for _ in range(repeats))
    end = torch.stack([torch.from_numpy(np.array(o)) for o in out], dim=1)
    return end, t_warm, t_cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timed repetition instead of --repeats")
    parser.add_argument("--repeats", type=int, default=3, help="warm repetitions, the best kept (default 3)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per run (default 1000)")
    parser.add_argument(
        "--cases", default=None, help="comma-separated case numbers: 1 64^2 B=1, 2 128^2 B=8, 3 256^2 B=4"
    )
    parser.add_argument("--schemes", default="euler,rk3", help="comma-separated: euler, rk3 (default both)")
    parser.add_argument("--reference-steps", type=int, default=10, help="steps timing the eager reference (0: skip)")
    parser.add_argument("--device", default="cpu", help="torch device of pdeforge: cpu, cuda (the wall clock there)")
    args = parser.parse_args()
    global DEVICE, CLOCK
    try:
        DEVICE = torch.device(args.device)
        torch.empty(0, device=DEVICE)
    except (RuntimeError, AssertionError) as err:
        raise SystemExit(f"--device {args.device!r} is not usable here: {str(err).splitlines()[0]}") from None
    try:
        cases = [CASES[int(i) - 1] for i in args.cases.split(",")] if args.cases else list(CASES)
        if any(int(i) < 1 for i in (args.cases or "1").split(",")):
            raise IndexError
    except (ValueError, IndexError):
        raise SystemExit(f"--cases {args.cases!r}: expected numbers from 1 to {len(CASES)}, comma-separated") from None
    schemes = args.schemes.split(",")
    if any(s not in SCHEMES for s in schemes):
        raise SystemExit(f"--schemes {args.schemes!r}: expected names from {', '.join(SCHEMES)}, comma-separated")
    if args.repeats < 1 or args.steps < 1 or args.reference_steps < 0:
        raise SystemExit("--repeats and --steps must be >= 1, --reference-steps >= 0")
    repeats = 1 if args.quick else args.repeats

    torch.set_num_threads(1)
    if DEVICE.type == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    else:
        CLOCK = time.perf_counter
    try:
        import jax
        import jax_cfd

        theirs = f"jax {jax.__version__}, jax-cfd {getattr(jax_cfd, '__version__', '?')} on {jax.devices()[0]}"
    except ImportError:
        theirs = "jax-cfd not importable: pdeforge alone (see the docstring to install it)"

    t0 = time.process_time()
    op = native_op() if DEVICE.type == "cpu" else None
    t_load = time.process_time() - t0
    print(f"machine: {machine()}; {load()}")
    print(f"torch {torch.__version__} on {DEVICE}, 1 thread; {theirs}")
    clock = "CPU time of the process" if CLOCK is time.process_time else "wall clock"
    print(f"float32, {args.steps} steps per run, {clock}, warm = best of {repeats}")
    if DEVICE.type == "cpu":
        state = "not built here (reference step)" if op is None else f"loaded in {t_load:.2f} s CPU"
        print(
            f"pdeforge compiled step: {state}; first use in this process took {BUILD_SECONDS[0]:.1f} s wall"
            if BUILD_SECONDS
            else f"pdeforge compiled step: {state}"
        )
    print(
        f"{'case':<12} {'scheme':<6} | {'pdeforge':>9} {'jax-cfd':>9} {'ratio':>6} | {'pdeforge':>9} {'jax-cfd':>9} "
        f"{'ratio':>6} | {'reference':>10} | {'max |diff|':>10} {'relative':>9}"
    )
    print(
        f"{'':<12} {'':<6} | {'warm s':>9} {'warm s':>9} {'j/p':>6} | {'cold s':>9} {'cold s':>9} {'j/p':>6} | "
        f"{'ms/step':>10} |"
    )
    for case in cases:
        for name in schemes:
            tableau = SCHEMES[name]
            end, warm, cold, ref = pdeforge_case(case, tableau, args.steps, repeats, args.reference_steps)
            cold += t_load
            label = f"{case.n}^2 B={case.batch}"
            theirs = jaxcfd_case(case, tableau, args.steps, repeats)
            if theirs is None:
                print(
                    f"{label:<12} {name:<6} | {warm:9.3f} {'-':>9} {'-':>6} | {cold:9.3f} {'-':>9} {'-':>6} | "
                    f"{ref * 1e3:10.2f} |"
                )
                continue
            j_end, j_warm, j_cold = theirs
            diff = (end.double() - j_end.double()).abs().max().item()
            scale = j_end.abs().max().item()
            print(
                f"{label:<12} {name:<6} | {warm:9.3f} {j_warm:9.3f} {j_warm / warm:6.2f} | {cold:9.3f} {j_cold:9.3f} "
                f"{j_cold / cold:6.2f} | {ref * 1e3:10.2f} | {diff:10.1e} {diff / scale:9.1e}",
                flush=True,
            )
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
