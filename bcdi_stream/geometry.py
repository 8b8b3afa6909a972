"""Measurement geometry of a rocking curve: voxels to metres, phase to strain."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bcdi_stream import physics

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
            if not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if len(self.reflection) != 3:
            raise ValueError(f"reflection must have 3 Miller indices, got {self.reflection!r}")
        if len(self.g_hat) != 3:
            raise ValueError(f"g_hat must have 3 components, got {self.g_hat!r}")
        norm = sum(c * c for c in self.g_hat) ** 0.5
        if norm == 0:
            raise ValueError("g_hat must not be the zero vector")
        object.__setattr__(self, "g_hat", tuple(float(c) / norm for c in self.g_hat))
        object.__setattr__(self, "reflection", tuple(int(c) for c in self.reflection))
        physics.bragg_angle(self.reflection, self.lattice_constant, self.energy_kev)

    @property
    def g_norm(self) -> float:
        """|G| in 1/m."""
        return physics.scattering_vector_norm(self.reflection, self.lattice_constant)

    @property
    def bragg_angle_deg(self) -> float:
        """Bragg angle θ in degrees."""
        return math.degrees(physics.bragg_angle(self.reflection, self.lattice_constant,
                                                self.energy_kev))

    def voxel_size(self, shape: Sequence[int]) -> tuple[float, float, float]:
        """Real-space voxel size (z, y, x) in metres for a reconstruction grid of ``shape``."""
        return physics.voxel_size(shape, self.energy_kev, self.detector_distance,
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
        required = ("energy_kev", "detector_distance", "pixel_size", "angular_step_deg")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"geometry is missing {', '.join(missing)}")
        kwargs: dict[str, Any] = {k: float(d[k]) for k in required}
        if "reflection" in d:
            kwargs["reflection"] = tuple(int(v) for v in d["reflection"])
        if "lattice_constant" in d:
            kwargs["lattice_constant"] = float(d["lattice_constant"])
        if "g_hat" in d:
            kwargs["g_hat"] = tuple(float(v) for v in d["g_hat"])
        return cls(**kwargs)
