"""Simulated BCDI beamline devices (ophyd): a rocking motor and an area detector.

The detector's frame at each trigger is the slice of a crystal's diffraction volume at the
rocking motor's current angle, drawn on a detector larger than the peak region, with detector
realism: ``uint32`` counts, Poisson shot noise on a flat background, and a few hot pixels at fixed
positions. Frames are internal data of the event documents (``TiledWriter`` stores them as a
zarr array ``<uid>/primary/<detector>_image``); the data key declares ``dtype_numpy`` so they come
back from Tiled as ``uint32``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.sim import SynAxis
from ophyd.status import DeviceStatus

from bcdi_stream.arguments import is_finite_real
from bcdi_stream.beamline._source import DiffractionSource
from bcdi_stream.geometry import Geometry

__all__ = [
    "DEFAULT_GEOMETRY",
    "ImageSignal",
    "SimBCDIDetector",
    "make_rocking_motor",
]

#: Pt(111) at 9 keV, 1 m, 55 µm pixels; the 0.005° step makes the 64³ voxel roughly cubic.
DEFAULT_GEOMETRY = Geometry(
    energy_kev=9.0,
    detector_distance=1.0,
    pixel_size=55e-6,
    angular_step_deg=0.005,
    reflection=(1, 1, 1),
    lattice_constant=3.924e-10,
)

_UINT32_MAX = np.iinfo(np.uint32).max


class ImageSignal(Signal):
    """A soft signal holding a 2D image; its data key declares the numpy dtype.

    ``describe()`` adds ``dtype_numpy`` (without it ``TiledWriter`` stores integer frames as
    float64) and the image shape.

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`ophyd.Signal` (``value=`` the initial image, ``kind=``...).
    """

    def describe(self) -> dict[str, dict[str, Any]]:
        """The data key, with ``dtype_numpy`` and ``shape`` of the current image.

        Returns
        -------
        dict
            ``{name: data key}`` as :meth:`ophyd.Signal.describe`.
        """
        desc = super().describe()
        value = np.asarray(self.get())
        desc[self.name]["dtype_numpy"] = value.dtype.str
        desc[self.name]["shape"] = list(value.shape)
        return desc


def make_rocking_motor(name: str = "eta", position_deg: float = 0.0) -> SynAxis:
    """A simulated rocking-angle motor (degrees).

    Parameters
    ----------
    name : str
        Device name (also the data key of its readback).
    position_deg : float
        Initial position in degrees, finite.

    Returns
    -------
    ophyd.sim.SynAxis
        The motor; its readback's data key is ``name``.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not is_finite_real(position_deg):
        raise ValueError(f"position_deg must be a finite angle in degrees, got {position_deg!r}")
    return SynAxis(name=name, value=float(position_deg), egu="deg")




