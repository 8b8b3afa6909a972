"""The reported support: where the crystal is, read from the finished object's amplitude.

Shrink-wrap draws a support for phasing: the amplitude smoothed by σ and cut at 0.2 of its
maximum, about a voxel wider than the crystal all round, which is what the refinement needs
(room for the object) and not what a user reads as the crystal's shape. On a crystal 30 voxels
across that costs little (support IoU ≈ 0.85 against the true shape); on one 6–10 voxels across
(oversampling 6–9 on a 64³ grid) it sinks the IoU to 0.55–0.7 even from the true phase. The
crystal's edge is where the amplitude falls to about half the interior's: cutting the finished
object's amplitude at 0.4 of its 90th percentile inside the shrink-wrap support, and closing the
cut by one voxel (which fills the amplitude dips along a dislocation core or a fault plane, not
a void), raised the mean IoU of solved validation crystals from 0.81–0.89 to 0.91–0.94 in every
class and from 0.66–0.70 to 0.86 on small crystals (docs/MODEL_RESEARCH.md, session 19;
``benchmarks/research/support_threshold.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from bcdi_stream.physics import SPATIAL_DIMS

from ._postprocess import _complex, _mask, _require_3d

__all__ = ["crystal_support"]

#: Below this share of the given support the cut is taken for a collapse and the given kept.
_COLLAPSE = 0.05


def _dilate(m: torch.Tensor) -> torch.Tensor:
    """Binary dilation with the 6-neighbour structuring element, periodic like the phasing grid
    (an object across the grid's edge is one object)."""
    out = m.clone()
    for dim in SPATIAL_DIMS:
        out |= torch.roll(m, 1, dim) | torch.roll(m, -1, dim)
    return out


def _erode(m: torch.Tensor) -> torch.Tensor:
    """Binary erosion with the 6-neighbour structuring element, periodic (the closing's second
    half: a non-periodic one would strip a crystal touching the grid's edge of its edge layer)."""
    out = m.clone()
    for dim in SPATIAL_DIMS:
        out &= torch.roll(m, 1, dim) & torch.roll(m, -1, dim)
    return out


def crystal_support(obj: Any, support: Any, threshold: float = 0.4,
                    percentile: float = 90.0) -> torch.Tensor:
    """The crystal's support: the amplitude cut at a fraction of its typical interior value.

    Parameters
    ----------
    obj : array-like
        Finished complex 3D object ``(z, y, x)``.
    support : array-like
        Its phasing support (shrink-wrap's), same shape: the cut stays within one voxel of it,
        and its amplitudes set the reference.
    threshold : float
        Fraction of the reference amplitude, in (0, 1).
    percentile : float
        Percentile of the amplitude inside ``support`` taken as the reference, in (0, 100]
        (a high one, robust to a few hot voxels and to amplitude dips).

    Returns
    -------
    torch.Tensor
        Bool support on the object's device: ``|obj| > threshold × reference`` within one voxel
        of ``support``, closed by one voxel (6-connected); ``support`` itself when it is empty
        or the cut keeps less than 5 % of it. The grid is periodic, as in phasing: a crystal
        touching or split across the grid's edge keeps its edge layers.

    Examples
    --------
    >>> import torch
    >>> obj = torch.zeros((16, 16, 16), dtype=torch.complex64)
    >>> obj[5:11, 5:11, 5:11] = 1.0
    >>> wide = torch.zeros((16, 16, 16), dtype=torch.bool)
    >>> wide[4:12, 4:12, 4:12] = True
    >>> int(crystal_support(obj, wide).sum())
    216
    """
    m, cut, room = amplitude_cut(obj, support, threshold, percentile)
    if cut is None:
        return m
    closed = _erode(_dilate(cut)) & room
    if int(closed.sum()) < _COLLAPSE * int(m.sum()):
        return m
    return closed


def amplitude_cut(obj: Any, support: Any, threshold: float, percentile: float
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """:func:`crystal_support`'s cut before its closing (also what its research probe scores).

    Returns
    -------
    (torch.Tensor, torch.Tensor or None, torch.Tensor)
        The given support as a bool tensor, ``|obj| > threshold × reference`` within one
        voxel of it (None when the support is empty or its reference amplitude 0), and that
        one-voxel neighbourhood.
    """
    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if not (math.isfinite(float(percentile)) and 0 < float(percentile) <= 100):
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    t = _complex(obj)
    _require_3d(t, "obj")
    m = _mask(support, t)
    amp = t.abs()
    room = _dilate(m)
    inside = amp[m].to(torch.float32)
    if inside.numel() == 0:
        return m, None, room
    k = max(1, math.ceil(float(percentile) / 100.0 * inside.numel()))
    reference = float(inside.kthvalue(k).values)
    if not reference > 0:
        return m, None, room
    return m, (amp > threshold * reference) & room, room
