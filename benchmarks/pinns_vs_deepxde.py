"""pdeforge's PINN side by side with DeepXDE 1.15.0 (PyTorch backend) on the viscous Burgers problem of Raissi et al.

    pip install deepxde==1.15.0        # into the environment that runs this benchmark only: not a pdeforge dependency
    python benchmarks/pinns_vs_deepxde.py                                    # the full protocol (about an hour)
    python benchmarks/pinns_vs_deepxde.py --only timing                      # the time ratios alone (minutes)
    python benchmarks/pinns_vs_deepxde.py --only accuracy --adam 2000 --lbfgs 1000 --runs deepxde same hard
    python benchmarks/pinns_vs_deepxde.py --exchange runs/dde.npz ...        # keep them: runs/dde_seed0.npz, ...
    python benchmarks/pinns_vs_deepxde.py --from-exchange runs/dde.npz --runs same own hard   # no DeepXDE needed

The problem: ``u_t + u u_x = (0.01 / pi) u_xx`` on ``[-1, 1] x [0, 1]``, ``u0 = -sin(pi x)``, ``u(+-1, t) = 0``.
The protocol (every number a flag): tanh MLP 2-20-20-20-1 with Glorot-normal weights and zero biases, float32,
one thread each, 5000 Adam steps at a constant learning rate 1e-3, then 5000 L-BFGS iterations (strong Wolfe,
history 100, gradient tolerance 1e-8, no loss-change tolerance: DeepXDE's settings on both sides), seeds 0, 1, 2;
error: relative L2 against the exact Cole-Hopf solution on 256 x 100 points (x in [-1, 1], t in [0, 1]).

The exchange: DeepXDE draws its points (Hammersley: 2540 in the domain, 80 on x = +-1, 160 at t = 0; its residual
covers all 2780 of them) and its initial weights from the seed; they go through an ``.npz`` file into pdeforge's
PINN (soft initial and boundary conditions, the same mean-square terms), whose input embedding is set to the
identity (pdeforge feeds ``2t - 1`` by default): the same parameters in the same coordinates. ``--only agreement``
checks it: the loss terms at the start, and how far the two runs are apart after ``--agree`` Adam steps. Runs
(``--runs``):

* ``deepxde``: DeepXDE's own ``Model``, its residual written by hand as ``u_t + u u_x - nu u_xx``;
* ``same``: pdeforge, DeepXDE's points and initial weights, the residual of the shared ``Burgers`` equation;
* ``own``: pdeforge's own points (Sobol: 2540 residual, 160 initial, 40 on each end) and initial weights;
* ``hard``: ``own`` with hard initial and boundary conditions (``pdeforge.pinns.PROBLEMS["burgers"]``'s choice);
* ``self_adaptive``, ``rad``, ``rar``, ``annealing``, ``ntk``, ``causal``: ``own`` with one adaptive part each
  (defaults of :class:`~pdeforge.pinns.SelfAdaptiveWeights`, :class:`~pdeforge.pinns.SamplingConfig`,
  :class:`~pdeforge.pinns.LearningRateAnnealingWeights`, :class:`~pdeforge.pinns.NTKWeights`,
  :class:`~pdeforge.pinns.CausalWeights`); ``annealing_unbounded``: the annealing weights as they were before
  issue #36 (every 100 steps, no bound, the first update jumping to the estimate), for the record.

The time ratios: blocks of ``--block`` Adam steps (then ``--lbfgs-block`` L-BFGS iterations) alternate between the
two sides in one process; each side's best block is kept, and the median ratio over the pairs of blocks is printed
too. Both clocks: wall time, and the CPU time of the thread (one thread each: on a shared machine it leaves out the
time other jobs hold the core). DeepXDE's side is its training step alone (``Model._train_step``, no display),
pdeforge's side its public ``PINN.fit`` / ``PINN.lbfgs``. L-BFGS is timed per iteration and per evaluation of the
loss (strong Wolfe takes one or more evaluations per iteration).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from pdeforge.pinns import (
    PINN,
    PROBLEMS,
    AbstractWeighting,
    CausalWeights,
    Dirichlet,
    Domain,
    LearningRateAnnealingWeights,
    NetworkConfig,
    NTKWeights,
    OptimConfig,
    Problem,
    SamplingConfig,
    SelfAdaptiveWeights,
)
from pdeforge.solvers import Burgers

NU = 0.01 / math.pi
WIDTH, DEPTH = 20, 3
RUNS = (
    "deepxde",
    "same",
    "own",
    "hard",
    "self_adaptive",
    "rad",
    "rar",
    "annealing",
    "annealing_unbounded",
    "ntk",
    "causal",
)


# -- the problem and its exact solution -----------------------------------------------------------------------
def initial(x: torch.Tensor) -> torch.Tensor:
    return -torch.sin(math.pi * x[:, :1])


def soft_problem() -> Problem:
    """Raissi's Burgers problem with soft initial and boundary conditions (DeepXDE's loss terms)."""
    domain = Domain((-1.0,), (1.0,), (0.0, 1.0), (False,))
    return Problem(Burgers(nu=NU), domain, initial, boundary=(Dirichlet(0, 0.0),), hard_initial=False)


def cole_hopf(x: np.ndarray, t: np.ndarray, nz: int = 6001, zmax: float = 14.0) -> np.ndarray:
    """The exact solution ``u (len(t), len(x))`` by the Cole-Hopf transform,
    ``u = -int sin(pi (x - s z)) F(x - s z) e^{-z^2} dz / int F(x - s z) e^{-z^2} dz`` with ``s = sqrt(4 nu t)``,
    ``F(y) = exp(-cos(pi y) / (2 pi nu))``: trapezoid rule in ``z`` (the integrand is smooth and decays like
    ``e^{-z^2}``; exponents shifted by their maximum). ``u(x, 0) = u0(x)``."""
    z = np.linspace(-zmax, zmax, nz)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it
    out = np.empty((len(t), len(x)))
    for i, ti in enumerate(t):
        if ti == 0:
            out[i] = -np.sin(np.pi * x)
            continue
        y = x[:, None] - math.sqrt(4 * NU * ti) * z[None, :]
        e = -np.cos(np.pi * y) / (2 * np.pi * NU) - z[None, :] ** 2
        w = np.exp(e - e.max(axis=1, keepdims=True))
        out[i] = -trapezoid(np.sin(np.pi * y) * w, z, axis=1) / trapezoid(w, z, axis=1)
    return out


class Exact:
    """The reference grid: ``nx`` points in ``[-1, 1]`` by ``nt`` times in ``[0, 1]``."""

    def __init__(self, nx: int = 256, nt: int = 100) -> None:
        self.x, self.t = np.linspace(-1, 1, nx), np.linspace(0, 1, nt)
        self.u = cole_hopf(self.x, self.t)
        X, T = np.meshgrid(self.x, self.t)
        self.points = np.stack([X.ravel(), T.ravel()], axis=1)

    def rel_l2(self, u: np.ndarray) -> float:
        u = u.reshape(self.u.shape)
        return float(np.linalg.norm(u - self.u) / np.linalg.norm(self.u))


# -- DeepXDE's side ----------------------------------------------------------------------------------------------
def deepxde_model(seed: int, n_domain: int = 2540, n_boundary: int = 80, n_initial: int = 160):
    """DeepXDE's Burgers model (its example, on t in [0, 1]), compiled for Adam at 1e-3; ``(model, data, net)``."""
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    try:
        import deepxde as dde
    except ImportError:
        raise SystemExit(
            "DeepXDE is not installed here: pip install deepxde==1.15.0 (this benchmark's own environment), "
            "or pass --from-exchange FILE and leave 'deepxde' out of --runs"
        ) from None
    if dde.backend.backend_name != "pytorch":
        raise SystemExit(f"DeepXDE runs on {dde.backend.backend_name}: set DDE_BACKEND=pytorch")
    dde.config.set_random_seed(seed)
    geomtime = dde.geometry.GeometryXTime(dde.geometry.Interval(-1, 1), dde.geometry.TimeDomain(0, 1))

    def pde(x, y):
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - NU * dy_xx

    bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
    ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
    data = dde.data.TimePDE(
        geomtime, pde, [bc, ic], num_domain=n_domain, num_boundary=n_boundary, num_initial=n_initial
    )
    net = dde.nn.FNN([2] + [WIDTH] * DEPTH + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    model.train_state.set_data_train(*data.train_next_batch(None))
    model.train_state.set_data_test(*data.test())
    return model, data, net


def export(data, net) -> dict[str, np.ndarray]:
    """DeepXDE's points (residual: all 2780; boundary; initial) and initial weights, as numpy arrays."""
    nb, ni = data.num_bcs
    out = {
        "residual": data.train_x_all,
        "boundary": data.train_x_bc[:nb],
        "initial": data.train_x_bc[nb : nb + ni],
    }
    for i, layer in enumerate(net.linears):
        out[f"weight{i}"] = layer.weight.detach().cpu().numpy()
        out[f"bias{i}"] = layer.bias.detach().cpu().numpy()
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def deepxde_lbfgs(model, iters: int):
    """Compile ``model`` for ``iters`` L-BFGS iterations with DeepXDE's defaults. DeepXDE 1.15's PyTorch backend runs
    L-BFGS in steps of ``iter_per_step`` iterations, fixed at ``min(1000, maxiter)`` of the defaults when it is
    imported (``set_LBFGS_options`` leaves it): a budget under 1000 would run 1000, so it is set here as
    ``set_LBFGS_options`` would for this ``maxiter``."""
    import deepxde as dde

    dde.optimizers.set_LBFGS_options(maxiter=iters)
    options = dde.optimizers.config.LBFGS_options
    options["iter_per_step"] = min(1000, iters)
    options["fun_per_step"] = options["maxfun"] * options["iter_per_step"] // options["maxiter"]
    model.compile("L-BFGS")


def deepxde_predict(model, points: np.ndarray) -> np.ndarray:
    return model.predict(points.astype(np.float32))[:, 0]


# -- pdeforge's side ---------------------------------------------------------------------------------------------
def pdeforge_from_exchange(ex: dict[str, np.ndarray], dtype: torch.dtype = torch.float32) -> PINN:
    """pdeforge's PINN on DeepXDE's points with DeepXDE's initial weights (soft conditions: the same loss). Its input
    embedding is set to the identity (pdeforge scales t to 2t - 1 by default), so that both sides have the same
    parameters in the same coordinates: Adam, which normalises each parameter's step, then takes the same steps."""
    tiny = SamplingConfig(n_residual=1, n_initial=1, n_boundary=1)
    pinn = PINN(soft_problem(), NetworkConfig(width=WIDTH, depth=DEPTH), tiny, dtype=dtype)

    def split(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.as_tensor(a, dtype=dtype)
        return p[:, :1].contiguous(), p[:, 1:].contiguous()

    pinn.points = split(ex["residual"])
    pinn.initial_points = split(ex["initial"])
    xb, tb = split(ex["boundary"])
    pinn.boundary_sets = [(pinn.boundary_sets[0][0], xb, tb, torch.sign(xb))]
    with torch.no_grad():
        pinn.net.embedding.scale.fill_(1.0)  # raw (x, t), as DeepXDE's network sees them (x is already in [-1, 1])
        pinn.net.embedding.shift.zero_()
        for i, layer in enumerate(pinn.net.body.layers):
            layer.weight.copy_(torch.as_tensor(ex[f"weight{i}"]))
            layer.bias.copy_(torch.as_tensor(ex[f"bias{i}"]))
    return pinn


def pdeforge_own(run: str, seed: int, n_residual: int = 2540, n_initial: int = 160, n_boundary: int = 40) -> PINN:
    """pdeforge's PINN with its own points and initial weights, and the run's adaptive part."""
    problem = PROBLEMS["burgers"]().problem if run == "hard" else soft_problem()
    adaptive = {"rad": "rad", "rar": "rar"}.get(run)
    sampling = SamplingConfig("sobol", n_residual, n_initial, n_boundary, adaptive=adaptive)
    weighting = {
        "self_adaptive": lambda: SelfAdaptiveWeights(
            {"residual": n_residual, "initial": n_initial}, dtype=torch.float32
        ),
        "annealing": lambda: LearningRateAnnealingWeights(),
        "annealing_unbounded": lambda: PreIssue36Annealing(),
        "ntk": lambda: NTKWeights(),
    }.get(run, lambda: None)()
    causal = CausalWeights() if run == "causal" else None
    network = NetworkConfig(width=WIDTH, depth=DEPTH)
    return PINN(problem, network, sampling, weighting, causal, seed=seed, dtype=torch.float32)


class PreIssue36Annealing(AbstractWeighting):
    """The annealing weights as pdeforge had them before issue #36 (``GradNormWeights``), for the record: every 100
    steps ``hat lambda_i = sum_j g_j / g_i`` (no bound), the first update jumping to ``hat lambda``, then
    ``lambda <- 0.9 lambda + 0.1 hat lambda``."""

    def update(self, step, means, values, params) -> None:
        if step % 100:
            return
        norms = {}
        for name, m in means.items():
            grads = torch.autograd.grad(m, params, retain_graph=True, allow_unused=True)
            norms[name] = max(float(torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None))), 1e-30)
        total = sum(norms.values())
        for name, g in norms.items():
            old = self.weights.get(name)
            self.weights[name] = total / g if old is None else 0.9 * old + 0.1 * total / g


