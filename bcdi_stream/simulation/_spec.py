"""`CrystalSpec`: every choice that defines one simulated crystal, drawn or written by hand."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..physics import gaussian_axes_to_yx
from ._shapes import SHAPES, _normals_bound, _vertices, build_geometry, validate_shape_params

__all__ = [
    "DISLOCATION_MODELS",
    "FAULT_JUMP",
    "FAULT_MODELS",
    "LOOP_MODELS",
    "NEEDLE_ASPECT",
    "POLYNOMIAL_TERMS",
    "SMOOTH_MODELS",
    "STRAIN_MODELS",
    "THIN_PLATE",
    "CrystalSpec",
]

#: Strain models whose phase is smooth; together they are scaled to ``phase_span``.
SMOOTH_MODELS: tuple[str, ...] = ("smooth", "interface", "core_shell", "polynomial")
#: The smooth models :meth:`CrystalSpec.random` mixes (``"polynomial"`` only replaces them, at
#: the odds ``polynomial_probability``).
_MIXED_SMOOTH: tuple[str, ...] = ("smooth", "interface", "core_shell")
#: Monomials of a ``"polynomial"`` strain model, as index tuples over (z, y, x): the 6
#: quadratic then the 10 cubic ones, in ``itertools.combinations_with_replacement`` order.
POLYNOMIAL_TERMS: tuple[tuple[int, ...], ...] = (
    *itertools.combinations_with_replacement(range(3), 2),
    *itertools.combinations_with_replacement(range(3), 3),
)
#: Dislocation models: phase vortices of integer winding, added on top of the smooth phase.
DISLOCATION_MODELS: tuple[str, ...] = ("screw", "edge")
#: Planar defects (stacking faults, twin boundaries): a phase jump across a plane, added on top.
FAULT_MODELS: tuple[str, ...] = ("fault",)
#: Dislocation loops: a closed ring of phase vortex, added on top.
LOOP_MODELS: tuple[str, ...] = ("loop",)
#: All strain models.
STRAIN_MODELS: tuple[str, ...] = SMOOTH_MODELS + DISLOCATION_MODELS + FAULT_MODELS + LOOP_MODELS

#: The phase jump of a fault (default and drawn, ±): 2π/3, that of an fcc stacking fault (or
#: twin boundary) seen in a reflection with h + k + l ≠ 0 mod 3.
FAULT_JUMP = 2 * math.pi / 3

_STRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "smooth": {"weight": 1.0, "length": 0.3},
    "interface": {"weight": 1.0, "decay": 0.25, "lateral": 0.0},
    "core_shell": {"weight": 1.0, "radius": 0.25, "offset": [0.0, 0.0, 0.0]},
    "polynomial": {"weight": 1.0, "coefficients": [1.0] + [0.0] * 15},
    "screw": {"winding": 1, "point": [0.0, 0.0, 0.0], "line": [1.0, 0.0, 0.0]},
    "edge": {
        "winding": 1,
        "point": [0.0, 0.0, 0.0],
        "line": [1.0, 0.0, 0.0],
        "burgers": None,
        "poisson_ratio": 0.3,
    },
    "fault": {"normal": [1.0, 0.0, 0.0], "offset": 0.0, "jump": FAULT_JUMP, "width": 0.0},
    "loop": {"normal": [0.0, 0.0, 1.0], "centre": [0.0, 0.0, 0.0], "radius": 0.2, "winding": 1},
}

#: Named strain levels of :meth:`CrystalSpec.random` (peak-to-peak phase of the smooth part).
_WEAK = (0.15 * math.pi, 0.95 * math.pi)
_MEDIUM = (1.0 * math.pi, 4.0 * math.pi)
_STRONG = (4.5 * math.pi, 10.0 * math.pi)
#: Random crystals are redrawn until a ball of this radius (voxels) fits around the centroid.
_MIN_INNER_RADIUS = 1.5
#: The ``aspect`` of a needle (a rod's half-length, its sides at distance 1) and the
#: ``thickness`` of a thin plate (a platelet's half-thickness, its sides at 1 and
#: ``side_ratio``): the habits beyond the default ranges that ``habit_probability`` draws
#: (session 29: v3 phases medium crystals of these habits 12/30 and 15/30 against 16/30 and
#: 21/30 for the default rods and platelets of the same strain, docs/MODEL_RESEARCH.md).
NEEDLE_ASPECT: tuple[float, float] = (3.0, 5.0)
THIN_PLATE: tuple[float, float] = (0.1, 0.2)
_HABIT_SHAPES = ("rod", "platelet")


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))


def _number(name: str, v: Any, lo: float = -math.inf, hi: float = math.inf) -> float:
    if not _is_number(v) or not math.isfinite(float(v)):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    v = float(v)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo:.4g}, {hi:.4g}], got {v}")
    return v


def _has_bool(v: Any) -> bool:
    """Whether a flat sequence or array holds a bool (``np.asarray(..., float)`` takes them)."""
    if isinstance(v, np.ndarray):
        return v.dtype == np.bool_ or (v.dtype == object and _has_bool(list(v.ravel())))
    return isinstance(v, (list, tuple)) and any(isinstance(x, (bool, np.bool_)) for x in v)


def _vector(name: str, v: Any, unit: bool = False, max_norm: float = math.inf) -> tuple[float, ...]:
    if isinstance(v, (str, bytes)) or _has_bool(v):
        raise ValueError(f"{name} must be 3 numbers (z, y, x), got {v!r}")
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 3 numbers (z, y, x), got {v!r}") from exc
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be 3 finite numbers (z, y, x), got {v!r}")
    norm = float(np.linalg.norm(a))
    if unit:
        if norm < 1e-9:
            raise ValueError(f"{name} must be a non-zero vector, got {v!r}")
        if abs(norm - 1.0) > 1e-12:
            a = a / norm
    elif norm > max_norm:
        raise ValueError(f"{name} must have a norm <= {max_norm}, got {v!r}")
    return tuple(float(x) for x in a)


def _int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {v!r}")
    v = int(v)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _coefficients(name: str, v: Any) -> list[float]:
    """A ``"polynomial"`` model's coefficients: one finite number in [-100, 100] per
    :data:`POLYNOMIAL_TERMS` entry, not all 0."""
    if isinstance(v, (str, Mapping)) or not isinstance(v, Iterable):
        raise ValueError(f"{name} must be a sequence of {len(POLYNOMIAL_TERMS)} numbers, got {v!r}")
    out = [_number(f"{name}[{i}]", x, -100.0, 100.0) for i, x in enumerate(v)]
    if len(out) != len(POLYNOMIAL_TERMS):
        raise ValueError(f"{name} must have {len(POLYNOMIAL_TERMS)} entries (the quadratic and "
                         f"cubic monomials), got {len(out)}")
    if not any(out):
        raise ValueError(f"{name} must not be all 0 (leave the model out instead)")
    return out


def _validate_strain(models: Any, g_hat: tuple[float, float, float]) -> tuple[dict[str, Any], ...]:
    if isinstance(models, (str, Mapping)) or not isinstance(models, Iterable):
        raise ValueError("strain_models must be a sequence of dicts with a 'kind' key")
    out = []
    for i, m in enumerate(models):
        name = f"strain_models[{i}]"
        if not isinstance(m, Mapping) or "kind" not in m:
            raise ValueError(f"{name} must be a dict with a 'kind' key, got {m!r}")
        kind = m["kind"]
        if kind not in STRAIN_MODELS:
            raise ValueError(f"{name}['kind'] must be one of {STRAIN_MODELS}, got {kind!r}")
        p = dict(_STRAIN_DEFAULTS[kind])
        unknown = set(m) - set(p) - {"kind"}
        if unknown:
            raise ValueError(f"{name} has unknown keys {sorted(unknown)} for kind {kind!r}")
        p.update({k: v for k, v in m.items() if k != "kind"})
        if kind in SMOOTH_MODELS:
            p["weight"] = _number(f"{name}['weight']", p["weight"], -100.0, 100.0)
            if p["weight"] == 0:
                raise ValueError(f"{name}['weight'] must be non-zero (leave the model out instead)")
        if kind == "smooth":
            p["length"] = _number(f"{name}['length']", p["length"], 0.02, 5.0)
        elif kind == "interface":
            p["decay"] = _number(f"{name}['decay']", p["decay"], 0.02, 5.0)
            p["lateral"] = _number(f"{name}['lateral']", p["lateral"], -5.0, 5.0)
        elif kind == "core_shell":
            p["radius"] = _number(f"{name}['radius']", p["radius"], 0.02, 1.0)
            p["offset"] = list(_vector(f"{name}['offset']", p["offset"], max_norm=1.0))
        elif kind == "polynomial":
            p["coefficients"] = _coefficients(f"{name}['coefficients']", p["coefficients"])
        elif kind == "fault":
            p["normal"] = list(_vector(f"{name}['normal']", p["normal"], unit=True))
            p["offset"] = _number(f"{name}['offset']", p["offset"], -0.5, 0.5)
            p["jump"] = _number(f"{name}['jump']", p["jump"], -2 * math.pi, 2 * math.pi)
            if p["jump"] == 0:
                raise ValueError(f"{name}['jump'] must be non-zero (leave the fault out instead)")
            p["width"] = _number(f"{name}['width']", p["width"], 0.0, 1.0)
        elif kind == "loop":
            p["normal"] = list(_vector(f"{name}['normal']", p["normal"], unit=True))
            p["centre"] = list(_vector(f"{name}['centre']", p["centre"], max_norm=0.5))
            p["radius"] = _number(f"{name}['radius']", p["radius"], 0.02, 0.5)
            p["winding"] = _int(f"{name}['winding']", p["winding"], -8, 8)
            if p["winding"] == 0:
                raise ValueError(f"{name}['winding'] must be non-zero (leave the loop out instead)")
        else:
            p["winding"] = _int(f"{name}['winding']", p["winding"], -8, 8)
            if p["winding"] == 0:
                raise ValueError(f"{name}['winding'] must be a non-zero int")
            p["point"] = list(_vector(f"{name}['point']", p["point"], max_norm=1.0))
            line = np.asarray(_vector(f"{name}['line']", p["line"], unit=True))
            p["line"] = [float(v) for v in line]
            if kind == "edge":
                p["poisson_ratio"] = _number(
                    f"{name}['poisson_ratio']", p["poisson_ratio"], 0.0, 0.49
                )
                g = np.asarray(g_hat)
                if p["burgers"] is None:
                    b = g - (g @ line) * line
                    if np.linalg.norm(b) < 0.1:
                        raise ValueError(
                            f"{name}: the line is (nearly) parallel to g_hat; give 'burgers'"
                        )
                    b = b / np.linalg.norm(b)
                else:
                    b = np.asarray(_vector(f"{name}['burgers']", p["burgers"], unit=True))
                if abs(float(b @ line)) > 1e-6:
                    raise ValueError(f"{name}['burgers'] must be perpendicular to 'line'")
                if abs(float(b @ g)) < 0.1:
                    raise ValueError(
                        f"{name}['burgers'] is (nearly) perpendicular to g_hat: |b·g_hat| must be "
                        ">= 0.1 for a visible edge dislocation"
                    )
                p["burgers"] = [float(v) for v in b]
        out.append({"kind": kind, **p})
    return tuple(out)


@dataclass(frozen=True)
class CrystalSpec:
    """Every choice that defines one simulated crystal (reproducible from the spec alone).

    All vectors are ``(z, y, x)`` in the lab (grid) frame. Lengths inside ``strain_models`` are
    fractions of the crystal's *size* (its volume-equivalent sphere diameter, in voxels).

    Parameters
    ----------
    n : int
        Grid side; the arrays are ``(n, n, n)``. At least 16.
    shape : str
        One of ``"octahedron"``, ``"truncated_octahedron"``, ``"cuboctahedron"``, ``"cube"``
        (the fcc Wulff family: {100} facets at distance 1 and {111} facets at ``ratio``, from
        1/√3 = octahedron to √3 = cube), ``"sphere"``, ``"platelet"`` (hexagonal plate;
        ``thickness`` = half-thickness / apothem, ``side_ratio`` < 1 towards a triangle),
        ``"rod"`` (``sides``-gon prism, ``aspect`` = half-length / apothem) or ``"polyhedron"``
        (``normals`` and ``offsets`` of any bounded convex polyhedron containing the origin).
        Faceted kinds accept ``stretch`` (3 axis scale factors in the crystal frame).
    shape_params : dict
        Shape parameters; missing ones take defaults.
    rotation : tuple of 4 floats
        Unit quaternion ``(w, a, b, c)`` rotating the crystal frame into the lab frame.
    oversampling : float
        The crystal spans at most ``n / oversampling`` voxels along every axis (>= 2).
    substrate_cut : float
        Fraction (0 to 0.45) of the crystal's height along ``substrate_normal`` cut away by a
        flat substrate plane; 0 means not truncated.
    substrate_normal : tuple of 3 floats
        Direction from the crystal into the substrate. Also the interface of the
        ``"interface"`` strain model (the tangent plane when ``substrate_cut`` is 0).
    strain_models : tuple of dict
        Displacement-field components, each ``{"kind": ..., **params}``:

        - ``"smooth"`` — low-pass Gaussian random field; ``weight``, ``length`` (correlation
          length).
        - ``"interface"`` — strain decaying away from the substrate plane,
          ``exp(-d / decay) * (1 + lateral * rho**2 / (size/2)**2)``; ``weight``, ``decay``,
          ``lateral``.
        - ``"core_shell"`` — lattice-mismatched spherical core (Eshelby inclusion): radial
          displacement ``∝ r`` inside, ``∝ radius**3 / r**2`` outside, projected on ``g_hat``;
          ``weight``, ``radius``, ``offset`` (of the core from the centroid).
        - ``"polynomial"`` — a quadratic and cubic polynomial of the position relative to
          the centroid in units of half the crystal's size, one coefficient per
          :data:`POLYNOMIAL_TERMS` entry: a bending (the square of one direction's
          coordinate), a torsion (the product of two), or any low-order field;
          ``weight``, ``coefficients``.
        - ``"screw"`` — screw dislocation, ``u = b θ / 2π`` along the line, so that the phase
          is ``winding · θ``; ``winding`` (``G·b / 2π``), ``point`` (offset of the line from
          the centroid), ``line`` (direction).
        - ``"edge"`` — edge dislocation (isotropic elasticity, Hirth & Lothe);
          ``winding``, ``point``, ``line``, ``burgers`` (unit, ⊥ line; defaults to the
          projection of ``g_hat``), ``poisson_ratio``.
        - ``"fault"`` — planar defect (stacking fault, twin boundary): the phase jumps by
          ``jump`` (rad, ``G·R`` of the fault vector R) across the plane of unit ``normal`` at
          signed distance ``offset`` from the centroid; with ``width`` > 0 only inside a slab
          of that thickness beyond the plane (a lamella, bounded by two faults).
        - ``"loop"`` — circular dislocation loop (prismatic or shear): the phase is
          ``winding · Ω / 2``, Ω the solid angle the loop subtends (the solid-angle term of
          Burgers' formula, ``G·b = 2π·winding``); unit ``normal``, ``centre`` (offset from the
          centroid) and ``radius`` in units of the crystal's size.

        The smooth components are each normalised to unit peak-to-peak inside the support,
        weighted, summed, cleared of their linear phase ramp (so the Bragg peak's centre of mass
        stays at the grid centre) and scaled to ``phase_span``; the dislocation, fault and loop
        phases (ramp removed too) are added on top.
    phase_span : float
        Peak-to-peak phase (rad) of the smooth part inside the support. Must be 0 when there is
        no smooth model.
    g_hat : tuple of 3 floats
        Direction of the scattering vector G (normalised); the phase is ``|G| u·g_hat``.
    peak_counts : float
        Maximum of the noise-free intensity (photons), before background and blur.
    background : float
        Constant background (photons per pixel) added before Poisson noise.
    blur_sigma : float
        Standard deviation (pixels) of a Gaussian detector PSF along ``y`` and ``x``; 0 = none.
    coherence : tuple of 4 floats
        Partial coherence, a Gaussian kernel the intensity is convolved with after the detector
        PSF: widths ``(z, y, x)`` in pixels and the correlation ``r`` of ``y`` and ``x`` (a
        coherence length short along a direction that is not a detector axis; the phasing
        engine's PSF form, :class:`bcdi_stream.phasing.Psf`). Zeros: none; ``r`` needs both
        ``y`` and ``x``, ``|r| <= 0.99``.
    gaps : tuple of (axis, start, width)
        Detector gaps: bands of rows (``axis=1``) or columns (``axis=2``) masked in every frame.
    amp_modulation : float
        Relative amplitude of a mild smooth modulation of ``|rho|`` inside the crystal (0 to 0.1).
    edge_width : float
        Width (voxels) of the smoothstep edge of the amplitude (0.5 to 4).
    poisson : bool
        Apply Poisson noise (``False`` gives the expected counts).
    seed : int
        Seed of the torch generator for the random fields and the noise.
    """

    n: int = 64
    shape: str = "octahedron"
    shape_params: dict[str, Any] = field(default_factory=dict)
    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    oversampling: float = 3.0
    substrate_cut: float = 0.0
    substrate_normal: tuple[float, float, float] = (0.0, 1.0, 0.0)
    strain_models: tuple[dict[str, Any], ...] = ()
    phase_span: float = 0.0
    g_hat: tuple[float, float, float] = (0.0, 1.0, 0.0)
    peak_counts: float = 1e6
    background: float = 0.0
    blur_sigma: float = 0.0
    coherence: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    gaps: tuple[tuple[int, int, int], ...] = ()
    amp_modulation: float = 0.0
    edge_width: float = 1.5
    poisson: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        n = _int("n", self.n, 16, 1024)
        put("n", n)
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        put("shape_params", validate_shape_params(self.shape, self.shape_params))
        if isinstance(self.rotation, (str, bytes)) or _has_bool(self.rotation):
            raise ValueError(f"rotation must be a quaternion (w, a, b, c), got {self.rotation!r}")
        try:
            q = np.asarray(self.rotation, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"rotation must be a quaternion (w, a, b, c), got {self.rotation!r}"
            ) from exc
        if q.shape != (4,) or not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
            raise ValueError(
                f"rotation must be a non-zero quaternion (w, a, b, c), got {self.rotation!r}"
            )
        if abs(np.linalg.norm(q) - 1.0) > 1e-12:
            q = q / np.linalg.norm(q)
        put("rotation", tuple(float(v) for v in q))
        put("oversampling", _number("oversampling", self.oversampling, 2.0, n / 5.4))
        put("substrate_cut", _number("substrate_cut", self.substrate_cut, 0.0, 0.45))
        put("substrate_normal", _vector("substrate_normal", self.substrate_normal, unit=True))
        put("g_hat", _vector("g_hat", self.g_hat, unit=True))
        put("strain_models", _validate_strain(self.strain_models, self.g_hat))
        put("phase_span", _number("phase_span", self.phase_span, 0.0, 200.0))
        if self.phase_span > 0 and not any(m["kind"] in SMOOTH_MODELS for m in self.strain_models):
            raise ValueError(
                f"phase_span must be 0 without a smooth strain model {SMOOTH_MODELS}, "
                f"got {self.phase_span}"
            )
        put("peak_counts", _number("peak_counts", self.peak_counts, 1e-3, 1e12))
        if self.peak_counts <= 0:
            raise ValueError(f"peak_counts must be positive, got {self.peak_counts}")
        put("background", _number("background", self.background, 0.0, 1e9))
        put("blur_sigma", _number("blur_sigma", self.blur_sigma, 0.0, n / 8))
        if (isinstance(self.coherence, (str, bytes)) or not isinstance(self.coherence, Iterable)
                or not all(_is_number(v) for v in self.coherence)):
            raise ValueError(f"coherence must be 4 numbers (z, y, x, r), got {self.coherence!r}")
        coh = tuple(float(v) for v in self.coherence)
        if len(coh) != 4:
            raise ValueError(f"coherence must be (z, y, x, r), got {self.coherence!r}")
        widths = tuple(_number(f"coherence[{i}]", v, 0.0, n / 8) for i, v in enumerate(coh[:3]))
        r = _number("coherence[3]", coh[3], -0.99, 0.99)
        if r != 0.0 and min(widths[1:]) <= 0.0:
            raise ValueError(f"coherence: a correlation r needs y and x widths, got {coh!r}")
        put("coherence", (*widths, r))
        gaps = []
        if isinstance(self.gaps, (str, bytes)) or not isinstance(self.gaps, Iterable):
            raise ValueError(f"gaps must be a sequence of (axis, start, width), got {self.gaps!r}")
        for i, gap in enumerate(self.gaps):
            if isinstance(gap, (str, bytes)) or not isinstance(gap, Sequence) or len(gap) != 3:
                raise ValueError(f"gaps[{i}] must be (axis, start, width), got {gap!r}")
            axis = _int(f"gaps[{i}] axis", gap[0], 1, 2)
            width = _int(f"gaps[{i}] width", gap[2], 1, n - 1)
            start = _int(f"gaps[{i}] start", gap[1], 0, n - width)
            gaps.append((axis, start, width))
        put("gaps", tuple(gaps))
        put("amp_modulation", _number("amp_modulation", self.amp_modulation, 0.0, 0.1))
        put("edge_width", _number("edge_width", self.edge_width, 0.5, 4.0))
        if not isinstance(self.poisson, (bool, np.bool_)):
            raise ValueError(f"poisson must be a bool, got {self.poisson!r}")
        put("poisson", bool(self.poisson))
        put("seed", _int("seed", self.seed, 0, 2**63 - 1))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists for tuples); :meth:`from_dict` inverts it."""

        def plain(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CrystalSpec:
        """Rebuild a spec from :meth:`to_dict`'s output (e.g. after a JSON round trip)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"d must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"d has unknown keys {sorted(unknown)}")

        def seq(v: Any) -> bool:  # lists to tuples; anything else is left to the checks
            return isinstance(v, Iterable) and not isinstance(v, (str, bytes, Mapping))

        kw = dict(d)
        for key in ("rotation", "substrate_normal", "g_hat"):
            if key in kw and seq(kw[key]):
                kw[key] = tuple(kw[key])
        if "strain_models" in kw and seq(kw["strain_models"]):
            kw["strain_models"] = tuple(
                dict(m) if isinstance(m, Mapping) else m for m in kw["strain_models"])
        if "gaps" in kw and seq(kw["gaps"]):
            kw["gaps"] = tuple(tuple(g) if seq(g) else g for g in kw["gaps"])
        return cls(**kw)

    def replace(self, **changes: Any) -> CrystalSpec:
        """A copy with some fields changed (validated again)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown CrystalSpec fields {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ random draw
    @classmethod
    def random(
        cls,
        seed: int,
        n: int = 64,
        strain: str | tuple[float, float] = "any",
        shapes: Sequence[str] | None = None,
        strain_models: Sequence[str] | None = None,
        peak_counts: float | tuple[float, float] | None = None,
        *,
        oversampling: tuple[float, float] | None = None,
        g_hat: tuple[float, float, float] = (0.0, 1.0, 0.0),
        dislocation_probability: float | None = None,
        fault_probability: float | None = None,
        loop_probability: float | None = None,
        field_probability: float | None = None,
        network_probability: float | None = None,
        coherence_probability: float | None = None,
        habit_probability: float | None = None,
        polynomial_probability: float | None = None,
    ) -> CrystalSpec:
        """Draw a random crystal.

        Parameters
        ----------
        seed : int
            Seed of the draw (numpy) and of the spec's torch generator.
        n : int
            Grid side.
        strain : {"weak", "medium", "strong", "any"} or (lo, hi)
            Peak-to-peak phase of the smooth part: "weak" < π (no dislocation), "medium" π–4π
            (dislocations in 15 % of the crystals), "strong" 4.5π–10π (in 35 %), "any" one of
            the three with equal odds, or a range in radians (dislocations in 35 % when
            ``lo >= 4π``, else none); ``dislocation_probability`` overrides these odds.
        shapes : sequence of str, optional
            Shape kinds to draw from (uniformly); default all of them.
        strain_models : sequence of str, optional
            Strain models allowed; default all. The smooth ones present are a random non-empty
            subset; when only dislocation models are allowed, every crystal gets 1–2
            dislocations and no smooth phase (not possible where the odds of dislocations are
            0, as for "weak" without ``dislocation_probability``).
        peak_counts : float or (lo, hi), optional
            Fixed peak counts, or a range drawn log-uniformly; default (1e4, 1e7). Both within
            [1e-3, 1e12].
        oversampling : (lo, hi), optional
            Range of the oversampling ratio (uniform); default ``(2, min(4, n / 5.4))``.
        g_hat : tuple of 3 floats
            Scattering-vector direction.
        dislocation_probability : float, optional
            Chance that the crystal gets 1–2 dislocations (screw or edge, among the allowed
            ``strain_models``), at any strain level: overrides the level's odds above.
        fault_probability : float, optional
            Chance that the crystal gets a planar defect (``"fault"``, when allowed): a single
            fault (60 %) or a lamella 0.1–0.35 of the crystal's size thick, jump ±2π/3, within
            a quarter of the size of the centroid. Default 0 (none). Drawn from a generator of
            its own, so the rest of the spec is the same with or without it.
        loop_probability : float, optional
            Chance that the crystal gets a dislocation loop (``"loop"``, when allowed): radius
            0.15–0.3 of the crystal's size, centre within a sixth of its size of the centroid
            (per axis), random plane, winding ±1. Default 0 (none). Drawn from a generator of
            its own, like the fault.
        field_probability : float, optional
            Chance that the smooth part is the Gaussian random field alone (``"smooth"``,
            when allowed and the crystal has a smooth part): the smooth models drawn are
            replaced by one random field (weight ±0.4–1, correlation length 0.3–0.7) with the
            same span; dislocations, faults and loops stay. Default 0 (the drawn mixture).
            Drawn from a generator of its own, like the fault.
        network_probability : float, optional
            Chance that the crystal carries a dislocation network: straight dislocations
            (screw or edge, among the allowed ``strain_models``, drawn as the 1–2 above) are
            added until it has 3 or 4 (the drawn ones stay). Default 0 (none). Drawn from a
            generator of its own, like the fault.
        coherence_probability : float, optional
            Chance of partial coherence (:attr:`coherence`) beyond the detector blur: three times
            in four in the detector plane, a Gaussian 1.0–1.8 px wide along a random direction
            and 0.25–0.6 px across it (along a detector axis or oblique to it); else along the
            rocking axis, 0.6–1.2 px. Default 0 (none). Drawn from a generator of its own, like
            the fault.
        habit_probability : float, optional
            Chance of a habit beyond the default ranges (when ``"rod"`` or ``"platelet"`` is among
            ``shapes``): the crystal is a needle (a rod of aspect :data:`NEEDLE_ASPECT`, against
            1.6–3 otherwise) or a thin plate (a platelet :data:`THIN_PLATE` thick, against
            0.2–0.5), either with equal odds. Default 0 (none). The choice is drawn from a
            generator of its own; the shape's parameters, and so the rest of the spec, are then
            drawn as for that shape.
        polynomial_probability : float, optional
            Chance that the smooth part is a low-order polynomial field alone
            (``"polynomial"``, when allowed and the crystal has a smooth part): a bending
            (40 %: the square of the coordinate along a random direction), a torsion (30 %: the
            product of the coordinates along two orthogonal random directions) or a random
            quadratic and cubic polynomial (30 %: coefficients N(0, 1)), weight ±0.4–1, with the
            same span; dislocations, faults and loops stay. Applied after
            ``field_probability`` (it replaces a random field drawn alone too). Default 0
            (none). Drawn from a generator of its own, like the fault.

        Returns
        -------
        CrystalSpec
        """
        seed = _int("seed", seed, 0, 2**63 - 1)
        n = _int("n", n, 16, 1024)
        _check_strain(strain)
        if shapes is None:
            shapes = SHAPES
        if isinstance(shapes, str) or not isinstance(shapes, Iterable):
            raise ValueError(f"shapes must be a sequence of shape kinds, got {shapes!r}")
        shapes = tuple(shapes)
        if not shapes or any(s not in SHAPES for s in shapes):
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {shapes!r}")
        if strain_models is None:
            strain_models = STRAIN_MODELS
        if isinstance(strain_models, str) or not isinstance(strain_models, Iterable):
            raise ValueError(f"strain_models must be a sequence of kinds, got {strain_models!r}")
        allowed = tuple(strain_models)
        if not allowed or any(s not in STRAIN_MODELS for s in allowed):
            raise ValueError(
                f"strain_models must be a non-empty subset of {STRAIN_MODELS}, got {allowed!r}"
            )
        smooth_ok = [k for k in _MIXED_SMOOTH if k in allowed]
        disl_ok = [k for k in DISLOCATION_MODELS if k in allowed]
        if oversampling is None:
            oversampling = (2.0, min(4.0, n / 5.4))
        os_lo, os_hi = _range("oversampling", oversampling)
        if not 2.0 <= os_lo <= os_hi <= n / 5.4:
            raise ValueError(
                f"oversampling must satisfy 2 <= lo <= hi <= n/5.4 = {n / 5.4:.3g}, "
                f"got {oversampling!r}"
            )
        g_hat = _vector("g_hat", g_hat, unit=True)
        if dislocation_probability is not None:
            dislocation_probability = _number(
                "dislocation_probability", dislocation_probability, 0, 1
            )
        if peak_counts is None:
            peak_counts = (1e4, 1e7)
        counts, count_range = 0.0, (0.0, 0.0)
        if _is_number(peak_counts):
            counts = _number("peak_counts", peak_counts, 1e-3, 1e12)
        else:
            count_range = _range("peak_counts", peak_counts, "a number or a (lo, hi) range")
            if not 1e-3 <= count_range[0] <= count_range[1] <= 1e12:
                raise ValueError(
                    f"peak_counts range must satisfy 1e-3 <= lo <= hi <= 1e12, got {peak_counts!r}"
                )
        p_fault = p_loop = p_field = p_net = p_coh = p_habit = p_poly = 0.0
        if polynomial_probability is not None:
            p_poly = _number("polynomial_probability", polynomial_probability, 0, 1)
        if habit_probability is not None:
            p_habit = _number("habit_probability", habit_probability, 0, 1)
        if coherence_probability is not None:
            p_coh = _number("coherence_probability", coherence_probability, 0, 1)
        if network_probability is not None:
            p_net = _number("network_probability", network_probability, 0, 1)
        if field_probability is not None:
            p_field = _number("field_probability", field_probability, 0, 1)
        if fault_probability is not None:
            p_fault = _number("fault_probability", fault_probability, 0, 1)
        if loop_probability is not None:
            p_loop = _number("loop_probability", loop_probability, 0, 1)

        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))

        # --- strain level
        if isinstance(strain, str):
            if strain not in ("weak", "medium", "strong", "any"):
                raise ValueError(
                    f"strain must be 'weak', 'medium', 'strong', 'any' or (lo, hi), got {strain!r}"
                )
            level = strain if strain != "any" else ("weak", "medium", "strong")[rng.integers(3)]
            span_range = {"weak": _WEAK, "medium": _MEDIUM, "strong": _STRONG}[level]
            p_disl = {"weak": 0.0, "medium": 0.15, "strong": 0.35}[level]
        else:
            lo, hi = _range("strain", strain)
            span_range = (lo, hi)
            level = "range"
            p_disl = 0.35 if lo >= 4 * math.pi else 0.0
        if dislocation_probability is not None:
            p_disl = dislocation_probability
        if not smooth_ok and not disl_ok:
            if not (("fault" in allowed and p_fault > 0) or ("loop" in allowed and p_loop > 0)):
                raise ValueError(
                    f"strain_models {allowed!r} has only faults or loops: give "
                    "fault_probability or loop_probability > 0"
                )
            p_disl = 0.0
        elif not smooth_ok:
            if p_disl == 0.0:
                raise ValueError(
                    f"strain_models {allowed!r} has only dislocations, which a '{level}' "
                    "strain level does not allow"
                )
            p_disl = 1.0

        # --- shape and placement (redrawn while the crystal is too thin to be sampled); a
        # needle or a thin plate chosen from a generator of its own
        shape = shapes[rng.integers(len(shapes))]
        habit_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4AB17]))
        habits = [k for k in _HABIT_SHAPES if k in shapes]
        habit = bool(habits) and p_habit > 0 and habit_rng.random() < p_habit
        if habit:
            shape = habits[habit_rng.integers(len(habits))]
        want_interface = "interface" in smooth_ok and (len(smooth_ok) == 1 or rng.random() < 0.5)
        for _ in range(20):
            shape_params = _random_shape_params(shape, rng, habit)
            q = rng.normal(size=4)
            rotation = tuple(float(v) for v in q / np.linalg.norm(q))
            os_ = float(rng.uniform(os_lo, os_hi))
            substrate_normal = _random_unit(rng)
            cut = 0.0
            if rng.random() < (0.7 if want_interface else 0.25):
                cut = float(rng.uniform(0.05, 0.4))
            geom = build_geometry(
                n, shape, shape_params, rotation, os_, cut, tuple(substrate_normal)
            )
            if geom.inner_radius >= _MIN_INNER_RADIUS:
                break

        # --- strain models
        models: list[dict[str, Any]] = []
        span = 0.0
        if smooth_ok:
            chosen = [k for k in smooth_ok if k != "interface" and rng.random() < 0.5]
            if want_interface:
                chosen.append("interface")
            if not chosen:
                chosen = [smooth_ok[rng.integers(len(smooth_ok))]]
            for k in SMOOTH_MODELS:
                if k not in chosen:
                    continue
                w = float(rng.uniform(0.4, 1.0) * rng.choice([-1.0, 1.0]))
                if k == "smooth":
                    models.append({"kind": k, "weight": w, "length": float(rng.uniform(0.3, 0.7))})
                elif k == "interface":
                    models.append(
                        {
                            "kind": k,
                            "weight": w,
                            "decay": float(rng.uniform(0.2, 0.6)),
                            "lateral": float(rng.uniform(-1.0, 1.0)),
                        }
                    )
                else:
                    r_in = geom.inner_radius / geom.size
                    radius = float(rng.uniform(0.3, 0.7) * r_in)
                    off = _random_unit(rng) * rng.uniform(0, 0.3) * (r_in - radius)
                    models.append(
                        {
                            "kind": k,
                            "weight": w,
                            "radius": radius,
                            "offset": [float(v) for v in off],
                        }
                    )
            span = float(rng.uniform(*span_range))
        r_in = geom.inner_radius / geom.size
        if disl_ok and rng.random() < p_disl:
            for _ in range(1 if rng.random() < 0.75 else 2):
                models.append(_random_dislocation(rng, disl_ok, r_in, g_hat))

        # --- detector (peak_counts checked above)
        if not _is_number(peak_counts):
            c_lo, c_hi = count_range
            counts = float(math.exp(rng.uniform(math.log(c_lo), math.log(c_hi))))
        background = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0
        blur = float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else 0.0
        gaps: tuple[tuple[int, int, int], ...] = ()
        if rng.random() < 0.25:
            axis = int(rng.integers(1, 3))
            width = int(rng.integers(1, 4))
            lo_start = n // 2 + max(3, n // 16)
            hi_start = n - width - 1
            if hi_start > lo_start:
                start = int(rng.integers(lo_start, hi_start + 1))
                if rng.random() < 0.5:  # mirror to the other side of the peak
                    start = n - start - width
                gaps = ((axis, start, width),)
        amp_mod = float(rng.uniform(0.02, 0.1)) if rng.random() < 0.5 else 0.0

        # --- the random field alone, from a generator of its own (the draws above stay)
        field_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF1E1D]))
        if ("smooth" in allowed and span > 0 and p_field > 0
                and field_rng.random() < p_field):
            field = {"kind": "smooth",
                     "weight": float(field_rng.uniform(0.4, 1.0) * field_rng.choice([-1.0, 1.0])),
                     "length": float(field_rng.uniform(0.3, 0.7))}
            models = [field, *(m for m in models if m["kind"] not in SMOOTH_MODELS)]

        # --- a low-order polynomial field alone, from a generator of its own
        poly_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB3D]))
        if ("polynomial" in allowed and span > 0 and p_poly > 0
                and poly_rng.random() < p_poly):
            poly = {"kind": "polynomial",
                    "weight": float(poly_rng.uniform(0.4, 1.0) * poly_rng.choice([-1.0, 1.0])),
                    "coefficients": _random_polynomial(poly_rng)}
            models = [poly, *(m for m in models if m["kind"] not in SMOOTH_MODELS)]

        # --- planar defect, from a generator of its own (the draws above stay as they were)
        fault_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFA17]))
        if "fault" in allowed and fault_rng.random() < p_fault:
            width = 0.0 if fault_rng.random() < 0.6 else float(fault_rng.uniform(0.1, 0.35))
            models.append(
                {
                    "kind": "fault",
                    "normal": [float(v) for v in _random_unit(fault_rng)],
                    "offset": float(fault_rng.uniform(-0.25, 0.25)),
                    "jump": float(fault_rng.choice([-1.0, 1.0])) * FAULT_JUMP,
                    "width": width,
                }
            )
        # --- dislocation loop, from a generator of its own
        loop_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x100B]))
        if "loop" in allowed and loop_rng.random() < p_loop:
            models.append(
                {
                    "kind": "loop",
                    "normal": [float(v) for v in _random_unit(loop_rng)],
                    "centre": [float(v) for v in loop_rng.uniform(-1 / 6, 1 / 6, size=3)],
                    "radius": float(loop_rng.uniform(0.15, 0.3)),
                    "winding": int(loop_rng.choice([-1, 1])),
                }
            )

        # --- dislocation network: lines added up to 3-4, from a generator of its own
        net_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E7]))
        if disl_ok and net_rng.random() < p_net:
            have = sum(m["kind"] in DISLOCATION_MODELS for m in models)
            for _ in range(max(0, int(net_rng.integers(3, 5)) - have)):
                models.append(_random_dislocation(net_rng, disl_ok, r_in, g_hat))

        # --- partial coherence, from a generator of its own
        coh_rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0E]))
        coherence = (0.0, 0.0, 0.0, 0.0)
        if coh_rng.random() < p_coh:
            if coh_rng.random() < 0.75:
                along, across = coh_rng.uniform(1.0, 1.8), coh_rng.uniform(0.25, 0.6)
                sy, sx, r = gaussian_axes_to_yx(along, across, coh_rng.uniform(0.0, math.pi))
                coherence = (0.0, sy, sx, r)
            else:
                coherence = (float(coh_rng.uniform(0.6, 1.2)), 0.0, 0.0, 0.0)

        return cls(
            n=n,
            shape=shape,
            shape_params=shape_params,
            rotation=rotation,
            oversampling=os_,
            substrate_cut=cut,
            substrate_normal=tuple(float(v) for v in substrate_normal),
            strain_models=tuple(models),
            phase_span=span,
            g_hat=g_hat,
            peak_counts=counts,
            background=background,
            blur_sigma=blur,
            coherence=coherence,
            gaps=gaps,
            amp_modulation=amp_mod,
            seed=seed,
        )


