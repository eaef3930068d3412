"""Benchmark the spectral ETDRK solvers: cost per step against an FFT lower bound, and against exponax.

    python benchmarks/solvers.py            # both jobs, float32, ETDRK4
    python benchmarks/solvers.py --quick    # fewer repetitions
    python benchmarks/solvers.py --threads 2
    python benchmarks/solvers.py --device cuda   # on a GPU (exponax too, if its JAX sees the GPU)

Both libraries get the same number of CPU threads (default 1: on a loaded machine a preempted OpenMP worker
stalls every multi-threaded FFT by a scheduler tick, ~10 ms, which swamps what is measured). With one thread on
the CPU every timing is the CPU time of the process (``time.process_time``: what other programs on a shared
machine do stalls the wall clock, not this; exponax's XLA runs on threads of its own, which it counts);
``--wall-clock`` times the wall clock instead, as on a GPU.

(a) For each job, one step (a rollout of 100 steps saving the last, over 100) is timed against the FFTs the step
    performs (counted with a TorchFunctionMode while a step runs; each kind timed alone on the same shapes, the
    faster of the 1D and n-D entry points): ratio = step time / (sum count x FFT time); and
    against the fewest FFTs we know a pseudo-spectral ETDRK4 can do (per stage: KS in conservative form one
    inverse and one forward; NS vorticity in Basdevant's form two inverse (u, v) and two forward (u v, v^2 - u^2),
    where the advective form u w_x + v w_y needs four inverse and one forward). pdeforge does both.
(b) If ``exponax`` (JAX) imports, the same jobs run there too (jit-compiled, vmapped over the batch; compile
    time excluded), with the agreement of the two trajectories and the time ratio.

Jobs: 1D Kuramoto-Sivashinsky, N = 256, L = 32 pi, batch 50, 500 steps, dt 0.1; 2D Navier-Stokes vorticity
128^2 on [0, 2 pi)^2, batch 16, 200 steps, dt 0.01, nu 1e-3 (exponax's vorticity has the opposite sign: it
is given -w and its answer negated); 2D Kuramoto-Sivashinsky (flame-front form) 128^2, L = 32 pi, batch 50, 200
steps, dt 0.1, the GPU job of the issue (goal: <= 0.5 s for the rollout on a GPU; exponax's README claims under
1 s). exponax's 2D KS has sum_d d_d^4 where pdeforge has the isotropic lap^2, so for that job only the times
compare, not the numbers. Timings depend on the machine and its load; on CUDA every timing ends with a
synchronize.

On a shared 2-core CPU (float32, one thread) the KS 1D step is ~1.25-1.35x its 8 FFTs. Between the FFTs are 11
complex multiply-adds and 4 squares, each ~1-4 us on 50 x 129 modes as ATen calls: the strategy ``rollout`` runs
here (``solvers/_etdrk_strategies.py``, fused flux-square ETDRK on the CPU) runs the steps between two saves in
one call of a compiled op (``solvers/_etdrk_fused.cpp``, built on first use; the multiply-adds in its own loops); its
Python loop, the same operations, is printed for comparison (~1.65-1.8x); the reference step by step is ~2.2x.
Measured and not kept: the loop under torch.compile, one step per call (~3.7x: Inductor hands the FFTs and
complex operations back to ATen one by one, and adds its guards); working on the |k| <= N/3 modes only (the
views and padded transforms cost more than the third of the arithmetic they save); one stacked accumulator op
per stage (fewer launches, more arithmetic: 1.60-1.65x). In (b) every step is saved: the frame's inverse
transform is also the next step's first stage, done once.

On a GPU, ``rollout`` replays the step as a CUDA graph while (a) times each FFT with its own launch, so the ratio
falls below 1 there (0.6-0.8 on an H200) and bounds nothing; (b) is the GPU figure (benchmarks/results/gpu_h200/).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

from pdeforge._device import synchronize
from pdeforge.solvers import (
    ETDRK,
    Grid,
    KuramotoSivashinsky,
    KuramotoSivashinskyFlame,
    LogNormalVorticity,
    NavierStokes2D,
    RandomFourierSeries,
    rollout,
)


@dataclass(frozen=True)
class Job:
    name: str
    equation: object
    grid: Grid
    batch: int
    n_steps: int
    dt: float
    minimal_ffts: tuple[int, int]  # (rfftn, irfftn) per stage, the fewest we know
    same_equation_in_exponax: bool = True  # False: exponax's nearest stepper differs, only the times compare


JOBS = (
    Job("KS 1D N=256 B=50 500 steps dt=0.1", KuramotoSivashinsky(), Grid(256, 32 * math.pi), 50, 500, 0.1, (1, 1)),
    Job("NS 2D 128^2 B=16 200 steps dt=0.01 nu=1e-3", NavierStokes2D(nu=1e-3), Grid((128, 128)), 16, 200, 0.01, (2, 2)),
    Job(
        "KS 2D 128^2 B=50 200 steps dt=0.1",
        KuramotoSivashinskyFlame(),
        Grid((128, 128), 32 * math.pi),
        50,
        200,
        0.1,
        (1, 2),
        same_equation_in_exponax=False,
    ),
)

DEVICE = torch.device("cpu")  # set by main()
CLOCK = time.process_time  # set by main(): the process's CPU time on the CPU, the wall clock on a GPU


def initial_state(job: Job) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if isinstance(job.equation, NavierStokes2D):
        # keep |m| <= N/6 at first: exponax masks the factors of the product to |m| <= 41 (on 128 points) but
        # not the product, pdeforge masks both to |m| <= 42 (N/3); with content above N/6 the comparison
        # would measure the two dealiasing choices rather than the two time steppers
        w = LogNormalVorticity(peak_wavenumber=4.0)(job.grid, job.batch, gen)
        keep = job.grid.dealias_mask(fraction=1 / 3)
        return torch.fft.irfft2(torch.fft.rfft2(w) * keep, s=job.grid.shape).float().to(DEVICE)
    return RandomFourierSeries(max_wavenumber=6)(job.grid, job.batch, gen, dtype=torch.float32).to(DEVICE)


def best_time(fn, repeats: int) -> float:
    """The best of ``repeats`` timed calls of ``fn`` after one untimed call (synchronized on CUDA)."""
    fn()
    synchronize(DEVICE)
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        synchronize(DEVICE)
        times.append(CLOCK() - t0)
    return min(times)


class _CountFFTs(TorchFunctionMode):
    forward, inverse = {"fft_rfft", "fft_rfft2", "fft_rfftn"}, {"fft_irfft", "fft_irfft2", "fft_irfftn"}

    def __init__(self):
        super().__init__()
        self.counts = {"rfftn": 0, "irfftn": 0}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.forward or name in self.inverse:
            self.counts["rfftn" if name in self.forward else "irfftn"] += 1
        return func(*args, **(kwargs or {}))


def count_ffts(stepper: ETDRK, u_hat: torch.Tensor) -> dict[str, int]:
    """How many real-to-complex (``rfft*``) and complex-to-real (``irfft*``) transforms one spectral step runs
    (every ``torch.fft`` call seen by a ``TorchFunctionMode``, however the solver reached it)."""
    with _CountFFTs() as mode:
        stepper.step_spectral(u_hat)
    return mode.counts


def per_call(fn, calls: int, repeats: int) -> float:
    """Seconds per call of ``fn``: the best of ``repeats`` loops of ``calls`` calls."""

    def loop():
        for _ in range(calls):
            fn()

    return best_time(loop, repeats) / calls


def fft_bound(job: Job, repeats: int, calls: int = 100) -> None:
    stepper = ETDRK(job.equation, job.grid, job.dt, order=4)
    u0 = initial_state(job)
    u_hat = stepper.to_spectral(u0)
    dims = tuple(range(-job.grid.ndim, 0))
    counts = count_ffts(stepper, u_hat)
    # the faster of the 1D and n-D entry points (the solver calls the 1D ones on 1D grids)
    forward = (lambda: torch.fft.rfft(u0),) if job.grid.ndim == 1 else ()
    inverse = (lambda: torch.fft.irfft(u_hat, n=job.grid.shape[0]),) if job.grid.ndim == 1 else ()
    t_r = min(per_call(f, calls, repeats) for f in (*forward, lambda: torch.fft.rfftn(u0, dim=dims)))
    t_i = min(
        per_call(f, calls, repeats) for f in (*inverse, lambda: torch.fft.irfftn(u_hat, s=job.grid.shape, dim=dims))
    )
    bound = counts["rfftn"] * t_r + counts["irfftn"] * t_i

    def steps():  # what a rollout runs: `calls` chained steps, saving only the last (its extra FFT pair: 1 % here)
        rollout(stepper, u0, calls, save_every=calls)

    t_step = best_time(steps, repeats) / calls
    stages = len(stepper.tableau.c)
    minimal = stages * (job.minimal_ffts[0] * t_r + job.minimal_ffts[1] * t_i)
    chosen = stepper.strategy(u0, calls)
    compiled = getattr(chosen, "compiled", None) is not None
    print(
        f"  (a) one ETDRK4 step {t_step * 1e3:8.3f} ms | FFTs done per step: "
        f"{counts['rfftn']} rfftn x {t_r * 1e3:.3f} ms"
        f" + {counts['irfftn']} irfftn x {t_i * 1e3:.3f} ms = {bound * 1e3:.3f} ms, ratio {t_step / bound:.2f} | "
        f"minimal {stages * sum(job.minimal_ffts)} FFTs = {minimal * 1e3:.3f} ms, ratio {t_step / minimal:.2f}\n"
        f"      strategy: {chosen.name}{' (compiled op)' if compiled else ''}"
    )
    if compiled:  # the same strategy in its Python loop (where the op cannot be built), for comparison
        in_python = type(chosen)(stepper, u0.dtype, u0.device, compiled=False)
        t_loop = best_time(lambda: advance(in_python, u0, calls), repeats) / calls
        print(f"      its Python loop   {t_loop * 1e3:8.3f} ms, ratio {t_loop / bound:.2f}")


def advance(steps, u0: torch.Tensor, n_steps: int) -> None:
    """``n_steps`` steps of the strategy ``steps`` from ``u0`` (a rollout saving only the last state)."""
    with torch.inference_mode():
        steps.physical(steps.advance(steps.start(u0), n_steps))


def exponax_job(job: Job, u0: torch.Tensor, repeats: int):
    """The same job in exponax, or None if it is not installed. Returns (trajectory (B, T+1, C, *S), seconds)."""
    try:
        import exponax as ex
        import jax
        import jax.numpy as jnp
        import numpy as np
    except ImportError:
        return None
    length, n = job.grid.length[0], job.grid.shape[0]
    if isinstance(job.equation, NavierStokes2D):
        stepper = ex.stepper.NavierStokesVorticity(2, length, n, job.dt, diffusivity=job.equation.nu, order=4)
        sign = -1.0  # exponax's vorticity is u_y - v_x
    else:
        stepper = ex.stepper.KuramotoSivashinskyConservative(1, length, n, job.dt, order=4)
        sign = 1.0
    if isinstance(job.equation, KuramotoSivashinskyFlame):
        stepper = ex.stepper.KuramotoSivashinsky(job.grid.ndim, length, n, job.dt, order=4)
        sign = 1.0
    run = jax.jit(jax.vmap(ex.rollout(stepper, job.n_steps, include_init=True)))
    x0 = jnp.asarray(sign * u0.cpu().numpy())
    seconds = best_time(lambda: run(x0).block_until_ready(), repeats)
    return torch.from_numpy(np.array(sign * run(x0))).to(u0.device), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timing repetition instead of three")
    parser.add_argument("--repeats", type=int, default=3, help="timing repetitions, the best one kept (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and for XLA")
    parser.add_argument("--device", default="cpu", help="torch device of pdeforge's jobs: cpu, cuda, cuda:N")
    parser.add_argument("--wall-clock", action="store_true", help="time the wall clock on the CPU too")
    parser.add_argument(
        "--jobs", default=None, help="comma-separated job numbers to run (1 KS 1D, 2 NS 2D, 3 KS 2D; default all)"
    )
    args = parser.parse_args()
    global DEVICE, CLOCK
    try:
        DEVICE = torch.device(args.device)
        torch.empty(0, device=DEVICE)
    except (RuntimeError, AssertionError) as err:
        raise SystemExit(f"--device {args.device!r} is not usable here: {str(err).splitlines()[0]}") from None
    try:
        picked = [JOBS[int(i) - 1] for i in args.jobs.split(",")] if args.jobs else list(JOBS)
    except (ValueError, IndexError):
        raise SystemExit(f"--jobs {args.jobs!r}: expected numbers from 1 to {len(JOBS)}, comma-separated") from None
    if args.repeats < 1:
        raise SystemExit(f"--repeats {args.repeats}: expected a whole number of at least 1")
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    if DEVICE.type == "cpu":  # exponax on the same kind of device as pdeforge
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave the GPU's memory to both libraries
    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} "
        f"intra_op_parallelism_threads={args.threads}",
    )
    cpu_time = DEVICE.type == "cpu" and args.threads == 1 and not args.wall_clock
    CLOCK = time.process_time if cpu_time else time.perf_counter
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"torch {torch.__version__} on {DEVICE} ({where}); float32, ETDRK4; best of {repeats}, "
        f"{'CPU time of the process' if cpu_time else 'wall clock'}"
    )
    for job in picked:
        print(job.name)
        fft_bound(job, repeats)
        stepper = ETDRK(job.equation, job.grid, job.dt, order=4)
        u0 = initial_state(job)
        ours = rollout(stepper, u0, job.n_steps)
        t_ours = best_time(lambda: rollout(stepper, u0, job.n_steps), repeats)  # noqa: B023 (called here)
        print(f"  (b) pdeforge rollout {t_ours:7.3f} s ({t_ours / job.n_steps * 1e3:.3f} ms/step)")
        theirs = exponax_job(job, u0, repeats)
        if theirs is None:
            print("      exponax not importable: comparison skipped (pip install jax jaxlib exponax)")
            continue
        traj, t_theirs = theirs
        if not job.same_equation_in_exponax:
            print(
                f"      exponax rollout  {t_theirs:7.3f} s | pdeforge / exponax time {t_ours / t_theirs:.2f} | "
                "(another fourth-order operator: the numbers do not compare)"
            )
            continue
        diff = (ours - traj).flatten(2).norm(dim=-1) / traj.flatten(2).norm(dim=-1).clamp_min(1e-30)
        print(
            f"      exponax rollout  {t_theirs:7.3f} s | pdeforge / exponax time {t_ours / t_theirs:.2f} | "
            f"relative L2 difference after 1 step {diff[:, 1].max():.1e}, 10 steps {diff[:, 10].max():.1e}, "
            f"final {diff[:, -1].max():.1e}"
        )


if __name__ == "__main__":
    main()
