"""Shallow water (issue 34): the well-balanced hydrostatic-reconstruction solver against mathematics, and the
``shallow_water_dam_break_2d`` preset (PDEBench's radial dam break) through generate, import and training.

Solver: a lake at rest (over a submerged bump, and over bumps that emerge: wet/dry) stays at rest to round-off; the
1D dam break against Stoker's exact solution (wet bed) and Ritter's (dry bed), L1 errors falling with resolution;
second order on a smooth wave over a bump; mass conserved to round-off between walls; the radial dam break symmetric
under x <-> y (and x -> -x) exactly; a batch equal to its trajectories run one by one; gradients; a bad state is a
named error, bad input one line. Preset: PDEBench's facts, generate (valid, same bytes for a seed, shards, resume
after SIGKILL, a blow-up named), and generated data laid out and trained like PDEBench's file imported.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pdeforge.solvers.shallow_water import (
    SSP_RK2,
    SSP_RK3,
    RectGrid,
    ShallowWater2D,
    ShallowWaterScheme,
    ShallowWaterStateError,
    dam_break_exact,
    disc_depth,
)

F64 = torch.float64


def state(h: torch.Tensor, hu: torch.Tensor | None = None, hv: torch.Tensor | None = None) -> torch.Tensor:
    zero = torch.zeros_like(h)
    return torch.stack([h, zero if hu is None else hu, zero if hv is None else hv], dim=-3)


# -- well-balanced: a lake at rest stays at rest -------------------------------------------------------------------
def lake(grid: RectGrid, bed: torch.Tensor, level: float = 1.0) -> torch.Tensor:
    return state((level - bed).clamp_min(0))[None]


@pytest.mark.parametrize(
    "scheme",
    [
        ShallowWaterScheme(),  # MC, HLL, SSP-RK3
        ShallowWaterScheme(limiter="minmod", flux="rusanov", rk=SSP_RK2),
        ShallowWaterScheme(limiter="van_leer", flux="hll", rk=SSP_RK2, cfl=0.45),
    ],
    ids=["mc-hll-rk3", "minmod-rusanov-rk2", "vanleer-hll-rk2"],
)
def test_a_lake_at_rest_over_a_submerged_bump_stays_at_rest(scheme: ShallowWaterScheme) -> None:
    grid = RectGrid(24, 20, (-1.0, 1.0), (-1.0, 1.0))
    x, y = grid.centres(F64)
    bed = 0.6 * torch.exp(-8 * ((x - 0.2) ** 2 + y**2)) + 0.1 * torch.sin(3 * x) * torch.cos(2 * y)
    U0 = lake(grid, bed)
    assert float(U0[:, 0].min()) > 0.2  # everywhere wet
    solver = ShallowWater2D(grid, 9.81, bed, boundary=("wall", "outflow"), scheme=scheme)
    out = solver.rollout(U0, [0.0, 0.5, 1.0])  # ~220 steps
    surface = out[0, :, 0] + bed
    assert float(out[0, :, 1:].abs().max()) < 1e-13
    assert float((surface - 1.0).abs().max()) < 1e-13


def test_a_lake_at_rest_over_bumps_that_emerge_stays_at_rest_wet_and_dry() -> None:
    grid = RectGrid(32, 32, (-1.0, 1.0), (-1.0, 1.0))
    x, y = grid.centres(F64)
    bed = (
        1.3 * torch.exp(-12 * ((x + 0.3) ** 2 + (y - 0.2) ** 2))  # an island
        + 0.8 * torch.exp(-20 * ((x - 0.5) ** 2 + (y + 0.4) ** 2))  # a submerged hill
        + 0.3 * (x + 1.0) ** 2  # a beach at x = 1 above the surface (0.3 * 4 = 1.2)
    )
    U0 = lake(grid, bed)
    dry = U0[0, 0] == 0
    assert 40 < int(dry.sum()) < 400  # some cells dry, most wet
    solver = ShallowWater2D(grid, 9.81, bed, boundary="wall")
    out = solver.rollout(U0, [0.0, 0.5, 1.0])  # ~450 steps
    h = out[0, :, 0]
    assert float(out[0, :, 1:].abs().max()) < 1e-13
    assert float(((h + bed - 1.0) * ~dry).abs().max()) < 1e-13  # the surface of the wet cells
    assert bool((h[:, dry] == 0).all())  # dry cells stay exactly dry


# -- the 1D dam break against the exact solutions (SWASHES' cases) ------------------------------------------------
def dam_break_1d(n: int, h_left: float, h_right: float, t: float = 6.0) -> tuple[np.ndarray, np.ndarray, float]:
    """SWASHES 4.1.1/4.1.2: a 10 m channel, the dam at 5 m, g = 9.81; solved on ``n x 1`` cells (exactly 1D)."""
    grid = RectGrid(n, 1, (0.0, 10.0), (0.0, 1.0))
    x, _ = grid.axis_centres(F64)
    h0 = torch.where(x < 5.0, torch.full_like(x, h_left), torch.full_like(x, h_right))[:, None]
    out = ShallowWater2D(grid, 9.81, boundary="outflow").rollout(state(h0)[None], [0.0, t])
    return x.numpy(), out[0, -1, 0, :, 0].numpy(), grid.dx


def test_the_exact_dam_break_satisfies_rankine_hugoniot_and_swashes_polynomial() -> None:
    g, hl, hr = 9.81, 0.005, 0.001
    x = np.linspace(0, 10, 200001)
    h, u = dam_break_exact(x, 6.0, hl, hr, g, 5.0)
    plateau = (h > hr * 1.01) & (h < hl * 0.99) & (np.gradient(h) == 0)
    hm = float(np.median(h[plateau]))
    um = float(u[np.argmin(np.abs(h - hm))])
    shock = x[np.nonzero(h > hr)[0].max()]
    s = (shock - 5.0) / 6.0
    cm, cl = math.sqrt(g * hm), math.sqrt(g * hl)
    assert s * (hm - hr) == pytest.approx(hm * um, rel=1e-3)  # mass (the shock located to 5e-5 m)
    momentum = s * (hm * um) - (hm * um**2 + g * hm**2 / 2 - g * hr**2 / 2)
    assert abs(momentum) < 1e-3 * g * hm**2 / 2
    assert um == pytest.approx(2 * (cl - cm), rel=1e-12)  # the Riemann invariant across the rarefaction
    poly = -8 * g * hr * cm**2 * (cl - cm) ** 2 + (cm**2 - g * hr) ** 2 * (cm**2 + g * hr)
    assert abs(poly) < 1e-12 * (g * hl) ** 3
    assert hr < hm < hl and 0 < um < 2 * cl


def test_the_wet_dam_break_converges_to_stoker_in_l1() -> None:
    errors = []
    for n in (100, 200, 400):
        x, h, dx = dam_break_1d(n, 0.005, 0.001)
        exact, _ = dam_break_exact(x, 6.0, 0.005, 0.001, 9.81, 5.0)
        errors.append(float(np.abs(h - exact).sum() * dx))
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    # measured: 1.66e-4, 7.88e-5, 4.24e-5 m^2 (orders 1.08, 0.89): first order, as at a shock
    assert errors[0] < 2e-4 and errors[-1] < 5e-5, errors
    assert all(o > 0.7 for o in orders), (errors, orders)


def test_the_dry_dam_break_stays_non_negative_and_converges_to_ritter() -> None:
    errors, lags = [], []
    for n in (100, 200, 400):
        x, h, dx = dam_break_1d(n, 0.005, 0.0)
        exact, _ = dam_break_exact(x, 6.0, 0.005, 0.0, 9.81, 5.0)
        assert float(h.min()) >= 0.0
        errors.append(float(np.abs(h - exact).sum() * dx))

        def front(depth: np.ndarray, threshold: float, x: np.ndarray = x) -> float:
            return float(x[np.nonzero(depth > threshold)[0].max()])

        assert abs(front(h, 1e-4) - front(exact, 1e-4)) <= 2 * dx + 1e-12  # where h = 2% of h_l: within 2 cells
        lags.append(front(exact, 1e-6) - front(h, 1e-6))  # the thin tip lags (measured 0.50, 0.35, 0.25 m)
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    # measured: 1.37e-4, 6.44e-5, 3.13e-5 m^2 (orders 1.09, 1.04)
    assert errors[-1] < 4e-5 and all(o > 0.8 for o in orders), (errors, orders)
    assert lags[0] > lags[1] > lags[2] > 0, lags


def test_a_smooth_wave_over_a_bump_converges_at_second_order() -> None:
    """MUSCL + SSP-RK3 is second order where the flow is smooth: a hump of water spreading over a bump (g = 9.81,
    t = 0.05, before any shock), each solution against the next finer one averaged onto its cells."""

    def solve(n: int) -> torch.Tensor:
        grid = RectGrid(n, 1, (0.0, 1.0), (0.0, 1.0))
        fine = (torch.arange(16 * n, dtype=F64) + 0.5) / (16 * n)  # cell averages from 16 points per cell
        surface = (1 + 0.1 * torch.exp(-100 * (fine - 0.5) ** 2)).reshape(n, 16).mean(1)
        bed = (0.2 * torch.exp(-50 * (fine - 0.3) ** 2)).reshape(n, 16).mean(1)
        solver = ShallowWater2D(grid, 9.81, bed[:, None], boundary="outflow")
        return solver.rollout(state((surface - bed)[:, None])[None], [0.05])[0, -1, 0, :, 0]

    h = {n: solve(n) for n in (50, 100, 200, 400)}
    errors = [float((h[n] - h[2 * n].reshape(n, 2).mean(1)).abs().mean()) for n in (50, 100, 200)]
    orders = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    # measured: 3.87e-4, 8.37e-5, 1.98e-5 (orders 2.21, 2.08; 2.06 next)
    assert all(o > 1.8 for o in orders), (errors, orders)


def test_a_1d_problem_solved_on_one_row_equals_every_row_of_a_channel_with_walls() -> None:
    def run(ny: int) -> torch.Tensor:
        grid = RectGrid(40, ny, (0.0, 1.0), (0.0, 0.1 * ny))
        x, _ = grid.centres(F64)
        h = 1.0 + 0.5 * (x < 0.4)
        return ShallowWater2D(grid, 9.81, boundary=("outflow", "wall")).rollout(state(h)[None], [0.05])[0, 0]

    one, three = run(1), run(3)
    for j in range(3):
        torch.testing.assert_close(three[:, :, j], one[:, :, 0], rtol=0, atol=1e-15)
    assert float(three[2].abs().max()) < 1e-15  # no transverse momentum


# -- conservation, symmetry, batching ---------------------------------------------------------------------------
def test_mass_is_conserved_to_round_off_between_walls_with_wet_and_dry_cells() -> None:
    grid = RectGrid(32, 24, (0.0, 2.0), (0.0, 1.5))
    x, y = grid.centres(F64)
    bed = 0.8 * torch.exp(-10 * ((x - 1.4) ** 2 + (y - 0.7) ** 2)) + 0.1 * x
    hump = 0.4 * (1 - ((x - 0.5) ** 2 + (y - 0.8) ** 2) / 0.1).clamp_min(0)  # a hump of water, compact
    h = (0.5 - bed).clamp_min(0) + hump
    U0 = state(h)[None]
    assert bool((h == 0).any())
    out = ShallowWater2D(grid, 9.81, bed, boundary="wall").rollout(U0, [0.0, 0.5, 1.0])
    mass = out[0, :, 0].sum(dim=(-1, -2)) * grid.dx * grid.dy
    # round-off of ~1200 stages (measured 5.8e-15 at t = 0.5, 1.3e-14 at t = 1): no flux through the walls
    assert float((mass - mass[0]).abs().max() / mass[0]) < 1e-13
    assert float(out[0, -1, 1:].abs().max()) > 1e-2  # the water moved
    assert float(out[0, :, 0].min()) >= 0.0


def radial(n: int, radii: list[float], gravity: float = 1.0) -> tuple[RectGrid, torch.Tensor]:
    grid = RectGrid(n, n, (-2.5, 2.5), (-2.5, 2.5))
    return grid, torch.stack([state(disc_depth(grid, r, 2.0, 1.0)) for r in radii])


def swap(U: torch.Tensor) -> torch.Tensor:
    """The state mirrored in the diagonal: (x, y, hu, hv) -> (y, x, hv, hu)."""
    return U[..., [0, 2, 1], :, :].transpose(-1, -2)


def mirror_x(U: torch.Tensor) -> torch.Tensor:
    """The state mirrored in x = 0: (x, y, hu, hv) -> (-x, y, -hu, hv)."""
    flipped = U.flip(-2)
    return torch.cat([flipped[..., :1, :, :], -flipped[..., 1:2, :, :], flipped[..., 2:, :, :]], dim=-3)


def test_the_radial_dam_break_keeps_its_x_y_symmetry_exactly() -> None:
    grid, U0 = radial(32, [0.7])
    for symmetry in (swap, mirror_x):
        torch.testing.assert_close(symmetry(U0), U0, rtol=0, atol=0)
    out = ShallowWater2D(grid, 1.0).rollout(U0, [0.0, 0.25, 0.5])
    torch.testing.assert_close(swap(out), out, rtol=0, atol=0)  # one code path for both sweeps
    torch.testing.assert_close(mirror_x(out), out, rtol=0, atol=0)  # measured: exact too (symmetric HLL, limiter)
    assert float(out[0, -1, 1].abs().max()) > 0.1  # it moved


def test_a_batch_equals_its_trajectories_run_one_by_one() -> None:
    grid, U0 = radial(24, [0.3, 0.7, 0.5], gravity=9.81)
    x, y = grid.centres(F64)
    bed = torch.stack([0 * x, 0.3 * torch.exp(-((x - 1) ** 2 + y**2)), 0.1 * x])
    times = [0.0, 0.1, 0.3]
    batched = ShallowWater2D(grid, 9.81, bed, boundary="wall").rollout(U0, times)
    for b in range(3):
        single = ShallowWater2D(grid, 9.81, bed[b], boundary="wall").rollout(U0[b : b + 1], times)
        torch.testing.assert_close(batched[b : b + 1], single, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)")
def test_on_cuda_the_numbers_of_the_cpu() -> None:
    grid, U0 = radial(64, [0.4, 0.65])
    x, y = grid.centres(F64)
    bed = 0.2 * torch.exp(-((x - 1) ** 2 + y**2))
    cpu = ShallowWater2D(grid, 1.0, bed, boundary=("wall", "outflow")).rollout(U0, [0.0, 0.5, 1.0])
    gpu = ShallowWater2D(grid, 1.0, bed, boundary=("wall", "outflow")).rollout(U0.cuda(), [0.0, 0.5, 1.0])
    assert gpu.device.type == "cuda"
    assert float((gpu.cpu() - cpu).norm() / cpu.norm()) < 1e-10  # float64; FMA contraction on the GPU only


# -- differentiable ----------------------------------------------------------------------------------------------
def test_a_step_is_differentiable_and_its_gradient_checks_against_finite_differences() -> None:
    grid = RectGrid(6, 5, (0.0, 1.0), (0.0, 1.0))
    g = torch.Generator().manual_seed(0)
    x, y = grid.centres(F64)
    bed = (0.2 * torch.sin(2 * x + y)).requires_grad_(True)
    U = state(1.0 + 0.2 * torch.cos(3 * x - 2 * y), 0.1 * torch.sin(x), 0.05 * torch.cos(y))[None]
    U = (U + 1e-3 * torch.rand(U.shape, generator=g, dtype=F64)).requires_grad_(True)

    def one_step(U0, b):
        return ShallowWater2D(grid, 9.81, b, boundary=("wall", "outflow")).step(U0, 0.01)

    assert torch.autograd.gradcheck(one_step, (U, bed), eps=1e-6, atol=1e-7, fast_mode=True)
    # through a CFL-adaptive rollout (the step sizes chosen without gradient): finite, non-zero gradients
    out = ShallowWater2D(grid, 9.81, bed, boundary="wall").rollout(U, [0.0, 0.05])
    grad_U, grad_b = torch.autograd.grad(out[:, -1, 0].square().sum(), (U, bed))
    assert bool(torch.isfinite(grad_U).all() and torch.isfinite(grad_b).all())
    assert float(grad_U.abs().max()) > 0 and float(grad_b.abs().max()) > 0


# -- failures: named, one line -------------------------------------------------------------------------------------
def test_a_state_that_goes_bad_is_a_named_error_never_a_nan() -> None:
    grid, U0 = radial(16, [0.6])
    solver = ShallowWater2D(grid, 1.0, scheme=ShallowWaterScheme(cfl=4.0))
    with pytest.raises(ShallowWaterStateError, match=r"^shallow water: trajectory 0 went bad \(") as info:
        solver.rollout(U0, [0.0, 0.5])
    assert isinstance(info.value, FloatingPointError) and "\n" not in str(info.value)
    assert "lower the CFL number (scheme.cfl = 4)" in str(info.value)
    stalled = ShallowWater2D(grid, 1.0, scheme=ShallowWaterScheme(max_steps=3))
    with pytest.raises(
        ShallowWaterStateError, match=r"^shallow water: trajectory 0 stalled at t = [0-9.]+ after 3 steps "
    ):
        stalled.rollout(U0, [0.0, 0.5])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ShallowWaterScheme(limiter="superbee"), r"limiter 'superbee': expected one of \('minmod'"),
        (lambda: ShallowWaterScheme(flux="roe"), r"flux 'roe': expected one of \('hll', 'rusanov'\)"),
        (lambda: ShallowWaterScheme(cfl=0), r"cfl 0: expected a number > 0"),
        (lambda: RectGrid(0, 4), r"RectGrid: nx 0: expected an integer >= 1"),
        (lambda: RectGrid(4, 4, (1.0, 0.0)), r"RectGrid: x_range \(1.0, 0.0\): expected \(low, high\)"),
        (lambda: ShallowWater2D(RectGrid(4, 4), boundary="periodic"), r"boundary 'periodic': expected one of"),
        (lambda: ShallowWater2D(RectGrid(4, 4), bathymetry=torch.zeros(3, 4)), r"bathymetry of shape \(3, 4\)"),
        (
            lambda: ShallowWater2D(RectGrid(4, 4)).rollout(torch.ones(3, 4, 4), [0.1]),
            r"add a batch axis with U\[None\]",
        ),
        (
            lambda: ShallowWater2D(RectGrid(4, 4)).rollout(-torch.ones(1, 3, 4, 4, dtype=F64), [0.1]),
            r"initial depth has negative values \(min -1\): expected h >= 0",
        ),
        (
            lambda: ShallowWater2D(RectGrid(4, 4)).rollout(torch.ones(1, 3, 4, 4, dtype=F64), [0.2, 0.1]),
            r"expected output times in increasing order",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_value(make, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


# -- the preset: PDEBench's radial dam break -----------------------------------------------------------------------
def tiny(**over):
    from pdeforge.solvers.generate import PRESETS, with_overrides

    return with_overrides(PRESETS["shallow_water_dam_break_2d"], **{"n_frames": 4, "t_end": 0.06, **over})


def test_the_preset_states_pdebench_facts_and_its_initial_cells_restrict_exactly() -> None:
    from pdeforge.solvers.generate import PRESETS

    p = PRESETS["shallow_water_dam_break_2d"]
    assert (p.resolution, p.n_frames, p.t_end, p.gravity, p.radius_range) == (128, 101, 1.0, 1.0, (0.3, 0.7))
    schema = p.schema(128)
    assert schema.boundary_conditions == "open" and [f.name for f in schema.fields] == ["h"] and not schema.scalars
    np.testing.assert_allclose(schema.coords["x"], -2.5 + (np.arange(128) + 0.5) * 5 / 128, rtol=0, atol=1e-15)
    np.testing.assert_allclose(schema.time, np.linspace(0.0, 1.0, 101), rtol=0, atol=1e-15)
    radii = p.radii(range(200), seed=0)
    assert 0.3 <= min(radii) < 0.32 and 0.68 < max(radii) <= 0.7  # uniform in [0.3, 0.7]
    coarse, fine = RectGrid(16, 16, (-2.5, 2.5), (-2.5, 2.5)), RectGrid(32, 32, (-2.5, 2.5), (-2.5, 2.5))
    h, h2 = disc_depth(coarse, 0.55, 2.0, 1.0, 8), disc_depth(fine, 0.55, 2.0, 1.0, 4)
    torch.testing.assert_close(h2.reshape(16, 2, 16, 2).mean(dim=(1, 3)), h, rtol=0, atol=1e-15)
    area = float((h - 1.0).sum()) * coarse.dx * coarse.dy
    assert area == pytest.approx(math.pi * 0.55**2, rel=2e-2)  # the disc's area (1.1% off: 128^2 points in all)


def test_the_preset_solves_the_radial_dam_break_and_its_trajectories_do_not_depend_on_batching() -> None:
    p = tiny()
    together = p.solve([0, 1, 2], seed=3, resolution=24, device="cpu")
    apart = torch.cat([p.solve([j], seed=3, resolution=24, device="cpu").fields for j in (0, 1, 2)])
    torch.testing.assert_close(together.fields, apart, rtol=0, atol=0)
    f = together.fields
    assert f.shape == (3, 4, 1, 24, 24) and f.dtype == F64
    assert float(f.min()) >= 1.0 - 1e-3 and float(f[:, 0].max()) == 2.0  # still water at 1, the disc at 2
    mass = f.sum(dim=(-1, -2))[..., 0]  # outflow boundaries, but the waves have not reached them at t = 0.06
    torch.testing.assert_close(mass, mass[:, :1].expand_as(mass), rtol=1e-13, atol=0)
    assert [r["dam_radius"] for r in together.parameters] == p.radii([0, 1, 2], 3)


def test_generate_writes_a_valid_dataset_identical_for_a_seed_and_shards_equal_one_run(tmp_path: Path) -> None:
    import filecmp

    from pdeforge.datasets import TrajectoryDataset, validate
    from pdeforge.solvers.generate import generate

    p = tiny()
    options = dict(n_trajectories=5, resolution=16, batch_size=2, progress=False)
    generate(p, tmp_path / "a", seed=7, **options)
    generate(p, tmp_path / "b", seed=7, **options)
    generate(p, tmp_path / "c", seed=8, **options)
    generate(p, tmp_path / "two", seed=7, shard=(1, 2), **options)
    generate(p, tmp_path / "two", seed=7, shard=(0, 2), **options)
    assert len(validate(tmp_path / "a")) == 3
    for f in sorted((tmp_path / "a").rglob("*.hdf5")):
        rel = f.relative_to(tmp_path / "a")
        assert filecmp.cmp(f, tmp_path / "b" / rel, shallow=False), rel
        assert not filecmp.cmp(f, tmp_path / "c" / rel, shallow=False), rel
    for split in ("train", "valid", "test"):
        one = TrajectoryDataset(tmp_path / "a", split=split, full_trajectory=True)
        two = TrajectoryDataset(tmp_path / "two", split=split, full_trajectory=True)
        assert len(one) == len(two) > 0
        for i in range(len(one)):
            torch.testing.assert_close(one[i]["output_fields"], two[i]["output_fields"], rtol=0, atol=0)
    with h5py.File(sorted((tmp_path / "a").rglob("*.hdf5"))[0], "r") as f:
        assert f["t0_fields/h"].dtype == np.float32 and f["t0_fields/h"].shape[1:] == (4, 16, 16)


def test_generate_resumes_after_sigkill_with_the_numbers_of_an_uninterrupted_run(generate_killed_then_resumed) -> None:
    options = {"n_trajectories": 6, "resolution": 16, "batch_size": 2}
    overrides = {"n_frames": 4, "t_end": 0.06}  # tiny()
    ref, root = generate_killed_then_resumed("shallow_water_dam_break_2d", overrides, 1, **options)
    for f in sorted(ref.rglob("*.hdf5")):
        with h5py.File(f, "r") as a, h5py.File(root / f.relative_to(ref), "r") as b:
            np.testing.assert_array_equal(a["t0_fields/h"][()], b["t0_fields/h"][()])


def write_pdebench_rdb(path: Path, h: np.ndarray, x: np.ndarray, t: np.ndarray) -> None:
    """A file in the layout of PDEBench's ``2D_rdb_NA_NA.h5``: one group per seed, ``data (T, X, Y, 1)``, the
    cell centres ``grid/x``, ``grid/y`` and ``grid/t`` (float32, as their ``save_state_to_disk`` writes)."""
    with h5py.File(path, "w") as f:
        for i, trajectory in enumerate(h):
            f.create_dataset(f"{i:04d}/data", data=trajectory[..., None], dtype="f")
            for axis, values in (("x", x), ("y", x), ("t", t)):
                f.create_dataset(f"{i:04d}/grid/{axis}", data=values, dtype="f")


def test_generated_and_imported_pdebench_data_have_one_layout_and_train_alike(tmp_path: Path, monkeypatch) -> None:
    from pdeforge import train
    from pdeforge.datasets import TrajectoryDataset, convert_pdebench
    from pdeforge.solvers.generate import generate

    monkeypatch.setenv("PDEFORGE_CACHE", str(tmp_path / "cache"))
    p = tiny(n_frames=6, t_end=0.1)
    generated = tmp_path / "generated"
    generate(p, generated, n_trajectories=6, resolution=16, batch_size=3, progress=False)
    # the same trajectories as PDEBench's generator stores them, converted by the PDEBench importer
    h = p.solve(range(6), 0, 16, "cpu").fields[:, :, 0].numpy()
    src = tmp_path / "2D_rdb_NA_NA.h5"
    write_pdebench_rdb(src, h, p.schema(16).coords["x"], p.times)
    imported = tmp_path / "imported"
    convert_pdebench(src, imported, progress=False)
    a = TrajectoryDataset(generated, split="train", n_steps_input=2, n_steps_output=1)
    b = TrajectoryDataset(imported, split="train", n_steps_input=2, n_steps_output=1)
    same = ("field_names", "constant_field_names", "scalar_names", "spatial_dims", "resolution", "boundary_conditions")
    for name in same:
        assert getattr(a.metadata, name) == getattr(b.metadata, name), name
    assert a.metadata.dt == pytest.approx(b.metadata.dt, rel=1e-6)
    assert a.metadata.domain_lengths == pytest.approx(b.metadata.domain_lengths, rel=1e-6)
    assert a.metadata.field_names == ("h",) and a.metadata.boundary_conditions == ("open", "open")
    sa, sb = a[0], b[0]
    assert {k: v.shape for k, v in sa.items() if torch.is_tensor(v)} == {
        k: v.shape for k, v in sb.items() if torch.is_tensor(v)
    }
    for root in (generated, imported):
        run = tmp_path / f"run-{root.name}"
        out = train.main(
            [
                "--data.root",
                str(root),
                "--run.max_steps",
                "2",
                "--task.dt_stride",
                "1",
                "--optim.batch_size",
                "2",
                "--model.args",
                "{n_modes: 4, hidden_channels: 8, n_layers: 1}",
                "--run.run_dir",
                str(run),
                "--run.progress",
                "false",
            ]
        )
        assert (run / "model.safetensors").is_file() and math.isfinite(out["test"]["rel_l2"]), root.name


def test_the_preset_rejects_bad_options_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"radius_range \(0.0, 0.7\): expected 0 < low <= high < 2.5"):
        tiny(radius_range=(0.0, 0.7))
    with pytest.raises(ValueError, match=r"subsamples 3: expected an even integer >= 2"):
        tiny(subsamples=3)


def test_a_preset_run_that_goes_bad_stops_generate_with_its_cause_and_writes_nothing(tmp_path: Path) -> None:
    from pdeforge.solvers.generate import BlowUpError, generate

    p = tiny(scheme=ShallowWaterScheme(cfl=4.0), n_frames=3, t_end=1.0)  # snapshots 0.5 apart: CFL 4 really
    with pytest.raises(BlowUpError, match=r"cause: the time step: the solver's CFL number \(CFL 4\) is too large"):
        generate(p, tmp_path, n_trajectories=3, resolution=64, batch_size=3, progress=False)
    assert not list(tmp_path.rglob("*.hdf5")) and not list(tmp_path.rglob("*.partial"))


def test_the_preset_is_recorded_with_its_scheme_and_cfl() -> None:
    from pdeforge.solvers.generate import generation_record, with_time_step

    p = tiny()
    record = generation_record(p, 4, 16, 0)
    assert "order=2" in record["preset_fields"]["scheme"] and "cfl=0.4" in record["preset_fields"]["scheme"]
    assert p.provenance(16, 0)["dt_internal"] == "CFL 0.4"
    with pytest.raises(ValueError, match=r"takes no --dt or --substeps: its solver chooses each step by CFL 0.4"):
        with_time_step(p, dt=0.01)
    assert (
        dataclasses.replace(p, scheme=ShallowWaterScheme(rk=SSP_RK3))
        .describe(16)["scheme"]
        .endswith("SSP-RK3, CFL 0.4")
    )
