"""Ensemble metrics on analytic cases: calibrated, under- and over-dispersed Gaussian ensembles (rank histogram,
spread-skill), the CRPS of N(mu, s^2) in closed form (Gneiting & Raftery 2007), the unbiasedness of the fair
estimators for small ensembles, the energy score against its Gaussian expectation, and the high-correlation
duration of ensemble means and members."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from pdeforge import metrics as M

F64 = torch.float64


def gaussian_crps(mu: torch.Tensor, s: float, y: torch.Tensor) -> torch.Tensor:
    """CRPS(N(mu, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)], z = (y - mu)/s."""
    z = (y - mu) / s
    normal = torch.distributions.Normal(torch.zeros((), dtype=F64), torch.ones((), dtype=F64))
    return s * (z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp() - 1 / math.sqrt(math.pi))


def ensemble(m: int, n: int, member_std: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth and m members around a random per-point mean: truth ~ N(c, 1), members ~ N(c, member_std^2)."""
    g = torch.Generator().manual_seed(seed)
    centre = 3 * torch.randn(n, generator=g, dtype=F64)
    truth = centre + torch.randn(n, generator=g, dtype=F64)
    members = centre + member_std * torch.randn(m, n, generator=g, dtype=F64)
    return members, truth


def chi2_pvalue(counts: torch.Tensor) -> float:
    expected = counts.sum().item() / len(counts)
    statistic = ((counts.double() - expected) ** 2 / expected).sum().item()
    return float(stats.chi2.sf(statistic, len(counts) - 1))


def test_calibrated_ensemble_flat_histogram_and_unit_spread_skill() -> None:
    members, truth = ensemble(m=10, n=40000, member_std=1.0)
    counts = M.rank_histogram(members, truth, generator=torch.Generator().manual_seed(1))
    assert counts.shape == (11,) and counts.sum() == 40000
    assert chi2_pvalue(counts) > 0.01, counts
    assert M.spread_skill_ratio(members, truth).item() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("member_std", [0.5, 2.0])
