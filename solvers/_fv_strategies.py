"""How :class:`~pdeforge.solvers.fv.StaggeredNavierStokes2D` advances its steps: one named strategy per case, chosen
in one place (:func:`choose_steps`).

- :class:`ReferenceSteps`: the eager step (``StaggeredNavierStokes2D.reference_step``) once per step: the readable
  reference, differentiable, on any device, with any interpolation module or per-step face values (the learned
  stencils of TSM / LI train through it).
- :class:`NativeSteps`: the compiled op of ``_fv_step.cpp`` (built on first use, :mod:`._fv_native`) runs all the
  steps in plain loops over the grid, the projection's FFTs through ATen. Taken where nothing needs it to be
  differentiable or traced: no face values given, the solver's own ``LinearInterpolation`` or
  ``VanLeerInterpolation``, float32 or float64 on the CPU, no gradient recorded, not under ``torch.compile`` or a
  ``torch.func`` transform. It performs the reference's arithmetic operation for operation and returns the same
  bits (``tests/test_fv_fast.py``), so choosing it changes the cost of a step, never its numbers.

Measured and not kept (``docs/results/fv.md``): the reference under ``torch.compile`` (one step per call).
On a GPU the reference runs (no compiled op there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ._fv_interpolation import FaceValues, LinearInterpolation, VanLeerInterpolation
from ._fv_native import native_op, plan

if TYPE_CHECKING:
    from .fv import StaggeredNavierStokes2D

Faces = Callable[[Tensor], FaceValues] | None


class ReferenceSteps:
    """The eager reference step, ``n_steps`` times."""

    name = "reference"

    def advance(
        self, solver: StaggeredNavierStokes2D, velocity: Tensor, dt: float, n_steps: int, faces: Faces = None
    ) -> Tensor:
        for _ in range(n_steps):
            velocity = solver.reference_step(velocity, dt, faces)
        return velocity


class NativeSteps:
    """``n_steps`` steps in one call of the compiled op, from the solver's constants (forcing, the inverse Poisson
    symbol, the half-step diffusion factor) and its tableau; the same numbers as :class:`ReferenceSteps`."""

    name = "native"

    def __init__(self, op: Callable[..., Tensor]) -> None:
        self.op = op

    def advance(
        self, solver: StaggeredNavierStokes2D, velocity: Tensor, dt: float, n_steps: int, faces: Faces = None
    ) -> Tensor:
        if faces is not None:
            raise ValueError("NativeSteps runs the solver's own interpolation: face values need ReferenceSteps")
        flow, tableau = solver.flow, solver.tableau
        implicit = solver.implicit_viscosity and flow.viscosity > 0
        complex_dtype = torch.complex64 if velocity.dtype == torch.float32 else torch.complex128
        symbol = solver.inverse_poisson_symbol(velocity).to(complex_dtype)
        decay = solver.diffusion_factor(dt / 2, velocity).to(complex_dtype) if implicit else None
        layout, coefficients = plan(tableau.a, tableau.b)
        h = solver.grid.h
        return self.op(
            velocity,
            solver.forcing(velocity),
            symbol,
            decay,
            layout,
            coefficients,
            dt,
            h,
            h**2,
            flow.viscosity if flow.viscosity and not solver.implicit_viscosity else 0.0,
            flow.drag,
            isinstance(solver.interpolation, VanLeerInterpolation),
            n_steps,
        )


REFERENCE = ReferenceSteps()


def _transformed(velocity: Tensor) -> bool:
    """Whether ``velocity`` is a ``torch.func`` (vmap, grad, jvp) wrapper, which a custom op cannot take."""
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check is not None and check(velocity))


def choose_steps(
    solver: StaggeredNavierStokes2D, velocity: Tensor, faces: Faces = None
) -> ReferenceSteps | NativeSteps:
    """The strategy for ``solver`` stepping ``velocity`` (see the module docstring for the rule).
    ``PDEFORGE_NATIVE=0`` in the environment always picks the reference."""
    own_scheme = faces is None and type(solver.interpolation) in (LinearInterpolation, VanLeerInterpolation)
    plain = velocity.device.type == "cpu" and velocity.dtype in (torch.float32, torch.float64)
    differentiated = torch.is_grad_enabled() and velocity.requires_grad
    if not own_scheme or not plain or differentiated or torch.compiler.is_compiling() or _transformed(velocity):
        return REFERENCE
    op = native_op()
    return REFERENCE if op is None else NativeSteps(op)
