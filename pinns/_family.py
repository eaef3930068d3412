"""The PINN family on the run skeleton: ``pdeforge train configs/pinn_burgers.yaml``.

Each optimiser step of :func:`pdeforge.training.fit` is one Adam iteration on every collocation point (the "batch"
is the step's index: points are resampled, adapted (RAR/RAD) and loss weights updated inside :meth:`PINNFamily.loss`
at the cadence they need, from the PINN's point generator, which the RNG bundle saves). The points, the loss weights
and the causal tolerance are the family's training state, saved in each checkpoint, so a resumed run ends where an
uninterrupted one ends. L-BFGS runs in :meth:`PINNFamily.finish` after the Adam steps; its report goes to
``metrics.json["finish"]``. One process (PINNs are not batched: torchrun is refused).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..metrics import max_error, rel_l2, rmse
from ..training.config import build_config, config_to_dict
from ..training.loop import AbstractFamily, Environment
from ..training.run_folder import RunFolder
from ._config import PINNConfig
from ._forward import PINN, SamplingConfig
from ._lagrangian import LagrangianPINN
from ._networks import NetworkConfig
from ._optim import OptimConfig, numbers
from ._plots import plot_loss_terms, plot_space_time
from ._problems import PROBLEMS, NamedProblem
from ._weighting import (
    AbstractWeighting,
    AmplificationWeights,
    CausalWeights,
    FixedWeights,
    LearningRateAnnealingWeights,
    NTKWeights,
    SelfAdaptiveWeights,
)

__all__ = ["PINNFamily", "build_pinn", "reference_errors"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _check(config: PINNConfig, where: str = "pinn config") -> None:
    """The one-line errors of a config the dataclass checks cannot see (options that exclude each other)."""
    data, loss = config.data, config.loss
    if data.root or data.preset or data.preset_options:
        raise ValueError(
            f"{where}: data.root / data.preset: a PINN trains on collocation points of its problem, not "
            "on a dataset; leave them empty and set the points in data (n_residual, method, ...)"
        )
    if config.optim.steps < 1:
        raise ValueError(f"{where}: optim.steps {config.optim.steps}: expected >= 1 Adam iterations")
    if config.optim.grad_accum != 1:
        raise ValueError(
            f"{where}: optim.grad_accum {config.optim.grad_accum}: expected 1 (every step uses all points)"
        )
    if config.optim.amp != "none":
        raise ValueError(
            f"{where}: optim.amp {config.optim.amp!r}: expected 'none' (PINN residuals need full "
            "precision; model.dtype float32 is the cheaper choice)"
        )
    if loss.causal_chunks == 1:
        raise ValueError(f"{where}: loss.causal_chunks 1: expected 0 (off) or >= 2")
    if not loss.causal_epsilon or any(not isinstance(e, (int, float)) or e < 0 for e in loss.causal_epsilon):
        raise ValueError(f"{where}: loss.causal_epsilon {loss.causal_epsilon!r}: expected a list of numbers >= 0")
    if not 0 <= loss.alpha < 1:
        raise ValueError(f"{where}: loss.alpha {loss.alpha}: expected 0 <= alpha < 1")
    if config.model.mode == "lagrangian" and (loss.causal_chunks or loss.amplification or loss.weighting != "fixed"):
        raise ValueError(
            f"{where}: loss: causal, amplification and adaptive weights are for model.mode forward; "
            "the Lagrangian PINN has none"
        )
    if loss.weighting == "self_adaptive" and (data.resample_every or data.adaptive != "none"):
        raise ValueError(
            f"{where}: loss.weighting self_adaptive needs fixed residual points: set data.resample_every "
            "0 and data.adaptive none"
        )


def _weighting(config: PINNConfig, hard_initial: bool, device: torch.device) -> AbstractWeighting:
    loss, weights = config.loss, dict(config.loss.weights)
    if loss.weighting == "annealing":
        return LearningRateAnnealingWeights(loss.every, loss.alpha, weights)
    if loss.weighting == "ntk":
        return NTKWeights(loss.every, loss.alpha, loss.n_points, weights)
    if loss.weighting == "self_adaptive":
        sizes = {"residual": config.data.n_residual, **({} if hard_initial else {"initial": config.data.n_initial})}
        return SelfAdaptiveWeights(sizes, lr=loss.sa_lr, weights=weights, device=device)
    return FixedWeights(weights)


def build_pinn(config: PINNConfig, device: torch.device | str = "cpu") -> PINN | LagrangianPINN:
    """The untrained PINN a config describes, on ``device`` (weights and points drawn on the CPU: the same on every
    device)."""
    _check(config)
    device = torch.device(device)
    named = PROBLEMS[config.problem]()
    m, d = config.model, config.data
    network = NetworkConfig(
        width=m.width,
        depth=m.depth,
        harmonics=m.harmonics,
        fourier_features=m.fourier_features,
        fourier_sigma=m.fourier_sigma,
        rwf=m.rwf,
    )
    seed = config.run.seed
    if m.mode == "lagrangian":
        return LagrangianPINN(named.problem, network, d.n_residual, d.n_initial, seed, device)
    sampling = SamplingConfig(
        d.method,
        d.n_residual,
        d.n_initial,
        d.n_boundary,
        d.resample_every,
        None if d.adaptive == "none" else d.adaptive,
        d.adaptive_every,
        d.n_candidates,
        d.rar_k,
        d.rad_k,
        d.rad_c,
    )
    loss = config.loss
    causal = CausalWeights(loss.causal_chunks, list(loss.causal_epsilon)) if loss.causal_chunks else None
    amplification = AmplificationWeights(loss.amplification) if loss.amplification else None
    return PINN(
        named.problem,
        network,
        sampling,
        _weighting(config, named.problem.hard_initial, device),
        causal,
        seed,
        _DTYPES[m.dtype],
        amplification,
        device,
    )


def reference_errors(
    model: nn.Module, named: NamedProblem, nx: int = 256, nt: int = 101
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Errors against the problem's reference on an ``nx x nt`` grid: ``(metrics, prediction (nt, C, nx),
    reference)``. Space-time is one 2D field per channel: ``rel_l2`` is the global relative L2 error (PINNacle's
    L2RE), with ``rmse`` and ``max_error``. The reference is computed on the CPU and compared on the model's
    device; prediction and reference come back on the CPU."""
    x, t, ref = named.reference(nx, nt)
    X = x.repeat(len(t))[:, None]
    T = t.repeat_interleave(len(x))[:, None]
    pred = model.predict(X, T).detach().reshape(len(t), len(x), -1).permute(0, 2, 1).to(torch.float64)
    ref = ref.to(pred.device)
    p, r = pred.permute(1, 0, 2)[None], ref.permute(1, 0, 2)[None]
    metrics = {"rel_l2": float(rel_l2(p, r, 2)), "rmse": float(rmse(p, r, 2)), "max_error": float(max_error(p, r, 2))}
    return metrics, pred.cpu(), ref.cpu()