def pdeforge_predict(pinn: PINN, points: np.ndarray) -> np.ndarray:
    p = torch.as_tensor(points, dtype=torch.float64)
    return pinn.predict(p[:, :1], p[:, 1:]).double().numpy()[:, 0]


def adam_config(steps: int) -> OptimConfig:
    return OptimConfig(adam_iters=steps, lr=1e-3, decay_rate=1.0, lbfgs_iters=0, log_every=10**9)


def lbfgs_config(iters: int) -> OptimConfig:
    """DeepXDE's L-BFGS settings (history 100, gtol 1e-8, ftol 0), in chunks of at most 1000 as DeepXDE's."""
    chunk = min(iters, 1000)
    return OptimConfig(lbfgs_iters=iters, history_size=100, tolerance_grad=1e-8, tolerance_change=0.0, chunk=chunk)


# -- agreement ---------------------------------------------------------------------------------------------------
def agreement(seed: int, steps: int, exact: Exact) -> dict[str, float]:
    """The same start on both sides (DeepXDE's points and weights): the loss terms before training, then after
    ``steps`` Adam steps each side's error and the relative L2 distance between the two predictions (float32 round-off
    makes the runs drift apart slowly; long runs and L-BFGS amplify it, so the seeds' spread decides there)."""
    model, data, net = deepxde_model(seed)
    pinn = pdeforge_from_exchange(export(data, net))
    state = model.train_state
    dde_losses = model.outputs_losses_train(state.X_train, state.y_train, state.train_aux_vars)[1].detach()
    means, _ = pinn.terms()
    out = {
        f"start {name}": means[name].detach().item() / dde_losses[i].item() - 1
        for i, name in enumerate(("residual", "boundary", "initial"))
    }
    for _ in range(steps):
        model._train_step(state.X_train, state.y_train, state.train_aux_vars)
    pinn.fit(adam_config(steps))
    u_dde, u_pf = deepxde_predict(model, exact.points), pdeforge_predict(pinn, exact.points)
    out.update(
        deepxde=exact.rel_l2(u_dde),
        pdeforge=exact.rel_l2(u_pf),
        distance=float(np.linalg.norm(u_pf - u_dde) / np.linalg.norm(u_dde)),
    )
    return out


