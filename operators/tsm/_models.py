"""The coarse solver, learned interpolation (LI) and temporal stencil modelling (TSM): finite-volume Navier-Stokes
solvers (:class:`pdeforge.solvers.fv.StaggeredNavierStokes2D`) whose advection face values come from stencils a
periodic CNN predicts.

- :class:`CoarseSolver`: no network, the solver's own van Leer scheme (what the learned models equal at zero logits).
- :class:`LearnedInterpolation` (Kochkov et al. 2021): the CNN reads the current velocity ``(B, 2, N, N)`` and returns
  the 8 stencils' logits, once per solver step (``calls="step"``, the papers) or at each Runge-Kutta stage
  (``calls="stage"``).
- :class:`TemporalStencil` (Sun et al. 2023): the CNN reads features of each cell's last ``history`` frames
  (``encoder="hippo"``: LagT coefficients, ``"frames"``: the raw stacked frames, the paper's ablation) and returns
  the logits of ``bundle`` consecutive solver steps at once (temporal bundling); all stages of a step share them.

Each model's solver step takes the logits its CNN computed as an argument (``solver_step(velocity, logits)``), which
hands the solver the face values of that step; nothing is stored on the solver between steps. Everything else
(pressure projection, viscosity, drag, forcing, SSP-RK3) is the unchanged solver.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...solvers.fv import FaceValues, FlowParameters, StaggeredGrid, StaggeredNavierStokes2D
from ._hippo import FrameStackEncoder, HippoEncoder
from ._stencils import faces_from_logits, logits_per_cell, prepare_stencils

__all__ = [
    "CNNConfig",
    "periodic_cnn",
    "AbstractStencilModel",
    "CoarseSolver",
    "LearnedInterpolation",
    "TemporalStencil",
    "Step",
]

#: a solver step as a rollout calls it: ``(velocity (B, 2, N, N), logits (B, 8 n_logits, N, N) | None) -> velocity``
Step = Callable[[Tensor, "Tensor | None"], Tensor]


@dataclass(frozen=True)
class CNNConfig:
    """Periodic CNN: ``layers`` 3x3 convolutions (circular padding), ``channels`` wide, ReLU between."""

    layers: int = 4
    channels: int = 64


def periodic_cnn(in_channels: int, out_channels: int, cfg: CNNConfig) -> nn.Sequential:
    """``layers`` circular 3x3 convolutions; the last one starts at zero so the model starts as the base scheme."""
    mods: list[nn.Module] = []
    c = in_channels
    for i in range(cfg.layers):
        last = i == cfg.layers - 1
        conv = nn.Conv2d(c, out_channels if last else cfg.channels, 3, padding=1, padding_mode="circular")
        if last:
            nn.init.zeros_(conv.weight), nn.init.zeros_(conv.bias)
        mods += [conv] if last else [conv, nn.ReLU()]
        c = cfg.channels
    return nn.Sequential(*mods)


class AbstractStencilModel(nn.Module, abc.ABC):
    """A (learned) FV solver: ``rollout(frames (B, H, 2, N, N), n_steps) -> (B, n_steps, 2, N, N)``.

    Args:
        grid, flow: the coarse grid and physics of the solver.
        dt: solver time step (= the spacing of the frames in ``rollout``).
        velocity_scale: typical velocity magnitude, divides the network inputs.
        order: stencil accuracy order (1: 15 logits per stencil, 120 per cell).
    """

    #: frames a rollout needs before its first prediction
    n_input_frames: int = 1

    def __init__(
        self, grid: StaggeredGrid, flow: FlowParameters, dt: float, velocity_scale: float = 1.0, order: int = 1
    ) -> None:
        super().__init__()
        self.dt, self.velocity_scale, self.order = dt, velocity_scale, order
        self.solver = StaggeredNavierStokes2D(grid, flow)  # its own interpolation: van Leer, the coarse scheme

    def faces(self, logits: Tensor | None) -> Callable[[Tensor], FaceValues] | None:
        """The face values of one solver step from ``logits`` (None: the solver's van Leer scheme)."""
        if logits is None:
            return None
        return lambda velocity: faces_from_logits(velocity, logits, self.order)

    def solver_step(self, velocity: Tensor, logits: Tensor | None) -> Tensor:
        """One solver step of ``dt`` with the face values of ``logits`` ``(B, 8 n_logits, N, N)``."""
        return self.solver.step(velocity, self.dt, self.faces(logits))

    @abc.abstractmethod
    def advance(self, frames: Tensor, n_steps: int, step: Step) -> list[Tensor]:
        """The ``n_steps`` velocities after the last of ``frames``, each from ``step(velocity, logits)``."""

    def rollout(self, frames: Tensor, n_steps: int, step: Step | None = None) -> Tensor:
        """Predict ``n_steps`` solver steps after the last of ``frames`` ``(B, H, 2, N, N)`` (``H >=``
        ``n_input_frames``; TSM uses the last ``history``). Returns ``(B, n_steps, 2, N, N)``. ``step``: the solver
        step to call, :meth:`solver_step` by default (:meth:`compiled_step` gives a compiled one)."""
        need = self.n_input_frames
        if frames.ndim != 5 or frames.shape[1] < need or frames.shape[2] != 2:
            raise ValueError(
                f"expected frames (B, >= {need}, 2, N, N), got {tuple(frames.shape)}"
                + (": add a time axis with v[:, None]" if frames.ndim == 4 else "")
            )
        return torch.stack(self.advance(frames, n_steps, self.solver_step if step is None else step), dim=1)

    def compiled_step(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", **options) -> Step:
        """``torch.compile(self.solver_step)`` for ``rollout(..., step=)``: one solver step as one graph (the
        stencils, limiter, advection and both projections of all three SSP-RK3 stages), for velocities of
        ``dtype`` on ``device``. Shapes are static (``dynamic=False``); another batch size or grid compiles again.
        The compiled step agrees with the eager one to rounding (other fused arithmetic), not bitwise. In training it
        compiles twice: for the rollout's first step (frames without gradient) and for the steps after it."""
        self.solver.prepare(dtype, device)
        prepare_stencils(self.order, dtype, device)
        return torch.compile(self.solver_step, dynamic=False, **options)

    def forward(self, frames: Tensor, n_steps: int, step: Step | None = None) -> Tensor:
        return self.rollout(frames, n_steps, step)


class CoarseSolver(AbstractStencilModel):
    """The FV solver with its van Leer scheme on the coarse grid: the baseline, no parameters."""

    def advance(self, frames: Tensor, n_steps: int, step: Step) -> list[Tensor]:
        v, out = frames[:, -1], []
        for _ in range(n_steps):
            v = step(v, None)
            out.append(v)
        return out


class LearnedInterpolation(AbstractStencilModel):
    """LI (Kochkov et al. 2021): a periodic CNN on the velocity predicts the stencils.

    ``calls``: ``"step"``, the CNN reads the velocity once per solver step (120 logits per cell per step, as Kochkov
    et al. and TSM's baseline, whose solver evaluates the convection once per step); ``"stage"``, at each of the
    SSP-RK3 stages (three calls per step)."""

    def __init__(
        self,
        grid: StaggeredGrid,
        flow: FlowParameters,
        dt: float,
        velocity_scale: float = 1.0,
        order: int = 1,
        cnn: CNNConfig = CNNConfig(),
        calls: str = "step",
    ) -> None:
        super().__init__(grid, flow, dt, velocity_scale, order)
        if calls not in ("step", "stage"):
            raise ValueError(f"LearnedInterpolation calls {calls!r}: expected 'step' or 'stage'")
        self.calls = calls
        self.net = periodic_cnn(2, logits_per_cell(order), cnn)

    def faces(self, logits: Tensor | None) -> Callable[[Tensor], FaceValues] | None:
        if self.calls == "step":
            return super().faces(logits)
        return lambda velocity: faces_from_logits(velocity, self.net(velocity / self.velocity_scale), self.order)

    def advance(self, frames: Tensor, n_steps: int, step: Step) -> list[Tensor]:
        v, out = frames[:, -1], []
        for _ in range(n_steps):
            v = step(v, self.net(v / self.velocity_scale) if self.calls == "step" else None)
            out.append(v)
        return out


class TemporalStencil(AbstractStencilModel):
    """TSM (Sun et al. 2023): a periodic CNN on features of the last ``history`` frames predicts the stencils of
    ``bundle`` solver steps at once.

    ``encoder``: ``"hippo"``, ``hippo_order`` LagT coefficients per velocity component; ``"frames"``, the frames
    stacked. ``memory`` (with ``encoder="hippo"``): ``"window"``, each CNN call reads the LagT features of the last
    ``history`` frames; ``"running"``, the LagT state is built from the ``history`` frames given and then updated
    with every predicted frame, never restarted (as the HiPPO cache in TSM's code, Edward-Sun/TSM-PDE), so its
    memory reaches back over the whole rollout."""

    def __init__(
        self,
        grid: StaggeredGrid,
        flow: FlowParameters,
        dt: float,
        velocity_scale: float = 1.0,
        order: int = 1,
        cnn: CNNConfig = CNNConfig(),
        history: int = 16,
        encoder: str = "hippo",
        hippo_order: int = 32,
        bundle: int = 4,
        memory: str = "window",
    ) -> None:
        super().__init__(grid, flow, dt, velocity_scale, order)
        if encoder not in ("hippo", "frames"):
            raise ValueError(f"TemporalStencil encoder {encoder!r}: expected 'hippo' or 'frames'")
        if memory not in ("window", "running"):
            raise ValueError(f"TemporalStencil memory {memory!r}: expected 'window' or 'running'")
        if memory == "running" and encoder != "hippo":
            raise ValueError(f"memory 'running' is the HiPPO state of TSM (encoder 'hippo'), got encoder {encoder!r}")
        if history < 1 or bundle < 1:
            raise ValueError(f"history and bundle must be >= 1, got {history} and {bundle}")
        self.n_input_frames, self.bundle, self.memory = history, bundle, memory
        if encoder == "hippo":
            self.encoder: nn.Module = HippoEncoder(hippo_order, history, velocity_scale)
            n_in = 2 * hippo_order
        else:
            self.encoder = FrameStackEncoder(history, velocity_scale)
            n_in = 2 * history
        self.net = periodic_cnn(n_in, bundle * logits_per_cell(order), cnn)

    def advance(self, frames: Tensor, n_steps: int, step: Step) -> list[Tensor]:
        need, running = self.n_input_frames, self.memory == "running"
        v, out = frames[:, -1], []
        hist = list(frames[:, -need:].unbind(1))
        state = self.encoder.start(frames[:, -need:]) if running else None
        n_logits = logits_per_cell(self.order)
        while len(out) < n_steps:
            features = self.encoder.features(state) if running else self.encoder(torch.stack(hist[-need:], dim=1))
            # split, not sliced: the backward of a slice zero-fills the whole bundle's logits at each step
            logits = self.net(features).split(n_logits, dim=1)
            for s in range(min(self.bundle, n_steps - len(out))):
                v = step(v, logits[s])
                out.append(v)
                if running:
                    state = self.encoder.update(state, v)
                else:
                    hist.append(v)
        return out
