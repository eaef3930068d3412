"""What the TSM protocol costs on a device, measured per step, to size a run before making it (e.g. the papers' 64^2).

    python benchmarks/tsm_cost.py                                   # CPU, 16^2 learned grid, DNS 256^2
    python benchmarks/tsm_cost.py --device cuda --resolution 64 --dns 256,512,1024

Prints, all float32:
(1) DNS: ms per finite-volume step (van Leer, SSP-RK3) at each DNS grid for batches of 4 and 32, and what the
    protocol's DNS would take: 32 trajectories x (warm-up 20 + 400 frames x 0.02) / dt, with dt from CFL 0.5 at a
    max |u| + |v| of --speed (6.5: about the largest seen in the 256^2 DNS at Re 500), in batches of 32.
(2) Training: seconds per AdamW step (unroll --unroll, batch 4, through the solver) of LI and TSM at --resolution,
    and what --steps of them take; with --compile also with the solver step compiled, and eager / compiled.
(3) Inference: ms per solver step for one trajectory, LI and TSM, and TSM / LI.
The trainings run on random divergence-free fields: the cost of a step does not depend on the values.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass

import torch

from pdeforge._device import synchronize
from pdeforge.operators.tsm import CoarseSolver, TSMModelConfig, build_stencil_model, flow_of
from pdeforge.solvers import fv


@dataclass
class Protocol:
    """The protocol's sizes that set the cost (configs/tsm_kolmogorov.yaml's values)."""

    resolution: int = 32
    history: int = 16
    unroll: int = 8
    batch_size: int = 4
    reynolds: float = 500.0
    warmup_time: float = 20.0
    frame_interval: float = 0.02
    n_frames: int = 400
    dt: float = 0.04


def build(cfg: Protocol, variant: str, scale: float) -> torch.nn.Module:
    """The coarse solver, LI or TSM of the protocol (the config's model options, the protocol's grid and dt)."""
    spec = {
        **asdict(TSMModelConfig()),
        "variant": variant,
        "history": cfg.history,
        "resolution": cfg.resolution,
        "dt": cfg.dt,
        "reynolds": cfg.reynolds,
        "drag": 0.1,
        "velocity_scale": scale,
    }
    if variant == "coarse":
        return CoarseSolver(fv.StaggeredGrid(cfg.resolution), flow_of(spec), cfg.dt)
    return build_stencil_model(spec)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call: one untimed call, then the mean of ``repeats`` (synchronized on CUDA)."""
    fn()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / repeats


def random_frames(n: int, frames: int, resolution: int, seed: int) -> torch.Tensor:
    grid = fv.StaggeredGrid(resolution)
    v = fv.random_divergence_free_velocity(
        grid, n * frames, generator=torch.Generator().manual_seed(seed), dtype=torch.float32
    )
    return v.unflatten(0, (n, frames))


@torch.no_grad()
def dns_cost(resolutions: list[int], device: torch.device, speed: float, cfg: Protocol, repeats: int) -> None:
    print(
        "(1) DNS, ms per FV step (float32); protocol: 32 trajectories x "
        f"{cfg.warmup_time + cfg.n_frames * cfg.frame_interval:g}"
        f" time units, dt from CFL 0.5 at max |u|+|v| = {speed}"
    )
    flow = fv.FlowParameters(viscosity=1.0 / cfg.reynolds, drag=0.1, forcing=fv.KolmogorovForcing())
    for n in resolutions:
        grid = fv.StaggeredGrid(n)
        solver = fv.StaggeredNavierStokes2D(grid, flow)
        dt = fv.stable_time_step(speed, 0.5, grid, flow.viscosity, solver.implicit_viscosity)
        steps = math.ceil((cfg.warmup_time + cfg.n_frames * cfg.frame_interval) / dt)
        row = []
        for batch in (4, 32):
            v = fv.random_divergence_free_velocity(
                grid, batch, generator=torch.Generator().manual_seed(0), dtype=torch.float32, device=device
            )
            row.append(timed(lambda v=v, s=solver, h=dt: s.step(v, h), device, repeats))
        print(
            f"  {n:5d}^2: batch 4 {row[0] * 1e3:8.2f} ms, batch 32 {row[1] * 1e3:8.2f} ms | dt {dt:.2e}, "
            f"{steps} steps per trajectory -> all 32 in one batch: {steps * row[1] / 60:.1f} min"
        )


