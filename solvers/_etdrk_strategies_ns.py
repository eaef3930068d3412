"""The fused ETDRK strategy for 2D incompressible vorticity advection on the CPU (``FusedVorticitySteps``).

For equations whose flux functions declare they are Basdevant's two products of the velocity
(``_equations.BASDEVANT_PRODUCTS``: Navier-Stokes 2D in vorticity form, with or without Kolmogorov forcing and
drag; the drag is linear, in the coefficients, the forcing the source spectrum added to each stage's ``N``), any
tableau, on the CPU, without a gradient. The compiled op of :class:`FusedFluxSquareSteps` runs the steps with this
nonlinear kind: per stage one pass for the stage's value times the two velocity symbols, two inverse FFTs, one
pass for the products, two forward FFTs and one pass for ``N`` (the flux symbols and the source), in the
reference's operations and order (no FMA contraction), where the reference makes ~10 ATen calls per stage. Only
the compiled op: where it cannot be built, the reference runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ._equations import BASDEVANT_PRODUCTS
from ._etdrk_native import fused_op, pack
from ._etdrk_strategies import FusedFluxSquareSteps, FusedState

if TYPE_CHECKING:
    from ._etdrk import ETDRK


class FusedVorticitySteps(FusedFluxSquareSteps):
    """The reference step's operations for 2D vorticity advection in Basdevant's form on the CPU, compiled (see
    the module). The plan is :class:`FusedFluxSquareSteps`'s (stages, weights, the masked state where ``exp(z)``
    masks its output), with the vorticity kind's rows: the velocity symbols, the flux symbols and the source."""

    name = "fused 2D vorticity ETDRK on the CPU"

    @staticmethod
    def applies(stepper: ETDRK, device: torch.device) -> bool:
        """Whether the equation's nonlinear part is the two products of :data:`BASDEVANT_PRODUCTS` (declared by its
        flux functions), one channel in 2D, nothing else but a source; on the CPU, the stepper having stages, the
        compiled op built."""
        terms = stepper.terms
        kinds = sorted(BASDEVANT_PRODUCTS.get(f.function, -1) for f in terms.fluxes)
        return (
            device.type == "cpu"
            and bool(stepper.tableau.c)
            and stepper.grid.ndim == 2
            and stepper.channels == 1
            and stepper.diagonal
            and not terms.has_term
            and kinds == [0, 1]
            and fused_op() is not None
        )

    def __init__(self, stepper: ETDRK, dtype: torch.dtype, device: torch.device, compiled: bool = True) -> None:
        """As :class:`FusedFluxSquareSteps`; ``compiled=False`` (or no compiled op): the reference step by step,
        the Python loop of this strategy (``benchmarks/solvers.py`` times it beside the op)."""
        super().__init__(stepper, dtype, device, compiled)
        self.first_is_state = False  # the stages read the velocity, not the state's values
        if self.compiled is None:
            return
        co, shape = self.co, self.co.E.shape

        def symbol(alpha: tuple[int, int]) -> torch.Tensor:  # d^alpha lap^-1, masked: the reference's own tensor
            return stepper.terms.derivatives.symbol(alpha, True, co.E.dtype, device).reshape(shape)

        fluxes = tuple(
            (BASDEVANT_PRODUCTS[f.function], s.reshape(shape)) for f, s in zip(stepper.terms.fluxes, co.symbols)
        )
        source = None if co.source is None else co.source.reshape(shape)
        self.vorticity = (symbol((0, 1)), symbol((1, 0)), fluxes, source)
        self.packed = pack(self.products, self.shared, co.E, self.stages, co.b, self.vorticity)

    def advance(self, state: FusedState, n_steps: int) -> FusedState:
        if self.compiled is not None:
            return super().advance(state, n_steps)
        u = state.spectrum
        for _ in range(n_steps):
            u = self.stepper.step_spectral(u)
        return FusedState(u)
