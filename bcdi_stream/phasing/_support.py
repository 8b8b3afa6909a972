"""Supports: initial support from the autocorrelation, shrink-wrap update, detwinning."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..arrays import resolve_device
from ..physics import SPATIAL_DIMS, ifft_centered
from ._common import check_fraction, check_intensity, check_mask, to_tensor
from ._kernels import squared_modulus

__all__ = ["autocorrelation_support", "gaussian_smooth", "shrinkwrap_support"]

#: Default threshold of the autocorrelation support, relative to its maximum.
AUTOCORR_THRESHOLD = 0.1


def _gaussian_transfer(
    shape: Sequence[int], sigma: float, device: torch.device
) -> torch.Tensor:
    """rfftn-layout transfer function of a unit-sum Gaussian of width ``sigma`` voxels."""
    factors = []
    for ax, n in enumerate(shape):
        f = (
            torch.fft.rfftfreq(n, device=device, dtype=torch.float32)
            if ax == len(shape) - 1
            else torch.fft.fftfreq(n, device=device, dtype=torch.float32)
        )
        g = torch.exp(-2.0 * math.pi**2 * sigma**2 * f * f)
        view = [1] * len(shape)
        view[ax] = g.numel()
        factors.append(g.view(view))
    return factors[0] * factors[1] * factors[2]


def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smooth a real array with a periodic Gaussian of standard deviation ``sigma`` voxels.

    Parameters
    ----------
    x : torch.Tensor
        Real array ``(..., z, y, x)``.
    sigma : float
        Standard deviation in voxels; 0 returns a copy.

    Returns
    -------
    torch.Tensor
        float32 array of the same shape.
    """
    if not 0 <= sigma < math.inf:  # NaN and inf made an all-NaN array
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    x = x.to(torch.float32)
    if sigma == 0:
        return x.clone()
    shape = tuple(x.shape[-3:])
    h = _gaussian_transfer(shape, float(sigma), x.device)
    if x.ndim == 3 or x.device.type != "cpu":
        return torch.fft.irfftn(torch.fft.rfftn(x, dim=SPATIAL_DIMS) * h, s=shape, dim=SPATIAL_DIMS)
    # On CPU, one item at a time: large batched MKL transforms are slower per item (cache, and
    # outputs above glibc's 32 MB mmap threshold page-fault on every call).
    flat = x.reshape(-1, *shape)
    out = torch.empty_like(flat)
    for i in range(flat.shape[0]):
        out[i] = torch.fft.irfftn(
            torch.fft.rfftn(flat[i], dim=SPATIAL_DIMS).mul_(h), s=shape, dim=SPATIAL_DIMS
        )
    return out.view(x.shape)


