"""Measurement geometry of a rocking curve: voxels to metres, phase to strain."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bcdi_stream import diffraction  # plain numbers, no torch

__all__ = ["Geometry"]

_DEFAULT_G_HAT = (0.0, 1.0, 0.0)


@dataclass(frozen=True)
class Geometry:
    """BCDI rocking-curve geometry (the ``bcdi`` start-document metadata of a scan).

    Parameters
    ----------
    energy_kev : float
        Photon energy in keV.
    detector_distance : float
        Sample–detector distance in metres.
    pixel_size : float
        Detector pixel size in metres.
    angular_step_deg : float
        Rocking-angle step in degrees.
    reflection : tuple of 3 ints
        Miller indices of the Bragg reflection.
    lattice_constant : float
        Cubic lattice parameter in metres.
    g_hat : tuple of 3 floats
        Unit scattering vector in the array frame ``(z, y, x)``. Strain is tensile where
        positive when it points towards decreasing ``|Q|`` in the array; pointed towards
        increasing ``|Q|``, every strain and displacement flips sign (:mod:`bcdi_stream.physics`,
        "What the sign means physically").
    """

    energy_kev: float
    detector_distance: float
    pixel_size: float
    angular_step_deg: float
    reflection: tuple[int, int, int] = (1, 1, 1)
    lattice_constant: float = 3.924e-10
    g_hat: tuple[float, float, float] = field(default=_DEFAULT_G_HAT)

    def __post_init__(self) -> None:
        for name in ("energy_kev", "detector_distance", "pixel_size", "angular_step_deg",
                     "lattice_constant"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        reflection = _triple("reflection", self.reflection, "Miller indices")
        if not all(isinstance(c, numbers.Integral) or float(c).is_integer() for c in reflection):
            raise ValueError(
                f"reflection must be 3 integer Miller indices, got {self.reflection!r}")
        g_hat = _triple("g_hat", self.g_hat, "components")
        if not all(math.isfinite(c) for c in g_hat):
            raise ValueError(f"g_hat must be 3 finite numbers, got {self.g_hat!r}")
        norm = sum(c * c for c in g_hat) ** 0.5
        if norm == 0:
            raise ValueError("g_hat must not be the zero vector")
        object.__setattr__(self, "g_hat", tuple(float(c) / norm for c in g_hat))
        object.__setattr__(self, "reflection", tuple(int(c) for c in reflection))
        diffraction.bragg_angle(self.reflection, self.lattice_constant, self.energy_kev)

    @property
    def g_norm(self) -> float:
        """|G| in 1/m."""
        return diffraction.scattering_vector_norm(self.reflection, self.lattice_constant)

    @property
    def bragg_angle_deg(self) -> float:
        """Bragg angle θ in degrees."""
        return math.degrees(diffraction.bragg_angle(self.reflection, self.lattice_constant,
                                                self.energy_kev))

    def voxel_size(self, shape: Sequence[int]) -> tuple[float, float, float]:
        """Real-space voxel size (z, y, x) in metres for a reconstruction grid of ``shape``."""
        return diffraction.voxel_size(shape, self.energy_kev, self.detector_distance,
                                  self.pixel_size, self.angular_step_deg, self.g_norm)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the layout of the ``bcdi`` start-document key)."""
        d = asdict(self)
        d["reflection"] = list(self.reflection)
        d["g_hat"] = list(self.g_hat)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Geometry:
        """Build from a mapping such as a start document's ``bcdi`` metadata.

        Unknown keys are ignored; missing required keys raise ``ValueError`` naming them.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"d must be a mapping (the bcdi metadata), got {type(d).__name__}")
        required = ("energy_kev", "detector_distance", "pixel_size", "angular_step_deg")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"geometry is missing {', '.join(missing)}")
        kwargs: dict[str, Any] = {k: _to_float(k, d[k]) for k in required}
        if "reflection" in d:
            indices = _triple("reflection", d["reflection"], "Miller indices", numbers_only=False)
            kwargs["reflection"] = tuple(_to_int(f"reflection[{i}]", v)
                                         for i, v in enumerate(indices))
        if "lattice_constant" in d:
            kwargs["lattice_constant"] = _to_float("lattice_constant", d["lattice_constant"])
        if "g_hat" in d:
            g_hat = _triple("g_hat", d["g_hat"], "components", numbers_only=False)
            kwargs["g_hat"] = tuple(_to_float(f"g_hat[{i}]", v) for i, v in enumerate(g_hat))
        return cls(**kwargs)


def _triple(name: str, v: Any, what: str, numbers_only: bool = True) -> tuple[Any, ...]:
    """``v`` as a tuple of 3 entries (real numbers, no bools, with ``numbers_only``), else a
    ``ValueError``."""
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        raise ValueError(f"{name} must have 3 {what}, got {v!r}")
    t = tuple(v)
    if len(t) != 3:
        raise ValueError(f"{name} must have 3 {what}, got {v!r}")
    if numbers_only and any(isinstance(c, bool) or not isinstance(c, numbers.Real) for c in t):
        raise ValueError(f"{name} must have 3 {what} (numbers), got {v!r}")
    return t


def _to_float(name: str, v: Any) -> float:
    """``float(v)`` for a metadata value (numbers and numeric strings), else a ``ValueError``."""
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None


def _to_int(name: str, v: Any) -> int:
    """``int(v)`` for an integral metadata value, else a ``ValueError``."""
    f = _to_float(name, v)
    if not f.is_integer():
        raise ValueError(f"{name} must be an integer, got {v!r}")
    return int(f)
