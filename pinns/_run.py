"""``run(config, run_dir)``: train a PINN on a named problem from a config dict and write the run folder.

Config (``configs/pinn_*.yaml``; every section optional but ``family`` and ``problem``)::

    family: pinn
    problem: burgers            # a key of PROBLEMS: burgers | allen_cahn | advection
    mode: forward               # forward | lagrangian (Mojgani et al. 2023)
    seed: 0
    dtype: float64              # float64 | float32
    device: cpu                 # cpu | cuda | cuda:N | auto (cuda if available): training and evaluation; points and
                                # initial weights are drawn on the CPU, the run folder loads on any machine
    network:  {width: 100, depth: 5, harmonics: 1, fourier_features: 0, fourier_sigma: 1.0, rwf: false}
    sampling: {method: sobol, n_residual: 8000, n_initial: 256, n_boundary: 128, resample_every: 0,
               adaptive: null, adaptive_every: 1000, n_candidates: 20000, rar_k: 100, rad_k: 1.0, rad_c: 1.0}
    weighting: {method: fixed, weights: {}, every: 100, alpha: 0.9, lr: 0.005}   # fixed | gradnorm | ntk | self_adaptive
    causal: null                # or {n_chunks: 32, epsilon: 1.0} (a list of epsilons: annealed)
    amplification: null         # or {power: 1.0}: residuals weighted by the growth of their errors (forward mode)
    optim:    {adam_iters: 1000, lr: 0.001, decay_rate: 0.9, decay_every: 1000, lbfgs_iters: 0, chunk: 500, log_every: 100}
    eval:     {nx: 256, nt: 101}
    init_from: null             # a PINN run folder (or its model.safetensors): start from its weights, e.g. to
                                # continue a run with a new optim section (same network section required)
    checkpoint_every: 1000      # Adam steps between checkpoints (run_dir/checkpoint/state.pt; 0: only at Adam's end)
    resume: false               # true: continue run_dir from its checkpoint; the result equals an uninterrupted run

The run folder (each file written to a temporary name, then renamed):

* ``config.yaml`` (the config as run), ``model.safetensors`` + ``model.json`` (what :func:`load` needs),
* ``metrics.json``: ``{"test": {"rel_l2", "rmse", "max_error"}, "lbfgs": {reason, iterations, ...},
  "wall_time_s", ...}``; ``rel_l2`` is the relative L2 error over the whole space-time evaluation grid
  (PINNacle's L2RE) against the problem's reference;
* ``train_log.jsonl`` (one record per logged step), ``solution.png`` (prediction / reference / error heat
  maps), ``loss_terms.png`` (each loss term against the step).

Everything written holds CPU tensors, so a run folder (and its checkpoint) made on a GPU loads anywhere;
``device`` may change on resume.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from .._device import check_device, resolve_device
from .._spec import check_fields
from ..checkpoint import atomic_write
from ..metrics import max_error, rel_l2, rmse
from ._forward import PINN, SamplingConfig
from ._lagrangian import LagrangianPINN
from ._networks import NetworkConfig
from ._optim import OptimConfig
from ._problems import PROBLEMS
from ._weighting import AmplificationWeights, CausalWeights, FixedWeights, GradNormWeights, NTKWeights, SelfAdaptiveWeights

MODES = ("forward", "lagrangian")
_WEIGHTING_CLASSES = {"fixed": FixedWeights, "gradnorm": GradNormWeights, "ntk": NTKWeights,
                      "self_adaptive": SelfAdaptiveWeights}
WEIGHTINGS = tuple(_WEIGHTING_CLASSES)


# the keys a PINN config may have at its top level (sections hold the rest)
TOP_LEVEL = ("family", "problem", "mode", "seed", "dtype", "device", "network", "sampling", "weighting", "causal",
             "amplification", "optim", "eval", "checkpoint_every", "resume", "init_from", "run_dir", "name")
# sections' values that must be >= a bound (the dataclasses check their own choices)
_AT_LEAST = {"optim": {"adam_iters": 0, "lbfgs_iters": 0, "decay_every": 1, "history_size": 1, "chunk": 1,
                       "log_every": 1},
             "network": {"width": 1, "depth": 1, "harmonics": 0, "fourier_features": 0},
             "sampling": {"n_residual": 1, "n_initial": 0, "n_boundary": 0, "resample_every": 0},
             "eval": {"nx": 2, "nt": 2}}
_POSITIVE = {"optim": ("lr",)}


def _checked(name: str, values: dict, cls) -> dict:
    """``values`` if every key is a field (or keyword) of ``cls``, of the default's type (dataclasses: also the
    bounds above); else a ValueError naming each problem."""
    if dataclasses.is_dataclass(cls):
        return check_fields(cls, values, f"config section {name!r}", at_least=_AT_LEAST.get(name, {}),
                            positive=_POSITIVE.get(name, ()))
    known = set(inspect.signature(cls).parameters) - {"device"}  # the top-level device says where everything runs
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config section {name!r}: unknown key(s) {unknown}; known: {sorted(known)}")
    return values


@dataclasses.dataclass(frozen=True)
class _EvalConfig:
    """The ``eval`` section: the reference grid the error is measured on."""

    nx: int = 256
    nt: int = 101


def _section(config: dict, name: str, cls) -> Any:
    return cls(**_checked(name, dict(config.get(name) or {}), cls))


def _options(config: dict, name: str, cls) -> Any:
    """Like :func:`_section`, but None when the section is absent or null (an optional feature)."""
    return _section(config, name, cls) if config.get(name) else None


def _device(config: dict) -> torch.device:
    """The config's ``device`` (default cpu) as a torch device; a ValueError if it is not one, or not here."""
    device = check_fields({"device": "cpu"}, {"device": config.get("device", "cpu")}, "pinn config")["device"]
    check_device(device, "pinn config")
    return resolve_device(device)


