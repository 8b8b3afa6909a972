"""Strained-nanocrystal simulator for BCDI (training data, tests, demos).

Faceted fcc habits, spheres, platelets, rods and random convex polyhedra (optionally truncated
by a substrate), with smooth, interfacial, core–shell and dislocation displacement fields,
planar defects (stacking faults, twin lamellae) and dislocation loops; the
diffraction pattern follows the conventions of :mod:`bcdi_stream.physics` (``psi =
fft_centered(rho)``, object centroid exactly at ``n // 2``), then photon scaling, background,
detector blur, Poisson noise and detector gaps. Everything is reproducible from a
:class:`CrystalSpec`; :func:`simulate_batch` is vectorised in torch on any device.

>>> from bcdi_stream.simulation import CrystalSpec, simulate_crystal
>>> spec = CrystalSpec.random(3, n=32, strain="strong")
>>> sim = simulate_crystal(spec)
>>> sim.meta["phase_span"] > 4 * 3.14159
True
"""

from ._crystal import (
    SimulatedBatch,
    SimulatedCrystal,
    simulate_batch,
    simulate_capped,
    simulate_crystal,
)
from ._shapes import SHAPES
from ._spec import (
    DISLOCATION_MODELS,
    FAULT_JUMP,
    FAULT_MODELS,
    LOOP_MODELS,
    NEEDLE_ASPECT,
    POLYNOMIAL_TERMS,
    SMOOTH_MODELS,
    STRAIN_MODELS,
    THIN_PLATE,
    CrystalSpec,
)

__all__ = [
    "DISLOCATION_MODELS",
    "FAULT_JUMP",
    "FAULT_MODELS",
    "LOOP_MODELS",
    "NEEDLE_ASPECT",
    "POLYNOMIAL_TERMS",
    "SHAPES",
    "SMOOTH_MODELS",
    "STRAIN_MODELS",
    "THIN_PLATE",
    "CrystalSpec",
    "SimulatedBatch",
    "SimulatedCrystal",
    "simulate_batch",
    "simulate_capped",
    "simulate_crystal",
]
