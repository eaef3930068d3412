"""Noise schedules and samplers against exact solutions: Gaussian data ``N(mu, s^2 I)`` has an exact noise predictor,
an exact velocity and a closed-form probability-flow solution, so every ODE sampler's observed order is measured
against its declared one, and the stochastic samplers' moments against the exact marginal.

The oracle, for ``x_t = alpha x0 + sigma eps`` and ``V(t) = alpha^2 s^2 + sigma^2``: ``x_t ~ N(alpha mu, V I)``,
``eps(x, t) = E[eps | x_t] = sigma (x - alpha mu) / V``, ``E[x0 | x_t] = mu + alpha s^2 (x - alpha mu) / V``, and
the flow velocity ``v = alpha' E[x0 | x_t] + sigma' E[eps | x_t]``. With ``y = x - alpha mu`` the probability-flow
ODE ``dx/dt = alpha' x0_hat + sigma' eps_hat`` reads ``dy/dt = (alpha alpha' s^2 + sigma sigma') y / V = V'/(2V) y``,
so ``x(t) = alpha(t) mu + sqrt(V(t) / V(T)) (x_T - alpha(T) mu)`` for every schedule (VP, VE, flow).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdeforge.generative import (
    FLOW_METHODS,
    METHODS,
    ODE_METHODS,
    ORDERS,
    SAMPLERS,
    STOCHASTIC_METHODS,
    FlowSchedule,
    VESchedule,
    VPSchedule,
    dpm_solver_tableau,
    sample,
    time_steps,
)

MU = torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64)
S = 0.5
F64 = torch.float64


def variance(schedule, t):
    t = torch.as_tensor(t, dtype=F64)
    return schedule.alpha(t) ** 2 * S**2 + schedule.sigma(t) ** 2


def eps_model(schedule):
    def model(x, t):
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        a, sg = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
        return sg * (x - a * MU) / (a**2 * S**2 + sg**2)

    return model


def velocity_model(schedule):
    """Rectified flow: alpha' = -1, sigma' = 1, so v = -x0_hat + eps_hat = -mu + (sigma - alpha s^2)(x - alpha mu)/V."""

    def model(x, t):
        a, sg = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
        return -MU + (sg - a * S**2) * (x - a * MU) / (a**2 * S**2 + sg**2)

    return model


def exact_flow(schedule, x_T, t_end):
    t_max = schedule.t_max
    a_T, a_e = schedule.alpha(torch.tensor(t_max, dtype=F64)), schedule.alpha(torch.tensor(t_end, dtype=F64))
    return a_e * MU + torch.sqrt(variance(schedule, t_end) / variance(schedule, t_max)) * (x_T - a_T * MU)


def start(schedule, n, seed=0):
    """x_T from the exact marginal at t_max."""
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(schedule.t_max, dtype=F64)
    return schedule.alpha(t) * MU + variance(schedule, t).sqrt() * torch.randn(n, 4, generator=g, dtype=F64)


def observed_orders(schedule, method, t_end, model):
    x_T = start(schedule, 8)
    ref = exact_flow(schedule, x_T, t_end)
    errors = [
        (sample(model, x_T, schedule, method, steps=n, t_end=t_end) - ref).abs().max().item() for n in (12, 24, 48, 96)
    ]
    slopes = [math.log2(errors[i] / errors[i + 1]) for i in range(3)]
    return errors, slopes


# ----------------------------------------------------------------------------------------------- schedules
SCHEDULES = [VPSchedule.linear(0.1, 20.0), VPSchedule.cosine(), VESchedule(), FlowSchedule()]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{type(s).__name__}-{getattr(s, 'kind', '')}")
def test_schedule_inverse_and_perturb(schedule) -> None:
    t = torch.linspace(0.01, schedule.t_max * 0.999, 50, dtype=F64)
    lam = schedule.log_snr(t)
    assert torch.allclose(schedule.t_of_log_snr(lam), t, rtol=0, atol=1e-10)
    assert torch.allclose(lam, torch.log(schedule.alpha(t) / schedule.sigma(t)), atol=1e-12)
    assert (lam[1:] < lam[:-1]).all()  # noisier later
    # dtype follows the input; perturb broadcasts t (B,) over the other axes
    assert schedule.alpha(t.float()).dtype == torch.float32
    x0, noise = torch.randn(3, 2, 5, dtype=F64), torch.randn(3, 2, 5, dtype=F64)
    tb = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    xt = schedule.perturb(x0, tb, noise)
    for i in range(3):
        assert torch.allclose(xt[i], schedule.alpha(tb[i]) * x0[i] + schedule.sigma(tb[i]) * noise[i])


def test_schedule_values() -> None:
    """Closed forms: VP linear log alpha(1) = -(20 - 0.1)/4 - 0.05, alpha^2 + sigma^2 = 1; VE sigma at the ends;
    rectified flow alpha = 1 - t; the cosine VP stops at DPM-Solver's T = 0.9946."""
    vp = VPSchedule.linear(0.1, 20.0)
    assert math.isclose(float(vp.alpha(1.0)), math.exp(-19.9 / 4 - 0.05), rel_tol=1e-14)
    t = torch.rand(20, dtype=F64)
    assert torch.allclose(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones_like(t), atol=1e-14)
    cos = VPSchedule.cosine()
    assert torch.allclose(cos.alpha(t) ** 2 + cos.sigma(t) ** 2, torch.ones_like(t), atol=1e-14)
    assert cos.t_max == 0.9946 and float(cos.alpha(0.0)) == pytest.approx(1.0, abs=1e-15)
    ve = VESchedule(0.01, 50.0)
    assert float(ve.sigma(0.0)) == pytest.approx(0.01) and float(ve.sigma(1.0)) == pytest.approx(50.0)
    assert float(ve.alpha(0.3)) == 1.0
    fl = FlowSchedule()
    assert float(fl.alpha(0.25)) == 0.75 and float(fl.sigma(0.25)) == 0.25


