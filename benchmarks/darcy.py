"""Darcy solve time: a batch of 64 samples at 85 x 85 (direct sparse LU and batched CG), and one sample at 421.

    python benchmarks/darcy.py

Prints wall times (best of 3) and the agreement of the two solvers. Goal: 64 x 85^2 in a few seconds on a CPU.
"""

from __future__ import annotations

import time

import torch

from pdeforge.solvers.darcy import ThresholdCoefficient, solve_darcy


def best_of(fn, repeats: int = 3) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    g = torch.Generator().manual_seed(0)
    a = ThresholdCoefficient().sample(64, 85, g)
    t_direct, u_direct = best_of(lambda: solve_darcy(a, 1.0, method="direct"))
    t_cg, u_cg = best_of(lambda: solve_darcy(a, 1.0, method="cg"))
    rel = float((u_cg - u_direct).norm() / u_direct.norm())
    print(f"64 samples at 85x85: direct {t_direct:.2f} s, batched CG {t_cg:.2f} s (CG vs direct rel diff {rel:.1e})")
    big = ThresholdCoefficient().sample(1, 421, g)
    t_big, _ = best_of(lambda: solve_darcy(big, 1.0, method="direct"), repeats=1)
    print(f"1 sample at 421x421 (the FNO paper's resolution): direct {t_big:.2f} s")
    print(f"goal 64 x 85^2 in a few seconds: {'met' if min(t_direct, t_cg) < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
