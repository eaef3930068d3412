"""pdeforge's L-BFGS loop (pinns/_optim.py) against torch.optim.LBFGS: the same iterates, the two-loop recursion as two
triangular solves against the loops themselves."""

import pytest
import torch

from pdeforge.pinns import OptimConfig, lbfgs
from pdeforge.pinns._optim import _Pairs


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


@pytest.mark.parametrize(("history", "iters", "tol"), [(3, 10, 1e-13), (3, 25, 1e-7), (50, 25, 1e-10)])
def test_lbfgs_takes_torchs_iterates(history, iters, tol):
    """Rosenbrock in 6 dimensions, float64, strong Wolfe: pdeforge's loop and torch.optim.LBFGS (same history, first
    step and line search) walk the same points, with the history full and dropping its oldest pairs (3) or not; the
    round-off of the two ways of computing the direction (1e-16) grows slowly along the way."""
    start = torch.tensor([-1.2, 1.0, -0.5, 0.8, 1.5, -1.0], dtype=torch.float64)
    x = torch.nn.Parameter(start.clone())
    opt = torch.optim.LBFGS(
        [x], max_iter=iters, max_eval=10**6, history_size=history, tolerance_grad=0, tolerance_change=0,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = _rosenbrock(x)
        loss.backward()
        return loss

    opt.step(closure)
    y = torch.nn.Parameter(start.clone())
    config = OptimConfig(lbfgs_iters=iters, history_size=history, tolerance_grad=0, tolerance_change=0)
    report = lbfgs(lambda step: (_rosenbrock(y), {}), [y], config)
    assert report.iterations == iters == opt.state[x]["n_iter"]
    assert report.evaluations == opt.state[x]["func_evals"]
    assert torch.allclose(y.detach(), x.detach(), rtol=0, atol=tol)
    assert report.loss == pytest.approx(float(_rosenbrock(x.detach())), rel=100 * tol)
    assert report.loss < 0.2 * float(_rosenbrock(start))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_triangular_solves_are_the_two_loop_recursion(dtype):
    """_Pairs.direction = the loops of Nocedal & Wright's Algorithm 7.4 over the kept pairs (the oldest dropped)."""
    gen = torch.Generator().manual_seed(0)
    pairs, kept = _Pairs(7), []
    for _ in range(10):
        s = torch.randn(40, generator=gen, dtype=dtype)
        y = s + 0.3 * torch.randn(40, generator=gen, dtype=dtype)
        pairs.push(s, y)
        kept = (kept + [(s, y)])[-7:]
    g = torch.randn(40, generator=gen, dtype=dtype)
    q, alphas = -g.clone(), []
    for s, y in reversed(kept):
        a = float(s @ q) / float(y @ s)
        q = q - a * y
        alphas.append(a)
    r = 0.7 * q
    for (s, y), a in zip(kept, reversed(alphas)):
        r = r + (a - float(y @ r) / float(y @ s)) * s
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(pairs.direction(g, 0.7), r, rtol=tol, atol=tol * float(r.abs().max()))
    assert pairs.S.shape == (7, 40) and torch.allclose(pairs.P, pairs.S @ pairs.Y.T)
    assert torch.equal(_Pairs(3).direction(g, 2.0), -2 * g)  # no pair yet: a scaled gradient step