@pytest.mark.parametrize("spacing", ["logSNR", "time_uniform", "time_quadratic"])
def test_time_steps(spacing) -> None:
    vp = VPSchedule.linear()
    grid = time_steps(vp, 10, 1e-3, spacing)
    assert grid.dtype == F64 and grid.shape == (11,) and grid[0] == 1.0 and grid[-1] == 1e-3
    assert (grid[1:] < grid[:-1]).all()
    uniform = {"logSNR": vp.log_snr(grid), "time_uniform": grid, "time_quadratic": grid.sqrt()}[spacing]
    assert torch.allclose(uniform.diff(), uniform.diff()[0].expand(10), rtol=1e-9, atol=0)


def test_time_steps_refuses() -> None:
    with pytest.raises(ValueError, match="spacing 'logSNR'.*infinite"):
        time_steps(FlowSchedule(), 4, 0.0, "logSNR")
    with pytest.raises(ValueError, match="spacing 'cubic'"):
        time_steps(VPSchedule.linear(), 4, 1e-3, "cubic")
    with pytest.raises(ValueError, match="t_end 2.0"):
        time_steps(VPSchedule.linear(), 4, 2.0)


# ----------------------------------------------------------------------------------------------- samplers as data
def test_catalogue() -> None:
    assert set(ODE_METHODS) | set(FLOW_METHODS) | set(STOCHASTIC_METHODS) == set(METHODS) == set(SAMPLERS)
    expected = {
        "ddim": 1,
        "dpm_solver_1": 1,
        "dpm_solver_2": 2,
        "dpm_solver_3": 3,
        "dpm_solver++2m": 2,
        "deis": 3,
        "unipc": 3,
    }
    assert {m: ORDERS[m] for m in ODE_METHODS} == expected
    assert ORDERS["euler"] == 1 and ORDERS["heun"] == 2 and ORDERS["ddpm"] == 1 and ORDERS["pc"] == 1


def test_dpm_solver_tableaus_check_themselves() -> None:
    """The DPM-Solver tableaus meet Butcher's conditions of their order at z = 0 (checked on construction), and a
    DPM-Solver-3 with wrong r's (r2 = 1/2 with r1 = 1/3 is Heun's 3rd-order method only for r2 = 2/3) is refused."""
    for k in (1, 2, 3):
        assert dpm_solver_tableau(k).order == k
    dpm_solver_tableau(2, r1=1.0)  # any r1 gives order 2
    with pytest.raises(ValueError, match="order-3 condition"):
        dpm_solver_tableau(3, r1=1 / 3, r2=1 / 2)


