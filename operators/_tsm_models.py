"""Learned-interpolation (LI) and temporal-stencil (TSM) models: a periodic CNN predicts stencil logits that the
finite-volume Navier-Stokes solver (:class:`pdeforge.solvers.fv.StaggeredNavierStokes2D`) uses for its advection.

- ``variant="li"`` (Kochkov et al. 2021): at every Runge-Kutta stage the CNN reads the stage velocity
  ``(B, 2, N, N)`` and returns the 8 stencils' logits.
- ``variant="tsm"`` (Sun et al. 2023): the CNN reads features of each cell's last ``history`` frames
  (``encoder="hippo"``: LagT coefficients, ``"frames"``: the raw stacked frames, the paper's ablation) and returns
  the logits of ``bundle`` consecutive solver steps at once (temporal bundling); all stages of a step share them.
- ``variant="coarse"``: no network, the solver's own van Leer scheme (equal to the learned module at zero logits).

Everything else (pressure projection, viscosity, drag, forcing, SSP-RK3) is the unchanged solver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..solvers.fv import FlowParameters, StaggeredGrid, StaggeredNavierStokes2D, VanLeerInterpolation
from ._tsm_hippo import FrameStackEncoder, HippoEncoder
from ._tsm_stencils import StencilInterpolation, logits_per_cell, prepare_stencils

VARIANTS = ("tsm", "li", "coarse")
ENCODERS = ("hippo", "frames")
MEMORIES = ("window", "running")
LI_CALLS = ("step", "stage")


@dataclass(frozen=True)
class CNNConfig:
    """Periodic CNN: ``layers`` 3x3 convolutions (circular padding), ``channels`` wide, ReLU between."""

    layers: int = 4
    channels: int = 64


@dataclass(frozen=True)
class TSMConfig:
    """What to build. ``history`` frames in (TSM), ``hippo_order`` LagT coefficients per component, ``bundle``
    solver steps per CNN call (TSM), stencil accuracy ``order`` (1: 15 logits per stencil, 120 per cell).
    ``li_calls``: LI's CNN reads the velocity once per solver step (``"step"``: 120 logits per cell per step, as
    Kochkov et al. and TSM's baseline, whose solver evaluates the convection once per step) or at each of the
    SSP-RK3 stages (``"stage"``: three calls per step).
    ``memory`` (TSM with ``encoder="hippo"``): ``"window"``, each CNN call reads the LagT features of the last
    ``history`` frames; ``"running"``, the LagT state is built from the ``history`` frames given and then updated
    with every predicted frame, never restarted (as the HiPPO cache in TSM's code, Edward-Sun/TSM-PDE), so its
    memory reaches back over the whole rollout."""

    variant: str = "tsm"
    encoder: str = "hippo"
    history: int = 16
    hippo_order: int = 32
    bundle: int = 4
    order: int = 1
    cnn: CNNConfig = CNNConfig()
    li_calls: str = "step"
    memory: str = "window"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.li_calls not in LI_CALLS:
            raise ValueError(f"li_calls must be one of {LI_CALLS}, got {self.li_calls!r}")
        if self.memory not in MEMORIES:
            raise ValueError(f"memory must be one of {MEMORIES}, got {self.memory!r}")
        if self.memory == "running" and not (self.variant == "tsm" and self.encoder == "hippo"):
            raise ValueError(f"memory 'running' is the HiPPO state of TSM (variant 'tsm', encoder 'hippo'), got "
                             f"variant {self.variant!r}, encoder {self.encoder!r}")
        if self.history < 1 or self.bundle < 1:
            raise ValueError(f"history and bundle must be >= 1, got {self.history} and {self.bundle}")

    @property
    def n_input_frames(self) -> int:
        """Frames a rollout needs before its first prediction (1 for LI and coarse)."""
        return self.history if self.variant == "tsm" else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TSMConfig":
        d = dict(d)
        d["cnn"] = CNNConfig(**d.get("cnn", {}))
        return cls(**d)


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


class _ScaledNet(nn.Module):
    """LI's logits function: the CNN on the velocity divided by a typical magnitude."""

    def __init__(self, net: nn.Module, scale: float) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, velocity: Tensor) -> Tensor:
        return self.net(velocity / self.scale)