def _range(name: str, v: Any, expected: str = "a (lo, hi) range of numbers"
           ) -> tuple[float, float]:
    """A ``(lo, hi)`` pair of finite numbers (no strings, no bools), as floats."""
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ValueError(f"{name} must be {expected}, got {v!r}")
    pair = list(v)
    if len(pair) != 2 or not all(_is_number(x) for x in pair):
        raise ValueError(f"{name} must be {expected}, got {v!r}")
    lo, hi = (float(x) for x in pair)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be a (lo, hi) range of finite numbers, got {v!r}")
    return lo, hi


def _check_strain(strain: Any) -> None:
    """Check :meth:`CrystalSpec.random`'s ``strain`` (a level name or a range) eagerly."""
    if isinstance(strain, str):
        if strain not in ("weak", "medium", "strong", "any"):
            raise ValueError(
                f"strain must be 'weak', 'medium', 'strong', 'any' or (lo, hi), got {strain!r}"
            )
        return
    lo, hi = _range("strain", strain, "'weak', 'medium', 'strong', 'any' or a (lo, hi) range")
    if not 0.0 <= lo <= hi <= 200.0:
        raise ValueError(f"strain range must satisfy 0 <= lo <= hi <= 200, got {strain!r}")


def _random_dislocation(rng: np.random.Generator, kinds: Sequence[str], r_in: float,
                        g_hat: tuple[float, float, float]) -> dict[str, Any]:
    """One straight dislocation of a random kind among ``kinds``: winding ±1 (15 %: ±2), through
    a point within half the inner radius ``r_in`` (fraction of the crystal's size) of the
    centroid; an edge dislocation's line kept away from ``g_hat`` and its Burgers vector close
    to it."""
    kind = kinds[rng.integers(len(kinds))]
    winding = int(rng.choice([1, -1])) * (1 if rng.random() < 0.85 else 2)
    pt = _random_unit(rng) * rng.uniform(0, 0.5) * r_in
    line = _random_unit(rng)
    m: dict[str, Any] = {
        "kind": kind,
        "winding": winding,
        "point": [float(v) for v in pt],
        "line": [float(v) for v in line],
    }
    if kind == "edge":
        g = np.asarray(g_hat)
        while abs(float(line @ g)) > 0.8:
            line = _random_unit(rng)
        gp = g - (g @ line) * line
        gp /= np.linalg.norm(gp)
        other = np.cross(line, gp)
        ang = rng.uniform(-0.35, 0.35) * math.pi
        b = math.cos(ang) * gp + math.sin(ang) * other
        m["line"] = [float(v) for v in line]
        m["burgers"] = [float(v) for v in b]
        m["poisson_ratio"] = float(rng.uniform(0.25, 0.42))
    return m


