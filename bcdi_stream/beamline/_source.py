"""What the simulated detector sees: a 3D diffraction volume around a Bragg peak.

:class:`DiffractionSource` holds the *expected* photon counts of one crystal on a reciprocal-space
grid ``(z, y, x)`` = (rocking angle, detector rows, detector columns), with the Bragg peak at the
grid centre ``N // 2`` (the convention of :mod:`bcdi_stream.physics`). The detector asks it for
the 2D slice at a rocking angle; nothing here knows ophyd, so it is tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DiffractionSource"]


@dataclass
class DiffractionSource:
    """A crystal in the beam: expected counts on the rocking-curve grid.

    Parameters
    ----------
    intensity : numpy.ndarray
        3D expected counts ``(n_rocking, rows, cols)``, Bragg peak at the grid centre; finite and
        non-negative.
    name : str
        Sample name, recorded in the scan metadata.
    counts_are_noisy : bool
        True when ``intensity`` already holds Poisson-noisy counts (the detector then adds no
        second shot noise on top of it, only background and hot pixels).
    meta : dict
        JSON-able description of the crystal (seed, shape, strain class...; ``g_hat``: its
        scattering vector's direction); ``None`` is an empty one.
    """

    intensity: np.ndarray
    name: str = "crystal"
    counts_are_noisy: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.intensity)
        if arr.ndim != 3 or min(arr.shape) < 2:
            raise ValueError(f"intensity must be a 3D array with sizes >= 2, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"intensity must hold real counts, got dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            raise ValueError("intensity must be finite")
        if (arr < 0).any():
            raise ValueError("intensity must be non-negative")
        self.intensity = arr
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if self.meta is None:
            self.meta = {}
        elif not isinstance(self.meta, Mapping):
            raise ValueError(f"meta must be a mapping, got {type(self.meta).__name__}")
        else:
            self.meta = dict(self.meta)

    @classmethod
    def from_crystal(cls, crystal: Any, name: str | None = None) -> DiffractionSource:
        """Wrap a :class:`bcdi_stream.simulation.SimulatedCrystal` (or anything with
        ``.intensity`` and ``.meta``).

        Parameters
        ----------
        crystal : SimulatedCrystal
            A simulated crystal; its ``intensity`` (numpy or torch) is used as the counts.
        name : str, optional
            Sample name; default from the crystal's seed.
        """
        from bcdi_stream.arrays import to_numpy

        if not hasattr(crystal, "intensity"):
            raise ValueError("crystal must have an 'intensity' array")
        meta = dict(getattr(crystal, "meta", {}) or {})
        noisy = bool(meta.get("noisy", meta.get("poisson", True)))
        clean = getattr(crystal, "expected", None)
        arr = to_numpy(clean if clean is not None else crystal.intensity)
        if clean is not None:
            noisy = False
        if name is None:
            seed = meta.get("seed")
            name = f"crystal-{seed}" if seed is not None else "crystal"
        return cls(arr, name=name, counts_are_noisy=noisy, meta=_jsonable(meta))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(n_rocking, rows, cols)``."""
        return tuple(int(s) for s in self.intensity.shape)  # type: ignore[return-value]

    def slice_at(self, index: float) -> np.ndarray:
        """Expected counts at a fractional rocking index, linearly interpolated.

        Parameters
        ----------
        index : float
            Position along axis 0 in grid units; the peak is at ``n_rocking // 2``. Outside
            ``[0, n_rocking - 1]`` the crystal does not diffract (zeros).

        Returns
        -------
        numpy.ndarray
            ``(rows, cols)`` float32.
        """
        n = self.intensity.shape[0]
        if not math.isfinite(index) or index < 0 or index > n - 1:
            return np.zeros(self.intensity.shape[1:], np.float32)
        lo = min(math.floor(index), n - 1)
        frac = float(index - lo)
        if frac < 1e-6 or lo == n - 1:
            return self.intensity[lo].copy()
        return ((1.0 - frac) * self.intensity[lo] + frac * self.intensity[lo + 1]).astype(
            np.float32
        )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[str(k)] = v
        elif isinstance(v, (list, tuple)) and all(
            isinstance(x, (str, int, float, bool)) for x in v
        ):
            out[str(k)] = list(v)
        elif isinstance(v, np.generic):
            out[str(k)] = v.item()
        elif isinstance(v, dict):
            out[str(k)] = _jsonable(v)
    return out
