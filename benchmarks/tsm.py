"""TSM vs LI vs coarse solver at CPU scale: high-correlation duration, the HiPPO ablation, per-step latency.

    python benchmarks/tsm.py                      # trains every model below (1 free thread)
    python benchmarks/tsm.py --models tsm-hippo,li,tsm-frames --unroll 16   # the README figures (~1 h)
    python benchmarks/tsm.py --reuse               # evaluate the run folders already under --runs (refused if
                                                   # trained on other data or with other options)
    python benchmarks/tsm.py --steps 100           # shorter training
    python benchmarks/tsm.py --combine runs/a runs/b   # seeds averaged per test trajectory, paired differences
    python benchmarks/tsm.py --resolution 16 --unroll 16 --runs runs/tsm16_s0   # 16x downsampling (a new DNS)
    python benchmarks/tsm.py --device cuda         # training and evaluation on the GPU (the same data files)

Protocol (configs/tsm_kolmogorov.yaml, see :mod:`pdeforge.operators.tsm`): Kolmogorov flow, DNS 256^2 at Re 500
face-averaged to 32^2, solver dt 0.04, 16 train / 8 valid / 16 test trajectories. The data are the
``kolmogorov_fv_2d`` preset with the config's options, generated once into the pdeforge cache
(``--data ROOT``: a dataset root instead). Each model
starts from frame ``history - 1`` of every test trajectory and runs to its end (184 steps, 7.4 time units). Prints,
per model, the high-correlation duration (vorticity correlation > 0.8) as mean +- std over the test trajectories
and per trajectory, the paired differences (TSM - LI, TSM - frames, ...: mean +- standard error and wins, since
every model starts from the same frames) and the per-step latency for one trajectory. Writes ``summary.json``,
``correlation_vs_time.png`` and ``vorticity_snapshots.png`` (reference, coarse, LI, TSM) into ``--runs``.
``--resume`` continues interrupted trainings from their checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # not on Windows: two calls must then not finish at the same moment
    fcntl = None

from pdeforge._device import synchronize
from pdeforge.families import load_run
from pdeforge.operators.tsm import (
    CoarseSolver,
    TSMFamily,
    TSMRunConfig,
    data_fingerprint,
    flow_of,
    score,
    vorticity_rollout,
)
from pdeforge.solvers import fv
from pdeforge.training import fit, load_config, setup_environment
from pdeforge.training.config import ConfigError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tsm_kolmogorov.yaml"

MODELS = {  # name -> overrides of configs/tsm_kolmogorov.yaml
    "tsm-hippo": {"model.variant": "tsm", "model.encoder": "hippo"},
    "li": {"model.variant": "li", "model.li_calls": "step"},  # the papers' LI: one CNN call per solver step
    "li-stage": {"model.variant": "li", "model.li_calls": "stage"},  # a stronger, 3x costlier LI: a call per RK stage
    "tsm-frames": {"model.variant": "tsm", "model.encoder": "frames"},
    "tsm-running": {"model.variant": "tsm", "model.encoder": "hippo", "model.memory": "running"},  # TSM's code
}


@torch.no_grad()
def latency(model, frames: torch.Tensor, n_steps: int = 16, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds per solver step for ``frames`` (B, H, 2, N, N), on the device of ``frames``
    (a GPU is waited for before each clock reading)."""
    model.rollout(frames, 4)
    best = float("inf")
    for _ in range(repeats):
        synchronize(frames)
        t0 = time.perf_counter()
        model.rollout(frames, n_steps)
        synchronize(frames)
        best = min(best, (time.perf_counter() - t0) / n_steps)
    return best


NOT_COMPARED = ("run.", "model.compile", "data.root", "data.preset")  # where and how fast, not what is trained; the
# data are compared by their fingerprint, not by where they are


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _check_reused(folder: Path, spec: dict, fingerprint: str) -> None:
    """``--reuse`` scores a run folder only if it was trained as asked (``spec``: dotted config keys), on the data
    loaded now."""
    saved = json.loads((folder / "model.json").read_text())
    theirs = saved.get("data_fingerprint")
    if theirs != fingerprint:
        raise SystemExit(
            f"--reuse: {folder} was trained on other data (data fingerprint {theirs or 'not recorded'}, "
            f"now {fingerprint}); retrain it (drop --reuse) or point --runs elsewhere"
        )
    then = _flatten(saved["config"])
    differ = {k: (v, spec[k]) for k, v in then.items() if k in spec and not k.startswith(NOT_COMPARED) and v != spec[k]}
    if differ:
        raise SystemExit(
            f"--reuse: {folder} was trained with "
            + ", ".join(f"{k} {v} (asked {w})" for k, (v, w) in differ.items())
            + "; retrain it (drop --reuse) or pass the same options"
        )


