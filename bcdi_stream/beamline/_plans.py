"""The ``rocking_curve`` plan: step the rocking angle, one detector frame per step, with the BCDI
geometry in the start document (key ``bcdi``, the :meth:`Geometry.to_dict` layout)."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from typing import Any

import bluesky.plans as bp
from bluesky.utils import Msg

from bcdi_stream.arguments import is_finite_real, is_integral
from bcdi_stream.geometry import Geometry

__all__ = ["bcdi_metadata", "rocking_curve"]


def bcdi_metadata(
    geometry: Geometry,
    *,
    rocking_motor: str | None = None,
    rocking_center_deg: float | None = None,
    num_frames: int | None = None,
    image_field: str | None = None,
) -> dict[str, Any]:
    """The ``bcdi`` start-document metadata of a rocking curve.

    It is :meth:`Geometry.to_dict` (energy, detector distance, pixel size, angular step,
    reflection, lattice constant, Ĝ: enough for voxel sizes and strain) plus optional scan
    keys that :meth:`Geometry.from_dict` ignores.

    Parameters
    ----------
    geometry : Geometry
        Measurement geometry.
    rocking_motor : str, optional
        Name of the rocking motor.
    rocking_center_deg : float, optional
        Angle of the Bragg peak.
    num_frames : int, optional
        Number of rocking steps.
    image_field : str, optional
        Data key of the detector image (the live callback otherwise finds the one 2D field).
    """
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry must be a Geometry, got {type(geometry).__name__}")
    md = geometry.to_dict()
    extra = {
        "rocking_motor": rocking_motor,
        "rocking_center_deg": rocking_center_deg,
        "num_frames": num_frames,
        "image_field": image_field,
    }
    md.update({k: v for k, v in extra.items() if v is not None})
    return md


def rocking_curve(
    detector: Any,
    motor: Any | None = None,
    *,
    num: int | None = None,
    step_deg: float | None = None,
    center_deg: float | None = None,
    geometry: Geometry | None = None,
    md: Mapping[str, Any] | None = None,
) -> Generator[Msg, Any, str]:
    """Measure a rocking curve: ``num`` frames at angles ``center ± k·step``.

    Frame ``num // 2`` is taken at ``center_deg``, so the Bragg peak lands at the centre of the
    rocking axis. The start document carries ``bcdi`` (see :func:`bcdi_metadata`) and, for the
    simulated detector, ``sample`` (the crystal's name and description).

    The arguments are checked when the plan is created, not when the RunEngine first steps it:
    ``rocking_curve(det, num=1)`` raises at once and no run is opened.

    Parameters
    ----------
    detector : Readable
        The area detector; a :class:`SimBCDIDetector` supplies defaults for everything else.
    motor : Movable, optional
        Rocking motor (default: the simulated detector's).
    num : int, optional
        Number of frames, >= 2 (default: the loaded crystal's rocking size, else 64).
    step_deg : float, optional
        Angular step in degrees, finite and > 0 (default: the geometry's).
    center_deg : float, optional
        Angle of the Bragg peak, finite (default: the simulated detector's rocking centre).
    geometry : Geometry, optional
        Measurement geometry (default: the simulated detector's).
    md : mapping, optional
        Extra start-document metadata (wins over the plan's).

    Returns
    -------
    generator
        The plan; run it with ``RE(...)`` or ``yield from`` it inside another plan, where it
        returns the run's uid.

    Raises
    ------
    ValueError
        An argument is missing or out of range (the message names it).
    """
    motor = motor if motor is not None else getattr(detector, "motor", None)
    if motor is None:
        raise ValueError("motor is required for a detector that does not know its rocking motor")
    geometry = geometry if geometry is not None else getattr(detector, "geometry", None)
    if not isinstance(geometry, Geometry):
        raise ValueError("geometry is required (a Geometry) for this detector")
    if step_deg is not None:
        if not is_finite_real(step_deg) or not step_deg > 0:
            raise ValueError(f"step_deg must be a finite number > 0, got {step_deg!r}")
        geometry = dataclasses.replace(geometry, angular_step_deg=float(step_deg))
    if center_deg is None:
        center_deg = getattr(detector, "rocking_center_deg", None)
        if center_deg is None:
            raise ValueError("center_deg is required for this detector")
    if not is_finite_real(center_deg):
        raise ValueError(f"center_deg must be a finite angle in degrees, got {center_deg!r}")
    source = getattr(detector, "source", None)
    if num is None:
        num = source.shape[0] if source is not None else 64
    if not is_integral(num) or num < 2:
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    if md is not None and not isinstance(md, Mapping):
        raise ValueError(f"md must be a mapping, got {type(md).__name__}")
    num = int(num)
    step = geometry.angular_step_deg
    start = float(center_deg) - (num // 2) * step
    stop = start + (num - 1) * step
    image_field = getattr(detector, "image_field", None)
    _md: dict[str, Any] = {
        "plan_name": "rocking_curve",
        "bcdi": bcdi_metadata(
            geometry,
            rocking_motor=getattr(motor, "name", None),
            rocking_center_deg=float(center_deg),
            num_frames=num,
            image_field=image_field if isinstance(image_field, str) else None,
        ),
    }
    if source is not None:
        _md["sample"] = {"name": source.name, **source.meta}
    _md.update(dict(md or {}))
    return _scan(detector, motor, start, stop, num, _md)


def _scan(detector: Any, motor: Any, start: float, stop: float, num: int,
          md: dict[str, Any]) -> Generator[Msg, Any, str]:
    uid = yield from bp.scan([detector], motor, start, stop, num, md=md)
    return uid


