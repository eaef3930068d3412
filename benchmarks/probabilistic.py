"""Probabilistic surrogates on Kuramoto-Sivashinsky 1D (issue #33; the plan and results: docs/results/probabilistic.md).

    python benchmarks/probabilistic.py WORK                       # every part, in order (about an hour on 2 CPUs)
    python benchmarks/probabilistic.py WORK --parts train_mse     # one part (run two in two shells to use 2 cores)
    python benchmarks/probabilistic.py WORK --parts report        # the tables of what WORK holds

Parts (each writes ``WORK/<part>.json`` once; a part whose file exists is skipped: delete it to recompute):

- ``data``: ``ks_1d`` with 64 trajectories into ``WORK/ks`` (our own solver; 52 / 6 / 6 trajectories).
- ``train_mse``, ``train_refiner``, ``train_diffusion``: the runs, through ``pdeforge.families.train`` and the
  configs ``configs/pde_refiner_ks.yaml`` (``refiner_steps 0``: the MSE U-Net; 3: PDE-Refiner) and
  ``configs/diffusion_ks.yaml``, one thread each, ``--steps`` optimiser steps, seeds as the plan says.
- ``evaluate_mse``, ``evaluate_refiner``, ``evaluate_diffusion``: 100-step rollouts of the 6 test trajectories:
  high-correlation duration of every model; CRPS, spread-skill, energy score and rank histogram of the ensembles
  (the 4 MSE U-Nets together; 4 draws of PDE-Refiner or of the diffusion model), wall times.
- ``samplers``: one-step CRPS of DPM-Solver++ 2M (10 and 20 network evaluations) against DDPM with 1000 steps, on
  the same diffusion model and test windows, with wall times.
- ``ablation_refiner`` (added after the planned parts had run): PDE-Refiner's k = 0 prediction alone, rolled out.
- ``report``: the markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MSE_SEEDS, REFINER_SEEDS, DIFFUSION_SEEDS = (0, 1, 2, 3), (0, 1), (0, 1)
MEMBERS = 4  # draws per trajectory of a stochastic model
PARTS = (
    "data",
    "train_mse",
    "train_refiner",
    "train_diffusion",
    "evaluate_mse",
    "evaluate_refiner",
    "evaluate_diffusion",
    "samplers",
    "ablation_refiner",
    "report",
)


def _write_json(path: Path, value: Any) -> None:
    """Atomic: a temporary file renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _load_bench() -> tuple[Any, Any]:
    from pdeforge.generative._family import ensemble_metrics, ensemble_rollouts

    return ensemble_metrics, ensemble_rollouts


def make_data(work: Path) -> dict[str, Any]:
    from pdeforge.solvers.generate import generate

    t0 = time.perf_counter()
    generate("ks_1d", work / "ks", n_trajectories=64, seed=0, progress=False)
    return {"root": str(work / "ks"), "seconds": round(time.perf_counter() - t0, 1)}


def train_runs(work: Path, kind: str, steps: int) -> dict[str, Any]:
    """Train the runs of ``kind`` (mse, refiner, diffusion) for every seed; the run folders are ``WORK/runs/...``."""
    from pdeforge.families import train

    config, seeds, extra = {
        "mse": ("pde_refiner_ks.yaml", MSE_SEEDS, ["--refiner.refiner_steps", "0"]),
        "refiner": ("pde_refiner_ks.yaml", REFINER_SEEDS, []),
        "diffusion": ("diffusion_ks.yaml", DIFFUSION_SEEDS, []),
    }[kind]
    out, failed = {}, []
    for seed in seeds:
        run = work / "runs" / f"{kind}_s{seed}"
        overrides = [
            "--data.root", str(work / "ks"),
            "--run.run_dir", str(run),
            "--run.seed", str(seed),
            "--run.threads", "1",
            "--run.progress", "false",
            "--run.checkpoint_every", "0",
            "--optim.steps", str(steps),
            "--optim.lr", "2e-3",
            "--optim.eval_every", "0",
            # the run's own final evaluation, kept small: the benchmark evaluates on its own (part evaluate)
            "--eval.max_trajectories", "1",
            "--eval.n_samples", "2",
            "--task.rollout_steps", "2",
            *extra,
        ]  # fmt: skip
        try:
            if (run / "model.safetensors").is_file():
                print(f"{run}: trained already, kept")
                metrics = json.loads((run / "metrics.json").read_text())
            elif (run / "checkpoint" / "state.pt").is_file():  # an interrupted benchmark: the run continues exactly
                metrics = train(None, ["--run.resume", str(run), "--run.progress", "false"])
            else:
                metrics = train(REPO / "configs" / config, overrides)
        except Exception as e:  # the other seeds still train; the part is not recorded as done
            failed.append(f"{run}: {type(e).__name__}: {e}")
            print(failed[-1], flush=True)
            continue
        out[str(seed)] = {"run": str(run), "train_seconds": metrics["train_seconds"], "steps": metrics["steps"]}
    if failed:
        raise RuntimeError("runs failed (rerun the part to resume them): " + "; ".join(failed))
    return out


