"""Detector side of the forward model: photon scaling, PSF blur, partial coherence, background,
Poisson noise, gaps.

Convention (see :mod:`bcdi_stream.physics`): ``psi = fft_centered(rho)`` and the noise-free
intensity is ``scale * |psi|**2`` with ``scale`` chosen so that its maximum is ``peak_counts``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..arguments import is_finite_real
from ..physics import gaussian_kernel_yx

__all__ = ["coherence_blur", "detector_blur", "gap_mask", "poisson_noise"]


def _gaussian_kernel(
    sigma: float, n: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    half = max(1, min(math.ceil(3.0 * sigma), (n - 1) // 2))
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def detector_blur(intensity: torch.Tensor, sigma: float) -> torch.Tensor:
    """Convolve each detector frame with a normalised Gaussian PSF along ``y`` and ``x``.

    Parameters
    ----------
    intensity : torch.Tensor
        ``(..., z, y, x)`` real intensity.
    sigma : float
        PSF standard deviation in pixels; 0 returns the input unchanged.

    Returns
    -------
    torch.Tensor
        Blurred intensity (zero padding: flux near the borders leaks out, as on a detector).
    """
    if not is_finite_real(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma <= 0:
        return intensity
    shape = intensity.shape
    n_y, n_x = shape[-2], shape[-1]
    out = intensity.reshape(-1, n_y, n_x)
    for axis, size in ((-1, n_x), (-2, n_y)):
        k = _gaussian_kernel(sigma, size, out.dtype, out.device)
        moved = out.movedim(axis, -1)
        flat = moved.reshape(-1, 1, size)
        conv = F.conv1d(flat, k.reshape(1, 1, -1), padding=k.numel() // 2)
        out = conv.reshape(moved.shape).movedim(-1, axis)
    return out.reshape(shape).contiguous()


def coherence_blur(intensity: torch.Tensor, kernel: Sequence[float]) -> torch.Tensor:
    """Convolve a ``(z, y, x)`` intensity with a partial-coherence kernel (periodic, by FFT).

    Parameters
    ----------
    intensity : torch.Tensor
        ``(z, y, x)`` real intensity.
    kernel : sequence of 4 floats
        ``(z, y, x, r)``: Gaussian widths in pixels along the rocking axis and the detector's
        axes, and the correlation of ``y`` and ``x`` (a kernel whose principal directions in the
        detector plane are not its axes; :func:`bcdi_stream.physics.gaussian_kernel_yx`).
        A width of 0: none along that axis (``r`` needs both ``y`` and ``x``).

    Returns
    -------
    torch.Tensor
        Blurred intensity, same dtype (the input itself when the kernel is all zeros).
    """
    if (isinstance(kernel, (str, bytes)) or not isinstance(kernel, Sequence) or len(kernel) != 4
            or not all(is_finite_real(v) for v in kernel)
            or min(kernel[:3]) < 0):
        raise ValueError(f"kernel must be 4 finite numbers (z, y, x >= 0, r), got {kernel!r}")
    sz, sy, sx, r = (float(v) for v in kernel)
    if sz <= 0 and sy <= 0 and sx <= 0:
        return intensity
    nz, ny, nx = intensity.shape[-3:]

    def along(sigma: float, n: int) -> torch.Tensor:
        d = torch.fft.fftfreq(n, 1.0 / n, dtype=torch.float64)
        k = torch.exp(-0.5 * (d / sigma) ** 2)
        return torch.fft.fft(k / k.sum())

    transfer = torch.ones((nz, ny, nx), dtype=torch.complex128)
    if r != 0.0:
        transfer = transfer * torch.fft.fftn(gaussian_kernel_yx(sy, sx, r, ny, nx))
    else:
        if sy > 0:
            transfer = transfer * along(sy, ny).view(1, ny, 1)
        if sx > 0:
            transfer = transfer * along(sx, nx).view(1, 1, nx)
    if sz > 0:
        transfer = transfer * along(sz, nz).view(nz, 1, 1)
    spec = torch.fft.fftn(torch.fft.ifftshift(intensity.to(torch.float64), dim=(-3, -2, -1)),
                          dim=(-3, -2, -1))
    out = torch.fft.ifftn(spec * transfer.to(intensity.device), dim=(-3, -2, -1)).real
    out = torch.fft.fftshift(out, dim=(-3, -2, -1)).clamp_min(0.0)
    return out.to(intensity.dtype)


def poisson_noise(rate: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson draw of an expected-counts array with a given generator (same device)."""
    return torch.poisson(rate.clamp_min(0.0), generator=generator)


def gap_mask(
    n: int, gaps: Sequence[tuple[int, int, int]], device: torch.device | None = None
) -> torch.Tensor:
    """Bad-pixel mask of detector gaps, ``(n, n, n)`` bool, True = bad.

    Parameters
    ----------
    n : int
        Grid side.
    gaps : sequence of (axis, start, width)
        Bands of rows (``axis=1``) or columns (``axis=2``), masked in every frame.
    device : torch.device, optional
        Where to build it.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    for i, gap in enumerate(gaps):
        if (len(gap) != 3
                or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in gap)
                or gap[1] < 0 or gap[2] < 1 or gap[1] + gap[2] > n):
            raise ValueError(f"gaps[{i}] must be (axis, start, width) ints inside the {n} "
                             f"rows or columns, got {gap!r}")
    mask = torch.zeros((n, n, n), dtype=torch.bool, device=device)
    for axis, start, width in gaps:
        if axis == 1:
            mask[:, start : start + width, :] = True
        elif axis == 2:
            mask[:, :, start : start + width] = True
        else:
            raise ValueError(f"gaps axis must be 1 (rows) or 2 (columns), got {axis}")
    return mask
