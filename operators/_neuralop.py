"""FNO, TFNO and UNO from the ``neuraloperator`` package, built from a small config.

The layers are neuraloperator's (spectral convolution, FNO blocks, U-shaped operator); this module only picks their
arguments and wraps the network in :class:`NeuralOperatorNet`, which

- maps ``(B, C_in, *space) -> (B, C_out, *space)`` with no positional embedding of its own (the grid, if wanted,
  is added as input channels by :class:`pdeforge.operators.FieldOperator`);
- lists its blocks (:meth:`NeuralOperatorNet.blocks`) so tests can check that each one reaches the output;
- keeps the complex spectral weights complex under ``.to(torch.float64)`` / ``.double()`` (plain ``Module.to``
  casts complex parameters to the real dtype and silently drops their imaginary part).

``import neuralop`` is slow (it pulls optional heavy dependencies), so it happens inside :meth:`build`.
Known limits of neuraloperator 2.0.0, checked here rather than patched:

- its ``SpectralConv`` undoes an ``fftshift`` with another ``fftshift``, which is wrong for odd sizes: on a grid with
  an odd size along any axis but the last, the layer is not even shift-equivariant (fixed upstream by switching to
  ``ifftshift``, neuraloperator PR #688). :class:`NeuralOperatorNet` probes the installed version once and refuses
  such grids with a clear error while the bug is present;
- in UNO layers that coarsen the grid (scaling < 1) in 2D/3D, the inverse FFT crops the spectrum from the end, so
  the weights of negative frequencies along the non-last axes never reach the output (zero gradient).

Also: neuraloperator 2.0 accumulates the spectral product in complex64 whatever the input dtype, so a float64
model is float64 everywhere except inside the spectral convolutions (~1e-7 relative).
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["FNOConfig", "TFNOConfig", "UNOConfig", "NeuralOperatorNet", "odd_grids_supported"]

_COMPLEX_OF = {torch.float16: torch.complex32, torch.float32: torch.complex64, torch.float64: torch.complex128}


class NeuralOperatorNet(nn.Module):
    """A neuraloperator model (FNO, TFNO, UNO) seen as ``(B, C_in, *space) -> (B, C_out, *space)``.

    Args:
        net: the neuraloperator model, built without positional embedding.
        block_names: attribute paths (``"fno_blocks.convs.0"``) of the modules that make up the network's blocks,
            in order; :meth:`blocks` resolves them.
        layer_scalings: grid rescaling of each layer (UNO), to check the grids the inner layers see.
    """

    def __init__(
        self,
        net: nn.Module,
        block_names: tuple[str, ...],
        layer_scalings: tuple[float, ...] = (),
        periodic: tuple[bool, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self._block_names = block_names
        self._layer_scalings = layer_scalings
        self._periodic = tuple(periodic)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, *space) -> (B, C_out, *space).

        On a non-periodic axis of odd size (not the last) the grid is extended by one replicated point and the output
        cropped back, which keeps the installed neuraloperator's SpectralConv on even sizes (see `_check_grid`).
        """
        space = tuple(x.shape[2:])
        pad = _even_padding(space, self._periodic) if not self._layer_scalings else ()
        if any(pad):
            widths = [w for p in reversed(pad) for w in (0, p)]
            y = self.net(nn.functional.pad(x, widths, mode="replicate"))
            return y[(Ellipsis, *(slice(0, s) for s in space))]
        _check_grid(space, self._layer_scalings)
        return self.net(x)

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        # neuraloperator models put a non-tensor "_metadata" entry (their init kwargs) at the top level of any state
        # dict they are part of; the model spec already records how to rebuild, and safetensors takes tensors only.
        out = super().state_dict(*args, **kwargs)
        if "_metadata" in out and not isinstance(out["_metadata"], Tensor):
            del out["_metadata"]
        return out

    def blocks(self) -> dict[str, nn.Module]:
        """The lifting, every operator layer and the projection, by name, in the order data flows through them."""
        return {name: self.net.get_submodule(name) for name in self._block_names}

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # Module.to(float64) would cast the complex spectral weights to float64 (dropping the imaginary part) and
        # Module.double() leaves them complex64: after either, give complex weights the complex dtype that matches
        # the real parameters, from the values they had before the cast.
        before = {name: p.data for name, p in self.named_parameters() if p.is_complex()}
        with warnings.catch_warnings():  # the lost imaginary parts are restored below
            warnings.filterwarnings("ignore", message="Casting complex values to real")
            super()._apply(fn, recurse)
        real = [p for p in self.parameters() if p.is_floating_point()]
        if not before or not real:
            return self
        target = _COMPLEX_OF.get(real[0].dtype)
        if target is None:
            return self
        for name, p in self.named_parameters():
            if name in before and p.dtype != target:
                p.data = before[name].to(device=p.device, dtype=target)
        return self


