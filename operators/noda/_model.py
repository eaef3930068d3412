"""The NODA recursion: a residual neural-operator prediction step corrected by a learned gain when measurements arrive.

Singh, Sandino-Vargas, Khan, Lopez-Lopez, Hayes, Kovachki, Kim: "Semilinear neural operators: a unified recursive
framework for prediction and data assimilation" (ICLR 2024). For ``z_t = L z + N(z)`` observed as
``y_k = C z_k + eta_k``::

    prediction   z_k^f = z_{k-1}^a + F(z_{k-1}^a)                        (F: an FNO, one step of the flow)
    correction   z_k^a = z_k^f + K(z_k^f) [ m * (y_k - E(z_k^f)) ]       only when a measurement arrives (a_k = 1)
                 z_k^a = z_k^f                                           otherwise

``m`` is the observation mask (the selection ``C``), ``E`` the measurement operator (identity when ``C`` selects
grid values, or a learned pointwise map initialised at the identity) and ``K`` the gain: :class:`GatedGain` mixes
the innovation itself with a dense field through a sigmoid gate, ``K d = g * d + (1 - g) * (I d + S(z^f, d, I d, m))``,
where ``I d = (G * d) / (G * m)`` spreads the sparse innovation to every point by normalised convolution with a
Gaussian ``G`` (width: a learned multiple of the mean sensor spacing; periodic, through the FFT) and ``S`` is a small
FNO's correction of it; :class:`IdentityGain` is ``K = I`` (then ``z^a = y`` with full noiseless observations).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .._build import FieldOperator, build_model
from .._neuralop import FNOConfig
from ._config import GainConfig, NODAConfig

if TYPE_CHECKING:
    from ...datasets import DatasetMetadata

__all__ = [
    "spread_innovation",
    "AbstractGain",
    "IdentityGain",
    "GatedGain",
    "AbstractMeasurement",
    "IdentityMeasurement",
    "LearnedMeasurement",
    "NODA",
    "build_noda",
    "predictor_config",
]


# ------------------------------------------------------------------------------------------------ gains
class AbstractGain(nn.Module, abc.ABC):
    """``(z^f, d, m) -> K(z^f) d``: the state correction from the innovation ``d = m * (y - E(z^f))``."""

    @abc.abstractmethod
    def forward(self, forecast: Tensor, innovation: Tensor, mask: Tensor) -> Tensor:
        """forecast, innovation: (B, C, *space); mask: (B or 1, 1, *space) -> correction (B, C, *space)."""


class IdentityGain(AbstractGain):
    """``K = I``: the correction is the innovation itself."""

    def forward(self, forecast: Tensor, innovation: Tensor, mask: Tensor) -> Tensor:
        return innovation


def spread_innovation(innovation: Tensor, mask: Tensor, width: Tensor | float = 1.0) -> Tensor:
    """Normalised convolution ``(G * d) / (G * m)`` of a sparse field, periodic (FFT), Gaussian ``G``.

    ``G`` has standard deviation ``width`` times the mean sensor spacing ``mean(m) ** (-1/d)`` (grid units), so it
    adapts to the mask's density. Where the mask is 1 everywhere the result is ``d`` smoothed over one grid point.
    innovation: (B, C, *space); mask: (B or 1, 1, *space) -> (B, C, *space).
    """
    n = innovation.ndim - 2
    space = innovation.shape[2:]
    axes = tuple(range(2, innovation.ndim))
    m = mask.to(innovation.dtype)
    density = m.flatten(1).mean(1).clamp_min(1.0 / m[0].numel())  # (B or 1,)
    sigma = width * density ** (-1.0 / n)
    freqs = [torch.fft.fftfreq(s, dtype=innovation.dtype, device=innovation.device) for s in space[:-1]]
    freqs.append(torch.fft.rfftfreq(space[-1], dtype=innovation.dtype, device=innovation.device))
    k2 = sum((2 * torch.pi * f) ** 2 for f in torch.meshgrid(*freqs, indexing="ij"))
    G = torch.exp(-0.5 * sigma.reshape(-1, 1, *(1,) * n) ** 2 * k2)  # (B or 1, 1, *freq)
    num = torch.fft.irfftn(torch.fft.rfftn(innovation, dim=axes) * G, s=space, dim=axes)
    den = torch.fft.irfftn(torch.fft.rfftn(m, dim=axes) * G, s=space, dim=axes)
    return num / den.clamp_min(0.1 * float(density.min()))


class GatedGain(AbstractGain):
    """``K d = g * d + (1 - g) * (I d + S)``, ``[g_logit, S] = FNO([z^f, d, I d, m])``, ``g = sigmoid(g_logit)``.

    ``I d`` is :func:`spread_innovation` with a learned width (initially one sensor spacing); the gate weighs the
    measured innovation against the dense correction at each point and channel, the FNO corrects the spread field
    (and denoises observed points).
    """

    def __init__(
        self, n_fields: int, config: GainConfig, resolution: tuple[int, ...], periodic: tuple[bool, ...]
    ) -> None:
        super().__init__()
        self.n_fields = n_fields
        fno = FNOConfig(n_modes=config.n_modes, hidden_channels=config.hidden_channels, n_layers=config.n_layers)
        self.net = fno.build(3 * n_fields + 1, 2 * n_fields, tuple(resolution), tuple(periodic))
        self.log_width = nn.Parameter(torch.zeros(()))

    def forward(self, forecast: Tensor, innovation: Tensor, mask: Tensor) -> Tensor:
        m = mask.expand(forecast.shape[0], 1, *forecast.shape[2:]).to(forecast.dtype)
        spread = spread_innovation(innovation, m, self.log_width.exp())
        h = self.net(torch.cat([forecast, innovation, spread, m], dim=1))
        gate = torch.sigmoid(h[:, : self.n_fields])
        return gate * innovation + (1 - gate) * (spread + h[:, self.n_fields :])


# ------------------------------------------------------------------------------------------ measurement
class AbstractMeasurement(nn.Module, abc.ABC):
    """``E``: state ``(B, C, *space)`` -> predicted measurement ``(B, C, *space)`` (masked by the caller)."""

    @abc.abstractmethod
    def forward(self, state: Tensor) -> Tensor: ...


class IdentityMeasurement(AbstractMeasurement):
    """``E(z) = z``: the measurements are (noisy) grid values of the state."""

    def forward(self, state: Tensor) -> Tensor:
        return state


class LearnedMeasurement(AbstractMeasurement):
    """``E(z) = z + W z + b`` pointwise over channels, ``W = 0, b = 0`` at initialisation (starts as the identity)."""

    def __init__(self, n_fields: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_fields, n_fields))
        self.bias = nn.Parameter(torch.zeros(n_fields))

    def forward(self, state: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (state.ndim - 2)
        return state + torch.einsum("dc,bc...->bd...", self.weight, state) + self.bias.reshape(shape)


# ------------------------------------------------------------------------------------------------ model
class NODA(nn.Module):
    """The NODA recursion (module docstring) around a :class:`FieldOperator` prediction step.

    Args:
        predictor: a one-frame-in, one-frame-out :class:`FieldOperator`; the step is ``z + predictor(z)``.
        gain: an :class:`AbstractGain`.
        measurement: an :class:`AbstractMeasurement`.
    """

    def __init__(
        self, predictor: FieldOperator, gain: AbstractGain, measurement: AbstractMeasurement, spec: dict | None = None
    ) -> None:
        super().__init__()
        lay = predictor.layout
        if (lay.n_steps_input, lay.n_steps_output) != (1, 1) or lay.n_scalars or lay.n_constant_fields or lay.use_grid:
            raise ValueError(f"NODA's predictor maps one frame to one frame with no extra channels, got layout {lay}")
        self.predictor = predictor
        self.gain = gain
        self.measurement = measurement
        self.n_fields = lay.n_fields
        self.n_spatial_dims = lay.n_spatial_dims
        self.model_spec = spec or {}

    def predict(self, state: Tensor) -> Tensor:
        """``z^f = z + F(z)``; state: (B, C, *space)."""
        return state + self.predictor(state[:, None])[:, 0]

    def correct(self, forecast: Tensor, observation: Tensor, mask: Tensor) -> Tensor:
        """``z^a = z^f + K(z^f) [m * (y - E(z^f))]``; forecast, observation: (B, C, *space),
        mask: (B or 1, 1, *space)."""
        innovation = mask * (observation - self.measurement(forecast))
        return forecast + self.gain(forecast, innovation, mask)

    def step(
        self,
        state: Tensor,
        observation: Tensor | None = None,
        mask: Tensor | None = None,
        arrived: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One prediction (+ correction where ``arrived``): returns ``(z^f, z^a)``, each (B, C, *space).

        observation: (B, C, *space); mask: (B or 1, 1, *space); arrived: (B,) bool. Samples whose measurement did
        not arrive keep ``z^a = z^f`` exactly; with no observation at all only the prediction runs.
        """
        forecast = self.predict(state)
        if observation is None or arrived is None or not bool(arrived.any()):
            return forecast, forecast
        corrected = self.correct(forecast, observation, mask)
        sel = arrived.reshape(-1, *(1,) * (forecast.ndim - 1))
        return forecast, torch.where(sel, corrected, forecast)

    def forward(
        self,
        state: Tensor,
        n_steps: int,
        observations: Tensor | None = None,
        mask: Tensor | None = None,
        arrived: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Unroll ``n_steps`` steps from ``state (B, C, *space)``.

        observations: (B, n_steps, C, *space) for steps 1..n_steps; mask: (B or 1, 1, *space); arrived:
        (B, n_steps) bool. Returns ``forecast`` and ``analysis``, each (B, n_steps, C, *space).
        """
        n = self.n_spatial_dims
        if state.ndim != n + 2 or state.shape[1] != self.n_fields:
            raise ValueError(
                f"state: expected (B, C={self.n_fields}, *space) with {n} spatial axes, got {tuple(state.shape)}; "
                "a single frame needs a batch axis: u[None]"
            )
        if observations is not None:
            want = (state.shape[0], n_steps, *state.shape[1:])
            if tuple(observations.shape) != want or arrived is None or mask is None or tuple(arrived.shape) != want[:2]:
                raise ValueError(
                    f"observations: expected {want} with arrived {want[:2]} and a mask (B or 1, 1, *space); got "
                    f"{tuple(observations.shape)}, arrived {None if arrived is None else tuple(arrived.shape)}, mask "
                    f"{None if mask is None else tuple(mask.shape)}"
                )
        forecasts, analyses = [], []
        for k in range(n_steps):
            if observations is None:
                f, a = self.step(state)
            else:
                f, a = self.step(state, observations[:, k], mask, arrived[:, k])
            forecasts.append(f)
            analyses.append(a)
            state = a
        return {"forecast": torch.stack(forecasts, 1), "analysis": torch.stack(analyses, 1)}


def predictor_config(config: NODAConfig) -> FNOConfig:
    """The prediction step's :class:`FNOConfig` from ``config.predictor`` (a list of modes becomes a tuple)."""
    options = dict(config.predictor)
    if isinstance(options.get("n_modes"), list):
        options["n_modes"] = tuple(options["n_modes"])
    return FNOConfig(**options)


def build_noda(config: NODAConfig, metadata: DatasetMetadata) -> NODA:
    """A :class:`NODA` sized from the dataset's metadata (fields, resolution, boundary conditions); its
    ``model_spec`` is ``{"config": config.to_dict(), "metadata": metadata.to_dict()}``."""
    predictor = build_model(
        predictor_config(config),
        metadata,
        n_steps_input=1,
        n_steps_output=1,
        use_grid=False,
        use_scalars=False,
        use_constant_fields=False,
    )
    res = tuple(int(s) for s in metadata.resolution)
    periodic = tuple(bc == "periodic" for bc in metadata.boundary_conditions)
    C = metadata.n_fields
    gain: AbstractGain = IdentityGain() if config.gain.kind == "identity" else GatedGain(C, config.gain, res, periodic)
    measurement: AbstractMeasurement = (
        IdentityMeasurement() if config.measurement == "identity" else LearnedMeasurement(C)
    )
    spec = {"config": config.to_dict(), "metadata": metadata.to_dict()}
    return NODA(predictor, gain, measurement, spec)
