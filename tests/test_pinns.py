"""PINNs on the shared equations: residual consistency with the solver, derivatives, constraints, samplers, run folder."""

import json
import math
from pathlib import Path

import pytest
import torch

from pdeforge.pinns import (
    PROBLEMS,
    AutogradDerivatives,
    Dirichlet,
    Domain,
    NetworkConfig,
    Neumann,
    OptimConfig,
    PINNNet,
    Problem,
    TrigInterpolant,
    load,
    pde_residual,
    rad,
    rar,
    run,
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
    err = {m: abs(float((lambda p: (p[0][:, 0] * p[1][:, 0]).mean())(sample_domain(dom, 1024, m, torch.Generator().manual_seed(1)))) - 0.25)
           for m in ("uniform", "sobol")}
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


def test_run_writes_a_complete_run_folder(tmp_path):
    config = {"family": "pinn", "problem": "advection", "mode": "lagrangian", "seed": 0,
              "network": {"width": 20, "depth": 2}, "sampling": {"n_residual": 500, "n_initial": 64},
              "optim": {"adam_iters": 100, "lbfgs_iters": 50, "log_every": 20}, "eval": {"nx": 64, "nt": 21}}
    metrics = run(config, tmp_path)
    assert metrics["test"]["rel_l2"] < 0.05  # the Lagrangian PINN learns c = 30 advection in seconds
    for name in ("config.yaml", "metrics.json", "model.safetensors", "model.json", "train_log.jsonl",
                 "solution.png", "loss_terms.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"]["rel_l2"] == pytest.approx(metrics["test"]["rel_l2"])
    assert saved["lbfgs"]["iterations"] == 50 and saved["lbfgs"]["reason"] == "max iterations"
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["phase"] == "adam" and json.loads(lines[-1])["phase"] == "lbfgs"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.partial"))
    model = load(tmp_path)
    x, t = torch.rand(8, 1, dtype=torch.float64) * 6, torch.rand(8, 1, dtype=torch.float64)
    from pdeforge.pinns._run import build

    fresh, _ = build(config)
    assert not torch.allclose(model.predict(x, t), fresh.predict(x, t))
    with pytest.raises(ValueError, match="one of"):
        run({**config, "problem": "nope"}, tmp_path / "bad")
    with pytest.raises(ValueError, match="unknown key"):
        run({**config, "optim": {"adam_iter": 3}}, tmp_path / "bad")
    with pytest.raises(ValueError, match=r"config 'dtype' must be one of \['float32', 'float64'\], got 'float16'"):
        run({**config, "dtype": "float16"}, tmp_path / "bad")
    with pytest.raises(ValueError, match=r"'weighting': unknown key\(s\) \['evrey'\]"):
        build({**config, "mode": "forward", "weighting": {"method": "gradnorm", "evrey": 10}})


def test_init_from_continues_a_run_and_rejects_another_network(tmp_path):
    config = {"family": "pinn", "problem": "advection", "mode": "lagrangian", "seed": 0,
              "network": {"width": 20, "depth": 2}, "sampling": {"n_residual": 500, "n_initial": 64},
              "optim": {"adam_iters": 100, "lbfgs_iters": 50, "log_every": 20}, "eval": {"nx": 64, "nt": 21}}
    first = run(config, tmp_path / "a")
    # no optimisation: the continued run is the first run's model (another seed: nothing is redrawn that matters)
    same = run({**config, "seed": 1, "init_from": str(tmp_path / "a"), "optim": {"adam_iters": 0}}, tmp_path / "b")
    assert same["test"]["rel_l2"] == pytest.approx(first["test"]["rel_l2"], rel=1e-12)
    assert same["init_from"] == str(tmp_path / "a" / "model.safetensors")
    fresh = run({**config, "optim": {"adam_iters": 0}}, tmp_path / "c")
    assert fresh["test"]["rel_l2"] > 1.5 * first["test"]["rel_l2"]
    more = run({**config, "init_from": str(tmp_path / "a" / "model.safetensors"),
                "optim": {"adam_iters": 0, "lbfgs_iters": 20}}, tmp_path / "d")
    assert more["final_loss"] < 0.99 * first["final_loss"]  # L-BFGS goes on from where the first run stopped
    with pytest.raises(ValueError, match=r"does not fit .*shape \(20, 3\), this network has \(30, 3\)"):
        run({**config, "network": {"width": 30, "depth": 2}, "init_from": str(tmp_path / "a")}, tmp_path / "e")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run({**config, "init_from": str(tmp_path / "nowhere")}, tmp_path / "f")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.safetensors is not a readable safetensors file"):
        run({**config, "init_from": str(tmp_path / "junk.safetensors")}, tmp_path / "g")


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


@pytest.mark.parametrize("weighting", ["fixed", "gradnorm", "ntk", "self_adaptive"])
def test_every_weighting_and_network_option_trains(weighting, tmp_path):
    from pdeforge.pinns._run import build

    config = {"family": "pinn", "problem": "advection", "seed": 1,
              "network": {"width": 16, "depth": 2, "harmonics": 2, "fourier_features": 8, "rwf": True},
              "sampling": {"n_residual": 256, "n_initial": 64, "method": "lhs"},
              "weighting": {"method": weighting, **({"every": 10} if weighting in ("gradnorm", "ntk") else {})},
              "causal": {"n_chunks": 4, "epsilon": 1.0}}
    model, _ = build(config)
    records = []
    model.fit(OptimConfig(adam_iters=150, lr=3e-3, log_every=149), records.append)
    first, last = records[0], records[-1]
    total = lambda r: r["loss_initial"] + r["loss_residual"]  # noqa: E731 (unweighted)
    assert total(last) < 0.5 * total(first)
    if weighting in ("gradnorm", "ntk"):
        assert last["weight_initial"] != pytest.approx(1.0, abs=1e-3)


class _Crash(RuntimeError):
    """Raised by a patched objective to stand for a killed run."""


@pytest.mark.parametrize("adaptive", ["rad", "self_adaptive", "lagrangian"])
def test_a_resumed_run_ends_where_an_uninterrupted_run_ends(tmp_path, monkeypatch, adaptive):
    """Crash in Adam (between checkpoints) and in L-BFGS, resume each time: the same weights, metrics and log as
    one uninterrupted run, with RAD resampling + causal annealing, or self-adaptive weights, in play (and for the
    Lagrangian PINN)."""
    from pdeforge.pinns import LagrangianPINN
    from pdeforge.pinns._forward import PINN

    sampling = ({"n_residual": 300, "adaptive": "rad", "adaptive_every": 7, "n_candidates": 1000}
                if adaptive == "rad" else {"n_residual": 300})
    config = {"family": "pinn", "problem": "burgers", "seed": 0, "network": {"width": 16, "depth": 2},
              "sampling": {**sampling, "n_initial": 64, "n_boundary": 32},
              "weighting": {"method": "self_adaptive"} if adaptive == "self_adaptive" else {"method": "gradnorm", "every": 5},
              "causal": {"n_chunks": 4, "epsilon": [1.0, 10.0]} if adaptive == "rad" else None,
              "optim": {"adam_iters": 40, "lr": 3e-3, "decay_every": 7, "lbfgs_iters": 6, "chunk": 3, "log_every": 4},
              "checkpoint_every": 15, "eval": {"nx": 32, "nt": 11}}
    cls = PINN
    if adaptive == "lagrangian":
        cls = LagrangianPINN
        config = {**config, "problem": "advection", "mode": "lagrangian", "weighting": None, "causal": None}
    whole = run(config, tmp_path / "whole")

    objective = cls.objective
    calls = {"n": 0, "crash_at": 33}

    def flaky(self, step):
        calls["n"] += 1
        if calls["n"] == calls["crash_at"]:
            raise _Crash
        return objective(self, step)

    monkeypatch.setattr(cls, "objective", flaky)
    with pytest.raises(_Crash):  # Adam step 32: resumes from the checkpoint after step 30
        run(config, tmp_path / "cut")
    assert load_state_step(tmp_path / "cut") == 30
    calls.update(n=0, crash_at=15)  # 40 - 30 = 10 Adam steps, then a few L-BFGS evaluations
    with pytest.raises(_Crash):
        run({**config, "resume": True}, tmp_path / "cut")
    assert load_state_step(tmp_path / "cut") == 40
    calls.update(n=0, crash_at=-1)
    # device may change on resume (here from none, the default cpu, to an explicit cpu)
    resumed = run({**config, "resume": True, "checkpoint_every": 100, "device": "cpu"}, tmp_path / "cut")
    assert resumed["test"] == whole["test"] and resumed["final_loss"] == whole["final_loss"]
    assert resumed["lbfgs"] == whole["lbfgs"]
    a, b = (load(tmp_path / d).state_dict() for d in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "time"}
                          for line in (path / "train_log.jsonl").read_text().splitlines()]
    assert strip(tmp_path / "cut") == strip(tmp_path / "whole")
    # the Adam records' time goes on across the two resumes instead of starting again at 0
    times = [r["time"] for r in map(json.loads, (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines())
             if r["phase"] == "adam"]
    assert times == sorted(times) and len(times) > 3
    with pytest.raises(ValueError, match="started with another config \\(optim differ\\)"):
        run({**config, "resume": True, "optim": {**config["optim"], "lr": 1e-3}}, tmp_path / "cut")
    with pytest.raises(FileNotFoundError, match="has no checkpoint to continue"):
        run({**config, "resume": True}, tmp_path / "fresh")


def load_state_step(run_dir):
    from pdeforge.checkpoint import load_state

    return load_state(run_dir / "checkpoint" / "state.pt")["adam"]["step"]


_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("pinn_*.yaml"))


