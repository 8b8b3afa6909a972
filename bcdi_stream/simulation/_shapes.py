"""Crystal habits as intersections of half-spaces, and their placement on the grid.

A habit is first written in the *crystal frame* at unit scale (facet distances of order 1), then
rotated into the lab frame ``(z, y, x)``, optionally truncated by a substrate plane, scaled so
that its largest axis-aligned extent fits ``n / oversampling`` voxels, and placed so that its
(continuous) centroid sits at the grid centre ``n // 2``. All of this is small numpy/scipy work
done once per crystal; the voxel-wise evaluation is in torch (:mod:`._crystal`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection

__all__ = [
    "SHAPES",
    "Geometry",
    "build_geometry",
    "default_shape_params",
    "quaternion_to_matrix",
    "validate_shape_params",
]

#: Shape kinds understood by the simulator.
SHAPES: tuple[str, ...] = (
    "octahedron",
    "truncated_octahedron",
    "cuboctahedron",
    "cube",
    "sphere",
    "platelet",
    "rod",
    "polyhedron",
)

#: The fcc habits share one family: {100} facets at distance 1 and {111} facets at ``ratio``.
_FCC_HABITS = ("octahedron", "truncated_octahedron", "cuboctahedron", "cube")
_RATIO_MIN = 1.0 / math.sqrt(3.0)  # pure octahedron
_RATIO_MAX = math.sqrt(3.0)  # pure cube
_FCC_DEFAULT_RATIO = {
    "octahedron": _RATIO_MIN,
    "truncated_octahedron": math.sqrt(3.0) / 2.0,  # Archimedean truncated octahedron
    "cuboctahedron": 2.0 / math.sqrt(3.0),
    "cube": _RATIO_MAX,
}

#: Continuous extent is ``n / oversampling - _EXTENT_MARGIN`` voxels, so that the sampled
#: support (soft edge, amplitude modulation, sub-voxel centring shift) spans at most
#: ``n / oversampling`` voxels along every axis.
_EXTENT_MARGIN = 1.4


def default_shape_params(shape: str) -> dict[str, Any]:
    """Default parameters of a shape kind (see :class:`~bcdi_stream.simulation.CrystalSpec`)."""
    if shape in _FCC_HABITS:
        return {"ratio": _FCC_DEFAULT_RATIO[shape], "stretch": [1.0, 1.0, 1.0]}
    if shape == "sphere":
        return {}
    if shape == "platelet":
        return {"thickness": 0.35, "side_ratio": 1.0, "stretch": [1.0, 1.0, 1.0]}
    if shape == "rod":
        return {"sides": 6, "aspect": 2.5, "stretch": [1.0, 1.0, 1.0]}
    if shape == "polyhedron":
        # a cube-like default so that the kind works without parameters
        normals = [[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]]
        return {"normals": normals, "offsets": [1.0] * 6}
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _float_in(params: dict[str, Any], key: str, lo: float, hi: float) -> float:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"shape_params[{key!r}] must be a number, got {v!r}")
    v = float(v)
    if not (lo <= v <= hi):
        raise ValueError(f"shape_params[{key!r}] must be in [{lo:.4g}, {hi:.4g}], got {v}")
    return v


def _floats(key: str, v: Any) -> np.ndarray:
    """``shape_params[key]`` as a float array; strings, bools and non-numbers raise a
    ``ValueError`` naming it (``np.asarray`` would take bools and numeric strings)."""
    try:
        flat = [v] if isinstance(v, (str, bytes)) else np.asarray(v, dtype=object).ravel()
        if any(isinstance(x, (str, bytes, bool, np.bool_)) for x in flat):
            raise ValueError
        return np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"shape_params[{key!r}] must hold numbers, got {v!r}") from None


def validate_shape_params(shape: str, params: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into, check and normalise the parameters of a shape.

    Parameters
    ----------
    shape : str
        One of :data:`SHAPES`.
    params : dict
        User parameters (may be partial).

    Returns
    -------
    dict
        A complete, JSON-able copy.

    Raises
    ------
    ValueError
        Naming ``shape`` or ``shape_params`` when something is wrong.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if not isinstance(params, dict):
        raise ValueError(f"shape_params must be a dict, got {type(params).__name__}")
    out = default_shape_params(shape)
    unknown = set(params) - set(out)
    if unknown:
        raise ValueError(f"shape_params has unknown keys {sorted(unknown)} for shape {shape!r}")
    out.update(params)
    if "stretch" in out:
        s = _floats("stretch", out["stretch"])
        if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s < 0.5) or np.any(s > 2.0):
            raise ValueError(
                f"shape_params['stretch'] must be 3 numbers in [0.5, 2], got {out['stretch']!r}"
            )
        out["stretch"] = [float(v) for v in s]
    if shape in _FCC_HABITS:
        out["ratio"] = _float_in(out, "ratio", _RATIO_MIN - 1e-9, _RATIO_MAX + 1e-9)
    elif shape == "platelet":
        out["thickness"] = _float_in(out, "thickness", 0.1, 1.0)
        out["side_ratio"] = _float_in(out, "side_ratio", 0.5, 1.0)
    elif shape == "rod":
        k = out["sides"]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 3 <= int(k) <= 12:
            raise ValueError(f"shape_params['sides'] must be an int in [3, 12], got {k!r}")
        out["sides"] = int(k)
        out["aspect"] = _float_in(out, "aspect", 1.0, 5.0)
    elif shape == "polyhedron":
        nrm = _floats("normals", out["normals"])
        off = _floats("offsets", out["offsets"])
        if nrm.ndim != 2 or nrm.shape[1] != 3 or nrm.shape[0] < 4 or nrm.shape[0] > 64:
            raise ValueError("shape_params['normals'] must be 4 to 64 vectors of 3 components")
        if off.shape != (nrm.shape[0],):
            raise ValueError("shape_params['offsets'] must have one entry per normal")
        norms = np.linalg.norm(nrm, axis=1)
        if not np.all(np.isfinite(nrm)) or np.any(norms < 1e-9):
            raise ValueError("shape_params['normals'] must be finite non-zero vectors")
        if not np.all(np.isfinite(off)) or np.any(off <= 0):
            raise ValueError("shape_params['offsets'] must be positive (the origin lies inside)")
        if not _normals_bound(nrm / norms[:, None]):
            raise ValueError("shape_params['normals'] do not bound a finite polyhedron")
        out["normals"] = [[float(v) for v in row] for row in nrm]
        out["offsets"] = [float(v) for v in off]
    return out


def _normals_bound(normals: np.ndarray) -> bool:
    """Whether half-spaces with these unit normals (positive offsets) bound a finite region.

    True iff the origin lies strictly inside the convex hull of the normals.
    """
    try:
        hull = ConvexHull(normals)
    except Exception:  # coplanar or degenerate normals
        return False
    return bool(np.all(hull.equations[:, -1] < -1e-9))


def quaternion_to_matrix(q: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, a, b, c)`` acting on ``(z, y, x)`` vectors.

    Parameters
    ----------
    q : sequence of 4 floats
        Quaternion; normalised here.

    Returns
    -------
    numpy.ndarray
        ``(3, 3)`` orthogonal matrix ``R`` with ``v_lab = R @ v_crystal``.
    """
    w, a, b, c = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (b * b + c * c), 2 * (a * b - w * c), 2 * (a * c + w * b)],
            [2 * (a * b + w * c), 1 - 2 * (a * a + c * c), 2 * (b * c - w * a)],
            [2 * (a * c - w * b), 2 * (b * c + w * a), 1 - 2 * (a * a + b * b)],
        ]
    )


