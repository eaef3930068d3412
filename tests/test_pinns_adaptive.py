"""The adaptive and learning parts of pdeforge.pinns do their job: weights, causality, L-BFGS reports, inverse,
hidden term."""

import math

import pytest
import torch

from pdeforge.pinns import (
    PINN,
    PROBLEMS,
    CausalWeights,
    Domain,
    HiddenTermPINN,
    InverseCoefficients,
    InversePINN,
    LagrangianPINN,
    LearningRateAnnealingWeights,
    NetworkConfig,
    NTKWeights,
    OptimConfig,
    SamplingConfig,
    SelfAdaptiveWeights,
    dataset_domain,
    lbfgs,
    observations_from_fields,
    polynomial_library,
    sample_observations,
    spectral_reference,
    stlsq,
)
from pdeforge.solvers import Burgers, Diffusion, FisherKPP, Grid

SMALL = NetworkConfig(width=16, depth=2)


def _burgers_pinn(weighting, **sampling):
    problem = PROBLEMS["burgers"]().problem
    return PINN(problem, SMALL, SamplingConfig(n_residual=256, n_initial=64, **sampling), weighting=weighting)


def _soft_advection_pinn(weighting, causal=None):
    return PINN(
        PROBLEMS["advection"](1.0).problem,
        SMALL,
        SamplingConfig(n_residual=256, n_initial=64),
        weighting=weighting,
        causal=causal,
    )


def _quadratic_terms(theta):
    """Terms with known gradient norms at ``theta``: ``3 |theta|^2`` (6 |theta|), ``|theta|^2`` (2 |theta|), and a
    term whose gradient vanishes (already satisfied)."""
    return {"a": 3 * theta.pow(2).sum(), "b": theta.pow(2).sum(), "done": 0 * theta.sum()}


def test_annealing_weights_equalise_the_gradient_norms_of_the_terms():
    """On terms with known gradients: hat lambda_i = mean_j g_j / (g_i + eps mean_j g_j), so every weighted term
    pushes with the same norm; a satisfied term's weight is bounded by 1 / eps (it was unbounded)."""
    theta = torch.randn(50, dtype=torch.float64, requires_grad=True)
    g = 2 * float(theta.detach().norm())  # |grad b|; |grad a| = 3 g; |grad done| = 0
    mean = (3 * g + g + 0) / 3
    w = LearningRateAnnealingWeights(every=1, alpha=0.0)
    w.update(0, _quadratic_terms(theta), {}, [theta])
    assert w.weights["a"] == pytest.approx(mean / (3 * g + 1e-5 * mean), rel=1e-12)
    assert w.weights["b"] == pytest.approx(mean / (g + 1e-5 * mean), rel=1e-12)
    assert w.weights["done"] == pytest.approx(1e5, rel=1e-12)
    assert w.weights["a"] * 3 * g == pytest.approx(w.weights["b"] * g, rel=1e-4)  # equal weighted gradient norms
    # eps = 0 is the unbounded form: the satisfied term's weight runs away
    unbounded = LearningRateAnnealingWeights(every=1, alpha=0.0, eps=0.0)
    unbounded.update(0, _quadratic_terms(theta), {}, [theta])
    assert unbounded.weights["done"] > 1e20


def test_annealing_weights_start_from_one_and_move_by_the_moving_average():
    """The weights in use start at 1 (what ``combine`` uses for a missing weight) and move as
    lambda <- alpha lambda + (1 - alpha) hat every ``every`` steps: after n updates with a fixed hat,
    lambda = hat + alpha^n (1 - hat). (They used to jump to hat at the first update.)"""
    theta = torch.randn(50, dtype=torch.float64, requires_grad=True)
    terms = {k: v for k, v in _quadratic_terms(theta).items() if k != "done"}
    hat = LearningRateAnnealingWeights(every=1, alpha=0.0)
    hat.update(0, terms, {}, [theta])
    w = LearningRateAnnealingWeights(every=3, alpha=0.9)
    for step in range(7):  # updates at steps 0, 3, 6
        w.update(step, terms, {}, [theta])
        if step == 1:
            assert w.weights["a"] == pytest.approx(0.9 + 0.1 * hat.weights["a"], rel=1e-12)
    for name in terms:
        assert w.weights[name] == pytest.approx(hat.weights[name] + 0.9**3 * (1 - hat.weights[name]), rel=1e-12)
    with pytest.raises(ValueError, match="eps"):
        LearningRateAnnealingWeights(eps=-1.0)


