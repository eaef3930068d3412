"""Data assimilation benchmark: NODA (Singh et al., ICLR 2024) against a plain FNO of the same size.

    python benchmarks/assimilation.py                      # KS 1D then Navier-Stokes 2D at 32^2, CPU scale
    python benchmarks/assimilation.py --case ks --out runs/assimilation
    python benchmarks/assimilation.py --case ks --baseline none       # NODA alone
    python benchmarks/assimilation.py --case ks --baseline none --max-steps 2 --out /tmp/a   # smoke run

For each case, through ``pdeforge.families.train`` (the run skeleton): train the plain one-step FNO
(``configs/fno_ks.yaml``, the operator family) unless ``--baseline none``, then NODA (``configs/noda_ks.yaml``:
unrolled, a random arrival rate per window) with ``--eval.baseline_run`` naming the FNO's run; NODA's evaluation
rolls both out over whole test trajectories from their first frame, NODA once per arrival rate alpha, and this
prints the rel L2 table:

- ``long``: mean rel L2 over the last quarter of the horizon, ``final``: at the last step, ``max``: over the horizon.

Observations: sensors at every 4th grid point (1D) / every 2nd point per axis (2D), 5 % relative Gaussian noise.
CPU scale (stated, not the paper's): KS ``ks_1d`` (L = 32 pi, dt = 0.5 between frames, 100 steps = 50 time units)
at 128 points instead of 256, 240 trajectories (192 train); NS ``navier_stokes_2d`` at 32^2 (25 steps of 0.2). The
data are the presets, generated once into the cache (``$PDEFORGE_CACHE``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pdeforge.families import train

ROOT = Path(__file__).resolve().parent.parent
ALPHAS = [0.0, 0.1, 0.25, 0.5]
NODA_CONFIG, FNO_CONFIG = ROOT / "configs" / "noda_ks.yaml", ROOT / "configs" / "fno_ks.yaml"


def _data(preset: str, n_trajectories: int, resolution: int) -> list[str]:
    return [
        "--data.preset",
        preset,
        "--data.preset_options",
        f"{{n_trajectories: {n_trajectories}, resolution: {resolution}}}",
    ]


# per case: the data, NODA's overrides of configs/noda_ks.yaml, the FNO's of configs/fno_ks.yaml
CASES = {
    "ks": dict(
        data=_data("ks_1d", 240, 128),
        noda=["--window.spinup", "2", "--window.unroll", "6", "--window.alpha_max", "0.75"],
        fno=[],
    ),
    "ns": dict(
        data=_data("navier_stokes_2d", 80, 32),
        noda=[
            "--model.predictor",
            "{n_modes: 12, hidden_channels: 24, n_layers: 4}",
            "--model.gain.n_modes",
            "12",
            "--model.gain.hidden_channels",
            "12",
            "--optim.steps",
            "800",
            "--optim.batch_size",
            "8",
            "--window.spinup",
            "2",
            "--window.unroll",
            "4",
        ],
        fno=[
            "--model.args",
            "{n_modes: 12, hidden_channels: 24, n_layers: 4}",
            "--optim.steps",
            "800",
            "--optim.batch_size",
            "16",
        ],
    ),
}


def table(name: str, metrics: dict) -> str:
    test = metrics["test"]
    rows = [
        f"{name}: horizon {test['horizon_steps']} steps x dt {test['dt']:g}, long = last "
        f"{test['long_horizon_steps']} steps, {test['n_trajectories']} test trajectories",
        f"{'model':<18}{'long rel L2':>12}{'final':>10}{'max':>10}{'step 1':>10}",
    ]
    for key, r in test["table"].items():
        label = "plain FNO" if key == "baseline" else key.replace("noda_alpha_", "NODA alpha=")
        rows.append(
            f"{label:<18}{r['long_horizon_rel_l2']:>12.4f}{r['final_rel_l2']:>10.4f}{r['max_rel_l2']:>10.4f}"
            f"{r['first_step_rel_l2']:>10.4f}"
        )
    longs = [test["table"][f"noda_alpha_{a:g}"]["long_horizon_rel_l2"] for a in ALPHAS]
    rows.append(f"long-horizon rel L2 falls monotonically with alpha: {all(b < a for a, b in zip(longs, longs[1:]))}")
    if "baseline" in test["table"]:
        rows.append(f"plain FNO max {test['table']['baseline']['max_rel_l2']:.3f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument(
        "--baseline",
        choices=["fno", "none"],
        default="fno",
        help="train the plain FNO (operator family) and compare with it, or NODA alone",
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "assimilation"))
    parser.add_argument("--max-steps", type=int, default=0, help="cap each training at this many steps (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    common = [
        "--run.threads",
        "1",
        "--run.device",
        "cpu",
        "--run.overwrite",
        "true",
        "--run.progress",
        "false",
        "--run.max_steps",
        str(args.max_steps),
    ]
    results = {}
    for name in CASES if args.case == "all" else [args.case]:
        case = CASES[name]
        seconds = {}
        noda = [
            *common,
            *case["data"],
            *case["noda"],
            "--eval.alphas",
            json.dumps(ALPHAS),
            "--run.run_dir",
            str(out / name),
        ]
        if args.baseline == "fno":
            t0 = time.perf_counter()
            train(FNO_CONFIG, [*common, *case["data"], *case["fno"], "--run.run_dir", str(out / f"{name}_fno")])
            seconds["fno_train_s"] = round(time.perf_counter() - t0, 1)
            noda += ["--eval.baseline_run", str(out / f"{name}_fno")]
        t0 = time.perf_counter()
        metrics = train(NODA_CONFIG, noda)
        seconds["noda_s"] = round(time.perf_counter() - t0, 1)
        results[name] = {
            "table": metrics["test"]["table"],
            "horizon_steps": metrics["test"]["horizon_steps"],
            **seconds,
        }
        print(table(name, metrics), flush=True)
    (out / "assimilation.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
