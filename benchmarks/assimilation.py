"""Data assimilation benchmark: NODA (Singh et al., ICLR 2024) against a plain FNO of the same size.

    python benchmarks/assimilation.py                      # KS 1D then Navier-Stokes 2D at 32^2, CPU scale
    python benchmarks/assimilation.py --case ks --out runs/assimilation

For each case: generate the data with ``pdeforge.solvers.generate`` (skipped if present), train NODA (unrolled, a
random arrival rate per window) and a plain one-step FNO with ``pdeforge.operators.noda.run``, roll both out over
whole test trajectories from their first frame, NODA once per arrival rate alpha, and print the rel L2 table:

- ``long``: mean rel L2 over the last quarter of the horizon, ``final``: at the last step, ``max``: over the horizon.

Observations: sensors at every 4th grid point (1D) / every 2nd point per axis (2D), 5 % relative Gaussian noise.
CPU scale (stated, not the paper's): KS ``ks_1d`` (L = 32 pi, dt = 0.5 between frames, 100 steps = 50 time units)
at 128 points instead of 256, 192 training trajectories; NS ``navier_stokes_2d`` at 32^2 (25 steps of 0.2).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import yaml

from pdeforge.operators.noda import run
from pdeforge.solvers.generate import generate

ROOT = Path(__file__).resolve().parent.parent
ALPHAS = [0.0, 0.1, 0.25, 0.5]


def ks_spec(data: Path) -> dict:
    spec = yaml.safe_load((ROOT / "configs" / "noda_ks.yaml").read_text())
    spec.update(data=str(data), threads=1)
    spec["model"] = {"n_modes": 16, "hidden_channels": 32, "n_layers": 4}
    spec["train"].update(steps=1500, batch_size=16, warmup=2, unroll=6, alpha_max=0.75)
    spec["baseline"].update(steps=1500, batch_size=32)
    spec["eval"].update(alphas=ALPHAS, horizon=None)
    return spec


def ns_spec(data: Path) -> dict:
    spec = copy.deepcopy(ks_spec(data))
    spec.update(name="noda_ns2d")
    spec["model"] = {"n_modes": 12, "hidden_channels": 24, "n_layers": 4}
    spec["gain"].update(n_modes=12, hidden_channels=12)
    spec["train"].update(steps=800, batch_size=8, warmup=2, unroll=4)
    spec["baseline"].update(steps=800, batch_size=16)
    return spec


CASES = {
    "ks": dict(preset="ks_1d", resolution=128, n_trajectories=240, spec=ks_spec),
    "ns": dict(preset="navier_stokes_2d", resolution=32, n_trajectories=80, spec=ns_spec),
}


def table(name: str, metrics: dict) -> str:
    rows = [f"{name}: horizon {metrics['horizon_steps']} steps x dt {metrics['dt']:g}, long = last {metrics['long_horizon_steps']} steps, "
            f"{metrics['n_train_trajectories']} train / {metrics['n_test_trajectories']} test trajectories",
            f"{'model':<18}{'long rel L2':>12}{'final':>10}{'max':>10}{'step 1':>10}"]
    for key, r in metrics["table"].items():
        label = "plain FNO" if key == "fno" else key.replace("noda_alpha_", "NODA alpha=")
        rows.append(f"{label:<18}{r['long_horizon_rel_l2']:>12.4f}{r['final_rel_l2']:>10.4f}{r['max_rel_l2']:>10.4f}{r['first_step_rel_l2']:>10.4f}")
    longs = [metrics["table"][f"noda_alpha_{a:g}"]["long_horizon_rel_l2"] for a in ALPHAS]
    mono = all(b < a for a, b in zip(longs, longs[1:]))
    rows.append(f"long-horizon rel L2 falls monotonically with alpha: {mono}; plain FNO max {metrics['table']['fno']['max_rel_l2']:.3f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--out", default=str(ROOT / "runs" / "assimilation"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    results = {}
    for name in CASES if args.case == "all" else [args.case]:
        case = CASES[name]
        data = out / f"data_{name}"
        t0 = time.perf_counter()
        generate(case["preset"], data, n_trajectories=case["n_trajectories"], resolution=case["resolution"], seed=0, progress=False)
        print(f"[{name}] data {data} ({time.perf_counter() - t0:.0f} s)", flush=True)
        metrics = run(case["spec"](data), out / name)
        results[name] = metrics
        print(table(name, metrics), flush=True)
    (out / "assimilation.json").write_text(json.dumps({k: {"table": v["table"], "horizon_steps": v["horizon_steps"],
                                                           "noda_train_s": v.get("noda_train_s"), "fno_train_s": v.get("fno_train_s")}
                                                       for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