def _crystal_halfspaces(shape: str, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Unit-scale half-spaces ``n·r <= d`` of a faceted habit in the crystal frame."""
    if shape in _FCC_HABITS:
        n100 = np.concatenate([np.eye(3), -np.eye(3)])
        n111 = np.array([[i, j, k] for i in (1, -1) for j in (1, -1) for k in (1, -1)], float)
        n111 /= math.sqrt(3.0)
        normals = np.concatenate([n100, n111])
        offsets = np.concatenate([np.ones(6), np.full(8, params["ratio"])])
    elif shape == "platelet":
        ang = np.arange(6) * math.pi / 3.0
        side = np.stack([np.zeros(6), np.sin(ang), np.cos(ang)], axis=1)
        side_d = np.where(np.arange(6) % 2 == 0, 1.0, params["side_ratio"])
        normals = np.concatenate([side, [[1.0, 0, 0], [-1.0, 0, 0]]])
        offsets = np.concatenate([side_d, [params["thickness"]] * 2])
    elif shape == "rod":
        k = params["sides"]
        ang = np.arange(k) * 2 * math.pi / k
        side = np.stack([np.zeros(k), np.sin(ang), np.cos(ang)], axis=1)
        normals = np.concatenate([side, [[1.0, 0, 0], [-1.0, 0, 0]]])
        offsets = np.concatenate([np.ones(k), [params["aspect"]] * 2])
    elif shape == "polyhedron":
        normals = np.asarray(params["normals"], float)
        offsets = np.asarray(params["offsets"], float)
        # offsets are the planes' distances from the origin along the normalised normals
        normals = normals / np.linalg.norm(normals, axis=1)[:, None]
    else:  # pragma: no cover - guarded by validate_shape_params
        raise ValueError(f"shape {shape!r} has no half-space description")
    stretch = np.asarray(params.get("stretch", [1.0, 1.0, 1.0]), float)
    if not np.allclose(stretch, 1.0):
        # the region {x: n·x <= d} stretched by S is {y: (S^-1 n)·y <= d}
        m = normals / stretch[None, :]
        norm = np.linalg.norm(m, axis=1)
        normals = m / norm[:, None]
        offsets = offsets / norm
    return normals, offsets


def _chebyshev(normals: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of the largest ball inside ``{r: normals·r <= offsets}``."""
    a_ub = np.concatenate([normals, np.ones((len(normals), 1))], axis=1)
    res = linprog(
        c=[0.0, 0.0, 0.0, -1.0],
        A_ub=a_ub,
        b_ub=offsets,
        bounds=[(None, None)] * 3 + [(0.0, None)],
        method="highs",
    )
    if res.status != 0 or res.x[3] <= 0:
        raise ValueError("shape_params describe an empty or unbounded crystal")
    return np.asarray(res.x[:3]), float(res.x[3])


#: Polytopes whose vertices were computed lately (a crystal's geometry is built when its
#: specification is drawn and again when it is simulated): key → (vertices, centre, radius).
_VERTEX_CACHE: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray, float]] = {}
_VERTEX_CACHE_SIZE = 64
_VERTEX_LOCK = threading.Lock()


