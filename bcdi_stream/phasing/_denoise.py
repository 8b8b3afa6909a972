"""The noise filter applied to a finished reconstruction: a Wiener gain from the measured counts.

A refinement makes ``|fft(obj)|`` equal the *measured* modulus, Poisson noise included, and the
support constraint gives every pixel a phase, so where a pixel holds a few counts its share of
the object is mostly noise. On photon-starved patterns that noise, not a wrong answer, is what
the phase error is made of (docs/MODEL_RESEARCH.md, session 18: weak crystals at 2e3 peak
counts 6/20 solved as refined, 19/20 filtered). The filter multiplies ψ(q) by
``Ī / (Ī + counts)``, Ī the mean count over the 3³ pixels around q (at a bad pixel the
reconstruction's own ``|ψ|²`` stands in for the measurement, so that a gap wider than the box
is not erased): a pixel expecting ``counts`` photons keeps half its amplitude, a bright one
all of it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from ..config import PhasingSettings
from ..physics import fft_centered, ifft_centered
from ._common import check_intensity, check_mask, check_object, check_support
from ._support import shrinkwrap_support

__all__ = ["apply_noise_filter", "denoise", "wiener_filter"]


def _local_mean(counts: torch.Tensor) -> torch.Tensor:
    """Mean of ``counts`` ``(B, z, y, x)`` over each 3³ neighbourhood inside the grid."""
    return torch.nn.functional.avg_pool3d(counts[:, None], 3, stride=1, padding=1,
                                          count_include_pad=False)[:, 0]


def wiener_filter(obj: Any, intensity: Any, mask: Any = None, *, counts: float) -> torch.Tensor:
    """Scale the object's ψ(q) by ``Ī / (Ī + counts)``.

    Parameters
    ----------
    obj : array-like
        Complex object ``(z, y, x)`` or a batch ``(runs, z, y, x)``, centred, on the
        intensity's grid.
    intensity : array-like
        The measured 3D intensity (photon counts), Bragg peak at ``N // 2``.
    mask : array-like, optional
        Bad pixels (nonzero = bad): there, and at negative counts, the object's own ``|ψ|²``
        stands in for the measurement in the local means.
    counts : float
        Expected counts at which a pixel keeps half its amplitude (> 0).

    Returns
    -------
    torch.Tensor
        The filtered object, complex64, shaped as ``obj``.

    Examples
    --------
    >>> import torch
    >>> obj = torch.ones((8, 8, 8), dtype=torch.complex64)
    >>> i = torch.full((8, 8, 8), 1e6)
    >>> bool(torch.allclose(wiener_filter(obj, i, counts=8.0), obj, atol=1e-4))
    True
    """
    if not isinstance(counts, numbers.Real) or not 0 < counts < math.inf:  # a str: TypeError
        raise ValueError(f"counts must be a positive finite number, got {counts!r}")
    dev = obj.device if isinstance(obj, torch.Tensor) else torch.device("cpu")
    i = check_intensity(intensity, dev)
    o = check_object(obj, tuple(i.shape), dev, "obj")
    bad = check_mask(mask, tuple(i.shape), dev)
    good = i >= 0  # negative counts are masked (the PyNX convention, as in the refinement)
    if bad is not None:
        good &= ~bad
    psi = fft_centered(o)
    # a bad pixel counts as what the reconstruction puts there (its modulus is free, and a gap
    # wider than the box would otherwise be erased)
    expected = torch.where(good, i, psi.abs().square())
    mean = _local_mean(expected)
    out = ifft_centered(psi * (mean / (mean + float(counts)))).to(torch.complex64)
    return out if getattr(obj, "ndim", 3) == 4 else out[0]


def denoise(obj: Any, support: Any, intensity: Any, mask: Any = None, *, counts: float,
            sigma: float = 0.5, threshold: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`wiener_filter` a reconstruction and draw its support again from the result.

    The support is the filtered amplitude smoothed by ``sigma`` and cut at ``threshold`` of
    its maximum (the last shrink-wrap of a refinement); when that would collapse it (< 1 % of
    the given support) the given one is kept.

    Parameters
    ----------
    obj : array-like
        Complex object ``(z, y, x)`` or ``(runs, z, y, x)``, centred, on the intensity's grid.
    support : array-like
        Its support, of the same shape.
    intensity, mask : array-like
        The measured counts and bad pixels (nonzero = bad).
    counts : float
        See :func:`wiener_filter`.
    sigma, threshold : float
        Shrink-wrap width (voxels) and threshold (fraction of the maximum).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The filtered object and its bool support.
    """
    out = wiener_filter(obj, intensity, mask, counts=counts)
    previous = check_support(support, tuple(out.shape[-3:]), out.device)
    if previous.shape != out.shape:
        raise ValueError(f"support must have the object's shape {tuple(out.shape)}, "
                         f"got {tuple(previous.shape)}")
    return out, shrinkwrap_support(out, sigma, threshold, previous=previous)


def apply_noise_filter(obj: Any, support: Any, intensity: Any, mask: Any,
                       settings: PhasingSettings) -> tuple[Any, Any]:
    """:func:`denoise` as ``settings`` say: ``noise_filter`` counts, the width and threshold of
    the last shrink-wrap; ``(obj, support)`` unchanged when ``noise_filter`` is 0.

    Parameters
    ----------
    obj, support : array-like
        A finished reconstruction and its support.
    intensity, mask : array-like
        The measured counts and bad pixels (nonzero = bad).
    settings : PhasingSettings
        ``noise_filter``, ``shrinkwrap_sigma_end``, ``shrinkwrap_threshold``.

    Returns
    -------
    (object, support)
    """
    if settings.noise_filter == 0:
        return obj, support
    return denoise(obj, support, intensity, mask, counts=settings.noise_filter,
                   sigma=settings.shrinkwrap_sigma_end, threshold=settings.shrinkwrap_threshold)
