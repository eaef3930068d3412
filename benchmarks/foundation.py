"""Foundation-model benchmark at CPU scale: scOT pretrained on two Navier-Stokes initial-condition families and
fine-tuned on data it has not seen, against scOT from scratch and an FNO.

    python benchmarks/foundation.py  # ~32 min on one free CPU thread; writes runs/foundation_ns_blobs_e32/
    python benchmarks/foundation.py --downstream kolmogorov  # fine-tune on a different PDE instead
    python benchmarks/foundation.py --arch avit dpot         # AViT and DPOT instead (frames_study; ~30 min loaded)
    python benchmarks/foundation.py --arch avit dpot --residual  # every run of it predicting the change

Downstream data (``--downstream``): ``ns_blobs`` (default), the pretraining PDE from Gaussian vortex blobs, an
initial-condition family absent from pretraining; or ``kolmogorov`` (forced Kolmogorov flow with drag, a different
PDE; what ``configs/scot_finetune.yaml`` uses). Every scOT here is ``ScOTConfig.tiny`` at ``--embed-dim`` 32
(4.9M parameters; 3000 pretraining steps on 2 x 102 trajectories, 600 fine-tuning steps). The width matters: at
embed 8 (363k parameters) neither pretraining nor fine-tuning got below persistence (u(t) = u(0), printed as the
floor), so any "gain" was a difference between two models that had learned no dynamics. Measured (2026-11-28,
ns_blobs, persistence 67.0 %): pretrained 67.2 / 58.7 / 57.5 / 55.4 %, scratch 72.0 / 67.5 / 65.2 / 65.2 %,
FNO 85.0 / 70.1 / 58.1 / 43.9 % at N = 8 / 16 / 32 / 64.

Prints, for every N (training trajectories of the downstream data), the median relative L1 error (%) of
u(t=0) -> u(t=0.4) on the test trajectories (Poseidon's metric), and Poseidon's gains (Herde et al. 2024, Sec. 3):
    AG(N) = E_baseline(N) / E_pretrained(N)                          (accuracy gain at equal N)
    EG(N) = N_baseline / N,  E_baseline(N_baseline) = E_pretrained(N) (efficiency gain at equal error),
with N_baseline from a power law E(N) = c N^-a fitted to the baseline's errors (model-based, as Poseidon). Also:
all-pairs vs next-step-only training on the same trajectories, and the error at lead times never seen in training
(odd snapshots; training saw the even ones) against its neighbours. Plot: foundation.png in the output folder.
Every run is a run folder trained through ``pdeforge.families.train`` (the scOT runs from configs/scot_*.yaml with
overrides); existing ones (with metrics.json, made with the same options) are reused. The four datasets (two
pretraining initial-condition families, two downstream choices) are ``pdeforge generate`` presets and variants of
them, written once into ``OUT/data/`` as dataset roots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from pdeforge.families import load_family_config, load_run, train
from pdeforge.operators.scot import lead_time_errors, median_error, open_split
from pdeforge.training import config_to_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def benchmark_sources() -> dict:
    """The benchmark's datasets, `pdeforge generate` presets and variants of them, written out here:

    - ``ns_lognormal``: decaying 2D Navier-Stokes (vorticity), log-normal spectrum initial data (the preset);
    - ``ns_grf``: the same PDE from Gaussian-random-field vorticity (exponent 4), a second initial-condition family;
    - ``ns_blobs``: the same PDE from Gaussian vortex blobs (an unseen family);
    - ``kolmogorov``: forced Kolmogorov flow with drag (a different PDE, same vorticity field; after the preset's
      warm-up onto the attractor).

    Snapshots every 0.05 time units up to t = 0.4 (the presets store every 0.2 up to 5): at the presets' spacing the
    fields decorrelate within a few snapshots, too far for a CPU-sized model.
    """
    from pdeforge.solvers import GaussianBlobs, GaussianRandomField, Normalization
    from pdeforge.solvers.generate import PRESETS, with_overrides

    short = dict(save_every=5, n_snapshots=9)  # kolmogorov_2d: dt 0.01
    ns = with_overrides(PRESETS["navier_stokes_2d"], save_every=10, n_snapshots=9)  # dt 0.005: the same 0.05 apart
    amp = Normalization(scale_by="std", amplitude=2.0)
    return {
        "ns_lognormal": ns,
        "ns_grf": with_overrides(
            ns, name="ns_grf_2d", initial_condition=GaussianRandomField(exponent=4.0, normalization=amp)
        ),
        "ns_blobs": with_overrides(
            ns, name="ns_blobs_2d", initial_condition=GaussianBlobs(n_blobs=6, width=0.02, normalization=amp)
        ),
        "kolmogorov": with_overrides(PRESETS["kolmogorov_2d"], **short),
    }


def source_root(name: str, n_trajectories: int, out: Path, resolution: int = 32) -> Path:
    """The dataset root of the benchmark source ``name`` (80/10/10 split, seed 0), generated once into ``out/data``."""
    from pdeforge.solvers.generate import generate

    sources = benchmark_sources()
    if name not in sources:
        raise SystemExit(f"--downstream {name}: expected one of {', '.join(sources)}")
    root = out / "data" / f"{name}-n{n_trajectories}-r{resolution}"
    if not (root / "stats.yaml").exists():
        print(f"generating {name} ({n_trajectories} trajectories at {resolution}^2) into {root}")
        generate(sources[name], root, n_trajectories=n_trajectories, resolution=resolution, seed=0, progress=False)
    return root


def _config(name: str | None, overrides: list[str]) -> dict:
    """The config ``configs/<name>`` (None: the default job's) with ``overrides``, as the plain mapping its run
    folder's config.yaml holds."""
    _, config = load_family_config(None if name is None else CONFIGS / name, overrides)
    return config_to_dict(config)


def _what_it_computes(config: dict) -> dict:
    """A config without the options that do not change what a run computes (where it writes, progress, ...)."""
    run = config.get("run", {})
    return {**{k: v for k, v in config.items() if k != "run"}, "run": {k: run.get(k) for k in ("seed", "init_from")}}


def scot_run(name: str, overrides: list[str], run_dir: Path) -> dict:
    """``pdeforge train configs/<name> [overrides]`` into ``run_dir`` (replaced); its metrics."""
    return train(
        CONFIGS / name,
        [*overrides, "--run.run_dir", str(run_dir), "--run.overwrite", "true", "--run.progress", "false"],
    )


def _scot(run_dir: Path, name: str, overrides: list[str], after: Path | None = None) -> float:
    """The test median relative L1 (%) of ``scot_run(name, overrides, run_dir)``, or of an earlier run in ``run_dir``
    made with the same options (and, with ``after``, finished after the run folder ``after``: a fine-tuning run is
    stale once its checkpoint is redone)."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and (run_dir / "config.yaml").is_file():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        same = _what_it_computes(saved) == _what_it_computes(_config(name, overrides))
        if same and (after is None or metrics.stat().st_mtime > (after / "metrics.json").stat().st_mtime):
            return json.loads(metrics.read_text())["test"]["median_rel_l1"]
    return scot_run(name, overrides, run_dir)["test"]["median_rel_l1"]


def fno_error(root: Path, n: int, steps: int, out: Path, lead_snapshots: int, n_steps: int) -> float:
    """Train an FNO (the operator family, ``pdeforge.families.train``) on u(t) -> u(t + lead) windows of the first n
    trajectories (same number of optimiser steps as scOT) and return its median relative L1 (%) of u(0) -> u(lead)
    on test."""
    from pdeforge.datasets import TrajectoryDataset

    run_dir = out / f"fno_n{n}"
    saved = json.loads((run_dir / "model.json").read_text())["config"] if (run_dir / "model.json").is_file() else {}
    done = (
        saved.get("optim", {}).get("steps"),
        saved.get("data", {}).get("max_train_trajectories"),
        saved.get("data", {}).get("root"),
    )
    if done != (steps, n, str(Path(root).resolve())):
        windows = n * (n_steps - lead_snapshots)
        train(
            None,
            [
                "--data.root",
                str(Path(root).resolve()),
                "--task.kind",
                "operator",
                "--task.dt_stride",
                str(lead_snapshots),
                "--data.max_train_trajectories",
                str(n),
                "--model.name",
                "fno",
                "--model.args",
                json.dumps({"n_modes": 12, "hidden_channels": 32, "n_layers": 4}),
                "--optim.batch_size",
                str(min(16, windows)),
                "--optim.lr",
                "3e-3",
                "--optim.steps",
                str(steps),
                "--optim.eval_every",
                str(max(1, steps // 4)),
                "--run.run_dir",
                str(run_dir),
                "--run.overwrite",
                "true",
                "--run.progress",
                "false",
            ],
        )
    run = load_run(run_dir)
    model = run.model
    ds = TrajectoryDataset(
        root, 1, 1, lead_snapshots, split="test", normalization="zscore", stats=run.envelope["stats"]
    )
    samples = [ds[t * ds.windows_per_trajectory] for t in range(len(ds.trajectories))]  # start 0 of each
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    with torch.no_grad():
        pred = ds.denormalize(model.forward_batch(batch)[:, 0])
    return median_error(pred, ds.denormalize(batch["output_fields"][:, 0]), ds.metadata.field_names)


def persistence_error(root: Path, lead_snapshots: int) -> float:
    """Median relative L1 (%) of predicting u(lead) = u(0) on the test trajectories: the floor a model must beat to
    have learned any dynamics (a scOT with ``learn_residual`` starts there)."""
    from pdeforge.datasets import TrajectoryDataset

    ds = TrajectoryDataset(root, 1, 1, lead_snapshots, split="test")
    samples = [ds[t * ds.windows_per_trajectory] for t in range(len(ds.trajectories))]
    x = torch.stack([s["input_fields"][0] for s in samples])
    y = torch.stack([s["output_fields"][0] for s in samples])
    return median_error(x, y, ds.metadata.field_names)


def power_law(ns: list[int], errs: list[float]) -> tuple[float, float]:
    """(c, a) of E = c N^-a, least squares in log-log."""
    slope, icpt = np.polyfit(np.log(ns), np.log(errs), 1)
    return float(np.exp(icpt)), float(-slope)


def efficiency_gain(ns: list[int], base: list[float], pre: list[float]) -> list[float]:
    c, a = power_law(ns, base)
    if a <= 0:
        return [float("nan")] * len(ns)
    return [float((e / c) ** (-1.0 / a) / n) for n, e in zip(ns, pre)]


# -- AViT and DPOT (the operator family's pretrained models of frames) -----------------------------------------------
#: the CPU-sized architectures of the study (docs/results/foundation.md, "the plan"), by model.name
FRAME_ARCHS = {
    "avit": {"embed_dim": 64, "num_heads": 4, "processor_blocks": 4, "drop_path": 0.1,
             "field_indices": {"vorticity": 10}},
    "dpot": {"patch_size": 8, "embed_dim": 64, "depth": 4, "n_blocks": 4, "modes": 4, "out_layer_dim": 32,
             "mlp_ratio": 1.0, "n_cls": 2},
}  # fmt: skip
#: the embedding and head of each (their own learning rate when fine-tuning), as configs/*_finetune.yaml
FRAME_OUTER = {
    "avit": ["net.model.model.space_bag", "net.model.model.embed", "net.model.model.debed"],
    "dpot": ["net.model.pos_embed", "net.model.patch_embed", "net.model.time_agg_layer", "net.model.out_layer"],
}


def pretraining_root(out: Path, n_trajectories: int, resolution: int) -> Path:
    """One dataset root holding both pretraining presets (decaying NS from log-normal and from GRF vorticity), one
    file each per split, with statistics fitted on both train files."""
    from pdeforge.datasets import write_stats
    from pdeforge.solvers.generate import generate, with_overrides

    root = out / "data" / f"frames_pretrain-n{n_trajectories}-r{resolution}"
    if (root / "stats.yaml").exists():
        return root
    src = benchmark_sources()
    presets = {"lognormal": src["ns_lognormal"], "grf": with_overrides(src["ns_grf"], name="navier_stokes_2d")}
    for name, preset in presets.items():  # one dataset name: a dataset root's files must agree on it
        part = out / "data" / f"frames_{name}-n{n_trajectories}-r{resolution}"
        if not (part / "stats.yaml").exists():
            print(f"generating {name} ({n_trajectories} trajectories at {resolution}^2) into {part}")
            generate(preset, part, n_trajectories=n_trajectories, resolution=resolution, seed=0, progress=False)
        for split in ("train", "valid", "test"):
            (root / "data" / split).mkdir(parents=True, exist_ok=True)
            (source,) = sorted((part / "data" / split).glob("*.hdf5"))
            link = root / "data" / split / f"{name}.hdf5"
            if not link.exists():
                link.symlink_to(source.resolve())
    write_stats(root)
    return root


def frames_run(run_dir: Path, arch: str, root: Path, argv: list[str], residual: bool = False) -> dict:
    """The metrics of ``pdeforge train`` (operator family, next step, 2 frames in) of ``arch`` on ``root``, reused
    when ``run_dir`` holds a finished run made with the same options (``residual``: ``--model.residual true``)."""
    common = [
        "--data.root",
        str(root),
        "--task.kind",
        "next_step",
        "--task.n_steps_input",
        "2",
        "--task.dt_stride",
        "1",
    ]
    common += ["--task.rollout_steps", "4", "--run.threads", "1", "--run.progress", "false"]
    if residual:
        common += ["--model.residual", "true"]
    if arch == "fno":
        model = [
            "--model.name",
            "fno",
            "--model.args",
            json.dumps({"n_modes": 12, "hidden_channels": 32, "n_layers": 4}),
        ]
    else:
        model = ["--model.name", arch, "--model.use_grid", "false"]
    overrides = [*common, *model, *argv]
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and (run_dir / "config.yaml").is_file():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        if _what_it_computes(saved) == _what_it_computes(_config(None, overrides)):
            return json.loads(metrics.read_text())
    return train(None, [*overrides, "--run.run_dir", str(run_dir), "--run.overwrite", "true"])


def frames_persistence(root: Path) -> float:
    """Test rel L2 of u(t + dt) = u(t) over the next-step windows (the operator family's rel L2, physical units)."""
    from pdeforge.datasets import TrajectoryDataset
    from pdeforge.metrics import rel_l2

    ds = TrajectoryDataset(root, 2, 1, 1, split="test")
    errs = [float(rel_l2(s["input_fields"][-1:], s["output_fields"], 2)) for s in (ds[i] for i in range(len(ds)))]
    return float(np.mean(errs))


def frames_study(args: argparse.Namespace) -> None:
    """Pretrain each of ``args.arch`` on the two NS presets, fine-tune on Kolmogorov flow at every N and seed, against
    scratch and the FNO; prints the table with AG / EG and the seeds' range; writes OUT/frames.json (``--residual``:
    every run with ``model.residual true``, its run folders and frames.json in OUT/residual, the data shared)."""
    out = Path(args.out or "runs/foundation_frames")
    t0, res = time.perf_counter(), args.frames_resolution
    pre_root = pretraining_root(out, args.frames_pretrain_trajectories, res)
    down = source_root("kolmogorov", 80, out, resolution=res)
    residual = args.residual
    out = out / "residual" if residual else out  # the runs' folders: the earlier (plain) runs are kept
    floor = frames_persistence(down)
    print(f"persistence u(t + dt) = u(t) on kolmogorov: test rel L2 {floor:.4f}")
    seeds, ns, steps = args.seeds, args.ns, args.steps
    table: dict = {"ns": ns, "seeds": seeds, "persistence": floor, "resolution": res, "residual": residual, "archs": {}}
    fno = {n: [] for n in ns}
    for n in ns:
        for seed in seeds:
            argv = ["--data.max_train_trajectories", str(n), "--optim.steps", str(steps), "--optim.batch_size", "8"]
            argv += ["--optim.lr", "3e-3", "--optim.eval_every", str(steps // 2), "--run.seed", str(seed)]
            fno[n].append(frames_run(out / f"fno_n{n}_s{seed}", "fno", down, argv, residual)["test"]["rel_l2"])
        print(f"FNO N = {n}: {fno[n]}  [{time.perf_counter() - t0:.0f} s]", flush=True)
    for arch in args.arch:
        pre_dir = out / f"{arch}_pretrain"
        pre = frames_run(
            pre_dir,
            arch,
            pre_root,
            ["--model.args", json.dumps(FRAME_ARCHS[arch]), "--optim.steps", str(args.pretrain_steps)]
            + ["--optim.batch_size", "16", "--optim.lr", "1e-3", "--optim.eval_every", str(args.pretrain_steps // 4)],
            residual,
        )
        print(f"{arch} pretrained: test rel L2 {pre['test']['rel_l2']:.4f}  [{time.perf_counter() - t0:.0f} s]")
        rows = {"pretrained": {}, "scratch": {}}
        for n in ns:
            rows["pretrained"][n], rows["scratch"][n] = [], []
            for seed in seeds:
                argv = ["--data.max_train_trajectories", str(n), "--optim.steps", str(steps), "--optim.batch_size", "8"]
                argv += ["--optim.eval_every", str(steps // 2), "--run.seed", str(seed)]
                groups = json.dumps(dict.fromkeys(FRAME_OUTER[arch], 1e-3))
                tuned = ["--run.init_from", str(pre_dir), "--model.args", "{}", "--optim.lr", "3e-4"]
                tuned += ["--model.lr_groups", groups]
                scratch = ["--model.args", json.dumps(FRAME_ARCHS[arch]), "--optim.lr", "1e-3"]
                for key, extra in (("pretrained", tuned), ("scratch", scratch)):
                    run = out / f"{arch}_{key}_n{n}_s{seed}"
                    rows[key][n].append(frames_run(run, arch, down, [*argv, *extra], residual)["test"]["rel_l2"])
            print(
                f"{arch} N = {n}: fine-tuned {rows['pretrained'][n]}  scratch {rows['scratch'][n]}  "
                f"[{time.perf_counter() - t0:.0f} s]",
                flush=True,
            )
        table["archs"][arch] = {"pretrain_test_rel_l2": pre["test"]["rel_l2"], **rows}
    table["fno"] = fno
    table["seconds"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "frames.json").write_text(json.dumps(table, indent=1))
    print_frames_table(table)


def print_frames_table(table: dict) -> None:
    """The study's table: mean test rel L2 over the seeds [min, max], AG and EG against scratch and the FNO, and
    whether pretraining helps outside the seeds' spread."""
    ns = table["ns"]
    mean = {}
    fno = [float(np.mean(table["fno"][n])) for n in ns]
    print(f"\ntest rel L2 (one step, kolmogorov, unseen), mean of seeds {table['seeds']} [min, max]; "
          f"persistence {table['persistence']:.4f}")  # fmt: skip
    for arch, rows in table["archs"].items():
        mean = {k: [float(np.mean(rows[k][n])) for n in ns] for k in ("pretrained", "scratch")}
        eg_s = efficiency_gain(ns, mean["scratch"], mean["pretrained"])
        eg_f = efficiency_gain(ns, fno, mean["pretrained"])
        print(f"{arch}: pretraining test rel L2 {rows['pretrain_test_rel_l2']:.4f}")
        print(f"{'N':>4} {'fine-tuned':>22} {'scratch':>22} {'FNO':>22} {'AG/scr':>7} {'AG/FNO':>7} {'EG/scr':>7} "
              f"{'EG/FNO':>7}  holds vs scratch / FNO")  # fmt: skip
        for k, n in enumerate(ns):
            p, sc, f = rows["pretrained"][n], rows["scratch"][n], table["fno"][n]

            def cell(v: list) -> str:
                return f"{np.mean(v):.4f} [{min(v):.4f},{max(v):.4f}]"

            print(
                f"{n:4d} {cell(p):>22} {cell(sc):>22} {cell(f):>22} {mean['scratch'][k] / mean['pretrained'][k]:7.2f} "
                f"{fno[k] / mean['pretrained'][k]:7.2f} {eg_s[k]:7.2f} {eg_f[k]:7.2f}  "
                f"{'yes' if max(p) < min(sc) else 'no'} / {'yes' if max(p) < min(f) else 'no'}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out",
        default="",
        help="output folder (default runs/foundation_<downstream>_e<embed-dim>); a run "
        "folder in it is reused when it was made with the same options",
    )
    ap.add_argument("--ns", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--pretrain-steps", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--compare-n", type=int, default=16, help="N of the all-pairs vs next-step comparison")
    ap.add_argument(
        "--embed-dim",
        type=int,
        default=32,
        help="scOT width (ScOTConfig.tiny: 8 gives 363k parameters, 32 gives 4.9M); every scOT run uses it",
    )
    ap.add_argument("--pretrain-trajectories", type=int, default=128, help="trajectories per pretraining source")
    ap.add_argument(
        "--downstream",
        default="ns_blobs",
        choices=("ns_blobs", "kolmogorov"),
        help="the fine-tuning data: ns_blobs (an initial-condition family of the pretraining PDE not in "
        "pretraining) or kolmogorov (a different PDE, as configs/scot_finetune.yaml)",
    )
    ap.add_argument("--arch", nargs="+", default=[], choices=("avit", "dpot"), help="AViT / DPOT study (frames_study)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="--arch: seeds of every downstream run")
    ap.add_argument("--frames-resolution", type=int, default=64, help="--arch: the grid of every dataset")
    ap.add_argument("--frames-pretrain-trajectories", type=int, default=64, help="--arch: per pretraining preset")
    ap.add_argument(
        "--residual",
        action="store_true",
        help="--arch: every run (pretraining included) with --model.residual true (predict the change u(t+dt) - "
        "u(t)); run folders in OUT/residual",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.arch:
        if "--steps" not in sys.argv:
            args.steps = 200
        if "--pretrain-steps" not in sys.argv:
            args.pretrain_steps = 800
        frames_study(args)
        return
    out = Path(args.out or f"runs/foundation_{args.downstream}_e{args.embed_dim}")
    t0 = time.perf_counter()

    pre_dir = out / "pretrain"
    width = {
        "learn_residual": True,
        "embed_dim": args.embed_dim,
        "num_heads": [max(1, args.embed_dim // 16) * 2**i for i in range(4)],
    }  # 16 channels per head (8: 1, 2, 4, 8)
    sources = [{"root": str(source_root(name, args.pretrain_trajectories, out))} for name in ("ns_lognormal", "ns_grf")]
    pre = _scot(
        pre_dir,
        "scot_pretrain.yaml",
        [
            "--data.sources",
            json.dumps(sources),
            "--optim.steps",
            str(args.pretrain_steps),
            "--optim.eval_every",
            "300",
            "--model.args",
            json.dumps(width),
        ],
    )
    print(f"pretrained on NS (two IC families): test median rel L1 {pre:.2f}%  [{time.perf_counter() - t0:.0f} s]")

    _, ft = load_family_config(CONFIGS / "scot_finetune.yaml")
    root = source_root(args.downstream, ft.data.preset_options["n_trajectories"], out).resolve()
    data = ["--data.preset", "", "--data.preset_options", "{}", "--data.root", str(root)]
    lead = (ft.data.n_snapshots - 1) * ft.data.stride
    test = open_split(root, "test", "zscore")
    times = np.asarray(test.files[0].time)
    persistence = persistence_error(root, lead)
    print(f"persistence u({times[lead]:g}) = u(0) on {args.downstream}: median rel L1 {persistence:.2f}%")
    rows = {"pretrained": [], "scratch": [], "fno": []}
    scratch = ["--run.init_from", "", "--optim.lr", "2e-3", "--model.args", json.dumps(width)]
    for n in args.ns:
        common = [
            *data,
            "--data.max_train_trajectories",
            str(n),
            "--optim.steps",
            str(args.steps),
            "--optim.eval_every",
            str(max(1, args.steps // 3)),
        ]
        rows["pretrained"].append(
            _scot(
                out / f"finetune_n{n}", "scot_finetune.yaml", [*common, "--run.init_from", str(pre_dir)], after=pre_dir
            )
        )
        rows["scratch"].append(_scot(out / f"scratch_n{n}", "scot_finetune.yaml", [*common, *scratch]))
        rows["fno"].append(fno_error(root, n, args.steps, out, lead, test.n_steps))
        print(
            f"N = {n:3d}: pretrained+fine-tuned {rows['pretrained'][-1]:6.2f}%  scratch {rows['scratch'][-1]:6.2f}%  "
            f"FNO {rows['fno'][-1]:6.2f}%  [{time.perf_counter() - t0:.0f} s]"
        )

    # all-pairs vs next-step-only, same trajectories, same steps, from scratch
    nc = args.compare_n
    common = [
        *data,
        "--data.max_train_trajectories",
        str(nc),
        "--optim.steps",
        str(args.steps),
        "--optim.eval_every",
        str(max(1, args.steps // 3)),
        *scratch,
    ]
    allp = _scot(out / f"scratch_n{nc}", "scot_finetune.yaml", common)
    nxt = _scot(out / f"nextstep_n{nc}", "scot_finetune.yaml", [*common, "--data.pairing", "next"])

    # lead times not seen in training: odd snapshots, the model saw the even ones
    model = load_run(out / f"finetune_n{args.ns[-1]}").model
    leads = lead_time_errors(
        model, test, list(range(1, lead + 1)), float(times[lead] - times[0]), test.metadata.field_names
    )

    res = {
        "ns": args.ns,
        **rows,
        "pretrain": pre,
        "persistence": persistence,
        "embed_dim": args.embed_dim,
        "AG_vs_scratch": [s / p for s, p in zip(rows["scratch"], rows["pretrained"])],
        "AG_vs_fno": [f / p for f, p in zip(rows["fno"], rows["pretrained"])],
        "EG_vs_scratch": efficiency_gain(args.ns, rows["scratch"], rows["pretrained"]),
        "EG_vs_fno": efficiency_gain(args.ns, rows["fno"], rows["pretrained"]),
        "all_pairs_vs_next_step": {"n": nc, "all_pairs": allp, "next_step_rollout": nxt},
        "lead_time_errors": {str(k): v for k, v in leads.items()},
        "seconds": time.perf_counter() - t0,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "foundation.json").write_text(json.dumps(res, indent=1))

    print(
        f"\nmedian relative L1 (%) of u(0) -> u({times[lead]:g}) on {args.downstream} (not in pretraining), "
        "test trajectories"
    )
    print(
        f"{'N':>4} {'pretrained':>11} {'scratch':>9} {'FNO':>8} "
        f"{'AG/scratch':>11} {'AG/FNO':>8} {'EG/scratch':>11} {'EG/FNO':>8}"
    )
    for k, n in enumerate(args.ns):
        print(
            f"{n:4d} {rows['pretrained'][k]:11.2f} {rows['scratch'][k]:9.2f} {rows['fno'][k]:8.2f} "
            f"{res['AG_vs_scratch'][k]:11.2f} {res['AG_vs_fno'][k]:8.2f} "
            f"{res['EG_vs_scratch'][k]:11.2f} {res['EG_vs_fno'][k]:8.2f}"
        )
    print(f"persistence (u(t) = u(0)): {persistence:.2f}%; below it a model has learned dynamics")
    print(
        f"all pairs vs next-step only (N = {nc}, scratch, same steps): {allp:.2f}% vs {nxt:.2f}% "
        "(rollout to the final time)"
        f" -> {'all pairs better' if allp < nxt else 'next-step better'}"
    )
    print(f"lead-time query (fine-tuned model, N = {args.ns[-1]}); training saw the even snapshots only:")
    for k, (lt, e) in leads.items():
        print(f"  snapshot {k:2d}  lead {lt:.2f}  {'unseen' if k % ft.data.stride else 'seen  '}  {e:6.2f}%")
    for k in range(1, lead, ft.data.stride):
        lo, hi = sorted((leads[k - 1][1] if k > 1 else 0.0, leads[k + 1][1]))
        print(
            f"  unseen snapshot {k}: {leads[k][1]:.2f}% "
            f"{'within' if lo <= leads[k][1] <= hi else 'OUTSIDE'} [{lo:.2f}, {hi:.2f}]"
        )
    _plot(res, out / "foundation.png")
    print(f"[{time.perf_counter() - t0:.0f} s] {out / 'foundation.json'}, {out / 'foundation.png'}")


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (
        ("pretrained", "scOT pretrained + fine-tuned"),
        ("scratch", "scOT from scratch"),
        ("fno", "FNO"),
    ):
        ax.plot(res["ns"], res[key], "o-", label=label)
    if "persistence" in res:
        ax.axhline(res["persistence"], color="0.5", ls="--", lw=1, label="persistence u(t) = u(0)")
    ax.set_xscale("log", base=2), ax.set_yscale("log")
    ax.set_xlabel("training trajectories N"), ax.set_ylabel("median relative L1 (%)")
    ax.legend(), ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
