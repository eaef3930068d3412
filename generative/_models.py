"""A conditional U-Net for generative next-step models: the ConvNeXt U-Net of ``operators/_unet.py`` with the
diffusion time added to every stage.

The network maps ``(B, C_x, *space)`` (the noisy next frame(s), stacked on channels), the conditioning
``(B, C_c, *space)`` (the previous frames, and the grid when asked) and a time ``t: (B,)`` in [0, 1] to
``(B, C_x, *space)`` (the noise, the velocity or the clean frame, as the objective says). The time enters as in
DDPM (Ho et al. 2020, arXiv:2006.11239): a sinusoidal embedding of ``1000 t`` (Vaswani et al. 2017), an MLP, and one
linear map per stage whose output is added to the stage's features, channel by channel, before its blocks::

    e = MLP(sin/cos(1000 t * w_j)),   h_stage <- h_stage + W_stage e  (broadcast over space)

The U-Net's own modules (``in_proj``, ``encoder``, ``down``, ``neck``, ``up``, ``fuse``, ``decoder``, ``out_proj``)
are used as they are: this module composes a :class:`~pdeforge.operators._unet.UNetConvNeXt` and runs its stages in
the same order, with the time added in between.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..operators._unet import UNetConfig, UNetConvNeXt, pad_axes
from ._config import OBJECTIVES, SCHEDULES

__all__ = ["ConditionalUNetConfig", "ConditionalUNet", "time_embedding"]


def time_embedding(t: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal embedding ``(B, dim)`` of ``scale * t`` for ``t: (B,)``: ``[sin(s t w_j), cos(s t w_j)]`` with
    frequencies ``w_j = 10000^(-j / (dim/2))``, ``j = 0 .. dim/2 - 1`` (``dim`` even)."""
    if dim % 2:
        raise ValueError(f"time_embedding: dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    arg = scale * t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


@dataclass(frozen=True)
class ConditionalUNetConfig:
    """Sizes of :class:`ConditionalUNet`.

    Attributes:
        unet: the U-Net's sizes (:class:`~pdeforge.operators._unet.UNetConfig`; ``layer_scale_init`` 0.1 here by
            default, so the blocks are not near-identity at the start, which a denoiser learns faster from).
        time_dim: width of the sinusoidal time embedding and its MLP.
    """

    unet: UNetConfig = UNetConfig(init_features=16, n_stages=3, layer_scale_init=0.1)
    time_dim: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {"unet": asdict(self.unet), "time_dim": self.time_dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConditionalUNetConfig:
        unknown = set(d.get("unet", {})) - set(UNetConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"model.unet: unknown keys {sorted(unknown)}; "
                f"expected a subset of {sorted(UNetConfig.__dataclass_fields__)}"
            )
        return cls(unet=UNetConfig(**d.get("unet", {})), time_dim=int(d.get("time_dim", 64)))


class ConditionalUNet(nn.Module):
    """``(x (B, C_x, *space), cond (B, C_c, *space), t (B,)) -> (B, C_x, *space)``; see the module docstring.

    Args:
        config: sizes (:class:`ConditionalUNetConfig`).
        x_channels: channels of the generated frame(s) ``C_x`` (frames out x fields).
        cond_channels: channels of the conditioning ``C_c``.
        periodic: one flag per spatial axis (1D or 2D).
    """

    def __init__(
        self, config: ConditionalUNetConfig, x_channels: int, cond_channels: int, periodic: tuple[bool, ...]
    ) -> None:
        super().__init__()
        self.x_channels, self.cond_channels = x_channels, cond_channels
        self.unet = UNetConvNeXt(config.unet, x_channels + cond_channels, x_channels, periodic)
        self.time_dim = config.time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(config.time_dim, 4 * config.time_dim), nn.GELU(), nn.Linear(4 * config.time_dim, config.time_dim)
        )
        widths = [config.unet.init_features * 2**i for i in range(config.unet.n_stages + 1)]
        # one projection per encoder stage, the neck, and each decoder stage (coarse to fine)
        self.to_encoder = nn.ModuleList(nn.Linear(config.time_dim, w) for w in widths[:-1])
        self.to_neck = nn.Linear(config.time_dim, widths[-1])
        self.to_decoder = nn.ModuleList(nn.Linear(config.time_dim, w) for w in reversed(widths[:-1]))

    def forward(self, x: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        """x: (B, C_x, *space), cond: (B, C_c, *space), t: (B,) in [0, 1] -> (B, C_x, *space)."""
        net = self.unet
        n = len(net.periodic)
        if x.ndim != n + 2 or cond.shape[0] != x.shape[0] or cond.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"ConditionalUNet: expected x (B, {self.x_channels}, *space) and "
                f"cond (B, {self.cond_channels}, *space) "
                f"with {n} spatial axes, got {tuple(x.shape)} and {tuple(cond.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"ConditionalUNet: expected t of shape ({x.shape[0]},), got {tuple(t.shape)}")
        emb = self.time_mlp(time_embedding(t, self.time_dim).to(x.dtype))

        def add(h: Tensor, proj: nn.Linear) -> Tensor:
            return h + proj(emb).reshape(*emb.shape[:1], -1, *(1,) * n)

        space = tuple(x.shape[-n:])
        net.check_size(space)
        pads = tuple(((-s) % net.factor // 2, (-s) % net.factor - (-s) % net.factor // 2) for s in space)
        h = net.in_proj(pad_axes(torch.cat([x, cond], dim=1), pads, net.periodic, fill="replicate"))
        skips = []
        for enc, down, proj in zip(net.encoder, net.down, self.to_encoder):
            h = enc(add(h, proj))
            skips.append(h)
            h = down(h)
        h = net.neck(add(h, self.to_neck))
        for up, fuse, dec, skip, proj in zip(net.up, net.fuse, net.decoder, reversed(skips), self.to_decoder):
            h = dec(add(fuse(torch.cat([up(h), skip], dim=1)), proj))
        h = net.out_proj(h)
        crop = (Ellipsis, *[slice(left, left + size) for (left, _), size in zip(pads, space)])
        return h[crop]


# ------------------------------------------------------------------------------------------------------------
# the next-step model: a network, the channel layout, and how it is trained and sampled
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffusionMethod:
    """Conditional diffusion or flow matching of the next frame(s) ``x0`` given the conditioning ``c``.

    Training (one draw of ``t`` and ``eps ~ N(0, I)`` per sample; ``x_t = alpha(t) x0 + sigma(t) eps``)::

        noise:  || eps_theta(x_t, c, t) - eps ||^2                          (Ho et al. 2020)
        v:      || v_theta(x_t, c, t) - (alpha eps - sigma x0) ||^2         (Salimans & Ho 2022, arXiv:2202.00512)
        flow:   || v_theta(x_t, c, t) - (eps - x0) ||^2,  x_t = (1 - t) x0 + t eps   (Lipman et al. 2023)

    with ``t ~ U(t_min, t_max)`` (VP) or ``U(0, 1)`` (flow). Sampling integrates from ``x_T ~ N(0, I)`` with
    :func:`pdeforge.generative.sample` (``sampler``, ``steps``); a v-prediction is turned into the noise prediction
    ``eps = (alpha v + sigma x_t) / (alpha^2 + sigma^2)`` before the sampler sees it.

    Attributes:
        objective: ``noise`` | ``v`` | ``flow``.
        schedule: ``vp_linear`` (beta 0.1 -> 20) | ``vp_cosine`` | ``flow`` (flow needs objective flow).
        sampler: a method of :data:`pdeforge.generative.METHODS` (flow: ``euler`` or ``heun``).
        steps: sampler steps (a 2nd-order method evaluates the network about once per step; see the sampler).
        t_min: smallest training time of a VP schedule (the largest is the schedule's ``t_max``).
    """

    objective: str = "noise"
    schedule: str = "vp_linear"
    sampler: str = "dpm_solver++2m"
    steps: int = 20
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"diffusion.objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"diffusion.schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if (self.objective == "flow") != (self.schedule == "flow"):
            raise ValueError(
                f"diffusion.objective {self.objective} with diffusion.schedule {self.schedule}: flow matching needs "
                "objective flow and schedule flow together"
            )
        if self.schedule == "flow" and self.sampler not in ("euler", "heun"):
            raise ValueError(f"diffusion.sampler {self.sampler!r}: a flow schedule is sampled with euler or heun")

    def make_schedule(self) -> Any:
        from . import FlowSchedule, VPSchedule

        if self.schedule == "vp_linear":
            return VPSchedule.linear(beta_min=0.1, beta_max=20.0)
        if self.schedule == "vp_cosine":
            return VPSchedule.cosine()
        return FlowSchedule()

    def loss_terms(self, net: nn.Module, x0: Tensor, cond: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Per-sample loss ``(B,)`` (mean over channels and space) at times ``t: (B,)`` with ``noise`` like ``x0``."""
        schedule = self.make_schedule()
        xt = schedule.perturb(x0, t, noise)
        out = net(xt, cond, t)
        if self.objective == "noise":
            target = noise
        elif self.objective == "v":
            a, s = (_bcast(f(t), x0) for f in (schedule.alpha, schedule.sigma))
            target = a * noise - s * x0
        else:
            target = noise - x0
        return ((out.float() - target.float()) ** 2).flatten(1).mean(1)

    def loss(self, net: nn.Module, x0: Tensor, cond: Tensor) -> Tensor:
        """The scalar training loss of a batch (times and noise from torch's global generator)."""
        b = x0.shape[0]
        u = torch.rand(b, device=x0.device)
        t_max = float(self.make_schedule().t_max)
        t = u if self.objective == "flow" else self.t_min + (t_max - self.t_min) * u
        return self.loss_terms(net, x0, cond, t.to(x0.dtype), torch.randn_like(x0)).mean()

    def noise_prediction(self, net: nn.Module, cond: Tensor) -> Any:
        """``model_fn(x, t)`` for :func:`pdeforge.generative.sample`: the noise (VP) or the velocity (flow)."""
        schedule = self.make_schedule()

        def model_fn(x: Tensor, t: Tensor) -> Tensor:
            out = net(x, cond, t)
            if self.objective != "v":
                return out
            a, s = (_bcast(f(t), x) for f in (schedule.alpha, schedule.sigma))
            return (a * out + s * x) / (a**2 + s**2)

        return model_fn

    @torch.no_grad()
    def sample(self, net: nn.Module, cond: Tensor, shape: tuple[int, ...]) -> Tensor:
        """A draw of ``x0`` of ``shape`` given ``cond`` (noise from torch's global generator)."""
        from . import sample

        x_t = torch.randn(shape, device=cond.device, dtype=cond.dtype)
        schedule = self.make_schedule()
        # a VP sampler stops at t_end (1e-3: sigma ~ 0.01); the last data prediction removes that noise (one NFE more)
        return sample(
            self.noise_prediction(net, cond), x_t, schedule, self.sampler, self.steps, denoise_to_zero=self.denoise_last
        )

    @property
    def denoise_last(self) -> bool:
        """Whether sampling ends with a data prediction at ``t_end`` (VP schedules): ``steps + 1`` network
        evaluations in all (``steps`` for a flow, which integrates to t = 0)."""
        return self.schedule != "flow"


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    return v.to(like.dtype).reshape(-1, *(1,) * (like.ndim - 1))


class GenerativeNextStep(nn.Module):
    """A conditional generator of the next frame(s), as a task sees a model: ``forward_batch(batch)`` draws
    ``(B, T_out, C, *space)`` from the input frames ``batch["input_fields"] (B, T_in, C, *space)`` (noise from torch's
    global generator: seed it, or fork it, for reproducible draws), so :func:`pdeforge.tasks.rollout` rolls it out
    autoregressively, one draw per step. ``forward(x, cond, t)`` is the network (what training differentiates).

    Args:
        net: the denoiser ``(x, cond, t) -> like x`` (:class:`ConditionalUNet`).
        method: how it is trained and sampled (:class:`DiffusionMethod` or
            :class:`~pdeforge.generative._refiner.RefinerMethod`: ``loss(net, x0, cond)``,
            ``sample(net, cond, shape)``).
        n_fields, n_steps_input, n_steps_output: the frame layout.
        use_grid: append the grid coordinates in [0, 1] to the conditioning.
        spec: JSON-able description that rebuilds the model (``model_spec`` in ``model.json``).
    """

    def __init__(
        self,
        net: nn.Module,
        method: Any,
        *,
        n_fields: int,
        n_steps_input: int,
        n_steps_output: int,
        use_grid: bool,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net, self.method = net, method
        self.n_fields, self.n_steps_input, self.n_steps_output = n_fields, n_steps_input, n_steps_output
        self.use_grid = use_grid
        self.model_spec = spec or {}

    def forward(self, x: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        return self.net(x, cond, t)

    def conditioning(self, input_fields: Tensor) -> Tensor:
        """``(B, T_in, C, *space)`` -> ``(B, T_in * C [+ n_dims], *space)``: frames stacked, then the grid."""
        n = input_fields.ndim - 3
        if input_fields.shape[1:3] != (self.n_steps_input, self.n_fields):
            raise ValueError(
                f"input_fields: expected (B, T_in={self.n_steps_input}, C={self.n_fields}, *space), got "
                f"{tuple(input_fields.shape)}; a single sample needs a batch axis: u[None]"
            )
        cond = input_fields.flatten(1, 2)
        if not self.use_grid:
            return cond
        space = input_fields.shape[-n:]
        axes = [torch.linspace(0.0, 1.0, s, dtype=cond.dtype, device=cond.device) for s in space]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        return torch.cat([cond, grid.expand(cond.shape[0], *grid.shape)], dim=1)

    def target(self, output_fields: Tensor) -> Tensor:
        """``(B, T_out, C, *space)`` -> ``(B, T_out * C, *space)``."""
        return output_fields.flatten(1, 2)

    def forward_batch(self, batch: dict[str, Tensor]) -> Tensor:
        """One draw of the next ``T_out`` frames ``(B, T_out, C, *space)`` given ``batch["input_fields"]``."""
        frames = batch["input_fields"]
        cond = self.conditioning(frames)
        shape = (frames.shape[0], self.n_steps_output * self.n_fields, *frames.shape[3:])
        out = self.method.sample(self.net, cond, shape)
        return out.reshape(frames.shape[0], self.n_steps_output, self.n_fields, *frames.shape[3:])