def _weighting(config: dict, sampling: SamplingConfig, hard_initial: bool, device: torch.device):
    spec = dict(config.get("weighting") or {})
    method = spec.pop("method", "fixed")
    weights = spec.pop("weights", None)
    if method in _WEIGHTING_CLASSES:
        _checked("weighting", spec, _WEIGHTING_CLASSES[method])
    if method == "fixed":
        return FixedWeights(weights)
    if method == "gradnorm":
        return GradNormWeights(weights=weights, **spec)
    if method == "ntk":
        return NTKWeights(weights=weights, **spec)
    if method == "self_adaptive":
        if sampling.resample_every or sampling.adaptive:
            raise ValueError("self_adaptive weights need fixed residual points: set resample_every: 0, adaptive: null")
        sizes = {"residual": sampling.n_residual}
        if not hard_initial:
            sizes["initial"] = sampling.n_initial
        return SelfAdaptiveWeights(sizes, weights=weights, device=device, **spec)
    raise ValueError(f"unknown weighting method {method!r}; choose one of {WEIGHTINGS}")


def build(config: dict) -> tuple[torch.nn.Module, Any]:
    """The (untrained) model, on the config's ``device``, and the named problem of a config."""
    if config.get("family", "pinn") != "pinn":
        raise ValueError(f"pdeforge.pinns.run handles family: pinn, got {config.get('family')!r}")
    unknown = sorted(set(config) - set(TOP_LEVEL))
    if unknown:
        raise ValueError(f"config: unknown key(s) {unknown}; known: {sorted(TOP_LEVEL)} (a section's options go "
                         "inside it, e.g. optim: {adam_iters: 2000}, or --optim.adam_iters 2000 on the command line)")
    device = _device(config)
    _checked("eval", dict(config.get("eval") or {}), _EvalConfig)
    name = config.get("problem")
    if name not in PROBLEMS:
        raise ValueError(f"config 'problem' must be one of {sorted(PROBLEMS)}, got {name!r}")
    mode = config.get("mode", "forward")
    if mode not in MODES:
        raise ValueError(f"config 'mode' must be one of {MODES}, got {mode!r}")
    dtypes = {"float64": torch.float64, "float32": torch.float32}
    if config.get("dtype", "float64") not in dtypes:
        raise ValueError(f"config 'dtype' must be one of {sorted(dtypes)}, got {config.get('dtype')!r}")
    dtype = dtypes[config.get("dtype", "float64")]
    named = PROBLEMS[name]()
    network = _section(config, "network", NetworkConfig)
    sampling = _section(config, "sampling", SamplingConfig)
    seed = int(config.get("seed", 0))
    if mode == "lagrangian":
        if config.get("causal") or config.get("amplification"):
            raise ValueError("causal and amplification weights are for mode: forward; the Lagrangian PINN has neither")
        model = LagrangianPINN(named.problem, network, sampling.n_residual, sampling.n_initial, seed, device)
    else:
        causal = _options(config, "causal", CausalWeights)
        amplification = _options(config, "amplification", AmplificationWeights)
        model = PINN(named.problem, network, sampling, _weighting(config, sampling, named.problem.hard_initial, device),
                     causal, seed, dtype, amplification, device)
    return model, named