# -- accuracy ----------------------------------------------------------------------------------------------------
def accuracy(run: str, seed: int, args, exact: Exact, exchange: dict | None) -> tuple[float, float, float]:
    """``(rel L2 after Adam, after L-BFGS, seconds)`` of one run and seed."""
    start = time.perf_counter()
    if run == "deepxde":
        model, _, _ = deepxde_model(seed)
        model.train(iterations=args.adam, display_every=max(args.adam, 1), verbose=0)
        after_adam = exact.rel_l2(deepxde_predict(model, exact.points))
        if args.lbfgs:
            deepxde_lbfgs(model, args.lbfgs)
            model.train(verbose=0)
        return after_adam, exact.rel_l2(deepxde_predict(model, exact.points)), time.perf_counter() - start
    if run == "same":
        ex = exchange if exchange is not None and seed == args.seeds[0] else None
        if ex is None:  # the points are DeepXDE's Hammersley set for every seed; the weights are the seed's
            ex = load_or_make_exchange(seed, args)
        pinn = pdeforge_from_exchange(ex)
    else:
        pinn = pdeforge_own(run, seed)
    pinn.fit(adam_config(args.adam))
    after_adam = exact.rel_l2(pdeforge_predict(pinn, exact.points))
    if args.lbfgs:
        pinn.lbfgs(lbfgs_config(args.lbfgs))
    return after_adam, exact.rel_l2(pdeforge_predict(pinn, exact.points)), time.perf_counter() - start