class TemporalStencilModel(nn.Module):
    """A learned (or coarse) FV solver: ``rollout(frames (B, H, 2, N, N), n_steps) -> (B, n_steps, 2, N, N)``.

    Args:
        config: :class:`TSMConfig`.
        grid, flow: the coarse grid and physics of the solver.
        dt: solver time step (= the spacing of the frames in ``rollout``).
        velocity_scale: typical velocity magnitude, divides the network inputs.
    """

    def __init__(self, config: TSMConfig, grid: StaggeredGrid, flow: FlowParameters, dt: float,
                 velocity_scale: float = 1.0) -> None:
        super().__init__()
        self.config, self.dt, self.velocity_scale = config, dt, velocity_scale
        n_out = logits_per_cell(config.order)
        if config.variant == "coarse":
            self.net, self.encoder = None, None
            interp: nn.Module = VanLeerInterpolation()
        elif config.variant == "li":
            self.net, self.encoder = periodic_cnn(2, n_out, config.cnn), None
            # per stage: the interpolation calls the CNN itself; per step: rollout sets the logits once a step
            per_stage = config.li_calls == "stage"
            interp = StencilInterpolation(_ScaledNet(self.net, velocity_scale) if per_stage else None, config.order)
        else:
            if config.encoder == "hippo":
                self.encoder = HippoEncoder(config.hippo_order, config.history, velocity_scale)
                n_in = 2 * config.hippo_order
            else:
                self.encoder = FrameStackEncoder(config.history, velocity_scale)
                n_in = 2 * config.history
            self.net = periodic_cnn(n_in, config.bundle * n_out, config.cnn)
            interp = StencilInterpolation(None, config.order)
        self.solver = StaggeredNavierStokes2D(grid, flow, interpolation=interp)

    def rollout(self, frames: Tensor, n_steps: int, step: Callable[[Tensor, float], Tensor] | None = None) -> Tensor:
        """Predict ``n_steps`` solver steps after the last of ``frames`` ``(B, H, 2, N, N)`` (``H >=`` the
        model's ``config.n_input_frames``; TSM uses the last ``history``). Returns ``(B, n_steps, 2, N, N)``.
        ``step``: the solver step to call, ``self.solver.step`` by default (:meth:`compiled_step` gives a
        compiled one)."""
        step = self.solver.step if step is None else step
        need = self.config.n_input_frames
        if frames.ndim != 5 or frames.shape[1] < need or frames.shape[2] != 2:
            raise ValueError(f"expected frames (B, >= {need}, 2, N, N), got {tuple(frames.shape)}"
                             + (": add a time axis with v[:, None]" if frames.ndim == 4 else ""))
        v = frames[:, -1]
        out: list[Tensor] = []
        interp = self.solver.interpolation
        if self.config.variant != "tsm":
            per_step = self.config.variant == "li" and self.config.li_calls == "step"
            for _ in range(n_steps):
                if per_step:
                    interp.logits = self.net(v / self.velocity_scale)
                v = step(v, self.dt)
                out.append(v)
            if per_step:
                interp.logits = None
            return torch.stack(out, dim=1)
        running = self.config.memory == "running"
        hist = list(frames[:, -need:].unbind(1))
        state = self.encoder.start(frames[:, -need:]) if running else None
        n_logits = logits_per_cell(self.config.order)
        while len(out) < n_steps:
            features = self.encoder.features(state) if running else self.encoder(torch.stack(hist[-need:], dim=1))
            # split, not sliced: the backward of a slice zero-fills the whole bundle's logits at each step
            logits = self.net(features).split(n_logits, dim=1)
            for s in range(min(self.config.bundle, n_steps - len(out))):
                interp.logits = logits[s]
                v = step(v, self.dt)
                out.append(v)
                if running:
                    state = self.encoder.update(state, v)
                else:
                    hist.append(v)
        interp.logits = None
        return torch.stack(out, dim=1)

    def compiled_step(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                      **options) -> Callable[[Tensor, float], Tensor]:
        """``torch.compile(self.solver.step)`` for ``rollout(..., step=)``: one solver step as one graph (the
        stencils, limiter, advection and both projections of all three SSP-RK3 stages), for velocities of
        ``dtype`` on ``device``. Shapes are static (``dynamic=False``); another batch size or grid compiles again.
        The compiled step agrees with the eager one to rounding (other fused arithmetic), not bitwise. In training it
        compiles twice: for the rollout's first step (frames without gradient) and for the steps after it."""
        self.solver.prepare(dtype, device)
        if isinstance(self.solver.interpolation, StencilInterpolation):
            prepare_stencils(self.config.order, dtype, device)
        return torch.compile(self.solver.step, dynamic=False, **options)

    def forward(self, frames: Tensor, n_steps: int) -> Tensor:
        return self.rollout(frames, n_steps)
