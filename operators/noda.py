"""NODA: prediction with data assimilation by a semilinear neural operator (Singh et al., ICLR 2024).

    python train.py configs/noda_ks.yaml                     # KS 1D: NODA + a plain FNO of the same size
    python train.py configs/noda_ks.yaml --train '{"steps": 50}' --run-dir runs/noda_smoke
    python train.py configs/noda_ks.yaml --resume true       # continue from its checkpoint

The model (:mod:`pdeforge.operators._noda_model`) is ``z^f = z + F(z)``, ``z^a = z^f + K(z^f)[m (y - E z^f)]``
when a measurement arrives. Training unrolls the recursion: from a true frame, ``warmup`` assimilated steps without
gradient bring the state to the errors it will carry in use, then ``unroll`` steps are differentiated, with the loss

    sum_k ( |z_k^a - z_k|^2 + |z_k^f - z_k|^2 ) / |z_k|^2  +  misfit_weight * |m (E z_k^f - y_k)|^2 / |m y_k|^2

(the misfit only at steps where a measurement arrived). Each training window draws its own ``alpha`` from
``[0, alpha_max]`` (0 with probability 1/4), so one model serves every arrival rate. A window with measurements
starts from ``z_0 + lam (z' - z_0)``, ``z'`` a random frame of a random trajectory and ``lam ~ U[0, perturb]``: started
from the truth, the state is never far off during training, and the gain learns to distrust the measurements (their
noise is all the innovation it sees); in use the forecast drifts, and the gain must pull a distant state back. Evaluation rolls out whole test
trajectories from their first frame, for each ``alpha`` in ``eval.alphas``, against a plain FNO (same size, trained
one step at a time) rolled out on its own.

Every ``checkpoint_every`` steps (default 100) of either training, ``checkpoint/state.pt`` holds the training state
(phase, weights, optimiser, schedule, generators, log, elapsed seconds); ``resume: true`` continues from it, and at
the same ``threads`` and ``device`` ends with the bytes of an uninterrupted run.

``device`` (``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``) is where the models train and roll out. The initial weights,
training windows and measurements are drawn on the CPU (from CPU generators: the same on every device) and each batch
is moved there; everything written holds CPU tensors, so a run folder or checkpoint made on a GPU loads anywhere, and
``device`` may change on resume.

Public API::

    from pdeforge.operators.noda import NODA, NODAConfig, GainConfig, build_noda, run, load, rollout_errors
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from torch import Tensor

from .._device import check_device, resolve_device
from .._spec import check_fields
from ..checkpoint import atomic_write_text, load_weights, resume_state, save_state, save_weights, to_cpu
from ..datasets import DatasetMetadata, TrajectoryDataset
from ..datasets import ObservationConfig, ObservationView, draw_observations
from ..metrics import rel_l2
from ._build import FieldOperator, build_from_spec, build_model
from ._neuralop import FNOConfig
from ._noda_model import (GAINS, MEASUREMENTS, NODA, AbstractGain, AbstractMeasurement, GatedGain, GainConfig, IdentityGain,
                          IdentityMeasurement, LearnedMeasurement, NODAConfig, build_noda, spread_innovation)

__all__ = ["NODA", "NODAConfig", "GainConfig", "AbstractGain", "GatedGain", "IdentityGain", "AbstractMeasurement",
           "IdentityMeasurement", "LearnedMeasurement", "spread_innovation", "GAINS", "MEASUREMENTS", "build_noda", "train_noda",
           "train_baseline", "rollout_errors", "run", "load"]

TRAIN_DEFAULTS = dict(steps=1500, batch_size=16, lr=1e-3, warmup=4, unroll=8, alpha_max=0.5, misfit_weight=0.1, perturb=1.0)
BASELINE_DEFAULTS = dict(steps=1500, batch_size=32, lr=1e-3)
EVAL_DEFAULTS = dict(alphas=[0.0, 0.1, 0.25, 0.5], horizon=None, seed=12345, long_fraction=0.25)


def _frames(ds: TrajectoryDataset) -> Tensor:
    """All trajectories of ``ds`` in memory: (N, T, C, *space), frames ``dt_stride`` apart."""
    frames = np.arange(0, ds.n_steps, ds.dt_stride)
    return torch.stack([ds.read(i, frames)["fields"] for i in range(len(ds.trajectories))])


def _window_batch(data: Tensor, length: int, batch_size: int, gen: torch.Generator) -> Tensor:
    """Random windows of ``length`` frames: (B, length, C, *space)."""
    n, T = data.shape[:2]
    if T < length:
        raise ValueError(f"trajectories have {T} frames, too few for warmup + unroll + 1 = {length}")
    traj = torch.randint(n, (batch_size,), generator=gen)
    start = torch.randint(T - length + 1, (batch_size,), generator=gen)
    return torch.stack([data[i, s:s + length] for i, s in zip(traj.tolist(), start.tolist())])


def _draw_batch(windows: Tensor, obs: ObservationConfig, alphas: np.ndarray, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Measurements of each window (its own alpha): observations (B, T, C, *S), masks (B, 1, *S), arrived (B, T)."""
    drawn = [draw_observations(w, ObservationConfig(alpha=float(a), mask=obs.mask, fraction=obs.fraction, noise=obs.noise), rng)
             for w, a in zip(windows, alphas)]
    return (torch.stack([d["observations"] for d in drawn]), torch.stack([d["mask"] for d in drawn]),
            torch.stack([d["arrived"] for d in drawn]))


