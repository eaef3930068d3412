"""How :func:`~pdeforge.solvers.rollout` runs an ETDRK stepper's steps: one strategy per case, chosen in one place.

* ``"reference"`` (:class:`ReferenceSteps`): :meth:`ETDRK.step_spectral` step by step; any equation, device and
  tableau, and the only one autograd goes through.
* ``"fused flux-square ETDRK on the CPU"`` (:class:`FusedFluxSquareSteps`): equations whose nonlinear part is one
  flux ``c D^alpha u^2`` (Burgers, KdV, KS), any tableau. The reference's operations in the same order, with the
  Python between them cut out: intermediates written in place, each ``exp(c z) u_n`` overwritten by the last
  stage that starts from it, the input's mask skipped where the stepper's own output is masked, and the steps
  between two saves run by one call of a small compiled op (``_etdrk_native``; the same loop in Python where it
  cannot be built). At N = 256 and batch 50 a step is 8 FFTs of ~11-13 us and 11 complex multiply-adds, each of
  2-4 us as an ATen call (the Python loop), most of it per-call overhead; the op does the multiply-adds in its
  own loops, one pass per stage and one for the update (~0.12 ms a step against ~0.16 for the Python loop,
  ``benchmarks/solvers.py``).
* ``"fused 2D vorticity ETDRK on the CPU"`` (:class:`~._etdrk_strategies_ns.FusedVorticitySteps`): 2D vorticity
  advection in Basdevant's form (Navier-Stokes 2D, Kolmogorov flow), any tableau; the same compiled op with a
  second nonlinear kind (velocity spectra, products, flux symbols and source in three passes per stage).
* ``"graph replay on CUDA"`` (:class:`CUDAGraphSteps`): the reference step recorded once as a CUDA graph and
  replayed (one launch instead of a few dozen kernels and the Python between them).

Each gives the reference's numbers bit for bit (tested). :func:`choose_steps` picks one from what the equation and
the tableau declare (:class:`SpectralTerms`, :class:`ETDRKTableau`), the device and whether a gradient is needed.
A stepper that is not an :class:`ETDRK` runs as :class:`CallableSteps`.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ._equations import square
from ._etdrk_native import fused_op, pack

if TYPE_CHECKING:
    from ._etdrk import ETDRK


class AbstractSteps(ABC):
    """A way to advance a state: ``start(u0)``, then ``advance(state, k)`` any number of times, ``physical(state)``
    for the saved frames. The state is the strategy's own (a spectrum for ETDRK); only the strategy reads it.

    Attributes:
        name: what the strategy is, in words.
        inference: whether its states may be inference tensors (nothing needs a gradient through them).
    """

    name: ClassVar[str]
    inference: bool = True

    @abstractmethod
    def start(self, u0: Tensor) -> Any:
        """The state of the physical field ``u0`` ``(B, C, *space)``."""

    @abstractmethod
    def advance(self, state: Any, n_steps: int) -> Any:
        """The state ``n_steps`` steps later (``state`` may be overwritten: it is the strategy's own)."""

    @abstractmethod
    def physical(self, state: Any) -> Tensor:
        """The physical field ``(B, C, *space)`` of ``state``."""

    def run(self, state: Any, n_steps: int, save_every: int, out: Tensor, bar: Any) -> Any:
        """``n_steps`` steps from ``state``, every ``save_every``-th frame written to ``out[:, 1]``, ``out[:, 2]``,
        ...; ``bar.update(k)`` after each ``k`` steps; returns the last state."""
        for done in range(0, n_steps, save_every):  # to the next save (or through the steps after the last one)
            k = min(save_every, n_steps - done)
            state = self.advance(state, k)
            bar.update(k)
            if k == save_every:
                out[:, (done + k) // save_every] = self.physical(state)
        return state


class CallableSteps(AbstractSteps):
    """Any ``(B, C, *S) -> (B, C, *S)`` callable, applied step by step in physical space."""

    name = "callable"
    inference = False  # a learned stepper may need its graph

    def __init__(self, step: Callable[[Tensor], Tensor]) -> None:
        self.step = step

    def start(self, u0: Tensor) -> Tensor:
        return u0

    def advance(self, state: Tensor, n_steps: int) -> Tensor:
        for _ in range(n_steps):
            state = self.step(state)
        return state

    def physical(self, state: Tensor) -> Tensor:
        return state


class ReferenceSteps(AbstractSteps):
    """:meth:`ETDRK.step_spectral` step by step, in Fourier space between saves."""

    name = "reference"

    def __init__(self, stepper: ETDRK, inference: bool = True) -> None:
        self.stepper, self.inference = stepper, inference

    def start(self, u0: Tensor) -> Tensor:
        return self.stepper.to_spectral(u0)

    def advance(self, state: Tensor, n_steps: int) -> Tensor:
        for _ in range(n_steps):
            state = self.stepper.step_spectral(state)
        return state

    def physical(self, state: Tensor) -> Tensor:
        return self.stepper.to_physical(state)


@dataclass
class FusedState:
    """A state of :class:`FusedFluxSquareSteps`: the spectrum and, once a saved frame has needed them, its physical
    values (the next step's first stage transforms exactly these where it is the state itself)."""

    spectrum: Tensor
    values: Tensor | None = None


class FusedFluxSquareSteps(AbstractSteps):
    """The reference step's operations for a nonlinear part ``c D^alpha u^2`` on the CPU, fused (see the module).

    ``exp(z)`` drops the modes above N/3 where one step kills them (``Coefficients.masks_output``): every state is
    then masked (``u0``'s spectrum once, in :meth:`start`), the first stage is the state itself (its inverse
    transform is also the saved frame's), and the update starts from the stage product ``exp(z) u_n`` at ``c = 1``.
    """

    name = "fused flux-square ETDRK on the CPU"

    @staticmethod
    def applies(stepper: ETDRK, device: torch.device) -> bool:
        """Whether the equation's nonlinear part is one flux ``c D^alpha u^2`` and the stepper has stages, on the
        CPU (the terms and the tableau declare the rest: any tableau, the flux's symbol in the coefficients)."""
        terms = stepper.terms
        single_square = terms.single_flux and terms.fluxes[0].function is square
        return device.type == "cpu" and single_square and bool(stepper.tableau.c)

    def __init__(self, stepper: ETDRK, dtype: torch.dtype, device: torch.device, compiled: bool = True) -> None:
        """The plan of ``stepper``'s step for states of ``dtype`` on ``device``; ``compiled=False``: the Python loop
        even where the compiled op builds."""
        self.stepper, tableau, grid = stepper, stepper.tableau, stepper.grid
        self.co = co = stepper.coefficients(dtype, device)
        if grid.ndim == 1:
            self.physical_of = partial(torch.fft.irfft, n=grid.shape[0])
            self.spectral_of = torch.fft.rfft
        else:
            dims = tuple(range(-grid.ndim, 0))
            self.physical_of = partial(torch.fft.irfftn, s=grid.shape, dim=dims)
            self.spectral_of = partial(torch.fft.rfftn, dim=dims)
        # exp(c z) u_n per node (slot): the identity where the state is masked; at c = 1 the update's start too
        nodes = list(co.propagators)
        self.products = [None if c == 0 and co.masks_output else co.propagators[c] for c in nodes]
        self.shared = nodes.index(1.0) if co.masks_output and 1.0 in nodes else -1
        self.stages = []  # (slot, first (j, a_ij) or None, the other (j, a_ij), may write into the slot's product)
        for c, row, last in zip(tableau.c, co.a, tableau.last_at_node):
            slot = nodes.index(c)
            write = last and self.products[slot] is not None and slot != self.shared
            self.stages.append((slot, row[0] if row else None, row[1:], write))
        slot, first, _, _ = self.stages[0]
        self.first_is_state = self.products[slot] is None and first is None
        self.shape = list(grid.shape)
        self.compiled = fused_op() if compiled else None  # the loops of `advance` and `run`, compiled
        if self.compiled is not None:
            self.packed = pack(self.products, self.shared, co.E, self.stages, co.b)

    def start(self, u0: Tensor) -> FusedState:
        u_hat = self.stepper.to_spectral(u0)
        return FusedState(self.co.mask * u_hat if self.co.masks_output else u_hat)

    def physical(self, state: FusedState) -> Tensor:
        state.values = self.physical_of(state.spectrum)
        return state.values

    def advance(self, state: FusedState, n_steps: int) -> FusedState:
        co, physical_of, spectral_of, products = self.co, self.physical_of, self.spectral_of, self.products
        u, values = state.spectrum, state.values if self.first_is_state else None
        if self.compiled is not None:
            return FusedState(self.compiled.etdrk_fused_flux_square(u, values, *self.packed, self.shape, n_steps))
        for _ in range(n_steps):
            base = [u if p is None else p * u for p in products]
            N: list[Tensor] = []
            for slot, first, rest, write in self.stages:
                U = base[slot]
                if first is not None:
                    j, a_ij = first
                    U = U.addcmul_(a_ij, N[j]) if write else torch.addcmul(U, a_ij, N[j])
                    for j, a_ij in rest:
                        U.addcmul_(a_ij, N[j])
                if values is not None:  # the saved frame's values: square a copy, the frame is the caller's
                    N.append(spectral_of(values.square()))
                    values = None
                else:
                    N.append(spectral_of(physical_of(U).square_()))
            out = base[self.shared] if self.shared >= 0 else co.E * u
            for b, group in co.b:
                n = N[group[0]]
                for i in group[1:]:
                    n.add_(N[i])
                out.addcmul_(b, n)
            u = out
        return FusedState(u)

    def run(self, state: FusedState, n_steps: int, save_every: int, out: Tensor, bar: Any) -> FusedState:
        """As :meth:`AbstractSteps.run`; with the compiled op, its frames are written in at most ~100 calls (one
        per progress-bar update) instead of one call and one transform in Python per frame; on small states each
        call runs at least ~64 steps (a call costs ~10-20 us besides its steps: at N = 256 and batch 50, calls of
        5 steps added ~2-3 us a step, 2 %)."""
        if self.compiled is None:
            return super().run(state, n_steps, save_every, out, bar)
        n_frames = n_steps // save_every
        at_least = max(1, min(64, (1 << 22) // state.spectrum.numel()))  # steps per call, ~4M values at least
        # steps per call: whole frames, at most ~100 calls, at least `at_least` steps
        chunk = max(1, -(-n_frames // 100), -(-at_least // save_every)) * save_every
        u, saved = state.spectrum, 0  # out[:, saved] is the last frame written
        for done in range(0, n_steps, chunk):  # each call writes out[:, saved + 1], ... (its own frame 0 is there)
            k = min(chunk, n_steps - done)
            # resume (saved > 0): out[:, saved] is u's frame, whose square the first stage transforms where it is
            # the state itself (first_is_state), instead of transforming u back again
            u = self.compiled.etdrk_fused_rollout(
                u, *self.packed, self.shape, k, save_every, self.first_is_state, saved > 0, out[:, saved:]
            )
            saved += k // save_every
            bar.update(k)
        return FusedState(u)


class CUDAGraphSteps(ReferenceSteps):
    """The reference step recorded once as a CUDA graph of ``buffer <- step(buffer)`` and replayed; where
    recording fails (e.g. a driver without graph support), a warning and the reference step by step."""

    name = "graph replay on CUDA"

    def __init__(self, stepper: ETDRK, record: Callable | None = None) -> None:
        super().__init__(stepper)
        self.record = record_cuda_graph if record is None else record
        self.graph = None

    def start(self, u0: Tensor) -> Tensor:
        state = self.stepper.to_spectral(u0)
        try:
            self.graph, state = self.record(self.stepper.step_spectral, state)
        except RuntimeError as err:  # correct, only slower
            warnings.warn(
                f"rollout: recording a CUDA graph of the step failed ({str(err).splitlines()[0]}); "
                "stepping eagerly (pass cuda_graph=False to skip the attempt)",
                RuntimeWarning,
                stacklevel=3,
            )
        return state

    def advance(self, state: Tensor, n_steps: int) -> Tensor:
        if self.graph is None:
            return super().advance(state, n_steps)
        for _ in range(n_steps):
            self.graph.replay()  # advances `state`, the graph's own buffer, in place
        return state


def record_cuda_graph(step: Callable[[Tensor], Tensor], state: Tensor) -> tuple[torch.cuda.CUDAGraph, Tensor]:
    """A CUDA graph of ``buffer <- step(buffer)`` and its buffer, a copy of ``state``."""
    buffer, device = state.clone(), state.device
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the capture: FFT plans, cast coefficients, allocator
        for _ in range(2):
            step(buffer.clone())
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        buffer.copy_(step(buffer))
    return graph, buffer


def choose_steps(stepper: ETDRK, u0: Tensor, n_steps: int, cuda_graph: bool | None = None) -> AbstractSteps:
    """The strategy for a rollout of ``n_steps`` from ``u0``: the reference where a gradient flows to ``u0``; else
    graph replay on a CUDA device (3 steps or more, unless ``cuda_graph=False``), the fused flux-square steps or
    the fused vorticity steps (:mod:`._etdrk_strategies_ns`) on the CPU where they apply, the reference otherwise."""
    if torch.is_grad_enabled() and u0.requires_grad:
        return ReferenceSteps(stepper, inference=False)
    if u0.is_cuda and cuda_graph is not False and n_steps >= 3:
        return CUDAGraphSteps(stepper)
    if FusedFluxSquareSteps.applies(stepper, u0.device):
        return FusedFluxSquareSteps(stepper, u0.dtype, u0.device)
    from ._etdrk_strategies_ns import FusedVorticitySteps  # a subclass of FusedFluxSquareSteps, defined there

    if FusedVorticitySteps.applies(stepper, u0.device):
        return FusedVorticitySteps(stepper, u0.dtype, u0.device)
    return ReferenceSteps(stepper)