def test_annealing_weights_of_a_pinn_come_from_its_terms_gradients():
    """In a PINN, ``update`` uses the gradient norms of the unweighted terms over the network's parameters."""
    w = LearningRateAnnealingWeights(every=1, alpha=0.5)
    pinn = _soft_advection_pinn(w)
    means, values = pinn.terms()
    params = list(pinn.net.parameters())
    norms = {
        k: float(
            torch.sqrt(
                sum(
                    g.pow(2).sum()
                    for g in torch.autograd.grad(m, params, retain_graph=True, allow_unused=True)
                    if g is not None
                )
            )
        )
        for k, m in means.items()
    }
    mean = sum(norms.values()) / len(norms)
    w.update(0, means, values, params)
    for k, n in norms.items():
        assert w.weights[k] == pytest.approx(0.5 + 0.5 * mean / (n + 1e-5 * mean), rel=1e-10)
    assert w.weights["residual"] != pytest.approx(w.weights["initial"], rel=1e-2)


def test_ntk_weights_balance_the_kernel_traces():
    w = NTKWeights(every=1, alpha=0.0, n_points=4)
    pinn = _soft_advection_pinn(w)
    means, values = pinn.terms()
    w.update(0, means, values, list(pinn.net.parameters()))
    assert set(w.weights) == {"residual", "initial"}
    # mean_j m_j / m_i: the harmonic relation 1 / w_r + 1 / w_0 = 2 holds up to eps
    assert 1 / w.weights["residual"] + 1 / w.weights["initial"] == pytest.approx(2.0, rel=1e-4)
    assert abs(w.weights["residual"] - w.weights["initial"]) > 0.1


def test_self_adaptive_weights_grow_where_the_residual_is_large():
    pinn = _burgers_pinn(None)
    sa = SelfAdaptiveWeights({"residual": 256}, lr=0.05)
    pinn.weighting = sa
    r0 = pinn.residual(*pinn.points).detach().abs()[:, 0]
    pinn.fit(OptimConfig(adam_iters=20, lr=1e-3))
    s = sa.masks["residual"].detach()
    assert (s > 1).all() and s.max() > 1.5
    big, small = r0.argsort()[-20:], r0.argsort()[:20]
    assert s[big].mean() > s[small].mean()


def test_causal_weights_open_up_in_time_order():
    cw = CausalWeights(n_chunks=4, epsilon=1.0)
    t = torch.tensor([[0.1], [0.3], [0.6], [0.9]], dtype=torch.float64)
    sq = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    loss = cw.loss(sq, t, (0.0, 1.0))
    w = cw.last_weights
    assert torch.allclose(w, torch.exp(-torch.tensor([0.0, 2.0, 3.0, 4.0], dtype=torch.float64)))
    assert loss.item() == pytest.approx(float((w * sq.detach()).mean()))
    # weights carry no gradient: d loss / d sq_i = w_i / 4
    (g,) = torch.autograd.grad(loss, sq)
    assert torch.allclose(g, w / 4)
    # resolving the first chunk opens the later ones
    cw.loss(torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64), t, (0.0, 1.0))
    assert torch.allclose(cw.last_weights, torch.exp(-torch.tensor([0.0, 0.0, 1.0, 2.0], dtype=torch.float64)))


