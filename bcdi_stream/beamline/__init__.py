"""Simulated BCDI beamline: ophyd devices and Bluesky plans.

This package knows ophyd and Bluesky; the engine's compute modules never import it.

- :class:`DiffractionSource`: a crystal's diffraction volume (what the detector sees).
- :class:`SimBCDIDetector`, :func:`make_rocking_motor`: the devices.
- :func:`rocking_curve`: the scan, with ``bcdi`` geometry metadata in the start document.
- :class:`SimBeamline`, :func:`make_beamline`: motor + detector, ready to scan.
"""

from bcdi_stream.beamline._beamline import SimBeamline, crystal_source, make_beamline
from bcdi_stream.beamline._devices import (
    DEFAULT_GEOMETRY,
    ImageSignal,
    SimBCDIDetector,
    make_rocking_motor,
)
from bcdi_stream.beamline._plans import bcdi_metadata, rocking_curve
from bcdi_stream.beamline._source import DiffractionSource

__all__ = [
    "DEFAULT_GEOMETRY",
    "DiffractionSource",
    "ImageSignal",
    "SimBCDIDetector",
    "SimBeamline",
    "bcdi_metadata",
    "crystal_source",
    "make_beamline",
    "make_rocking_motor",
    "rocking_curve",
]