def test_miscalibrated_ensembles(member_std) -> None:
    """Under-dispersed (std 0.5): U-shaped histogram, ratio sqrt((m+1)/m) 0.5 / sqrt(1 + 0.25/m) = 0.518;
    over-dispersed (std 2): peaked in the middle, ratio sqrt(1.1) 2 / sqrt(1 + 4/m) = 1.773."""
    m = 10
    members, truth = ensemble(m=m, n=40000, member_std=member_std)
    counts = M.rank_histogram(members, truth, generator=torch.Generator().manual_seed(1)).double()
    ends, middle = (counts[0] + counts[-1]) / 2, counts[m // 2]
    assert chi2_pvalue(counts.long()) < 1e-6
    assert (ends > 2 * middle) if member_std < 1 else (middle > 2 * ends)
    expected = math.sqrt((m + 1) / m) * member_std / math.sqrt(1 + member_std**2 / m)
    assert M.spread_skill_ratio(members, truth).item() == pytest.approx(expected, rel=0.02)


def test_rank_histogram_breaks_ties_at_random() -> None:
    """A field clipped at 0 where truth and every member are 0: ranks spread uniformly over the m + 1 bins."""
    members, truth = torch.zeros(5, 30000, dtype=F64), torch.zeros(30000, dtype=F64)
    counts = M.rank_histogram(members, truth, generator=torch.Generator().manual_seed(0))
    assert chi2_pvalue(counts) > 0.01, counts
    a = M.rank_histogram(members, truth, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, M.rank_histogram(members, truth, generator=torch.Generator().manual_seed(3)))


def test_crps_large_ensemble_matches_closed_form() -> None:
    """m = 4000 members of N(mu, s^2) against 64 truths: the mean CRPS matches the closed form to 1 %."""
    g = torch.Generator().manual_seed(0)
    mu, s = 0.3, 0.7
    truth = torch.linspace(-1.5, 2.5, 64, dtype=F64)
    members = mu + s * torch.randn(4000, 64, generator=g, dtype=F64)
    exact = gaussian_crps(torch.tensor(mu, dtype=F64), s, truth)
    for fair in (True, False):
        got = M.crps_ensemble(members, truth, fair=fair, reduction="none")
        assert got.shape == truth.shape
        assert got.mean().item() == pytest.approx(exact.mean().item(), rel=0.01)


def test_fair_crps_unbiased_plain_biased_for_small_m() -> None:
    """m = 3 members, 200000 independent ensembles: the fair CRPS averages to the closed form within 4 standard
    errors; the plain one exceeds it by E|X - X'|/(2m) = s / (m sqrt(pi))."""
    g = torch.Generator().manual_seed(0)
    m, n, mu, s, y = 3, 200000, 0.0, 1.0, 0.7
    members = mu + s * torch.randn(m, n, generator=g, dtype=F64)
    truth = torch.full((n,), y, dtype=F64)
    exact = gaussian_crps(torch.tensor(mu, dtype=F64), s, torch.tensor(y, dtype=F64)).item()
    fair = M.crps_ensemble(members, truth, fair=True, reduction="none")
    plain = M.crps_ensemble(members, truth, fair=False, reduction="none")
    se = fair.std().item() / math.sqrt(n)
    assert abs(fair.mean().item() - exact) < 4 * se
    bias = s / (m * math.sqrt(math.pi))
    assert abs(plain.mean().item() - exact - bias) < 4 * plain.std().item() / math.sqrt(n)
    assert plain.mean().item() - exact > 10 * se


def test_pair_distance_by_sorting_matches_brute_force() -> None:
    x = torch.randn(7, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    brute = (x - y).abs().mean(0) - (x[:, None] - x[None]).abs().sum((0, 1)) / (2 * 7 * 6)
    assert torch.allclose(M.crps_ensemble(x, y, reduction="none"), brute, atol=1e-14)
    # the member axis anywhere
    assert torch.allclose(M.crps_ensemble(x.movedim(0, 2), y, member_dim=2, reduction="none"), brute, atol=1e-14)
    assert M.crps_ensemble(x, y, reduction="sample").shape == (5,)


def test_energy_score() -> None:
    """One-point fields: the energy score is the CRPS. d-dimensional Gaussian members against their mean: the fair
    score averages to s c_d (1 - 1/sqrt 2), c_d = E||Z|| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 40, 1, dtype=F64, generator=g), torch.randn(40, 1, dtype=F64, generator=g)
    assert torch.allclose(
        M.energy_score(x, y, reduction="sample"), M.crps_ensemble(x, y, reduction="none")[:, 0], atol=1e-14
    )
    d, m, n, s = 8, 4, 20000, 0.5
    members = s * torch.randn(m, n, 2, d // 2, dtype=F64, generator=g)
    score = M.energy_score(members, torch.zeros(n, 2, d // 2, dtype=F64), reduction="sample")
    c_d = math.sqrt(2) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))
    assert abs(score.mean().item() - s * c_d * (1 - 1 / math.sqrt(2))) < 4 * score.std().item() / math.sqrt(n)


def test_ensemble_high_correlation_duration() -> None:
    """Members that decorrelate as their noise grows; their mean averages the noise away and stays correlated
    longer. Each value is high_correlation_duration of the mean or the member."""
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 2 * math.pi, 64, dtype=F64)[:-1]
    steps, m = 40, 8
    truth = torch.sin(x).expand(2, steps, 1, 63).clone()
    growth = 0.05 * torch.arange(1, steps + 1, dtype=F64)[None, None, :, None, None]
    members = truth + growth * torch.randn(m, 2, steps, 1, 63, generator=g, dtype=F64)
    out = M.ensemble_high_correlation_duration(members, truth, 1, dt=0.1)
    assert out["members"].shape == (m,)
    assert out["mean"].item() == pytest.approx(M.high_correlation_duration(members.mean(0), truth, 1, 0.1).item())
    assert out["members"][3].item() == pytest.approx(M.high_correlation_duration(members[3], truth, 1, 0.1).item())
    assert out["mean"] > out["members"].max()
    everything = M.evaluate_ensemble(members, truth, 1, dt=0.1)
    assert everything["high_correlation_duration"] == pytest.approx(out["mean"].item())
    assert {"crps", "spread_skill", "energy_score", "rmse", "high_correlation_duration_members"} <= set(everything)


def test_bad_input() -> None:
    x, y = torch.zeros(4, 3, 5), torch.zeros(3, 6)
    with pytest.raises(ValueError, match=r"members \(4, 3, 5\) without the member axis \(member_dim=0\) is \(3, 5\)"):
        M.crps_ensemble(x, y)
    with pytest.raises(ValueError, match="expected 3 dims"):
        M.spread_skill_ratio(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="the fair CRPS needs at least 2 members"):
        M.crps_ensemble(torch.zeros(1, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="reduction must be"):
        M.crps_ensemble(torch.zeros(2, 3), torch.zeros(3), reduction="sum")
