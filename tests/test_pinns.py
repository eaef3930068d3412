"""PINNs on the shared equations: residual consistency with the solver, derivatives, constraints, samplers; the family
on the run skeleton: run folder, init_from, crash + resume, NaN stop, configs, devices."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from pdeforge.families import evaluate_run, load_run, train
from pdeforge.pinns import (
    PROBLEMS,
    AutogradDerivatives,
    Dirichlet,
    Domain,
    NetworkConfig,
    Neumann,
    OptimConfig,
    PINNConfig,
    PINNFamily,
    PINNNet,
    Problem,
    TrigInterpolant,
    build_pinn,
    pde_residual,
    rad,
    rar,
    reference_errors,
    sample_domain,
)
from pdeforge.pinns._domain import boundary_residual
from pdeforge.solvers import (
    EQUATIONS,
    ETDRK,
    Diffusion,
    Grid,
    KdV,
    KuramotoSivashinsky,
    NavierStokes2D,
    NonLocalTermError,
    SpectralDerivatives,
    rollout,
)


def _interpolant(cfg, refine: int):
    """The solver's own solution around t = 3h as a differentiable function (7 snapshots, h = dt / 4)."""
    grid = Grid(tuple(refine * n for n in cfg.grid.shape), cfg.grid.length)
    u0 = cfg.initial_condition(grid, 1, torch.Generator().manual_seed(0), dtype=torch.float64)
    h, sub = cfg.dt / 4, 4
    traj = rollout(ETDRK(cfg.equation, grid, h / sub), u0, 6 * sub, save_every=sub)[0]
    return TrigInterpolant(traj, torch.arange(7, dtype=torch.float64) * h, grid, tol=1e-13), grid, h


@pytest.mark.parametrize("cfg", EQUATIONS, ids=[type(c.equation).__name__ for c in EQUATIONS])
def test_solver_solution_has_small_pinn_residual(cfg):
    """The spectral solution, interpolated exactly, satisfies the autograd residual of the same equation."""
    refine = 2 if cfg.grid.ndim == 2 else 1  # the 2D catalogue grids are coarse for cubic terms: refine
    f, grid, h = _interpolant(cfg, refine)
    gen = torch.Generator().manual_seed(0)
    n = 200 if grid.ndim == 1 else 40  # 2D: thousands of modes, keep the nested autograd cheap
    x = torch.rand(n, grid.ndim, generator=gen, dtype=torch.float64) * torch.tensor(grid.length)
    t = torch.full((n, 1), 3 * h, dtype=torch.float64)
    if isinstance(cfg.equation, NavierStokes2D):
        with pytest.raises(NonLocalTermError, match="inverse Laplacian"):
            pde_residual(cfg.equation, f, x, t)
        return
    r, _ = pde_residual(cfg.equation, f, x, t)
    u_t = (f(x, t + 1e-5) - f(x, t - 1e-5)) / 2e-5
    assert (r.norm() / u_t.norm()).item() < 1e-4
    # and the check can fail: the same field run 20% too fast in time leaves a residual 0.2 |u_t|
    fast = lambda x, t: f(x, 3 * h + 1.2 * (t - 3 * h))  # noqa: E731
    r_fast, _ = pde_residual(cfg.equation, fast, x, t)
    assert (r_fast.norm() / u_t.norm()).item() == pytest.approx(0.2, rel=1e-3)


@pytest.mark.parametrize("alpha", [(1,), (2,), (3,), (4,)])
def test_autograd_equals_spectral_derivatives_at_grid_points(alpha):
    """On a trigonometric polynomial both providers are exact: they agree to round-off at the grid points."""
    grid = Grid(32, 2 * math.pi)
    xg = grid.coords()[0]
    u = (torch.sin(xg) + 0.3 * torch.cos(3 * xg) + 0.1 * torch.sin(5 * xg))[None, None]
    spectral = SpectralDerivatives(grid)(u, alpha)[0, 0]
    f = TrigInterpolant(torch.cat([u, u, u], 0), torch.tensor([0.0, 1.0, 2.0]), grid)
    x = xg[:, None].clone().requires_grad_(True)
    t = torch.zeros_like(x)
    field = f(x, t)
    for forward in (None, 3):
        D = AutogradDerivatives((x,), field=field, function=lambda xx: f(xx, t), forward_from_order=forward)
        assert torch.allclose(D(field, alpha)[:, 0], spectral, atol=1e-9)


