"""Temporal stencil modelling (TSM) and learned interpolation (LI) inside the finite-volume Navier-Stokes solver.

Papers: Kochkov et al. 2021 (PNAS, "Machine learning-accelerated computational fluid dynamics": LI) and
Sun, Yang, Yoo 2023 (ICML, "A neural PDE solver with temporal stencil modeling": TSM). A periodic CNN predicts,
per cell, 8 constrained 4x4 stencils (advected and advecting velocity at the four flux locations, 120 logits at
accuracy order 1, see :mod:`._tsm_stencils`) that replace the advection interpolation of
:class:`pdeforge.solvers.fv.StaggeredNavierStokes2D`; projection, viscosity and forcing are unchanged.
LI reads the current velocity at each Runge-Kutta stage; TSM reads HiPPO-LagT features of each cell's last
``history`` frames (:mod:`._tsm_hippo`) and emits logits for ``bundle`` solver steps per call.

Training (as the papers): encode the history, unroll ``unroll`` solver steps, mean squared velocity error
through the solver; Adam (beta2 0.98), weight decay 1e-4, gradient clip 0.25, lr 1e-3 cosine with 5% warm-up.
Metric: Pearson correlation of the vorticity with the reference per step; high-correlation duration = time until
it drops below 0.8 (:func:`pdeforge.metrics.high_correlation_duration`), per test trajectory.

CPU-scale protocol (defaults of :class:`TSMRunConfig`; the papers use 2048^2 DNS to 64^2, Re 1000, CNN 6 x 256, 32
frames and ~10^5 steps on accelerators; TSM's reproducing script sets ``hippo_hidden_size = 256``, LagT step 1.0, a
running state: N = 256 over 32 frames, more coefficients than frames): Kolmogorov flow (``sin(4 y)`` forcing, drag
0.1, Re 500) by DNS at 256^2 (8x the solver's grid; batches of 4 over 2 processes, ~30 min on a 2-core CPU) after 20
time units of warm-up, stored face-averaged at 32^2 every 0.02 (8 time units per trajectory); the solver step is
``stride`` = 2 frames, dt = 0.04 (max(|u| + |v|) ~ 5-6: CFL ~1 on the sum, stable with SSP-RK3 and the limiter); 16
train / 16 test trajectories; CNN 4 layers x 32 channels (last layer zero-initialised, so an untrained model is
exactly the coarse van Leer solver); history 16 frames, HiPPO N = 32; bundle 4; unroll 8; batch 4; 600 Adam steps
here, 3000 in ``benchmarks/tsm.py`` (README: results).

Usage::

    python train.py configs/tsm_kolmogorov.yaml            # or configs/li_kolmogorov.yaml
    python train.py configs/tsm_kolmogorov.yaml --steps 50 --encoder frames

``device`` (``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``) is where the DNS, the training and the evaluation run;
the data cache and the run folder are the same files on every device (written from CPU tensors), and the windows
drawn in training come from a CPU generator, so they are the same on every device.

``run(spec, run_dir)`` writes ``config.yaml``, ``metrics.json``, ``model.safetensors`` + ``model.json``
(:func:`load_model` rebuilds it), ``train_log.jsonl`` and plots (correlation vs time, vorticity snapshots).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._device import check_device, compile_problem, resolve_device, synchronize
from .._spec import check_fields
from ..checkpoint import atomic_write_text, load_state, load_weights, resume_state, save_state, save_weights
from ..metrics import correlation, high_correlation_duration
from ..solvers import fv
from ._tsm_hippo import FrameStackEncoder, HippoEncoder, bilinear, lagt_kernel, lagt_recurrence, lagt_transition
from ._tsm_models import ENCODERS, LI_CALLS, MEMORIES, VARIANTS, CNNConfig, TemporalStencilModel, TSMConfig, periodic_cnn
from ._tsm_stencils import (
    PolynomialStencil,
    StencilInterpolation,
    faces_from_logits,
    logits_per_cell,
    stencil_weights,
    tvd_limit,
)

__all__ = [
    "TSMRunConfig", "TSMConfig", "CNNConfig", "TemporalStencilModel", "PolynomialStencil", "StencilInterpolation",
    "faces_from_logits", "stencil_weights", "tvd_limit", "logits_per_cell", "HippoEncoder", "FrameStackEncoder",
    "lagt_transition", "bilinear", "lagt_kernel", "lagt_recurrence", "periodic_cnn", "load_data", "vorticity_rollout",
    "evaluate_model", "train_model", "build_model", "load_model", "run", "data_fingerprint", "DATA_FIELDS",
    "data_cache_path",
]


@dataclass(frozen=True)
class TSMRunConfig:
    """Everything ``run`` reads from the flat spec (``--key value`` overrides any of them)."""

    variant: str = "tsm"          # tsm | li | coarse
    encoder: str = "hippo"        # TSM input: hippo | frames (ablation)
    history: int = 16             # frames encoded (TSM)
    hippo_order: int = 32         # LagT coefficients per velocity component
    bundle: int = 4               # solver steps per CNN call (TSM)
    li_calls: str = "step"        # LI's CNN once per solver step (the papers) | "stage": at each SSP-RK3 stage
    memory: str = "window"        # TSM's HiPPO features: of the last `history` frames | "running": a state kept
                                  # over the whole rollout (TSM's code)
    order: int = 1                # stencil accuracy order
    layers: int = 4               # CNN depth
    channels: int = 32            # CNN width
    # data
    data_cache: str = "auto"      # the DNS cache: a path, or "auto": runs/tsm_data/, named by the data parameters
    dns_resolution: int = 256
    dns_batch: int = 4            # DNS trajectories solved together (each batch has its own CFL steps); 0: all
    data_workers: int = 2         # processes sharing the DNS, one thread each (same numbers as one process, one thread)
    reynolds: float = 500.0
    warmup_time: float = 20.0
    frame_interval: float = 0.02
    n_frames: int = 400
    resolution: int = 32
    n_train: int = 16
    n_test: int = 16
    data_seed: int = 0
    stride: int = 2               # solver step = stride * frame_interval
    # training
    steps: int = 600
    batch_size: int = 4
    unroll: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta2: float = 0.98
    clip: float = 0.25
    warmup_frac: float = 0.05
    seed: int = 0
    threads: int = 1
    log_every: int = 10
    checkpoint_every: int = 100   # steps between training states in run_dir/checkpoint/state.pt (0: none)
    resume: bool = False          # continue run_dir from its checkpoint; on the CPU at the same `threads`, the result
                                  # equals an uninterrupted run
    progress: bool = True         # a progress bar over the training steps
    threshold: float = 0.8        # high-correlation threshold
    device: str = "cpu"           # cpu | cuda | cuda:N | auto (cuda if available): DNS, training and evaluation
    compile: bool = False         # torch.compile the solver step for training (~1 min of compiling first): on a
                                  # CPU a step 1.6-1.7x faster at 16^2, 1.2-1.3x at 32^2; eager's numbers to rounding

    def model_config(self) -> TSMConfig:
        return TSMConfig(self.variant, self.encoder, self.history, self.hippo_order, self.bundle, self.order,
                         CNNConfig(self.layers, self.channels), self.li_calls, self.memory)

    @property
    def dt(self) -> float:
        return self.stride * self.frame_interval

    @property
    def torch_device(self) -> torch.device:
        """``device`` as a torch device (``auto``: cuda if available, else cpu)."""
        return resolve_device(self.device)

    @classmethod
    def from_spec(cls, spec: dict) -> "TSMRunConfig":
        """The config of a flat spec; an unknown key or a value of the wrong type, range or choice is a ValueError
        naming it (before the DNS or a training starts)."""
        at_least = {k: 1 for k in ("history", "hippo_order", "bundle", "layers", "channels", "dns_resolution",
                                   "n_frames", "resolution", "n_train", "n_test", "stride", "steps", "batch_size",
                                   "unroll", "threads", "log_every", "data_workers")}
        at_least.update(checkpoint_every=0, dns_batch=0, warmup_time=0, weight_decay=0, clip=0, warmup_frac=0)
        choices = {"variant": VARIANTS, "encoder": ENCODERS, "li_calls": LI_CALLS, "memory": MEMORIES}
        kept = check_fields(cls, spec, "tsm spec", ignored=("family", "name", "run_dir"), at_least=at_least,
                            positive=("lr", "reynolds", "frame_interval", "beta2", "threshold"), choices=choices)
        check_device(kept.get("device", cls.device), "tsm spec")
        problem = compile_problem(resolve_device(kept.get("device", cls.device))) if kept.get("compile") else None
        if problem:
            raise ValueError(f"tsm spec: compile true: {problem}; install it or set compile: false")
        return cls(**kept)


def _flow(cfg: TSMRunConfig) -> fv.FlowParameters:
    preset = fv.KolmogorovFVPreset()
    return fv.FlowParameters(viscosity=1.0 / cfg.reynolds, drag=preset.drag, forcing=preset.forcing)


# the parameters a data cache is made with; not `device`: a cache made on a GPU serves a CPU run and vice versa
DATA_FIELDS = ("dns_resolution", "dns_batch", "reynolds", "warmup_time", "frame_interval", "n_frames", "resolution",
               "data_seed")


_BEFORE_FIELD = {"dns_batch": 0}  # data fields added later, with the value that caches written before them had

DATA_DIR = Path("runs/tsm_data")  # where data_cache "auto" keeps the caches (relative to the working directory)
_OLD_DEFAULT = DATA_DIR / "kolmogorov_fv_32_dns256.pt"  # the default path before "auto", whatever it holds


def _auto_name(cfg: TSMRunConfig, resolution: int) -> Path:
    """``kolmogorov_fv_{resolution}_dns{dns_resolution}_{hash}.pt``: the hash covers the other data parameters."""
    rest = {k: getattr(cfg, k) for k in DATA_FIELDS if k not in ("resolution", "dns_resolution")}
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:8]
    return DATA_DIR / f"kolmogorov_fv_{resolution}_dns{cfg.dns_resolution}_{digest}.pt"


def data_cache_path(cfg: TSMRunConfig) -> Path:
    """The file :func:`load_data` reads, or writes if it is absent: ``data_cache`` as given, or for ``"auto"`` a
    name under ``runs/tsm_data/`` made of the data parameters, so that other parameters never meet a cache made
    with different ones. With ``"auto"`` an existing cache at a finer resolution that ``resolution`` divides (same
    other parameters) is used before a new DNS is made (it is face-averaged: the same data), and so is the file
    the default path used to be (``runs/tsm_data/kolmogorov_fv_32_dns256.pt``, which held whichever resolution
    made it first) if its recorded parameters fit."""
    if cfg.data_cache != "auto":
        return Path(cfg.data_cache)
    finer = [r for r in range(cfg.resolution, cfg.dns_resolution + 1, cfg.resolution) if cfg.dns_resolution % r == 0]
    for r in finer:
        if _auto_name(cfg, r).exists():
            return _auto_name(cfg, r)
    if _OLD_DEFAULT.exists():
        cached = load_state(_OLD_DEFAULT)
        made, res = cached.get("params") or {}, cached["velocity"].shape[-1]
        want = {k: getattr(cfg, k) for k in DATA_FIELDS if k != "resolution"}
        if res in finer and {**_BEFORE_FIELD, **made, "resolution": None} == {**want, "resolution": None}:
            return _OLD_DEFAULT
    return _auto_name(cfg, cfg.resolution)


def load_data(cfg: TSMRunConfig) -> tuple[Tensor, Tensor]:
    """``(train, test)`` velocities ``(n, T, 2, R, R)`` float32 at the solver step (every ``stride``-th frame), on
    the CPU (:func:`run` moves them to ``device`` once).

    Generated once by :func:`pdeforge.solvers.fv.kolmogorov_fv_trajectories` (DNS at ``dns_resolution``,
    face-averaged to ``resolution``; ``dns_batch`` trajectories at a time, spread over ``data_workers``
    processes on the CPU, one batch after the other on a GPU ``device``) and cached at :func:`data_cache_path` (a
    plain tensor file written atomically, loaded weights-only) with the parameters that made it; a cache made with other
    parameters is refused. The cache does not depend on the device: one made on a GPU serves a CPU run and vice
    versa (the DNS of the two agree to rounding, not bitwise). A cache at a finer ``resolution`` that ``resolution``
    divides is coarsened by face averaging, which composes exactly (DNS -> 32^2 -> 16^2 is DNS -> 16^2): one DNS
    serves several downsampling ratios.
    """
    path = data_cache_path(cfg)
    want = {k: getattr(cfg, k) for k in DATA_FIELDS}
    if path.exists():
        cached = load_state(path)
        traj = cached["velocity"]
        made = cached.get("params")
        if made is None:  # written before the parameters were stored: only the frame interval can be checked
            made = {"frame_interval": cached.get("frame_interval")}
        else:
            made = {**_BEFORE_FIELD, **made}
        factor = traj.shape[-1] // cfg.resolution if traj.shape[-1] % cfg.resolution == 0 else 1
        if factor > 1:  # a finer cache: coarsened once the other parameters are checked
            made = {**made, "resolution": cfg.resolution}
        wrong = {k: (v, want[k]) for k, v in made.items() if k in want and v != want[k]}
        if wrong:
            raise ValueError(f"{path} was generated with other parameters ("
                             + ", ".join(f"{k} {v} there, {w} asked" for k, (v, w) in wrong.items())
                             + "); delete it or point data_cache elsewhere")
        if factor > 1:
            traj = fv.downsample_staggered(traj.flatten(0, 1), factor).unflatten(0, traj.shape[:2])
    else:
        traj = _generate(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_state(path, {"velocity": traj, "frame_interval": cfg.frame_interval, "params": want})
    if traj.shape[0] < cfg.n_train + cfg.n_test or traj.shape[-1] != cfg.resolution:
        raise ValueError(f"{path}: {tuple(traj.shape)} does not hold {cfg.n_train}+{cfg.n_test} trajectories at "
                         f"{cfg.resolution}^2; delete it or point data_cache elsewhere")
    traj = traj[:, ::cfg.stride].float()
    return traj[:cfg.n_train], traj[cfg.n_train:cfg.n_train + cfg.n_test]


def _dns(cfg: TSMRunConfig, part: range | None = None) -> Tensor:
    """The DNS behind :func:`load_data`, all trajectories or the batches in ``part``."""
    preset = fv.KolmogorovFVPreset(dns_resolution=cfg.dns_resolution, reynolds=cfg.reynolds,
                                   warmup_time=cfg.warmup_time, frame_interval=cfg.frame_interval,
                                   n_frames=cfg.n_frames)
    # the initial fields are drawn on the CPU generator and moved: the same on every device
    return fv.kolmogorov_fv_trajectories(cfg.n_train + cfg.n_test, cfg.resolution, preset,
                                         torch.Generator().manual_seed(cfg.data_seed), torch.float32,
                                         cfg.torch_device, batch_size=cfg.dns_batch or None, trajectories=part).cpu()


def _dns_worker(cfg: TSMRunConfig, part: range) -> Tensor:
    torch.set_num_threads(1)
    return _dns(cfg, part)


def _generate(cfg: TSMRunConfig) -> Tensor:
    """The DNS, batch by batch in this process (always so on a GPU) or over ``data_workers`` processes at one
    thread each (the bytes of one process at one thread), with a progress bar."""
    n = cfg.n_train + cfg.n_test
    batch = cfg.dns_batch or n
    parts = [range(a, min(a + batch, n)) for a in range(0, n, batch)]
    done = {}
    bar = tqdm(total=n, unit="traj", desc=f"DNS {cfg.dns_resolution}^2")
    if cfg.data_workers <= 1 or len(parts) == 1 or cfg.torch_device.type != "cpu":
        for part in parts:
            done[part.start] = _dns(cfg, part)
            bar.update(len(part))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(cfg.data_workers, len(parts)), mp_context=context) as pool:
            futures = {pool.submit(_dns_worker, cfg, part): part for part in parts}
            for future in as_completed(futures):
                done[futures[future].start] = future.result()
                bar.update(len(futures[future]))
    bar.close()
    return torch.cat([done[a] for a in sorted(done)])


def data_fingerprint(*tensors: Tensor) -> str:
    """A short SHA-256 of the tensors' shapes and bytes: which data a run was trained and scored on."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cosine(step: int, total: int, warmup_frac: float) -> float:
    warm = max(1, int(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_model(model: TemporalStencilModel, train: Tensor, cfg: TSMRunConfig, log: list | None = None,
                state: dict | None = None, checkpoint: Callable[[dict], None] | None = None) -> list:
    """Unrolled training through the solver; returns the log (one dict per ``log_every`` steps).

    ``checkpoint(state)`` is called every ``cfg.checkpoint_every`` steps with the training state (step, model,
    optimizer, schedule, window sampler, log, elapsed seconds); passing such a ``state`` back continues from it
    (its tensors may be on any device: they are copied into the model's and the optimizer's).

    The model and ``train`` go to ``cfg.device`` (nothing moves when :func:`run` has put them there); the windows
    are drawn on a CPU generator, the same on every device, and index the data where it is.
    """
    log = [] if log is None else log
    device = cfg.torch_device
    model.to(device)
    train = train.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return log
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine(s, cfg.steps, cfg.warmup_frac))
    gen = torch.Generator().manual_seed(cfg.seed)
    h, u = cfg.history, cfg.unroll
    n, t_len = train.shape[:2]
    if t_len < h + u:
        raise ValueError(f"trajectories of {t_len} solver steps are shorter than history + unroll = {h + u}")
    first, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])  # casts the moments to the parameters' device
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        first, elapsed = int(state["step"]), float(state["elapsed"])
        log[:] = [dict(r) for r in state["log"]]
    var = train.var().item()
    step_fn = model.compiled_step(train.dtype, device) if cfg.compile else None
    t0 = time.time() - elapsed
    bar = tqdm(range(first, cfg.steps), initial=first, total=cfg.steps, desc=f"train {model.config.variant}",
               unit="step", disable=not cfg.progress, mininterval=2.0)
    for step in bar:
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        start = torch.randint(t_len - h - u + 1, (cfg.batch_size,), generator=gen)
        win = torch.stack([train[i, s:s + h + u] for i, s in zip(idx.tolist(), start.tolist())])
        pred = model.rollout(win[:, :h], u, step=step_fn)
        loss = ((pred - win[:, h:]) ** 2).mean() / var
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{model.config.variant}: step {step}: the unrolled loss is {loss.item()} "
                                     f"(lr {sched.get_last_lr()[0]:.3g}, unroll {u}): lower lr or unroll")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": loss.item(), "grad_norm": float(gnorm), "lr": sched.get_last_lr()[0],
                        "time": round(time.time() - t0, 2)})
            bar.set_postfix(loss=f"{loss.item():.3g}", refresh=False)
        done = step + 1
        if checkpoint is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            checkpoint({"step": done, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "generator": gen.get_state(), "log": log,
                        "elapsed": time.time() - t0})
    bar.close()
    return log