@functools.lru_cache(maxsize=1)
def odd_grids_supported() -> bool:
    """Whether the installed neuraloperator's ``SpectralConv`` commutes with shifts on a grid of odd size along a
    non-last axis (False for neuraloperator 2.0.0, see the module docstring). Probed once on a 5 x 4 grid."""
    from neuralop.layers.spectral_convolution import SpectralConv

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv = SpectralConv(1, 1, n_modes=(4, 4))
        x = torch.randn(1, 1, 5, 4)
        with torch.no_grad():
            a = torch.roll(conv(x), 1, dims=-2)
            b = conv(torch.roll(x, 1, dims=-2))
    return bool(torch.allclose(a, b, atol=1e-5 * float(a.abs().max())))


def _check_grid(space: tuple[int, ...], layer_scalings: tuple[float, ...] = ()) -> None:
    """Refuse grids the buggy SpectralConv gets wrong, including the coarser grids inside a UNO."""
    grids = [tuple(space)]
    for scale in layer_scalings[:-1]:  # the last layer's output grid is not transformed again
        grids.append(tuple(int(round(s * scale)) for s in grids[-1]))
    bad = [g for g in grids if len(g) >= 2 and any(s % 2 for s in g[:-1])]
    if bad and not odd_grids_supported():
        inner = f" (the grid {bad[0]} inside the network)" if bad[0] != tuple(space) else ""
        raise ValueError(
            f"grid {tuple(space)}{inner}: the installed neuraloperator's SpectralConv is wrong for an odd size "
            "on any axis but the last (fftshift used where ifftshift is needed; fixed upstream in neuraloperator "
            "PR #688). Use sizes on "
            "those axes that stay even at every scale of the network (or put the odd axis last), or the U-Net"
        )


def _even_padding(space: tuple[int, ...], periodic: tuple[bool, ...]) -> tuple[int, ...]:
    """One extra point on each non-periodic, odd, non-last axis while the installed SpectralConv needs even sizes."""
    if len(space) < 2 or not periodic or not any(s % 2 for s in space[:-1]) or odd_grids_supported():
        return ()
    return tuple(int(s % 2 == 1 and not p and i < len(space) - 1) for i, (s, p) in enumerate(zip(space, periodic)))


def _per_axis(n_modes: int | tuple[int, ...], n_spatial_dims: int, what: str) -> tuple[int, ...]:
    modes = (n_modes,) * n_spatial_dims if isinstance(n_modes, int) else tuple(n_modes)
    if len(modes) != n_spatial_dims or any(int(m) < 1 for m in modes):
        raise ValueError(
            f"{what}: expected a positive int or {n_spatial_dims} positive ints (one per axis), got {n_modes!r}"
        )
    return tuple(int(m) for m in modes)


def _check_dims(resolution: tuple[int, ...], what: str) -> int:
    n = len(resolution)
    if n not in (1, 2, 3):
        raise ValueError(f"{what} supports 1, 2 or 3 spatial dims, got resolution {tuple(resolution)}")
    return n


def _fno_kwargs(config: FNOConfig | TFNOConfig, resolution: tuple[int, ...], periodic: tuple[bool, ...] = ()) -> dict:
    """neuraloperator keyword arguments shared by FNO and TFNO."""
    n = _check_dims(resolution, type(config).__name__)
    pad = _even_padding(tuple(resolution), tuple(periodic)) or (0,) * n
    _check_grid(tuple(r + p for r, p in zip(resolution, pad)))
    return dict(
        n_modes=_per_axis(config.n_modes, n, f"{type(config).__name__}.n_modes"),
        hidden_channels=config.hidden_channels,
        n_layers=config.n_layers,
        positional_embedding=None,
        domain_padding=config.domain_padding or None,
    )


def _fno_blocks(n_layers: int) -> tuple[str, ...]:
    return ("lifting", *(f"fno_blocks.convs.{i}" for i in range(n_layers)), "projection")