class PINNFamily(AbstractFamily):
    """PINNs (forward or Lagrangian) on a named problem. See the module docstring for how a run goes."""

    name = "pinn"
    config_class = PINNConfig

    def __init__(self, config: PINNConfig, env: Environment) -> None:
        # checked here, before the run folder is claimed: a config refused leaves nothing behind
        _check(config)
        if env.world > 1:
            raise ValueError("pinn: a PINN run is one process (all points in every step); run it without torchrun")
        super().__init__(config, env)

    # -- data and model -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """PINNs open no data: the points belong to the model, drawn from the run's seed."""
        self.named = PROBLEMS[self.config.problem]()
        self.pinn: PINN | LagrangianPINN | None = None
        self.history: list[dict[str, Any]] = []  # per-term loss records (loss_terms.png)
        self._cache: tuple[dict, torch.Tensor, torch.Tensor] | None = None

    def build_model(self) -> nn.Module:
        # built where it trains: its points are tensors the optimiser does not move (drawn on the CPU all the same)
        self.pinn = build_pinn(self.config, self.env.device)
        return self.pinn

    def parameter_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return model.parameter_groups()

    def init_from(self, model: nn.Module, source: str) -> str:
        """The weights of a PINN run folder (or a ``.safetensors`` file): every tensor must match by name and shape
        (the same ``model`` section); values are cast to the model's dtype."""
        from ..checkpoint import load_weights

        path = Path(source)
        file = path / "model.safetensors" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found (expected a PINN run folder or a .safetensors file)")
        state = load_weights(file)
        own = model.state_dict()
        problems = [f"missing {k}" for k in sorted(set(own) - set(state))]
        problems += [f"unexpected {k}" for k in sorted(set(state) - set(own))]
        problems += [
            f"{k}: shape {tuple(state[k].shape)}, this network has {tuple(v.shape)}"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ]
        if problems:
            raise ValueError(
                f"{file} does not fit this config's network ({'; '.join(problems[:5])}"
                f"{'; ...' if len(problems) > 5 else ''}): use the model section it was trained with"
            )
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
        return f"all {len(own)} tensors loaded from {file}"

    # -- the Adam steps -------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return self.config.optim.steps

    def train_batches(self, epoch: int, start: int) -> Iterator[int]:
        """The Adam steps' indices from ``start`` on: each step uses every point (one epoch is the whole budget)."""
        yield from range(start, self.config.optim.steps)

    def loss(self, net: nn.Module, batch: int) -> torch.Tensor:
        """The weighted PINN loss at Adam step ``batch`` (points adapted and weights updated first, as due)."""
        loss, record = net.objective(batch)
        last = self.config.optim.steps - 1
        if batch % self.config.loss.log_every == 0 or batch == last:
            self.history.append({"phase": "adam", "step": batch, "loss": float(loss.detach()), **numbers(record)})
        return loss

    def generators(self) -> dict[str, Any]:
        gen = getattr(self.pinn, "generator", None)  # the forward PINN's points; the Lagrangian one's are fixed
        return {"points": gen} if gen is not None else {}

    def training_state(self) -> dict[str, Any]:
        return {"model": self.pinn.training_state(), "history": [dict(r) for r in self.history]}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.pinn.load_training_state(state["model"])
        self.history = [dict(r) for r in state["history"]]

    def finish(self, model: nn.Module) -> dict[str, Any]:
        """L-BFGS (``lbfgs.iters``, at most ``run.max_steps`` in a smoke run; none: ``{}``) on the last points with
        frozen weights; its report."""
        lb, cap = self.config.lbfgs, self.config.run.max_steps
        iters = min(lb.iters, cap) if cap else lb.iters
        if not iters:
            return {}
        optim = OptimConfig(
            lbfgs_iters=iters,
            lbfgs_lr=lb.lr,
            history_size=lb.history_size,
            tolerance_grad=lb.tolerance_grad,
            tolerance_change=lb.tolerance_change,
            chunk=lb.chunk,
        )
        model.train()
        report = model.lbfgs(optim, lambda r: self.history.append({k: v for k, v in r.items() if k != "time"}))
        return {"lbfgs": dataclasses.asdict(report)}

    # -- evaluation, model, plots ---------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str) -> dict[str, Any]:
        """``"test"``: ``rel_l2``, ``rmse``, ``max_error`` against the problem's reference on the ``eval`` grid
        (:func:`reference_errors`). ``"valid"``: ``{}`` (a PINN has no valid split; the last weights are kept)."""
        if split != "test":
            return {}
        self._cache = reference_errors(model, self.named, self.config.eval.nx, self.config.eval.nt)
        return dict(self._cache[0])

    def envelope(self, model: nn.Module) -> dict[str, Any]:
        """The model section, the problem and the final number of residual points; no dataset metadata (a PINN is
        trained on no dataset)."""
        return {
            "model_spec": {
                "problem": self.config.problem,
                **config_to_dict(self.config.model),
                "n_residual_points": int(model.points[0].shape[0]),
            },
            "metadata": None,
            "stats": None,
        }

    @classmethod
    def rebuild(cls, envelope: Mapping[str, Any]) -> nn.Module:
        """The PINN of a run folder's config (on the CPU; its points and weights are drawn again from the seed)."""
        return build_pinn(build_config(PINNConfig, envelope["config"], where="model.json"), "cpu")

    def plots(self, model: nn.Module, run: RunFolder, metrics: Mapping[str, Any]) -> None:
        """``solution.png`` (prediction, reference, |error| over x and t) and ``loss_terms.png`` (each term per
        iteration, Adam then L-BFGS; drawn by training only: a saved run keeps no per-term history)."""
        _, pred, ref = self._cache or reference_errors(model, self.named, self.config.eval.nx, self.config.eval.nt)
        dom = self.named.problem.domain
        plot_space_time(
            {"PINN": pred[:, 0], "reference": ref[:, 0], "|error|": (pred - ref)[:, 0].abs()},
            (dom.t_span[0], dom.t_span[1], dom.lower[0], dom.upper[0]),
            run.plot_path("solution.png"),
        )
        if self.history:
            plot_loss_terms(self.history, run.plot_path("loss_terms.png"))

    def summary(self, metrics: Mapping[str, Any]) -> str:
        line = f"{self.config.problem}: test rel L2 {metrics['test']['rel_l2']:.3e}"
        lb = metrics.get("finish", {}).get("lbfgs")
        return line + (f"; L-BFGS: {lb['reason']} after {lb['iterations']} iterations" if lb else "")
