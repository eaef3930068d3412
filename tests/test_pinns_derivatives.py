"""The PINN residual's derivative passes (issue #36): as few passes through the network as the equation needs, the
chain rule for point-wise fluxes, shared derivatives; every fast path against the reference path or exact
derivatives."""

import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from pdeforge.pinns import PROBLEMS, AutogradDerivatives, NetworkConfig, PINNNet, pde_residual
from pdeforge.pinns._networks import InputEmbedding
from pdeforge.solvers import AbstractEquation, AllenCahn, Burgers, FluxTerm, KdV, KuramotoSivashinsky


def _mlp(n_in: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(n_in, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()


def _points(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, generator=gen, dtype=torch.float64) * 2 - 1, torch.rand(
        n, 1, generator=gen, dtype=torch.float64
    )


def _residual_and_gradient(equation, net, x, t, **options):
    """The residual with the derivative provider ``options`` and the gradient of its mean square by the net's first
    weight."""
    xt = torch.cat([x, t], 1).requires_grad_(True)
    u = net(xt)
    D = AutogradDerivatives((xt[:, :1],), field=u, time=xt[:, 1:], **options)
    r = equation.residual(D.time_derivative(u), u, D)
    return r, torch.autograd.grad(r.pow(2).mean(), net[0].weight)[0]


EQUATIONS = [Burgers(nu=0.01 / math.pi), KdV(), KuramotoSivashinsky(), AllenCahn(nu=0.01)]


@pytest.mark.parametrize("equation", EQUATIONS, ids=lambda e: type(e).__name__)
def test_chain_rule_fluxes_equal_the_reference_path(equation):
    """D(f(u), e_x) = f'(u) u_x (a pass through f alone) gives the reference path's residual and parameter gradients
    (D(f(u), e_x) by a pass through the whole network)."""
    net = _mlp()
    x, t = _points()
    r_fast, g_fast = _residual_and_gradient(equation, net, x, t)
    r_ref, g_ref = _residual_and_gradient(equation, net, x, t, chain_rule=False)
    assert torch.allclose(r_fast, r_ref, rtol=1e-12, atol=1e-13)
    assert torch.allclose(g_fast, g_ref, rtol=1e-10, atol=1e-12)
    assert r_fast.abs().max() > 1e-3  # a real residual, not a vanishing one


@pytest.mark.parametrize(
    ("equation", "passes"),
    [(Burgers(nu=0.01), 2), (KdV(), 3), (KuramotoSivashinsky(), 4), (AllenCahn(nu=0.01), 2)],
    ids=["Burgers", "KdV", "KS", "AllenCahn"],
)
def test_residual_takes_one_pass_per_derivative_order(monkeypatch, equation, passes):
    """Passes through the network (autograd.grad with respect to the stacked points): one for u_x and u_t together,
    one per higher order of x; the flux (u^2/2)_x adds none (the chain rule passes through u -> u^2 alone)."""
    calls = []
    real = torch.autograd.grad

    def counting(outputs, inputs, *args, **kwargs):
        calls.append(inputs)
        return real(outputs, inputs, *args, **kwargs)

    net = _mlp()
    fn = lambda x, t: net(torch.cat([x, t], 1))  # noqa: E731
    x, t = _points()
    monkeypatch.setattr(torch.autograd, "grad", counting)
    pde_residual(equation, fn, x, t)
    through_network = [c for c in calls if isinstance(c, torch.Tensor) and c.is_leaf]
    assert len(through_network) == passes
    assert all(c.shape == (64, 2) for c in through_network)  # the stacked (x, t) leaf each time


def test_stacked_and_separate_coordinates_give_the_same_derivatives():
    """Coordinates as columns of one leaf (one pass for all of them) or as separate leaves (one pass each): the same
    derivatives of every order, the mixed one included."""
    net = _mlp()
    x, t = _points()
    xt = torch.cat([x, t], 1).requires_grad_(True)
    u = net(xt)
    D = AutogradDerivatives((xt[:, :1],), field=u, time=xt[:, 1:])
    xs, ts = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    v = net(torch.cat([xs, ts], 1))
    E = AutogradDerivatives((xs,), field=v, time=ts)
    for alpha in [(1,), (2,), (3,)]:
        assert torch.allclose(D(u, alpha), E(v, alpha), rtol=1e-12, atol=1e-14)
    assert torch.allclose(D.time_derivative(u), E.time_derivative(v), rtol=1e-12, atol=1e-14)
    # channel slices share the field's derivatives (the linear terms take u[:, c : c + 1])
    assert D(u[:, 0:1], (2,)) is D(u, (2,))
    with pytest.raises(ValueError, match="time"):
        AutogradDerivatives((xs,)).time_derivative(v)


@dataclass(frozen=True, kw_only=True)
class _CoordinateFlux(AbstractEquation):
    """``u_t = -(x u^2)_x - (u u_x)_x``: a flux of the coordinates and one of a derivative (the chain rule must take
    neither)."""

    name: ClassVar[str] = "coordinate_flux"
    ndims: ClassVar[tuple[int, ...]] = (1,)

    def linear_terms(self, ndim: int):
        return ()

    def flux_terms(self, ndim: int):
        return (
            FluxTerm(-1.0, (1,), lambda u, D: D.coords()[0] * u[:, :1] ** 2),
            FluxTerm(-1.0, (1,), lambda u, D: u[:, :1] * D(u, (1,))),
        )

    def nonlinear_term(self, u, D):
        return None


def test_fluxes_of_coordinates_or_derivatives_are_differentiated_exactly():
    """u = sin(x) exp(-t): r = u_t + (x u^2)_x + (u u_x)_x = -u + u^2 + 2 x u u_x + u_x^2 + u u_xx, by hand."""
    fn = lambda x, t: torch.sin(x) * torch.exp(-t)  # noqa: E731
    x, t = _points()
    r, _ = pde_residual(_CoordinateFlux(), fn, x, t)
    u, ux, uxx = fn(x, t), torch.cos(x) * torch.exp(-t), -fn(x, t)
    assert torch.allclose(r, -u + u**2 + 2 * x * u * ux + ux**2 + u * uxx, rtol=1e-12, atol=1e-14)


def test_burgers_residual_vanishes_on_the_steady_viscous_shock():
    """The shared Burgers residual by the chain-rule path vanishes on an exact solution: the viscous shock
    u = -tanh(x / (2 nu)) (steady), to round-off."""
    nu = 0.05
    fn = lambda x, t: -torch.tanh(x / (2 * nu)) + 0 * t  # noqa: E731
    x, t = _points()
    r, _ = pde_residual(Burgers(nu=nu), fn, x, t)
    assert r.abs().max() < 1e-12
    r_wrong, _ = pde_residual(Burgers(nu=2 * nu), fn, x, t)
    assert r_wrong.abs().max() > 1e-2


@pytest.mark.parametrize("problem", ["burgers", "allen_cahn", "advection"])
def test_stacked_network_is_the_network(problem):
    """PINNNet.stacked(xt) (one leaf, one affine embedding) is PINNNet(x, t); the embedding is the documented one."""
    p = PROBLEMS[problem]().problem
    net = PINNNet(p, NetworkConfig(width=8, depth=2, harmonics=3)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, generator=gen, dtype=torch.float64) * 2 - 1
    t = torch.rand(32, 1, generator=gen, dtype=torch.float64)
    assert torch.equal(net.stacked(torch.cat([x, t], 1)), net(x, t))
    emb = InputEmbedding(("periodic", "neumann", "box"), (0.0, -1.0, 2.0), (2.0, 1.0, 5.0), (0.0, 4.0), harmonics=2)
    z = torch.rand(16, 4, generator=gen, dtype=torch.float64)
    xs = [z[:, i : i + 1] for i in range(4)]
    phase = math.pi * xs[0]
    expected = torch.cat(
        [
            torch.cos(phase * torch.tensor([1.0, 2.0], dtype=torch.float64)),
            torch.sin(phase * torch.tensor([1.0, 2.0], dtype=torch.float64)),
            torch.cos(math.pi * (xs[1] + 1) / 2),
            2 * (xs[2] - 2) / 3 - 1,
            2 * xs[3] / 4 - 1,
        ],
        1,
    )
    assert torch.allclose(emb.stacked(z), expected, rtol=1e-13, atol=1e-14)
    assert emb.out_features == expected.shape[1]


def test_condition_terms_from_one_evaluation_equal_each_condition_on_its_own():
    """The initial and Dirichlet misfits come from one pass over all their points (targets kept per point set): the
    same values as each condition evaluated on its own, Neumann sets in their place; new point sets are seen."""
    from pdeforge.pinns import PINN, Dirichlet, Domain, Neumann, Problem, SamplingConfig
    from pdeforge.pinns._domain import boundary_residual
    from pdeforge.solvers import Diffusion

    problem = Problem(
        Diffusion(nu=0.1),
        Domain((0.0, -1.0), (1.0, 1.0), (0.0, 0.5), (False, False)),
        lambda x: torch.sin(math.pi * x[:, :1]) * x[:, 1:2],
        boundary=(Dirichlet(0, lambda x, t: x[:, 1:2] * t), Neumann(1, 0.5)),
    )
    pinn = PINN(problem, NetworkConfig(width=8, depth=2), SamplingConfig(n_residual=32, n_initial=16, n_boundary=8))

    def by_hand():
        x0, t0 = pinn.initial_points
        initial = pinn.net(x0, t0) - problem.initial(x0)
        boundary = torch.cat([boundary_residual(bc, pinn.net, xb, tb, sb) for bc, xb, tb, sb in pinn.boundary_sets])
        return initial, boundary

    _, values = pinn.terms()
    initial, boundary = by_hand()
    assert torch.allclose(values["initial"], initial, rtol=1e-12, atol=1e-14)
    assert torch.allclose(values["boundary"], boundary, rtol=1e-12, atol=1e-14)
    assert values["boundary"].shape == (32, 1)  # 2 x 8 Dirichlet, then 2 x 8 Neumann
    pinn.initial_points = (pinn.initial_points[0].flip(0) * 0.5, pinn.initial_points[1])
    _, values = pinn.terms()
    assert torch.allclose(values["initial"], by_hand()[0], rtol=1e-12, atol=1e-14)