@pytest.mark.parametrize("path", _CONFIGS, ids=lambda p: p.name)
def test_every_pinn_config_builds(path):
    import yaml

    from pdeforge.pinns._optim import OptimConfig
    from pdeforge.pinns._run import _section, build

    config = yaml.safe_load(path.read_text())
    model, named = build(config)
    optim = _section(config, "optim", OptimConfig)
    assert optim.adam_iters > 0 and named.problem is model.problem


def _device_config(case: str) -> dict:
    """A tiny float64 run with L-BFGS and a checkpoint mid-Adam: forward mode with RAD points, causal and gradnorm
    weights, or with self-adaptive weights, or the Lagrangian PINN."""
    config = {"family": "pinn", "problem": "advection", "seed": 0, "network": {"width": 16, "depth": 2},
              "sampling": {"n_residual": 200, "n_initial": 32},
              "optim": {"adam_iters": 20, "lr": 3e-3, "decay_every": 7, "lbfgs_iters": 6, "chunk": 3, "log_every": 4},
              "checkpoint_every": 10, "eval": {"nx": 32, "nt": 11}}
    if case == "rad":
        return {**config, "sampling": {**config["sampling"], "adaptive": "rad", "adaptive_every": 7, "n_candidates": 600},
                "weighting": {"method": "gradnorm", "every": 5}, "causal": {"n_chunks": 4, "epsilon": [1.0, 10.0]}}
    if case == "self_adaptive":
        return {**config, "weighting": {"method": "self_adaptive"}}
    return {**config, "mode": "lagrangian"}