def _open(run: Path) -> tuple[Any, Any]:
    """(model, family prepared on the run's data) of a run folder, on the CPU."""
    from pdeforge import load_run
    from pdeforge.training.loop import Environment

    loaded = load_run(run)
    family = loaded.family(loaded.config, Environment(torch.device("cpu")))
    family.restore(loaded.envelope)
    family.prepare()
    return loaded.model, family


def _rollouts(run: Path, members: int, seed: int, method: Any = None) -> tuple[torch.Tensor, torch.Tensor, float, Any]:
    ensemble_metrics, ensemble_rollouts = _load_bench()
    model, family = _open(run)
    if method is not None:
        model.method = method
    roll = family.views.open(
        "test", n_steps_input=1, dt_stride=1, full_trajectory=True, max_trajectories=None
    )  # all 6 test trajectories, 100 steps
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    pred, truth = ensemble_rollouts(model, roll, torch.device("cpu"), members, None, batch_size=8)
    return pred, truth, time.perf_counter() - t0, roll


def _hcd(pred: torch.Tensor, truth: torch.Tensor, dt: float) -> float:
    """Mean high-correlation duration of the members ``pred (N, M, T, C, X)`` over members and trajectories."""
    from pdeforge import metrics as M

    m = pred.shape[1]
    flat, ref = pred.flatten(0, 1), truth.repeat_interleave(m, 0)
    return float(M.high_correlation_duration(flat, ref, 1, dt=dt, reduction="sample").mean())


def evaluate(work: Path, kind: str) -> dict[str, Any]:
    """100-step rollouts of the 6 test trajectories by the runs of ``kind``: mse (each model, and the 4 together as an
    ensemble), refiner or diffusion (4 draws per trajectory, DPM-Solver++ 2M at 20 network evaluations)."""
    ensemble_metrics, _ = _load_bench()
    out: dict[str, Any] = {}
    if kind == "mse":
        members = []
        for seed in MSE_SEEDS:
            pred, truth, seconds, roll = _rollouts(work / "runs" / f"mse_s{seed}", 1, 1000 + seed)
            dt = roll.metadata.dt * roll.dt_stride
            members.append(pred)
            out[str(seed)] = {"hcd": _hcd(pred, truth, dt), "rollout_seconds": round(seconds, 2)}
            print("mse", seed, out[str(seed)], flush=True)
        out["ensemble"] = ensemble_metrics(torch.cat(members, 1), truth, 1, dt)
        return out
    for seed in {"refiner": REFINER_SEEDS, "diffusion": DIFFUSION_SEEDS}[kind]:
        run = work / "runs" / f"{kind}_s{seed}"
        done = work / f"evaluate_{kind}_s{seed}.json"  # one seed's result, kept: a rerun evaluates the others only
        if done.is_file():
            out[str(seed)] = json.loads(done.read_text())
            continue
        if not (run / "model.safetensors").is_file():
            raise RuntimeError(f"{run}: not trained yet (part train_{kind}); the seeds before it are kept")
        method = None
        if kind == "diffusion":  # 20 network evaluations per draw: 19 DPM-Solver++ 2M steps + the last denoising
            method = dataclasses.replace(_open(run)[0].method, sampler="dpm_solver++2m", steps=19)
        pred, truth, seconds, roll = _rollouts(run, MEMBERS, 2000 + seed, method)
        result = ensemble_metrics(pred, truth, 1, roll.metadata.dt * roll.dt_stride)
        result["hcd"] = result["high_correlation_duration_members"]
        result["rollout_seconds"] = round(seconds, 2)
        out[str(seed)] = result
        _write_json(done, result)
        print(kind, seed, {k: v for k, v in result.items() if not isinstance(v, list)}, flush=True)
    return out


def ablation_refiner(work: Path) -> dict[str, Any]:
    """Not in the plan (added after the results): each PDE-Refiner run's own k = 0 prediction alone (its weights,
    ``refiner_steps 0`` at inference), rolled out as in part evaluate: what its K refinement steps add."""
    out = {}
    for seed in REFINER_SEEDS:
        run = work / "runs" / f"refiner_s{seed}"
        method = dataclasses.replace(_open(run)[0].method, refiner_steps=0)
        pred, truth, seconds, roll = _rollouts(run, 1, 2000 + seed, method)
        out[str(seed)] = {"hcd_k0_only": _hcd(pred, truth, roll.metadata.dt * roll.dt_stride)}
        print("refiner k=0 only", seed, out[str(seed)], flush=True)
    return out


