"""Spectral (Fourier) resampling of periodic fields, as scOT uses to bring any input to its `image_size`."""

from __future__ import annotations

import torch
from torch import Tensor


def _kept_frequencies(n_from: int, n_to: int) -> tuple[Tensor, Tensor]:
    """Integer frequencies kept when going from n_from to n_to points, as (source, target) FFT indices.

    The band is that of the smaller grid m = min(n_from, n_to): k in [-floor(m/2), ceil(m/2) - 1], i.e. for even
    m the Nyquist mode -m/2 is kept once, unsplit (this is what Poseidon's fftshift + pad / mask does)."""
    m = min(n_from, n_to)
    k = torch.arange(-(m // 2), m - m // 2)
    return k % n_from, k % n_to


def spectral_resample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample the last two axes of a periodic field to `size` by Fourier zero padding / truncation.

    u_hat = FFT(u) / (H W); keep the modes |k| below the smaller grid's Nyquist limit (the mode -N/2 of an even
    grid N included), place them on the new grid, u' = Re(IFFT(u_hat') H' W'). Amplitudes are preserved
    (norm="forward"): a field band-limited below the smaller grid's Nyquist frequency is reproduced exactly;
    a component exactly at the target Nyquist frequency is halved when truncating (only its -N/2 coefficient
    is kept). For even sizes this is Poseidon's `_upsample` / `_downsample` (the original breaks on odd ones).

    Args:
        x: (..., H, W) real tensor.
        size: (H', W') target size.

    Returns:
        (..., H', W') real tensor of x's dtype.
    """
    if x.dim() < 2:
        raise ValueError(f"expected a field (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if min(size) < 1:
        raise ValueError(f"target size must be positive, got {size}")
    xh = torch.fft.fft2(x, norm="forward")
    src_h, dst_h = _kept_frequencies(h, size[0])
    src_w, dst_w = _kept_frequencies(w, size[1])
    src_h, dst_h, src_w, dst_w = (t.to(x.device) for t in (src_h, dst_h, src_w, dst_w))
    out = xh.new_zeros(*x.shape[:-2], size[0], size[1])
    out[..., dst_h[:, None], dst_w[None, :]] = xh[..., src_h[:, None], src_w[None, :]]
    return torch.fft.ifft2(out, norm="forward").real.to(x.dtype)