def _rel_sq(pred: Tensor, target: Tensor) -> Tensor:
    dims = tuple(range(2, pred.ndim))
    return (((pred - target) ** 2).sum(dims) / (target**2).sum(dims).clamp_min(1e-12)).mean()


def _device_of(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters are (a batch goes there)."""
    return next(model.parameters()).device


def _restore(state: dict | None, model, opt, sched, gen: torch.Generator) -> int:
    """Load a training state written by `_checkpoint` (if any; its tensors may be on any device: they are copied into
    the model's and the optimizer's); returns the step to continue from."""
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _checkpoint(checkpoint: Callable[[dict], None] | None, every: int, done: int, steps: int, model, opt, sched,
                gen: torch.Generator, **extra) -> None:
    if checkpoint is not None and every and done % every == 0 and done < steps:
        checkpoint({"step": done, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    **extra})


def train_noda(model: NODA, data: Tensor, obs: ObservationConfig, cfg: dict, log, seed: int = 0,
               state: dict | None = None, checkpoint: Callable[[dict], None] | None = None,
               checkpoint_every: int = 0) -> None:
    """Unrolled training of ``model`` on trajectories ``data (N, T, C, *space)``; ``cfg`` as ``TRAIN_DEFAULTS``.

    Each batch (windows, measurements, perturbed starts) is drawn from ``data`` on the CPU, from CPU generators, and
    moved to the model's device. ``checkpoint(state)`` is called every ``checkpoint_every`` steps with the training
    state (step, model, optimizer, schedule, generators); passing such a ``state`` back continues from it."""
    cfg = {**TRAIN_DEFAULTS, **cfg}
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg["steps"]))
    W, U = int(cfg["warmup"]), int(cfg["unroll"])
    device = _device_of(model)
    first = _restore(state, model, opt, sched, gen)
    if state is not None:
        rng.bit_generator.state = state["rng"]
    for it in range(first, int(cfg["steps"])):
        win = _window_batch(data, W + U + 1, int(cfg["batch_size"]), gen)
        alphas = rng.uniform(0, cfg["alpha_max"], len(win)) * (rng.random(len(win)) >= 0.25)
        y, m, a = _draw_batch(win, obs, alphas, rng)
        state = win[:, 0]
        if cfg["perturb"]:
            other = _window_batch(data, 1, len(win), gen)[:, 0]
            lam = torch.rand(len(win), generator=gen) * cfg["perturb"] * torch.from_numpy(alphas > 0).to(state.dtype)
            state = state + lam.reshape(-1, *(1,) * (state.ndim - 1)) * (other - state)
        state, y, m, a, truth = (v.to(device) for v in (state, y, m, a, win[:, W + 1:]))
        if W:
            with torch.no_grad():
                state = model(state, W, y[:, 1:W + 1], m, a[:, 1:W + 1])["analysis"][:, -1]
        out = model(state, U, y[:, W + 1:], m, a[:, W + 1:])
        loss = _rel_sq(out["analysis"], truth) + _rel_sq(out["forecast"], truth)
        arr = a[:, W + 1:]
        if cfg["misfit_weight"] and bool(arr.any()):
            f, yy = out["forecast"][arr], y[:, W + 1:][arr]
            mm = m[:, None].expand(-1, U, *m.shape[1:])[arr]
            misfit = ((mm * (model.measurement(f) - yy)) ** 2).sum() / (yy**2).sum().clamp_min(1e-12)
            loss = loss + cfg["misfit_weight"] * misfit
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if it % 25 == 0 or it == cfg["steps"] - 1:
            log({"model": "noda", "step": it, "loss": float(loss.detach())})
        _checkpoint(checkpoint, checkpoint_every, it + 1, int(cfg["steps"]), model, opt, sched, gen,
                    rng=rng.bit_generator.state)


def train_baseline(model: FieldOperator, data: Tensor, cfg: dict, log, seed: int = 0, state: dict | None = None,
                   checkpoint: Callable[[dict], None] | None = None, checkpoint_every: int = 0) -> None:
    """A plain FNO ``z_{k+1} = F(z_k)`` trained one step at a time (teacher forcing) on ``data (N, T, C, *space)``
    (pairs drawn on the CPU and moved to the model's device); ``state``, ``checkpoint`` and ``checkpoint_every`` as in
    `train_noda`."""
    cfg = {**BASELINE_DEFAULTS, **cfg}
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg["steps"]))
    device = _device_of(model)
    first = _restore(state, model, opt, sched, gen)
    for it in range(first, int(cfg["steps"])):
        win = _window_batch(data, 2, int(cfg["batch_size"]), gen).to(device)
        loss = _rel_sq(model(win[:, :1])[:, 0][:, None], win[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if it % 25 == 0 or it == cfg["steps"] - 1:
            log({"model": "fno", "step": it, "loss": float(loss.detach())})
        _checkpoint(checkpoint, checkpoint_every, it + 1, int(cfg["steps"]), model, opt, sched, gen)


@torch.no_grad()
def rollout_errors(model: NODA, view: ObservationView, horizon: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Rel L2 of the analysis state per step, averaged over the view's trajectories: (horizon,); plus trajectory 0's
    truth, forecast and analysis, each (horizon + 1, C, *space) (frame 0 is the initial state); all on the CPU.

    All trajectories roll out as one batch from their first frame, each with its own measurements and sensors, on
    the model's device."""
    samples = [view[i] for i in range(len(view))]
    T = samples[0]["fields"].shape[0] - 1 if horizon is None else int(horizon)
    device = _device_of(model)
    truth = torch.stack([s["fields"][: T + 1] for s in samples]).to(device)
    obs = torch.stack([s["observations"][1:T + 1] for s in samples]).to(device)
    mask = torch.stack([s["mask"] for s in samples]).to(device)
    arrived = torch.stack([s["arrived"][1:T + 1] for s in samples]).to(device)
    out = model(truth[:, 0], T, obs, mask, arrived)
    err = rel_l2(out["analysis"], truth[:, 1:], model.n_spatial_dims, reduction="none").mean(-1).mean(0)
    first = {"truth": truth[0], "forecast": torch.cat([truth[0, :1], out["forecast"][0]]),
             "analysis": torch.cat([truth[0, :1], out["analysis"][0]])}
    return err.cpu(), to_cpu(first)


@torch.no_grad()
def _baseline_errors(model: FieldOperator, data: Tensor, horizon: int, n_dims: int) -> Tensor:
    """Rel L2 per step of the plain FNO rolled out from each trajectory's first frame, on the model's device:
    (horizon,) on the CPU."""
    data = data.to(_device_of(model))
    state, preds = data[:, 0], []
    for _ in range(horizon):
        state = model(state[:, None])[:, 0]
        preds.append(state)
    pred = torch.stack(preds, 1)
    return rel_l2(pred, data[:, 1:horizon + 1], n_dims, reduction="none").mean(-1).mean(0).cpu()


def _dataset(spec: dict, split: str) -> TrajectoryDataset:
    return TrajectoryDataset(spec["data"], 1, 1, int(spec.get("dt_stride", 1)), split=split,
                             max_trajectories=spec.get("max_trajectories") if split == "train" else None)


# may change on resume (a checkpoint loads on any device; an uninterrupted run's bytes need the same device and threads)
_RESUME_FREE = ("resume", "checkpoint_every", "threads", "device", "run_dir", "name")

# the spec's top-level keys with their defaults (None: a section, or any value), and its sections' schemas
_SPEC = dict(family="noda", name="", run_dir="", data="", threads=0, device="cpu", dt_stride=1, max_trajectories=None, seed=0,
             model=None, gain=None, measurement="identity", observations=None, train=None, baseline=None, eval=None,
             checkpoint_every=100, resume=False)


def check_spec(spec: dict) -> None:
    """Refuse an unknown key, or a value of the wrong type, range or choice, at the top level or in a section, or a
    ``device`` that is not here, with one ValueError naming each (before any data is read)."""
    check_fields(_SPEC, spec, "noda spec", at_least={"threads": 0, "dt_stride": 1, "max_trajectories": 1,
                                                     "checkpoint_every": 0}, choices={"measurement": MEASUREMENTS})
    check_device(spec.get("device", "cpu"), "noda spec")
    fno = {f.name: f.default for f in dataclasses.fields(FNOConfig)}
    sections = {
        "model": ({**fno, "n_modes": None}, {"hidden_channels": 1, "n_layers": 1, "domain_padding": 0}, ()),
        "gain": (GainConfig, {"hidden_channels": 1, "n_layers": 1}, ()),
        "observations": (ObservationConfig, {"noise": 0}, ()),
        "train": (TRAIN_DEFAULTS, {"steps": 0, "batch_size": 1, "warmup": 0, "unroll": 1, "alpha_max": 0,
                                   "misfit_weight": 0, "perturb": 0}, ("lr",)),
        "baseline": (BASELINE_DEFAULTS, {"steps": 0, "batch_size": 1}, ("lr",)),
        "eval": (EVAL_DEFAULTS, {"long_fraction": 0}, ()),
    }
    for name, (schema, at_least, positive) in sections.items():
        value = spec.get(name)
        if value is None or (name == "baseline" and value is False):
            continue
        if not isinstance(value, dict):
            raise ValueError(f"noda spec: {name} {value!r}: expected a section of options (a mapping)")
        check_fields(schema, value, f"noda spec: {name}", at_least=at_least, positive=positive)


def _plain(spec: dict) -> dict:
    """``spec`` as JSON values (paths as strings), as the training state stores it."""
    return json.loads(json.dumps(spec, default=str))


def run(spec: dict, run_dir: str | os.PathLike) -> dict:
    """Train NODA (and the plain FNO baseline) as ``spec`` says, evaluate, write the run folder, return the metrics.

    spec keys: ``data`` (dataset root), ``threads`` (torch CPU threads; default untouched), ``device`` (``cpu``,
    ``cuda``, ``cuda:N`` or ``auto``; default cpu), ``dt_stride``, ``max_trajectories``, ``seed``, ``model`` (FNOConfig fields
    of the prediction step), ``gain`` (GainConfig fields), ``measurement``, ``observations`` (mask, fraction,
    noise), ``train`` (``TRAIN_DEFAULTS``), ``baseline`` (``BASELINE_DEFAULTS``; ``false`` to skip), ``eval``
    (``EVAL_DEFAULTS``; horizon None = whole test trajectories), ``checkpoint_every`` (steps between training
    states in ``checkpoint/state.pt``, 0: none; default 100), ``resume`` (continue from that state). Writes
    ``config.yaml``, ``metrics.json``, ``model.safetensors`` + ``model.json`` (rebuild with :func:`load`),
    ``baseline.safetensors`` + spec, ``train_log.jsonl``, ``error_vs_time.png``, ``snapshot.png``.
    """
    run_dir = Path(run_dir)
    if "data" not in spec:
        raise ValueError("spec needs 'data': a dataset root written by `pdeforge generate` (ROOT/data/{train,valid,test})")
    check_spec(spec)
    ckpt, every = run_dir / "checkpoint" / "state.pt", int(spec.get("checkpoint_every", 100))
    state = resume_state(ckpt, _plain(spec), key="spec", free=_RESUME_FREE, every=every) if spec.get("resume") else None
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = int(spec.get("seed", 0))
    device = resolve_device(spec.get("device", "cpu"))
    torch.manual_seed(seed)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(spec, sort_keys=False))
    train_ds, test_ds = _dataset(spec, "train"), _dataset(spec, "test")
    meta = train_ds.metadata
    pred_cfg = dict(spec.get("model") or {})
    if isinstance(pred_cfg.get("n_modes"), list):
        pred_cfg["n_modes"] = tuple(pred_cfg["n_modes"])
    config = NODAConfig(predictor=FNOConfig(**pred_cfg), gain=GainConfig(**(spec.get("gain") or {})),
                        measurement=spec.get("measurement", "identity"))
    obs_opts = dict(spec.get("observations") or {})
    obs = ObservationConfig(alpha=0.0, **{k: v for k, v in obs_opts.items() if k != "alpha"})
    data = _frames(train_ds)
    log_path = run_dir / "train_log.jsonl.partial"
    entries = [dict(r) for r in state["log"]] if state else []
    timings = dict(state["timings"]) if state else {}
    phase = state["phase"] if state else "noda"
    with open(log_path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in entries)

        def log(entry: dict) -> None:
            entries.append(entry)
            fh.write(json.dumps(entry) + "\n")
            fh.flush()

        def saver(phase: str, t0: float, **extra) -> Callable[[dict], None]:
            return lambda st: save_state(ckpt, {**st, **extra, "phase": phase, "log": entries, "timings": timings,
                                                "elapsed": time.perf_counter() - t0, "spec": _plain(spec)})

        model = build_noda(config, meta).to(device)  # initialised on the CPU: the same weights on every device
        t0 = time.perf_counter() - (state["elapsed"] if phase == "noda" and state else 0.0)
        if phase == "noda":
            train_noda(model, data, obs, dict(spec.get("train") or {}), log, seed, state=state,
                       checkpoint=saver("noda", t0), checkpoint_every=every)
            timings["noda_train_s"] = time.perf_counter() - t0
        else:
            model.load_state_dict(state["noda_model"])
        baseline = None
        if spec.get("baseline", {}) is not False:
            baseline = build_model(config.predictor, meta, 1, 1, use_grid=False, use_scalars=False,
                                   use_constant_fields=False).to(device)
            t0 = time.perf_counter() - (state["elapsed"] if phase == "fno" else 0.0)
            train_baseline(baseline, data, dict(spec.get("baseline") or {}), log, seed,
                           state=state if phase == "fno" else None,
                           checkpoint=saver("fno", t0, noda_model=model.state_dict()), checkpoint_every=every)
            timings["fno_train_s"] = time.perf_counter() - t0
    os.replace(log_path, run_dir / "train_log.jsonl")

    ev = {**EVAL_DEFAULTS, **(spec.get("eval") or {})}
    model.eval()
    curves, snaps = {}, {}
    for alpha in ev["alphas"]:
        view = ObservationView(test_ds, config=ObservationConfig(alpha=float(alpha), mask=obs.mask, fraction=obs.fraction,
                                                                 noise=obs.noise, seed=int(ev["seed"])))
        err, first = rollout_errors(model, view, ev["horizon"])
        curves[f"noda_alpha_{alpha:g}"] = err
        snaps[float(alpha)] = first
    horizon = len(next(iter(curves.values())))
    if baseline is not None:
        baseline.eval()
        curves["fno"] = _baseline_errors(baseline, _frames(test_ds), horizon, meta.n_spatial_dims)
    tail = max(1, int(math.ceil(ev["long_fraction"] * horizon)))
    table = {name: {"long_horizon_rel_l2": float(c[-tail:].mean()), "final_rel_l2": float(c[-1]), "max_rel_l2": float(c.max()),
                    "first_step_rel_l2": float(c[0])} for name, c in curves.items()}
    metrics = {"table": table, "horizon_steps": horizon, "dt": meta.dt, "long_horizon_steps": tail,
               "curves": {k: [float(x) for x in v] for k, v in curves.items()}, "observations": obs_opts,
               "n_train_trajectories": int(data.shape[0]), "n_test_trajectories": len(test_ds.trajectories), **timings}

    save_weights(run_dir / "model.safetensors", model.state_dict())
    atomic_write_text(run_dir / "model.json", json.dumps(model.model_spec, indent=1))
    if baseline is not None:
        save_weights(run_dir / "baseline.safetensors", baseline.state_dict())
        atomic_write_text(run_dir / "baseline.json", json.dumps(baseline.model_spec, indent=1))
    _plots(run_dir, curves, snaps, meta)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def load(run_dir: str | os.PathLike, device: str = "cpu") -> NODA:
    """The trained NODA of a run folder (``model.json`` + ``model.safetensors``) on ``device`` (``cpu``, ``cuda``,
    ``cuda:N`` or ``auto``, whichever device it was trained on)."""
    check_device(device, "noda.load")
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "model.json").read_text())
    model = build_noda(NODAConfig.from_dict(spec["config"]), DatasetMetadata.from_dict(spec["metadata"]))
    model.load_state_dict(load_weights(run_dir / "model.safetensors"))
    return model.to(resolve_device(device))