def test_causal_tolerance_schedule_advances_once_all_of_time_is_resolved():
    cw = CausalWeights(n_chunks=4, epsilon=[1.0, 100.0, 1e4])
    t = torch.tensor([[0.1], [0.3], [0.6], [0.9]], dtype=torch.float64)
    big, small = torch.full((4,), 1.0, dtype=torch.float64), torch.full((4,), 1e-5, dtype=torch.float64)
    cw.loss(big, t, (0.0, 1.0))
    assert cw.epsilon == 1.0 and cw.last_weights.min() < 0.99  # not resolved: stays
    cw.loss(small, t, (0.0, 1.0))  # min weight exp(-3e-5) > 0.99: the next call uses epsilon 100
    assert cw.epsilon == 100.0
    cw.loss(small, t, (0.0, 1.0))  # exp(-100 * 3e-5) = 0.997 > 0.99: on to 1e4
    cw.loss(small, t, (0.0, 1.0))
    assert cw.epsilon == 1e4
    assert torch.allclose(cw.last_weights, torch.exp(-1e4 * torch.tensor([0.0, 1e-5, 2e-5, 3e-5], dtype=torch.float64)))
    assert cw.last_weights.min() < 0.99  # the last tolerance still prefers early times
    cw.loss(torch.zeros(4, dtype=torch.float64), t, (0.0, 1.0))
    assert cw.epsilon == 1e4  # the end of the list
    frozen = CausalWeights(n_chunks=4, epsilon=[1.0, 100.0])
    frozen.freeze()
    frozen.loss(small, t, (0.0, 1.0))
    frozen.loss(small, t, (0.0, 1.0))
    assert frozen.epsilon == 1.0
    with pytest.raises(ValueError, match="epsilon"):
        CausalWeights(epsilon=[1.0, -1.0])


def test_lbfgs_phase_freezes_the_causal_schedule():
    cw = CausalWeights(n_chunks=8, epsilon=[5.0, 50.0, 500.0])
    pinn = _soft_advection_pinn(None, causal=cw)
    records = []
    pinn.fit(OptimConfig(adam_iters=5, lr=3e-3, lbfgs_iters=3, log_every=1), records.append)
    assert cw.frozen
    assert all("causal_epsilon" in r for r in records if "causal_min_weight" in r)


def test_causal_training_raises_the_weight_of_late_times():
    cw = CausalWeights(n_chunks=8, epsilon=5.0)
    pinn = _soft_advection_pinn(None, causal=cw)
    records = []
    pinn.fit(OptimConfig(adam_iters=150, lr=3e-3, log_every=10), records.append)
    first, last = records[0]["causal_min_weight"], records[-1]["causal_min_weight"]
    assert last > 2 * first


def test_rar_in_training_adds_points():
    pinn = _burgers_pinn(None, adaptive="rar", adaptive_every=5, n_candidates=2000, rar_k=10)
    pinn.fit(OptimConfig(adam_iters=11))
    assert pinn.points[0].shape[0] == 256 + 20


def _quadratic(target):
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.0, 10.0], dtype=torch.float64)

    def objective(step):
        return (scale * (p - target) ** 2).sum(), {}

    return p, objective


def test_lbfgs_says_why_it_stopped():
    target = torch.tensor([1.0, -2.0], dtype=torch.float64)
    p, objective = _quadratic(target)
    rep = lbfgs(objective, [p], OptimConfig(lbfgs_iters=2, tolerance_grad=0.0, tolerance_change=0.0))
    assert rep.reason == "max iterations" and rep.iterations == 2
    p, objective = _quadratic(target)
    rep = lbfgs(objective, [p], OptimConfig(lbfgs_iters=100, tolerance_grad=1e-6))
    assert rep.reason == "gradient tolerance reached" and 0 < rep.iterations < 20
    assert torch.allclose(p.detach(), target, atol=1e-6)
    assert "gradient tolerance reached after" in str(rep)
    rep = lbfgs(objective, [p], OptimConfig(lbfgs_iters=100, tolerance_grad=1e-6))  # already at the minimum
    assert rep.reason == "gradient tolerance reached" and rep.iterations == 0

    q = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    calls = []

    def blows_up(step):
        calls.append(1)
        return (q**4).sum() if len(calls) < 6 else (q**4).sum() * float("nan"), {}

    rep = lbfgs(blows_up, [q], OptimConfig(lbfgs_iters=50))
    assert rep.reason == "non-finite loss" and torch.isfinite(q).all()

    # float32 at its round-off floor: the loss stops changing / the step vanishes; the reason says which
    r = torch.tensor([0.3, 0.7], dtype=torch.float32, requires_grad=True)
    rep = lbfgs(
        lambda s: (((r - 0.1) ** 2).sum() + 1.0, {}),
        [r],
        OptimConfig(lbfgs_iters=100, tolerance_grad=0.0, tolerance_change=1e-7),
    )
    assert (
        rep.reason
        in (
            "loss change below tolerance_change",
            "line search failed: step below tolerance_change",
            "line search failed: not a descent direction",
        )
        and rep.iterations < 100
    )