PROTOCOL_OPTIONS = {  # command-line option -> (config key, help)
    "dns_resolution": ("data.preset_options.dns_resolution", "DNS grid of the data (256: 8x downsampling to 32^2)"),
    "resolution": ("data.preset_options.resolution", "the learned solvers' grid (the DNS face-averaged onto it)"),
    "history": ("model.history", "frames of history TSM encodes (every model starts from frame history - 1)"),
    "hippo_order": ("model.hippo_order", "HiPPO-LagT coefficients per velocity component"),
    "bundle": ("model.bundle", "TSM solver steps per CNN call"),
    "unroll": ("data.unroll", "solver steps unrolled in training"),
    "seed": ("run.seed", "training seed (initial weights, windows)"),
    "device": ("run.device", "cpu | cuda | cuda:N | auto (cuda if available): every training and evaluation"),
}

PAIRS = (
    ("tsm-hippo", "li"),
    ("tsm-hippo", "tsm-frames"),
    ("tsm-frames", "li"),
    ("tsm-running", "li"),
    ("tsm-running", "tsm-hippo"),
    ("tsm-running", "tsm-frames"),
    ("li", "coarse"),
    ("tsm-hippo", "coarse"),
)


def _stderr(d: torch.Tensor) -> float:
    """Standard error of the mean of ``d`` (nan for one value)."""
    return float(d.std()) / len(d) ** 0.5 if len(d) > 1 else float("nan")


def paired(durations: dict[str, torch.Tensor]) -> dict:
    """Print and return the paired differences over the test trajectories (every model starts from the same
    frames): mean +- standard error, wins and ties."""
    print("paired over test trajectories (same initial frames): mean difference +- standard error, wins")
    out = {}
    for a, b in PAIRS:
        if a in durations and b in durations:
            d = durations[a] - durations[b]
            se = _stderr(d)
            wins, ties = int((d > 0).sum()), int((d == 0).sum())
            out[f"{a} - {b}"] = {"mean": float(d.mean()), "stderr": se, "wins": wins, "ties": ties}
            print(f"  {a} - {b}: {float(d.mean()):+.3f} +- {se:.3f}  ({wins} wins, {ties} ties of {len(d)})")
    return out


def _model_names(summary: dict) -> list[str]:
    """The scored models of a ``summary.json`` (not its protocol or its paired differences ``"a - b"``)."""
    return [n for n in summary if n != "protocol" and " - " not in n]


def merge_summary(path: Path, summary: dict) -> dict:
    """Write ``summary`` to ``path`` (a run folder's ``summary.json``) together with the models an earlier call
    scored there under the same protocol, and the paired differences over all of them; return what was written.

    Training one model per call (two calls at a time on two cores) so fills one summary instead of each call
    overwriting the last. The folder is locked while it is read and written (two calls finishing together keep
    both), and the file is replaced atomically. A summary from another protocol (data, options, seed) is replaced.
    """
    from pdeforge.checkpoint import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError as e:
            raise SystemExit(
                f"{path}: not a summary.json this benchmark wrote ({e}); move it away and run again"
            ) from None
        if old and old.get("protocol") != summary["protocol"]:
            print(f"{path} held another protocol's scores ({old.get('protocol')}): replaced")
            old = {}
        kept = [n for n in _model_names(old) if n not in summary]
        if kept:
            print(
                f"kept from the earlier calls' {path}: " + ", ".join(f"{n} {old[n]['duration_mean']:.2f}" for n in kept)
            )
        order = ["coarse", *MODELS]
        models = sorted({*kept, *_model_names(summary)}, key=lambda n: order.index(n) if n in order else len(order))
        merged = {"protocol": summary["protocol"], **{n: summary[n] if n in summary else old[n] for n in models}}
        merged.update(paired({n: torch.tensor(merged[n]["per_trajectory"]) for n in models}))
        atomic_write_text(path, json.dumps(merged, indent=1))
    finally:
        os.close(folder)  # also releases the lock
    return merged