@pytest.mark.parametrize("equation", [KdV(), KuramotoSivashinsky()], ids=["KdV", "KS"])
def test_forward_mode_matches_reverse_mode(equation):
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    fn = lambda x, t: net(torch.cat([x, t], 1))  # noqa: E731
    x = torch.rand(64, 1, dtype=torch.float64)
    t = torch.rand(64, 1, dtype=torch.float64)
    r_fwd, _ = pde_residual(equation, fn, x, t, forward_from_order=3)
    r_rev, _ = pde_residual(equation, fn, x, t, forward_from_order=None)
    assert torch.allclose(r_fwd, r_rev, atol=1e-12, rtol=1e-10)
    g_fwd = torch.autograd.grad(r_fwd.pow(2).mean(), net[0].weight)[0]
    g_rev = torch.autograd.grad(r_rev.pow(2).mean(), net[0].weight)[0]
    assert torch.allclose(g_fwd, g_rev, atol=1e-12, rtol=1e-9)


def test_residual_of_exact_heat_solution_is_zero():
    f = lambda x, t: torch.exp(-0.1 * t) * torch.sin(x)  # noqa: E731  u_t = 0.1 u_xx
    x = torch.rand(50, 1, dtype=torch.float64) * 6
    t = torch.rand(50, 1, dtype=torch.float64)
    assert pde_residual(Diffusion(nu=0.1), f, x, t)[0].abs().max() < 1e-14
    assert pde_residual(Diffusion(nu=0.2), f, x, t)[0].abs().max() > 1e-3


def test_bad_points_are_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"t \(N, 1\)"):
        pde_residual(Diffusion(), lambda x, t: x, torch.zeros(5, 1), torch.zeros(5))
    with pytest.raises(ValueError, match="use t\\[:, None\\]"):
        PINNNet(PROBLEMS["advection"]().problem)(torch.zeros(5, 1, dtype=torch.float64), torch.zeros(5))


def test_periodic_embedding_is_exactly_periodic():
    problem = PROBLEMS["advection"]().problem
    net = PINNNet(problem, NetworkConfig(width=16, depth=2, harmonics=3)).double()
    x = torch.rand(20, 1, dtype=torch.float64) * 2 * math.pi
    t = torch.rand(20, 1, dtype=torch.float64)
    assert torch.allclose(net(x, t), net(x + 2 * math.pi, t), atol=1e-12)
    assert not torch.allclose(net(x, t), net(x + 1.0, t), atol=1e-3)


def test_hard_initial_and_dirichlet_conditions_hold_exactly():
    problem = PROBLEMS["burgers"]().problem
    net = PINNNet(problem, NetworkConfig(width=16, depth=2)).double()
    x = torch.linspace(-1, 1, 33, dtype=torch.float64)[:, None]
    assert torch.allclose(net(x, torch.zeros_like(x)), -torch.sin(math.pi * x), atol=1e-14)
    t = torch.rand(10, 1, dtype=torch.float64)
    ends = torch.cat([-torch.ones(5, 1), torch.ones(5, 1)]).double()
    assert net(ends, t).abs().max() < 1e-14
    assert net(torch.zeros(10, 1, dtype=torch.float64), t).abs().max() > 1e-6  # not trivially zero


