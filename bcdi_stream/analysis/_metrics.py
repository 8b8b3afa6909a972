"""Quality metrics of a reconstruction against the ground truth (simulations, benchmarks).

A reconstruction is only defined up to a global phase offset, an integer (or sub-voxel)
translation, a linear phase ramp and the twin ``conj(rho(-r))``: :func:`align_to_truth` removes
all four before any comparison, so the metrics are invariant to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bcdi_stream.analysis._postprocess import (
    _align,
    _complex,
    _erode,
    _mask,
    _weighted_phase_rmse,
    mirror,
    remove_phase_ramp,
    strain,
    support_from_amplitude,
)
from bcdi_stream.arrays import as_tensor
from bcdi_stream.physics import SPATIAL_DIMS, periodic_rolls

__all__ = [
    "Metrics",
    "align_to_truth",
    "compare",
    "phase_rmse",
    "strain_rmse",
    "support_iou",
    "truth_phase_rms",
]


def _pair(recon: Any, truth: Any) -> tuple[torch.Tensor, torch.Tensor]:
    r = _complex(recon, "recon")
    t = _complex(truth, "truth").to(r.device)
    if r.ndim != 3 or t.shape != r.shape:
        raise ValueError(
            f"recon and truth must be 3D arrays of the same shape, got {tuple(r.shape)} "
            f"and {tuple(t.shape)}"
        )
    return r, t


def align_to_truth(
    recon: Any, truth: Any, truth_support: Any, *, subpixel: bool = True
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Align a reconstruction to the ground truth.

    Both ``recon`` and its twin (:func:`bcdi_stream.physics.twin`) are rolled by the integer
    shift that maximises the cross-correlation of amplitudes (FFT), then their linear phase
    ramp and offset relative to the truth are removed inside ``truth_support`` (wrap-free
    estimate of the ramp of ``recon * conj(truth)``, offset from the truth-amplitude-weighted
    circular mean). The candidate with the lower :func:`phase_rmse` wins; optionally a sub-voxel
    shift (Fourier shift, |s| < 1 voxel, Nelder-Mead on the ramp-corrected complex correlation)
    is refined on top and kept when it lowers the error.

    Parameters
    ----------
    recon, truth : array-like
        Complex 3D objects on the same grid.
    truth_support : array-like
        The true support (bool or 0/1).
    subpixel : bool
        Refine a sub-voxel shift (a few dozen FFT pairs).

    Returns
    -------
    aligned : torch.Tensor
        The aligned reconstruction (complex).
    info : dict
        ``twin`` (bool), ``shift`` (voxels ``(z, y, x)`` applied to ``recon`` -- or to its twin
        -- to superimpose it on the truth), ``ramp`` (rad/voxel removed), ``offset`` (rad
        removed), ``coherence`` (normalised complex correlation in the support, 1 = perfect),
        ``phase_rmse``.
    """
    r, t = _pair(recon, truth)
    m = _mask(truth_support, t, "truth_support")
    if m.ndim != 3:
        raise ValueError(f"truth_support must be 3D, got shape {tuple(m.shape)}")
    if not bool(m.any()):
        raise ValueError("truth_support is empty")
    return _align(r, t, m, subpixel=subpixel)


def phase_rmse(aligned: Any, truth: Any, truth_support: Any) -> float:
    """Truth-amplitude-weighted RMS of the wrapped phase difference inside the true support.

    ``sqrt(sum_S |t| wrap(phi_a - phi_t)**2 / sum_S |t|)`` in radians; no alignment is done here
    (see :func:`align_to_truth`). Wrapped to ``(-pi, pi]``, so at most π. A voxel where the
    reconstruction is exactly 0 has no phase and counts as a random one (squared error π²/3).

    Parameters
    ----------
    aligned, truth : array-like
        Complex 3D objects on the same grid.
    truth_support : array-like
        The true support.

    Returns
    -------
    float
    """
    a, t = _pair(aligned, truth)
    return _weighted_phase_rmse(a, t, _mask(truth_support, t, "truth_support"))