def train_cost(cfg: Protocol, device: torch.device, steps: int, repeats: int, compiled: bool) -> None:
    print(
        f"(2) training at {cfg.resolution}^2, unroll {cfg.unroll}, batch {cfg.batch_size}, history {cfg.history}: "
        f"s per Adam step, and {steps} steps" + ("; eager, then the solver step compiled" if compiled else "")
    )
    data = random_frames(2, cfg.history + cfg.unroll + 2, cfg.resolution, seed=1).to(device)
    for variant in ("li", "tsm"):
        per = {}
        for mode in ("eager", "compiled") if compiled else ("eager",):
            model = build(cfg, variant, float(data.std())).to(device)
            step = model.compiled_step(data.dtype, device) if mode == "compiled" else None
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=1e-4)

            def optimiser_steps(n: int, model=model, step=step, opt=opt) -> None:
                """``n`` training steps as the family takes them: unrolled loss, backward, clip, AdamW."""
                for k in range(n):
                    s = k % (data.shape[1] - cfg.history - cfg.unroll + 1)
                    win = data[:, s : s + cfg.history + cfg.unroll].repeat(cfg.batch_size // 2 or 1, 1, 1, 1, 1)
                    loss = ((model(win[:, : cfg.history], cfg.unroll, step) - win[:, cfg.history :]) ** 2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                    opt.step()

            t0 = time.perf_counter()
            optimiser_steps(2)  # warm-up (kernels, allocator; compiling)
            synchronize(device)
            t1 = time.perf_counter()
            optimiser_steps(repeats)
            synchronize(device)
            per[mode] = (time.perf_counter() - t1) / repeats
            print(
                f"  {variant:4s} {mode:8s}: {per[mode]:.3f} s per step (first 2 steps {t1 - t0:.1f} s) -> {steps} "
                f"steps {per[mode] * steps / 60:.1f} min"
            )
        if compiled:
            print(f"  {variant:4s} eager / compiled: {per['eager'] / per['compiled']:.2f}x")


@torch.no_grad()
def latency(cfg: Protocol, device: torch.device, repeats: int) -> None:
    frames = random_frames(1, cfg.history, cfg.resolution, seed=2).to(device)
    per = {}
    n_steps = 16
    for variant in ("coarse", "li", "tsm"):
        model = build(cfg, variant, float(frames.std())).to(device)
        per[variant] = timed(lambda m=model: m.rollout(frames, n_steps), device, repeats) / n_steps
    print(
        f"(3) inference, one trajectory at {cfg.resolution}^2, ms per solver step: "
        + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in per.items())
        + f" | TSM / LI {per['tsm'] / per['li']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=16, help="the learned solvers' grid")
    parser.add_argument("--dns", default="256", help="comma-separated DNS grids to time")
    parser.add_argument("--speed", type=float, default=6.5, help="max |u| + |v| that sets the DNS dt")
    parser.add_argument("--unroll", type=int, default=16)
    parser.add_argument("--history", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000, help="training steps to project")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: dns, train, latency")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="(2) also with the solver step compiled (torch.compile), and the ratio to eager",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = Protocol(resolution=args.resolution, unroll=args.unroll, history=args.history)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} thread(s)"
    print(f"torch {torch.__version__} on {device} ({name})")
    skip = set(args.skip.split(",")) - {""}
    if "dns" not in skip:
        dns_cost([int(n) for n in args.dns.split(",")], device, args.speed, cfg, args.repeats)
    if "train" not in skip:
        train_cost(cfg, device, args.steps, args.repeats, args.compile)
    if "latency" not in skip:
        latency(cfg, device, args.repeats)


if __name__ == "__main__":
    main()
