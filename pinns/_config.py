"""The PINN family's config: a problem, collocation points, the network, the loss weighting, Adam, L-BFGS.

    family: pinn
    problem: burgers        # a key of PROBLEMS: burgers | allen_cahn | advection
    run:   {seed: 0, checkpoint_every: 1000}
    data:  {method: sobol, n_residual: 8000}                  # collocation points (no dataset: root/preset empty)
    optim: {steps: 5000, lr: 1e-3, decay_rate: 0.9, decay_every: 1000}   # Adam, smooth exponential decay
    model: {mode: forward, dtype: float64, width: 100, depth: 5}
    loss:  {weighting: fixed, causal_chunks: 0, amplification: 0}
    lbfgs: {iters: 15000, chunk: 500}                         # after Adam, on the last points and frozen weights
    eval:  {nx: 256, nt: 101}                                 # the reference grid of the test metrics

No torch here: a config is checked before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..training.config import DataSection, OptimSection, RunSection, option, section

__all__ = ["PINNConfig", "PINNData", "PINNModel", "PINNLoss", "PINNLBFGS", "PINNEval", "PROBLEM_NAMES"]

#: the names of :data:`pdeforge.pinns.PROBLEMS` (listed here so the config loads without torch; a test keeps them equal)
PROBLEM_NAMES = ("burgers", "allen_cahn", "advection")


@dataclass
class PINNData(DataSection):
    """Collocation points in the problem's space-time box. A PINN trains on points, not on a dataset: ``root`` and
    ``preset`` stay empty (refused if given)."""

    method: str = option("sobol", "how points are drawn", choices=("uniform", "lhs", "sobol", "grid"))
    n_residual: int = option(4096, "residual points", min=1)
    n_initial: int = option(256, "points at t0 for a soft initial condition", min=0)
    n_boundary: int = option(128, "points per end of each soft-boundary dimension", min=0)
    resample_every: int = option(0, "draw fresh residual points every this many Adam steps (0: keep them)", min=0)
    adaptive: str = option(
        "none",
        "residual-based adaptive points: rar (add the worst) | rad (redraw by |r|)",
        choices=("none", "rar", "rad"),
    )
    adaptive_every: int = option(1000, "Adam steps between adaptive refinements", min=1)
    n_candidates: int = option(20000, "uniform candidates the adaptive methods score", min=1)
    rar_k: int = option(100, "rar: candidates added each time", min=1)
    rad_k: float = option(1.0, "rad: p ~ |r|^k / mean + c, the exponent k", min=0)
    rad_c: float = option(1.0, "rad: the floor c", min=0)


@dataclass
class PINNModel:
    """The network: forward (``u(x, t)``) or Lagrangian (characteristics + state, Mojgani et al. 2023)."""

    mode: str = option(
        "forward", "forward | lagrangian (advection-dominated problems)", choices=("forward", "lagrangian")
    )
    dtype: str = option("float64", "parameters and points (lagrangian: float64 always)", choices=("float64", "float32"))
    width: int = option(100, "hidden width (PINNacle: 100)", min=1)
    depth: int = option(5, "hidden layers (PINNacle: 5)", min=1)
    harmonics: int = option(1, "Fourier modes per periodic dimension in the input embedding", min=0)
    fourier_features: int = option(0, "random Fourier features (0: none)", min=0)
    fourier_sigma: float = option(1.0, "scale of the random Fourier features", positive=True)
    rwf: bool = option(False, "random weight factorisation (Wang et al. 2023)")


@dataclass
class PINNLoss:
    """How the loss terms (residual, initial, boundary) are weighted (forward mode)."""

    weighting: str = option(
        "fixed",
        "fixed | annealing (learning-rate annealing, Wang, Teng & Perdikaris 2021, gradient-norm form) | ntk "
        "(Wang, Yu & Perdikaris 2022) | self_adaptive (McClenny & Braga-Neto 2023: fixed points only); measured "
        "against fixed in docs/results/pinns.md",
        choices=("fixed", "annealing", "ntk", "self_adaptive"),
    )
    weights: dict = option({}, "initial weight of each term (residual, initial, boundary; missing: 1)")
    every: int = option(1000, "annealing | ntk: Adam steps between weight updates (the authors': 1000)", min=1)
    alpha: float = option(0.9, "annealing | ntk: moving average, the share of the old weight", min=0)
    n_points: int = option(16, "ntk: points per term in the kernel trace", min=1)
    sa_lr: float = option(5e-3, "self_adaptive: learning rate of the per-point weights' ascent", positive=True)
    causal_chunks: int = option(
        0, "causal weights (Wang, Sankaran & Perdikaris 2024): time chunks (0: off, else >= 2)", min=0
    )
    causal_epsilon: list = option([1.0], "causal tolerance; several: annealed, the next once all of time is resolved")
    amplification: float = option(
        0.0, "residuals weighted by exp(power max(df/du, 0) (T - t)): the power (0: off)", min=0
    )
    log_every: int = option(100, "Adam steps between records of each loss term (loss_terms.png)", min=1)


@dataclass
class PINNLBFGS:
    """L-BFGS (strong Wolfe) after the Adam steps, on the last points with frozen weights; its report goes to
    ``metrics.json["finish"]``. A smoke run (``run.max_steps``) caps its iterations at ``run.max_steps`` too."""

    iters: int = option(0, "L-BFGS iterations (0: none)", min=0)
    lr: float = option(1.0, "L-BFGS step length", positive=True)
    history_size: int = option(50, "curvature pairs kept", min=1)
    tolerance_grad: float = option(1e-10, "stop at max |grad| below this", min=0)
    tolerance_change: float = option(1e-14, "stop at a loss or step change below this", min=0)
    chunk: int = option(500, "iterations between records of the loss terms (loss_terms.png)", min=1)


@dataclass
class PINNEval:
    """The grid of the test metrics: the problem's reference on ``nx`` points by ``nt`` times."""

    nx: int = option(256, "points in space", min=2)
    nt: int = option(101, "times", min=2)


@dataclass
class PINNConfig:
    """A PINN on a named problem: Adam through the run skeleton (``optim``), then L-BFGS (``lbfgs``)."""

    family: str = option("pinn", "the family", choices=("pinn",))
    problem: str = option(
        "burgers", "the named problem (equation, domain, conditions, reference)", choices=PROBLEM_NAMES
    )
    run: RunSection = section(lambda: RunSection(checkpoint_every=1000), "the run (seed: weights and points)")
    data: PINNData = section(PINNData, "collocation points")
    optim: OptimSection = section(
        lambda: OptimSection(
            steps=1000,
            lr=1e-3,
            warmup=0.0,
            schedule="exponential",
            decay_rate=0.9,
            decay_every=1000,
            grad_clip=0.0,
            weight_decay=0.0,
        ),
        "Adam (AdamW, weight_decay 0): steps are Adam iterations, each one loss on all points (batch_size, epochs, "
        "eval_every and patience do not apply; grad_accum 1, amp none)",
    )
    model: PINNModel = section(PINNModel, "the network")
    loss: PINNLoss = section(PINNLoss, "loss weighting")
    lbfgs: PINNLBFGS = section(PINNLBFGS, "L-BFGS after Adam")
    eval: PINNEval = section(PINNEval, "the test metrics' grid")