def _outputs(run_dir: Path) -> dict:
    """What a run writes that does not depend on the clock or the config's wording: weights, plots, metrics, log."""
    out = {name: (run_dir / name).read_bytes() for name in ("model.safetensors", "solution.png", "loss_terms.png")}
    out["metrics"] = {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k != "wall_time_s"}
    out["log"] = [{k: v for k, v in json.loads(line).items() if k != "time"}
                  for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return out


@pytest.mark.parametrize("case", ["rad", "lagrangian"])
def test_device_cpu_and_auto_give_the_bytes_of_a_config_without_device(tmp_path, monkeypatch, case):
    """No device, device cpu and device auto where CUDA is not available: the same weights, plots, metrics and log."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = _device_config(case)
    run(config, tmp_path / "none")
    for device in ("cpu", "auto"):
        run({**config, "device": device}, tmp_path / device)
        assert _outputs(tmp_path / device) == _outputs(tmp_path / "none"), device


def test_a_device_that_is_not_here_is_refused_before_anything_is_written(tmp_path, refused_devices):
    from pdeforge.pinns._run import build

    config = _device_config("lagrangian")
    refused_devices("pinn config", lambda device: run({**config, "device": device}, tmp_path / "run"), tmp_path / "run")
    with pytest.raises(ValueError, match=r"^pinn config: device 0: expected a string \(the default is 'cpu'\)$"):
        build({**config, "device": 0})
    # a trained run folder loads on the CPU whatever device it names; another device is checked like a config's
    run({**config, "optim": {"adam_iters": 2, "lbfgs_iters": 0}}, tmp_path / "done")
    spec = json.loads((tmp_path / "done" / "model.json").read_text())
    spec["config"]["device"] = "cuda"  # as if trained on a GPU
    (tmp_path / "done" / "model.json").write_text(json.dumps(spec))
    assert next(load(tmp_path / "done").parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="^pinn config: device 'cuda': expected 'cpu' or 'auto'"):
        load(tmp_path / "done", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
@pytest.mark.parametrize("case", ["rad", "self_adaptive", "lagrangian"])
def test_a_pinn_run_on_cuda_agrees_with_the_cpu(tmp_path, monkeypatch, case, devices_in):
    """On cuda: the same initial weights and points as on the CPU; Adam + L-BFGS give finite metrics within 1e-6
    (relative) of the CPU's. Float64 throughout, TF32 off: the devices differ by the order of reductions, ~1e-16 per
    operation; measured on the CPU, noise of 1e-6 on every Adam gradient moves these metrics by < 4e-8, so 1e-6 is
    far above rounding, while a point set, weight or reference on the wrong footing changes the error at O(1e-2).
    The run folder and the checkpoint hold CPU tensors, the weights load on the CPU and score there what they scored
    on cuda (1e-9); a run cut on one device resumes on the other."""
    from pdeforge.checkpoint import load_weights
    from pdeforge.pinns import LagrangianPINN
    from pdeforge.pinns._forward import PINN
    from pdeforge.pinns._run import build, evaluate

    config = _device_config(case)
    on = {d: build({**config, "device": d})[0] for d in ("cpu", "cuda")}
    assert next(on["cuda"].parameters()).is_cuda and on["cuda"].points[0].is_cuda
    assert all(torch.equal(a.cpu(), b) for a, b in zip(on["cuda"].state_dict().values(), on["cpu"].state_dict().values()))
    assert all(torch.equal(a.cpu(), b) for a, b in zip(on["cuda"].points, on["cpu"].points))

    cpu = run({**config, "device": "cpu"}, tmp_path / "cpu")
    gpu = run({**config, "device": "cuda"}, tmp_path / "gpu")
    assert all(math.isfinite(v) for v in gpu["test"].values()) and math.isfinite(gpu["final_loss"])
    assert gpu["test"] == pytest.approx(cpu["test"], rel=1e-6)
    assert gpu["final_loss"] == pytest.approx(cpu["final_loss"], rel=1e-6)
    assert gpu["lbfgs"]["iterations"] == cpu["lbfgs"]["iterations"] == 6

    # written from CPU tensors: read without map_location, and the weights score on the CPU what they did on cuda
    state = torch.load(tmp_path / "gpu" / "checkpoint" / "state.pt", weights_only=True)
    assert devices_in(state) == {"cpu"}
    assert all(t.device.type == "cpu" for t in load_weights(tmp_path / "gpu" / "model.safetensors").values())
    model = load(tmp_path / "gpu")
    assert next(model.parameters()).device.type == "cpu"
    test, _, _ = evaluate(model, PROBLEMS[config["problem"]](), config["eval"]["nx"], config["eval"]["nt"])
    assert test == pytest.approx(gpu["test"], rel=1e-9)
    x, t = torch.rand(16, 1, dtype=torch.float64) * 6, torch.rand(16, 1, dtype=torch.float64)
    torch.testing.assert_close(load(tmp_path / "gpu", "cuda").predict(x, t).cpu(), model.predict(x, t), rtol=1e-12, atol=1e-12)

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
            run({**config, "device": first}, tmp_path / f"cut_{first}")
        monkeypatch.setattr(cls, "objective", objective)
        assert load_state_step(tmp_path / f"cut_{first}") == 10
        resumed = run({**config, "device": then, "resume": True}, tmp_path / f"cut_{first}")
        assert resumed["test"] == pytest.approx(whole["test"], rel=1e-6), (first, then)
        assert resumed["final_loss"] == pytest.approx(whole["final_loss"], rel=1e-6), (first, then)
