"""Train a surrogate PDE solver on a pdeforge dataset and report honest test metrics.

    python train.py                                   # the embedded default: Burgers data (generated once), FNO
    python train.py configs/fno_navier_stokes.yaml    # a config file (overrides the defaults below)
    python train.py --model unet --epochs 5           # command-line overrides (after the file)
    python train.py --resume runs/default             # continue a run exactly where it stopped
    python train.py --init-from runs/pretrained --lr-groups '{"net.lifting": 1e-3}'   # fine-tune
    torchrun --nproc_per_node 2 train.py ...          # DDP (gloo on CPU, NCCL on GPUs); only rank 0 writes

The run folder (``--run-dir``, default ``runs/<name>``) is the only output: ``config.yaml``, ``metrics.json``
(``valid``/``test``/``rollout``), ``model.safetensors`` (best on valid) + ``model.json`` (how to rebuild it),
``train_log.jsonl``, ``loss.png``, ``prediction.png``, ``rollout_error.png``, and ``checkpoint/`` for resuming.
Normalisation statistics come from the train split only; model selection uses valid; test is read once, at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pdeforge._spec import field_problems


@dataclass
class Config:
    # -- data ------------------------------------------------------------------------------------------------
    data: str = ""  # dataset root (ROOT/data/{train,valid,test}); empty: generate `preset` into the cache once
    preset: str = "burgers_1d"  # `pdeforge generate` preset used when `data` is empty
    preset_trajectories: int = 160  # trajectories generated for the default data (80/10/10 split)
    preset_resolution: int = 128  # grid points per axis of the generated data
    task: str = "operator"  # "next_step" (autoregressive, rollout-evaluated) | "operator" (one-shot map)
    windows: str = "all"  # operator on time-dependent data: "all" start times | "first" (u0 -> u(T))
    n_steps_input: int = 1  # frames in (next_step)
    n_steps_output: int = 1  # frames out per model call (next_step)
    dt_stride: int = 10  # snapshots between frames: the model's time step is dt_stride * dt (windows "first": 0 is the last)
    normalization: str = "zscore"  # "zscore" | "rms" | "" (none); fitted on train only
    max_train_trajectories: int = 0  # use only the first N training trajectories (0: all)
    # -- model -----------------------------------------------------------------------------------------------
    model: str = "fno"  # "fno" | "tfno" | "uno" | "unet"
    model_args: dict = field(default_factory=dict)  # the model's config ({}: MODEL_ARGS of the model, else its defaults)
    use_grid: bool = True  # grid coordinates as extra input channels
    # -- optimisation ----------------------------------------------------------------------------------------
    epochs: int = 30
    batch_size: int = 32  # per process
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05  # fraction of steps with linear warm-up, then cosine decay to 0 (stepped per iteration)
    grad_clip: float = 1.0  # max gradient norm (0: off)
    grad_accum: int = 1  # micro-batches per optimiser step
    loss: str = "rel_l2"  # "rel_l2" (per-sample relative L2 in physical units) | "mse" (normalised space)
    pushforward: int = 1  # next_step: unroll this many model calls, gradient through the last (Brandstetter et al.)
    amp: str = "none"  # "none" | "bf16" | "fp16" (fp16 uses a GradScaler; bf16 needs CUDA or a recent CPU)
    compile: bool = False  # torch.compile the model
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower, bit-reproducible)
    patience: int = 0  # early stopping: evaluations without valid improvement (0: off)
    eval_every: int = 1  # epochs between validation passes
    # -- fine-tuning -----------------------------------------------------------------------------------------
    init_from: str = ""  # run folder or weights file; tensors whose shapes differ are re-initialised
    reinit: list = field(default_factory=list)  # parameter-name prefixes to re-initialise anyway
    lr_groups: dict = field(default_factory=dict)  # {parameter-name prefix: lr}; the rest uses `lr`
    # -- run -------------------------------------------------------------------------------------------------
    name: str = "default"
    run_dir: str = ""  # default runs/<name>
    resume: str = ""  # a run folder to continue exactly
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    num_workers: int = 0  # DataLoader workers
    rollout_steps: int = 0  # max autoregressive steps in rollout evaluation (0: whole trajectories)
    max_steps: int = 0  # stop after this many optimiser steps (0: epochs decide); for smoke tests
    progress: bool = True  # progress bar


# ------------------------------------------------------------------------------------------------------------
# configuration: defaults < YAML file < command line
# ------------------------------------------------------------------------------------------------------------
def parse_config(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("config", nargs="?", help="YAML file with any of the options below")
    comments = _field_comments()
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = type(default)
        conv = {bool: _bool, list: _json, dict: _json}.get(kind, kind)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=conv, default=None,
                            help=f"{comments.get(f.name, '')} (default: {json.dumps(default)})")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    source = args.config or (str(Path(args.resume) / "config.yaml") if args.resume else None)
    if source and not Path(source).is_file():
        parser.error(f"--resume {args.resume}: not a run folder (no config.yaml); expected a folder train.py wrote"
                     if not args.config else f"{source}: no such config file")
    if source:
        loaded = yaml.safe_load(Path(source).read_text()) or {}
        unknown = set(loaded) - {f.name for f in dataclasses.fields(Config)}
        if unknown:
            parser.error(f"{source}: unknown option(s) {sorted(unknown)}; see python train.py --help")
        values.update(loaded)
    given = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    values.update(given)
    problems = check_config(values)
    if problems:  # before torch is imported: a typo costs a second, not a data load
        parser.error("; ".join(f"{'--' + k.replace('_', '-') if k in given else f'{source}: {k}'} {v}"
                               for k, v in problems.items()))
    return Config(**values)


#: ``model_args`` when none are given (recorded in the run's config.yaml as used); other models: their own defaults
MODEL_ARGS = {"fno": {"n_modes": 16, "hidden_channels": 48, "n_layers": 4}}

_CHOICES = {"task": ("operator", "next_step"), "windows": ("all", "first"), "normalization": ("zscore", "rms", ""),
            "loss": ("rel_l2", "mse"), "amp": ("none", "bf16", "fp16")}
_AT_LEAST = {"epochs": 1, "batch_size": 1, "grad_accum": 1, "pushforward": 1, "n_steps_input": 1, "n_steps_output": 1,
             "dt_stride": 0, "eval_every": 1, "preset_trajectories": 3, "preset_resolution": 2, "patience": 0,
             "num_workers": 0, "rollout_steps": 0, "max_steps": 0, "max_train_trajectories": 0, "weight_decay": 0,
             "grad_clip": 0}


def check_config(values: dict[str, Any]) -> dict[str, str]:
    """``{option: what is wrong}`` for the options in ``values`` (a type, a range, a choice, the data root)."""
    problems = field_problems(Config, values, at_least=_AT_LEAST, positive=("lr",), choices=_CHOICES)
    device, warmup = values.get("device"), values.get("warmup")
    if "device" not in problems and device is not None and not re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", device):
        problems["device"] = f"{device!r}: expected auto, cpu, cuda, cuda:N, mps or xpu"
    if "warmup" not in problems and warmup is not None and not 0 <= warmup < 1:
        problems["warmup"] = f"{warmup}: expected in [0, 1)"
    first = values.get("task", "operator") == "operator" and values.get("windows", "all") == "first"
    if values.get("dt_stride") == 0 and not first:
        problems["dt_stride"] = "0: expected >= 1 (0, the last snapshot, is for task operator with windows first)"
    data = values.get("data")
    if isinstance(data, str) and data and "data" not in problems:
        root = Path(data)
        if not root.exists():
            problems["data"] = f"{data}: no such folder (expected a dataset root: ROOT/data/{{train,valid,test}})"
        elif not (root / "data" / "train").is_dir():
            what = "a file" if root.is_file() else "a folder without data/train"
            problems["data"] = (f"{data}: {what}, not a dataset root (expected ROOT/data/{{train,valid,test}}/*.hdf5 "
                                "and ROOT/stats.yaml, as pdeforge generate and pdeforge convert write)")
    return problems


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _json(s: str) -> Any:
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected JSON (e.g. '{{\"n_modes\": 16}}'), got {s!r}: {e}") from None


def _field_comments() -> dict[str, str]:
    comments = {}
    for line in Path(__file__).read_text().splitlines():
        line = line.strip()
        if ":" in line and "#" in line and "=" in line and not line.startswith("#"):
            name = line.split(":")[0].strip()
            if name.isidentifier():
                comments[name] = line.split("#", 1)[1].strip()
    return comments


def default_data(cfg: Config) -> str:
    """The cached dataset for ``cfg.preset`` (generated on first use); returns its root."""
    from pdeforge.solvers.generate import generate

    cache = Path(os.environ.get("PDEFORGE_CACHE", Path.home() / ".cache" / "pdeforge"))
    root = cache / "datasets" / f"{cfg.preset}-n{cfg.preset_trajectories}-r{cfg.preset_resolution}-s{cfg.seed}"
    if not (root / "stats.yaml").exists():
        print(f"generating {cfg.preset} ({cfg.preset_trajectories} trajectories) into {root} (once; cached)")
        generate(cfg.preset, root, n_trajectories=cfg.preset_trajectories, resolution=cfg.preset_resolution,
                 seed=cfg.seed, progress=cfg.progress)
    print(f"data: {root}")
    return str(root)


# ------------------------------------------------------------------------------------------------------------
# the job
# ------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(sys.argv[1:] if argv is None else argv)
    import numpy as np
    import torch
    import torch.distributed as dist
    from pdeforge import metrics as M
    from pdeforge import plots
    from pdeforge._device import compile_problem
    from pdeforge.checkpoint import (
        UnsafeCheckpointError,
        atomic_write_text,
        load_any_weights,
        load_state,
        save_state,
        save_weights,
    )
    from pdeforge.evaluate import (
        make_dataset,
        rollout_metrics,
        split_metrics,
        to_device,
    )
    from pdeforge.operators import MODELS, build_model, config_from_dict
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm.auto import tqdm

    # 1. processes, devices, seeds -------------------------------------------------------------------------
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {cfg.device}: no CUDA device here (torch {torch.__version__}); use cpu or auto")
    if cfg.compile and (problem := compile_problem(cfg.device)):
        raise SystemExit(f"--compile: {problem}; install it or drop --compile")
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.device.startswith("cuda"):
            torch.cuda.set_device(local)
            cfg.device = f"cuda:{local}"
        dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
    device = torch.device(cfg.device)
    is_main = rank == 0
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    # 2. data: splits, normalisation fitted on train only ------------------------------------------------------
    if not cfg.data:
        if world > 1 and not is_main:
            dist.barrier()
        cfg.data = default_data(cfg)
        if world > 1 and is_main:
            dist.barrier()
    cfg.data = str(Path(cfg.data).resolve())  # the run folder must find its data from anywhere
    from pdeforge.datasets import load_stats

    stats = load_stats(Path(cfg.data) / "stats.yaml") if cfg.normalization else None
    cfg_dict = dataclasses.asdict(cfg)
    pf = cfg.pushforward if cfg.task == "next_step" else 1
    train_ds = make_dataset(cfg_dict, "train", stats=stats, max_trajectories=cfg.max_train_trajectories,
                            n_steps_output=cfg.n_steps_output * pf)
    valid_ds = make_dataset(cfg_dict, "valid", stats=stats)
    meta = train_ds.metadata
    n_dims = meta.n_spatial_dims
    n_in = 0 if train_ds.n_steps_input == 0 else (cfg.n_steps_input if cfg.task == "next_step" else 1)
    n_out = cfg.n_steps_output if cfg.task == "next_step" else 1
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        drop_last=True, pin_memory=device.type == "cuda", persistent_workers=cfg.num_workers > 0)
    if len(loader) == 0:
        raise SystemExit(f"{cfg.data}: {len(train_ds)} training windows are fewer than one batch of {cfg.batch_size} x {world} processes")

    # 3. model: sizes from the metadata; optional fine-tuning init --------------------------------------------
    if cfg.model not in MODELS:
        raise SystemExit(f"model {cfg.model!r} unknown; choose one of {list(MODELS)}")
    cfg.model_args = cfg.model_args or dict(MODEL_ARGS.get(cfg.model, {}))
    try:
        model_config = config_from_dict(cfg.model, cfg.model_args)
    except ValueError as e:
        raise SystemExit(f"--model-args: {e}") from None
    model = build_model(model_config, meta, n_steps_input=n_in, n_steps_output=n_out, use_grid=cfg.use_grid).to(device)
    if cfg.init_from and not cfg.resume:
        try:
            weights = load_any_weights(cfg.init_from)
        except (UnsafeCheckpointError, FileNotFoundError, ValueError) as e:
            raise SystemExit(f"--init-from: {e}") from None
        report = init_from(model, weights, cfg.reinit)
        if is_main:
            print(f"init from {cfg.init_from}: {report['loaded']} tensors loaded, re-initialised {report['reinitialised']}")
    n_params = sum(p.numel() for p in model.parameters())

    # 4. optimiser: AdamW with per-group learning rates, warm-up + cosine per iteration --------------------------
    groups = param_groups(model, cfg.lr, cfg.lr_groups, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups)
    steps_per_epoch = max(1, len(loader) // cfg.grad_accum)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    warmup_steps = int(cfg.warmup * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / max(1, warmup_steps) if s < warmup_steps
                                                  else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup_steps) / max(1, total_steps - warmup_steps)))))
    scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and device.type == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    # 5. run folder and resume ---------------------------------------------------------------------------------
    run_dir = Path(cfg.resume or cfg.run_dir or Path("runs") / cfg.name)
    ckpt_dir = run_dir / "checkpoint"
    state = {"epoch": 0, "step": 0, "best_valid": float("inf"), "best_epoch": -1, "bad_evals": 0}
    log: list[dict] = []
    if cfg.resume:
        saved = load_state(ckpt_dir / "state.pt")
        model.load_state_dict(load_any_weights(ckpt_dir / "last.safetensors"))
        optimizer.load_state_dict(saved["optimizer"]), scheduler.load_state_dict(saved["scheduler"])
        state = saved["counters"]
        torch.set_rng_state(saved["rng_torch"]), random.setstate(_tuples(saved["rng_python"]))
        np.random.set_state(tuple(saved["rng_numpy"][:1]) + (np.array(saved["rng_numpy"][1], dtype=np.uint32),) + tuple(saved["rng_numpy"][2:]))
        log = [r for r in _read_log(run_dir / "train_log.jsonl") if r["step"] <= state["step"]]
        if is_main:
            print(f"resuming {run_dir} at epoch {state['epoch']}, step {state['step']}")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        atomic_write_text(run_dir / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
        print(f"run {run_dir}: {cfg.model} ({n_params:,} parameters) on {meta.dataset_name} {meta.resolution}, "
              f"task {cfg.task}, {len(train_ds)} train / {len(valid_ds)} valid windows, {world} process(es) on {device}")
    net = DistributedDataParallel(model) if world > 1 else model
    if cfg.compile:
        net = torch.compile(net)

    def forward(batch: dict) -> Any:
        """Model prediction (normalised) and target; pushforward unrolls without gradient before the last call."""
        target = batch["output_fields"]
        if pf > 1:
            with torch.no_grad():
                frames = batch["input_fields"]
                for k in range(pf - 1):
                    step = dict(batch, input_fields=frames[:, -n_in:])
                    frames = torch.cat([frames, model.forward_batch(step)], dim=1)
            batch = dict(batch, input_fields=frames[:, -n_in:].detach())
            target = target[:, -n_out:]
        lay = model.layout
        out = net(batch.get("input_fields") if lay.n_steps_input else None,
                  batch.get("constant_fields") if lay.n_constant_fields else None,
                  batch.get("scalars") if lay.n_scalars else None)
        return out, target

    def loss_fn(pred, target):
        if cfg.loss == "mse":
            return torch.mean((pred.float() - target) ** 2)
        if cfg.loss == "rel_l2":
            return M.rel_l2(train_ds.denormalize(pred.float()), train_ds.denormalize(target), n_dims)
        raise SystemExit(f"loss should be 'rel_l2' or 'mse', got {cfg.loss!r}")

    # 6. the loop: epochs of optimiser steps; validation, best-by-valid checkpoint, early stopping ----------------
    bar = tqdm(total=total_steps, initial=state["step"], disable=not (cfg.progress and is_main), unit="step", dynamic_ncols=True)
    done = state["step"] >= total_steps
    while not done and state["epoch"] < cfg.epochs:
        net.train()
        sampler.set_epoch(state["epoch"])
        t_epoch, t_data, t0 = time.perf_counter(), 0.0, time.perf_counter()
        for i, batch in enumerate(loader):
            t_data += time.perf_counter() - t0
            batch = to_device(batch, device)
            with autocast():
                pred, target = forward(batch)
                loss = loss_fn(pred, target)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {state['step']} (epoch {state['epoch']}); lower lr ({cfg.lr}) or check the data")
            scaler.scale(loss / cfg.grad_accum).backward()
            if (i + 1) % cfg.grad_accum == 0:
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer), scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                state["step"] += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4g}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if is_main and (state["step"] % 10 == 0 or state["step"] == 1):
                    log.append({"step": state["step"], "epoch": state["epoch"], "loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
                if state["step"] >= total_steps:
                    done = True
                    break
            t0 = time.perf_counter()
        state["epoch"] += 1
        epoch_time = time.perf_counter() - t_epoch
        if state["epoch"] % cfg.eval_every == 0 or done or state["epoch"] == cfg.epochs:
            valid = split_metrics(model, valid_ds, device, batch_size=cfg.batch_size)
            if is_main:
                entry = {"step": state["step"], "epoch": state["epoch"], "valid_rel_l2": valid["rel_l2"],
                         "epoch_time": epoch_time, "data_time_fraction": t_data / max(epoch_time, 1e-9)}
                log.append(entry)
                if valid["rel_l2"] < state["best_valid"]:
                    state.update(best_valid=valid["rel_l2"], best_epoch=state["epoch"], bad_evals=0)
                    save_weights(run_dir / "model.safetensors", model.state_dict())
                else:
                    state["bad_evals"] += 1
                bar.write(f"epoch {state['epoch']:4d}  step {state['step']:6d}  valid rel L2 {valid['rel_l2']:.4g}"
                          f"  (best {state['best_valid']:.4g} @ {state['best_epoch']})")
            if cfg.patience and state["bad_evals"] >= cfg.patience:
                done = True
        if is_main:  # resumable checkpoint at every epoch end (atomic)
            save_weights(ckpt_dir / "last.safetensors", model.state_dict())
            save_state(ckpt_dir / "state.pt", {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "counters": dict(state),
                "rng_torch": torch.get_rng_state(), "rng_python": _lists(random.getstate()),
                "rng_numpy": _lists(np.random.get_state()),
            })
            atomic_write_text(run_dir / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
        if world > 1:
            flag = torch.tensor([float(done)], device=device)
            dist.broadcast(flag, 0)
            done = bool(flag.item())
    bar.close()

    # 7. final evaluation of the best-by-valid weights (rank 0): valid, test, rollout; plots ----------------------
    results: dict[str, Any] = {}
    if is_main:
        best = load_any_weights(run_dir / "model.safetensors")
        model.load_state_dict(best)
        atomic_write_text(run_dir / "model.json", json.dumps({
            "model_spec": model.model_spec, "config": dataclasses.asdict(cfg), "metadata": meta.to_dict(),
            "stats": stats, "n_parameters": n_params}, indent=1))
        test_ds = make_dataset(cfg_dict, "test", stats=stats)
        results = {"valid": split_metrics(model, valid_ds, device), "test": split_metrics(model, test_ds, device),
                   "best_epoch": state["best_epoch"], "steps": state["step"], "n_parameters": n_params}
        if cfg.task == "next_step":
            roll_ds = make_dataset(cfg_dict, "test", stats=stats, rollout=True)
            results["rollout"] = rollout_metrics(model, roll_ds, device, max_steps=cfg.rollout_steps or None)
            plots.plot_rollout_error(results["rollout"], roll_ds.metadata.dt, run_dir / "rollout_error.png")
        atomic_write_text(run_dir / "metrics.json", json.dumps(results, indent=1))
        plots.plot_losses(log, run_dir / "loss.png")
        sample = test_ds[0]
        with torch.no_grad():
            model.eval()
            one = {k: v[None].to(device) for k, v in sample.items()}
            pred = test_ds.denormalize(model.forward_batch(one)[0, 0].float()).cpu().numpy()
        truth = test_ds.denormalize(sample["output_fields"][0]).numpy()
        inp = (test_ds.denormalize(sample["input_fields"][-1]).numpy() if sample["input_fields"].shape[0]
               else sample.get("constant_fields", torch.zeros(0)).numpy() if "constant_fields" in sample else None)
        plots.plot_prediction(inp, truth, pred, list(meta.field_names), run_dir / "prediction.png")
        t = results["test"]
        print(f"test rel L2 {t['rel_l2']:.4g}  nRMSE {t['nrmse']:.4g}  VRMSE {t['vrmse']:.4g}  ({t['n_samples']} windows; "
              f"best epoch {state['best_epoch']})" + (f"; rollout rel L2 mean {results['rollout']['rel_l2_mean']:.4g} over "
                                                      f"{results['rollout']['steps']} steps" if "rollout" in results else ""))
        print(f"run folder: {run_dir}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return results


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------
def param_groups(model, lr: float, lr_groups: dict, weight_decay: float) -> list[dict]:
    """One AdamW group per ``lr_groups`` prefix (first match wins) plus the rest at ``lr``."""
    buckets: dict[str, list] = {p: [] for p in lr_groups}
    rest = []
    for name, p in model.named_parameters():
        prefix = next((q for q in lr_groups if name.startswith(q)), None)
        (buckets[prefix] if prefix is not None else rest).append(p)
    empty = [q for q, ps in buckets.items() if not ps]
    if empty:
        names = sorted({n.rsplit(".", 2)[0] for n, _ in model.named_parameters()})[:12]
        raise SystemExit(f"lr_groups prefixes {empty} match no parameter; parameter names start like {names}")
    groups = [{"params": ps, "lr": float(lr_groups[q]), "weight_decay": weight_decay, "name": q} for q, ps in buckets.items()]
    if rest:
        groups.append({"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "rest"})
    return groups


def init_from(model, weights: dict, reinit: list) -> dict:
    """Copy matching tensors; keep the fresh initialisation where shapes differ or the name has a ``reinit`` prefix."""
    own = model.state_dict()
    loaded, reinitialised = 0, []
    for name, value in own.items():
        src = weights.get(name)
        if src is None or any(name.startswith(p) for p in reinit) or tuple(src.shape) != tuple(value.shape):
            reinitialised.append(name)
            continue
        own[name] = src.to(value.dtype)
        loaded += 1
    if loaded == 0:
        raise SystemExit("init-from: no tensor of the checkpoint matches this model by name and shape")
    model.load_state_dict(own)
    return {"loaded": loaded, "reinitialised": reinitialised}


def _lists(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, list)):
        return [_lists(v) for v in x]
    return x


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# Model families with their own training loop (PINNs, temporal stencils, assimilation, scOT) take a YAML config with
# `family: <name>` and write the same run folder; written out here, no registry.
FAMILIES = {
    "pinn": "pdeforge.pinns",
    "tsm": "pdeforge.operators.tsm",
    "noda": "pdeforge.operators.noda",
    "scot": "pdeforge.operators.scot.training",
}


def run_family(argv: list[str]) -> dict | None:
    """If ``argv[0]`` is a YAML config with ``family: <name>``, run that family's loop; else return None.

    Options after the file override its keys (``--steps 100``, ``--run-dir runs/x``; values parsed as JSON when they
    can be); ``--section.key value`` sets one key inside a section (``--optim.adam_iters 2000`` for a PINN). The
    family's ``run(spec, run_dir) -> metrics`` writes the run folder.
    """
    if not argv or not argv[0].endswith((".yaml", ".yml")):
        return None
    if not Path(argv[0]).is_file():
        raise SystemExit(f"{argv[0]}: no such config file (the configs are under configs/)")
    spec = yaml.safe_load(Path(argv[0]).read_text()) or {}
    family = spec.get("family")
    if family is None:
        return None
    if family not in FAMILIES:
        raise SystemExit(f"{argv[0]}: family {family!r} unknown; one of {sorted(FAMILIES)} (or no family: the operator loop)")
    rest = argv[1:]
    if len(rest) % 2 or not all(k.startswith("--") for k in rest[::2]):
        raise SystemExit(f"options after {argv[0]} must be --key value pairs, got {rest}")
    for key, value in zip(rest[::2], rest[1::2]):
        with contextlib.suppress(json.JSONDecodeError):  # not JSON: the text itself
            value = json.loads(value)
        name = key[2:].replace("-", "_")
        if "." in name:  # --section.key value: one option inside a section (a PINN's optim, network, ...)
            section, _, inner = name.partition(".")
            if spec.get(section) is not None and not isinstance(spec[section], dict):
                raise SystemExit(f"{argv[0]}: {key}: {section} is {spec[section]!r} there, not a section of options")
            spec[section] = {**(spec.get(section) or {}), inner: value}
        else:
            spec[name] = value
    import importlib

    module = importlib.import_module(FAMILIES[family])
    run_dir = Path(spec.get("run_dir") or Path("runs") / spec.get("name", Path(argv[0]).stem))
    return module.run(spec, run_dir)


def cli(argv: list[str]) -> None:
    """``python train.py ...``: bad input ends with its message, not a traceback: for a family config (an unknown
    key, a config that differs from the checkpoint it resumes, data made with other parameters, a missing file) the
    message names the config file; for the operator loop, options are checked before anything loads
    (:func:`check_config`) and a bad file met later is one ``train.py: error:`` line. ``PDEFORGE_TRACEBACK=1`` shows
    the traceback instead."""
    try:
        done = run_family(argv)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("PDEFORGE_TRACEBACK"):
            raise
        raise SystemExit(f"{argv[0]}: {e}") from None
    if done is None:
        try:
            main(argv)
        except (ValueError, FileNotFoundError) as e:  # the operator loop's bad input (a data file, a checkpoint)
            if os.environ.get("PDEFORGE_TRACEBACK"):
                raise
            raise SystemExit(f"train.py: error: {e}") from None


if __name__ == "__main__":
    cli(sys.argv[1:])