@dataclass(frozen=True)
class FNOConfig:
    """Fourier Neural Operator (Li et al. 2021, arXiv:2010.08895), neuraloperator's ``FNO``.

    Each of the ``n_layers`` blocks computes ``v <- sigma(K v + W v)`` with the spectral convolution
    ``K v = IFFT(R . FFT(v)[:n_modes])``, a learnt weight ``R`` per kept Fourier mode, and a pointwise linear skip
    ``W``, followed by a channel MLP. Lifting and projection are pointwise MLPs.

    Attributes:
        n_modes: Fourier modes kept per axis (int: the same on every axis). Modes beyond the grid are dropped.
        hidden_channels: width of the blocks.
        n_layers: number of FNO blocks.
        domain_padding: fraction of each axis zero-padded before the blocks (useful for non-periodic data such as
            Darcy); 0 for none.
    """

    n_modes: int | tuple[int, ...] = 16
    hidden_channels: int = 64
    n_layers: int = 4
    domain_padding: float = 0.0

    def build(
        self, in_channels: int, out_channels: int, resolution: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> NeuralOperatorNet:
        """An FNO mapping ``(B, in_channels, *resolution) -> (B, out_channels, *resolution)``.

        ``periodic`` is accepted for a uniform interface; the FFT treats every axis as periodic (use
        ``domain_padding`` for non-periodic data).
        """
        from neuralop.models import FNO

        net = FNO(in_channels=in_channels, out_channels=out_channels, **_fno_kwargs(self, resolution, periodic))
        return NeuralOperatorNet(net, _fno_blocks(self.n_layers), periodic=tuple(periodic))


@dataclass(frozen=True)
class TFNOConfig:
    """Tensorised FNO (Kossaifi et al. 2023, arXiv:2310.00120): an FNO whose spectral weights are a low-rank
    tensor factorisation, neuraloperator's ``TFNO``.

    Attributes:
        n_modes, hidden_channels, n_layers, domain_padding: as :class:`FNOConfig`.
        factorization: ``"tucker"``, ``"cp"`` or ``"tt"``.
        rank: fraction of the dense weight's parameters kept by the factorisation.
    """

    n_modes: int | tuple[int, ...] = 16
    hidden_channels: int = 64
    n_layers: int = 4
    domain_padding: float = 0.0
    factorization: str = "tucker"
    rank: float = 0.42

    def build(
        self, in_channels: int, out_channels: int, resolution: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> NeuralOperatorNet:
        """A TFNO mapping ``(B, in_channels, *resolution) -> (B, out_channels, *resolution)``."""
        from neuralop.models import TFNO

        if self.factorization.lower() not in ("tucker", "cp", "tt"):
            raise ValueError(f"TFNOConfig.factorization must be 'tucker', 'cp' or 'tt', got {self.factorization!r}")
        net = TFNO(
            in_channels=in_channels,
            out_channels=out_channels,
            factorization=self.factorization,
            rank=self.rank,
            **_fno_kwargs(self, resolution, periodic),
        )
        return NeuralOperatorNet(net, _fno_blocks(self.n_layers), periodic=tuple(periodic))


@dataclass(frozen=True)
class UNOConfig:
    """U-shaped Neural Operator (Rahman et al. 2023, arXiv:2204.11127), neuraloperator's ``UNO``.

    Layer ``i`` is an FNO block with ``layer_channels[i]`` output channels, ``layer_modes[i]`` Fourier modes and an
    output grid rescaled by ``layer_scalings[i]`` (0.5 halves the resolution); the first half of the layers is
    skip-connected to the second half, as in a U-Net. Grids are resampled in Fourier space; see the module
    docstring for the sizes neuraloperator 2.0.0 gets wrong.

    Attributes:
        hidden_channels: width after lifting.
        layer_channels, layer_modes, layer_scalings: one entry per layer (same length).
        lifting_channels, projection_channels: hidden widths of the pointwise lifting and projection MLPs.
    """

    hidden_channels: int = 32
    layer_channels: tuple[int, ...] = (32, 64, 64, 32)
    layer_modes: tuple[int, ...] = (16, 8, 8, 16)
    layer_scalings: tuple[float, ...] = (1.0, 0.5, 2.0, 1.0)
    lifting_channels: int = 64
    projection_channels: int = 64

    def build(
        self, in_channels: int, out_channels: int, resolution: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> NeuralOperatorNet:
        """A UNO mapping ``(B, in_channels, *resolution) -> (B, out_channels, *resolution)``."""
        from neuralop.models import UNO

        n = _check_dims(resolution, "UNOConfig")
        scalings = tuple(float(x) for x in self.layer_scalings)
        _check_grid(tuple(resolution), scalings)
        n_layers = len(self.layer_channels)
        if not (len(self.layer_modes) == len(self.layer_scalings) == n_layers) or n_layers < 1:
            raise ValueError(
                "UNOConfig: layer_channels, layer_modes and layer_scalings need one entry per layer, got lengths "
                f"{len(self.layer_channels)}, {len(self.layer_modes)}, {len(self.layer_scalings)}"
            )
        total = 1.0
        for s in self.layer_scalings:
            total *= float(s)
        if abs(total - 1.0) > 1e-12:
            raise ValueError(
                f"UNOConfig.layer_scalings must multiply to 1 (output grid = input grid), got {self.layer_scalings}"
            )
        # UNO prints its skip settings while building; keep the console clean.
        with contextlib.redirect_stdout(io.StringIO()):
            net = UNO(
                in_channels,
                out_channels,
                hidden_channels=self.hidden_channels,
                lifting_channels=self.lifting_channels,
                projection_channels=self.projection_channels,
                positional_embedding=None,
                n_layers=n_layers,
                uno_out_channels=list(self.layer_channels),
                uno_n_modes=[list(_per_axis(m, n, "UNOConfig.layer_modes")) for m in self.layer_modes],
                uno_scalings=[[float(s)] * n for s in self.layer_scalings],
                # soft-gating needs equal in/out widths, which a U-shape does not have
                channel_mlp_skip="linear",
            )
        blocks = ("lifting", *(f"fno_blocks.{i}" for i in range(n_layers)), "projection")
        return NeuralOperatorNet(net, blocks, scalings)
