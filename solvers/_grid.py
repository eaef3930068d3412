"""The periodic uniform grid shared by the spectral solvers and the initial conditions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, init=False)
class Grid:
    """A periodic, uniform grid on ``[0, L_1) x ... x [0, L_d)`` with points ``x_j = j * L / N``.

    Arguments:
        shape: points per dimension, an int (1D) or a tuple ``(N_1, ..., N_d)``; the field layout is
            channels first, ``(B, C, N_1, ..., N_d)``, so the last axis is the last coordinate (``y`` in 2D).
        length: the period ``L`` of each dimension, one float for all or one per dimension (default ``2 pi``).

    Wavenumbers are angular, ``k = 2 pi m / L`` with integer ``m``, laid out as ``torch.fft.rfftn`` lays them
    out: full ``fftfreq`` order on every axis but the last, which holds ``N_d // 2 + 1`` non-negative modes.
    """

    shape: tuple[int, ...]
    length: tuple[float, ...]

    def __init__(self, shape: int | tuple[int, ...], length: float | tuple[float, ...] = 2 * math.pi) -> None:
        shape_t = (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)
        if not 1 <= len(shape_t) <= 3 or any(n < 2 for n in shape_t):
            raise ValueError(f"Grid shape must be 1 to 3 sizes each >= 2, got {shape!r}")
        if isinstance(length, (int, float)):
            length_t = (float(length),) * len(shape_t)
        else:
            length_t = tuple(float(v) for v in length)
        if len(length_t) != len(shape_t) or any(not v > 0 for v in length_t):
            raise ValueError(
                f"Grid length must be one positive float or one per dimension ({len(shape_t)}), got {length!r}"
            )
        object.__setattr__(self, "shape", shape_t)
        object.__setattr__(self, "length", length_t)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.shape)

    @property
    def dx(self) -> tuple[float, ...]:
        """Grid spacing ``L_d / N_d`` per dimension."""
        return tuple(length / n for length, n in zip(self.length, self.shape))

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        """Shape of ``torch.fft.rfftn`` of a field on this grid: ``(N_1, ..., N_d // 2 + 1)``."""
        return (*self.shape[:-1], self.shape[-1] // 2 + 1)

    def coords(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
        """The 1D coordinate vectors ``x_j = j L / N``, one tensor of shape ``(N_d,)`` per dimension."""
        return tuple(
            torch.arange(n, dtype=torch.float64, device=device).mul_(length / n).to(dtype)
            for n, length in zip(self.shape, self.length)
        )

    def mesh(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
        """The coordinates as broadcastable tensors of shape ``(N_1, 1, ...)``, ``(1, N_2, ...)``, ...

        Prepend ``[None, None]`` to broadcast against a field ``(B, C, *space)``.
        """
        out = []
        for d, x in enumerate(self.coords(dtype, device)):
            view = [1] * self.ndim
            view[d] = -1
            out.append(x.reshape(view))
        return tuple(out)

    def wavenumbers(
        self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu", zero_nyquist: bool = False
    ) -> tuple[Tensor, ...]:
        """Angular wavenumbers in ``rfftn`` layout, broadcastable to ``spectral_shape``.

        Arguments:
            zero_nyquist: set the Nyquist mode of even-sized axes to 0. Odd-order derivatives must do this:
                ``i k`` at the Nyquist mode would break the Hermitian symmetry of a real field's spectrum.

        Returns:
            one tensor per dimension, of shape ``(N_1, 1, ...)``, ..., ``(1, ..., N_d // 2 + 1)``.
        """
        out = []
        for d, (n, length) in enumerate(zip(self.shape, self.length)):
            last = d == self.ndim - 1
            m = (
                torch.fft.rfftfreq(n, 1.0 / n, dtype=torch.float64)
                if last
                else torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
            )
            if zero_nyquist and n % 2 == 0:
                m[n // 2] = 0.0
            view = [1] * self.ndim
            view[d] = -1
            out.append((m * (2 * math.pi / length)).reshape(view).to(dtype=dtype, device=device))
        return tuple(out)

    def dealias_mask(self, fraction: float = 2.0 / 3.0, device: torch.device | str = "cpu") -> Tensor:
        """Boolean mask of shape ``spectral_shape``: ``True`` where every ``|m_d| <= fraction * N_d / 2``.

        With ``fraction = 2/3`` this is Orszag's two-thirds rule: quadratic products of masked fields
        alias only onto masked modes.
        """
        mask = torch.ones(self.spectral_shape, dtype=torch.bool, device=device)
        for d, n in enumerate(self.shape):
            last = d == self.ndim - 1
            m = torch.fft.rfftfreq(n, 1.0 / n) if last else torch.fft.fftfreq(n, 1.0 / n)
            keep = m.abs() <= fraction * n / 2
            view = [1] * self.ndim
            view[d] = -1
            mask = mask & keep.reshape(view).to(device)
        return mask

    def check_field(self, u: Tensor, name: str = "u") -> None:
        """Raise a helpful ``ValueError`` unless ``u`` has shape ``(B, C, *self.shape)``."""
        if u.ndim != self.ndim + 2 or tuple(u.shape[2:]) != self.shape:
            hint = ""
            if tuple(u.shape) == self.shape:
                hint = f": add batch and channel axes with {name}[None, None]"
            elif u.ndim == self.ndim + 1 and tuple(u.shape[1:]) == self.shape:
                hint = f": add a channel axis with {name}[:, None]"
            raise ValueError(
                f"expected {name} of shape (B, C, {', '.join(map(str, self.shape))}), got {tuple(u.shape)}{hint}"
            )