def vorticity_rollout(velocity: Tensor, grid: fv.StaggeredGrid) -> Tensor:
    """``(B, T, 2, N, N) -> (B, T, 1, N, N)`` vorticity at the cell corners."""
    b, t = velocity.shape[:2]
    return fv.vorticity(velocity.flatten(0, 1), grid).unflatten(0, (b, t))


@torch.no_grad()
def evaluate_model(model: TemporalStencilModel, test: Tensor, history: int, threshold: float = 0.8) -> dict:
    """Roll out from frame ``history - 1`` of each test trajectory to its end and compare vorticities.

    ``model`` and ``test`` on the same device. Returns, on the CPU, ``{"duration": (B,), "corr": (T,) mean over
    trajectories, "corr_all": (B, T), "pred": velocity (B, T, 2, N, N), "seconds_per_step": per solver step for the
    whole batch}``.
    """
    grid, dt = model.solver.grid, model.dt
    n_steps = test.shape[1] - history
    synchronize(test)
    t0 = time.perf_counter()
    pred = model.rollout(test[:, :history], n_steps)
    synchronize(pred)
    seconds = (time.perf_counter() - t0) / n_steps
    w_pred, w_true = vorticity_rollout(pred, grid), vorticity_rollout(test[:, history:], grid)
    corr = correlation(w_pred, w_true, 2, reduction="none")[..., 0]
    dur = high_correlation_duration(w_pred, w_true, 2, dt, threshold, reduction="sample")
    return {"duration": dur.cpu(), "corr": corr.mean(0).cpu(), "corr_all": corr.cpu(), "pred": pred.cpu(),
            "seconds_per_step": seconds}