def test_ddim_equals_dpm_solver_1() -> None:
    for schedule in (VPSchedule.linear(), VESchedule()):
        x_T = start(schedule, 16)
        a = sample(eps_model(schedule), x_T, schedule, "ddim", steps=10)
        b = sample(eps_model(schedule), x_T, schedule, "dpm_solver_1", steps=10)
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------------------------- orders
@pytest.mark.parametrize("method", ODE_METHODS)
def test_ode_sampler_order_vp_linear(method) -> None:
    """Observed order (errors at 12 -> 24 -> 48 -> 96 NFE, last pair) within 0.3 of the declared one, and the
    error falling at every doubling."""
    schedule = VPSchedule.linear(0.1, 20.0)
    errors, slopes = observed_orders(schedule, method, 1e-3, eps_model(schedule))
    assert all(e1 < e0 for e0, e1 in zip(errors, errors[1:])), errors
    assert abs(slopes[-1] - ORDERS[method]) < 0.3, (errors, slopes)


@pytest.mark.parametrize("method", ["dpm_solver_2", "dpm_solver_3", "dpm_solver++2m", "deis", "unipc"])
@pytest.mark.parametrize("schedule", [VPSchedule.cosine(), VESchedule()], ids=["vp_cosine", "ve"])
def test_ode_sampler_order_other_schedules(schedule, method) -> None:
    errors, slopes = observed_orders(schedule, method, schedule.t_end, eps_model(schedule))
    assert abs(slopes[-1] - ORDERS[method]) < 0.3, (errors, slopes)


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_flow_sampler_order(method) -> None:
    schedule = FlowSchedule()
    errors, slopes = observed_orders(schedule, method, 0.0, velocity_model(schedule))
    assert abs(slopes[-1] - ORDERS[method]) < 0.3, (errors, slopes)


def test_samplers_are_accurate_at_many_steps() -> None:
    """At 96 NFE the high-order samplers reach the exact flow to 1e-3 (max abs error over samples with unit spread)."""
    schedule = VPSchedule.linear()
    x_T = start(schedule, 8)
    ref = exact_flow(schedule, x_T, 1e-3)
    for method in ("dpm_solver_3", "dpm_solver++2m", "deis", "unipc"):
        assert (sample(eps_model(schedule), x_T, schedule, method, steps=96) - ref).abs().max() < 1e-3


def test_denoise_to_zero() -> None:
    """The last data prediction at t_end is E[x0 | x_t_end], exact for the Gaussian oracle."""
    schedule = VPSchedule.linear()
    x_T = start(schedule, 8)
    out = sample(eps_model(schedule), x_T, schedule, "dpm_solver_3", steps=96, denoise_to_zero=True)
    x_end = exact_flow(schedule, x_T, 1e-3)
    a, v = schedule.alpha(torch.tensor(1e-3, dtype=F64)), variance(schedule, 1e-3)
    assert torch.allclose(out, MU + a * S**2 * (x_end - a * MU) / v, atol=1e-3)


# ----------------------------------------------------------------------------------------------- NFE, remainders
def counting(model):
    calls = []

    def fn(x, t):
        calls.append(float(t[0]))
        return model(x, t)

    return fn, calls


@pytest.mark.parametrize(
    ("method", "steps", "nfe"),
    [
        ("dpm_solver_3", 7, 7),
        ("dpm_solver_3", 8, 8),
        ("dpm_solver_2", 5, 5),
        ("dpm_solver++2m", 9, 9),
        ("deis", 5, 5),
        ("unipc", 5, 5),
        ("ddim", 3, 3),
        ("ddpm", 4, 4),
        ("pc", 6, 6),
    ],
)
def test_steps_count_network_evaluations(method, steps, nfe) -> None:
    schedule = VPSchedule.linear()
    fn, calls = counting(eps_model(schedule))
    sample(fn, start(schedule, 4), schedule, method, steps=steps, generator=torch.Generator().manual_seed(0))
    assert len(calls) == nfe and calls[0] == 1.0