def load_baseline(run_dir: str | os.PathLike, device: str = "cpu") -> FieldOperator:
    """The plain FNO baseline of a run folder, on ``device`` (as in :func:`load`)."""
    check_device(device, "noda.load_baseline")
    run_dir = Path(run_dir)
    model = build_from_spec(json.loads((run_dir / "baseline.json").read_text()))
    model.load_state_dict(load_weights(run_dir / "baseline.safetensors"))
    return model.to(resolve_device(device))


def _plots(run_dir: Path, curves: dict[str, Tensor], snaps: dict[float, dict], meta: DatasetMetadata) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        t = meta.dt * (1 + np.arange(len(c)))
        ax.plot(t, c.numpy(), "k--" if name == "fno" else "-", label=name.replace("noda_alpha_", "NODA alpha="))
    ax.set_xlabel("time"), ax.set_ylabel("rel L2"), ax.set_yscale("log"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    ax.set_title("rollout error on test trajectories")
    fig.tight_layout(), fig.savefig(run_dir / "error_vs_time.png", dpi=110), plt.close(fig)

    alpha = max(snaps)
    s = snaps[alpha]
    panels = [("truth", s["truth"]), ("forecast (alpha=0)", snaps[min(snaps)]["analysis"]), (f"assimilated (alpha={alpha:g})", s["analysis"])]
    if meta.n_spatial_dims == 1:  # space-time diagrams of channel 0
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
        lim = float(s["truth"][:, 0].abs().max())
        for ax, (title, a) in zip(axes, panels):
            ax.imshow(a[:, 0].numpy(), aspect="auto", origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim,
                      extent=(0, meta.domain_lengths[0], 0, meta.dt * (a.shape[0] - 1)))
            ax.set_title(title), ax.set_xlabel("x")
        axes[0].set_ylabel("time")
    else:  # last frame of channel 0
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
        lim = float(s["truth"][-1, 0].abs().max())
        for ax, (title, a) in zip(axes, panels):
            ax.imshow(a[-1, 0].numpy().T, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"{title}, t={meta.dt * (a.shape[0] - 1):g}", fontsize=9), ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(), fig.savefig(run_dir / "snapshot.png", dpi=110), plt.close(fig)
