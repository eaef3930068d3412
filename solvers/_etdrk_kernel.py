"""Many ETDRK4 steps of one quadratic flux in one call, for rollouts on the CPU (Burgers, KdV, KS).

A step of a 1D equation at N = 256 and batch 50 is ~8 FFTs of ~9 us and 15 elementwise operations of 1-3 us, a
third of which is the Python between them. :func:`etdrk4_square_steps` is that step written out operation by
operation in the subset of Python that TorchScript compiles: :func:`kernel` returns it scripted, so a rollout runs
its steps between two saves without returning to Python (KS 1D above: 8.5-10.6 % of a step), or the same function
uncompiled where scripting is not available (torch 2.13 marks ``torch.jit.script`` deprecated; ``torch.compile``
does not help here: Inductor hands complex operations and FFTs back to ATen one by one, ~1.9x the FFTs' time
where this is ~1.4x).
Both run the same ATen operations in the same order as ``ETDRK._step_single_flux``, so the numbers are the same
bytes (tested).

The step is either ETDRK4 (Krogstad's, or Cox-Matthews') in the form of ``_difference_stages``:

    N1 = F(m u)                                  U2 = e_h u + a21 N1
    D  = F(U2) - N1                              U3 = U2 + a32 D
    N3 = F(U3)                                   U4 = e_1 u + a41 N1 + a43 N3
    N4 = F(U4)                                   u' = E u + b1 N1 + b23 (D + N3) + b4 N4

with ``F(v) = rfft(irfft(v)^2)``, ``m`` the 2/3 mask, ``e_h, e_1`` the masked propagators over dt/2 and dt, and
the flux symbol and the mask folded into ``a, b``. ``flush``: the input is masked and ``E = e_1`` (see
``ETDRK._step_single_flux``), so ``e_1 u`` is computed once and the output is masked again.
"""

import warnings

import torch
from torch import Tensor


def _physical(v: Tensor, shape: list[int], dims: list[int]) -> Tensor:
    if len(dims) == 1:
        return torch.fft.irfft(v, n=shape[0])
    return torch.fft.irfftn(v, s=shape, dim=dims)


def _spectral(u: Tensor, dims: list[int]) -> Tensor:
    if len(dims) == 1:
        return torch.fft.rfft(u)
    return torch.fft.rfftn(u, dim=dims)


def etdrk4_square_steps(
    u: Tensor,
    mask: Tensor,
    e_half: Tensor,
    e_one: Tensor,
    E: Tensor,
    a21: Tensor,
    a32: Tensor,
    a41: Tensor,
    a43: Tensor,
    b1: Tensor,
    b23: Tensor,
    b4: Tensor,
    n_steps: int,
    flush: bool,
    shape: list[int],
    dims: list[int],
) -> Tensor:
    """``n_steps`` steps from the spectrum ``u`` (masked if ``flush``); writes in place into its own intermediates
    only, so it must run without autograd. The arguments are ``ETDRK``'s cast coefficients."""
    for _ in range(n_steps):
        e = e_one * u
        if flush:
            first, out = u, e
        else:
            first, out = mask * u, E * u
        n1 = _spectral(_physical(first, shape, dims).square_(), dims)
        v = (e_half * u).addcmul_(a21, n1)
        d = _spectral(_physical(v, shape, dims).square_(), dims).sub_(n1)
        n3 = _spectral(_physical(v.addcmul_(a32, d), shape, dims).square_(), dims)
        n4 = _spectral(_physical(torch.addcmul(e, a41, n1).addcmul_(a43, n3), shape, dims).square_(), dims)
        u = out.addcmul_(b1, n1).addcmul_(b23, d.add_(n3)).addcmul_(b4, n4)
    return u


_SCRIPTED: list = []  # [the scripted function, or the plain one where scripting failed], made on first use


def kernel():
    """:func:`etdrk4_square_steps` compiled by TorchScript (made once per process), or the function itself."""
    if not _SCRIPTED:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.script's deprecation notice: the fallback is below
                _SCRIPTED.append(torch.jit.script(etdrk4_square_steps))
        except Exception:  # noqa: BLE001 - any failure (removed, no source, a TorchScript limit): run it in Python
            _SCRIPTED.append(etdrk4_square_steps)
    return _SCRIPTED[0]