def test_gradients_reach_the_inverse_coefficients():
    coeffs = InverseCoefficients(Burgers(nu=1.0), {"nu": 0.05})
    assert coeffs.values()["nu"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="no coefficient"):
        InverseCoefficients(Burgers(), {"mu": 1.0})
    grid = Grid(32, 2 * math.pi)
    x = grid.coords()[0]
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    fields = torch.exp(-0.1 * times)[:, None, None] * torch.sin(x)[None, None]  # heat solution, nu = 0.1
    obs = observations_from_fields(fields, times, [x], 200, noise=0.0)
    dom = Domain((0.0,), (2 * math.pi,), (0.0, 1.0), (True,))
    model = InversePINN(Diffusion(nu=1.0), {"nu": 0.05}, dom, obs, SMALL, n_residual=128)
    loss, _ = model.objective(None)
    (g,) = torch.autograd.grad(loss, model.coefficients.log["nu"])
    s = model.coefficients.log["nu"].data  # central finite difference in the log parameter
    s += 1e-6
    up = model.objective(None)[0].detach()
    s -= 2e-6
    down = model.objective(None)[0].detach()
    s += 1e-6
    assert g.abs() > 0 and float(g) == pytest.approx(float(up - down) / 2e-6, rel=1e-5)


def test_inverse_diffusion_coefficient_short_run():
    grid = Grid(32, 2 * math.pi)
    x = grid.coords()[0]
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    fields = torch.exp(-0.1 * times)[:, None, None] * torch.sin(x)[None, None]
    obs = observations_from_fields(fields, times, [x], 200, noise=0.01, seed=0)
    dom = Domain((0.0,), (2 * math.pi,), (0.0, 1.0), (True,))
    model = InversePINN(Diffusion(nu=1.0), {"nu": 0.5}, dom, obs, SMALL, n_residual=256)
    model.fit(OptimConfig(adam_iters=200, lr=1e-2, lbfgs_iters=200))
    assert model.coefficients.values()["nu"] == pytest.approx(0.1, rel=0.05)


def _heat_observations(noise=0.0):
    x = Grid(32, 2 * math.pi).coords()[0]
    times = torch.linspace(0, 1, 11, dtype=torch.float64)
    fields = torch.exp(-0.1 * times)[:, None, None] * torch.sin(x)[None, None]  # heat solution, nu = 0.1
    return observations_from_fields(fields, times, [x], 200, noise=noise), Domain(
        (0.0,), (2 * math.pi,), (0.0, 1.0), (True,)
    )


def test_inverse_and_hidden_term_pinns_put_everything_on_their_device():
    # "meta" tensors have a device and shapes but no data: every tensor the objective reads must be there
    obs, dom = _heat_observations()
    inverse = InversePINN(Diffusion(nu=1.0), {"nu": 0.05}, dom, obs, SMALL, n_residual=64, device=torch.device("meta"))
    hidden = HiddenTermPINN(Diffusion(nu=0.05), dom, obs, SMALL, SMALL, n_residual=64, device=torch.device("meta"))
    for model in (inverse, hidden):
        tensors = [*model.parameters(), *model.points, *vars(model.observations).values()]
        assert len(tensors) > 6 and {t.device.type for t in tensors} == {"meta"}
    assert obs.x.device.type == "cpu"  # the caller's observations are not moved under it
    # on the CPU, passing the device changes nothing
    loss = InversePINN(Diffusion(nu=1.0), {"nu": 0.05}, dom, obs, SMALL, n_residual=64).objective(None)[0]
    again = InversePINN(Diffusion(nu=1.0), {"nu": 0.05}, dom, obs, SMALL, n_residual=64, device="cpu").objective(None)[
        0
    ]
    assert torch.equal(loss, again)