def test_singlestep_remainder_uses_lower_order() -> None:
    """dpm_solver_3 with 7 NFE: two order-3 steps and one order-1 step on a grid of 3 steps; with 6 NFE two
    order-3 steps on a grid of 2 steps (only order-3 steps)."""
    schedule = VPSchedule.linear()
    fn, calls = counting(eps_model(schedule))
    sample(fn, start(schedule, 2), schedule, "dpm_solver_3", steps=7)
    grid = time_steps(schedule, 3, 1e-3).tolist()
    assert [calls[0], calls[3], calls[6]] == pytest.approx(grid[:3], abs=1e-14)
    fn, calls = counting(eps_model(schedule))
    sample(fn, start(schedule, 2), schedule, "dpm_solver_3", steps=6)
    assert [calls[0], calls[3]] == pytest.approx(time_steps(schedule, 2, 1e-3).tolist()[:2], abs=1e-14)
    lam = schedule.log_snr(torch.tensor(calls[:3], dtype=F64))
    h = float(schedule.log_snr(torch.tensor(calls[3], dtype=F64)) - lam[0])
    assert (lam - lam[0]).tolist() == pytest.approx([0.0, h / 3, 2 * h / 3], abs=1e-10)  # r1, r2 = 1/3, 2/3


# ----------------------------------------------------------------------------------------------- stochastic samplers
def moments_z(out, schedule, t_end):
    """(z of the mean, z of the variance) per coordinate against the exact marginal N(alpha mu, V I)."""
    n = out.shape[0]
    mean, var = schedule.alpha(torch.tensor(t_end, dtype=F64)) * MU, variance(schedule, t_end)
    z_mean = (out.mean(0) - mean) / (var / n).sqrt()
    z_var = (out.var(0) - var) / (var * math.sqrt(2 / (n - 1)))
    return z_mean, z_var


STOCHASTIC_CASES = [
    ("vp-ddpm", VPSchedule.linear(), "ddpm", 500, None),
    ("ve-ddpm", VESchedule(), "ddpm", 500, None),
    ("vp-pc", VPSchedule.linear(), "pc", 1000, None),
    ("ve-pc", VESchedule(), "pc", 1000, 0.02),
]


def check_marginal(schedule, method, steps, snr, n) -> None:
    x_T = start(schedule, n, seed=1)
    out = sample(
        eps_model(schedule), x_T, schedule, method, steps=steps, generator=torch.Generator().manual_seed(2), snr=snr
    )
    z_mean, z_var = moments_z(out, schedule, schedule.t_end)
    assert z_mean.abs().max() < 4 and z_var.abs().max() < 4, (z_mean, z_var)


@pytest.mark.parametrize(("name", "schedule", "method", "steps", "snr"), STOCHASTIC_CASES, ids=lambda v: str(v))
def test_stochastic_samplers_match_marginal(name, schedule, method, steps, snr) -> None:
    """5000 samples of d = 4 from the exact marginal at t_max: mean and variance at t_end within 4 standard errors
    of N(alpha mu, V I). DDPM's variance is biased low by O(1/steps), PC's by Euler-Maruyama's O(1/steps) and by
    Langevin's ~snr^2 (relative): at these sizes each bias is below 1.5 standard errors (VE's PC runs at snr 0.02
    for that; at its default 0.16 the widening is 2.6 %)."""
    check_marginal(schedule, method, steps, snr, 5000)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "schedule", "method", "steps", "snr"), STOCHASTIC_CASES, ids=lambda v: str(v))
def test_stochastic_samplers_match_marginal_20000(name, schedule, method, steps, snr) -> None:
    """As above with 20000 samples and twice the steps."""
    check_marginal(schedule, method, 2 * steps, snr, 20000)


