"""Rendered figures of a reconstruction: central slices of amplitude, phase and strain.

Rendered with matplotlib's object-oriented API (no pyplot, no global state, safe in a worker
thread) to an RGB ``uint8`` image; stored in Tiled as an array, any Tiled client exports it as
PNG (``node.export("slices.png")`` or ``?format=image/png`` on the array URL). A 2-pixel black
frame makes the server's percentile auto-scaling of PNG exports an identity.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["draw_slices", "png_bytes", "render_slices"]

_PLANES = (("z", (1, 2), "y", "x"), ("y", (0, 2), "z", "x"), ("x", (0, 1), "z", "y"))


def _centre(support: np.ndarray) -> tuple[int, int, int]:
    if support.any():
        idx = np.argwhere(support)
        return tuple(int(np.rint(v)) for v in idx.mean(axis=0))  # type: ignore[return-value]
    return tuple(s // 2 for s in support.shape)  # type: ignore[return-value]


def _take(vol: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(vol, index, axis=axis)


def draw_slices(
    fig: Any,
    amplitude: np.ndarray,
    phase: np.ndarray,
    strain: np.ndarray,
    support: np.ndarray,
    *,
    voxel_size: Sequence[float] | None = None,
    title: str = "",
) -> None:
    """Draw a 3×3 grid of central slices (rows amplitude/phase/strain, columns z/y/x planes).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to draw into (cleared first).
    amplitude, phase, strain : numpy.ndarray
        3D ``(z, y, x)`` volumes.
    support : numpy.ndarray
        3D support (nonzero inside the crystal); phase and strain are blanked outside.
    voxel_size : (float, float, float), optional
        Voxel size in metres: axes in nm.
    title : str
        Figure title.
    """
    amplitude = np.asarray(amplitude, np.float32)
    sup = np.asarray(support).astype(bool)
    if amplitude.ndim != 3 or sup.shape != amplitude.shape:
        raise ValueError(
            f"amplitude and support must be 3D of one shape, got {amplitude.shape} and {sup.shape}"
        )
    ph = np.where(sup, np.asarray(phase, np.float32), np.nan)
    st = np.where(sup, np.asarray(strain, np.float32), np.nan)
    origin = (0, 0, 0)
    if sup.any():  # zoom on the crystal: its bounding box plus a margin
        idx = np.argwhere(sup)
        lo = np.maximum(idx.min(axis=0) - 4, 0)
        hi = np.minimum(idx.max(axis=0) + 5, sup.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        amplitude, ph, st, sup = amplitude[box], ph[box], st[box], sup[box]
        origin = tuple(int(v) for v in lo)
    centre = _centre(sup)
    fig.clear()
    axes = fig.subplots(3, 3)
    finite = st[np.isfinite(st)]
    slim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1e-3
    slim = slim if slim > 0 else 1e-6
    amax = float(amplitude.max()) or 1.0
    rows = (
        ("amplitude", amplitude, {"cmap": "gray_r", "vmin": 0, "vmax": amax}),
        ("phase (rad)", ph, {"cmap": "twilight", "vmin": -np.pi, "vmax": np.pi}),
        ("strain", st, {"cmap": "coolwarm", "vmin": -slim, "vmax": slim}),
    )
    vs = [v * 1e9 for v in voxel_size] if voxel_size is not None else None
    for r, (label, vol, kw) in enumerate(rows):
        for c, (ax_name, (a0, a1), yl, xl) in enumerate(_PLANES):
            ax = axes[r][c]
            axis = "zyx".index(ax_name)
            img = _take(vol, axis, centre[axis])
            extent = None
            if vs is not None:
                extent = (0, img.shape[1] * vs[a1], img.shape[0] * vs[a0], 0)
            im = ax.imshow(img, origin="upper", extent=extent, interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                index = centre[axis] + origin[axis]
                ax.set_title(f"{ax_name} = {index}  ({yl}↓ {xl}→)", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if c == 2:
                cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
                cb.ax.tick_params(labelsize=7)
    if vs is not None:
        fig.text(0.01, 0.01, f"voxel {vs[0]:.1f}×{vs[1]:.1f}×{vs[2]:.1f} nm", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)


def render_slices(
    amplitude: np.ndarray,
    phase: np.ndarray,
    strain: np.ndarray,
    support: np.ndarray,
    *,
    voxel_size: Sequence[float] | None = None,
    title: str = "",
    dpi: int = 80,
) -> np.ndarray:
    """Render :func:`draw_slices` to an RGB image.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols, 3)`` uint8, with a 2-pixel black frame.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if dpi < 20:
        raise ValueError(f"dpi must be >= 20, got {dpi}")
    fig = Figure(figsize=(7.5, 7.0), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    draw_slices(fig, amplitude, phase, strain, support, voxel_size=voxel_size, title=title)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    rgb[:2] = 0
    rgb[-2:] = 0
    rgb[:, :2] = 0
    rgb[:, -2:] = 0
    return rgb


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB(A) ``uint8`` image as PNG."""
    from PIL import Image

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"rgb must be (rows, cols, 3|4) uint8, got {arr.shape} {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