def test_inverse_and_hidden_term_pinns_refuse_a_device_that_is_not_here(tmp_path, refused_devices):
    obs, dom = _heat_observations()
    refused_devices(
        "InversePINN",
        lambda device: InversePINN(Diffusion(nu=1.0), {"nu": 0.05}, dom, obs, SMALL, n_residual=64, device=device),
        tmp_path / "none",
    )
    refused_devices(
        "HiddenTermPINN",
        lambda device: HiddenTermPINN(Diffusion(nu=0.05), dom, obs, SMALL, SMALL, n_residual=64, device=device),
        tmp_path / "none",
    )
    assert HiddenTermPINN(Diffusion(nu=0.05), dom, obs, SMALL, SMALL, n_residual=64, device="auto").device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_inverse_and_hidden_term_pinns_on_cuda_match_the_cpu():
    obs, dom = _heat_observations(noise=0.01)
    optim = OptimConfig(adam_iters=50, lr=1e-2, lbfgs_iters=0)
    found = {}
    for device in ("cpu", "cuda"):
        model = InversePINN(Diffusion(nu=1.0), {"nu": 0.5}, dom, obs, SMALL, n_residual=128, device=device)
        model.fit(optim)
        found[device] = model.coefficients.values()["nu"]
        hidden = HiddenTermPINN(Diffusion(nu=0.05), dom, obs, SMALL, SMALL, n_residual=128, device=device)
        hidden.fit(optim)
        coefficients, _ = hidden.discover(degree=2)
        assert coefficients.device.type == "cpu" and torch.isfinite(coefficients).all()
        found[device, "hidden"] = coefficients
    assert found["cuda"] == pytest.approx(found["cpu"], rel=1e-6)
    assert torch.allclose(found["cuda", "hidden"], found["cpu", "hidden"], rtol=1e-5, atol=1e-8)


def test_observations_from_a_generated_dataset(tmp_path):
    from pdeforge.datasets import TrajectoryDataset
    from pdeforge.solvers.generate import generate

    generate("burgers_1d", tmp_path, n_trajectories=10, resolution=32, seed=0, progress=False)
    ds = TrajectoryDataset(tmp_path, split="test")
    obs = sample_observations(ds, 0, 100, noise=0.01, seed=5, time_indices=range(5))
    again = sample_observations(ds, 0, 100, noise=0.01, seed=5, time_indices=range(5))
    assert torch.equal(obs.u, again.u) and obs.x.shape == (100, 1) and obs.t.max() <= 0.2 + 1e-6
    sample = ds.read(0, list(range(5)))
    dx = 2 * math.pi / 32
    ti = torch.round(obs.t[:, 0] / 0.05).long()
    xi = torch.round(obs.x[:, 0] / dx).long()
    assert torch.allclose(obs.u_clean[:, 0], sample["fields"][ti, 0, xi].double())
    noise = (obs.u - obs.u_clean) / obs.u_clean.std()
    assert 0.007 < float(noise.std()) < 0.013
    dom = dataset_domain(ds, range(5))
    assert dom.upper[0] == pytest.approx(2 * math.pi) and dom.t_span == pytest.approx((0.0, 0.2))


