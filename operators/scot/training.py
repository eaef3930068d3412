"""scOT pretraining and fine-tuning on all pairs of snapshots (Poseidon's all2all training), as a `train.py` family.

    python train.py configs/scot_pretrain.yaml                                   # mixture of two NS families
    python train.py configs/scot_finetune.yaml --init_from runs/scot_pretrain    # new physics, 3 lr groups
    python train.py configs/scot_finetune.yaml --init_from "" --name scot_scratch  # the same from scratch
    python train.py configs/scot_pretrain.yaml --resume true                     # continue from its checkpoint

The model learns ``S(u(t_i), (t_j - t_i) / span) = u(t_j)`` on every pair ``t_i <= t_j`` of the selected snapshots
(`pdeforge.datasets.AllPairsDataset`; ``pairing: next`` trains on consecutive snapshots only, for comparison) with
the relative L1 loss per channel group (`scot_loss`, masked where a dataset of a mixture lacks a channel). The test
metric is Poseidon's: the median over test trajectories of the relative L1 error (%) of u(t_first) -> u(t_last).

Fine-tuning (``init_from``: a scOT run folder, or any Hugging Face scOT folder) loads every tensor whose shape
is unchanged and re-initialises exactly those whose shape changes with the channel count (embedding and recovery),
and trains three parameter groups (`finetune_parameter_groups`): backbone at ``lr``, embedding + recovery at
``lr_embedding_recovery``, the time-conditioning norms at ``lr_time_embedding``. Poseidon uses 5e-5 / 5e-4 / 5e-4
for its 21M-630M parameter models; the CPU-sized model here (363k parameters, ~1000 steps) keeps the 1 : 10 : 10
ratio at 2e-4 / 2e-3 / 2e-3 (configs/scot_finetune.yaml; pretrained at 2e-3). Pretraining and training from
scratch use one ``lr``.

The run folder is a Hugging Face scOT folder (``config.json`` + ``model.safetensors``, best on valid, written by
`save_pretrained`) plus ``config.yaml`` (the spec), ``model.json`` (channel layout, data, normalisation statistics,
snapshot selection), ``metrics.json``, ``train_log.jsonl`` and ``loss.png``. Every ``checkpoint_every`` steps
``checkpoint/state.pt`` holds the training state (weights, optimiser, schedule, step, best so far, log, RNG and
shuffling position); ``resume: true`` continues from it, and at the same ``threads`` ends with the bytes of an
uninterrupted run.

``device`` (``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``) is where the training, the validation and the test run; the
data are read and shuffled on the CPU, the model is initialised there (the same weights on every device), and every
file written holds CPU tensors, so a run folder or checkpoint made on a GPU loads on a CPU-only machine (and a
checkpoint resumes on any device).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from ..._device import check_device, resolve_device
from ..._spec import check_fields
from ...checkpoint import atomic_write_text, resume_state, save_state
from ...datasets import AllPairsDataset, AllPairsMixture, channel_union
from ._config import ScOTConfig
from ._io import finetune_parameter_groups, read_state_dict
from ._model import ScOT
from ._train_data import (
    channel_groups,
    final_time_error,
    masked_scot_loss,
    open_split,
    resolve_data,
    selection,
)

__all__ = ["ScOTRunConfig", "run"]


@dataclass
class ScOTRunConfig:
    # -- data -----------------------------------------------------------------------------------------------
    data: list = field(default_factory=lambda: ["ns_lognormal", "ns_grf"])  # dataset roots or named sources (a mixture)
    trajectories: int = 40  # trajectories generated for a named source (80/10/10 split)
    resolution: int = 32  # grid of a generated source
    data_seed: int = 0  # seed of a generated source
    max_train_trajectories: int = 0  # N: use the first N training trajectories of each dataset (0: all)
    stride: int = 2  # select stored snapshots 0, stride, 2 stride, ...
    n_snapshots: int = 6  # ... the first n_snapshots of them (0: up to the last stored one)
    pairing: str = "all"  # "all" (t_i <= t_j, Poseidon) | "next" (consecutive) | "from_first" (u0 -> u(t_j))
    normalization: str = "zscore"  # per dataset, train statistics of its root ("" : none)
    channels: list = field(default_factory=list)  # channel layout (default: union of the datasets' channels)
    # -- model ----------------------------------------------------------------------------------------------
    model: dict = field(default_factory=dict)  # ScOTConfig.tiny overrides; channels come from the data
    init_from: str = ""  # fine-tune: a scOT run folder / Hugging Face folder ("" : from scratch)
    # -- optimisation ---------------------------------------------------------------------------------------
    steps: int = 1000  # optimiser steps
    batch_size: int = 16
    lr: float = 1e-3  # every parameter; with init_from: the backbone
    lr_embedding_recovery: float = 0.0  # with init_from: embedding + recovery (0: lr)
    lr_time_embedding: float = 0.0  # with init_from: time-conditioning norms (0: lr)
    weight_decay: float = 1e-6
    warmup: float = 0.05  # fraction of steps with linear warm-up, then cosine decay to 0
    grad_clip: float = 5.0  # max gradient norm (0: off)
    eval_every: int = 200  # steps between validation passes (best-by-valid weights are kept)
    seed: int = 0
    threads: int = 0  # torch.set_num_threads (0: leave)
    progress: bool = False  # print a line per validation
    checkpoint_every: int = 100  # steps between training states in run_dir/checkpoint/state.pt (0: none)
    resume: bool = False  # continue run_dir from its checkpoint (same bytes as an uninterrupted run at equal threads)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (cuda if available): training, validation and test
    # -- run ------------------------------------------------------------------------------------------------
    family: str = "scot"
    name: str = "scot"
    run_dir: str = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ScOTRunConfig:
        """The config of a spec; an unknown option, a value of the wrong type, range or choice, or a device that is not
        here is a ValueError naming it (before any data is generated or read)."""
        spec = dict(spec)
        if isinstance(spec.get("data"), str):
            spec["data"] = [spec["data"]]
        at_least = {"steps": 1, "batch_size": 1, "stride": 1, "trajectories": 3, "resolution": 2, "eval_every": 1,
                    "n_snapshots": 0, "max_train_trajectories": 0, "checkpoint_every": 0, "threads": 0,
                    "weight_decay": 0, "grad_clip": 0, "warmup": 0, "lr_embedding_recovery": 0, "lr_time_embedding": 0}
        kept = check_fields(cls, spec, "scot", at_least=at_least, positive=("lr",),
                            choices={"pairing": ("all", "next", "from_first"), "normalization": ("zscore", "rms", "")})
        check_device(kept.get("device", cls.device), "scot")
        return cls(**kept)


def build_model(cfg: ScOTRunConfig, n_channels: int, groups: list[int]) -> tuple[ScOT, list[str]]:
    """A fresh tiny scOT for ``n_channels`` fields (loss groups ``groups``), or the ``init_from`` checkpoint adapted
    to them; returns the model and the names of the re-initialised tensors (those whose shapes changed)."""
    groups = tuple(groups)
    if not cfg.init_from:
        config = ScOTConfig.tiny(**{"num_channels": n_channels, "num_out_channels": n_channels, **cfg.model,
                                    "channel_slice_list_normalized_loss": groups})
        return ScOT(config), []
    folder = Path(cfg.init_from)
    stored = read_state_dict(folder)
    model = ScOT.from_pretrained(folder, num_channels=n_channels, num_out_channels=n_channels,
                                 channel_slice_list_normalized_loss=groups, **cfg.model)
    reinit = [k for k, v in model.state_dict().items() if tuple(stored[k].shape) != tuple(v.shape)]
    return model, reinit


def _schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# options that may change on resume: they do not change what is computed, or only name the run folder (a checkpoint
# loads on any device; an uninterrupted run's bytes need the same device and threads)
_RESUME_FREE = ("resume", "checkpoint_every", "progress", "threads", "run_dir", "name", "device")


def run(spec: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train scOT as ``spec`` says (see `ScOTRunConfig`) and write the run folder ``run_dir``; returns the metrics."""
    cfg = ScOTRunConfig.from_spec(spec)
    device = resolve_device(cfg.device)
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint" / "state.pt"
    state = (resume_state(ckpt, dataclasses.asdict(cfg), free=_RESUME_FREE, every=cfg.checkpoint_every)
             if cfg.resume else None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()

    # 1. data: one all-pairs view per dataset, padded to the shared channel layout ------------------------------
    roots = [resolve_data(str(d), cfg.trajectories, cfg.resolution, cfg.data_seed) for d in cfg.data]
    train = [open_split(r, "train", cfg.normalization, cfg.max_train_trajectories) for r in roots]
    valid = [open_split(r, "valid", cfg.normalization) for r in roots]
    channels = tuple(cfg.channels) or channel_union([d.metadata for d in train])
    groups = channel_groups(channels)
    snapshots = [selection(d.n_steps, cfg.stride, cfg.n_snapshots) for d in train]
    mixture = AllPairsMixture([AllPairsDataset(d, s, pairing=cfg.pairing, channels=channels)
                               for d, s in zip(train, snapshots)])
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(mixture, batch_size=cfg.batch_size, shuffle=True, drop_last=len(mixture) >= cfg.batch_size,
                        generator=gen)

    # 2. model: fresh, or the pretrained checkpoint with the channel-dependent tensors re-initialised -------------
    model, reinit = build_model(cfg, len(channels), groups)
    model.to(device)  # initialised on the CPU: the same weights on every device
    n_params = sum(p.numel() for p in model.parameters())

    # 3. optimiser: one group from scratch, Poseidon's three groups when fine-tuning -----------------------------
    if cfg.init_from:
        param_groups = finetune_parameter_groups(model, cfg.lr, cfg.lr_embedding_recovery or cfg.lr,
                                                 cfg.lr_time_embedding or cfg.lr)
    else:
        param_groups = [{"name": "all", "params": list(model.parameters()), "lr": cfg.lr}]
    optimizer = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    warm = int(cfg.warmup * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, cfg.steps, warm))

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    print(f"scot run {run_dir}: {n_params:,} parameters, channels {list(channels)}, {len(mixture)} train pairs "
          f"({cfg.pairing}) from {sum(len(d.trajectories) for d in train)} trajectories of {len(roots)} dataset(s)"
          + (f"; init from {cfg.init_from}, re-initialised {reinit}" if cfg.init_from else ""))

    def validate() -> float:
        errs = [final_time_error(model, d, s, channels, cfg.pairing) for d, s in zip(valid, snapshots)]
        model.train()
        return float(np.mean(errs))

    # 4. the loop: steps over reshuffled epochs; validation keeps the best weights; a resumed run continues -----
    log: list[dict] = []
    best, best_step, step = float("inf"), 0, 0
    skip = 0  # batches of the current epoch trained on before the checkpoint
    if state is not None:
        if state["best_step"]:  # model.safetensors may be from after the checkpoint: put back the best up to it
            model.load_state_dict(state["best_model"])
            model.save_pretrained(run_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # casts the moments to the parameters' device
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])  # dropout / drop path
        if device.type == "cuda" and "cuda_rng" in state:  # ... on a GPU (a state from a CPU run has none)
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        gen.set_state(state["epoch_generator"])
        step, skip, best, best_step = state["step"], state["epoch_batches"], state["best"], state["best_step"]
        log = [dict(r) for r in state["log"]]
        t_start = time.perf_counter() - state["elapsed"]
        print(f"resumed at step {step} from {ckpt}")
    model.train()
    while step < cfg.steps:
        epoch_generator = gen.get_state()  # the shuffling of this epoch, replayed on resume
        for k, batch in enumerate(loader):
            if k < skip:  # a resumed epoch: the same permutation, past the batches already trained on
                continue
            batch = {key: batch[key].to(device) for key in ("input_fields", "lead_time", "output_fields", "channel_mask")}
            pred = model(batch["input_fields"], batch["lead_time"])
            target = batch["output_fields"]
            loss = masked_scot_loss(pred, target, batch["channel_mask"], groups)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; lower lr ({cfg.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 10 == 0 or step == 1:
                log.append({"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
            if step % cfg.eval_every == 0 or step == cfg.steps:
                err = validate()
                log.append({"step": step, "valid_median_rel_l1": err})
                if cfg.progress:
                    print(f"step {step:6d}  loss {loss.item():.4g}  valid median rel L1 {err:.3f}%")
                if err < best:
                    best, best_step = err, step
                    model.save_pretrained(run_dir)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                cuda_rng = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
                save_state(ckpt, {
                    "step": step, "epoch_generator": epoch_generator, "epoch_batches": k + 1,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), **cuda_rng, "log": log,
                    "best": best, "best_step": best_step, "best_model": read_state_dict(run_dir) if best_step else {},
                    "elapsed": time.perf_counter() - t_start, "run_config": dataclasses.asdict(cfg)})
            if step >= cfg.steps:
                break
        skip = 0

    # 5. final evaluation of the best weights: test, once -------------------------------------------------------
    model = ScOT.from_pretrained(run_dir).to(device)
    test = [open_split(r, "test", cfg.normalization) for r in roots]
    per_dataset = {d.metadata.dataset_name: final_time_error(model, d, s, channels, cfg.pairing)
                   for d, s in zip(test, snapshots)}
    results = {
        "test_median_rel_l1": float(np.mean(list(per_dataset.values()))),
        "test_median_rel_l1_per_dataset": per_dataset,
        "valid_median_rel_l1": best, "best_step": best_step, "steps": step, "n_parameters": n_params,
        "train_pairs": len(mixture), "train_trajectories": sum(len(d.trajectories) for d in train),
        "reinitialised": reinit, "seconds": time.perf_counter() - t_start,
    }
    atomic_write_text(run_dir / "model.json", json.dumps({
        "channels": list(channels), "channel_groups": groups, "data": [str(r) for r in roots],
        "snapshots": snapshots, "pairing": cfg.pairing, "normalization": cfg.normalization,
        "stats": {str(r): yaml.safe_load((r / "stats.yaml").read_text()) for r in roots},
        "n_parameters": n_params}, indent=1))
    atomic_write_text(run_dir / "metrics.json", json.dumps(results, indent=1))
    atomic_write_text(run_dir / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    _plot(log, run_dir / "loss.png")
    print(f"test median rel L1 {results['test_median_rel_l1']:.3f}% (best valid {best:.3f}% at step {best_step}); "
          f"run folder: {run_dir}")
    return results


def _plot(log: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    train = [(r["step"], r["loss"]) for r in log if "loss" in r]
    valid = [(r["step"], r["valid_median_rel_l1"] / 100) for r in log if "valid_median_rel_l1" in r]
    if train:
        ax.plot(*zip(*train), lw=0.8, label="train loss (relative L1)")
    if valid:
        ax.plot(*zip(*valid), "o-", label="valid median relative L1")
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