def load_or_make_exchange(seed: int, args) -> dict[str, np.ndarray]:
    """DeepXDE's points and seed-``seed`` weights: from ``--from-exchange`` (its name with the seed) or DeepXDE."""
    if args.from_exchange is not None:
        path = _seeded(args.from_exchange, seed)
        with np.load(path) as f:
            return dict(f)
    _, data, net = deepxde_model(seed)
    ex = export(data, net)
    if args.exchange is not None:
        path = _seeded(args.exchange, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **ex)
    return ex


def _seeded(path: Path, seed: int) -> Path:
    return path.with_name(f"{path.stem}_seed{seed}{path.suffix or '.npz'}")


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2e}"
    a = np.asarray(values)
    return f"{a.mean():.2e} +- {a.std(ddof=1):.1e}"


# -- timing ------------------------------------------------------------------------------------------------------
Block = tuple[float, float, int, int]  # wall seconds, this thread's CPU seconds, iterations, loss evaluations


def _clocked(run) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.thread_time()
    out = run()
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def timing(args) -> dict[str, list[Block]]:
    """Per side and phase, each block's :data:`Block`: blocks alternate between the sides, Adam first (``--block``
    steps), then L-BFGS (``--lbfgs-block`` iterations, a fresh optimiser each block on both sides: DeepXDE's
    ``compile("L-BFGS")``, pdeforge's ``PINN.lbfgs``)."""
    model, data, net = deepxde_model(0)
    pinn = pdeforge_from_exchange(export(data, net))
    state = model.train_state

    def dde_step() -> None:
        model._train_step(state.X_train, state.y_train, state.train_aux_vars)

    def dde_adam() -> Block:
        wall, cpu, _ = _clocked(lambda: [dde_step() for _ in range(args.block)])
        return wall, cpu, args.block, args.block

    def pf_adam() -> Block:
        wall, cpu, _ = _clocked(lambda: pinn.fit(adam_config(args.block)))
        return wall, cpu, args.block, args.block

    def dde_lbfgs() -> Block:
        deepxde_lbfgs(model, args.lbfgs_block)
        wall, cpu, _ = _clocked(dde_step)
        opt_state = model.opt.state[model.opt._params[0]]
        return wall, cpu, opt_state["n_iter"], opt_state["func_evals"]

    def pf_lbfgs() -> Block:
        wall, cpu, report = _clocked(lambda: pinn.lbfgs(lbfgs_config(args.lbfgs_block)))
        return wall, cpu, report.iterations, report.evaluations

    blocks: dict[str, list[Block]] = {}
    for phase, sides in (("adam", (dde_adam, pf_adam)), ("lbfgs", (dde_lbfgs, pf_lbfgs))):
        for _ in range(args.blocks):
            for name, side in zip(("deepxde", "pdeforge"), sides):
                blocks.setdefault(f"{phase} {name}", []).append(side())
    return blocks