def test_stlsq_recovers_a_sparse_polynomial():
    u = torch.linspace(0.05, 0.95, 200, dtype=torch.float64)
    theta, names = polynomial_library(u, 4)
    y = 0.7 * u - 0.7 * u**2 + 1e-4 * torch.randn(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xi = stlsq(theta, y, threshold=0.05)
    nonzero = {n: float(c) for n, c in zip(names, xi) if c != 0}
    assert set(nonzero) == {"u", "u^2"}
    assert nonzero["u"] == pytest.approx(0.7, rel=1e-2) and nonzero["u^2"] == pytest.approx(-0.7, rel=1e-2)
    plain = torch.linalg.lstsq(theta, y[:, None]).solution[:, 0]
    assert (plain.abs() > 1e-3).sum() > 2  # without thresholding the fit is not sparse


def test_hidden_term_network_learns_the_reaction():
    grid = Grid(64, 2 * math.pi)
    x = grid.coords()[0]
    times, traj = spectral_reference(FisherKPP(nu=0.05, r=1.0), grid, (0.5 + 0.45 * torch.sin(x))[None], 0.02, 3.0, 0.2)
    obs = observations_from_fields(traj, times, [x], 500, noise=0.01, seed=0)
    model = HiddenTermPINN(
        Diffusion(nu=0.05),
        Domain((0.0,), (2 * math.pi,), (0.0, 3.0), (True,)),
        obs,
        NetworkConfig(width=24, depth=3),
        NetworkConfig(width=16, depth=2),
        n_residual=500,
    )
    model.fit(OptimConfig(adam_iters=300, lr=3e-3, lbfgs_iters=300))
    u = torch.linspace(0.2, 0.9, 50, dtype=torch.float64)[:, None]
    with torch.no_grad():
        err = (model.hidden(u) - u * (1 - u)).norm() / (u * (1 - u)).norm()
    assert err < 0.15


def test_lagrangian_pinn_beats_the_plain_pinn_on_fast_advection():
    named = PROBLEMS["advection"]()
    x, t, ref = named.reference(64, 21)
    X, T = x.repeat(len(t))[:, None], t.repeat_interleave(len(x))[:, None]
    ref = ref[:, 0].reshape(-1, 1)
    lag = LagrangianPINN(named.problem, SMALL, n_residual=400, n_initial=64)
    lag.fit(OptimConfig(adam_iters=150, lbfgs_iters=50))
    plain = PINN(named.problem, SMALL, SamplingConfig(n_residual=400, n_initial=64))
    plain.fit(OptimConfig(adam_iters=150, lbfgs_iters=50))
    e_lag = float((lag.predict(X, T) - ref).norm() / ref.norm())
    e_plain = float((plain.predict(X, T) - ref).norm() / ref.norm())
    assert e_lag < 0.05 and e_plain > 0.5
    assert lag.velocity == (30.0,)


def test_reaction_rate_is_the_derivative_of_the_pointwise_terms():
    from pdeforge.pinns import reaction_rate
    from pdeforge.solvers import AllenCahn, GrayScott, KdV

    u = torch.linspace(-1.5, 1.5, 13, dtype=torch.float64)[:, None]
    x = torch.rand(13, 1, dtype=torch.float64)
    assert torch.allclose(reaction_rate(AllenCahn(nu=0.01), u, x), 1 - 3 * u**2, atol=1e-14)
    assert torch.allclose(reaction_rate(FisherKPP(nu=0.1, r=2.0), u, x), 2.0 * (1 - 2 * u), atol=1e-14)
    assert torch.equal(reaction_rate(Burgers(nu=0.1), u, x), torch.zeros_like(u))  # u u_x: no point-wise term
    assert torch.equal(reaction_rate(KdV(), u, x), torch.zeros_like(u))
    with pytest.raises(ValueError, match="one-channel equation"):
        reaction_rate(GrayScott(), torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64))


def test_amplification_weights_favour_points_whose_errors_grow():
    from pdeforge.pinns import AmplificationWeights
    from pdeforge.solvers import AllenCahn

    amp = AmplificationWeights(power=0.5)
    u = torch.tensor([[0.0], [0.0], [1.0], [0.5]], dtype=torch.float64)  # g = 1, 1, -2, 0.25
    t = torch.tensor([[0.0], [4.0], [0.0], [2.0]], dtype=torch.float64)
    w = amp.factors(AllenCahn(nu=1e-4), u, torch.zeros_like(u), t, t_end=4.0)
    raw = torch.exp(0.5 * torch.tensor([1.0 * 4, 0.0, 0.0, 0.25 * 2], dtype=torch.float64))
    assert torch.allclose(w, raw / raw.mean(), rtol=1e-14) and w.mean().item() == pytest.approx(1.0)
    assert w[0] / w[2] == pytest.approx(math.exp(2.0))  # unstable and early vs stable
    with pytest.raises(ValueError, match="power must be > 0"):
        AmplificationWeights(power=0.0)