def init_from(model: torch.nn.Module, source: str | os.PathLike) -> Path:
    """Load the weights of a PINN run folder (or a ``.safetensors`` file) into ``model``; every tensor must match
    by name and shape (values are cast to the model's dtype). Returns the file read."""
    from ..checkpoint import load_weights

    path = Path(source)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"init_from: {file} not found (expected a PINN run folder or a .safetensors file)")
    try:
        state = load_weights(file)
    except ValueError as err:
        raise ValueError(f"init_from: {file} is not a readable safetensors file ({err})") from None
    own = model.state_dict()
    problems = [f"missing {k}" for k in sorted(set(own) - set(state))]
    problems += [f"unexpected {k}" for k in sorted(set(state) - set(own))]
    problems += [f"{k}: shape {tuple(state[k].shape)}, this network has {tuple(v.shape)}"
                 for k, v in own.items() if k in state and state[k].shape != v.shape]
    if problems:
        raise ValueError(f"init_from: {file} does not fit this config's network ({'; '.join(problems[:5])}"
                         f"{'; ...' if len(problems) > 5 else ''}): use the network section it was trained with")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return file


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def evaluate(model: torch.nn.Module, named, nx: int = 256, nt: int = 101) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Errors against the reference on an ``nx x nt`` grid: ``(metrics, prediction (nt, C, nx), reference)``.

    The reference is computed on the CPU (the same on every device) and compared on the model's device; the
    prediction and the reference come back on the CPU."""
    x, t, ref = named.reference(nx, nt)
    X = x.repeat(len(t))[:, None]
    T = t.repeat_interleave(len(x))[:, None]
    pred = model.predict(X, T).detach().reshape(len(t), len(x), -1).permute(0, 2, 1).to(torch.float64)
    ref = ref.to(pred.device)
    # space-time as one 2D "field" per channel: global relative errors (PINNacle's L2RE)
    p, r = pred.permute(1, 0, 2)[None], ref.permute(1, 0, 2)[None]
    metrics = {"rel_l2": float(rel_l2(p, r, 2)), "rmse": float(rmse(p, r, 2)), "max_error": float(max_error(p, r, 2))}
    return metrics, pred.cpu(), ref.cpu()


def _plots(run_dir: Path, named, pred: torch.Tensor, ref: torch.Tensor, log: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dom = named.problem.domain
    extent = (dom.t_span[0], dom.t_span[1], dom.lower[0], dom.upper[0])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, data, title in zip(axes, (pred[:, 0], ref[:, 0], (pred - ref)[:, 0].abs()), ("PINN", "reference", "|error|")):
        im = ax.imshow(data.T.numpy(), origin="lower", aspect="auto", extent=extent, cmap="viridis" if title == "|error|" else "RdBu_r")
        ax.set(title=title, xlabel="t", ylabel="x")
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    atomic_write(run_dir / "solution.png", lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    offset = 0
    for phase in ("adam", "lbfgs"):
        recs = [r for r in log if r.get("phase") == phase]
        for key in sorted({k for r in recs for k in r if k.startswith("loss_")}):
            steps = [offset + r["step"] for r in recs if key in r]
            ax.semilogy(steps, [r[key] for r in recs if key in r], label=f"{key[5:]} ({phase})")
        if recs and phase == "adam":
            offset = recs[-1]["step"] + 1
    ax.set(xlabel="iteration (Adam, then L-BFGS)", ylabel="loss term")
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(run_dir / "loss_terms.png", lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


# keys that may change between a run and its resumption (they do not change what is computed; device: the same up
# to rounding, since a checkpoint loads on any device)
_RESUME_FREE = ("resume", "checkpoint_every", "run_dir", "name", "device")


def run(config: dict, run_dir: str | os.PathLike) -> dict:
    """Train the PINN a config describes, write the run folder ``run_dir``, return the metrics dict.

    Every ``checkpoint_every`` Adam steps (and at the end of Adam) the whole training state goes atomically to
    ``run_dir/checkpoint/state.pt``; ``resume: true`` continues from there (a crash during L-BFGS reruns L-BFGS
    from the end of Adam) and ends where an uninterrupted run ends."""
    from safetensors.torch import save_file

    from ..checkpoint import load_state, save_state

    run_dir = Path(run_dir)
    torch.manual_seed(int(config.get("seed", 0)))
    model, named = build(config)  # checks the config (device first) before anything is written
    optim = _section(config, "optim", OptimConfig)
    every = int(config.get("checkpoint_every", 1000))
    if every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0: only at the end of Adam), got {every}")
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {k: v for k, v in config.items() if k not in _RESUME_FREE}
    ckpt = run_dir / "checkpoint" / "state.pt"
    partial = run_dir / "train_log.jsonl.partial"
    log: list[dict] = []
    resume, wall_before, start_file = None, 0.0, None
    if config.get("resume"):
        if not ckpt.is_file():
            raise FileNotFoundError(f"resume: {ckpt} not found: {run_dir} has no checkpoint to continue "
                                    "(drop resume to start the run)")
        saved = load_state(ckpt)
        differ = sorted(k for k in set(saved["config"]) | set(spec) if saved["config"].get(k) != spec.get(k))
        if differ:
            raise ValueError(f"resume: {run_dir} was started with another config ({', '.join(differ)} differ); "
                             "resume with the same config, or start a new run (init_from can start from its weights)")
        model.load_state_dict(saved["weights"])
        model.load_training_state(saved["training"])
        torch.set_rng_state(saved["rng_torch"])
        resume, wall_before = saved["adam"], float(saved["wall_time_s"])
        start_file = saved["init_from"]
        if partial.exists():
            log = [r for r in (json.loads(line) for line in partial.read_text().splitlines() if line.strip())
                   if r.get("phase") == "adam" and r["step"] < resume["step"]]
    elif config.get("init_from"):
        start_file = str(init_from(model, config["init_from"]))
    _write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    start = time.perf_counter()

    def checkpoint(adam_state: dict) -> None:
        ckpt.parent.mkdir(exist_ok=True)
        save_state(ckpt, {"config": spec, "adam": adam_state, "training": model.training_state(),
                          "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                          "rng_torch": torch.get_rng_state(), "init_from": start_file,
                          "wall_time_s": wall_before + time.perf_counter() - start})

    with open(partial, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in log)

        def record(entry: dict) -> None:
            log.append(entry)
            fh.write(json.dumps(entry) + "\n")
            fh.flush()

        report = model.fit(optim, record, resume=resume, checkpoint=checkpoint, checkpoint_every=every)
        wall = wall_before + time.perf_counter() - start
    os.replace(partial, run_dir / "train_log.jsonl")

    ev = _section(config, "eval", _EvalConfig)
    test, pred, ref = evaluate(model, named, ev.nx, ev.nt)
    metrics = {"test": test, "wall_time_s": wall, "problem": config["problem"], "mode": config.get("mode", "forward"),
               "final_loss": log[-1]["loss"] if log else None}
    if start_file is not None:
        metrics["init_from"] = start_file
    if report is not None:
        metrics["lbfgs"] = dataclasses.asdict(report)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / "model.safetensors", lambda p: save_file(state, str(p)))
    _write_text(run_dir / "model.json", json.dumps({"config": config, "state_keys": sorted(state)}, indent=1))
    _plots(run_dir, named, pred, ref, log)
    _write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def load(run_dir: str | os.PathLike, device: str = "cpu") -> torch.nn.Module:
    """Rebuild the trained model of a run folder (``model.json`` + ``model.safetensors``) on ``device`` (``cpu``,
    ``cuda``, ``cuda:N`` or ``auto``, whichever device it was trained on)."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "model.json").read_text())
    model, _ = build({**spec["config"], "device": device})
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    return model


__all__ = ["run", "load", "build", "evaluate", "init_from", "MODES", "WEIGHTINGS"]
