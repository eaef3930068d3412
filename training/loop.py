"""The run skeleton: one training loop for every family.

A family (:class:`AbstractFamily`) says what is particular to it: its config class, how it reads its data, its
model, the loss on a batch, its evaluation, its plots and how its model is rebuilt. :func:`fit` does the rest, the
same way for all: devices and DDP processes, seeding, the run folder, the optimiser (AdamW) with the warm-up +
cosine schedule, gradient accumulation, clipping and AMP, the non-finite-loss stop, validation with best-by-valid
selection and early stopping, checkpoints with the whole RNG bundle and exact resume, the progress bar, the log
and the final metrics, weights and plots, and the experiment trackers of ``run.loggers`` (:mod:`.loggers`).

The loop, in order::

    1. environment: device, processes (torchrun: DDP, gloo on CPU, NCCL on GPU), threads, seeds
    2. run folder: fresh (refused if it holds a run), overwritten, or resumed (refused if the config changed)
    3. family.prepare(): data; family.build_model(): the model (on the CPU, then moved); --run.init_from; the
       trackers open (main process), a fresh run logs its config
    4. optimiser, schedule, GradScaler; a resumed run puts back every state and the RNG bundle
    5. steps: micro-batches of family.train_batches(epoch, start) -> loss -> backward; every grad_accum of them an
       optimiser step; validation and checkpoints at their cadence; stop at the budget or --run.max_steps
    6. the selected weights (best on valid, or the last): family.finish(model) (e.g. L-BFGS), then
       family.evaluate(model, "valid"/"test"), metrics.json, model.safetensors + model.json, plots; the trackers
       get the final valid/test scalars and every RUN/*.png
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .._device import check_device, resolve_device
from ..checkpoint import UnsafeCheckpointError, load_any_weights
from .config import config_to_dict, resume_safe_keys
from .finetune import init_matching
from .loggers import AbstractLogger, LoggerGroup, check_loggers, open_loggers, scalars
from .rng import capture_rng, restore_rng, seed_everything
from .run_folder import RunFolder
from .schedule import make_scheduler

__all__ = [
    "AbstractFamily",
    "Environment",
    "NonFiniteLossError",
    "fit",
    "setup_environment",
    "reports_failure",
]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the run folder keeps its last good checkpoint."""