def combine(folders: list[str]) -> None:
    """``--combine``: the seeds' ``summary.json`` averaged per test trajectory (models found in every folder; the
    data must be the same), then the same paired differences."""
    summaries = []
    for folder in folders:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise SystemExit(f"--combine: {path} not found; run the benchmark (or --reuse) with --runs {folder} first")
        summaries.append(json.loads(path.read_text()))
    data = {s.get("protocol", {}).get("data_fingerprint") for s in summaries}
    if None in data:
        raise SystemExit(
            "--combine: a summary.json without the data fingerprint (written before it was recorded); "
            "score that folder again with --reuse"
        )
    if len(data) != 1:
        raise SystemExit(
            f"--combine: the folders were scored on different data (fingerprints {sorted(map(str, data))})"
        )
    models = dict.fromkeys(n for s in summaries for n in _model_names(s))
    names = [n for n in models if all(n in s for s in summaries)]
    for n in models:  # e.g. a folder scored with --models for some models only
        if n not in names:
            lacking = ", ".join(f for f, s in zip(folders, summaries) if n not in s)
            print(f"{n}: left out, not scored in {lacking} (score them with --reuse --models ...,{n})")
    lengths = {len(s[n]["per_trajectory"]) for s in summaries for n in names}
    if len(lengths) != 1:
        raise SystemExit(f"--combine: the folders hold different numbers of test trajectories {sorted(lengths)}")
    mean = {n: torch.tensor([s[n]["per_trajectory"] for s in summaries]).mean(0) for n in names}
    print(f"{len(folders)} runs averaged per test trajectory: {', '.join(folders)}")
    for n, d in mean.items():
        seeds = ", ".join(f"{s[n]['duration_mean']:.2f}" for s in summaries)
        print(f"{n:12s} {float(d.mean()):6.2f} +- {float(d.std(unbiased=False)):4.2f}   (per run: {seeds})")
    paired(mean)
    print("the same differences run by run (mean over its test trajectories); over the runs: mean +- standard error")
    for a, b in PAIRS:
        if a in mean and b in mean:
            d = torch.tensor([s[a]["duration_mean"] - s[b]["duration_mean"] for s in summaries], dtype=torch.float64)
            se = _stderr(d)
            print(
                f"  {a} - {b}: {', '.join(f'{x:+.3f}' for x in d.tolist())};  over the runs "
                f"{float(d.mean()):+.3f} +- {se:.3f} ({int((d > 0).sum())} of {len(d)} positive)"
            )