def truth_phase_rms(truth: Any, truth_support: Any) -> float:
    """The crystal's own phase variation: :func:`phase_rmse` of a flat-phase answer.

    Truth-amplitude-weighted RMS of the truth's wrapped phase inside its support after its own
    ramp and offset are removed. A reconstruction is only informative when its phase error is
    well below this (the design's success rule asks for less than half).

    Parameters
    ----------
    truth : array-like
        Complex 3D object.
    truth_support : array-like
        Its support.

    Returns
    -------
    float
    """
    t = _complex(truth, "truth")
    m = _mask(truth_support, t, "truth_support")
    flat = remove_phase_ramp(t, m)
    return _weighted_phase_rmse(flat, flat.abs().to(flat.dtype), m)


def support_iou(a: Any, b: Any) -> float:
    """Intersection over union of two supports (nonzero = inside); 1.0 when both are empty.

    Parameters
    ----------
    a, b : array-like
        Supports of the same shape.

    Returns
    -------
    float
    """
    x = as_tensor(a)
    y = as_tensor(b).to(x.device)
    if x.shape != y.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x = x != 0
    y = y != 0
    union = int((x | y).sum())
    if union == 0:
        return 1.0
    return int((x & y).sum()) / union


def _strain_rmse_aligned(
    aligned: torch.Tensor,
    truth: torch.Tensor,
    m: torch.Tensor,
    g_hat: Sequence[float],
    voxel_size: Sequence[float],
    g_norm: float,
    erode: int,
) -> float:
    rolls = periodic_rolls(m)  # a truth split across the periodic edge is taken whole
    if any(rolls):
        aligned, truth, m = (torch.roll(x, rolls, dims=SPATIAL_DIMS) for x in (aligned, truth, m))
    e_a = strain(aligned, m, g_hat, voxel_size, g_norm).to(torch.float64)
    e_t = strain(truth, m, g_hat, voxel_size, g_norm).to(torch.float64)
    inner = _erode(m, erode) if erode > 0 else m
    if not bool(inner.any()):
        inner = m
    valid = inner & torch.isfinite(e_a) & torch.isfinite(e_t)
    w = truth.abs().to(torch.float64) * valid
    total = float(w.sum())
    if not total > 0:
        return math.nan
    d = torch.where(valid, e_a - e_t, torch.zeros_like(e_a))
    return math.sqrt(float((w * d * d).sum()) / total)


def strain_rmse(
    recon: Any,
    truth: Any,
    truth_support: Any,
    *,
    g_hat: Sequence[float] = (0.0, 1.0, 0.0),
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    g_norm: float = 1.0,
    align: bool = True,
    erode: int = 1,
) -> float:
    """Truth-amplitude-weighted RMS difference of the strain (:func:`strain`) inside the support.

    Both strains are computed with the true support (the reconstruction first aligned to the
    truth unless ``align=False``); the RMS runs over the support eroded by ``erode`` voxels
    (surface voxels carry one-sided, noisy differences), or the whole support if that leaves
    nothing. Units are those of :func:`strain`: rad/voxel by default.

    Parameters
    ----------
    recon, truth : array-like
        Complex 3D objects on the same grid.
    truth_support : array-like
        The true support.
    g_hat, voxel_size, g_norm
        As in :func:`strain`.
    align : bool
        Align ``recon`` first (:func:`align_to_truth`).
    erode : int
        Voxels of erosion of the support for the average (>= 0).

    Returns
    -------
    float
        NaN when no voxel has a defined strain in both.
    """
    if int(erode) < 0:
        raise ValueError(f"erode must be >= 0, got {erode}")
    r, t = _pair(recon, truth)
    m = _mask(truth_support, t, "truth_support")
    if align:
        r, _ = _align(r, t, m)
    return _strain_rmse_aligned(r, t, m, g_hat, voxel_size, g_norm, int(erode))


