"""Darcy flow: manufactured-solution convergence, maximum principle, solver agreement, coefficients."""

import math

import pytest
import torch

from pdeforge.solvers.darcy import (
    LogNormalCoefficient,
    NeumannGaussianRandomField,
    ThresholdCoefficient,
    darcy_samples,
    solve_darcy,
)

PI = math.pi


def _manufactured(s):
    """``u = sin(pi x) sin(pi y)`` with a smooth variable ``a``; ``f = -div(a grad u)`` in closed form."""
    x = torch.linspace(0, 1, s, dtype=torch.float64)
    y, x = torch.meshgrid(x, x, indexing="ij")
    a = 1 + 0.5 * torch.sin(2 * PI * x) * torch.cos(PI * y) + x * y
    a_x = PI * torch.cos(2 * PI * x) * torch.cos(PI * y) + y
    a_y = -0.5 * PI * torch.sin(2 * PI * x) * torch.sin(PI * y) + x
    u = torch.sin(PI * x) * torch.sin(PI * y)
    u_x = PI * torch.cos(PI * x) * torch.sin(PI * y)
    u_y = PI * torch.sin(PI * x) * torch.cos(PI * y)
    f = -(a_x * u_x + a_y * u_y - 2 * PI**2 * a * u)
    return a[None, None], f[None, None], u[None, None]


@pytest.mark.parametrize("method", ["direct", "cg"])
def test_manufactured_solution_second_order(method):
    errors = []
    for s in (17, 33, 65):
        a, f, u = _manufactured(s)
        errors.append((solve_darcy(a, f, method=method) - u).abs().max().item())
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(p - 2) < 0.15 for p in orders), (errors, orders)
    assert errors[-1] < 5e-4


def test_layered_medium_symmetry_and_scaling():
    """a = 12 on the left half, 3 on the right: u is symmetric in y, smaller where a is larger, and
    solve(c a) = solve(a) / c."""
    s = 33
    a = torch.where(torch.arange(s) < s // 2, 12.0, 3.0).to(torch.float64).expand(s, s)[None, None].clone()
    u = solve_darcy(a, 1.0)
    assert torch.allclose(u, u.flip(-2), atol=1e-15)
    assert u[0, 0, s // 2, 8] < 0.5 * u[0, 0, s // 2, s - 9]
    assert torch.allclose(solve_darcy(4 * a, 1.0), u / 4, rtol=1e-12, atol=1e-18)


def test_maximum_principle_and_boundary():
    gen = torch.Generator().manual_seed(0)
    a = ThresholdCoefficient().sample(8, 41, gen)
    f = torch.rand(8, 1, 41, 41, generator=gen, dtype=torch.float64)  # any f >= 0
    u = solve_darcy(a, f)
    assert u.min() >= 0.0
    assert u[..., 1:-1, 1:-1].min() > 0  # strictly positive inside (irreducible M-matrix, f > 0)
    for edge in (u[..., 0, :], u[..., -1, :], u[..., :, 0], u[..., :, -1]):
        assert edge.abs().max() == 0
    # Comparison principle: a larger source gives a larger solution, and u is linear in f.
    assert torch.allclose(solve_darcy(a, 2 * f), 2 * u, rtol=1e-12, atol=1e-16)


def test_direct_and_cg_agree_and_residual():
    gen = torch.Generator().manual_seed(1)
    a = LogNormalCoefficient(scale=2.0).sample(3, 33, gen)
    direct = solve_darcy(a, 1.0)
    cg = solve_darcy(a, 1.0, method="cg", tol=1e-12)
    assert (direct - cg).abs().max() <= 1e-10 * direct.abs().max()
    # Residual of the discrete equations, recomputed here from the stencil definition.
    h = 1 / 32
    ar = a[:, 0]
    hm = lambda p, q: 2 * p * q / (p + q)  # noqa: E731
    uu = direct[:, 0]
    c = uu[:, 1:-1, 1:-1]
    flux = (
        hm(ar[:, 1:-1, 1:-1], ar[:, 1:-1, :-2]) * (c - uu[:, 1:-1, :-2])
        + hm(ar[:, 1:-1, 1:-1], ar[:, 1:-1, 2:]) * (c - uu[:, 1:-1, 2:])
        + hm(ar[:, 1:-1, 1:-1], ar[:, :-2, 1:-1]) * (c - uu[:, :-2, 1:-1])
        + hm(ar[:, 1:-1, 1:-1], ar[:, 2:, 1:-1]) * (c - uu[:, 2:, 1:-1])
    ) / h**2
    assert torch.allclose(flux, torch.ones_like(flux), atol=1e-9)


def test_cg_reports_non_convergence():
    a = ThresholdCoefficient().sample(1, 33, torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="did not reach tol"):
        solve_darcy(a, method="cg", max_iter=3)


def test_coefficients_and_samples():
    gen = torch.Generator().manual_seed(0)
    a, u = darcy_samples(4, 29, gen)
    assert a.shape == u.shape == (4, 1, 29, 29) and a.dtype == torch.float32
    assert set(a.unique().tolist()) == {3.0, 12.0}
    frac = (a == 12).double().mean().item()
    assert 0.2 < frac < 0.8  # the zero level of a centred field splits the square roughly in half
    assert 0.002 < u.max().item() < 0.1  # FNO Darcy solutions peak around 1e-2
    # same seed, same data
    a2, u2 = darcy_samples(4, 29, torch.Generator().manual_seed(0))
    assert torch.equal(a, a2) and torch.equal(u, u2)
    # fixed n_modes: a seed gives the same field at two resolutions (nodes of 17 are every 2nd node of 33)
    grf = NeumannGaussianRandomField(n_modes=16)
    f33 = grf.sample(2, 33, torch.Generator().manual_seed(7))
    f17 = grf.sample(2, 17, torch.Generator().manual_seed(7))
    assert torch.allclose(f33[:, ::2, ::2], f17, atol=1e-12)
    # log-normal coefficients are positive and spread around 1
    ln = LogNormalCoefficient().sample(16, 17, gen)
    assert ln.min() > 0 and 0.5 < ln.log().std().item() * 3 < 5


def test_bad_input_errors():
    with pytest.raises(ValueError, match=r"expected a of shape \(B, 1, s, s\).*a\[None, None\]"):
        solve_darcy(torch.ones(9, 9))
    with pytest.raises(ValueError, match="positive"):
        solve_darcy(-torch.ones(1, 1, 9, 9))
    with pytest.raises(ValueError, match="method"):
        solve_darcy(torch.ones(1, 1, 9, 9), method="lu")


def test_resolution_421_one_sample_consistent_with_211():
    """The FNO resolution works; with a fixed-mode GRF the 421 solution sampled on the 211 nodes is close to
    the 211 solution of the same coefficient field (threshold jumps limit this to ~O(h))."""
    coef = ThresholdCoefficient(field=NeumannGaussianRandomField(n_modes=32))
    a421 = coef.sample(1, 421, torch.Generator().manual_seed(3))
    a211 = coef.sample(1, 211, torch.Generator().manual_seed(3))
    assert torch.equal(a421[..., ::2, ::2], a211)
    u421, u211 = solve_darcy(a421), solve_darcy(a211)
    assert u421.shape == (1, 1, 421, 421) and u421.min() >= 0
    rel = ((u421[..., ::2, ::2] - u211).abs().max() / u421.abs().max()).item()
    assert 1e-5 < rel < 2e-2, rel