def build_model(cfg: TSMRunConfig, velocity_scale: float) -> TemporalStencilModel:
    """The model ``cfg`` describes, on ``cfg.device`` (initialised on the CPU: the same weights on every device)."""
    model = TemporalStencilModel(cfg.model_config(), fv.StaggeredGrid(cfg.resolution), _flow(cfg), cfg.dt,
                                 velocity_scale)
    return model.to(cfg.torch_device)


def load_model(run_dir: str | Path, device: str = "cpu") -> TemporalStencilModel:
    """Rebuild a trained model from its run folder (``model.json`` + ``model.safetensors``) on ``device`` (``cpu``,
    ``cuda``, ``cuda:N`` or ``auto``, whichever device it was trained on)."""
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "model.json").read_text())
    # runs saved before li_calls called the CNN per stage
    cfg = TSMRunConfig.from_spec({"li_calls": "stage", **spec["run_config"], "device": device})
    model = build_model(cfg, spec["velocity_scale"])
    model.load_state_dict(load_weights(run_dir / "model.safetensors"), strict=False)
    return model


def _plots(run_dir: Path, dt: float, curves: dict[str, Tensor], snaps: dict[str, Tensor], t_snap: float) -> None:
    from ..plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot(dt * (1 + torch.arange(len(c))).numpy(), c.numpy(), label=name)
    ax.axhline(0.8, color="k", lw=0.8, ls="--")
    ax.set_xlabel("time"), ax.set_ylabel("vorticity correlation"), ax.set_ylim(-0.1, 1.02), ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, run_dir / "correlation_vs_time.png")
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.2 * len(snaps), 3.2))
    lim = float(snaps["reference"].abs().max())
    for ax, (name, w) in zip(axes, snaps.items()):
        ax.imshow(w.T.numpy(), origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"{name}, t = {t_snap:.2f}"), ax.set_xticks([]), ax.set_yticks([])
    _save(fig, run_dir / "vorticity_snapshots.png")