def test_stochastic_samplers_reproducible_with_generator() -> None:
    schedule = VPSchedule.linear()
    x_T = start(schedule, 8)
    for method in STOCHASTIC_METHODS:
        a = sample(eps_model(schedule), x_T, schedule, method, 10, generator=torch.Generator().manual_seed(3))
        b = sample(eps_model(schedule), x_T, schedule, method, 10, generator=torch.Generator().manual_seed(3))
        c = sample(eps_model(schedule), x_T, schedule, method, 10, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_ddim_eta_one_is_ddpm() -> None:
    schedule = VPSchedule.linear()
    x_T = start(schedule, 8)
    a = sample(eps_model(schedule), x_T, schedule, "ddim", 10, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = sample(eps_model(schedule), x_T, schedule, "ddpm", 10, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, rtol=1e-14, atol=1e-14)


def test_float32_follows_input() -> None:
    schedule = VPSchedule.linear()
    x_T = start(schedule, 8).float()

    def model(x, t):
        assert t.dtype == torch.float32
        return eps_model(schedule)(x.double(), t.double()).float()

    out = sample(model, x_T, schedule, "dpm_solver++2m", 20)
    assert out.dtype == torch.float32
    assert (out.double() - exact_flow(schedule, x_T.double(), 1e-3)).abs().max() < 0.05


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input() -> None:
    vp, x = VPSchedule.linear(), torch.zeros(2, 4, dtype=F64)
    model = eps_model(vp)
    with pytest.raises(ValueError, match=r"unknown sampling method 'rk4'; expected one of ddim, "):
        sample(model, x, vp, "rk4")
    with pytest.raises(ValueError, match=r"method 'euler' does not fit a VPSchedule; .* use one of ddim"):
        sample(model, x, vp, "euler")
    with pytest.raises(
        ValueError, match=r"method 'dpm_solver_2' does not fit a FlowSchedule; .* use one of euler, heun"
    ):
        sample(model, x, FlowSchedule(), "dpm_solver_2")
    for steps in (0, -1, 2.5):
        with pytest.raises(ValueError, match="steps must be a positive int"):
            sample(model, x, vp, "ddim", steps=steps)
    with pytest.raises(ValueError, match="'pc' with corrector_steps=1 takes 2 network evaluations per step; steps=5"):
        sample(model, x, vp, "pc", steps=5)
    with pytest.raises(ValueError, match=r"model_fn\(x, t\) returned \(2, 3\); expected a tensor shaped like x"):
        sample(lambda x, t: x[:, :3], x, vp, "ddim")
    with pytest.raises(ValueError, match=r"t_end 0.0: a VPSchedule needs t_end > 0"):
        sample(model, x, vp, "ddim", t_end=0.0)
    with pytest.raises(ValueError, match="x_T: expected a floating tensor"):
        sample(model, torch.zeros(2, 4, dtype=torch.long), vp, "ddim")
    with pytest.raises(ValueError, match="VPSchedule.linear: expected 0 <= beta_min < beta_max"):
        VPSchedule.linear(20.0, 0.1)
    with pytest.raises(ValueError, match="the cosine schedule has alpha"):
        VPSchedule(kind="cosine")
    with pytest.raises(ValueError, match="VESchedule: expected 0 < sigma_min < sigma_max"):
        VESchedule(1.0, 0.5)


def test_deis_lagrange_integrals_match_numpy() -> None:
    """DEIS's exact integrals of the Lagrange basis agree with numpy's polynomial fit and integration."""
    from pdeforge.generative._samplers import _lagrange_integrals

    nodes, a, b = [3.0, 2.1, 1.5], 1.5, 1.0
    got = _lagrange_integrals(nodes, a, b)
    for j in range(3):
        values = np.eye(3)[j]
        p = np.polynomial.Polynomial.fit(nodes, values, 2).convert().integ()
        assert got[j] == pytest.approx(p(b) - p(a), rel=1e-12)


@pytest.mark.parametrize("spacing", ["time_uniform", "time_quadratic"])
def test_spacing_reaches_the_model(spacing) -> None:
    """One-NFE samplers call the model at the grid times of the spacing asked for."""
    schedule = VPSchedule.linear()
    fn, calls = counting(eps_model(schedule))
    sample(fn, start(schedule, 2), schedule, "dpm_solver++2m", steps=6, spacing=spacing)
    assert calls == pytest.approx(time_steps(schedule, 6, 1e-3, spacing).tolist()[:-1], abs=1e-15)


def test_progress_prints_network_evaluations(capsys) -> None:
    schedule = VPSchedule.linear()
    sample(eps_model(schedule), start(schedule, 2), schedule, "dpm_solver_2", steps=4, progress=True)
    assert "sampling: 4/4 network evaluations" in capsys.readouterr().err