def set_vertex_cache(size: int) -> int:
    """Empty the cache of polytope vertices and bound it to ``size`` entries (0: off).

    The cache changes no result, only the time (``bcdi-stream benchmark simulator`` compares
    both). Returns the previous bound.

    Parameters
    ----------
    size : int
        Most polytopes kept (>= 0).
    """
    global _VERTEX_CACHE_SIZE
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be an int >= 0, got {size!r}")
    with _VERTEX_LOCK:
        previous = _VERTEX_CACHE_SIZE
        _VERTEX_CACHE.clear()
        _VERTEX_CACHE_SIZE = int(size)
    return previous


def _vertices(normals: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Vertices, Chebyshev centre and inradius of a bounded polytope (recent ones cached)."""
    normals = np.ascontiguousarray(normals, dtype=float)
    offsets = np.ascontiguousarray(offsets, dtype=float)
    key = (normals.tobytes(), offsets.tobytes())
    with _VERTEX_LOCK:
        hit = _VERTEX_CACHE.get(key)
    if hit is None:
        centre, radius = _chebyshev(normals, offsets)
        hs = np.concatenate([normals, -offsets[:, None]], axis=1)
        verts = HalfspaceIntersection(hs, centre).intersections
        if not np.all(np.isfinite(verts)):
            raise ValueError("shape_params describe an unbounded crystal")
        hit = (verts, centre, radius)
        with _VERTEX_LOCK:
            if _VERTEX_CACHE_SIZE > 0:
                while len(_VERTEX_CACHE) >= _VERTEX_CACHE_SIZE:
                    del _VERTEX_CACHE[next(iter(_VERTEX_CACHE))]  # the oldest
                _VERTEX_CACHE[key] = hit
    return hit[0].copy(), hit[1].copy(), hit[2]


def _hull_volume_centroid(verts: np.ndarray) -> tuple[float, np.ndarray]:
    hull = ConvexHull(verts)
    o = verts.mean(axis=0)
    tri = verts[hull.simplices]  # (T, 3, 3)
    vol = np.abs(np.linalg.det(tri - o[None, None, :])) / 6.0
    cen = (tri.sum(axis=1) + o) / 4.0
    total = float(vol.sum())
    return total, (vol[:, None] * cen).sum(axis=0) / total


@dataclass(frozen=True)
class Geometry:
    """A crystal habit placed on the grid (all lengths in voxels, lab frame ``(z, y, x)``).

    Attributes
    ----------
    normals, offsets : numpy.ndarray
        Half-spaces ``normals·(r - origin) <= offsets`` (unit normals), substrate included.
    radius : float
        Sphere radius (``inf`` for faceted habits).
    origin : numpy.ndarray
        Lab position of the crystal-frame origin; chosen so that ``origin + centroid`` is the
        grid centre ``n // 2``.
    centroid : numpy.ndarray
        Continuous centroid relative to ``origin``.
    lo, hi : numpy.ndarray
        Axis-aligned bounding box relative to ``origin``.
    size : float
        Volume-equivalent sphere diameter (the length unit of the strain parameters).
    inner_radius : float
        Radius of the largest ball centred on the centroid inside the crystal.
    interface_normal, interface_offset : numpy.ndarray, float
        Substrate (interface) plane ``interface_normal·(r - origin) = interface_offset``; the
        tangent plane when the crystal is not truncated.
    """

    normals: np.ndarray
    offsets: np.ndarray
    radius: float
    origin: np.ndarray
    centroid: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    size: float
    inner_radius: float
    interface_normal: np.ndarray
    interface_offset: float


def _sphere_extent(axis: np.ndarray, ns: np.ndarray, d: float | None) -> float:
    """Support function ``max u·r`` of the unit sphere truncated by ``ns·r <= d``."""
    if d is None or float(axis @ ns) <= d:
        return 1.0
    c = float(axis @ ns)
    return d * c + math.sqrt(max(1.0 - d * d, 0.0)) * math.sqrt(max(1.0 - c * c, 0.0))


def build_geometry(
    n: int,
    shape: str,
    shape_params: dict[str, Any],
    rotation: tuple[float, float, float, float],
    oversampling: float,
    substrate_cut: float,
    substrate_normal: tuple[float, float, float],
) -> Geometry:
    """Place a habit on an ``n**3`` grid (see :class:`Geometry`).

    Parameters are those of :class:`~bcdi_stream.simulation.CrystalSpec` (already validated).
    """
    ns = np.asarray(substrate_normal, float)
    ns = ns / np.linalg.norm(ns)
    target = n / oversampling - _EXTENT_MARGIN
    eye = np.eye(3)
    if shape == "sphere":
        h_plus = 1.0
        d_cut = 1.0 - 2.0 * substrate_cut if substrate_cut > 0 else None
        hi = np.array([_sphere_extent(e, ns, d_cut) for e in eye])
        lo = -np.array([_sphere_extent(-e, ns, d_cut) for e in eye])
        scale = target / float(np.max(hi - lo))
        radius = scale
        if d_cut is None:
            normals, offsets = np.zeros((0, 3)), np.zeros(0)
            centroid = np.zeros(3)
            vol = 4.0 / 3.0 * math.pi
            iface = h_plus
        else:
            normals, offsets = ns[None, :], np.array([d_cut])
            hcap = 1.0 - d_cut
            vcap = math.pi * hcap**2 * (3.0 - hcap) / 3.0
            zcap = 3.0 * (2.0 - hcap) ** 2 / (4.0 * (3.0 - hcap))
            vol = 4.0 / 3.0 * math.pi - vcap
            centroid = -vcap * zcap / vol * ns
            iface = d_cut
        offsets = offsets * scale
        centroid, lo, hi = centroid * scale, lo * scale, hi * scale
        vol *= scale**3
        iface *= scale
    else:
        rot = quaternion_to_matrix(rotation)
        normals, offsets = _crystal_halfspaces(shape, shape_params)
        normals = normals @ rot.T
        verts, _, _ = _vertices(normals, offsets)
        h_plus = float(np.max(verts @ ns))
        iface = h_plus
        if substrate_cut > 0:
            h_minus = float(np.max(verts @ -ns))
            iface = h_plus - substrate_cut * (h_plus + h_minus)
            normals = np.concatenate([normals, ns[None, :]])
            offsets = np.concatenate([offsets, [iface]])
            verts, _, _ = _vertices(normals, offsets)
        scale = target / float(np.max(verts.max(axis=0) - verts.min(axis=0)))
        verts = verts * scale
        offsets = offsets * scale
        iface *= scale
        vol, centroid = _hull_volume_centroid(verts)
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        radius = math.inf
    # largest ball centred on the centroid (where cores and dislocations are placed)
    inner_r = float(np.min(offsets - normals @ centroid)) if len(offsets) else math.inf
    if math.isfinite(radius):
        inner_r = min(inner_r, radius - float(np.linalg.norm(centroid)))
    centre = np.full(3, float(n // 2))
    return Geometry(
        normals=np.asarray(normals, float),
        offsets=np.asarray(offsets, float),
        radius=float(radius),
        origin=centre - centroid,
        centroid=np.asarray(centroid, float),
        lo=np.asarray(lo, float),
        hi=np.asarray(hi, float),
        size=float((6.0 * vol / math.pi) ** (1.0 / 3.0)),
        inner_radius=float(inner_r),
        interface_normal=ns,
        interface_offset=float(iface),
    )
