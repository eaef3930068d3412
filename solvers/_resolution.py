"""How fine a preset's grid must be: its declared minimum resolution and the measure that backs it.

Every preset declares a :class:`ResolutionCheck`: the smallest resolution (points per axis of the stored grid) at
which its numerics resolve its dynamics, by one of two measures, taken over the stored snapshots after the first
(the first is the initial condition, drawn on the grid itself; a steady preset's one snapshot is measured):

- ``"convergence"``: the relative L2 difference (over space), per channel, trajectory and snapshot, between the
  stored fields and those of the same trajectories (same initial data and parameters) solved on a grid twice as
  fine per axis (a time step half as long where the preset fixes one) and restricted to the stored grid
  (:meth:`AbstractPreset.refined`) is below ``tolerance`` in every channel (a channel's reference norm is floored at
  ``CHANNEL_FLOOR`` times that of all channels together, so an identically zero channel divides by no zero);
- ``"spectrum"``: the fraction of each stored channel's energy (its mean removed) at wavenumbers ``max_d |m_d| >
  2 N_d / 9``, the top third of the modes a 2/3-dealiased solve on ``N`` points keeps, is below ``tolerance`` in
  every channel.

Both are per channel: measured over all channels together, a channel of small magnitude that is not resolved (the
velocity of a low-Mach compressible flow next to its pressure) hides under the large ones.

``pdeforge generate`` refuses a ``--resolution`` below the minimum unless ``--allow-underresolved`` (the files then
say ``underresolved``). "One step below" the minimum is the grid twice as coarse (:meth:`ResolutionCheck.coarser`).
``tests/test_resolution_guards.py`` measures every preset at its minimum and one step below; the table of
docs/guides/generate.md is printed by ``python -m pdeforge.solvers._resolution PRESET [RESOLUTIONS] [N_TRAJ]``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ._presets import AbstractPreset

__all__ = [
    "ResolutionCheck",
    "MEASURES",
    "fourier_refine",
    "spectral_tail",
    "relative_difference",
    "resolution_error",
    "CHANNEL_FLOOR",
]

MEASURES = ("convergence", "spectrum")
GRIDS = ("periodic", "nodes")


@dataclass(frozen=True)
class ResolutionCheck:
    """A preset's minimum resolution and the measure that backs it (module docstring).

    Attributes:
        min_resolution: the smallest stored points per axis at which ``measure`` stays below ``tolerance``.
        measure: ``"convergence"`` (against a solve twice as fine) or ``"spectrum"`` (energy near the cut-off).
        tolerance: the bound on the measure.
        grid: ``"periodic"`` (``N`` points, spacing ``L / N``: twice as coarse is ``N / 2``) or ``"nodes"`` (``s``
            nodes with both ends, spacing ``1 / (s - 1)``: twice as coarse is ``(s + 1) / 2``, twice as fine
            ``2 s - 1``).
        resolved: ``False`` where no grid measured so far meets the measure (``min_resolution`` is then only the
            coarsest grid written at all): every resolution is under-resolved, `pdeforge generate` writes it only
            with ``--allow-underresolved``, and its files say so.
    """

    min_resolution: int
    measure: str
    tolerance: float
    grid: str = "periodic"
    resolved: bool = True

    def underresolved(self, resolution: int) -> bool:
        """Whether data at ``resolution`` points per axis are under-resolved by this check."""
        return not self.resolved or resolution < self.min_resolution

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"ResolutionCheck: measure {self.measure!r}: expected one of {MEASURES}")
        if self.grid not in GRIDS:
            raise ValueError(f"ResolutionCheck: grid {self.grid!r}: expected one of {GRIDS}")
        if not (self.tolerance > 0 and math.isfinite(self.tolerance)):
            raise ValueError(f"ResolutionCheck: tolerance {self.tolerance!r}: expected a finite number > 0")
        if self.min_resolution < 3:
            raise ValueError(f"ResolutionCheck: min_resolution {self.min_resolution}: expected an integer >= 3")

    def coarser(self, resolution: int) -> int:
        """The grid twice as coarse: one step below ``resolution``."""
        return (resolution + 1) // 2 if self.grid == "nodes" else resolution // 2

    def finer(self, resolution: int) -> int:
        """The grid twice as fine, whose every other point is a point of ``resolution``'s grid."""
        return 2 * resolution - 1 if self.grid == "nodes" else 2 * resolution

    def describe(self) -> str:
        """The measure and its bound in words, e.g. ``relative L2 difference per channel < 0.01 from a solve on a grid
        twice as fine``."""
        if self.measure == "convergence":
            return f"relative L2 difference per channel < {self.tolerance:g} from a solve on a grid twice as fine"
        return f"energy above 2/9 of the points per axis < {self.tolerance:g} of the total"


