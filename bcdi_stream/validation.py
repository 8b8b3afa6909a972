"""Checks on input intensity and mask before any computation.

:func:`validate_intensity` refuses what cannot be phased, raising
:class:`bcdi_stream.errors.InputError` with a one-line reason; the ``check_*`` helpers return
human-readable warnings (lists of one-line strings) about data that can be phased but look
suspicious (saturation, empty frames, a cut rocking curve).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bcdi_stream.arrays import as_tensor, to_numpy
from bcdi_stream.errors import InputError

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "check_frames",
    "check_hot_pixels",
    "check_saturation",
    "clamp_sub_photon_negatives",
    "data_warnings",
    "dead_lines",
    "dead_pixel_warning",
    "dead_pixels",
    "glitch_warning",
    "glitched_frames",
    "hot_detector_pixels",
    "hot_pixel_warning",
    "integer_ceiling",
    "interior_runs",
    "leave_free",
    "lost_frames",
    "photon_scale",
    "saturated_plateau",
    "secondary_peaks",
    "stuck_pixels",
    "sub_photon_noise",
    "validate_intensity",
    "zinger_warning",
    "zingers",
]

#: Default voxel budget: 2**25 (about 320³) voxels, 256 MiB per complex64 array.
DEFAULT_MAX_VOXELS: int = 2**25
#: :func:`photon_scale`: share of the checked values that must sit on the count lattice, how
#: near (in photons), the fewest values a verdict on scaled counts needs, and which values are
#: checked (below this many photons, where float32 still resolves a single photon).
_ON_LATTICE = 0.99
_LATTICE_TOL = 0.02
_MIN_CHECKED = 100
_FAINT_PHOTONS = 1000.0
#: Counts times gains near 1 (a flat field, a monitor per frame): the single-photon cluster
#: reaches this many times the smallest value, the checked values are those below this many
#: photons, and this share of them must lie this near a whole number of photons.
_GAIN_CLUSTER = 1.5
_GAIN_FAINT = 4.5
_GAIN_ON_LATTICE = 0.95
_GAIN_TOL = 0.2
#: Scaled counts have even as well as odd multiples of one photon: at least this share of each.
_EVEN_SHARE = 0.01
#: Values below this fraction of the maximum are left out of :func:`photon_scale`'s test: no
#: detector spans more, and float32's subnormal numbers (down to 1.4e-45, all multiples of the
#: smallest) would otherwise pass for a count lattice with a photon of 1e-45 (session 21: the
#: counts came back as infinities).
_DYNAMIC_RANGE = 1e-12
#: Photons plus sub-photon noise (a charge-integrating detector): the values checked (in
#: photons), the share of them within this distance of a whole number, and the largest mean
#: and smallest spread of their distance to it (signed: a constant offset is not noise).
_NOISY_RANGE = (0.7, 20.5)
_NOISY_SHARE = 0.9
_NOISY_TOL = 0.3
_NOISY_MEAN = 0.05
_NOISY_SPREAD = 0.02


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


def _tensor(x: Any, what: str) -> torch.Tensor:
    if x is None:
        raise InputError(f"no {what} given")
    try:
        t = as_tensor(x)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{what} cannot be read as an array: {exc}") from exc
    if t.is_complex():
        raise InputError(f"{what} must be real, got complex dtype {t.dtype}")
    return t


def _mask_tensor(mask: Any, data: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    m = _tensor(mask, "mask")
    if tuple(m.shape) != tuple(data.shape):
        raise InputError(
            f"mask shape {tuple(m.shape)} does not match the intensity shape "
            f"{tuple(data.shape)}"
        )
    m = m.to(data.device)
    return m if m.dtype == torch.bool else m != 0


def validate_intensity(
    data: Any,
    mask: Any = None,
    *,
    min_size: int = 8,
    max_size: int = 512,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check a 3D diffraction intensity (and mask) and return them as tensors.

    Masked voxels (mask nonzero = bad pixel) are ignored by the value checks, and any NaN,
    infinite or negative value they hold is set to 0 in the returned intensity.

    Parameters
    ----------
    data : array-like
        numpy, torch or cupy (DLPack) 3D array ``(z, y, x)``, real, any numeric dtype.
    mask : array-like, optional
        Same shape; nonzero = bad pixel.
    min_size, max_size : int
        Allowed range of every axis length.
    max_voxels : int
        Largest number of voxels the grid may hold.

    Returns
    -------
    intensity : torch.Tensor
        float32, on the input's device.
    mask : torch.Tensor or None
        bool, True = bad pixel.

    Raises
    ------
    InputError
        One-line reason: not 3D (with the shape), complex, NaN/inf (how many), negative values,
        no counts in unmasked voxels, mask of another shape (both shapes), axis outside
        ``[min_size, max_size]`` or too many voxels.
    ValueError
        Bad ``min_size``, ``max_size`` or ``max_voxels``.
    """
    min_size = _positive_int(min_size, "min_size")
    max_size = _positive_int(max_size, "max_size")
    max_voxels = _positive_int(max_voxels, "max_voxels")
    if max_size < min_size:
        raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")

    t = _tensor(data, "intensity")
    if t.dtype == torch.bool:
        raise InputError("intensity must be numeric counts, got a bool array")
    shape = tuple(t.shape)
    if t.ndim != 3:
        raise InputError(f"intensity must be a 3D array (z, y, x), got shape {shape}")
    if min(shape) < min_size:
        raise InputError(
            f"intensity shape {shape} is too small: every axis needs at least {min_size} points"
        )
    if max(shape) > max_size:
        raise InputError(
            f"intensity shape {shape} is too large: every axis must be at most {max_size} "
            "points (crop around the Bragg peak)"
        )
    if t.numel() > max_voxels:
        raise InputError(
            f"intensity shape {shape} has {t.numel()} voxels, more than the {max_voxels} "
            "the grid can hold (crop around the Bragg peak)"
        )
    m = _mask_tensor(mask, t)

    x = t.to(torch.float32)
    valid = torch.ones_like(x, dtype=torch.bool) if m is None else ~m
    where = "" if m is None else " unmasked"
    if m is not None and not bool(valid.any()):
        raise InputError("the mask excludes every voxel")
    n_nan = int((torch.isnan(x) & valid).sum())
    n_inf = int((torch.isinf(x) & valid).sum())
    if n_nan or n_inf:
        raise InputError(
            f"intensity has {n_nan} NaN and {n_inf} infinite values in{where} voxels "
            f"(of {x.numel()})"
        )
    neg = (x < 0) & valid
    n_neg = int(neg.sum())
    if n_neg:
        low = float(x[neg].min())
        raise InputError(
            f"intensity has {n_neg} negative values in{where} voxels (min {low:g}): "
            "subtract the background without going below 0"
        )
    total = float(torch.where(valid, x, torch.zeros_like(x)).sum(dtype=torch.float64))
    if not total > 0:
        if m is None:
            raise InputError("intensity is all zeros: no counts to phase")
        raise InputError("intensity has no counts in unmasked voxels")
    if m is not None:
        bad = m & ~(torch.isfinite(x) & (x >= 0))
        if bool(bad.any()):
            x = torch.where(bad, torch.zeros_like(x), x)
    return x, m


def _counts(data: Any, mask: Any) -> torch.Tensor:
    """float32 3D intensity with masked and non-finite voxels at 0 (for the warnings)."""
    t = _tensor(data, "intensity")
    if t.ndim != 3:
        raise InputError(f"intensity must be a 3D array (z, y, x), got shape {tuple(t.shape)}")
    x = t.to(torch.float32)
    m = _mask_tensor(mask, t)
    keep = torch.isfinite(x) if m is None else torch.isfinite(x) & ~m
    return torch.where(keep, x, torch.zeros_like(x))


def _measured(intensity: Any, mask: Any, keep: Callable[[torch.Tensor], torch.Tensor]
              ) -> torch.Tensor:
    """float64 values of ``intensity`` that ``keep`` selects, bad pixels (``mask``) left out."""
    x = as_tensor(intensity).to(torch.float64)
    valid = keep(x)
    if mask is not None:
        valid &= ~as_tensor(mask).to(x.device).bool()
    return x[valid]


def _ranges(idx: list[int], limit: int = 8) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"`` (at most ``limit`` pieces)."""
    parts: list[str] = []
    start = prev = idx[0]
    for i in [*idx[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def check_saturation(data: Any, mask: Any = None, *, level: float | None = None) -> list[str]:
    """Warn about saturated voxels.

    Parameters
    ----------
    data : array-like
        3D intensity.
    mask : array-like, optional
        Nonzero = bad pixel (ignored).
    level : float, optional
        The detector's saturation count: voxels at or above it are reported. Without it,
        several voxels sharing a high maximum value (a plateau, ≥ 1000 counts) are reported as
        possible saturation.

    Returns
    -------
    list of str
        One-line warnings (empty when nothing is suspicious).
    """
    if level is not None and not float(level) > 0:
        raise ValueError(f"level must be positive, got {level}")
    x = _counts(data, mask)
    out: list[str] = []
    top = float(x.max())
    if level is not None:
        n = int((x >= float(level)).sum())
        if n:
            out.append(
                f"{n} voxels at or above the saturation level {float(level):g} counts "
                f"(max {top:g}): the Bragg peak is probably clipped"
            )
    else:
        plateau = saturated_plateau(x)
        if plateau is not None:
            out.append(f"possible detector saturation: {int(plateau.sum())} voxels share the "
                       f"maximum value {top:g}")
    return out


def saturated_plateau(data: torch.Tensor, mask: torch.Tensor | None = None, *,
                      min_voxels: int = 4, min_counts: float = 1000.0) -> torch.Tensor | None:
    """The voxels of a clipped Bragg peak: several good voxels sharing a high maximum count.

    A detector that saturates without flagging its pixels (a count-rate limit, an attenuator
    left out) caps the peak's core at one value; those voxels then say only "at least this
    many", and phasing them as measured, or the model seeing a flat-topped peak, fails
    (docs/MODEL_RESEARCH.md, session 21). Poisson counts of 1000 or more almost never tie
    ``min_voxels`` times at the maximum otherwise. :func:`check_saturation` warns of it when
    given no saturation level.

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    min_voxels : int
        Fewest voxels at the maximum that make a plateau (>= 2).
    min_counts : float
        Lowest maximum count considered (> 0).

    Returns
    -------
    torch.Tensor or None
        Bool mask of the plateau's voxels, or None when there is none.
    """
    if min_voxels < 2:
        raise ValueError(f"min_voxels must be >= 2, got {min_voxels}")
    if not min_counts > 0:
        raise ValueError(f"min_counts must be positive, got {min_counts}")
    x = _counts(data, mask)
    top = float(x.max())
    if top < min_counts:
        return None
    plateau = x == top
    return plateau if int(plateau.sum()) >= min_voxels else None


def lost_frames(data: torch.Tensor, mask: torch.Tensor | None = None, *,
                min_counts: float = 50.0) -> list[int]:
    """Frames (axis 0) lost inside the rocking curve: no counts between frames that have some.

    A frame the detector dropped (a readout glitch, a beam loss) arrives as zeros. Phased as
    measured, those zeros are a constraint no crystal meets: a frame through the peak made
    every weak crystal fail, from the true phase too; left free, 10/10 phased
    (docs/MODEL_RESEARCH.md, session 21). A run of frames with no counts on good pixels is
    lost when the frames on both sides of it hold at least ``min_counts`` counts each (then
    Poisson noise cannot empty it); runs at either end of the curve are its tails, kept.

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts, frames along axis 0.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    min_counts : float
        Counts each bordering frame must hold (> 0).

    Returns
    -------
    list of int
        Indices of the lost frames (empty when none).
    """
    if not min_counts > 0:
        raise ValueError(f"min_counts must be positive, got {min_counts}")
    return _empty_inside(_counts(data, mask).sum(dim=(1, 2)).tolist(), min_counts)


def dead_lines(data: torch.Tensor, mask: torch.Tensor | None = None, *,
               min_counts: float = 50.0) -> tuple[list[int], list[int]]:
    """Detector rows and columns without a count in any frame, between rows (columns) with some.

    A gap between detector chips or modules is a band of rows (axis 1) or columns (axis 2)
    that never counts. A file written without its mask hands it over as zeros, which phasing
    takes as measured: with such a band 2–6 px wide within 10 px of the peak, 8/10 weak and
    5/10 medium crystals were phased, against 10/10 and 10/10 with the band flagged
    (docs/MODEL_RESEARCH.md, session 30). :func:`lost_frames`'s rule along the detector's
    axes: a run of rows with no counts on good pixels is dead when the rows on both sides of
    it hold at least ``min_counts`` counts each (summed over every frame); runs at either edge
    are the pattern's tails, kept, and rows already bad throughout are not reported.

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts ``(z, y, x)``.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    min_counts : float
        Counts each bordering row or column must hold (> 0).

    Returns
    -------
    (list of int, list of int)
        The dead rows (y) and dead columns (x) (empty when none).
    """
    if not min_counts > 0:
        raise ValueError(f"min_counts must be positive, got {min_counts}")
    x = _counts(data, mask)
    m = _mask_tensor(mask, x)
    out: list[list[int]] = []
    for axis in (1, 2):
        others = tuple(d for d in range(3) if d != axis)
        sums = x.sum(dim=others, dtype=torch.float64).tolist()
        open_ = [True] * len(sums) if m is None else (~m).any(dim=others).tolist()
        out.append([k for k in _empty_inside(sums, min_counts) if open_[k]])
    return out[0], out[1]


def stuck_pixels(data: torch.Tensor, mask: torch.Tensor | None = None, *,
                 min_frames: int = 8, false_alarms: float = 1e-3) -> torch.Tensor | None:
    """Detector pixels that hold the same positive count in every frame: stuck, not counting.

    A stuck pixel (a damaged or mis-trimmed counter, a pixel the readout pins at one value)
    reports one value whatever arrives. Taken as data, a high one ties with itself in every
    frame and passed for a clipped peak (:func:`saturated_plateau`) and, bright enough, for
    another grain's Bragg peak (:func:`secondary_peaks`). Poisson counts of mean ``v`` repeat
    ``v`` in all ``m`` good frames with a chance of at most ``P(v; v)^(m-1)``
    (``P(v; v) <= 0.37``); a pixel is stuck when that chance, times the number of detector
    pixels, is below ``false_alarms``, with at least ``min_frames`` good frames.

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts ``(frames, rows, cols)``.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    min_frames : int
        Fewest good frames a pixel needs for the test (>= 2).
    false_alarms : float
        Expected number of Poisson pixels called stuck by chance, in (0, 1).

    Returns
    -------
    torch.Tensor or None
        ``(rows, cols)`` bool mask of the stuck pixels, or None when there is none.
    """
    if isinstance(min_frames, bool) or not isinstance(min_frames, int) or min_frames < 2:
        raise ValueError(f"min_frames must be an integer >= 2, got {min_frames!r}")
    if not 0 < false_alarms < 1:
        raise ValueError(f"false_alarms must be in (0, 1), got {false_alarms}")
    x = _counts(data, mask).to(torch.float64)
    m = _mask_tensor(mask, x)
    good = torch.ones_like(x, dtype=torch.bool) if m is None else ~m
    hi = torch.where(good, x, -torch.inf).amax(0)
    lo = torch.where(good, x, torch.inf).amin(0)
    frames = good.sum(0)
    v = torch.where(hi > 0, hi, 1.0)
    log_p = -v + v * torch.log(v) - torch.lgamma(v + 1)  # log P(v; v), Poisson
    chance = (frames - 1).clamp_min(0) * log_p + math.log(x.shape[1] * x.shape[2])
    stuck = (hi > 0) & (hi == lo) & (frames >= min_frames) & (chance < math.log(false_alarms))
    return stuck if bool(stuck.any()) else None


def dead_pixels(data: torch.Tensor, mask: torch.Tensor | None = None, *,
                min_counts: float = 30.0) -> torch.Tensor | None:
    """Detector pixels without a count in any frame among pixels that count: dead, unflagged.

    A dead pixel (or a group of up to 2×2) that the file's mask does not flag arrives as
    zeros, which phasing takes as measured: no intensity there at any angle. Five such pixels
    2-3 px from the peak of weak crystals (``ai``, peak 1e5 counts) left 2/8 phased, against
    7/8 with them left free (8/8 clean). :func:`dead_lines` finds whole rows and columns; this
    finds compact groups: 8-connected groups of pixels with no count on their good frames,
    at most 2×2, every other pixel around which summed at least ``min_counts`` over the
    frames (Poisson counts of that mean are all 0 with a chance of ``exp(-min_counts)``,
    1e-13). A fringe's dark line (an axis-aligned facet) is longer than 2 px, or its pixels
    hold a few counts.

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts ``(frames, rows, cols)``.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored; frames bad throughout (lost) are left out, and a
        pixel bad in any other frame is not tested.
    min_counts : float
        Least summed counts of each pixel around a group (> 0).

    Returns
    -------
    torch.Tensor or None
        ``(rows, cols)`` bool mask of the dead pixels, or None when there is none.
    """
    from scipy import ndimage

    if not min_counts > 0:
        raise ValueError(f"min_counts must be positive, got {min_counts}")
    x = _counts(data, mask)
    if x.shape[1] < 3 or x.shape[2] < 3:
        return None
    m = _mask_tensor(mask, x)
    img = x.sum(0, dtype=torch.float64).cpu()
    whole = torch.ones_like(img, dtype=torch.bool)
    if m is not None:  # frames bad throughout (lost) left out; then pixels bad in any frame
        whole = ~m[~m.flatten(1).all(dim=1)].any(dim=0).cpu()
    zero = whole & (img <= 0)
    if not bool(zero.any()):
        return None
    labels, _ = ndimage.label(zero.numpy(), structure=np.ones((3, 3)))
    out = np.zeros(zero.shape, dtype=bool)
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if any(sl.stop - sl.start > 2 for sl in box):
            continue
        part = labels == lab
        grown = ndimage.binary_dilation(part, structure=np.ones((3, 3))) & ~part
        around = img.numpy()[grown]
        if around.size and bool(whole.numpy()[grown].all()) and around.min() >= min_counts:
            out |= part
    if not out.any():
        return None
    return torch.from_numpy(out).to(x.device)


def hot_detector_pixels(data: torch.Tensor, mask: torch.Tensor | None = None
                        ) -> torch.Tensor | None:
    """Detector pixels that are not measuring the crystal: stuck (:func:`stuck_pixels`) or hot
    (:func:`bcdi_stream.preprocess.find_hot_pixels`, isolated or in clusters up to
    :data:`~bcdi_stream.preprocess.MAX_HOT_CLUSTER` wide; pixels bad in every frame left out of
    its neighbourhoods), found on photon counts. A pixel whose excess lies in one frame (a
    cosmic ray) is not one of them: :func:`zingers`.

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts ``(frames, rows, cols)``.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.

    Returns
    -------
    torch.Tensor or None
        ``(rows, cols)`` bool mask, or None when there is none.
    """
    return _pixel_faults(data, mask)[0]


def zingers(data: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """Voxels hit by a cosmic ray (a zinger): one frame of a pixel far above the rest.

    A pixel :func:`bcdi_stream.preprocess.find_hot_pixels` finds in the summed image that is
    no longer hot once its brightest frame is left out: the excess is that one voxel, which
    alone is bad (its pixel measures in the other frames).

    Parameters
    ----------
    data : torch.Tensor
        3D photon counts ``(frames, rows, cols)``.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.

    Returns
    -------
    torch.Tensor or None
        Bool mask of the voxels (same shape as ``data``), or None when there is none.
    """
    return _pixel_faults(data, mask)[1]


def _pixel_faults(data: torch.Tensor, mask: torch.Tensor | None
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(hot or stuck pixels ``(rows, cols)``, zinger voxels ``data.shape``), None when none."""
    from bcdi_stream.preprocess import find_hot_pixels  # it imports this module

    x = _counts(data, mask)
    m = _mask_tensor(mask, x)
    found = stuck_pixels(x, m)
    hits = None
    if x.shape[1] >= 3 and x.shape[2] >= 3:
        # bad in every frame: a gap, a flagged pixel (a lost frame, bad throughout, changes
        # nothing in this AND)
        ignore = None if m is None else m.all(dim=0)
        hot = find_hot_pixels(x, ignore=ignore)
        if bool(hot.any()):
            # a cosmic ray: not hot without its brightest frame
            top = x.argmax(dim=0)
            rest = x.clone()
            ys, xs = torch.nonzero(hot, as_tuple=True)
            rest[top[ys, xs], ys, xs] = 0.0
            one = hot & ~find_hot_pixels(rest, ignore=ignore)
            if found is not None:
                one &= ~found
            if bool(one.any()):
                hits = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
                ys, xs = torch.nonzero(one, as_tuple=True)
                hits[top[ys, xs], ys, xs] = True
                hot = hot & ~one
        found = hot if found is None else found | hot
    if found is not None and not bool(found.any()):
        found = None
    return found, hits


def glitched_frames(data: torch.Tensor, mask: torch.Tensor | None = None, *,
                    counts: bool = True, min_score: float = 6.0, min_change: float = 0.5,
                    min_share: float = 0.05, max_frames: int = 3) -> list[tuple[int, float]]:
    """Frames (axis 0) whose counts jump against the rocking curve through their neighbours.

    A beam dump, a top-up injection or an attenuator glitch during one exposure scales that
    whole frame (by 0.1, by 3...), a step no crystal's rocking curve takes. Phased as measured
    (``ai``, 8 weak crystals, peak 1e5 counts, the frame after the peak's), one frame at 0.1
    left 2/8 phased, at 0.3 4/8, at 3× 4/8; left free, 8/8 each time (as clean: 8/8). The
    logarithm of the frame sums is fitted by a cubic through the 3 frames on each side (the
    frame itself left out; on symmetric points its value there is the parabola's, the odd
    terms only take a slope out of the scatter); a frame is glitched when it is off that fit
    by at least ``min_change`` (a factor below 0.61 or above 1.65) and by at least
    ``min_score`` times the fit's own scatter on those 6 frames (a crystal's fringes along the
    rocking curve make its neighbours scatter too) plus 0.03 and, for counts, 3 Poisson
    sigmas. Only frames where the fit reaches ``min_share`` of the brightest frame are tested,
    with none of the 7 frames empty (lost frames are :func:`lost_frames`'). The worst frame is
    taken, replaced by its fit, and the test repeated, up to ``max_frames`` times. On 64
    crystals each of weak, medium and strong strain (``simulate_crystal``, n = 64, seeds
    0-15, peak counts 2e3, 1e5, 1e6 and random) it finds no frame (the largest clean score is
    3.8); a frame next to the peak scaled by 0.1 is found in 61/64 weak, 64/64 medium, 64/64
    strong crystals, by 0.3 in 45, 59, 59 and by 3 in 55, 59, 62.

    Parameters
    ----------
    data : torch.Tensor
        3D intensity, frames along axis 0.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    counts : bool
        ``data`` is photon counts (Poisson noise of the frame sums taken into account).
    min_score, min_change, min_share : float
        See above.
    max_frames : int
        Most frames reported.

    Returns
    -------
    list of (int, float)
        Each glitched frame and the factor its counts were scaled by (its sum over the fit's
        value), in the order found.
    """
    if not (min_score > 0 and min_change > 0 and 0 < min_share < 1):
        raise ValueError(f"min_score and min_change must be positive and min_share in (0, 1), "
                         f"got {min_score}, {min_change}, {min_share}")
    sums = _counts(data, mask).sum(dim=(1, 2), dtype=torch.float64).cpu().numpy()
    half = 3
    n = sums.size
    if n < 2 * half + 1 or not float(sums.max()) > 0:
        return []
    offsets = np.array([d for d in range(-half, half + 1) if d], dtype=np.float64)
    design = np.stack([offsets**p for p in range(4)], axis=1)
    fit = np.linalg.pinv(design)  # (4, 6): least squares, its first row gives the centre
    logs = np.log(np.where(sums > 0, sums, 1.0))
    top = float(sums.max())
    out: list[tuple[int, float]] = []
    for _ in range(max_frames):
        best, best_score, best_change, best_centre = -1, 0.0, 0.0, 0.0
        for k in range(half, n - half):
            if float(sums[k - half:k + half + 1].min()) <= 0:
                continue
            side = np.concatenate([logs[k - half:k], logs[k + 1:k + half + 1]])
            coef = fit @ side
            level = math.exp(coef[0])
            if level < min_share * top:
                continue
            scatter = math.sqrt(float(((side - design @ coef) ** 2).sum()) / 2.0)
            noise = 3.0 / math.sqrt(level) if counts else 0.0
            change = float(logs[k] - coef[0])
            score = abs(change) / (scatter + 0.03 + noise)
            if score > best_score:
                best, best_score, best_change, best_centre = k, score, change, coef[0]
        if best < 0 or best_score < min_score or abs(best_change) < min_change:
            break
        out.append((best, math.exp(best_change)))
        logs[best] = best_centre  # the next search as if that frame were right
    return out


def _empty_inside(sums: list[float], min_counts: float) -> list[int]:
    """Indices of the runs of empty planes (``sums`` of their counts <= 0) whose bordering
    planes hold at least ``min_counts`` each: :func:`lost_frames`' and :func:`dead_lines`'
    rule (runs at either end are tails, kept)."""
    return [k for start, end in interior_runs([v <= 0 for v in sums])
            if min(sums[start - 1], sums[end]) >= min_counts for k in range(start, end)]


def interior_runs(flags: list[bool]) -> list[tuple[int, int]]:
    """The runs of true ``flags`` with a false one on both sides, as ``(start, end)`` slices.

    Parameters
    ----------
    flags : list of bool

    Returns
    -------
    list of (int, int)
        ``flags[start:end]`` are all true, ``flags[start - 1]`` and ``flags[end]`` false.

    Examples
    --------
    >>> interior_runs([True, False, True, True, False, True])
    [(2, 4)]
    """
    runs: list[tuple[int, int]] = []
    k, n = 0, len(flags)
    while k < n:
        if not flags[k]:
            k += 1
            continue
        end = k
        while end < n and flags[end]:
            end += 1
        if k > 0 and end < n:
            runs.append((k, end))
        k = end
    return runs


def sub_photon_noise(intensity: Any, mask: Any = None) -> bool:
    """Whether the values are photons plus sub-photon noise: a charge-integrating detector's
    frames after their gain and pedestal calibration (Jungfrau, ePix, a CCD), clamped at 0.

    Such values are not on the count lattice (:func:`photon_scale` says None) but cluster
    around whole numbers of photons; rounding them is the photon conversion those detectors'
    users make, and gives counts. Phased as given, the excess misfit (no Poisson term for data
    not in photons) took the noise for misfit and flagged half the successes of 10 weak
    crystals ``poor`` (docs/MODEL_RESEARCH.md, session 21).

    Parameters
    ----------
    intensity : array-like
        3D intensity (``>= 0``).
    mask : array-like, optional
        Bad pixels (nonzero = bad), left out.

    Returns
    -------
    bool
        True when at least 100 of the values from 0.7 to 20.5 are measured, 90 % of them lie
        within 0.3 of a whole number, and their signed distance to it has a mean within 0.05
        and a spread above 0.02 (noise, not an offset, not exact integers).
    """
    values = _measured(intensity, mask, lambda x: (x >= _NOISY_RANGE[0]) & (x < _NOISY_RANGE[1]))
    if values.numel() < _MIN_CHECKED:
        return False
    r = values - values.round()
    return (float((r.abs() <= _NOISY_TOL).double().mean()) >= _NOISY_SHARE
            and abs(float(r.mean())) <= _NOISY_MEAN and float(r.std()) > _NOISY_SPREAD)


def clamp_sub_photon_negatives(intensity: Any, mask: Any = None) -> tuple[Any, int]:
    """Set to 0 the negative values of photons plus sub-photon noise, and say how many.

    A charge-integrating detector's calibrated frames (Jungfrau, ePix, a CCD after its dark)
    scatter around 0 where no photon arrived: negative values above -1 photon are noise, not
    bad input, and the photon conversion (:func:`sub_photon_noise`, rounding) sends them to 0.
    Anything else negative is left as it is, for :func:`validate_intensity` to refuse.

    Parameters
    ----------
    intensity : array-like
        3D intensity.
    mask : array-like, optional
        Bad pixels (nonzero = bad), left out of the test.

    Returns
    -------
    (array-like, int)
        ``intensity`` clamped at 0 (a float tensor) and the number of values clamped, when every
        negative value is above -1 and the rest are photons plus sub-photon noise; else
        ``intensity`` unchanged and 0.
    """
    t = as_tensor(intensity)
    if t.is_complex() or not t.is_floating_point():
        return intensity, 0
    neg = t < 0
    if mask is not None:
        m = as_tensor(mask).to(t.device).bool()
        if tuple(m.shape) != tuple(t.shape):
            return intensity, 0  # validate_intensity explains the shape
        neg &= ~m
    n = int(neg.sum())
    if n == 0 or not float(t[neg].min()) > -1.0:
        return intensity, 0
    clamped = t.clamp_min(0)
    if not sub_photon_noise(clamped, mask):
        return intensity, 0
    return clamped, n


def _wrapped_parts(s: Any, labels: Any, main: Any, edge: int = 2) -> list[int]:
    """The labels of the parts of ``labels`` that are the main part's intensity wrapped round.

    A part is one when it meets ``main`` across a face of the array (a voxel of it on one face and
    one of ``main`` on the opposite face, at most one voxel apart along the face) and its
    maximum of ``s`` lies within ``edge`` voxels of that face: a tail cut by the face, the rest
    of it on the far side, not a peak of its own inside the array. Parts so added are followed
    across faces in turn.
    """
    import numpy as np
    from scipy import ndimage

    main = main.copy()
    tops = ndimage.maximum_position(s, labels, index=np.arange(1, int(labels.max()) + 1))
    found: list[int] = []
    grown = True
    while grown:
        grown = False
        for axis, n in enumerate(s.shape):
            for face, far in ((0, n - 1), (n - 1, 0)):
                near = ndimage.binary_dilation(np.take(main, far, axis=axis),
                                               structure=np.ones((3, 3)))
                for lab in np.unique(np.take(labels, face, axis=axis)[near]):
                    lab = int(lab)
                    if lab == 0 or lab in found or main[labels == lab].any():
                        continue
                    if abs(int(tops[lab - 1][axis]) - face) > edge:
                        continue
                    found.append(lab)
                    main |= labels == lab
                    grown = True
    return found


def secondary_peaks(data: torch.Tensor, mask: torch.Tensor | None = None, *,
                    peak_share: float = 0.1, min_gap: float = 4.0, level: float = 0.02,
                    floor: float = 1e-3) -> torch.Tensor | None:
    """The region of another grain's Bragg peak inside the array, to be left free.

    A second crystal's peak in the crop (a polycrystalline film, a dense ensemble) is data no
    single compact object explains: every weak crystal with one at 0.3 of its peak failed
    (docs/MODEL_RESEARCH.md, session 21). The pattern, its planes bad throughout (detector
    gaps, lost frames) interpolated (:func:`bcdi_stream.preprocess.fill_lost_planes`: a gap
    through the peak cut it in parts that passed for other peaks, session 30) and smoothed over
    3³ voxels, is cut at ``level`` of its maximum; the connected part nearest the array's
    centre is the crystal's peak (the contract puts it there; its maximum may sit in a masked
    core, and another grain's part may hold more intensity), and another part is another peak
    when it reaches ``peak_share`` of that peak's maximum and lies at least ``min_gap`` voxels
    from it. A crystal's own side lobes and strained fragments, on 120 test and validation
    crystals (weak to strong), reach at most 0.056 of the maximum (and lie 2–8 voxels away);
    other grains' peaks, 0.27–0.47 at 12–19 voxels. Its region is the voxels nearer to it than
    to the main peak where the smoothed pattern is above ``floor`` of its own maximum, grown by
    one voxel.

    A part that meets the crystal's peak across a face of the array (above ``level`` on both
    faces, within a voxel) and holds its maximum within 2 voxels of that face is the crystal's
    own intensity wrapped round, not another peak: the pattern of a strongly strained crystal
    can be wider than the array, and the discrete transform that made it (or the crop that cut
    it) folds its tails to the opposite face. Two strong crystals of 40 (seeds 0 and 31, at any
    peak count) had 15 000–30 000 voxels, a part at 0.29–0.36 of the peak 5–6 voxels from it,
    left free as another grain's peak that way.

    Parameters
    ----------
    data : torch.Tensor
        3D intensity (counts or any units).
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    peak_share, min_gap, level, floor : float
        See above.

    Returns
    -------
    torch.Tensor or None
        Bool mask of the other peaks' regions, or None when there is none.
    """
    import numpy as np
    import torch.nn.functional as F
    from scipy import ndimage

    for name, v in (("peak_share", peak_share), ("level", level), ("floor", floor)):
        if not 0 < v < 1:
            raise ValueError(f"{name} must be in (0, 1), got {v}")
    if not min_gap >= 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    from bcdi_stream.preprocess import fill_lost_planes  # it imports this module

    x = _counts(data, mask).to("cpu")
    m = _mask_tensor(mask, x)
    if m is not None:  # a gap or a lost frame through the peak must not cut it in parts
        x = fill_lost_planes(x, m)
    s = F.avg_pool3d(x[None, None], 3, stride=1, padding=1)[0, 0].numpy()
    top = float(s.max())
    if top <= 0:
        return None
    labels, count = ndimage.label(s >= level * top, structure=np.ones((3, 3, 3)))
    if count < 2:
        return None
    # the crystal's own peak is the part nearest the centre
    grids = np.meshgrid(*(np.arange(n) - n // 2 for n in s.shape), indexing="ij")
    radius = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))
    nearest = ndimage.minimum(radius, labels, index=np.arange(1, count + 1))
    main = labels == 1 + int(np.argmin(nearest))
    main |= np.isin(labels, _wrapped_parts(s, labels, main))
    top = float(s[main].max())
    to_main = ndimage.distance_transform_edt(~main)
    out = np.zeros(s.shape, dtype=bool)
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[box] == lab
        if main[box][part].any():
            continue
        peak = float(s[box][part].max())
        if peak < peak_share * top or float(to_main[box][part].min()) < min_gap:
            continue
        other = labels == lab
        region = (ndimage.distance_transform_edt(~other) < to_main) & (s >= floor * peak)
        out |= ndimage.binary_dilation(region | other)
    if not out.any():
        return None
    return torch.from_numpy(out).to(data.device)


def leave_free(data: torch.Tensor, mask: torch.Tensor | None, *, counts: bool
               ) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """Add to the bad pixels what no object should be asked to fit, and say what was added.

    Hot and stuck detector pixels (:func:`hot_detector_pixels`, photon counts only; in every
    frame: first, so that a stuck pixel's constant value passes neither for a clipped peak nor
    for another grain's peak) and cosmic-ray hits (:func:`zingers`, those voxels alone), a
    clipped peak (:func:`saturated_plateau`, photon counts only:
    its values are a lower bound), frames lost inside the rocking curve (:func:`lost_frames`,
    bordering frames of 50 counts, or of any positive value when ``data`` is not counts),
    detector rows and columns that never count (:func:`dead_lines`, an unflagged gap; the same
    bordering counts), single pixels that never count (:func:`dead_pixels`, photon counts
    only; in every frame), frames scaled by a beam glitch (:func:`glitched_frames`; found in any
    units, left free for photon counts only) and another grain's Bragg peak
    (:func:`secondary_peaks`), in that order.

    Parameters
    ----------
    data : torch.Tensor
        3D intensity.
    mask : torch.Tensor or None
        Bad pixels (True = bad).
    counts : bool
        ``data`` is photon counts (:func:`photon_scale` found one).

    Returns
    -------
    (torch.Tensor or None, dict)
        The bad pixels (``mask`` when nothing was added) and ``hot_pixels`` and
        ``dead_pixels`` (detector pixels), ``zinger_voxels``, ``saturated_voxels``,
        ``lost_frames`` (frame indices), ``dead_rows`` and ``dead_columns`` (detector row
        and column indices), ``glitched_frames`` (frame indices) and ``glitch_factors``
        (their counts over the rocking curve's, same order), and ``secondary_peak_voxels``.
    """
    bad = mask

    def add(region: torch.Tensor) -> None:
        nonlocal bad
        bad = region if bad is None else bad | region

    hot, hits = _pixel_faults(data, bad) if counts else (None, None)
    if hits is not None:  # cosmic rays: those voxels alone
        add(hits)
    n_hot = 0
    if hot is not None:
        if bad is not None:  # pixels already bad in every frame are not news
            hot = hot & ~bad.all(dim=0)
        n_hot = int(hot.sum())
        if n_hot:
            add(hot[None].expand(data.shape))
        else:
            hot = None
    plateau = saturated_plateau(data, bad) if counts else None
    if plateau is not None:
        add(plateau)
    floor = 50.0 if counts else 1e-30
    lost = lost_frames(data, bad, min_counts=floor)
    rows, columns = dead_lines(data, bad, min_counts=floor)
    planes = torch.zeros(data.shape, dtype=torch.bool, device=data.device)
    planes[lost] = True
    planes[:, rows] = True
    planes[:, :, columns] = True
    # single dead pixels, once whole rows and columns are known (a gap's pixels are not)
    dead = dead_pixels(data, planes if bad is None else bad | planes) if counts else None
    if dead is not None:
        add(dead[None].expand(data.shape))
        hot = dead if hot is None else hot | dead
    glitched = glitched_frames(data, bad if bad is None else bad | planes, counts=counts)
    if counts:
        planes[[k for k, _ in glitched]] = True
    if lost or rows or columns or (counts and glitched):
        add(planes)
    # the clipped core still marks the crystal's peak; the planes are bridged, not cut
    free = planes if mask is None else mask | planes
    if hot is not None:
        free = free | hot[None]
    others = secondary_peaks(data, free)
    if others is not None:
        add(others)
    return bad, {"hot_pixels": n_hot, "dead_pixels": 0 if dead is None else int(dead.sum()),
                 "zinger_voxels": 0 if hits is None else int(hits.sum()),
                 "saturated_voxels": 0 if plateau is None else int(plateau.sum()),
                 "lost_frames": lost, "dead_rows": rows, "dead_columns": columns,
                 "glitched_frames": [k for k, _ in glitched],
                 "glitch_factors": [round(f, 3) for _, f in glitched],
                 "secondary_peak_voxels": 0 if others is None else int(others.sum())}


def check_frames(data: Any, mask: Any = None, *, edge_fraction: float = 0.05,
                 glitches: bool = True) -> list[str]:
    """Warn about the rocking curve (axis 0): empty frames, a cut curve, an off-centre peak,
    frames scaled by a beam glitch.

    Parameters
    ----------
    data : array-like
        3D intensity, axis 0 = rocking angle.
    mask : array-like, optional
        Nonzero = bad pixel (ignored).
    edge_fraction : float
        A first or last frame holding more than this fraction of the brightest frame's counts
        means the rocking curve is cut (counts above each frame's background: its median
        pixel, or the mean of its pixels up to its 75th percentile when more, times its
        pixels).
    glitches : bool
        Also warn about frames whose counts jump against the curve through their neighbours
        (:func:`glitched_frames`: a beam dump, a top-up spike).

    Returns
    -------
    list of str
        One-line warnings (empty when nothing is suspicious).
    """
    if not 0 < float(edge_fraction) < 1:
        raise ValueError(f"edge_fraction must be in (0, 1), got {edge_fraction}")
    x = _counts(data, mask)
    sums = x.sum(dim=(1, 2), dtype=torch.float64)
    n = int(sums.numel())
    out: list[str] = []
    empty = [int(i) for i in torch.nonzero(sums <= 0).flatten().tolist()]
    if empty:
        out.append(f"{len(empty)} of {n} frames (axis 0) have no counts: {_ranges(empty)}")
    peak = float(sums.max())
    # the cut test on the counts above each frame's background (its median pixel, or the
    # mean of its pixels up to its 75th percentile when more: a sparse background's median is
    # 0; times its pixels): 1 photon/pixel of flat background made every dim weak crystal's
    # curve "cut"
    flat = x.flatten(1).to(torch.float64)
    dim = flat <= flat.quantile(0.75, dim=1, keepdim=True)
    level = torch.maximum(flat.median(dim=1).values,
                          (flat * dim).sum(1) / dim.sum(1)) * flat.shape[1]
    above = (sums - level).clamp_min(0)
    top = float(above.max())
    if peak > 0 and top > 0:
        for label, idx in (("first", 0), ("last", n - 1)):
            frac = float(above[idx]) / top
            if frac > edge_fraction:
                out.append(
                    f"the rocking curve is cut: the {label} frame holds {100 * frac:.0f}% of "
                    "the brightest frame's counts (above their background)"
                )
    if peak > 0:
        k = int(torch.argmax(sums))
        if abs(k - n // 2) > n / 4:
            out.append(f"the Bragg peak is at frame {k}, far from the centre of the {n} frames")
    if glitches and peak > 0:
        photons = photon_scale(x)  # counts, or counts scaled: their Poisson noise is known
        found = glitched_frames(x if photons is None else x * photons, counts=photons is not None)
        out += [glitch_warning(k, f) for k, f in found]
    return out


def glitch_warning(frame: int, factor: float) -> str:
    """The one-line warning about a frame :func:`glitched_frames` found.

    Parameters
    ----------
    frame : int
        Frame index (axis 0).
    factor : float
        Its counts over the rocking curve's through its neighbours.

    Returns
    -------
    str
    """
    what = "a beam dump or loss?" if factor < 1 else "a top-up or beam spike?"
    return (f"frame {frame} holds {factor:.2g}x the counts the rocking curve through its "
            f"neighbours predicts ({what})")


def check_hot_pixels(data: Any, mask: Any = None) -> list[str]:
    """Warn about hot and stuck detector pixels (:func:`hot_detector_pixels`), cosmic-ray hits
    (:func:`zingers`) and dead pixels (:func:`dead_pixels`).

    Parameters
    ----------
    data : array-like
        3D photon counts ``(frames, rows, cols)``.
    mask : array-like, optional
        Nonzero = bad pixel (ignored).

    Returns
    -------
    list of str
        One-line warnings (empty when nothing is suspicious).
    """
    x = _counts(data, mask)
    m = _mask_tensor(mask, x)
    return _pixel_warnings(x, m, *_pixel_faults(x, m))


def _pixel_warnings(x: torch.Tensor, m: torch.Tensor | None, hot: torch.Tensor | None,
                    hits: torch.Tensor | None) -> list[str]:
    """:func:`check_hot_pixels`' warnings, given :func:`_pixel_faults`' findings."""
    out: list[str] = []
    if hot is not None:
        out.append(hot_pixel_warning([(int(y), int(c)) for y, c in torch.nonzero(hot).tolist()]))
    if hits is not None:
        out.append(zinger_warning(int(hits.sum())))
    dead = dead_pixels(x, m)
    if dead is not None:
        out.append(dead_pixel_warning(int(dead.sum())))
    return out


def zinger_warning(n: int) -> str:
    """The one-line warning about cosmic-ray hits (:func:`zingers`).

    Parameters
    ----------
    n : int
        How many voxels.

    Returns
    -------
    str
    """
    return (f"{n} voxel{'s' if n != 1 else ''} hit by a cosmic ray (a zinger: one frame of a "
            "pixel far above its neighbours, not a hot pixel)")


def dead_pixel_warning(n: int) -> str:
    """The one-line warning about dead detector pixels (:func:`dead_pixels`).

    Parameters
    ----------
    n : int
        How many there are.

    Returns
    -------
    str
    """
    return (f"{n} dead detector pixel{'s' if n != 1 else ''}: no count in any frame among "
            "pixels that count, and not in the mask")


def hot_pixel_warning(pixels: list[tuple[int, int]] | int) -> str:
    """The one-line warning about hot or stuck detector pixels.

    Parameters
    ----------
    pixels : list of (int, int) or int
        Their (row, column) positions, or how many there are.

    Returns
    -------
    str
    """
    n = pixels if isinstance(pixels, int) else len(pixels)
    where = ""
    if not isinstance(pixels, int):
        shown = ", ".join(f"({y}, {x})" for y, x in pixels[:4])
        where = f" at (row, column) {shown}" + (f" and {n - 4} more" if n > 4 else "")
    return (f"{n} hot or stuck detector pixel{'s' if n != 1 else ''}{where}: far above "
            "their neighbours, or the same count, in every frame (not a saturated peak, not "
            "another Bragg peak)")


def data_warnings(data: Any, mask: Any = None, *, saturation: float | None = None) -> list[str]:
    """All warnings of :func:`check_hot_pixels`, :func:`check_saturation` and
    :func:`check_frames`.

    Parameters
    ----------
    data : array-like
        3D intensity.
    mask : array-like, optional
        Nonzero = bad pixel.
    saturation : float, optional
        The detector's saturation count.

    Returns
    -------
    list of str
    """
    x = _counts(data, mask)
    m = _mask_tensor(mask, x)
    hot, hits = _pixel_faults(x, m)
    free = m
    if hot is not None:  # neither saturation nor a frame fault
        free = hot[None].expand(x.shape) if free is None else free | hot[None]
    if hits is not None:
        free = hits if free is None else free | hits
    return (_pixel_warnings(x, m, hot, hits) + check_saturation(data, free, level=saturation)
            + check_frames(data, free))


def photon_scale(intensity: Any, mask: Any = None) -> float | None:
    """Photons per unit of ``intensity``: 1 for counts, ``1/q`` for counts scaled by ``q``.

    The noise filter, the Poisson likelihood and the excess misfit (``auto``'s trigger) work in
    photons. Counts are integers; counts divided by a monitor, an exposure time or their
    maximum are integer multiples of one photon's value ``q``, which is then the smallest
    positive value. Counts multiplied by gains near 1 (a flat-field correction, a monitor
    normalisation per frame), and then perhaps scaled, lie near such multiples at the faint
    end: ``q`` is then the median of the single-photon values. Values that are none of these
    (a noise-free simulation) carry no photon scale.

    Parameters
    ----------
    intensity : array-like
        3D intensity, as :func:`validate_intensity` returns it.
    mask : array-like, optional
        Bad pixels (nonzero = bad), left out of the check.

    Returns
    -------
    float or None
        ``1/q`` when 99 % of the positive measured values below 1000 ``q`` (at least 100 of
        them) lie within 0.02 of a multiple of ``q``, the smallest positive value (1 for
        counts); else 1.0 when 99 % of all of them lie within 0.02 of a positive integer;
        else ``1/q`` when 95 % of the values from 1.5 to 4.5 ``q`` (at least 100) lie within
        0.2 of a multiple of ``q``, the median of the values up to 1.5 times the smallest
        (counts times gains spread by a few per cent); None otherwise. The scaled cases also
        need 1 % of the checked values on even multiples of ``q`` (counts plus an offset of
        ``q`` sit on odd ones only).

    Examples
    --------
    >>> import torch
    >>> counts = torch.poisson(torch.full((8, 8, 8), 3.0, dtype=torch.float64),
    ...                        generator=torch.Generator().manual_seed(0))
    >>> photon_scale(counts), photon_scale(counts / 7.5)
    (1.0, 7.5)
    >>> photon_scale(counts + 0.3) is None
    True
    """
    values = _measured(intensity, mask, lambda x: x > 0)
    if values.numel() == 0:
        return None
    values = values[values >= _DYNAMIC_RANGE * float(values.max())]

    def on_lattice(v: torch.Tensor, tol: float = _LATTICE_TOL, share: float = _ON_LATTICE) -> bool:
        # a positive count is at least one photon
        n = v.round()
        near = (n >= 1) & ((v - n).abs() <= tol)
        return float(near.double().mean()) >= share

    def both_parities(v: torch.Tensor) -> bool:
        # counts plus an offset of q (0.5, 0.05...) sit on odd multiples of q only
        return float((v.round() % 2 == 0).double().mean()) >= _EVEN_SHARE

    q = float(values.min())
    photons = values / q
    faint = photons[photons < _FAINT_PHOTONS]
    if faint.numel() >= _MIN_CHECKED and on_lattice(faint) and both_parities(faint):
        return 1.0 / q if q != 1.0 else 1.0
    if on_lattice(values):
        return 1.0
    # counts times gains near 1: one photon is the cluster of the smallest values
    # (checked on 2-4 photons: the single-photon cluster is on its own lattice by construction,
    # and counts plus an offset put their zeros there)
    q = float(values[values <= _GAIN_CLUSTER * q].median())
    multi = values / q
    multi = multi[(multi >= _GAIN_CLUSTER) & (multi < _GAIN_FAINT)]
    if (multi.numel() >= _MIN_CHECKED and on_lattice(multi, _GAIN_TOL, _GAIN_ON_LATTICE)
            and both_parities(multi)):
        return 1.0 / q
    return None


def integer_ceiling(data: Any) -> np.ndarray | None:
    """The voxels of an integer array at its dtype's maximum, or None for other dtypes.

    A counting detector's values stop at its dtype's maximum (uint8 255, uint16 65535,
    uint32 2**32 - 1...) when a pixel saturates, and some detectors (Eiger) write that value
    to flag gap and dead pixels. Either way the value is not a count: such voxels belong with
    the bad pixels, left free by the phasing. Plateau detection (:func:`saturated_plateau`)
    misses a uint8 peak clipped at 255 (below its 1,000-count floor).

    Parameters
    ----------
    data : array-like
        Intensity or frames as stored (before any conversion to float).

    Returns
    -------
    numpy.ndarray of bool or None
        Same shape as ``data``; None when ``data`` is not of an integer dtype.
    """
    arr = np.asarray(to_numpy(data))
    if arr.dtype.kind not in "iu":
        return None
    return arr == np.iinfo(arr.dtype).max

