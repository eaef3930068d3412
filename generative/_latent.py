"""Latent diffusion of PDE frames (the idea of Text2PDE, Zhou et al. 2024, arXiv:2410.01153, without the text): a
convolutional autoencoder over single frames, trained as a run of its own, and a conditional generator of the next
frame's latent given the latents of the conditioning frames, decoded for every metric and rolled out through the same
task path as the generator on fields.

The autoencoder (``model.kind autoencoder``) maps a frame ``(B, C, *space)`` to a latent ``(B, C_z, *space / 2^S)``
and back, with ``S`` stride-2 stages; every convolution pads periodic axes by wrapping (edge values elsewhere), and
the decoder upsamples by nearest-neighbour copies followed by convolutions, so on a periodic axis a shift of the frame
by ``2^S`` points is a shift of the latent by one point, exactly. It is trained to reconstruct the normalised frames
(mean squared error).

The latent generator (``model.autoencoder RUN``) keeps the autoencoder inside it, frozen (no gradient, eval mode,
saved with the generator's weights so the run rebuilds without the autoencoder's folder). Its latents are multiplied
by ``latent_scale`` (one over the latent's std on training frames, fixed when the model is built; Rombach et al.
2022's scale factor) so the diffusion sees data of unit variance.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..operators._unet import pad_axes

__all__ = ["FrameAutoencoder", "LatentNextStep", "reconstruction_loss"]


class _PadConv(nn.Module):
    """A convolution of odd ``kernel`` and ``stride`` over ``(B, C, *space)`` whose input is padded by
    ``kernel // 2`` on each side, axis by axis: wrapped on periodic axes, the edge value repeated elsewhere."""

    def __init__(self, c_in: int, c_out: int, kernel: int, periodic: tuple[bool, ...], stride: int = 1) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(periodic)]
        self.conv = conv(c_in, c_out, kernel, stride=stride)
        self.pads, self.periodic = ((kernel // 2, kernel // 2),) * len(periodic), periodic

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(pad_axes(x, self.pads, self.periodic, fill="replicate"))


class FrameAutoencoder(nn.Module):
    """``encode: (B, C, *space) -> (B, latent_channels, *space / 2^stages)``, ``decode`` back (module docstring).

    Args:
        n_fields: channels ``C`` of a frame.
        latent_channels: channels of the latent.
        stages: stride-2 stages (each spatial size must be divisible by ``2^stages``).
        width: channels of the hidden convolutions.
        periodic: one flag per spatial axis (1D, 2D or 3D).
    """

    def __init__(self, n_fields: int, latent_channels: int, stages: int, width: int, periodic: tuple[bool, ...]):
        super().__init__()
        self.n_fields, self.latent_channels, self.stages, self.periodic = n_fields, latent_channels, stages, periodic
        p, act = periodic, nn.GELU
        enc: list[nn.Module] = [_PadConv(n_fields, width, 3, p), act()]
        dec: list[nn.Module] = [_PadConv(latent_channels, width, 3, p), act()]
        for _ in range(stages):
            enc += [_PadConv(width, width, 3, p, stride=2), act(), _PadConv(width, width, 3, p), act()]
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), _PadConv(width, width, 3, p), act()]
            dec += [_PadConv(width, width, 3, p), act()]
        self.encoder = nn.Sequential(*enc, _PadConv(width, latent_channels, 1, p))
        self.decoder = nn.Sequential(*dec, _PadConv(width, n_fields, 3, p))

    @property
    def factor(self) -> int:
        """Points of a frame per point of the latent, along every axis: ``2^stages``."""
        return 2**self.stages

    def check_size(self, space: tuple[int, ...], where: str = "autoencoder") -> None:
        bad = [s for s in space if s % self.factor]
        if len(space) != len(self.periodic) or bad:
            raise ValueError(
                f"{where}: frames of shape {space} do not fit an autoencoder of {len(self.periodic)} axes and "
                f"{self.stages} stride-2 stages; expected every size divisible by {self.factor} "
                "(fewer autoencoder.stages, or another resolution)"
            )

    def encode(self, x: Tensor) -> Tensor:
        """``(B, C, *space) -> (B, latent_channels, *space / 2^stages)``."""
        if x.ndim != len(self.periodic) + 2 or x.shape[1] != self.n_fields:
            raise ValueError(
                f"FrameAutoencoder.encode: expected (B, {self.n_fields}, *space) with {len(self.periodic)} spatial "
                f"axes, got {tuple(x.shape)}"
            )
        self.check_size(tuple(x.shape[2:]))
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """``(B, latent_channels, *space') -> (B, C, *space' * 2^stages)``."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))


def reconstruction_loss(model: FrameAutoencoder, batch: dict[str, Tensor]) -> Tensor:
    """Mean squared reconstruction error of every frame of a task batch (input and output frames alike)."""
    frames = torch.cat([batch["input_fields"], batch["output_fields"]], dim=1).flatten(0, 1)
    return ((model(frames).float() - frames.float()) ** 2).mean()


class LatentNextStep(nn.Module):
    """A conditional generator of the next frame(s) in an autoencoder's latent space, as a task sees a model (the
    interface of :class:`~pdeforge.generative._models.GenerativeNextStep`): ``conditioning`` encodes the input frames,
    ``target`` the output frames, ``forward_batch`` draws latents and decodes them to ``(B, T_out, C, *space)``.

    Args:
        net: the denoiser ``(z, cond, t) -> like z`` on latents.
        method: how it is trained and sampled (``loss(net, z0, cond)``, ``sample(net, cond, shape)``).
        autoencoder: the frame autoencoder, frozen here.
        latent_scale: the factor latents are multiplied by before the diffusion sees them.
        n_fields, n_steps_input, n_steps_output, use_grid, spec: as for ``GenerativeNextStep`` (the grid at the
            latent's resolution).
    """

    def __init__(
        self,
        net: nn.Module,
        method: Any,
        autoencoder: FrameAutoencoder,
        *,
        latent_scale: float,
        n_fields: int,
        n_steps_input: int,
        n_steps_output: int,
        use_grid: bool,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net, self.method, self.autoencoder = net, method, autoencoder.requires_grad_(False).eval()
        self.latent_scale = float(latent_scale)
        self.n_fields, self.n_steps_input, self.n_steps_output = n_fields, n_steps_input, n_steps_output
        self.use_grid = use_grid
        self.model_spec = spec or {}

    def train(self, mode: bool = True) -> LatentNextStep:
        super().train(mode)
        self.autoencoder.eval()  # frozen: always in evaluation mode
        return self

    def forward(self, x: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        return self.net(x, cond, t)

    @torch.no_grad()
    def encode_frames(self, frames: Tensor) -> Tensor:
        """``(B, T, C, *space) -> (B, T * C_z, *space')``, scaled by ``latent_scale``."""
        if frames.ndim < 4 or frames.shape[2] != self.n_fields:
            raise ValueError(
                f"expected frames (B, T, C={self.n_fields}, *space), got {tuple(frames.shape)}; a single sample needs "
                "a batch axis: u[None]"
            )
        z = self.autoencoder.encode(frames.flatten(0, 1)) * self.latent_scale
        return z.reshape(frames.shape[0], -1, *z.shape[2:])

    def conditioning(self, input_fields: Tensor) -> Tensor:
        """``(B, T_in, C, *space) -> (B, T_in * C_z [+ n_dims], *space')``: the encoded frames, then the grid."""
        if input_fields.ndim < 4 or input_fields.shape[1] != self.n_steps_input:
            raise ValueError(
                f"input_fields: expected (B, T_in={self.n_steps_input}, C={self.n_fields}, *space), got "
                f"{tuple(input_fields.shape)}"
            )
        cond = self.encode_frames(input_fields)
        if not self.use_grid:
            return cond
        axes = [torch.linspace(0.0, 1.0, s, dtype=cond.dtype, device=cond.device) for s in cond.shape[2:]]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        return torch.cat([cond, grid.expand(cond.shape[0], *grid.shape)], dim=1)

    def target(self, output_fields: Tensor) -> Tensor:
        """``(B, T_out, C, *space) -> (B, T_out * C_z, *space')``."""
        return self.encode_frames(output_fields)

    @torch.no_grad()
    def forward_batch(self, batch: dict[str, Tensor]) -> Tensor:
        """One draw of the next ``T_out`` frames ``(B, T_out, C, *space)``: latents sampled, then decoded."""
        frames = batch["input_fields"]
        cond = self.conditioning(frames)
        c_z = self.autoencoder.latent_channels
        z = self.method.sample(self.net, cond, (frames.shape[0], self.n_steps_output * c_z, *cond.shape[2:]))
        out = self.autoencoder.decode(z.reshape(-1, c_z, *z.shape[2:]) / self.latent_scale)
        return out.reshape(frames.shape[0], self.n_steps_output, self.n_fields, *out.shape[2:])
