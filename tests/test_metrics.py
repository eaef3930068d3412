"""pdeforge.metrics against analytic cases (float64)."""

import json
import math

import pytest
import torch

from pdeforge import metrics as M


@pytest.fixture(autouse=True)
def _float64():
    """float64 for every tensor made in these tests, restored afterwards (other test files share the process)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _x(n: int, length: float = 1.0) -> torch.Tensor:
    """Periodic grid x_i = i L / n."""
    return torch.arange(n, dtype=torch.float64) * length / n


def _field_1d(b: int = 3, c: int = 2, n: int = 64) -> torch.Tensor:
    x = _x(n)
    amps = torch.arange(1, b * c + 1, dtype=torch.float64).reshape(b, c, 1)
    return amps * torch.sin(2 * math.pi * x) + 0.3 * torch.cos(6 * math.pi * x) + 0.1


@pytest.mark.parametrize("eps", [1e-3, 0.25])
def test_relative_errors_of_scaled_target_equal_eps(eps):
    y = _field_1d()
    p = y * (1 + eps)
    assert torch.allclose(M.rel_l2(p, y, 1), torch.tensor(eps), rtol=1e-12)
    assert torch.allclose(M.rel_l1(p, y, 1), torch.tensor(eps), rtol=1e-12)
    assert torch.allclose(M.nrmse(p, y, 1), torch.tensor(eps), rtol=1e-12)  # nrmse = ||e||/||y|| too
    per = M.rel_l2(p, y, 1, reduction="none")
    assert per.shape == (3, 2) and torch.allclose(per, torch.full((3, 2), eps), rtol=1e-12)


def test_rmse_max_error_crmse_of_offset_plus_wave():
    n = 80  # the wave sin(2 pi 5 x) reaches +-1 on this grid (i = 4, 12)
    x = _x(n)
    y = _field_1d(n=n)
    c = torch.tensor([0.5, -2.0, 1.0]).reshape(3, 1, 1)
    wave = 0.2 * torch.sin(2 * math.pi * 5 * x)
    p = y + c + wave
    # mean of (c + w)^2 = c^2 + 0.2^2 / 2 on full periods; the spatial mean of the wave is 0
    expected_rmse = torch.sqrt(c.flatten() ** 2 + 0.02)
    assert torch.allclose(M.rmse(p, y, 1, reduction="sample"), expected_rmse, rtol=1e-12)
    assert torch.allclose(M.crmse(p, y, 1, reduction="sample"), c.abs().flatten(), rtol=1e-12)
    assert torch.allclose(M.max_error(p, y, 1, reduction="sample"), (c.abs() + 0.2).flatten(), rtol=1e-12)
    assert torch.allclose(M.rmse(p, y, 1), expected_rmse.mean(), rtol=1e-12)  # batch mean of per-sample values


def test_brmse_1d_and_2d_boundary_points():
    e = torch.zeros(1, 1, 10)
    e[..., 0], e[..., -1], e[..., 4] = 3.0, 4.0, 100.0  # interior point must not count
    assert torch.allclose(M.brmse(e, torch.zeros_like(e), 1), torch.tensor(math.sqrt((9 + 16) / 2)), rtol=1e-14)
    nx, ny = 6, 9
    e2 = torch.zeros(1, 1, nx, ny)
    e2[..., 0, :] = 1.0  # the x = 0 face; its two ends also lie on the y faces
    e2[..., 3, 4] = 50.0  # interior
    expected = math.sqrt((ny + 2) / (2 * nx + 2 * ny))
    assert torch.allclose(M.brmse(e2, torch.zeros_like(e2), 2), torch.tensor(expected), rtol=1e-14)


@pytest.mark.parametrize("k0,band,n_shells_in_band", [(2, "low", 4), (7, "mid", 8), (20, "high", 21)])
def test_frmse_1d_sine_lands_in_its_band(k0, band, n_shells_in_band):
    n, length, amp = 64, 2.0, 0.7
    x = _x(n, length)
    y = torch.zeros(1, 1, n)
    p = (amp * torch.sin(2 * math.pi * k0 * x / length)).reshape(1, 1, n)
    spec = M.frmse_spectrum(p, y, 1, domain_lengths=(length,))
    assert spec.shape[-1] == n // 2 + 1  # rfft shells, as PDEBench 1D
    assert torch.allclose(spec[0, 0, k0], torch.tensor(amp * length / 2), rtol=1e-12)
    for b in M.FOURIER_BANDS:
        value = M.frmse(p, y, 1, band=b, domain_lengths=(length,))
        expected = amp * length / 2 / n_shells_in_band if b == band else 0.0
        assert abs(float(value) - expected) < 1e-12, (b, float(value), expected)


def test_frmse_2d_shells():
    nx, ny, amp = 32, 40, 1.3
    x = _x(nx)[:, None]
    yy = _x(ny)[None, :]
    zero = torch.zeros(1, 1, nx, ny)
    # a mode along x only: shell 3 (low band); half of it sits in the kept orthant -> A/2
    p = (amp * torch.sin(2 * math.pi * 3 * x) + 0 * yy).reshape(1, 1, nx, ny)
    spec = M.frmse_spectrum(p, zero, 2)
    assert spec.shape[-1] == min(nx, ny) // 2
    assert torch.allclose(spec[0, 0, 3], torch.tensor(amp / 2), rtol=1e-12)
    assert float(spec[0, 0].sum() - spec[0, 0, 3]) < 1e-12
    assert abs(float(M.frmse(p, zero, 2, "low")) - amp / 2 / 4) < 1e-12
    # a diagonal mode (3, 4): |k| = 5 -> mid band, domain lengths scale by Lx Ly
    p2 = (amp * torch.cos(2 * math.pi * (3 * x + 4 * yy))).reshape(1, 1, nx, ny)
    assert abs(float(M.frmse(p2, zero, 2, "mid", domain_lengths=(2.0, 0.5))) - amp / 2 / 8) < 1e-12
    assert float(M.frmse(p2, zero, 2, "low")) < 1e-12 and float(M.frmse(p2, zero, 2, "high")) < 1e-12


def test_vrmse_of_mean_predictor_is_one_and_of_offset_is_offset_over_std():
    y = _field_1d()
    mean_pred = y.mean(dim=-1, keepdim=True).expand_as(y)
    assert torch.allclose(M.vrmse(mean_pred, y, 1, eps=0.0), torch.tensor(1.0), rtol=1e-12)
    assert abs(float(M.vrmse(mean_pred, y, 1)) - 1.0) < 1e-6  # default eps = 1e-7
    std = y.std(dim=-1, unbiased=False)
    assert torch.allclose(M.vrmse(y + 0.1, y, 1, eps=0.0, reduction="none"), 0.1 / std, rtol=1e-12)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0, 2.5])
def test_correlation_of_shifted_sine_is_cos_shift(shift):
    n = 48
    x = 2 * math.pi * _x(n)
    y = torch.sin(x).reshape(1, 1, n)
    p = (2.0 * torch.sin(x + shift) + 5.0).reshape(1, 1, n)  # scale and offset do not matter
    assert abs(float(M.correlation(p, y, 1)) - math.cos(shift)) < 1e-12
    # 2D: a shifted plane wave
    xx, yy = torch.meshgrid(x, x[:16] * 3, indexing="ij")
    y2 = torch.sin(xx + yy)[None, None]
    p2 = torch.sin(xx + yy + shift)[None, None]
    assert abs(float(M.correlation(p2, y2, 2)) - math.cos(shift)) < 1e-12


def _drifting_rollout(n_steps: int, rates: list[float], n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Target sin(x), prediction sin(x + rate t) per sample: correlation cos(rate t) at step t."""
    x = 2 * math.pi * _x(n)
    t = torch.arange(n_steps, dtype=torch.float64)
    r = torch.tensor(rates)
    target = torch.sin(x).expand(len(rates), n_steps, 1, n).clone()
    pred = torch.sin(x[None, None, None, :] + (r[:, None] * t[None, :])[:, :, None, None])
    return pred, target