# may change on resume (a checkpoint loads on any device; an uninterrupted run's bytes need the same device, threads
# and compile)
_RESUME_FREE = ("resume", "checkpoint_every", "progress", "threads", "data_workers", "device", "compile")


def run(spec: dict, run_dir: Path) -> dict:
    """Train (unless ``variant: coarse``) and evaluate one model; write the run folder; return the metrics."""
    cfg = TSMRunConfig.from_spec(spec)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    atomic_write_text(run_dir / "config.yaml", "".join(f"{k}: {json.dumps(v)}\n" for k, v in
                                                       {"family": "tsm", **asdict(cfg)}.items()))
    train_cpu, test_cpu = load_data(cfg)
    scale = float(train_cpu.std())  # on the CPU: the same scale, hence the same model, on every device
    train, test = train_cpu.to(cfg.torch_device), test_cpu.to(cfg.torch_device)  # once, not per step
    model = build_model(cfg, scale)
    ckpt = run_dir / "checkpoint" / "state.pt"
    state = resume_state(ckpt, asdict(cfg), free=_RESUME_FREE, every=cfg.checkpoint_every) if cfg.resume else None
    fresh = asdict(cfg)
    log = train_model(model, train, cfg, state=state,
                      checkpoint=lambda st: save_state(ckpt, {**st, "run_config": fresh}))
    train_seconds = log[-1]["time"] if log else 0.0
    atomic_write_text(run_dir / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    save_weights(run_dir / "model.safetensors", {k: v.contiguous() for k, v in model.state_dict().items()})
    fingerprint = data_fingerprint(train_cpu, test_cpu)
    atomic_write_text(run_dir / "model.json", json.dumps({"run_config": asdict(cfg), "velocity_scale": scale,
                                                          "data_fingerprint": fingerprint}))

    res = evaluate_model(model, test, cfg.history, cfg.threshold)
    coarse = build_model(TSMRunConfig(**{**asdict(cfg), "variant": "coarse", "memory": "window"}), scale)
    ref = evaluate_model(coarse, test, cfg.history, cfg.threshold)
    name = cfg.variant
    if cfg.variant == "tsm":
        name = f"tsm-{cfg.encoder}" + ("-running" if cfg.memory == "running" else "")
    k = min(len(res["corr"]) - 1, int(round(2.0 / cfg.dt)))
    grid = model.solver.grid
    snaps = {"reference": vorticity_rollout(test_cpu[:1, cfg.history + k:cfg.history + k + 1], grid)[0, 0, 0],
             "coarse 32^2": vorticity_rollout(ref["pred"][:1, k:k + 1], grid)[0, 0, 0],
             name: vorticity_rollout(res["pred"][:1, k:k + 1], grid)[0, 0, 0]}
    _plots(run_dir, cfg.dt, {name: res["corr"], "coarse": ref["corr"]}, snaps, (k + 1) * cfg.dt)
    metrics = {
        "model": name, "train_seconds": round(train_seconds, 1), "final_loss": log[-1]["loss"] if log else None,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "duration_mean": float(res["duration"].mean()), "duration_std": float(res["duration"].std(unbiased=False)),
        "duration_per_trajectory": res["duration"].tolist(),
        "coarse_duration_mean": float(ref["duration"].mean()),
        "coarse_duration_std": float(ref["duration"].std(unbiased=False)),
        "seconds_per_step_batch": res["seconds_per_step"], "coarse_seconds_per_step_batch": ref["seconds_per_step"],
        "correlation_curve": res["corr"].tolist(), "coarse_correlation_curve": ref["corr"].tolist(),
        "dt": cfg.dt, "threshold": cfg.threshold, "data_fingerprint": fingerprint,
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics
