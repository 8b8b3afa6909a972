"""From detector frames to a phasing-ready volume: mask, find the Bragg peak, crop around it.

A rocking curve arrives as ``(n_frames, rows, cols)`` (or ``(n_frames, 1, rows, cols)``) counts
on a detector larger than the peak. :func:`prepare_frames` masks hot pixels, locates the Bragg
peak by its intensity centre of mass, and crops (zero-padding where the box leaves the data,
padded voxels masked = free for the phasing) a box of the requested shape centred on it, so that
the peak sits at the grid centre ``N // 2`` as every other module expects. The centre is found
in two passes: the centre of mass of the brightest region (robust on a large, noisy frame),
then the background-subtracted centre of mass of the crop (:func:`bragg_offset`, the
convention of the simulator and the model), re-cropping until it is within half a voxel.
The flat detector background per pixel per frame is read from the pixels far from the peak,
outside the crop (:func:`outside_background`, ``meta["background"]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from bcdi_stream.arrays import as_tensor
from bcdi_stream.errors import InputError
from bcdi_stream.physics import centroid
from bcdi_stream.validation import clamp_sub_photon_negatives, integer_ceiling, interior_runs

__all__ = ["BACKGROUND_FARTHEST", "BACKGROUND_MARGIN", "BACKGROUND_TILE", "MAX_HOT_CLUSTER",
           "MIN_BACKGROUND_TILES", "MIN_PEAK_SIGNIFICANCE", "Prepared", "bragg_offset",
           "fill_lost_planes", "fill_peak_holes", "find_hot_pixels", "outside_background",
           "peak_significance", "prepare_frames"]

#: Re-crops of :func:`prepare_frames` around the background-subtracted centre of mass.
CENTRE_PASSES = 3

#: Least :func:`peak_significance` of a rocking curve with a Bragg peak. Measured with
#: ``simulate_crystal`` (n = 32 and 64, weak/medium/strong/any strain, peak 2e3 and 1e5 counts,
#: background 0 and 3 photons/pixel, 208 patterns): >= 258 (strongly strained crystals at
#: 2e3 counts); background-only Poisson frames (0.01-1000 photons/pixel, up to 2e6 voxels):
#: <= 5.3; flat frames: 0.
MIN_PEAK_SIGNIFICANCE = 10.0

#: Largest width and height (pixels) of a cluster of hot pixels :func:`find_hot_pixels` finds.
MAX_HOT_CLUSTER = 4

#: :func:`outside_background`: detector pixels count as far from the peak beyond this many
#: crop half-widths from the crop's centre (along the rows or the columns).
BACKGROUND_MARGIN = 1.25

#: :func:`outside_background`: share of the far tiles used, the farthest from the peak.
BACKGROUND_FARTHEST = 0.25

#: :func:`outside_background`: side (pixels) of the detector tiles whose means are compared.
BACKGROUND_TILE = 16

#: :func:`outside_background`: fewest far tiles (at least half measured) for an estimate.
MIN_BACKGROUND_TILES = 4


@dataclass
class Prepared:
    """A cropped, masked volume ready for phasing.

    Attributes
    ----------
    intensity : torch.Tensor
        float32 counts of the requested shape, Bragg peak at the centre.
    mask : torch.Tensor
        bool, True = bad or padded voxel (left free by the phasing).
    origin : tuple of int
        Index in the input frames of the box's first voxel (may be negative when padded).
    meta : dict
        JSON-able record: ``peak_com`` (coarse peak position in the frames), ``bragg_offset``
        (the crop's background-subtracted centre of mass from its centre, within ±0.5 px unless
        the box hit the frames' edge), hot pixels, empty/saturated frames, padding, the flat
        ``background`` per pixel per frame read outside the crop (:func:`outside_background`).
    """

    intensity: torch.Tensor
    mask: torch.Tensor
    origin: tuple[int, int, int]
    meta: dict[str, Any] = field(default_factory=dict)


def bragg_offset(intensity: torch.Tensor, mask: torch.Tensor | None = None,
                 outer: float = 0.44) -> torch.Tensor:
    """Centre of mass of a diffraction pattern, in pixels from the grid centre ``N // 2``.

    The background is the mean count beyond ``outer`` of the half-width (an ellipsoidal
    shell, bad pixels excluded); the centre of mass is taken of the counts above it. On
    simulated patterns this is within 0.1 px of the noise-free centre of mass, where the
    brightest pixel of a strongly strained crystal can lie 5 px away (and the centre of mass
    of the pixels above 10 % of the maximum, :func:`prepare_frames`' crop centre, 3 px away).

    Parameters
    ----------
    intensity : torch.Tensor
        ``(z, y, x)`` counts.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), ignored.
    outer : float
        Start of the background shell, as a fraction of each half-width, in (0, 1).

    Returns
    -------
    torch.Tensor
        float64 ``(3,)`` offset ``(z, y, x)``; zeros when no counts stand above the background.
    """
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be 3D, got shape {tuple(intensity.shape)}")
    if not 0.0 < outer < 1.0:
        raise ValueError(f"outer must be in (0, 1), got {outer}")
    data = intensity.to(torch.float64).clamp_min(0)
    good = torch.ones_like(data, dtype=torch.bool) if mask is None else ~mask.to(torch.bool)
    axes = [torch.arange(n, dtype=torch.float64, device=data.device) - n // 2
            for n in data.shape]
    r2 = sum(((a / max(n // 2, 1)) ** 2).reshape([-1 if i == k else 1 for i in range(3)])
             for k, (a, n) in enumerate(zip(axes, data.shape, strict=True)))
    shell = good & (r2 > outer * outer)
    bg = data[shell].mean() if bool(shell.any()) else data.new_zeros(())
    w = torch.where(good, (data - bg).clamp_min(0), 0.0)
    if not w.sum() > 0:
        return torch.zeros(3, dtype=torch.float64, device=data.device)
    centre = torch.tensor([n // 2 for n in data.shape], dtype=torch.float64, device=data.device)
    return centroid(w) - centre


def find_hot_pixels(
    frames: torch.Tensor, factor: float = 20.0, min_counts: float = 50.0, *,
    max_cluster: int = MAX_HOT_CLUSTER, persistence: float = 0.5,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Detector pixels that are outliers in the summed image: isolated, or a compact cluster.

    A pixel is hot when its summed counts exceed ``factor`` × (the 3×3 median of its neighbours
    + 1) and ``min_counts``: a Bragg peak spreads over many pixels, a hot pixel does not. That
    test misses a cluster of hot pixels (a damaged sensor area, a few stuck pixels together)
    wider than 2 px, whose pixels are each other's neighbours, so a cluster of at most
    ``max_cluster`` × ``max_cluster`` pixels is found too: its pixels exceed ``factor`` × (the
    median of the 8 pixels ``max_cluster + 1`` away along the rows, columns and diagonals, + 1)
    and ``min_counts``; the 8-connected group they form fits in ``max_cluster`` ×
    ``max_cluster``; its dimmest pixel exceeds ``factor`` × (the median of the pixels around it
    + 1) (a sharp edge: a Bragg peak, sampled at oversampling >= 2, falls off over pixels); and
    its counts persist through the rocking curve (the median of its per-frame counts over the
    frames that hold counts reaches ``persistence`` × their mean: a Bragg peak's pixels are
    bright over its rocking width only). On 16 seeds × weak/strong × peak counts 2e3/1e6 ×
    background 0/1 photon (``simulate_crystal``, n = 64: 128 patterns) it flags no pixel;
    clusters of 2×2 to 4×4 pixels of 500 counts per frame, 15 px from the peak, are found
    whole in 60-62 of the 64 dim patterns (peak 2e3) and 32-33 of the 64 bright ones (1e6,
    where the crystal's own counts there are too close), as single hot pixels are (61, 34);
    before, no cluster wider than 2×2 was found whole.

    Parameters
    ----------
    frames : torch.Tensor
        ``(n_frames, rows, cols)`` counts.
    factor : float
        Ratio to the local median above which a pixel is hot.
    min_counts : float
        Summed counts below which a pixel is never called hot.
    max_cluster : int
        Largest width and height of a cluster of hot pixels (0 or 1: isolated pixels only).
    persistence : float
        Least ratio of the median to the mean per-frame counts of a cluster, in (0, 1].
    ignore : torch.Tensor, optional
        ``(rows, cols)`` bool: pixels known bad (a gap, flagged pixels), left out of every
        neighbourhood statistic and never called hot. Without it, bad pixels zeroed in
        ``frames`` count as dark neighbours, and a bright pixel where gaps cross is hot.

    Returns
    -------
    torch.Tensor
        ``(rows, cols)`` bool.
    """
    if frames.ndim != 3:
        raise ValueError(
            f"frames must be 3D (n_frames, rows, cols), got shape {tuple(frames.shape)}"
        )
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    if isinstance(max_cluster, bool) or not isinstance(max_cluster, int) or max_cluster < 0:
        raise ValueError(f"max_cluster must be an integer >= 0, got {max_cluster!r}")
    if not 0 < persistence <= 1:
        raise ValueError(f"persistence must be in (0, 1], got {persistence}")
    img = frames.to(torch.float32).sum(0)
    if ignore is not None:
        ignore = ignore.to(img.device, torch.bool)
        if tuple(ignore.shape) != tuple(img.shape):
            raise ValueError(f"ignore must be (rows, cols) = {tuple(img.shape)}, got "
                             f"{tuple(ignore.shape)}")
    stat = img if ignore is None else torch.where(ignore, torch.nan, img)
    padded = F.pad(stat[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    patches = padded.unfold(0, 3, 1).unfold(1, 3, 1).reshape(*img.shape, 9)
    # median of the 8 neighbours (exclude the centre, index 4)
    neigh = torch.cat([patches[..., :4], patches[..., 5:]], dim=-1)
    med = neigh.median(dim=-1).values if ignore is None else neigh.nanmedian(dim=-1).values
    hot = (img > factor * (med + 1)) & (img > min_counts)
    if max_cluster > 1:
        hot |= _hot_clusters(frames, img, stat, factor, min_counts, max_cluster, persistence)
    if ignore is not None:
        hot &= ~ignore
    return hot


def _hot_clusters(frames: torch.Tensor, img: torch.Tensor, stat: torch.Tensor, factor: float,
                  min_counts: float, size: int, persistence: float) -> torch.Tensor:
    """:func:`find_hot_pixels`' compact clusters of at most ``size`` × ``size`` pixels
    (``stat``: ``img`` with the ignored pixels NaN)."""
    import numpy as np
    from scipy import ndimage

    r = size + 1
    rows, cols = img.shape
    padded = F.pad(stat[None, None], (r, r, r, r), mode="replicate")[0, 0]
    ring = torch.stack([padded[r + dy:r + dy + rows, r + dx:r + dx + cols]
                        for dy in (-r, 0, r) for dx in (-r, 0, r) if dy or dx]).nanmedian(0).values
    cand = (img > factor * (ring + 1)) & (img > min_counts)
    out = torch.zeros_like(cand)
    if not bool(cand.any()):
        return out
    values = stat.detach().to("cpu", torch.float64).numpy()  # ignored pixels NaN
    labels, _ = ndimage.label(cand.cpu().numpy(), structure=np.ones((3, 3)))
    live = frames.flatten(1).sum(1) > 0  # frames with counts (a lost frame is no evidence)
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        if any(sl.stop - sl.start > size for sl in box):
            continue
        grown = tuple(slice(max(sl.start - 1, 0), sl.stop + 1) for sl in box)
        part = labels[grown] == lab
        edge = ndimage.binary_dilation(part, structure=np.ones((3, 3))) & ~part
        around = values[grown][edge]
        around = around[~np.isnan(around)]
        if not around.size:
            continue
        if not values[grown][part].min() > factor * (float(np.median(around)) + 1):
            continue
        pix = torch.from_numpy(np.argwhere(labels == lab)).to(frames.device)
        per_frame = frames[:, pix[:, 0], pix[:, 1]].to(torch.float64).sum(1)[live]
        if per_frame.numel() and float(per_frame.median()) >= persistence * float(
                per_frame.mean()):
            out[pix[:, 0], pix[:, 1]] = True
    return out


def _as_frames(frames: Any) -> torch.Tensor:
    t = as_tensor(frames)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise InputError(
            f"frames must be (n_frames, rows, cols) or (n_frames, 1, rows, cols), got shape "
            f"{tuple(t.shape)}"
        )
    if t.is_complex():
        raise InputError("frames must be real counts, got a complex array")
    if t.dtype == torch.bool:
        raise InputError("frames must be counts, got a boolean array")
    t = t.to(torch.float32)
    bad = ~torch.isfinite(t)
    if bad.any():
        raise InputError(f"frames contain {int(bad.sum())} NaN or infinite values")
    return t


def _crop(data: torch.Tensor, bad: torch.Tensor, origin: tuple[int, ...],
          shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, tuple[slice, ...]]:
    """The ``shape`` box at ``origin`` (may overhang: padded with zeros, marked bad)."""
    out = torch.zeros(shape, dtype=torch.float32, device=data.device)
    out_bad = torch.ones(shape, dtype=torch.bool, device=data.device)
    src, dst = [], []
    for o, s, full in zip(origin, shape, data.shape, strict=True):
        lo, hi = max(o, 0), min(o + s, full)
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
    out[tuple(dst)] = data[tuple(src)]
    out_bad[tuple(dst)] = bad[tuple(src)]
    return out, out_bad, tuple(src)


def prepare_frames(
    frames: Any,
    mask: Any | None = None,
    *,
    shape: Sequence[int] | None = (64, 64, 64),
    hot_pixels: bool = True,
    saturation: float | None = None,
    background: bool = True,
) -> Prepared:
    """Mask, locate the Bragg peak and crop a rocking curve to a phasing grid.

    Parameters
    ----------
    frames : array-like
        ``(n_frames, rows, cols)`` or ``(n_frames, 1, rows, cols)`` counts (numpy, torch, cupy).
    mask : array-like, optional
        Bad pixels, nonzero = bad: ``(rows, cols)`` for the detector or the full frames shape.
    shape : sequence of 3 ints or None
        Output grid; ``None`` keeps the input size (no crop, no re-centring).
    hot_pixels : bool
        Detect and mask isolated hot pixels (:func:`find_hot_pixels`).
    saturation : float, optional
        Counts at or above which a pixel is saturated and masked. Integer frames at their
        dtype's maximum (saturated, or a detector's flag for gaps and dead pixels:
        :func:`~bcdi_stream.validation.integer_ceiling`) are masked in any case
        (``meta["ceiling_voxels"]``).
    background : bool
        With a ``shape``, estimate the flat detector background per pixel per frame from the
        pixels far from the peak, outside the crop (:func:`outside_background`):
        ``meta["background"]`` (None when too few pixels lie there, e.g. a crop as large as
        the detector), ``meta["background_voxels"]``, ``meta["background_tiles"]``.

    Returns
    -------
    Prepared

    Raises
    ------
    InputError
        Frames of the wrong shape, non-finite, negative, or without any counts; with a
        ``shape``, also fewer than 3 frames, or no Bragg peak standing out of the background
        (:func:`peak_significance` below :data:`MIN_PEAK_SIGNIFICANCE`: a rocking curve that
        missed the peak).
    """
    ceiling = integer_ceiling(frames)
    data = _as_frames(frames)
    n, rows, cols = data.shape
    if shape is not None:
        if len(shape) != 3 or any(int(s) < 4 for s in shape):
            raise ValueError(f"shape must be 3 sizes >= 4, got {tuple(shape)}")
        shape = tuple(int(s) for s in shape)
    # a charge-integrating detector's noise around 0 (above -1 photon): set to 0, counted
    data, clamped = clamp_sub_photon_negatives(data)
    if (data < 0).any():
        raise InputError(f"frames contain {int((data < 0).sum())} negative values")

    bad = torch.zeros(data.shape, dtype=torch.bool, device=data.device)
    if mask is not None:
        m = as_tensor(mask, device=data.device).to(torch.bool)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if tuple(m.shape) == (rows, cols):
            bad |= m[None]
        elif tuple(m.shape) == tuple(data.shape):
            bad |= m
        else:
            raise InputError(
                f"mask shape {tuple(m.shape)} matches neither the detector {(rows, cols)} nor the "
                f"frames {tuple(data.shape)}"
            )
    meta: dict[str, Any] = {"input_shape": [n, rows, cols], "clamped_negative": clamped}
    if ceiling is not None and ceiling.any():  # before the hot-pixel and peak searches
        meta["ceiling_voxels"] = int(ceiling.sum())
        bad |= torch.from_numpy(ceiling.reshape(data.shape)).to(data.device)
    if hot_pixels and rows >= 3 and cols >= 3:
        # pixels bad in every frame (a flagged gap) are left out of the neighbourhoods: else
        # the bright pixels where gaps cross, beside the peak, are taken for hot ones
        hot = find_hot_pixels(torch.where(bad, 0.0, data), ignore=bad.all(0))
        meta["hot_pixels"] = int(hot.sum())
        bad |= hot[None]
    if saturation is not None:
        sat = data >= saturation
        meta["saturated_voxels"] = int(sat.sum())
        bad |= sat
    clean = torch.where(bad, 0.0, data)
    per_frame = clean.sum(dim=(1, 2))
    meta["empty_frames"] = [int(i) for i in torch.nonzero(per_frame == 0).flatten()]
    total = float(per_frame.sum())
    if total <= 0:
        raise InputError("frames hold no counts outside masked pixels")

    if shape is None:
        return Prepared(clean, bad, (0, 0, 0), meta)
    if n < 3:
        raise InputError(f"too few frames: {n} (a rocking curve needs at least 3)")
    if rows < 3 or cols < 3:
        raise InputError(f"detector frames of {rows}x{cols} px are too small (at least 3x3)")

    # Peak position, coarse: centre of mass of the brightest region (counts above 10 % of the
    # max in a lightly smoothed volume), robust to a noisy background far from the peak.
    smooth = F.avg_pool3d(clean[None, None], 3, stride=1, padding=1)[0, 0]
    significance, level = peak_significance(clean, bad, smooth)
    meta["peak_significance"] = round(significance, 1) if math.isfinite(significance) else None
    if significance < MIN_PEAK_SIGNIFICANCE:
        raise InputError(
            f"no Bragg peak above the background: brightest 3x3x3 mean {float(smooth.max()):.3g} "
            f"vs background {level:.3g} ({significance:.1f} sigma < "
            f"{MIN_PEAK_SIGNIFICANCE:g}); the rocking curve missed the peak?")
    w = torch.where(smooth >= 0.1 * smooth.max(), smooth, 0.0).to(torch.float64)
    com = centroid(w).tolist()
    origin = tuple(round(c) - s // 2 for c, s in zip(com, shape, strict=True))
    out, out_bad, src = _crop(clean, bad, origin, shape)
    # Fine: the background-subtracted centre of mass of the whole crop (the convention the
    # model was trained on, see bragg_offset); the brightest region of a strongly strained
    # crystal can sit 3 px from it.
    offset = bragg_offset(out, out_bad)
    for _ in range(CENTRE_PASSES):
        step = [round(float(v)) for v in offset]
        if not any(step):
            break
        origin = tuple(o + d for o, d in zip(origin, step, strict=True))
        out, out_bad, src = _crop(clean, bad, origin, shape)
        offset = bragg_offset(out, out_bad)
    padded = int(out_bad.sum()) - int(bad[src].sum())
    meta.update(
        peak_com=[round(c, 2) for c in com],
        bragg_offset=[round(float(v), 2) for v in offset],
        origin=list(origin),
        shape=list(shape),
        padded_voxels=padded,
        masked_voxels=int(out_bad.sum()),
    )
    if background:
        level, record = outside_background(clean, bad, origin, shape)
        meta["background"] = None if level is None else float(f"{level:.6g}")
        meta.update(record)
    if float(out.sum()) < 0.5 * total:
        meta["warning"] = "less than half of the counts fall inside the crop box"
    return Prepared(out, out_bad, origin, meta)


def outside_background(
    clean: torch.Tensor, bad: torch.Tensor, origin: Sequence[int], shape: Sequence[int], *,
    margin: float = BACKGROUND_MARGIN, tile: int = BACKGROUND_TILE,
    min_tiles: int = MIN_BACKGROUND_TILES, farthest: float = BACKGROUND_FARTHEST,
) -> tuple[float | None, dict[str, Any]]:
    """The flat detector background (per pixel per frame) read far from the Bragg peak.

    Phasing does not model a flat background, and inside the crop it cannot be told from a
    strained crystal's signal, which can fill the whole grid; a detector larger than the crop
    measures it in the pixels far from the peak. Those are the detector pixels (every frame
    with counts; bad voxels left out) at least ``margin`` crop half-widths from the crop's
    centre along the rows or the columns, grouped in ``tile`` × ``tile`` tiles (those at least
    half measured). Each tile's mean of thousands of Poisson counts is nearly unbiased and
    symmetric (a median of single integer counts is not); the estimate is the lower of two
    medians of the tiles' means, of all of them and of the farthest ``farthest`` share: a
    strained crystal's fringes raise the nearer tiles, a streak or another grain's peak at the
    detector's edge the farthest ones, and all of these only add counts.

    Measured (``benchmarks/research/outside_background.py``: crystals simulated on 128³ grids,
    whose fringes reach twice as far as a 64³ crop; 64 frames, 64³ crop; weak, medium, strong
    strain; 1e4 and 1e5 peak counts; background 0, 0.5, 1; 6 seeds each): on a 256×256
    detector within -0.004..+0.003 of the truth; on a 128×160 one, where every far pixel is
    within 64 px of the peak, within -0.004..+0.007 for weak and medium crystals, up to
    +0.008 for strong ones at 1e4 counts and +0.07 at 1e5 (their fringes still hold 0.2-5
    photons per pixel there; the median of all far tiles alone: up to +3.3). Without
    background: 0 on the 256×256 detector (the fringes end with the simulated grid; real ones
    go on, weaker).

    Parameters
    ----------
    clean : torch.Tensor
        ``(n_frames, rows, cols)`` counts, bad voxels 0.
    bad : torch.Tensor
        Bad voxels (True = bad), same shape.
    origin, shape : sequence of 3 ints
        The crop box in the frames (``origin`` may be negative).
    margin : float
        Least distance from the crop's centre, in crop half-widths (> 0).
    tile : int
        Tile side in pixels (>= 1).
    min_tiles : int
        Fewest tiles for an estimate (>= 1).
    farthest : float
        Share of those tiles used, the farthest from the crop's centre first (in (0, 1]; at
        least ``min_tiles`` of them).

    Returns
    -------
    (float or None, dict)
        The background (``None``: fewer than ``min_tiles`` tiles far from the peak, e.g. a
        crop as large as the detector) and a JSON-able record: ``background_voxels`` (voxels
        of the tiles used), ``background_tiles``, ``background_margin``.
    """
    if clean.ndim != 3 or tuple(bad.shape) != tuple(clean.shape):
        raise ValueError(f"clean must be 3D and bad of its shape, got {tuple(clean.shape)} and "
                         f"{tuple(bad.shape)}")
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if tile < 1 or min_tiles < 1:
        raise ValueError(f"tile and min_tiles must be >= 1, got {tile}, {min_tiles}")
    if not 0 < farthest <= 1:
        raise ValueError(f"farthest must be in (0, 1], got {farthest}")
    _, rows, cols = clean.shape
    record: dict[str, Any] = {"background_voxels": 0, "background_tiles": 0,
                              "background_margin": float(margin)}
    live = clean.flatten(1).sum(1) > 0  # a lost frame measures nothing
    n_live = int(live.sum())
    if not n_live:
        return None, record
    if n_live < len(live):
        clean, bad = clean[live], bad[live]
    centre = [o + s // 2 for o, s in zip(origin, shape, strict=True)]
    half = [max(s // 2, 1) for s in shape]
    dev = clean.device
    dy = (torch.arange(rows, dtype=torch.float64, device=dev) - centre[1]).abs() / half[1]
    dx = (torch.arange(cols, dtype=torch.float64, device=dev) - centre[2]).abs() / half[2]
    dist = torch.maximum(dy[:, None], dx[None, :])
    far = dist >= margin
    if not bool(far.any()):
        return None, record
    sums = clean.sum(0, dtype=torch.float64)  # bad voxels are 0 in clean
    counts = (~bad.to(torch.bool)).sum(0).to(torch.float64)
    use = far & (counts > 0)
    ny, nx = -(-rows // tile), -(-cols // tile)
    pad = (0, nx * tile - cols, 0, ny * tile - rows)

    def tiled(v: torch.Tensor) -> torch.Tensor:
        v = F.pad(torch.where(use, v, 0.0)[None, None], pad)[0, 0]
        return v.reshape(ny, tile, nx, tile).sum(dim=(1, 3)).flatten()

    t_sum, t_count = tiled(sums), tiled(counts)
    keep = t_count >= 0.5 * tile * tile * n_live
    if int(keep.sum()) < min_tiles:
        return None, record
    # the tiles' mean distance from the crop's centre: the farthest share of them
    t_dist = tiled(dist * counts)[keep] / t_count[keep]
    t_mean = t_sum[keep] / t_count[keep]
    # two medians, of every far tile and of the farthest share: a crystal's fringes raise the
    # nearer tiles, a streak or a stray peak at the detector's edge the farthest ones; all
    # of these add counts, so the lower median is the one less raised
    order = torch.argsort(t_dist, descending=True)
    level, used = float(t_mean.quantile(0.5)), order
    far_first = order[:max(min_tiles, math.ceil(farthest * int(keep.sum())))]
    far_level = float(t_mean[far_first].quantile(0.5))
    if far_level < level:
        level, used = far_level, far_first
    record["background_tiles"] = int(used.numel())
    record["background_voxels"] = int(t_count[keep][used].sum())
    return level, record


def peak_significance(clean: torch.Tensor, bad: torch.Tensor,
                      smooth: torch.Tensor | None = None) -> tuple[float, float]:
    """How far the brightest spot stands out of the background, in Poisson noise units.

    ``2 (√(27 max S) − √(27 median S))`` with ``S`` the 3×3×3 moving mean of the good voxels'
    counts: the brightest 27-voxel sum against the typical one on the variance-stabilised
    scale of Poisson counts (``2√k`` has unit spread at any level, including the sparse
    backgrounds whose tail a Gaussian z-score underrates). Background-only Poisson frames stay
    below ≈ 6 whatever their level, flat frames give 0; a Bragg peak gives 10²-10⁴ (see
    :data:`MIN_PEAK_SIGNIFICANCE`). Frames that are not integer counts have no known noise:
    they give ``inf`` whenever their maximum exceeds the median (only flat frames are refused).

    Parameters
    ----------
    clean : torch.Tensor
        ``(n, rows, cols)`` counts, bad voxels 0.
    bad : torch.Tensor
        Bad voxels (True = bad), same shape.
    smooth : torch.Tensor, optional
        The 3×3×3 moving mean of ``clean`` when already computed.

    Returns
    -------
    (float, float)
        The significance and the background level ``median(S)``.
    """
    if smooth is None:
        smooth = F.avg_pool3d(clean[None, None], 3, stride=1, padding=1)[0, 0]
    values = smooth[~bad]
    if values.numel() == 0:
        return 0.0, 0.0
    values = values[:: max(1, values.numel() // 1_000_000)]  # a subsample bounds the median
    level = float(values.median())
    peak = float(smooth.max()) - level
    if peak <= 0:
        return 0.0, level
    if not torch.equal(clean, clean.round()):  # not counts: no noise model, only flat refused
        return math.inf, level
    return 2.0 * (math.sqrt(27.0 * float(smooth.max())) - math.sqrt(27.0 * level)), level


def fill_peak_holes(intensity: torch.Tensor, mask: torch.Tensor, *, max_voxels: int = 4096,
                    ring: int = 3, brightness: float = 0.05) -> tuple[torch.Tensor, float]:
    """Estimate the counts of bad pixels that cover the bright core of a Bragg peak.

    A saturated peak is usually masked (or its pixels flagged) by the detector software: a
    compact hole where most of the intensity lies. Each compact group of bad pixels (a
    connected component of at most ``max_voxels``, spanning less than half the grid along every
    axis; module gaps run across it) whose surroundings are bright (the brightest good pixel
    within ``ring`` pixels reaches ``brightness`` of the pattern's brightest good pixel) is
    filled with a Gaussian fitted to those surroundings: ``log I`` quadratic in q (Guinier's law
    near a peak), least squares weighted by √counts, capped at 20 times the brightest
    surrounding pixel.

    Parameters
    ----------
    intensity : torch.Tensor
        ``(z, y, x)`` counts (bad pixels any value).
    mask : torch.Tensor
        Bad pixels (True = bad), same shape.
    max_voxels : int
        Largest group of bad pixels filled.
    ring : int
        Width in pixels of the surroundings the Gaussian is fitted to.
    brightness : float
        Share of the brightest good pixel the surroundings must reach, in (0, 1].

    Returns
    -------
    (torch.Tensor, float)
        The intensity with those groups filled (other bad pixels zero), and the share of the
        filled pattern's total they hold (0.0 when none was filled).
    """
    import numpy as np
    from scipy import ndimage

    if intensity.ndim != 3 or tuple(mask.shape) != tuple(intensity.shape):
        raise ValueError(f"intensity must be 3D and mask of its shape, got "
                         f"{tuple(intensity.shape)} and {tuple(mask.shape)}")
    if max_voxels < 1 or ring < 1:
        raise ValueError(f"max_voxels and ring must be >= 1, got {max_voxels}, {ring}")
    if not 0 < brightness <= 1:
        raise ValueError(f"brightness must be in (0, 1], got {brightness}")
    data = intensity.detach().to("cpu", torch.float64).clamp_min(0).numpy().copy()
    bad = mask.detach().to("cpu").bool().numpy()
    data[bad] = 0.0
    top = float(data.max())
    if not bad.any() or top <= 0:
        return torch.as_tensor(data, dtype=torch.float32).to(intensity.device), 0.0
    labels, _ = ndimage.label(bad)
    sizes = np.bincount(labels.ravel())
    hidden = 0.0
    for lab, box in enumerate(ndimage.find_objects(labels), start=1):
        wide = any(2 * (sl.stop - sl.start) >= n for sl, n in zip(box, data.shape, strict=True))
        if sizes[lab] > max_voxels or wide:
            continue
        hole = labels == lab
        near = ndimage.binary_dilation(hole, iterations=ring) & ~bad & (data > 0)
        if near.sum() < 10 or data[near].max() < brightness * top:
            continue
        centre = np.argwhere(hole).mean(axis=0)

        def design(points: np.ndarray, centre: np.ndarray = centre) -> np.ndarray:
            q = points - centre
            return np.column_stack([np.ones(len(q)), q, q**2, q[:, 0] * q[:, 1],
                                    q[:, 0] * q[:, 2], q[:, 1] * q[:, 2]])

        counts = data[near]
        weight = np.sqrt(counts)
        coef = np.linalg.lstsq(design(np.argwhere(near)) * weight[:, None],
                               np.log(counts) * weight, rcond=None)[0]
        fit = np.exp(np.clip(design(np.argwhere(hole)) @ coef, -50.0, 50.0))
        fit = np.minimum(fit, 20.0 * counts.max())
        data[hole] = fit
        hidden += float(fit.sum())
    share = hidden / max(float(data.sum()), 1e-30)
    return torch.as_tensor(data, dtype=torch.float32).to(intensity.device), share


def fill_lost_planes(intensity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Interpolate planes that are bad throughout, between the good planes around them.

    A frame the detector dropped inside the rocking curve (axis 0,
    :func:`bcdi_stream.validation.lost_frames`) and a gap between detector chips or modules (a
    band of rows, axis 1, or of columns, axis 2, bad in every frame) are left free by the
    phasing, but the model never saw a pattern with a plane missing across the peak. Along
    each axis in turn (frames, rows, columns), each run of planes bad throughout with a good
    plane on both sides is filled voxel by voxel, linearly between those two planes, where both
    voxels are good or were filled along an earlier axis (elsewhere left at 0; so where a band
    of rows crosses a band of columns, the crossing is filled along the columns from the rows'
    fill). Other bad pixels are 0.

    Parameters
    ----------
    intensity : torch.Tensor
        ``(z, y, x)`` counts.
    mask : torch.Tensor
        Bad pixels (True = bad), same shape.

    Returns
    -------
    torch.Tensor
        The intensity with those planes filled.
    """
    if intensity.ndim != 3 or tuple(mask.shape) != tuple(intensity.shape):
        raise ValueError(f"intensity must be 3D and mask of its shape, got "
                         f"{tuple(intensity.shape)} and {tuple(mask.shape)}")
    bad = mask.to(intensity.device, torch.bool).clone()  # marks what is filled: a copy
    out = torch.where(bad, 0.0, intensity.clamp_min(0).to(torch.float32))
    for axis in range(3):
        o, b = out.movedim(axis, 0), bad.movedim(axis, 0)  # views: filled in place
        for k, end in interior_runs(b.flatten(1).all(dim=1).tolist()):
            lo, hi = o[k - 1], o[end]
            both = ~b[k - 1] & ~b[end]
            for j in range(k, end):
                t = (j - k + 1) / (end - k + 1)
                o[j] = torch.where(both, (1 - t) * lo + t * hi, 0.0)
                b[j] = ~both
    return out
