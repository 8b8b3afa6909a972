"""A ready-to-scan simulated beamline: rocking motor + area detector + crystals."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bluesky.utils import Msg
from ophyd.sim import SynAxis

from bcdi_stream.arguments import is_integral
from bcdi_stream.beamline._devices import DEFAULT_GEOMETRY, SimBCDIDetector, make_rocking_motor
from bcdi_stream.beamline._plans import rocking_curve
from bcdi_stream.beamline._source import DiffractionSource
from bcdi_stream.geometry import Geometry

__all__ = ["SimBeamline", "crystal_source", "make_beamline"]


def crystal_source(seed: int, n: int = 64, strain: str = "weak",
                   **kwargs: Any) -> DiffractionSource:
    """Simulate a strained crystal (:func:`bcdi_stream.simulation.simulate_crystal`) and wrap
    its diffraction volume for the simulated detector.

    The simulation is asked for the *expected* counts (no Poisson noise, no detector gaps): the
    detector adds the shot noise, background and hot pixels itself.

    Parameters
    ----------
    seed : int
        Crystal seed (same seed, same crystal).
    n : int
        Grid size (``n``³ voxels, ``n`` rocking frames).
    strain : {"weak", "medium", "strong", "any"}
        Strain class.
    **kwargs
        Further :func:`simulate_crystal` arguments (``peak_counts``, ``shapes``...).

    Returns
    -------
    DiffractionSource
        The expected counts, named ``crystal-<seed>-<strain>``.
    """
    from bcdi_stream.simulation import simulate_crystal

    for arg, value in (("seed", seed), ("n", n)):
        if not is_integral(value):
            raise ValueError(f"{arg} must be an integer, got {value!r}")
    seed, n = int(seed), int(n)
    kwargs = {"poisson": False, "gaps": (), **kwargs}
    crystal = simulate_crystal(seed, n=n, strain=strain, device="cpu", **kwargs)
    return DiffractionSource.from_crystal(crystal, name=f"crystal-{seed}-{strain}")




@dataclass
class SimBeamline:
    """Simulated rocking-curve beamline.

    Attributes
    ----------
    motor : SynAxis
        Rocking-angle motor (degrees).
    detector : SimBCDIDetector
        Area detector; its image data key is ``detector.image_field``.
    """

    motor: SynAxis
    detector: SimBCDIDetector

    @property
    def geometry(self) -> Geometry:
        """The measurement geometry (written to each scan's ``bcdi`` metadata)."""
        return self.detector.geometry

    def load(self, source: DiffractionSource, **kwargs: Any) -> None:
        """Put a crystal in the beam and park the motor at its Bragg angle.

        Parameters
        ----------
        source : DiffractionSource
            The crystal's diffraction volume.
        **kwargs
            ``peak_offset``, ``rocking_center_deg``: see :meth:`SimBCDIDetector.load`.
        """
        self.detector.load(source, **kwargs)
        self.motor.set(self.detector.rocking_center_deg).wait(timeout=10)

    def rocking_curve(self, num: int | None = None, *, md: Mapping[str, Any] | None = None,
                      **kwargs: Any) -> Generator[Msg, Any, str]:
        """The :func:`rocking_curve` plan on this beamline's detector and motor.

        Parameters
        ----------
        num : int, optional
            Number of frames (default: the loaded crystal's rocking size).
        md : mapping, optional
            Extra start-document metadata.
        **kwargs
            ``step_deg``, ``center_deg``, ``geometry``: see :func:`rocking_curve`.

        Returns
        -------
        generator
            The plan (its arguments already checked).
        """
        return rocking_curve(self.detector, self.motor, num=num, md=md, **kwargs)


def make_beamline(
    *,
    geometry: Geometry | None = None,
    detector_shape: Sequence[int] = (128, 160),
    n_hot_pixels: int = 3,
    background: float = 0.02,
    seed: int = 0,
    exposure_s: float = 0.0,
    motor_name: str = "eta",
    detector_name: str = "det",
) -> SimBeamline:
    """Build the simulated beamline.

    Parameters
    ----------
    geometry : Geometry, optional
        Measurement geometry (default :data:`DEFAULT_GEOMETRY`).
    detector_shape : (int, int)
        Detector size in pixels (rows, cols).
    n_hot_pixels : int
        Hot pixels on the detector.
    background : float
        Mean background counts per pixel per frame.
    seed : int
        Seed of the detector's random state.
    exposure_s : float
        Simulated exposure time per frame (seconds).
    motor_name, detector_name : str
        Device names (the image data key is ``<detector_name>_image``).

    Returns
    -------
    SimBeamline
        The motor (at the Bragg angle) and the detector, no crystal loaded.
    """
    geometry = geometry or DEFAULT_GEOMETRY
    motor = make_rocking_motor(motor_name, geometry.bragg_angle_deg)
    detector = SimBCDIDetector(
        motor,
        name=detector_name,
        geometry=geometry,
        shape=detector_shape,
        n_hot_pixels=n_hot_pixels,
        background=background,
        seed=seed,
        exposure_s=exposure_s,
    )
    return SimBeamline(motor=motor, detector=detector)