def fourier_refine(u: Tensor, factor: int, ndim: int) -> Tensor:
    """Trigonometric interpolation of periodic ``u (..., *space)`` (``ndim`` axes) onto a grid ``factor`` times finer
    per axis: the band-limited field through the samples, so every ``factor``-th point of the result is ``u`` (to
    round-off). A Nyquist mode is split evenly between ``+N/2`` and ``-N/2`` (a cosine, as the samples say)."""
    uh = torch.fft.fftn(u.to(torch.float64), dim=tuple(range(-ndim, 0)))
    for d in range(uh.ndim - ndim, uh.ndim):
        n = uh.shape[d]
        shape = list(uh.shape)
        shape[d] = n * factor
        fine = torch.zeros(shape, dtype=uh.dtype, device=uh.device)
        positive, negative = (n + 1) // 2, (n - 1) // 2  # modes 0..positive-1 and the last `negative`
        fine.narrow(d, 0, positive).copy_(uh.narrow(d, 0, positive))
        if negative:
            fine.narrow(d, n * factor - negative, negative).copy_(uh.narrow(d, n - negative, negative))
        if n % 2 == 0:
            half = uh.narrow(d, n // 2, 1) / 2
            fine.narrow(d, n // 2, 1).add_(half)
            fine.narrow(d, n * factor - n // 2, 1).add_(half)
        uh = fine
    out = torch.fft.ifftn(uh, dim=tuple(range(-ndim, 0))).real * factor**ndim
    return out.to(u.dtype)


def spectral_tail(fields: Tensor, ndim: int) -> Tensor:
    """Energy fraction of each field at wavenumbers ``max_d |m_d| > 2 N_d / 9`` (mean removed), ``(B, T)``.

    ``fields (B, T, C, *space)`` on a periodic grid of ``ndim`` axes; each channel's fraction of its own energy, the
    largest over the channels (per channel, as the convergence measure). A channel with no energy but its mean has
    fraction 0; a non-finite channel has fraction ``inf``.
    """
    dims = tuple(range(-ndim, 0))
    shape = fields.shape[-ndim:]
    energy = torch.fft.rfftn(fields.double(), dim=dims).abs().square()
    high = torch.zeros((), dtype=torch.bool)
    mean = torch.ones((), dtype=torch.bool)
    for d, n in enumerate(shape):
        m = (torch.fft.rfftfreq(n, 1.0 / n) if d == ndim - 1 else torch.fft.fftfreq(n, 1.0 / n)).abs()
        view = [1] * ndim
        view[d] = -1
        high = high | (m > 2 * n / 9).reshape(view)
        mean = mean & (m == 0).reshape(view)
    m_last = torch.fft.rfftfreq(shape[-1], 1.0 / shape[-1])
    energy = energy * torch.where((m_last > 0) & (m_last < shape[-1] / 2), 2.0, 1.0).double()  # the rfft half
    total = (energy * ~mean).flatten(-ndim).sum(-1)
    tail = torch.where(total > 0, (energy * high).flatten(-ndim).sum(-1) / total.clamp_min(1e-300), 0.0)
    finite = torch.isfinite(fields.flatten(-ndim)).all(-1)
    return torch.where(finite, tail, math.inf).amax(dim=2)


CHANNEL_FLOOR = 1e-12  # a channel's reference norm is floored at this times the norm over all channels


def relative_difference(fields: Tensor, reference: Tensor) -> Tensor:
    """The largest over channels of ``|fields_c - reference_c| / |reference_c|`` (L2 over space), per trajectory and
    snapshot, ``(B, T)``; ``inf`` where either is non-finite.

    ``fields``, ``reference``: ``(B, T, C, *space)``. Per channel, so that a channel of small magnitude (a velocity
    at low Mach number next to the pressure) is not hidden by the others. Each channel's reference norm is floored at
    ``CHANNEL_FLOOR`` times the norm over all channels: an identically zero channel (a velocity at rest) that stays
    zero measures 0, and one that does not measures its difference against that floor, never ``inf`` or NaN.
    """
    a, b = fields.double().flatten(3), reference.double().flatten(3)  # (B, T, C, points)
    scale = b.norm(dim=-1)  # (B, T, C)
    floor = CHANNEL_FLOOR * scale.norm(dim=-1, keepdim=True)  # the norm over all channels and space
    diff = (a - b).norm(dim=-1) / torch.maximum(scale, floor).clamp_min(1e-300)
    finite = torch.isfinite(a).flatten(2).all(-1) & torch.isfinite(b).flatten(2).all(-1)
    return torch.where(finite, diff.amax(dim=-1), math.inf)


def resolution_error(
    preset: AbstractPreset, resolution: int, indices: Sequence[int] = (0,), seed: int = 0, device: str = "cpu"
) -> float:
    """The preset's declared measure at ``resolution``: its largest value over trajectories ``indices`` and the
    stored snapshots after the first (the only snapshot of a steady preset); ``inf`` if a solve blew up."""
    check = preset.resolves
    try:
        fields = preset.solve(list(indices), seed, resolution, device).fields
        if check.measure == "spectrum":
            per = spectral_tail(fields, fields.ndim - 3)
        else:
            per = relative_difference(fields, preset.refined(list(indices), seed, resolution, device))
    except FloatingPointError:  # a solver that stops on non-finite values itself (the FV solver)
        return math.inf
    first = 1 if per.shape[1] > 1 else 0
    return float(per[:, first:].max())


def _table(name: str, resolutions: Sequence[int] | None, n_trajectories: int) -> None:
    from ._presets import PRESETS

    preset = PRESETS[name]
    check = preset.resolves
    if not resolutions:  # one step below the minimum, the minimum, the default
        m = check.min_resolution
        resolutions = sorted({check.coarser(m), m, preset.resolution})
    print(f"{name}: {check.measure}, tolerance {check.tolerance:g}, declared minimum {check.min_resolution}")
    for r in resolutions:
        value = resolution_error(preset, r, range(n_trajectories))
        verdict = "holds" if value < check.tolerance else "fails"
        print(f"  resolution {r:5d}: {value:.3g} ({verdict})", flush=True)


if __name__ == "__main__":  # python -m pdeforge.solvers._resolution PRESET [R1,R2,...] [N_TRAJECTORIES]
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: python -m pdeforge.solvers._resolution PRESET [R1,R2,...] [N_TRAJECTORIES]")
    _table(
        args[0],
        [int(r) for r in args[1].split(",") if r] if len(args) > 1 else None,
        int(args[2]) if len(args) > 2 else 2,
    )