def _overrides(values: dict) -> list[str]:
    return [x for k, v in values.items() for x in (f"--{k}", json.dumps(v) if not isinstance(v, str) else v)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/tsm_bench")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--data", default="", help="a dataset root of the kolmogorov_fv_2d layout (default: the preset)")
    ap.add_argument("--reuse", action="store_true", help="do not train; load the run folders under --runs")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue each training from its checkpoint under --runs (same result as uninterrupted)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the solver step in training (~1 min first; CPU steps 1.2-1.7x faster)",
    )
    for name, (_, text) in PROTOCOL_OPTIONS.items():
        ap.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"{text} (default: the config's)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument(
        "--combine",
        nargs="+",
        metavar="RUNS",
        help="do not train: average the summary.json of these --runs folders (seeds) per test trajectory",
    )
    args = ap.parse_args()
    if args.combine:
        return combine(args.combine)
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    common = {
        "optim.steps": args.steps,
        "run.threads": args.threads,
        "model.compile": args.compile,
        "run.progress": True,
        **({"data.root": args.data} if args.data else {}),
        **{key: getattr(args, name) for name, (key, _) in PROTOCOL_OPTIONS.items() if getattr(args, name) is not None},
    }
    wanted = set(args.models.split(","))
    if wanted - set(MODELS):
        raise SystemExit(f"--models: unknown {sorted(wanted - set(MODELS))}; choose from {', '.join(MODELS)}")
    try:  # a device that is not here (or a value out of range) is refused before the DNS starts
        base = load_config(TSMRunConfig, CONFIG, _overrides(common))
    except ConfigError as e:
        raise SystemExit(f"benchmarks/tsm.py: {e}") from None
    env = setup_environment(base.run, "benchmarks/tsm.py")
    family = TSMFamily(base, env)
    family.prepare()  # the data (generated once), the test split, the coarse solver's scores
    fingerprint = data_fingerprint(family.root)
    inputs, targets = family.split("test")
    spec = family.spec

    models, results = {}, {"coarse": family.coarse_score("test")}
    for name, change in MODELS.items():
        if name not in wanted:
            continue
        folder = runs / name
        values = {**common, **change, "run.run_dir": str(folder)}
        if args.reuse and (folder / "model.json").exists():
            config = load_config(TSMRunConfig, CONFIG, _overrides(values))
            _check_reused(folder, _flatten(dataclasses.asdict(config)), fingerprint)
        else:
            resume = args.resume and (folder / "checkpoint" / "state.pt").exists()
            values.update({"run.resume": str(folder)} if resume else {"run.overwrite": True})
            fit(TSMFamily, load_config(TSMRunConfig, CONFIG, _overrides(values)))
        models[name] = load_run(folder, str(env.device)).model
        results[name] = score(models[name], inputs, targets, base.eval.threshold)
    models = {
        "coarse": CoarseSolver(fv.StaggeredGrid(spec["resolution"]), flow_of(spec), spec["dt"]).to(env.device),
        **models,
    }
    dt = spec["dt"]
    frames = inputs[:1].to(env.device)
    options = base.data.preset_options
    print(
        f"Kolmogorov {spec['resolution']}^2 (DNS {options['dns_resolution']}^2, Re {spec['reynolds']:g}), dt {dt:g}, "
        f"{targets.shape[0]} test trajectories, {targets.shape[1]} steps; training {args.steps} AdamW steps, unroll "
        f"{base.data.unroll}, seed {base.run.seed}; on {env.device}"
    )
    print(f"{'model':12s} {'high-corr duration':>22s} {'per trajectory':>30s} {'ms/step (B=1)':>14s}")
    summary = {
        "protocol": {
            "data_fingerprint": fingerprint,
            "resolution": spec["resolution"],
            "dns_resolution": options["dns_resolution"],
            "steps": args.steps,
            "unroll": base.data.unroll,
            "history": base.model.history,
            "hippo_order": base.model.hippo_order,
            "seed": base.run.seed,
        }
    }
    for name, res in results.items():
        d = res["duration"]
        ms = 1e3 * latency(models[name], frames)
        summary[name] = {
            "duration_mean": float(d.mean()),
            "duration_std": float(d.std(unbiased=False)),
            "per_trajectory": d.tolist(),
            "ms_per_step": ms,
            "latency_on": f"{env.device}, {torch.get_num_threads()} CPU thread(s)",
        }
        per = ", ".join(f"{x:.2f}" for x in d.tolist())
        print(f"{name:12s} {float(d.mean()):10.2f} +- {float(d.std(unbiased=False)):5.2f} {per:>36s} {ms:14.2f}")
    merge_summary(runs / "summary.json", summary)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, res in results.items():
        t = dt * (1 + torch.arange(len(res["corr"])))
        ax.plot(t.numpy(), res["corr"].numpy(), label=name)
    ax.axhline(base.eval.threshold, color="k", lw=0.8, ls="--")
    ax.set_xlabel("time"), ax.set_ylabel("vorticity correlation (mean of test)"), ax.set_ylim(-0.1, 1.02)
    ax.legend(), ax.grid(alpha=0.3)
    fig.savefig(runs / "correlation_vs_time.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    grid = fv.StaggeredGrid(spec["resolution"])
    steps = [min(targets.shape[1], int(round(t / dt))) - 1 for t in (1.0, 2.0, 4.0)]
    show = [n for n in ("coarse", "li", "tsm-hippo", "tsm-running") if n in results]
    fig, axes = plt.subplots(len(steps), 1 + len(show), figsize=(3 * (1 + len(show)), 3 * len(steps)), squeeze=False)
    for row, k in zip(axes, steps):
        ref = vorticity_rollout(targets[:1, k : k + 1], grid)[0, 0, 0]
        lim = float(ref.abs().max())
        panels = [("reference", ref)] + [
            (n, vorticity_rollout(results[n]["pred"][:1, k : k + 1], grid)[0, 0, 0]) for n in show
        ]
        for ax, (n, w) in zip(row, panels):
            ax.imshow(w.T.numpy(), origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"{n}, t = {(k + 1) * dt:.2f}"), ax.set_xlabel("x"), ax.set_ylabel("y")
            ax.set_xticks([]), ax.set_yticks([])
    fig.savefig(runs / "vorticity_snapshots.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"plots: {runs / 'correlation_vs_time.png'}, {runs / 'vorticity_snapshots.png'}")


if __name__ == "__main__":
    main()