def _random_polynomial(rng: np.random.Generator) -> list[float]:
    """Coefficients (:data:`POLYNOMIAL_TERMS`) of a bending ``(a·r)²`` (40 %), a torsion
    ``(a·r)(b·r)`` with ``b ⊥ a`` (30 %) or a random quadratic and cubic polynomial (30 %)."""
    kind = rng.random()
    if kind >= 0.7:
        return [float(v) for v in rng.normal(size=len(POLYNOMIAL_TERMS))]
    a = _random_unit(rng)
    b = a
    if kind >= 0.4:
        b = _random_unit(rng)
        b = b - (b @ a) * a
        b = b / np.linalg.norm(b)
    # (a·r)(b·r) = Σ_i≤j (a_i b_j + a_j b_i) r_i r_j, the diagonal terms counted once
    return [float(a[t[0]] * b[t[1]] + (a[t[1]] * b[t[0]] if t[0] != t[1] else 0.0))
            if len(t) == 2 else 0.0 for t in POLYNOMIAL_TERMS]


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _random_shape_params(shape: str, rng: np.random.Generator, habit: bool = False
                         ) -> dict[str, Any]:
    """Random parameters of ``shape``; ``habit``: a rod's aspect drawn from
    :data:`NEEDLE_ASPECT` and a platelet's thickness from :data:`THIN_PLATE` (the same draws)."""
    stretch = [float(v) for v in rng.uniform(0.85, 1.15, size=3)]
    if shape == "octahedron":
        return {"ratio": float(rng.uniform(1 / math.sqrt(3), 0.64)), "stretch": stretch}
    if shape == "truncated_octahedron":
        return {"ratio": float(rng.uniform(0.68, 1.02)), "stretch": stretch}
    if shape == "cuboctahedron":
        return {"ratio": float(rng.uniform(1.10, 1.21)), "stretch": stretch}
    if shape == "cube":
        return {"ratio": float(rng.uniform(1.40, math.sqrt(3))), "stretch": stretch}
    if shape == "sphere":
        return {}
    if shape == "platelet":
        return {
            "thickness": float(rng.uniform(*(THIN_PLATE if habit else (0.2, 0.5)))),
            "side_ratio": float(rng.uniform(0.5, 1.0)),
            "stretch": stretch,
        }
    if shape == "rod":
        return {
            "sides": int(rng.choice([4, 5, 6, 8])),
            "aspect": float(rng.uniform(*(NEEDLE_ASPECT if habit else (1.6, 3.0)))),
            "stretch": stretch,
        }
    # random convex polyhedron: random facet normals, redrawn until they bound a region
    # and compact (circumradius / inradius <= 2.2)
    while True:
        k = int(rng.integers(8, 17))
        normals = rng.normal(size=(k, 3))
        normals /= np.linalg.norm(normals, axis=1)[:, None]
        offsets = rng.uniform(0.85, 1.15, size=k)
        if _normals_bound(normals):
            verts, _, _ = _vertices(normals, offsets)
            if np.linalg.norm(verts, axis=1).max() <= 2.2 * offsets.min():
                break
    return {
        "normals": [[float(v) for v in row] for row in normals],
        "offsets": [float(v) for v in offsets],
    }