class SimBCDIDetector(Device):
    """Simulated 2D area detector watching a crystal's Bragg peak while it rocks.

    Parameters
    ----------
    motor : ophyd positioner
        The rocking-angle motor (degrees); read at every trigger.
    name : str
        Device name; the image data key is ``<name>_image``.
    geometry : Geometry, optional
        Measurement geometry; its ``angular_step_deg`` is the rocking step of the crystal's
        volume (one grid plane per step). Default :data:`DEFAULT_GEOMETRY`. The
        :attr:`geometry` attribute reports it with the Ĝ of the crystal in the beam, when that
        crystal states one (``source.meta["g_hat"]``).
    shape : (int, int)
        Detector size ``(rows, cols)``; larger than the crystal's volume.
    n_hot_pixels : int
        Hot pixels at fixed random positions.
    background : float
        Mean background counts per pixel per frame, finite and >= 0.
    seed : int
        Seed of the detector's random state (hot pixels, noise, peak offsets).
    exposure_s : float
        Simulated exposure, finite and >= 0: each trigger completes after this many seconds
        (0: at once).
    """

    image = Cpt(ImageSignal, value=np.zeros((1, 1), np.uint32), kind="normal")
    acquire_time = Cpt(Signal, value=1.0, kind="config")
    sample = Cpt(Signal, value="", kind="config")

    def __init__(
        self,
        motor: Any,
        *,
        name: str,
        geometry: Geometry | None = None,
        shape: Sequence[int] = (128, 160),
        n_hot_pixels: int = 3,
        background: float = 0.02,
        seed: int = 0,
        exposure_s: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if len(shape) != 2 or any(int(s) < 8 for s in shape):
            raise ValueError(f"shape must be (rows, cols) with sizes >= 8, got {tuple(shape)}")
        if n_hot_pixels < 0:
            raise ValueError(f"n_hot_pixels must be >= 0, got {n_hot_pixels}")
        if not is_finite_real(background) or not background >= 0:
            raise ValueError(f"background must be a finite number >= 0, got {background!r}")
        if not is_finite_real(exposure_s) or not exposure_s >= 0:
            raise ValueError(f"exposure_s must be a finite number >= 0, got {exposure_s!r}")
        if not hasattr(motor, "position"):
            raise ValueError("motor must be a positioner with a .position")
        super().__init__(name=name, **kwargs)
        self._motor = motor
        self._lock = threading.Lock()
        self._g_hat: tuple[float, ...] | None = None  # Ĝ of the crystal in the beam, if stated
        self.geometry = DEFAULT_GEOMETRY if geometry is None else geometry
        self.frame_shape = (int(shape[0]), int(shape[1]))
        self.background = float(background)
        self.exposure_s = float(exposure_s)
        self._rng = np.random.default_rng(seed)
        n_pix = self.frame_shape[0] * self.frame_shape[1]
        flat = self._rng.choice(n_pix, size=min(n_hot_pixels, n_pix), replace=False)
        self.hot_pixels = np.stack(np.unravel_index(flat, self.frame_shape), axis=1)
        self.hot_values = self._rng.integers(20_000, 200_000, size=len(flat)).astype(np.uint32)
        self.source: DiffractionSource | None = None
        self.rocking_center_deg = self.geometry.bragg_angle_deg
        self.peak_pixel = (self.frame_shape[0] // 2, self.frame_shape[1] // 2)
        self.image.put(np.zeros(self.frame_shape, np.uint32))

    @property
    def geometry(self) -> Geometry:
        """The measurement geometry of the current scan.

        The detector's geometry (the constructor's, or the last one assigned), with Ĝ
        (``g_hat``) replaced by that of the crystal in the beam when its ``meta`` states one.
        Loading a crystal that states none goes back to the detector's own Ĝ: nothing is
        carried over from the previous crystal.
        """
        if self._g_hat is None:
            return self._geometry
        return dataclasses.replace(self._geometry, g_hat=self._g_hat)

    @geometry.setter
    def geometry(self, value: Geometry) -> None:
        if not isinstance(value, Geometry):
            raise ValueError(f"geometry must be a Geometry, got {type(value).__name__}")
        self._geometry = value

    @property
    def motor(self) -> Any:
        """The rocking motor this detector reads."""
        return self._motor

    @property
    def image_field(self) -> str:
        """Data key of the detector image in event documents."""
        return self.image.name

    def load(
        self,
        source: DiffractionSource,
        *,
        peak_offset: Sequence[int] | None = None,
        rocking_center_deg: float | None = None,
    ) -> None:
        """Put a crystal in the beam.

        Parameters
        ----------
        source : DiffractionSource
            The crystal's diffraction volume.
        peak_offset : (int, int), optional
            Bragg peak position on the detector relative to its centre (pixels); default a
            random offset that keeps the peak region on the detector. The peak itself must
            fall on the detector; the region around it may be cut by the detector's edge.
        rocking_center_deg : float, optional
            Motor angle of the Bragg peak, finite; default the geometry's Bragg angle.

        Raises
        ------
        ValueError
            An argument is of the wrong kind or out of range (the message names it).
        """
        if not isinstance(source, DiffractionSource):
            raise ValueError(f"source must be a DiffractionSource, got {type(source).__name__}")
        _, ny, nx = source.shape
        rows, cols = self.frame_shape
        if ny > rows or nx > cols:
            raise ValueError(
                f"source frames {ny}x{nx} do not fit on the {rows}x{cols} detector"
            )
        free = ((rows - ny) // 2, (cols - nx) // 2)
        if peak_offset is None:
            peak_offset = tuple(
                int(self._rng.integers(-f // 2, f // 2 + 1)) if f > 1 else 0 for f in free
            )
        try:
            offset = tuple(int(o) for o in peak_offset)
            ok = len(offset) == 2 and all(int(o) == o for o in peak_offset)
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(f"peak_offset must be (rows, cols) integers, got {peak_offset!r}")
        peak = (rows // 2 + offset[0], cols // 2 + offset[1])
        if not (0 <= peak[0] < rows and 0 <= peak[1] < cols):
            raise ValueError(
                f"peak_offset {offset} puts the Bragg peak off the {rows}x{cols} detector "
                f"(rows within [{-(rows // 2)}, {rows - 1 - rows // 2}], "
                f"cols within [{-(cols // 2)}, {cols - 1 - cols // 2}])"
            )
        if rocking_center_deg is not None and not is_finite_real(rocking_center_deg):
            raise ValueError(
                f"rocking_center_deg must be a finite angle in degrees, got {rocking_center_deg!r}"
            )
        g_hat = source.meta.get("g_hat")
        g_hat = tuple(float(c) for c in g_hat) if _is_vector3(g_hat) else None
        with self._lock:
            self.source = source
            self.peak_pixel = peak
            self._g_hat = g_hat
            self.rocking_center_deg = (
                self._geometry.bragg_angle_deg if rocking_center_deg is None
                else float(rocking_center_deg)
            )
        self.sample.put(source.name)

    def rocking_index(self, angle_deg: float) -> float:
        """Fractional index along the source's rocking axis at a motor angle.

        Parameters
        ----------
        angle_deg : float
            Rocking angle in degrees.

        Returns
        -------
        float
            Index along axis 0 of the source's volume (its Bragg peak at ``n // 2``).
        """
        n = self.source.shape[0] if self.source is not None else 1
        offset = (float(angle_deg) - self.rocking_center_deg) / self._geometry.angular_step_deg
        return offset + n // 2

    def render(self, angle_deg: float) -> np.ndarray:
        """The frame the detector records at a rocking angle (``uint32`` counts).

        Parameters
        ----------
        angle_deg : float
            Rocking angle in degrees.
        """
        rows, cols = self.frame_shape
        expected = np.full(self.frame_shape, self.background, np.float32)
        noisy_part = None
        with self._lock:
            src = self.source
            if src is not None:
                sl = src.slice_at(self.rocking_index(angle_deg)) * float(self.acquire_time.get())
                _, ny, nx = src.shape
                r0 = self.peak_pixel[0] - ny // 2
                c0 = self.peak_pixel[1] - nx // 2
                rs, cs = max(r0, 0), max(c0, 0)
                re, ce = min(r0 + ny, rows), min(c0 + nx, cols)
                if re > rs and ce > cs:
                    patch = sl[rs - r0:re - r0, cs - c0:ce - c0]
                    if src.counts_are_noisy:
                        noisy_part = (slice(rs, re), slice(cs, ce), patch)
                    else:
                        expected[rs:re, cs:ce] += patch
            counts = self._rng.poisson(expected).astype(np.float64)
            if noisy_part is not None:
                r, c, patch = noisy_part
                counts[r, c] += np.rint(patch)
        frame = np.clip(counts, 0, _UINT32_MAX).astype(np.uint32)
        if len(self.hot_pixels):
            frame[self.hot_pixels[:, 0], self.hot_pixels[:, 1]] = self.hot_values
        return frame

    def trigger(self) -> DeviceStatus:
        """Acquire one frame at the motor's current angle.

        Returns
        -------
        ophyd.status.DeviceStatus
            Finished when the frame is in :attr:`image`; it carries the exception when the
            acquisition fails, so a plan never waits on a frame that will not come.
        """
        status = DeviceStatus(self)
        angle = float(self._motor.position)
        exposure = self.exposure_s

        def acquire() -> None:
            try:
                if exposure:
                    time.sleep(exposure)
                self.image.put(self.render(angle))
            except Exception as exc:  # report through the status, as a real detector would
                status.set_exception(exc)
            else:
                status.set_finished()

        if exposure:
            threading.Thread(target=acquire, daemon=True, name=f"{self.name}-acquire").start()
        else:
            acquire()
        return status


def _is_vector3(value: Any) -> bool:
    """Whether ``value`` is a sequence of 3 finite numbers, not all zero."""
    try:
        comps = [float(c) for c in value]
    except (TypeError, ValueError):
        return False
    return len(comps) == 3 and all(math.isfinite(c) for c in comps) and any(comps)