def samplers(work: Path, n_windows: int = 16, members: int = MEMBERS, ddpm_seeds: int = 2) -> dict[str, Any]:
    """One-step CRPS per window of DPM-Solver++ 2M (10, 20 NFE) and DDPM-1000 on the diffusion model of seed 0."""
    from torch.utils.data import default_collate

    from pdeforge import metrics as M

    model, family = _open(work / "runs" / "diffusion_s0")
    windows = family.task.dataset(family.views, "test")
    idx = [round(i * (len(windows) - 1) / (n_windows - 1)) for i in range(n_windows)]
    batch = default_collate([windows[i] for i in idx])
    rep = {k: v.repeat_interleave(members, 0) for k, v in batch.items()}
    truth = windows.denormalize(batch["output_fields"])
    base = model.method
    variants = [("dpm_solver++2m", 9, 0), ("dpm_solver++2m", 19, 0)] + [("ddpm", 999, s) for s in range(ddpm_seeds)]
    out: dict[str, Any] = {"windows": idx, "members": members, "runs": []}
    for sampler, steps, seed in variants:
        model.method = dataclasses.replace(base, sampler=sampler, steps=steps)
        torch.manual_seed(3000 + seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = windows.denormalize(model.forward_batch(rep))
        seconds = time.perf_counter() - t0
        pred = pred.reshape(n_windows, members, *pred.shape[1:])
        per_window = M.crps_ensemble(pred, truth, member_dim=1, reduction="sample")
        row = {
            "sampler": sampler,
            "nfe": steps + 1,
            "seed": seed,
            "seconds": round(seconds, 2),
            "crps": float(per_window.mean()),
            "crps_per_window": [float(x) for x in per_window],
        }
        out["runs"].append(row)
        print({k: v for k, v in row.items() if k != "crps_per_window"}, flush=True)
    return out


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"


def report(work: Path) -> str:
    """The markdown tables of the parts ``work`` holds."""

    def part(name: str) -> dict[str, Any] | None:
        path = work / f"{name}.json"
        return json.loads(path.read_text())["result"] if path.is_file() else None

    lines = [
        "| model | high-correlation time (members) | of the ensemble mean | CRPS | spread-skill | energy score |",
        "|---|---|---|---|---|---|",
    ]
    mse = part("evaluate_mse")
    if mse:
        hcd = [v["hcd"] for k, v in mse.items() if k != "ensemble"]
        lines.append(f"| MSE U-Net ({len(hcd)} seeds) | {_mean_std(hcd)} | | | | |")
        e = mse["ensemble"]
        lines.append(
            f"| Ensemble of 4 MSE U-Nets | {e['high_correlation_duration_members']:.3g} | "
            f"{e['high_correlation_duration_ensemble_mean']:.3g} | {e['crps']:.3g} | {e['spread_skill']:.3g} | "
            f"{e['energy_score']:.3g} |"
        )
    for kind, label in (("diffusion", "Diffusion, DPM-Solver++ 2M, 20 NFE"), ("refiner", "PDE-Refiner, K = 3")):
        rows = list((part(f"evaluate_{kind}") or {}).values())
        if not rows:
            continue
        keys = ("hcd", "high_correlation_duration_ensemble_mean", "crps", "spread_skill", "energy_score")
        cell = {k: _mean_std([r[k] for r in rows]) for k in keys}
        lines.append(f"| {label} ({len(rows)} seeds x {MEMBERS} draws) | " + " | ".join(cell[k] for k in keys) + " |")
    sm = part("samplers")
    if sm:
        ddpm = [r for r in sm["runs"] if r["sampler"] == "ddpm"]
        ref = torch.tensor(ddpm[0]["crps_per_window"])
        lines += ["", "| sampler | NFE | noise seed | CRPS (one step) | minus DDPM-1000 seed 0 (± 2 SE) | seconds |"]
        lines.append("|---|---|---|---|---|---|")
        for r in sm["runs"]:
            d = torch.tensor(r["crps_per_window"]) - ref
            se = float(d.std() / math.sqrt(len(d))) if len(d) > 1 else float("nan")
            lines.append(
                f"| {r['sampler']} | {r['nfe']} | {r['seed']} | {r['crps']:.4g} | {float(d.mean()):+.3g} ± "
                f"{2 * se:.2g} | {r['seconds']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="working folder (data, runs, results)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--steps", type=int, default=800, help="optimiser steps per model (default 800)")
    parser.add_argument("--windows", type=int, default=16, help="test windows of part samplers (default 16)")
    parser.add_argument("--ddpm-seeds", type=int, default=2, help="DDPM-1000 noise seeds of part samplers (default 2)")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"error: --parts {unknown}: expected some of {', '.join(PARTS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    for part in parts:
        if part == "report":
            print(report(args.work))
            continue
        path = args.work / f"{part}.json"
        if path.is_file():
            print(f"{path} exists: part {part} skipped (delete it to recompute)")
            continue
        t0 = time.perf_counter()
        if part == "data":
            result = make_data(args.work)
        elif part.startswith("train_"):
            result = train_runs(args.work, part.removeprefix("train_"), args.steps)
        elif part == "ablation_refiner":
            result = ablation_refiner(args.work)
        elif part.startswith("evaluate_"):
            result = evaluate(args.work, part.removeprefix("evaluate_"))
        else:
            result = samplers(args.work, args.windows, MEMBERS, args.ddpm_seeds)
        result = {"result": result, "seconds": round(time.perf_counter() - t0, 1), "load": os.getloadavg()}
        _write_json(path, result)
        print(f"{part}: {result['seconds']} s -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