def _build(values: dict, *overrides: str):
    """The PINN of a config (``values``: its sections, as in a YAML file)."""
    from pdeforge.pinns import PINNConfig, build_pinn
    from pdeforge.training import load_config

    return build_pinn(load_config(PINNConfig, values=values, overrides=list(overrides)))


def test_amplification_weights_enter_the_residual_loss_of_a_run_config():
    from pdeforge.pinns import AmplificationWeights

    config = {
        "family": "pinn",
        "problem": "allen_cahn",
        "model": {"width": 16, "depth": 2, "harmonics": 2},
        "data": {"n_residual": 200},
        "loss": {"amplification": 1.0},
    }
    model = _build(config)
    assert isinstance(model.amplification, AmplificationWeights)
    means, values = model.terms()
    x, t = model.points
    with torch.no_grad():
        u = model.net(x, t)
    w = model.amplification.factors(model.problem.equation, u, x, t, model.problem.domain.t_span[1])
    assert w.max() / w.min() > 10  # early points near u = 0 against late or saturated ones
    expected = (w * values["residual"].detach()[:, 0] ** 2).mean()
    assert means["residual"].item() == pytest.approx(expected.item(), rel=1e-12)
    plain = _build({k: v for k, v in config.items() if k != "loss"})
    assert plain.terms()[0]["residual"].item() == pytest.approx(
        (values["residual"].detach() ** 2).mean().item(), rel=1e-12
    )
    with pytest.raises(ValueError, match="are for model.mode forward"):
        _build({**config, "problem": "advection", "model": {"mode": "lagrangian"}})
    with pytest.raises(ValueError, match=r"loss.amplification {'pow': 1.0}: expected a number"):
        _build({**config, "loss": {"amplification": {"pow": 1.0}}})


def test_amplification_weights_make_the_residual_small_where_errors_grow():
    """A short Allen-Cahn run with and without them: the residual where ``1 - 3 u^2 > 0`` in the first half of the
    time span (errors there grow the most) comes out several times smaller with them (14x here; 3.5x to 14x over
    seeds 0-2), the rest larger: the weights move the network's effort, as intended."""
    x = torch.linspace(-1, 1, 65, dtype=torch.float64)[:-1]
    s = torch.linspace(0, 5, 41, dtype=torch.float64)
    X, S = x.repeat(41)[:, None], s.repeat_interleave(64)[:, None]
    out = {}
    for amp in (False, True):
        config = {
            "family": "pinn",
            "problem": "allen_cahn",
            "run": {"seed": 2},
            "model": {"width": 32, "depth": 3, "harmonics": 4},
            "data": {"n_residual": 1000},
        }
        if amp:
            config["loss"] = {"amplification": 1.0}
        torch.manual_seed(2)
        model = _build(config)
        model.fit(OptimConfig(adam_iters=300, lr=3e-3, log_every=1000))
        r = model.residual(X, S).detach()[:, 0] ** 2
        with torch.no_grad():
            u = model.net(X, S)[:, 0]
        grow = (1 - 3 * u**2 > 0) & (S[:, 0] < 2.5)
        out[amp] = (r[grow].mean().item(), r[~grow].mean().item())
    assert out[True][0] < 0.2 * out[False][0]
    assert out[True][1] > out[False][1]


def test_amplification_weights_do_not_overflow():
    from pdeforge.pinns import AmplificationWeights
    from pdeforge.solvers import AllenCahn

    u = torch.zeros(3, 1, dtype=torch.float32)
    t = torch.tensor([[0.0], [1.0], [1000.0]])
    w = AmplificationWeights(power=1.0).factors(AllenCahn(nu=1e-4), u, torch.zeros_like(u), t, t_end=1000.0)
    assert torch.isfinite(w).all() and w[2] == 0  # exp(1000) would overflow float32
    assert w[0].item() == pytest.approx(3 / (1 + math.exp(-1)), rel=1e-6)