@dataclass(frozen=True)
class Environment:
    """Where a run executes: its device and, under torchrun, its process ``rank`` of ``world``."""

    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (nothing with one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def reports_failure() -> bool:
    """Whether this process prints the one line that ends a run stopped by an error or Ctrl-C. With one process,
    always. Under torchrun, once for all processes: the first to stop claims it in torchrun's agent store (so an
    error of one process is said by that process, and the others, stopped by it, say nothing); where that store
    cannot be reached, rank 0 (an error of the config or of the data is the same on every process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        from datetime import timedelta

        import torch.distributed as dist

        try:
            store = dist.TCPStore(
                os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), timeout=timedelta(seconds=5)
            )
            key = f"pdeforge/failure/{os.environ.get('TORCHELASTIC_RUN_ID', '')}"
            return store.add(f"{key}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", 1) == 1
        except (RuntimeError, KeyError, ValueError, OSError):  # the agent is gone (torchrun is stopping)
            pass
    return int(os.environ.get("RANK", "0")) == 0


def setup_environment(run: Any, where: str) -> Environment:
    """The device (checked: a device that is not here is a one-line ValueError naming ``where``; so is a tracker of
    ``run.loggers`` that is not installed), the processes (torchrun's ``WORLD_SIZE``/``RANK``: DDP), the CPU threads
    and the seeds of ``run`` (a :class:`RunSection`)."""
    check_device(run.device, f"{where}: run.device")
    check_loggers(run.loggers, where)
    if run.threads:
        torch.set_num_threads(run.threads)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = resolve_device(run.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    seed_everything(run.seed)
    return Environment(device, rank, world)


class AbstractFamily(abc.ABC):
    """A model family as the run skeleton sees it. Subclasses set ``name`` and ``config_class`` (a dataclass with
    ``run``, ``data`` and ``optim`` sections) and answer the abstract hooks; :func:`fit` calls them in order."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any, env: Environment) -> None:
        self.config = config
        self.env = env

    # -- data and model -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self) -> None:
        """Open the data the run trains and validates on (a dataset root, or a preset made once into the cache)."""

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The untrained model, sized from the data's metadata (on the CPU: the same weights on every device)."""

    @abc.abstractmethod
    def steps_per_epoch(self) -> int:
        """Micro-batches in one epoch of this process."""

    @abc.abstractmethod
    def train_batches(self, epoch: int, start: int) -> Iterator[Any]:
        """The micro-batches of ``epoch`` from the ``start``-th on, in an order fixed by (seed, epoch, rank), on
        ``env.device``. Under DDP each process yields its own share, all of the same size."""

    @abc.abstractmethod
    def loss(self, net: nn.Module, batch: Any) -> torch.Tensor:
        """The scalar training loss of one micro-batch; ``net`` is the model as trained (DDP-wrapped, compiled)."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        """The metrics of ``model`` on ``split`` ("valid" or "test"), in physical units."""

    @abc.abstractmethod
    def envelope(self, model: nn.Module) -> dict[str, Any]:
        """What rebuilds the model besides its config, as plain JSON: ``{"model_spec", "metadata", "stats", ...}``;
        ``metadata`` is ``DatasetMetadata.to_dict()`` of the data the model was built for (None without a dataset)."""

    @classmethod
    @abc.abstractmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> nn.Module:
        """The model of a run folder's ``model.json`` (its weights are loaded afterwards)."""

    # -- optional hooks, with what most families want -------------------------------------------------------
    def restore(self, envelope: Mapping[str, Any]) -> None:
        """Called before :meth:`prepare` when a saved run is evaluated (``pdeforge evaluate``): take from its
        ``model.json`` what training fitted on its own data (the normalisation statistics), so that the model sees
        any dataset as it was trained to see it."""
        return None

    def validate(self, model: nn.Module) -> float | None:
        """The selection metric on the valid split (lower is better), or None: no selection, the last weights."""
        return None

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}]

    def init_from(self, model: nn.Module, source: str) -> str:
        """Start from the weights at ``source`` (``run.init_from``); returns a line saying what was loaded."""
        report = init_matching(model, load_any_weights(source))
        return f"{report['loaded']} tensors loaded, re-initialised {report['reinitialised']}"

    def generators(self) -> dict[str, Any]:
        """The family's own random generators, saved in the RNG bundle."""
        return {}

    def training_state(self) -> dict[str, Any]:
        """The family's own training state besides the model's weights and its generators (a PINN's collocation
        points and loss weights), saved in the checkpoint: tensors and plain containers."""
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Put back what :meth:`training_state` saved (a resumed run, after the weights and the RNG bundle)."""
        return None

    def finish(self, model: nn.Module) -> dict[str, Any]:
        """Training after the optimiser steps, on the selected weights (a PINN's L-BFGS phase); returns what it
        reports, kept in ``metrics.json`` under ``"finish"`` (main process only)."""
        return {}

    def plots(self, model: nn.Module, run: RunFolder, metrics: Mapping[str, Any]) -> None:
        """Write the family's plots into the run folder."""
        return None

    def summary(self, metrics: Mapping[str, Any]) -> str:
        """The line printed at the end of a run."""
        return ""


def _budget(family: AbstractFamily, optim: Any) -> tuple[int, int]:
    per_epoch = family.steps_per_epoch()
    if per_epoch < 1:
        raise ValueError(
            f"{family.name}: the training data give no batch of {optim.batch_size} per process "
            f"({family.env.world} process(es)); use fewer processes, a smaller batch or more data"
        )
    steps_per_epoch = max(1, per_epoch // optim.grad_accum)
    return (optim.steps or optim.epochs * steps_per_epoch), steps_per_epoch


def fit(family_class: type[AbstractFamily], config: Any, *, where: str = "config") -> dict[str, Any]:
    """Train ``family_class`` as ``config`` says; write its run folder; return the final metrics (``{}`` on
    processes other than the main one)."""
    run_cfg = config.run
    # 1. environment ---------------------------------------------------------------------------------------
    env = setup_environment(run_cfg, where)
    family = family_class(config, env)
    folder = RunFolder(run_cfg.resume or run_cfg.run_dir or Path("runs") / family.name, writer=env.is_main)
    # 2. run folder (before any data is made: a refused folder costs nothing) ----------------------------------
    plain = {"family": family.name, **{k: v for k, v in config_to_dict(config).items() if k != "family"}}
    saved = folder.start(
        plain, resume=bool(run_cfg.resume), overwrite=run_cfg.overwrite, safe=resume_safe_keys(type(config))
    )
    # 3. data and model --------------------------------------------------------------------------------------
    family.prepare()
    model = family.build_model()
    if run_cfg.init_from and saved is None:
        try:
            said = family.init_from(model, run_cfg.init_from)
        except (UnsafeCheckpointError, FileNotFoundError, ValueError) as e:
            raise ValueError(f"--run.init_from {run_cfg.init_from}: {e}") from None
        if env.is_main:
            print(f"init from {run_cfg.init_from}: {said}")
    model.to(env.device)
    folder.create()
    # the trackers (main process only), opened once the folder is claimed and closed whatever happens
    start_step = int(saved["counters"]["step"]) if saved is not None else 0
    tracker = open_loggers(run_cfg.loggers, folder.path, family.name, start_step) if env.is_main else LoggerGroup()
    try:
        if saved is None:
            tracker.log_config(plain)
        return _train(family, model, folder, saved, plain, tracker)
    finally:
        tracker.close()


def _train(
    family: AbstractFamily,
    model: nn.Module,
    folder: RunFolder,
    saved: dict | None,
    plain: dict,
    tracker: AbstractLogger,
) -> dict[str, Any]:
    """Steps 4 to 6 of :func:`fit`: optimise ``model``, then evaluate and save the selected weights."""
    from tqdm.auto import tqdm

    run_cfg, optim, env = family.config.run, family.config.optim, family.env
    n_params = sum(p.numel() for p in model.parameters())
    # 4. optimiser, schedule, scaler; resume -----------------------------------------------------------------
    groups = family.parameter_groups(model)
    for g in groups:
        g.setdefault("lr", optim.lr)
        g.setdefault("weight_decay", optim.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    total, steps_per_epoch = _budget(family, optim)
    scheduler = make_scheduler(optimizer, total, optim.warmup, optim.schedule, optim.decay_rate, optim.decay_every)
    use_scaler = optim.amp == "fp16" and env.device.type == "cuda"
    scaler = torch.amp.GradScaler(env.device.type, enabled=use_scaler)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(optim.amp)
    counters = {"step": 0, "epoch": 0, "batch": 0, "best": math.inf, "best_step": -1, "bad_evals": 0, "elapsed": 0.0}
    best_weights: dict[str, torch.Tensor] | None = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"]) if saved.get("scaler") else None
        counters.update(saved["counters"])
        best_weights = saved.get("best_weights") or None
        restore_rng(saved["rng"], family.generators())
        family.load_training_state(saved.get("family_state", {}))
        if env.is_main:
            print(f"resuming {folder.path} at step {counters['step']} (epoch {counters['epoch']})")
    net: nn.Module = model
    if env.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    if env.is_main:
        print(
            f"run {folder.path}: {family.name} ({n_params:,} parameters), {total} optimiser steps "
            f"({steps_per_epoch} per epoch), {env.world} process(es) on {env.device}"
        )

    def checkpoint() -> None:
        paused = time.perf_counter()
        folder.save_checkpoint(
            {
                "family": family.name,
                "config": plain,
                "counters": dict(counters),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if use_scaler else {},
                "rng": capture_rng(family.generators()),
                "family_state": family.training_state(),
                "best_weights": best_weights or {},
            }
        )
        meter.t0 += time.perf_counter() - paused

    def validation() -> bool:
        """Validate (main process), keep the best weights; True when early stopping says stop."""
        nonlocal best_weights
        stop, paused = False, time.perf_counter()
        if env.is_main:
            value = family.validate(model)
            model.train()
            if value is not None:
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"{family.name}: the validation metric is {value} at step "
                        f"{counters['step']}: the model's predictions hold NaN/Inf"
                    )
                folder.record({"step": counters["step"], "epoch": counters["epoch"], "valid": value})
                tracker.log_metrics({"valid/selection": value}, counters["step"])
                if value < counters["best"]:
                    counters.update(best=value, best_step=counters["step"], bad_evals=0)
                    best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    counters["bad_evals"] += 1
                bar.write(
                    f"step {counters['step']:6d}  valid {value:.4g}  (best {counters['best']:.4g} at step "
                    f"{counters['best_step']})"
                )
                stop = bool(optim.patience) and counters["bad_evals"] >= optim.patience
        meter.t0 += time.perf_counter() - paused
        return _agree(stop, env)

    # 5. the steps -------------------------------------------------------------------------------------------
    stop_at = min(total, run_cfg.max_steps or total)
    bar = tqdm(
        total=stop_at,
        initial=counters["step"],
        disable=not (run_cfg.progress and env.is_main),
        unit="step",
        dynamic_ncols=True,
    )
    autocast = (lambda: torch.autocast(env.device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    t0 = time.perf_counter() - counters["elapsed"]
    done = counters["step"] >= stop_at
    model.train()
    per_epoch = family.steps_per_epoch()
    meter = _Throughput(env.world)
    while not done:
        micro, fetching, t_epoch = 0, [0.0], time.perf_counter()
        ended = True  # False when the budget ends the run before the epoch's last micro-batch
        for batch in _timed(family.train_batches(counters["epoch"], counters["batch"]), fetching):
            micro += 1
            counters["batch"] += 1
            meter.samples += _batch_samples(batch)
            last = micro % optim.grad_accum == 0
            sync = contextlib.nullcontext() if last or env.world == 1 else net.no_sync()
            with sync:
                with autocast():
                    loss = family.loss(net, batch)
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"{family.name}: the loss is {loss.item()} at step {counters['step']} (epoch "
                        f"{counters['epoch']}, lr {scheduler.get_last_lr()[0]:.3g}); the run folder keeps its last "
                        f"good checkpoint: {folder.checkpoint_path}"
                    )
                scaler.scale(loss / optim.grad_accum).backward()
            if not last:
                continue
            if optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip))
            else:
                grad_norm = None
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            counters["step"] += 1
            meter.steps += 1
            step = counters["step"]
            bar.update(1)
            if env.is_main and (step % 10 == 0 or step == 1):
                entry = {
                    "step": step,
                    "epoch": counters["epoch"],
                    "loss": loss.item(),
                    "lr": scheduler.get_last_lr()[0],
                }
                if grad_norm is not None:
                    entry["grad_norm"] = grad_norm
                folder.record(entry)  # the log keeps what a resume reproduces exactly: no timings
                values = {**entry, **meter.rates()}
                tracker.log_metrics({f"train/{k}": v for k, v in values.items() if k != "step"}, step)
                bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
            done = step >= stop_at
            if (optim.eval_every and step % optim.eval_every == 0) or done:
                done = validation() or done
            if run_cfg.checkpoint_every and step % run_cfg.checkpoint_every == 0 and not done:
                counters["elapsed"] = time.perf_counter() - t0
                checkpoint()
            if done:
                ended = counters["batch"] >= per_epoch
                break
        if not ended:
            break
        # the epoch ran out (a partial accumulation is dropped); a run resumed from a checkpoint taken at the epoch's
        # last micro-batch finds none left and goes on with the epoch's end, as the uninterrupted run did
        if micro == 0 and counters["batch"] < per_epoch:
            raise ValueError(
                f"{family.name}: epoch {counters['epoch']} gave no batch from batch "
                f"{counters['batch']} on (steps_per_epoch says {per_epoch})"
            )
        optimizer.zero_grad(set_to_none=True)
        epoch_time = time.perf_counter() - t_epoch
        folder.record(
            {
                "step": counters["step"],
                "epoch": counters["epoch"],
                "epoch_time": round(epoch_time, 4),
                "data_time_fraction": round(fetching[0] / max(epoch_time, 1e-9), 4),
            }
        )
        counters["epoch"] += 1
        counters["batch"] = 0
        if not done and not optim.eval_every:
            done = validation() or counters["step"] >= stop_at
        if not done and not run_cfg.checkpoint_every:
            counters["elapsed"] = time.perf_counter() - t0
            checkpoint()
    bar.close()
    counters["elapsed"] = time.perf_counter() - t0
    checkpoint()

    # 6. the selected weights: evaluation, metrics, model, plots (main process) --------------------------------
    metrics: dict[str, Any] = {}
    if env.is_main:
        if best_weights is not None:
            model.load_state_dict(best_weights)
        finished = family.finish(model)
        model.eval()
        metrics = {
            "valid": family.evaluate(model, "valid"),
            "test": family.evaluate(model, "test"),
            "steps": counters["step"],
            "best_step": counters["best_step"],
            "epochs": counters["epoch"],
            "n_parameters": n_params,
            "train_seconds": round(counters["elapsed"], 2),
            **({"finish": finished} if finished else {}),
        }
        folder.flush_log()
        folder.save_model(model.state_dict(), {"family": family.name, "config": plain, **family.envelope(model)})
        folder.write_metrics(metrics)
        family.plots(model, folder, metrics)
        tracker.log_metrics(scalars({"valid": metrics["valid"], "test": metrics["test"]}), counters["step"])
        for png in sorted(folder.path.glob("*.png")):
            tracker.log_image(png.stem, png, counters["step"])
        line = family.summary(metrics)
        print((line + "\n" if line else "") + f"run folder: {folder.path}")
    if env.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return metrics


class _Throughput:
    """Optimiser steps and samples per second of training between two log records, over all ``world`` processes.
    Validation and checkpoints are left out: they move ``t0`` on by the time they took."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.t0, self.steps, self.samples = time.perf_counter(), 0, 0

    def rates(self) -> dict[str, float]:
        """``{"steps_per_s", "samples_per_s"}`` since the last call (samples only when the batches say them)."""
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        out = {"steps_per_s": self.steps / seconds}
        if self.samples:
            # every process trains on a share of the same size (train_batches' contract)
            out["samples_per_s"] = self.samples * self.world / seconds
        self.t0, self.steps, self.samples = time.perf_counter(), 0, 0
        return out


def _batch_samples(batch: Any) -> int:
    """The samples in a micro-batch: the leading size of its first tensor (the batch itself, or the first tensor of
    a tuple, list or mapping); 0 when there is none (a family with another batch logs steps/s only)."""
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (tuple, list)) else (batch,)
    for item in items:
        if isinstance(item, torch.Tensor) and item.ndim > 0:
            return int(item.shape[0])
    return 0


def _timed(batches: Iterator[Any], clock: list[float]) -> Iterator[Any]:
    """``batches``, adding the seconds spent waiting for each to ``clock[0]`` (the data-stall time of an epoch)."""
    batches = iter(batches)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        clock[0] += time.perf_counter() - t0
        yield batch


def _agree(flag: bool, env: Environment) -> bool:
    """The main process's ``flag``, the same on every process."""
    if env.world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=env.device)
    dist.broadcast(t, 0)
    return bool(t.item())