def autocorrelation_support(
    intensity: Any,
    threshold: float = AUTOCORR_THRESHOLD,
    mask: Any = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Initial support: the thresholded autocorrelation (Patterson function) of the object.

    ``|ifft_centered(I)|`` is the autocorrelation of the object; its support is about twice the
    object's, a safe overestimate that shrink-wrap then tightens.

    Parameters
    ----------
    intensity : array-like
        Centred 3D intensity (counts).
    threshold : float
        Fraction of the autocorrelation's maximum, in (0, 1).
    mask : array-like, optional
        Bad pixels (nonzero = masked); they are set to 0 before the transform.
    device : str or torch.device, optional
        Compute device (default: the intensity's device for tensors, else auto).

    Returns
    -------
    torch.Tensor
        Centred bool support of the intensity's shape.
    """
    threshold = check_fraction(threshold, "threshold")
    dev = _device_of(intensity, device)
    i_t = check_intensity(intensity, dev).clamp(min=0)
    m = check_mask(mask, tuple(i_t.shape), dev)
    if m is not None:
        i_t = torch.where(m, 0.0, i_t)
    ac = torch.abs(ifft_centered(i_t.to(torch.complex64)))
    return ac > threshold * ac.max()


def _device_of(x: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return resolve_device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return resolve_device(None)


def _modulus(obj: torch.Tensor) -> torch.Tensor:
    """|obj| (float32); 4x faster than complex ``torch.abs`` on CPU (:func:`squared_modulus`)."""
    if not obj.is_complex():
        return obj.abs().to(torch.float32)
    return squared_modulus(obj.to(torch.complex64)).sqrt_()


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Number of True voxels per leading item, shape ``(..., 1, 1, 1)`` (int32)."""
    lead = mask.shape[:-3]
    flat = mask.contiguous().view(torch.uint8).reshape(*lead, -1)
    return flat.sum(-1, dtype=torch.int32).reshape(*lead, 1, 1, 1)


def shrinkwrap_support(
    obj: Any,
    sigma: float,
    threshold: float,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shrink-wrap: threshold the Gaussian-smoothed amplitude of the object.

    Parameters
    ----------
    obj : array-like
        Complex object ``(..., z, y, x)`` (a leading batch of independent runs is allowed).
    sigma : float
        Smoothing width in voxels (>= 0).
    threshold : float
        Fraction of each run's maximum smoothed amplitude, in (0, 1).
    previous : array-like, optional
        The current support; a run whose new support would be empty or smaller than 1 % of the
        previous one (collapse) keeps its previous support.

    Returns
    -------
    torch.Tensor
        bool support, same shape as ``obj``.
    """
    threshold = check_fraction(threshold, "threshold")
    if not 0 <= sigma < math.inf:  # inf smoothed to NaN: an empty support
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    o = obj if isinstance(obj, torch.Tensor) else to_tensor(obj, "obj", resolve_device(None))
    if o.ndim < 3:
        raise ValueError(f"obj must have at least 3 dimensions, got shape {tuple(o.shape)}")
    smooth = gaussian_smooth(_modulus(o), sigma)
    peak = smooth.amax(dim=SPATIAL_DIMS, keepdim=True)
    new = smooth > threshold * peak
    if previous is not None:
        if not isinstance(previous, torch.Tensor):  # array-like, as ``obj`` may be
            previous = to_tensor(previous, "previous", new.device)
        if previous.shape != new.shape:
            raise ValueError(
                f"previous must have the object's shape {tuple(new.shape)}, "
                f"got {tuple(previous.shape)}"
            )
        n_new = _count(new)
        n_old = _count(previous.to(torch.bool))
        collapsed = (n_new < 1) | (n_new * 100 < n_old)
        new = torch.where(collapsed, previous, new)
    return new


def halve_support(support: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """PyNX-style detwinning: drop the half of each run's support above its centroid.

    Parameters
    ----------
    support : torch.Tensor
        bool ``(B, z, y, x)``.
    axes : sequence of int
        Spatial axis (0, 1 or 2) to cut, per run.

    Returns
    -------
    torch.Tensor
        The halved supports (a run whose half would be empty keeps its support).
    """
    out = support.clone()
    for i, ax in enumerate(axes):
        s = support[i]
        other = tuple(d for d in range(3) if d != ax)
        marginal = s.sum(dim=other).to(torch.float64)
        total = marginal.sum()
        if total <= 0:
            continue
        idx = torch.arange(marginal.numel(), dtype=torch.float64, device=s.device)
        cut = round(float((marginal * idx).sum() / total))
        half = s.clone()
        half.narrow(ax, cut, s.shape[ax] - cut).zero_()
        if bool(half.any()):
            out[i] = half
    return out


def bounding_box(keep: torch.Tensor) -> tuple[slice, slice, slice]:
    """Smallest box ``(z, y, x)`` slices containing every True voxel of ``keep`` (any leading dims).

    An empty support gives a one-voxel box at the grid centre.
    """
    k = keep.reshape(-1, *keep.shape[-3:]).any(dim=0)
    slices = []
    for ax in range(3):
        other = tuple(d for d in range(3) if d != ax)
        nz = torch.nonzero(k.any(dim=other)).flatten()
        if nz.numel() == 0:
            c = k.shape[ax] // 2
            slices.append(slice(c, c + 1))
        else:
            slices.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return slices[0], slices[1], slices[2]