def test_hard_neumann_and_soft_boundary_residuals():
    dom = Domain((0.0,), (1.0,), (0.0, 1.0), (False,))
    problem = Problem(Diffusion(nu=0.1), dom, lambda x: torch.cos(math.pi * x), boundary=(Neumann(0, hard=True),))
    net = PINNNet(problem, NetworkConfig(width=16, depth=2)).double()
    t = torch.rand(6, 1, dtype=torch.float64)
    x = torch.cat([torch.zeros(3, 1), torch.ones(3, 1)]).double()
    sign = torch.cat([-torch.ones(3, 1), torch.ones(3, 1)]).double()
    assert boundary_residual(Neumann(0), net, x, t, sign).abs().max() < 1e-13
    # soft residuals of a known function: u = x^2 + t has u(1) = 1 + t and du/dn = -0 at 0, +2 at 1
    fn = lambda x, t: x**2 + t  # noqa: E731
    r = boundary_residual(Dirichlet(0, lambda x, t: 1 + t), fn, x, t, sign)
    assert torch.allclose(r[3:], torch.zeros(3, 1, dtype=torch.float64)) and torch.allclose(r[:3], -1 - 0 * t[:3])
    r = boundary_residual(Neumann(0, value=2.0), fn, x, t, sign)
    assert torch.allclose(r[3:], torch.zeros(3, 1, dtype=torch.float64), atol=1e-14)
    assert torch.allclose(r[:3], torch.full((3, 1), -2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="periodic"):
        Problem(Diffusion(), Domain((0.0,), (1.0,), (0.0, 1.0), (True,)), lambda x: x, boundary=(Dirichlet(0),))
    with pytest.raises(ValueError, match="need a Dirichlet or Neumann"):
        Problem(Diffusion(), dom, lambda x: x)


@pytest.mark.parametrize("method", ["uniform", "lhs", "sobol", "grid"])
def test_samplers_fill_the_box(method):
    dom = Domain((-1.0, 0.0), (1.0, 2.0), (0.0, 3.0), (False, True))
    x, t = sample_domain(dom, 4096, method, torch.Generator().manual_seed(0))
    assert x.shape[1] == 2 and t.shape == (x.shape[0], 1)
    assert x[:, 0].min() >= -1 and x[:, 0].max() <= 1 and x[:, 1].min() >= 0 and x[:, 1].max() <= 2
    assert t.min() >= 0 and t.max() <= 3
    means = torch.tensor([x[:, 0].mean(), x[:, 1].mean() - 1, t.mean() - 1.5])
    assert means.abs().max() < (0.05 if method == "uniform" else 0.01)


def test_lhs_puts_one_point_per_stratum_and_sobol_beats_uniform():
    dom = Domain((0.0,), (1.0,), (0.0, 1.0), (False,))
    x, t = sample_domain(dom, 100, "lhs", torch.Generator().manual_seed(3))
    for c in (x[:, 0], t[:, 0]):
        assert sorted((c * 100).floor().long().tolist()) == list(range(100))
    # Sobol points integrate x * t over the unit square (1/4) far better than uniform ones
    err = {
        m: abs(
            float(
                (lambda p: (p[0][:, 0] * p[1][:, 0]).mean())(
                    sample_domain(dom, 1024, m, torch.Generator().manual_seed(1))
                )
            )
            - 0.25
        )
        for m in ("uniform", "sobol")
    }
    assert err["sobol"] < 2e-3 and err["sobol"] < err["uniform"] / 3


def test_burgers_reference_is_odd_and_vanishes_at_the_walls():
    x, t, u = PROBLEMS["burgers"]().reference(256, 11)
    assert u.shape == (11, 1, 256) and x[0] == -1
    assert u[:, 0, 0].abs().max() < 1e-12  # u(-1, t) = u(1, t) = 0 by symmetry
    assert torch.allclose(u[:, 0, 1:], -u[:, 0, 1:].flip(-1), atol=1e-10)
    # the shock at x = 0 steepens: Raissi's data have u_x(0, 1) ~ -150 (here by a centred difference on the grid)
    slope = (u[-1, 0, 129] - u[-1, 0, 127]) / (x[129] - x[127])
    assert -170 < slope < -60


def test_rar_and_rad_pick_high_residual_points():
    dom = Domain((0.0,), (2.0,), (0.0, 1.0), (False,))
    cand = sample_domain(dom, 5000, "uniform", torch.Generator().manual_seed(0))
    bump = torch.exp(-((cand[0] - 1.5) ** 2) / 0.001)  # residual concentrated at x = 1.5
    base = sample_domain(dom, 100, "sobol")
    x, t = rar(base, cand, bump, 50)
    assert x.shape[0] == 150 and torch.equal(x[:100], base[0])
    assert (x[100:] - 1.5).abs().max() < 0.05
    xr, _ = rad(cand, bump, 500, k=1.0, c=0.1, generator=torch.Generator().manual_seed(0))
    near = ((xr - 1.5).abs() < 0.1).double().mean()
    assert near > 0.5  # uniform sampling would put 10% there


# -- the family on the run skeleton ---------------------------------------------------------------------------------
def _train(tmp_path: Path, name: str, values: dict, *overrides: str) -> dict:
    """``pdeforge train`` of the config ``values`` (written as tmp_path/NAME.yaml) into tmp_path/NAME."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return train(path, ["--run.run_dir", str(tmp_path / name), "--run.progress", "false", *overrides])


def _config(values: dict, *overrides: str) -> PINNConfig:
    from pdeforge.training import load_config

    return load_config(PINNConfig, values=values, overrides=list(overrides))


LAGRANGIAN = {
    "family": "pinn",
    "problem": "advection",
    "run": {"seed": 0},
    "model": {"mode": "lagrangian", "width": 20, "depth": 2},
    "data": {"n_residual": 500, "n_initial": 64},
    "optim": {"steps": 100},
    "lbfgs": {"iters": 50},
    "loss": {"log_every": 20},
    "eval": {"nx": 64, "nt": 21},
}


def test_run_writes_a_complete_run_folder(tmp_path):
    metrics = _train(tmp_path, "run", LAGRANGIAN)
    run = tmp_path / "run"
    assert metrics["test"]["rel_l2"] < 0.05  # the Lagrangian PINN learns c = 30 advection in seconds
    for name in (
        "config.yaml",
        "metrics.json",
        "model.safetensors",
        "model.json",
        "train_log.jsonl",
        "solution.png",
        "loss_terms.png",
        "checkpoint/state.pt",
    ):
        assert (run / name).stat().st_size > 0, name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics)) and saved["steps"] == 100 and saved["valid"] == {}
    assert saved["finish"]["lbfgs"]["iterations"] == 50 and saved["finish"]["lbfgs"]["reason"] == "max iterations"
    log = [r for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert log[0]["step"] == 1 and log[-1]["step"] == 100 and all(math.isfinite(r["loss"]) for r in log)
    assert not list(run.glob("*.tmp"))
    assert evaluate_run(run) == {"valid": saved["valid"], "test": saved["test"]}  # recomputed from the saved weights
    model = load_run(run).model
    x, t = torch.rand(8, 1, dtype=torch.float64) * 6, torch.rand(8, 1, dtype=torch.float64)
    fresh = build_pinn(_config(LAGRANGIAN))
    assert not torch.allclose(model.predict(x, t), fresh.predict(x, t))
    bad = [
        ({**LAGRANGIAN, "problem": "nope"}, r"problem 'nope': expected one of 'burgers'"),
        ({**LAGRANGIAN, "optim": {"adam_iters": 3}}, r"optim.adam_iters: unknown option"),
        ({**LAGRANGIAN, "model": {"dtype": "float16"}}, r"model.dtype 'float16': expected one of 'float64', 'float32'"),
        ({**LAGRANGIAN, "loss": {"evrey": 10}}, r"loss.evrey: unknown option; did you mean loss.every\?"),
        ({**LAGRANGIAN, "data": {"preset": "burgers_1d"}}, r"data.root / data.preset: a PINN trains on collocation"),
        ({**LAGRANGIAN, "optim": {"grad_accum": 2}}, r"optim.grad_accum 2: expected 1"),
        ({**LAGRANGIAN, "loss": {"causal_chunks": 4}}, r"are for model.mode forward"),
    ]
    for i, (values, message) in enumerate(bad):
        with pytest.raises(ValueError, match=message):
            _train(tmp_path, f"bad{i}", values)
        assert not (tmp_path / f"bad{i}").exists()  # refused before the run folder is claimed


def test_init_from_continues_a_run_and_rejects_another_network(tmp_path):
    first = _train(tmp_path, "a", LAGRANGIAN)
    a = str(tmp_path / "a")
    # (almost) no optimisation: the continued run is the first run's model (another seed: nothing is redrawn that
    # matters); one Adam step at lr 1e-12, since a run takes at least one
    still = ["--optim.steps", "1", "--optim.lr", "1e-12", "--lbfgs.iters", "0"]
    same = _train(tmp_path, "b", LAGRANGIAN, "--run.seed", "1", "--run.init_from", a, *still)
    assert same["test"]["rel_l2"] == pytest.approx(first["test"]["rel_l2"], rel=1e-6)
    fresh = _train(tmp_path, "c", LAGRANGIAN, *still)
    assert fresh["test"]["rel_l2"] > 1.5 * first["test"]["rel_l2"]
    more = _train(
        tmp_path,
        "d",
        LAGRANGIAN,
        "--run.init_from",
        str(tmp_path / "a" / "model.safetensors"),
        "--optim.steps",
        "1",
        "--optim.lr",
        "1e-12",
        "--lbfgs.iters",
        "20",
    )
    # L-BFGS goes on from where the first run stopped
    assert more["finish"]["lbfgs"]["loss"] < 0.99 * first["finish"]["lbfgs"]["loss"]
    with pytest.raises(ValueError, match=r"does not fit .*shape \(20, 3\), this network has \(30, 3\)"):
        _train(tmp_path, "e", LAGRANGIAN, "--model.width", "30", "--run.init_from", a)
    with pytest.raises(ValueError, match=r"--run.init_from .*nowhere"):
        _train(tmp_path, "f", LAGRANGIAN, "--run.init_from", str(tmp_path / "nowhere"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.safetensors: not a readable safetensors file"):
        _train(tmp_path, "g", LAGRANGIAN, "--run.init_from", str(tmp_path / "junk.safetensors"))


def test_network_parts_compute_what_they_say():
    from pdeforge.pinns import FourierFeatures, RWFLinear

    gen = torch.Generator().manual_seed(0)
    lin = RWFLinear(3, 4, mu=0.5, sigma=0.1, generator=gen).double()
    z = torch.randn(5, 3, dtype=torch.float64)
    w = torch.exp(lin.s) * lin.v
    assert torch.allclose(lin(z), z @ w.T + lin.bias)
    assert 0.3 < float(lin.s.detach().mean()) < 0.7  # s ~ N(0.5, 0.1)
    ff = FourierFeatures(2, 3, sigma=2.0, generator=gen).double()
    z = torch.randn(4, 2, dtype=torch.float64)
    proj = 2 * math.pi * z @ ff.B.double()
    assert torch.allclose(ff(z), torch.cat([torch.cos(proj), torch.sin(proj)], 1))
    assert 1.0 < float(ff.B.std()) < 3.5


@pytest.mark.parametrize("weighting", ["fixed", "annealing", "ntk", "self_adaptive"])
def test_every_weighting_and_network_option_trains(weighting):
    config = _config(
        {
            "problem": "advection",
            "run": {"seed": 1},
            "model": {"width": 16, "depth": 2, "harmonics": 2, "fourier_features": 8, "rwf": True},
            "data": {"n_residual": 256, "n_initial": 64, "method": "lhs"},
            "loss": {
                "weighting": weighting,
                "causal_chunks": 4,
                "causal_epsilon": [1.0],
                **({"every": 10} if weighting in ("annealing", "ntk") else {}),
            },
        }
    )
    model = build_pinn(config)
    records = []
    model.fit(OptimConfig(adam_iters=150, lr=3e-3, log_every=149), records.append)
    first, last = records[0], records[-1]
    total = lambda r: r["loss_initial"] + r["loss_residual"]  # noqa: E731 (unweighted)
    assert total(last) < 0.5 * total(first)
    if weighting in ("annealing", "ntk"):
        assert last["weight_initial"] != pytest.approx(1.0, abs=1e-3)


class _Crash(RuntimeError):
    """Raised by a patched objective to stand for a killed run."""


def _resume_config(case: str) -> dict:
    """A tiny run with L-BFGS and checkpoints mid-Adam on advection (soft initial condition, an exact reference):
    forward with RAD points, causal annealing and learning-rate annealing weights, or with self-adaptive weights; or
    Lagrangian."""
    config = {
        "family": "pinn",
        "problem": "advection",
        "run": {"seed": 0, "checkpoint_every": 15},
        "model": {"width": 16, "depth": 2},
        "data": {"n_residual": 300, "n_initial": 64, "n_boundary": 32},
        "optim": {"steps": 40, "lr": 3e-3, "decay_every": 7},
        "lbfgs": {"iters": 6, "chunk": 3},
        "loss": {"weighting": "annealing", "every": 5, "log_every": 4},
        "eval": {"nx": 32, "nt": 11},
    }
    if case == "rad":
        config["data"].update(adaptive="rad", adaptive_every=7, n_candidates=1000)
        config["loss"].update(causal_chunks=4, causal_epsilon=[1.0, 10.0])
    elif case == "self_adaptive":
        config["loss"] = {"weighting": "self_adaptive", "log_every": 4}
    else:
        config.update(model={"mode": "lagrangian", "width": 16, "depth": 2}, loss={"log_every": 4})
    return config


@pytest.mark.parametrize("case", ["rad", "self_adaptive", "lagrangian"])
def test_a_resumed_run_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch, case):
    """Crash in Adam (between checkpoints) and in L-BFGS, resume each time through the run skeleton: the same weights,
    metrics, loss records and plots as one uninterrupted run, with RAD resampling + causal annealing, or
    self-adaptive weights, in play (and for the Lagrangian PINN)."""
    from pdeforge.checkpoint import load_state
    from pdeforge.pinns import LagrangianPINN
    from pdeforge.pinns._forward import PINN

    config = _resume_config(case)
    whole = _train(tmp_path, "whole", config)
    cls = LagrangianPINN if case == "lagrangian" else PINN
    objective = cls.objective
    calls = {"n": 0, "crash_at": 33}

    def flaky(self, step):
        calls["n"] += 1
        if calls["n"] == calls["crash_at"]:
            raise _Crash
        return objective(self, step)

    def step_saved() -> int:
        return load_state(tmp_path / "cut" / "checkpoint" / "state.pt")["counters"]["step"]

    monkeypatch.setattr(cls, "objective", flaky)
    with pytest.raises(_Crash):  # Adam step 32: resumes from the checkpoint after step 30
        _train(tmp_path, "cut", config)
    assert step_saved() == 30
    state = load_state(tmp_path / "cut" / "checkpoint" / "state.pt")
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"}
    assert set(state["rng"]["generators"]) == ({"points"} if case != "lagrangian" else set())
    resume = ["--run.resume", str(tmp_path / "cut")]
    calls.update(n=0, crash_at=15)  # 40 - 30 = 10 Adam steps, then a few L-BFGS evaluations
    with pytest.raises(_Crash):
        _train(tmp_path, "cut", config, *resume)
    assert step_saved() == 40
    calls.update(n=0, crash_at=-1)
    with pytest.raises(ValueError, match=r"started with other options \(optim.lr 0.003 there, 0.001 now\)"):
        _train(tmp_path, "cut", config, *resume, "--optim.lr", "1e-3")
    # where it runs and how often it saves may change on resume
    resumed = _train(tmp_path, "cut", config, *resume, "--run.checkpoint_every", "100", "--run.device", "cpu")
    drop = lambda m: {k: v for k, v in m.items() if k != "train_seconds"}  # noqa: E731
    assert drop(resumed) == drop(whole)
    a, b = (load_run(tmp_path / d).model.state_dict() for d in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("model.safetensors", "loss_terms.png", "solution.png"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name

    def losses(name: str) -> list[dict]:
        return [
            r for r in map(json.loads, (tmp_path / name / "train_log.jsonl").read_text().splitlines()) if "loss" in r
        ]

    assert losses("cut") == losses("whole")
    with pytest.raises(FileNotFoundError, match="no checkpoint to continue"):
        _train(tmp_path, "fresh", config, "--run.resume", str(tmp_path / "fresh"))


def test_a_nan_loss_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from pdeforge.checkpoint import load_state
    from pdeforge.training import NonFiniteLossError

    loss = PINNFamily.loss

    def nan_from_step_7(self, net, batch):
        value = loss(self, net, batch)
        return value * float("nan") if batch >= 7 else value

    monkeypatch.setattr(PINNFamily, "loss", nan_from_step_7)
    config = _resume_config("rad")
    with pytest.raises(NonFiniteLossError, match=r"pinn: the loss is nan at step 7 \(epoch 0, lr .*state.pt"):
        _train(tmp_path, "run", config, "--run.checkpoint_every", "3")
    state = load_state(tmp_path / "run" / "checkpoint" / "state.pt")
    assert state["counters"]["step"] == 6 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda", "generators"} and state["rng"]["generators"]
    assert len(state["family_state"]["model"]["points"][0]) == 300  # the points as they were at step 6
    assert not (tmp_path / "run" / "metrics.json").exists()


# the references of Burgers and Allen-Cahn are spectral solves of several seconds each: those configs run with -m slow
def test_a_pinn_run_is_one_process():
    from pdeforge.training import Environment

    with pytest.raises(ValueError, match="a PINN run is one process .* without torchrun"):
        PINNFamily(_config(LAGRANGIAN), Environment(torch.device("cpu"), rank=0, world=2))


_HEAVY = ("pinn_burgers", "pinn_allen_cahn")
_CONFIGS = [
    pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.stem in _HEAVY else [])
    for p in sorted((Path(__file__).resolve().parents[1] / "configs").glob("pinn_*.yaml"))
]


def test_problem_names_of_the_config_are_the_problems():
    from pdeforge.pinns._config import PROBLEM_NAMES

    assert set(PROBLEM_NAMES) == set(PROBLEMS)


@pytest.mark.parametrize("path", _CONFIGS)
def test_every_pinn_config_runs_tiny_and_evaluates_the_same(path, tmp_path):
    """Each shipped config as it is, 2 Adam steps (and at most 2 L-BFGS iterations: a smoke run caps both), few
    points and small networks, a coarse grid."""
    values = yaml.safe_load(path.read_text())
    assert values["family"] == "pinn" and values["optim"]["steps"] > 0
    small = [
        "--data.n_residual",
        "64",
        "--data.n_initial",
        "16",
        "--data.n_boundary",
        "8",
        "--data.n_candidates",
        "128",
        "--model.width",
        "8",
        "--model.depth",
        "1",
        "--eval.nx",
        "32",
        "--eval.nt",
        "5",
    ]
    run = tmp_path / "run"
    metrics = train(path, ["--run.max_steps", "2", "--run.run_dir", str(run), "--run.progress", "false", *small])
    assert metrics["steps"] == 2 and math.isfinite(metrics["test"]["rel_l2"])
    if values.get("lbfgs", {}).get("iters"):
        assert metrics["finish"]["lbfgs"]["iterations"] <= 2
    saved = json.loads((run / "metrics.json").read_text())
    assert evaluate_run(run) == {"valid": saved["valid"], "test": saved["test"]}
    loaded = load_run(run)
    assert loaded.envelope["family"] == "pinn" and loaded.config.problem == values["problem"]


def _device_config(case: str) -> dict:
    """A tiny float64 run with L-BFGS and a checkpoint mid-Adam: forward mode with RAD points, causal and annealing
    weights, or with self-adaptive weights, or the Lagrangian PINN."""
    config = {
        "family": "pinn",
        "problem": "advection",
        "run": {"seed": 0, "checkpoint_every": 10},
        "model": {"width": 16, "depth": 2},
        "data": {"n_residual": 200, "n_initial": 32},
        "optim": {"steps": 20, "lr": 3e-3, "decay_every": 7},
        "lbfgs": {"iters": 6, "chunk": 3},
        "loss": {"log_every": 4},
        "eval": {"nx": 32, "nt": 11},
    }
    if case == "rad":
        return {
            **config,
            "data": {**config["data"], "adaptive": "rad", "adaptive_every": 7, "n_candidates": 600},
            "loss": {
                "weighting": "annealing",
                "every": 5,
                "causal_chunks": 4,
                "causal_epsilon": [1.0, 10.0],
                "log_every": 4,
            },
        }
    if case == "self_adaptive":
        return {**config, "loss": {"weighting": "self_adaptive", "log_every": 4}}
    return {**config, "model": {**config["model"], "mode": "lagrangian"}}


def _outputs(run_dir: Path) -> dict:
    """What a run writes that does not depend on the clock or the config's wording: weights, plots, metrics, log."""
    out = {name: (run_dir / name).read_bytes() for name in ("model.safetensors", "solution.png", "loss_terms.png")}
    out["metrics"] = {
        k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k != "train_seconds"
    }
    out["log"] = [r for r in map(json.loads, (run_dir / "train_log.jsonl").read_text().splitlines()) if "loss" in r]
    return out


@pytest.mark.parametrize("case", ["rad", "lagrangian"])
def test_device_cpu_and_auto_give_the_same_bytes(tmp_path, monkeypatch, case):
    """device cpu and device auto (the default) where CUDA is not available: the same weights, plots, metrics and
    log."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = _device_config(case)
    _train(tmp_path, "auto", config)
    _train(tmp_path, "cpu", config, "--run.device", "cpu")
    assert _outputs(tmp_path / "cpu") == _outputs(tmp_path / "auto")


def test_a_device_that_is_not_here_is_refused_before_anything_is_written(tmp_path, refused_devices):
    config = _device_config("lagrangian")
    refused_devices(
        f"{tmp_path / 'run.yaml'}: run.device",
        lambda device: _train(tmp_path, "run", config, "--run.device", device),
        tmp_path / "run",
    )
    # a trained run folder loads on the CPU; another device is checked like a config's
    _train(tmp_path, "done", config, "--optim.steps", "2", "--lbfgs.iters", "0")
    assert next(load_run(tmp_path / "done").model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="^load_run: device 'cuda': expected 'cpu' or 'auto'"):
        load_run(tmp_path / "done", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
@pytest.mark.parametrize("case", ["rad", "self_adaptive", "lagrangian"])
def test_a_pinn_run_on_cuda_agrees_with_the_cpu(tmp_path, monkeypatch, case, devices_in):
    """On cuda: the same initial weights and points as on the CPU; Adam + L-BFGS give finite metrics within 1e-6
    (relative) of the CPU's. Float64 throughout, TF32 off: the devices differ by the order of reductions, ~1e-16 per
    operation; noise of 1e-6 on every Adam gradient moves these metrics by < 4e-8, so 1e-6 is far above rounding,
    while a point set, weight or reference on the wrong footing changes the error at O(1e-2). The run folder and the
    checkpoint hold CPU tensors, the weights load on the CPU and score there what they scored on cuda (1e-9); a run
    cut on one device resumes on the other."""
    from pdeforge.pinns import LagrangianPINN
    from pdeforge.pinns._forward import PINN

    config = _device_config(case)
    on = {d: build_pinn(_config(config), d) for d in ("cpu", "cuda")}
    assert next(on["cuda"].parameters()).is_cuda and on["cuda"].points[0].is_cuda
    pairs = zip(on["cuda"].state_dict().values(), on["cpu"].state_dict().values())
    assert all(torch.equal(a.cpu(), b) for a, b in pairs)
    assert all(torch.equal(a.cpu(), b) for a, b in zip(on["cuda"].points, on["cpu"].points))

    cpu = _train(tmp_path, "cpu", config, "--run.device", "cpu")
    gpu = _train(tmp_path, "gpu", config, "--run.device", "cuda")
    assert all(math.isfinite(v) for v in gpu["test"].values())
    assert gpu["test"] == pytest.approx(cpu["test"], rel=1e-6)
    assert gpu["finish"]["lbfgs"]["loss"] == pytest.approx(cpu["finish"]["lbfgs"]["loss"], rel=1e-6)
    assert gpu["finish"]["lbfgs"]["iterations"] == cpu["finish"]["lbfgs"]["iterations"] == 6

    state = torch.load(tmp_path / "gpu" / "checkpoint" / "state.pt", weights_only=True)
    assert devices_in(state) == {"cpu"}
    model = load_run(tmp_path / "gpu").model
    assert next(model.parameters()).device.type == "cpu"
    test, _, _ = reference_errors(model, PROBLEMS[config["problem"]](), config["eval"]["nx"], config["eval"]["nt"])
    assert test == pytest.approx(gpu["test"], rel=1e-9)

    # cut at Adam step 12 (checkpoint after step 10) on one device, resumed on the other: the other's whole run
    cls = LagrangianPINN if case == "lagrangian" else PINN
    objective, calls = cls.objective, {"n": 0}

    def flaky(self, step):
        calls["n"] += 1
        if calls["n"] == 13:
            raise _Crash
        return objective(self, step)

    for first, then, whole in (("cuda", "cpu", cpu), ("cpu", "cuda", gpu)):
        calls["n"] = 0
        monkeypatch.setattr(cls, "objective", flaky)
        with pytest.raises(_Crash):
            _train(tmp_path, f"cut_{first}", config, "--run.device", first)
        monkeypatch.setattr(cls, "objective", objective)
        resumed = _train(
            tmp_path, f"cut_{first}", config, "--run.device", then, "--run.resume", str(tmp_path / f"cut_{first}")
        )
        assert resumed["test"] == pytest.approx(whole["test"], rel=1e-6), (first, then)