@dataclass
class Metrics:
    """Result of :func:`compare`.

    Attributes
    ----------
    phase_rmse : float
        Radians (:func:`phase_rmse` after alignment).
    support_iou : float
        IoU of the aligned reconstruction's support with the true one.
    strain_rmse : float
        :func:`strain_rmse` in the units of :func:`strain` (rad/voxel by default).
    twin : bool
        The twin of the reconstruction matched the truth.
    shift : tuple of 3 floats
        Voxels applied to the reconstruction (or its twin) to superimpose it on the truth.
    success : bool
        ``phase_rmse < phase_threshold and support_iou > iou_threshold`` (and, when
        ``relative_threshold`` is set, ``phase_rmse < relative_threshold * truth_phase_rms``).
    truth_phase_rms : float
        The truth's own phase variation (:func:`truth_phase_rms`).
    ramp : tuple of 3 floats
        Phase ramp removed, rad/voxel.
    offset : float
        Phase offset removed, rad.
    coherence : float
        Normalised complex correlation with the truth in its support after alignment.
    phase_threshold, iou_threshold : float
        The thresholds used.
    relative_threshold : float or None
        The relative threshold used.
    """

    phase_rmse: float
    support_iou: float
    strain_rmse: float
    twin: bool
    shift: tuple[float, float, float]
    success: bool
    truth_phase_rms: float
    ramp: tuple[float, float, float]
    offset: float
    coherence: float
    phase_threshold: float
    iou_threshold: float
    relative_threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


def compare(
    recon: Any,
    truth: Any,
    truth_support: Any,
    recon_support: Any = None,
    *,
    phase_threshold: float = 0.3,
    iou_threshold: float = 0.6,
    relative_threshold: float | None = None,
    support_threshold: float = 0.2,
    g_hat: Sequence[float] = (0.0, 1.0, 0.0),
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    g_norm: float = 1.0,
    subpixel: bool = True,
) -> Metrics:
    """All metrics of a reconstruction against the ground truth.

    Parameters
    ----------
    recon, truth : array-like
        Complex 3D objects on the same grid.
    truth_support : array-like
        The true support.
    recon_support : array-like, optional
        The reconstruction's support (it is twinned and shifted with the object); by default a
        threshold of ``support_threshold`` on the aligned amplitude.
    phase_threshold : float
        Success needs ``phase_rmse`` below this (radians).
    iou_threshold : float
        Success needs ``support_iou`` above this.
    relative_threshold : float, optional
        If set, success also needs ``phase_rmse < relative_threshold * truth_phase_rms``
        (the design's benchmark rule uses 0.5).
    support_threshold : float
        Threshold for a computed reconstruction support.
    g_hat, voxel_size, g_norm
        For :func:`strain_rmse` (as in :func:`strain`).
    subpixel : bool
        Sub-voxel registration (:func:`align_to_truth`).

    Returns
    -------
    Metrics
    """
    if not phase_threshold > 0:
        raise ValueError(f"phase_threshold must be positive, got {phase_threshold}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if relative_threshold is not None and not relative_threshold > 0:
        raise ValueError(f"relative_threshold must be positive, got {relative_threshold}")
    r, t = _pair(recon, truth)
    m = _mask(truth_support, t, "truth_support")
    if m.ndim != 3:
        raise ValueError(f"truth_support must be 3D, got shape {tuple(m.shape)}")
    if not bool(m.any()):
        raise ValueError("truth_support is empty")
    aligned, info = _align(r, t, m, subpixel=subpixel)
    if recon_support is None:
        rs = support_from_amplitude(aligned, support_threshold)
    else:
        rs = _mask(recon_support, r, "recon_support")
        if info["twin"]:
            rs = mirror(rs)
        rs = torch.roll(rs, tuple(round(s) for s in info["shift"]), dims=SPATIAL_DIMS)
    iou = support_iou(rs, m)
    s_rmse = _strain_rmse_aligned(aligned, t, m, g_hat, voxel_size, g_norm, 1)
    spread = truth_phase_rms(t, m)
    p_rmse = float(info["phase_rmse"])
    ok = p_rmse < phase_threshold and iou > iou_threshold
    if relative_threshold is not None:
        ok = ok and p_rmse < relative_threshold * spread
    return Metrics(
        phase_rmse=p_rmse,
        support_iou=float(iou),
        strain_rmse=float(s_rmse),
        twin=bool(info["twin"]),
        shift=tuple(info["shift"]),  # type: ignore[arg-type]
        success=bool(ok),
        truth_phase_rms=float(spread),
        ramp=tuple(info["ramp"]),  # type: ignore[arg-type]
        offset=float(info["offset"]),
        coherence=float(info["coherence"]),
        phase_threshold=float(phase_threshold),
        iou_threshold=float(iou_threshold),
        relative_threshold=None if relative_threshold is None else float(relative_threshold),
    )