def timing_table(blocks: dict[str, list[Block]]) -> list[str]:
    """ms per iteration (and per loss evaluation for L-BFGS), wall and this thread's CPU time: each side's best
    block, the ratio pdeforge / DeepXDE of the bests and the median ratio over the pairs of blocks run one after
    the other."""
    lines = [
        "| phase | per | clock | DeepXDE ms (best) | pdeforge ms (best) | ratio of bests | median ratio of pairs |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in ("adam", "lbfgs"):
        for unit, col in (("iteration", 2), ("evaluation", 3)):
            if phase == "adam" and unit == "evaluation":
                continue
            for clock, c in (("wall", 0), ("cpu", 1)):
                per = {
                    side: [1e3 * b[c] / b[col] for b in blocks[f"{phase} {side}"] if b[col]]
                    for side in ("deepxde", "pdeforge")
                }
                pairs = [p / d for d, p in zip(per["deepxde"], per["pdeforge"])]
                best = {side: min(v) for side, v in per.items()}
                lines.append(
                    f"| {phase} | {unit} | {clock} | {best['deepxde']:.2f} | {best['pdeforge']:.2f} | "
                    f"{best['pdeforge'] / best['deepxde']:.3f} | {float(np.median(pairs)):.3f} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", choices=("timing", "agreement", "accuracy"), default=None, help="one part (default: all)"
    )
    parser.add_argument("--agree", type=int, default=500, help="agreement: Adam steps from the same start")
    parser.add_argument("--runs", nargs="*", choices=RUNS, default=list(RUNS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--adam", type=int, default=5000, help="Adam steps (lr 1e-3, constant)")
    parser.add_argument("--lbfgs", type=int, default=5000, help="L-BFGS iterations")
    parser.add_argument("--blocks", type=int, default=5, help="timing: blocks per side (the best is kept)")
    parser.add_argument("--block", type=int, default=50, help="timing: Adam steps per block")
    parser.add_argument(
        "--lbfgs-block",
        type=int,
        default=200,
        help="timing: L-BFGS iterations per block (a fresh optimiser each block, both sides)",
    )
    parser.add_argument("--exchange", type=Path, default=None, help="write DeepXDE's points and weights here")
    parser.add_argument("--from-exchange", type=Path, default=None, help="read them from here (no DeepXDE)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); runs {args.runs}, seeds {args.seeds}", flush=True)

    if args.only in (None, "timing"):
        blocks = timing(args)
        print(
            f"\ntiming: {args.blocks} blocks of {args.block} Adam steps, then of {args.lbfgs_block} L-BFGS iterations, "
            "the sides alternating, one process",
            flush=True,
        )
        print("\n".join(timing_table(blocks)), flush=True)

    exact = Exact() if args.only in (None, "agreement", "accuracy") else None
    if args.only in (None, "agreement"):
        print(f"\nagreement: the same start, {args.agree} Adam steps each side", flush=True)
        print("| seed | loss terms at the start, pdeforge / DeepXDE - 1 | rel L2 DeepXDE | pdeforge | distance |")
        print("|---|---|---|---|---|")
        for seed in args.seeds:
            a = agreement(seed, args.agree, exact)
            start = ", ".join(f"{k.split()[1]} {v:+.1e}" for k, v in a.items() if k.startswith("start"))
            print(f"| {seed} | {start} | {a['deepxde']:.3e} | {a['pdeforge']:.3e} | {a['distance']:.1e} |", flush=True)

    if args.only in (None, "accuracy"):
        exchange = load_or_make_exchange(args.seeds[0], args) if "same" in args.runs else None
        print(f"\naccuracy: {args.adam} Adam steps + {args.lbfgs} L-BFGS iterations, seeds {args.seeds}", flush=True)
        rows = []
        for run in args.runs:
            errors = []
            for seed in args.seeds:
                a, b, seconds = accuracy(run, seed, args, exact, exchange)
                errors.append((a, b))
                print(
                    f"  {run} seed {seed}: rel L2 {a:.3e} after Adam, {b:.3e} after L-BFGS ({seconds:.0f} s)",
                    flush=True,
                )
            rows.append((run, _mean_std([e[0] for e in errors]), _mean_std([e[1] for e in errors])))
        print(f"\n| run | rel L2 after Adam | after L-BFGS |  ({len(args.seeds)} seeds, mean +- std)")
        print("|---|---|---|")
        for run, a, b in rows:
            print(f"| {run} | {a} | {b} |")


if __name__ == "__main__":
    main()