def test_high_correlation_duration():
    # rate 0.2: cos(0.6) = 0.825, cos(0.8) = 0.697 -> first step below 0.8 is 4; rate 0: never drops -> T
    pred, target = _drifting_rollout(10, [0.2, 0.0])
    dt = 0.05
    per = M.high_correlation_duration(pred, target, 1, dt=dt, reduction="sample")
    assert torch.allclose(per, torch.tensor([4 * dt, 10 * dt]), rtol=1e-12)
    assert abs(float(M.high_correlation_duration(pred, target, 1, dt=dt)) - 7 * dt) < 1e-12
    # a threshold above 1 fails at once
    assert float(M.high_correlation_duration(pred, target, 1, dt=dt, threshold=1.5)) == 0.0


def test_rollout_curve_per_step_and_alignment_errors():
    pred, target = _drifting_rollout(6, [0.2, 0.1])
    curve = M.rollout_curve("correlation", pred, target, 1)
    t = torch.arange(6, dtype=torch.float64)
    assert torch.allclose(curve, (torch.cos(0.2 * t) + torch.cos(0.1 * t)) / 2, atol=1e-12)
    offset = torch.arange(1, 7, dtype=torch.float64).reshape(1, 6, 1, 1)
    assert torch.allclose(M.rollout_curve("rmse", target + offset, target, 1), offset.flatten(), rtol=1e-12)
    curves = M.rollout_curves(pred, target, 1)
    assert set(curves) == {"rmse", "nrmse", "vrmse", "correlation"} and curves["rmse"].shape == (6,)
    # prediction that still carries the initial frame: refused
    with pytest.raises(ValueError, match="initial frames"):
        M.rollout_curve("rmse", pred, target[:, :5], 1)
    with pytest.raises(ValueError, match="initial frames"):
        M.rmse(pred[:, 1:], target, 1)
    with pytest.raises(ValueError, match="add a time axis"):
        M.rollout_curve("rmse", pred[:, 0], target[:, 0], 1)
    with pytest.raises(ValueError, match=r"u\[None, None\]"):
        M.rmse(torch.zeros(32), torch.zeros(32), 1)
    with pytest.raises(ValueError, match="reduction"):
        M.rmse(pred, target, 1, reduction="sum")


def test_evaluate_all_is_json_able_and_consistent():
    pred, target = _drifting_rollout(5, [0.3, 0.0], n=64)
    target = target + 2.0
    pred = target * 1.01
    out = M.evaluate_all(pred, target, 1, dt=0.1)
    json.dumps(out)
    assert all(isinstance(v, float) for v in out.values())
    assert set(out) == set(M.POINTWISE_METRICS) | {"frmse_low", "frmse_mid", "frmse_high", "high_correlation_duration"}
    assert abs(out["rel_l2"] - 0.01) < 1e-12 and abs(out["correlation"] - 1.0) < 1e-12
    assert abs(out["high_correlation_duration"] - 0.5) < 1e-12
    assert abs(out["crmse"] - 0.02) < 1e-12  # mean of 0.01 * (2 + sin) = 0.02
    # a small grid has no high band: the key is absent rather than a nan
    small = M.evaluate_all(pred[..., :16], target[..., :16], 1)
    assert "frmse_high" not in small and "high_correlation_duration" not in small
