"""Post-processing of a reconstructed object: support, centring, twin, ramp and offset removal,
wrap-free phase gradient, displacement and strain.

Conventions (see also :mod:`bcdi_stream.physics`)
--------------------------------------------------
* Arrays are ``(..., z, y, x)``: the spatial axes are last; ``g_hat`` and ``voxel_size`` are
  given in the same ``(z, y, x)`` order.
* The object is ``rho = |rho| exp(i phi)`` with ``phi = G·u`` and the forward transform has the
  kernel ``exp(-i q·r)`` (:func:`bcdi_stream.physics.fft_centered`).
* Displacement ``u_G = phi / |G|`` from the *unwrapped* phase, strain
  ``eps = d u_G / d x_Ĝ = (grad phi · Ĝ) / |G|`` from the wrap-free gradient.
* Derived fields (phase, phase gradient, displacement, strain) are **NaN outside the support**
  (``float('nan')``), so that plots leave the outside blank and statistics must use the
  support (or ``nanmean``/``isfinite``); amplitude and support are full arrays.
* Units: with ``g_norm`` in 1/m and ``voxel_size`` in m, displacement is in metres and strain is
  dimensionless. Without ``g_norm`` the phase is used as is (``|G| = 1``): displacement in
  radians and strain in radians per unit of ``voxel_size`` (per voxel when that is not given).

Strain sign
-----------
A phase that increases along ``Ĝ`` gives a positive strain (tensile along ``Ĝ``); under the
``exp(-i q·r)`` kernel its diffracted intensity sits at ``+q`` along ``Ĝ`` on the centred grid.
The twin ``conj(rho(-r))`` (:func:`bcdi_stream.physics.twin`) is the same crystal seen
point-mirrored: it gives the *same* strain, same sign, at the mirrored position. The plain
conjugate ``conj(rho(r))`` -- what a code using the opposite kernel ``exp(+i q·r)`` (cohere,
some PyNX paths) returns -- gives the *opposite* sign everywhere: conjugate such objects before
analysing them. ``tests/test_analysis.py`` checks all three with an asymmetric crystal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bcdi_stream.arrays import as_tensor, to_numpy
from bcdi_stream.physics import (
    SPATIAL_DIMS,
    fourier_shift,
    periodic_centroid,
    periodic_rolls,
    twin,
)

__all__ = [
    "PostProcessed",
    "center_object",
    "choose_twin",
    "displacement",
    "estimate_phase_ramp",
    "mirror",
    "phase_gradient",
    "postprocess",
    "remove_phase_offset",
    "remove_phase_ramp",
    "strain",
    "support_from_amplitude",
    "unwrap_phase",
]

_TWO_PI = 2.0 * math.pi
_NAN = float("nan")
#: Keys of the strain statistics in :attr:`PostProcessed.meta` (:meth:`PostProcessed.strain_stats`).
STRAIN_STATS = ("strain_min", "strain_max", "strain_rms", "strain_mean")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _complex(obj: Any, name: str = "obj") -> torch.Tensor:
    """``obj`` as a complex tensor with at least 3 (spatial) dimensions."""
    try:
        t = as_tensor(obj)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    if t.ndim < 3:
        raise ValueError(
            f"{name} must have at least 3 dimensions (..., z, y, x), got shape {tuple(t.shape)}"
        )
    if not torch.is_complex(t):
        t = t.to(torch.complex128 if t.dtype == torch.float64 else torch.complex64)
    return t


def _require_3d(t: torch.Tensor, name: str) -> None:
    if t.ndim != 3:
        raise ValueError(f"{name} must be a 3D (z, y, x) array, got shape {tuple(t.shape)}")


def _mask(support: Any, like: torch.Tensor, name: str = "support") -> torch.Tensor:
    """``support`` as a bool tensor on ``like``'s device whose spatial shape matches ``like``."""
    if support is None:
        return torch.ones(like.shape[-3:], dtype=torch.bool, device=like.device)
    try:
        m = as_tensor(support)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    m = m.to(like.device)
    if m.ndim < 3 or tuple(m.shape[-3:]) != tuple(like.shape[-3:]):
        raise ValueError(
            f"{name} must have the spatial shape {tuple(like.shape[-3:])} of the object, "
            f"got {tuple(m.shape)}"
        )
    # by hand: torch.broadcast_shapes imports sympy (~0.4 s on a process's first scan); the
    # shorter shape's missing leading axes broadcast
    pairs = zip(m.shape[::-1], like.shape[::-1], strict=False)
    if any(a != b and 1 not in (a, b) for a, b in pairs):
        raise ValueError(
            f"{name} of shape {tuple(m.shape)} does not broadcast to {tuple(like.shape)}"
        )
    return m if m.dtype == torch.bool else m != 0


def _vec3(v: Any, name: str, *, positive: bool = False) -> tuple[float, float, float]:
    try:
        vals = tuple(float(x) for x in (to_numpy(v).ravel() if not isinstance(v, Sequence) else v))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be 3 numbers (z, y, x), got {v!r}") from exc
    if len(vals) != 3 or not all(math.isfinite(x) for x in vals):
        raise ValueError(f"{name} must be 3 finite numbers (z, y, x), got {v!r}")
    if positive and not all(x > 0 for x in vals):
        raise ValueError(f"{name} must be positive, got {v!r}")
    return vals  # type: ignore[return-value]


def _unit_vector(g_hat: Any) -> tuple[float, float, float]:
    g = _vec3(g_hat, "g_hat")
    norm = math.sqrt(sum(x * x for x in g))
    if norm == 0:
        raise ValueError("g_hat must not be the zero vector")
    return (g[0] / norm, g[1] / norm, g[2] / norm)


def _positive(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a positive number, got {v!r}") from exc
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return f


def _neighbour(x: torch.Tensor, dim: int, k: int, fill: Any) -> torch.Tensor:
    """``y[i] = x[i + k]`` along ``dim`` (``k = ±1``), ``fill`` beyond the grid (no wrap)."""
    n = x.shape[dim]
    pad_shape = list(x.shape)
    pad_shape[dim] = 1
    pad = torch.full(pad_shape, fill, dtype=x.dtype, device=x.device)
    if n < 2:
        return pad.expand(x.shape).clone()
    if k == 1:
        return torch.cat([x.narrow(dim, 1, n - 1), pad], dim=dim)
    return torch.cat([pad, x.narrow(dim, 0, n - 1)], dim=dim)


def _erode(m: torch.Tensor, iterations: int = 1) -> torch.Tensor:
    """Binary erosion with the 6-neighbour structuring element (grid edges count as outside)."""
    for _ in range(iterations):
        out = m.clone()
        for dim in SPATIAL_DIMS:
            out &= _neighbour(m, dim, 1, False) & _neighbour(m, dim, -1, False)
        m = out
    return m


def _linear_phase(
    shape: Sequence[int], g: torch.Tensor, rolls: Sequence[int] = (0, 0, 0)
) -> torch.Tensor:
    """``sum_ax g[..., ax] * (i_ax - n_ax // 2)`` on a grid of spatial ``shape`` (float64).

    With ``rolls`` (:func:`bcdi_stream.physics.periodic_rolls`) the coordinate of index ``i``
    is that of ``(i + roll) mod n``, its place once the object is rolled whole: a ramp across
    an object split by the periodic edge stays linear over the object instead of jumping by
    ``g·N`` at the edge.
    """
    g = g.to(torch.float64)
    out = torch.zeros(g.shape[:-1] + tuple(shape), dtype=torch.float64, device=g.device)
    for ax in range(3):
        n = shape[ax]
        idx = torch.arange(n, dtype=torch.float64, device=g.device)
        if rolls[ax]:
            idx = torch.remainder(idx + rolls[ax], n)
        idx = idx - (n // 2)
        view = [1, 1, 1]
        view[ax] = n
        out = out + g[..., ax].reshape((*g.shape[:-1], 1, 1, 1)) * idx.reshape(view)
    return out


def _rotate(t: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``t * exp(-i phase)`` keeping ``t``'s dtype."""
    return t * torch.polar(torch.ones_like(phase), -phase).to(t.dtype)


def _mean_phase_steps(p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Amplitude-weighted mean phase step per axis, ``angle(sum p[i+1] conj(p[i]))``, (..., 3).

    A support split across the periodic edge (:func:`bcdi_stream.physics.periodic_rolls`) is
    rolled whole first, so that its neighbour pairs across the edge count too.
    """
    rolls = periodic_rolls(m)
    if any(rolls):
        p = torch.roll(p, rolls, dims=SPATIAL_DIMS)
        m = torch.roll(m, rolls, dims=SPATIAL_DIMS)
    steps = []
    for dim in SPATIAL_DIMS:
        n = p.shape[dim]
        if n < 2:
            steps.append(torch.zeros(p.shape[:-3], dtype=torch.float64, device=p.device))
            continue
        pair = m.narrow(dim, 1, n - 1) & m.narrow(dim, 0, n - 1)
        prod = p.narrow(dim, 1, n - 1) * p.narrow(dim, 0, n - 1).conj() * pair
        steps.append(torch.angle(prod.to(torch.complex128).sum(dim=SPATIAL_DIMS)))
    return torch.stack(steps, dim=-1)


def mirror(x: Any) -> torch.Tensor:
    """Point mirror ``x(-r)`` about the grid centre ``N // 2``, the index map of :func:`twin`.

    Index ``i`` goes to ``(2 * (N // 2) - i) mod N`` along each spatial axis, so that
    ``twin(rho) == conj(mirror(rho))`` exactly; use it to carry a support (or any real field)
    along with a twinned object.

    Parameters
    ----------
    x : array-like
        Array with the spatial axes last (any dtype).

    Returns
    -------
    torch.Tensor
    """
    t = as_tensor(x)
    if t.ndim < 3:
        raise ValueError(f"x must have at least 3 dimensions, got shape {tuple(t.shape)}")
    for dim in SPATIAL_DIMS:
        n = t.shape[dim]
        idx = (2 * (n // 2) - torch.arange(n, device=t.device)) % n
        t = t.index_select(dim, idx)
    return t


# --------------------------------------------------------------------------------------------
# support, centring, twin
# --------------------------------------------------------------------------------------------
def _largest_component(sup: torch.Tensor) -> torch.Tensor:
    from scipy import ndimage

    host = to_numpy(sup).astype(bool)
    flat = host.reshape((-1, *host.shape[-3:]))
    out = np.zeros_like(flat)
    for i, vol in enumerate(flat):
        labels, n = ndimage.label(vol)
        if n == 0:
            continue
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        out[i] = labels == int(np.argmax(counts))
    return torch.from_numpy(out.reshape(host.shape)).to(sup.device)


def support_from_amplitude(
    obj: Any, threshold: float = 0.2, *, largest_component: bool = False
) -> torch.Tensor:
    """Support from a threshold on the amplitude.

    Parameters
    ----------
    obj : array-like
        Complex object (or real amplitude), spatial axes last; a batch is thresholded per item.
    threshold : float
        Fraction of the maximum amplitude, in (0, 1).
    largest_component : bool
        Keep only the largest 6-connected component (``scipy.ndimage.label``, on the host).

    Returns
    -------
    torch.Tensor
        Bool tensor of the object's shape, on its device (all False for a zero object).
    """
    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    t = as_tensor(obj)
    if t.ndim < 3:
        raise ValueError(f"obj must have at least 3 dimensions, got shape {tuple(t.shape)}")
    amp = t.abs() if t.dtype != torch.bool else t.to(torch.float32)
    amax = amp.amax(dim=SPATIAL_DIMS, keepdim=True)
    sup = (amp >= float(threshold) * amax) & (amax > 0)
    if largest_component:
        sup = _largest_component(sup)
    return sup


def center_object(obj: Any, support: Any = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Roll the object so that its amplitude centroid lands on the grid centre ``N // 2``.

    An object split across the periodic grid's edge is centred whole
    (:func:`bcdi_stream.physics.periodic_centroid`; a support, or an amplitude with empty
    slices, tells where the object ends).

    Parameters
    ----------
    obj : array-like
        Complex 3D object ``(z, y, x)``.
    support : array-like, optional
        Only amplitude inside the support counts for the centroid.

    Returns
    -------
    centred : torch.Tensor
        ``torch.roll(obj, shift, dims=(-3, -2, -1))`` (complex).
    shift : tuple of 3 ints
        The integer roll applied; apply the same to the support:
        ``torch.roll(support, shift, dims=(-3, -2, -1))``.
    """
    t = _complex(obj)
    _require_3d(t, "obj")
    w = t.abs()
    if support is not None:
        w = w * _mask(support, t)
    if not float(w.sum()) > 0:
        raise ValueError("obj has no amplitude (inside the support): cannot centre it")
    c = periodic_centroid(w)
    shift = tuple(round(n // 2 - float(ci)) for n, ci in zip(t.shape, c, strict=True))
    return torch.roll(t, shift, dims=SPATIAL_DIMS), shift  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# offset, ramp, gradient
# --------------------------------------------------------------------------------------------
def remove_phase_offset(obj: Any, support: Any = None) -> torch.Tensor:
    """Remove the global phase offset: the amplitude-weighted circular mean phase becomes 0.

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last (batched items are treated separately).
    support : array-like, optional
        Voxels that count (default: all).

    Returns
    -------
    torch.Tensor
        ``obj * exp(-i angle(sum_support obj))``.
    """
    t = _complex(obj)
    m = _mask(support, t)
    off = torch.angle((t * m).to(torch.complex128).sum(dim=SPATIAL_DIMS))
    return _rotate(t, off.reshape((*off.shape, 1, 1, 1)))


def estimate_phase_ramp(obj: Any, support: Any = None) -> torch.Tensor:
    """Linear phase ramp of an object, in radians per voxel along ``(z, y, x)``, wrap-free.

    The ramp along each axis is the amplitude-weighted circular mean of the phase step between
    neighbours inside the support, ``angle(sum rho[i+1] conj(rho[i]))``: exact for a pure ramp,
    insensitive to 2π wraps.

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last.
    support : array-like, optional
        Voxels that count (default: all).

    Returns
    -------
    torch.Tensor
        Float64 tensor of shape ``(..., 3)``.
    """
    t = _complex(obj)
    return _mean_phase_steps(t, _mask(support, t))


def remove_phase_ramp(obj: Any, support: Any = None) -> torch.Tensor:
    """Remove the linear phase ramp (:func:`estimate_phase_ramp`) and then the phase offset.

    The ramp is removed about the grid centre ``N // 2``, and the offset so that the
    amplitude-weighted circular mean phase inside the support is 0. The strain is then
    relative to the mean lattice of the crystal. A support split across the periodic grid's
    edge is treated whole: the ramp is linear over the object, not over the grid indices.

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last.
    support : array-like, optional
        Voxels that count (default: all).

    Returns
    -------
    torch.Tensor
        The corrected complex object.
    """
    t = _complex(obj)
    m = _mask(support, t)
    g = _mean_phase_steps(t, m)
    t = _rotate(t, _linear_phase(t.shape[-3:], g, periodic_rolls(m)))
    return remove_phase_offset(t, m)


def _axis_gradient(t: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
    """Wrap-free phase derivative along one axis, rad/voxel, NaN where undefined.

    A voxel of exactly zero amplitude has no phase: it neither gets a derivative nor lends
    one to its neighbours (``angle(0) = 0`` would halve their central difference).
    """
    m = m.expand(t.shape) & (t != 0)
    nxt_ok = m & _neighbour(m, dim, 1, False)
    prv_ok = m & _neighbour(m, dim, -1, False)
    fwd = torch.angle(_neighbour(t, dim, 1, 0) * t.conj())
    bwd = torch.angle(t * _neighbour(t, dim, -1, 0).conj())
    nan = torch.full_like(fwd, _NAN)
    return torch.where(
        nxt_ok & prv_ok,
        0.5 * (fwd + bwd),
        torch.where(nxt_ok, fwd, torch.where(prv_ok, bwd, nan)),
    )


def phase_gradient(
    obj: Any, spacing: Sequence[float] = (1.0, 1.0, 1.0), support: Any = None
) -> torch.Tensor:
    """Wrap-free gradient of the phase, computed from the complex field.

    Central differences ``(angle(rho[i+1] conj(rho[i])) + angle(rho[i] conj(rho[i-1]))) / 2``,
    which equal ``angle(rho[i+1] conj(rho[i-1])) / 2`` but stay right up to a phase step of π
    per voxel; one-sided differences where a neighbour is outside the support (or the grid).
    No 2π wrap of the phase ever shows.

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last.
    spacing : sequence of 3 floats
        Voxel size along ``(z, y, x)`` (any unit; the gradient is in rad per that unit).
    support : array-like, optional
        Voxels where the gradient is wanted (default: all).

    Returns
    -------
    torch.Tensor
        Float32 tensor ``(..., 3, z, y, x)``: the three components. NaN outside the support,
        where a voxel has no neighbour inside the support along that axis, and where the
        amplitude is exactly 0 (no phase; such a voxel counts as outside for its neighbours).
    """
    sp = _vec3(spacing, "spacing", positive=True)
    t = _complex(obj)
    m = _mask(support, t)
    comps = [_axis_gradient(t, m, dim) / sp[ax] for ax, dim in enumerate(SPATIAL_DIMS)]
    return torch.stack(comps, dim=-4).to(torch.float32)


def strain(
    obj: Any,
    support: Any = None,
    g_hat: Sequence[float] = (0.0, 1.0, 0.0),
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    g_norm: float = 1.0,
) -> torch.Tensor:
    """Strain along the scattering vector, ``eps = d u_G / d x_Ĝ = (grad phi · Ĝ) / |G|``.

    A pure derivative of the phase: the linear ramp is *not* removed here (a ramp is a uniform
    strain; :func:`postprocess` removes it first, giving strain relative to the mean lattice).
    Sign: a phase increasing along ``Ĝ`` gives a positive strain; the twin gives the same strain
    at the mirrored position; the conjugate object gives the opposite sign (module docstring).

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last.
    support : array-like, optional
        Voxels where the strain is wanted (default: all).
    g_hat : sequence of 3 floats
        Direction of the scattering vector ``G`` in ``(z, y, x)`` grid axes (normalised here).
    voxel_size : sequence of 3 floats
        Voxel size along ``(z, y, x)``, in metres for a dimensionless strain.
    g_norm : float
        ``|G|`` in 1/m for a dimensionless strain; 1 gives the phase gradient itself.

    Returns
    -------
    torch.Tensor
        Float32, the object's shape; NaN outside the support (and where undefined: no
        neighbour in the support along a needed axis, or zero amplitude, as in
        :func:`phase_gradient`).
    """
    gh = _unit_vector(g_hat)
    sp = _vec3(voxel_size, "voxel_size", positive=True)
    gn = _positive(g_norm, "g_norm")
    t = _complex(obj)
    m = _mask(support, t)
    eps: torch.Tensor | None = None
    for ax, dim in enumerate(SPATIAL_DIMS):
        if gh[ax] == 0:
            continue
        term = _axis_gradient(t, m, dim) * (gh[ax] / sp[ax])
        eps = term if eps is None else eps + term
    assert eps is not None
    return (eps / gn).to(torch.float32)


def _unwrap3d(t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Flood-fill unwrapping inside ``m`` from the brightest voxel, float64, NaN outside."""
    phi = torch.angle(t).to(torch.float64)
    out = torch.full_like(phi, _NAN)
    if not bool(m.any()):
        return out
    # work in the bounding box of the support (+1 voxel) to keep big grids cheap
    nz = torch.nonzero(m)
    lo = (nz.min(dim=0).values - 1).clamp(min=0)
    hi = nz.max(dim=0).values + 2
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    tb, mb, pb = t[box].contiguous(), m[box].contiguous(), phi[box].contiguous()
    amp = tb.abs().to(torch.float64)
    steps = {}
    for dim in SPATIAL_DIMS:
        for k in (1, -1):
            nbr_ok = _neighbour(mb, dim, k, False)
            steps[(dim, k)] = (
                nbr_ok,
                torch.angle(tb * _neighbour(tb, dim, k, 0).conj()).to(torch.float64),
            )
    u = torch.zeros_like(pb)
    done = torch.zeros_like(mb)
    while True:
        remaining = mb & ~done
        if not bool(remaining.any()):
            break
        seed = int(torch.argmax(torch.where(remaining, amp, torch.full_like(amp, -1.0))))
        comp = torch.zeros_like(mb)
        comp.view(-1)[seed] = True
        u.view(-1)[seed] = pb.view(-1)[seed]
        done = done | comp
        grew = True
        while grew:
            grew = False
            for (dim, k), (nbr_ok, dphi) in steps.items():
                cand = mb & ~done & nbr_ok & _neighbour(done, dim, k, False)
                if bool(cand.any()):
                    u = torch.where(cand, _neighbour(u, dim, k, 0.0) + dphi, u)
                    done = done | cand
                    comp = comp | cand
                    grew = True
        # pick the 2π multiple of this component whose weighted mean is closest to 0
        w = amp * comp
        if float(w.sum()) > 0:
            mean = float((w * u).sum() / w.sum())
            u = torch.where(comp, u - _TWO_PI * round(mean / _TWO_PI), u)
    # snap exactly onto the wrapped phase + 2πk (no drift from the sums)
    u = pb + _TWO_PI * torch.round((u - pb) / _TWO_PI)
    out[box] = torch.where(mb, u, torch.full_like(u, _NAN))
    return out


def unwrap_phase(obj: Any, support: Any) -> torch.Tensor:
    """Unwrapped phase inside the support (flood fill from the brightest voxel).

    Each voxel gets its neighbour's unwrapped phase plus the wrap-free step
    ``angle(rho[i] conj(rho[nbr]))``, so the result equals the wrapped phase modulo 2π. Each
    connected component of the support is shifted by the multiple of 2π that brings its
    amplitude-weighted mean closest to 0. Around a phase vortex (dislocation) the result is
    path-dependent, as any unwrapping; the strain (:func:`strain`) does not use it.

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last (a batch is unwrapped item by item).
    support : array-like
        Voxels to unwrap.

    Returns
    -------
    torch.Tensor
        Float32, the object's shape, NaN outside the support.
    """
    t = _complex(obj)
    m = _mask(support, t).expand(t.shape)
    flat_t = t.reshape((-1, *t.shape[-3:]))
    flat_m = m.reshape((-1, *t.shape[-3:]))
    out = torch.stack([_unwrap3d(a, b) for a, b in zip(flat_t, flat_m, strict=True)])
    return out.reshape(t.shape).to(torch.float32)


def displacement(
    obj: Any, support: Any, g_norm: float | None = None, *, remove_ramp: bool = True
) -> torch.Tensor:
    """Displacement along ``G``, ``u_G = phi / |G|``, from the unwrapped phase.

    Parameters
    ----------
    obj : array-like
        Complex object, spatial axes last.
    support : array-like
        The crystal's support.
    g_norm : float, optional
        ``|G|`` in 1/m: the displacement is then in metres. ``None`` gives the unwrapped phase
        in radians (``|G| = 1``).
    remove_ramp : bool
        Remove the linear phase ramp and offset first (:func:`remove_phase_ramp`).

    Returns
    -------
    torch.Tensor
        Float32, the object's shape, NaN outside the support.
    """
    gn = 1.0 if g_norm is None else _positive(g_norm, "g_norm")
    t = _complex(obj)
    m = _mask(support, t)
    if remove_ramp:
        t = remove_phase_ramp(t, m)
    return (unwrap_phase(t, m).to(torch.float64) / gn).to(torch.float32)


# --------------------------------------------------------------------------------------------
# alignment to a reference (shared with the metrics)
# --------------------------------------------------------------------------------------------
def _integer_shift(ref: torch.Tensor, cand: torch.Tensor) -> tuple[int, int, int]:
    """Integer roll of ``cand`` maximising the cross-correlation of amplitudes with ``ref``."""
    a = torch.fft.fftn(ref.abs().to(torch.float32), dim=SPATIAL_DIMS)
    b = torch.fft.fftn(cand.abs().to(torch.float32), dim=SPATIAL_DIMS)
    cc = torch.fft.ifftn(a * b.conj(), dim=SPATIAL_DIMS).real
    flat = int(torch.argmax(cc))
    shape = cc.shape
    idx = []
    for n in reversed(shape):
        idx.append(flat % n)
        flat //= n
    idx = idx[::-1]
    return tuple(int(i if i <= n // 2 else i - n) for i, n in zip(idx, shape, strict=True))  # type: ignore[return-value]


def _fit_ramp_offset(
    cand: torch.Tensor, ref: torch.Tensor, m: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Remove the ramp and offset of ``cand`` relative to ``ref`` inside ``m``.

    Returns the corrected object, the ramp (rad/voxel, float64 (3,)), the offset (rad) and the
    normalised complex correlation with ``ref`` inside ``m``.
    """
    g = _mean_phase_steps(cand * ref.conj(), m)
    out = _rotate(cand, _linear_phase(cand.shape, g, periodic_rolls(m)))
    d = (out * ref.conj()).to(torch.complex128)
    w = ref.abs().to(torch.float64) * m
    unit = torch.where(d.abs() > 0, d / d.abs().clamp_min(1e-300), torch.zeros_like(d))
    offset = float(torch.angle((w * unit).sum()))
    out = _rotate(out, torch.tensor(offset, dtype=torch.float64, device=out.device))
    num = float((d * m).sum().abs())
    den = math.sqrt(
        float((cand.abs().to(torch.float64) ** 2 * m).sum())
        * float((ref.abs().to(torch.float64) ** 2 * m).sum())
    )
    return out, g, offset, (num / den if den > 0 else 0.0)


def _weighted_phase_rmse(a: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> float:
    w = t.abs().to(torch.float64) * m
    total = float(w.sum())
    if not total > 0:
        raise ValueError("truth has no amplitude inside truth_support")
    prod = (a * t.conj()).to(torch.complex128)
    d2 = torch.angle(prod) ** 2
    # a voxel without reconstructed amplitude has no phase: count the mean squared error of a
    # random phase, π²/3, rather than 0 (a zero object must not score a perfect phase)
    d2 = torch.where(a.abs() > 0, d2, torch.full_like(d2, math.pi**2 / 3))
    return math.sqrt(float((w * d2).sum()) / total)


def _align(
    recon: torch.Tensor,
    ref: torch.Tensor,
    m: torch.Tensor,
    *,
    allow_twin: bool = True,
    subpixel: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Align ``recon`` to ``ref``: twin, integer (+ sub-voxel) shift, ramp and offset."""
    cands = [(False, recon)]
    if allow_twin:
        cands.append((True, twin(recon).to(recon.dtype)))
    best: tuple[Any, ...] | None = None
    for is_twin, c in cands:
        shift = _integer_shift(ref, c)
        rolled = torch.roll(c, shift, dims=SPATIAL_DIMS)
        out, g, off, coh = _fit_ramp_offset(rolled, ref, m)
        err = _weighted_phase_rmse(out, ref, m)
        if best is None or err < best[0] - 1e-9:
            best = (err, is_twin, shift, rolled, out, g, off, coh)
    assert best is not None
    err, is_twin, shift, rolled, out, g, off, coh = best
    frac = (0.0, 0.0, 0.0)
    if subpixel:
        frac, refined = _subpixel(rolled, ref, m)
        if refined is not None:
            out2, g2, off2, coh2 = refined
            err2 = _weighted_phase_rmse(out2, ref, m)
            if err2 < err:
                err, out, g, off, coh = err2, out2, g2, off2, coh2
            else:
                frac = (0.0, 0.0, 0.0)
    info = {
        "twin": bool(is_twin),
        "shift": tuple(float(s + f) for s, f in zip(shift, frac, strict=True)),
        "ramp": tuple(float(x) for x in g.tolist()),
        "offset": float(off),
        "coherence": float(coh),
        "phase_rmse": float(err),
    }
    return out, info


def _subpixel(
    rolled: torch.Tensor, ref: torch.Tensor, m: torch.Tensor
) -> tuple[tuple[float, float, float], Any]:
    """Sub-voxel shift (|s| < 1) maximising the ramp-corrected complex correlation."""
    from scipy.optimize import minimize

    # the fit only needs the support's bounding box (+2 voxels): much cheaper on big grids
    nz = torch.nonzero(m)
    lo = (nz.min(dim=0).values - 2).clamp(min=0)
    hi = nz.max(dim=0).values + 3
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    ref_b, m_b = ref[box], m[box]

    def cost(s: np.ndarray) -> float:
        s = np.clip(s, -1.0, 1.0)
        shifted = fourier_shift(rolled, [float(x) for x in s]).to(rolled.dtype)
        return -_fit_ramp_offset(shifted[box], ref_b, m_b)[3]

    x0 = np.zeros(3)
    simplex = np.vstack([x0, np.eye(3) * 0.3])
    res = minimize(
        cost,
        x0,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "xatol": 5e-3, "fatol": 1e-7, "maxfev": 150},
    )
    s = np.clip(res.x, -1.0, 1.0)
    if not res.fun < cost(x0):
        return (0.0, 0.0, 0.0), None
    shifted = fourier_shift(rolled, [float(x) for x in s]).to(rolled.dtype)
    return (float(s[0]), float(s[1]), float(s[2])), _fit_ramp_offset(shifted, ref, m)


def choose_twin(obj: Any, reference: Any = None) -> tuple[torch.Tensor, bool]:
    """Resolve the twin ambiguity against a reference.

    Parameters
    ----------
    obj : array-like
        Complex 3D object.
    reference : array-like, optional
        A complex 3D object on the same grid (a previous scan, a simulation...). Both ``obj``
        and :func:`bcdi_stream.physics.twin` of it are aligned to it (integer shift by amplitude
        cross-correlation, phase ramp and offset), and the one whose phase agrees best inside
        the reference's support (20 % of its maximum amplitude) is returned. Without a
        reference the object is returned as is: the twin cannot be told from intensity alone.

    Returns
    -------
    obj : torch.Tensor
        ``obj`` or its twin (not shifted).
    is_twin : bool
        True when the twin was chosen.
    """
    t = _complex(obj)
    _require_3d(t, "obj")
    if reference is None:
        return t, False
    ref = _complex(reference, "reference").to(t.device)
    if ref.shape != t.shape:
        raise ValueError(
            f"reference must have the object's shape {tuple(t.shape)}, got {tuple(ref.shape)}"
        )
    m = support_from_amplitude(ref, 0.2)
    _, info = _align(t, ref, m, subpixel=False)
    return (twin(t).to(t.dtype), True) if info["twin"] else (t, False)


# --------------------------------------------------------------------------------------------
# the whole chain
# --------------------------------------------------------------------------------------------
@dataclass
class PostProcessed:
    """Result of :func:`postprocess` (torch tensors on the object's device).

    Attributes
    ----------
    obj : torch.Tensor
        The centred, (de)twinned, ramp- and offset-corrected complex object.
    amplitude : torch.Tensor
        float32, normalised to a maximum of 1.
    phase : torch.Tensor
        float32 wrapped phase in ``(-pi, pi]`` after ramp/offset removal, NaN outside the support.
    support : torch.Tensor
        bool.
    displacement : torch.Tensor
        float32, from the unwrapped phase: metres when ``g_norm`` was given, else radians
        (``|G| = 1``); NaN outside the support. See ``meta["units"]``.
    strain : torch.Tensor
        float32, dimensionless when both ``g_norm`` and ``voxel_size`` were given (else see
        ``meta["units"]``); NaN outside the support.
    voxel_size : tuple of 3 floats or None
        Metres, ``(z, y, x)``.
    meta : dict
        JSON-able: ``strain_rms``, ``strain_mean``, ``strain_min``, ``strain_max`` (over the
        support eroded by one voxel -- surface voxels have one-sided, noisy gradients -- or the
        whole support when that is empty), ``support_voxels``, ``shift`` (integer roll
        applied), ``twin``, ``ramp`` (rad/voxel, removed), ``units``, ``g_hat``, ``g_norm``,
        ``threshold``, ``outside_support`` (``"nan"``).
    """

    obj: torch.Tensor
    amplitude: torch.Tensor
    phase: torch.Tensor
    support: torch.Tensor
    displacement: torch.Tensor
    strain: torch.Tensor
    voxel_size: tuple[float, float, float] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Host arrays for writers: ``amplitude``, ``phase``, ``displacement``, ``strain``
        (float32) and ``support`` (uint8)."""
        return {
            "amplitude": to_numpy(self.amplitude).astype(np.float32, copy=False),
            "phase": to_numpy(self.phase).astype(np.float32, copy=False),
            "support": to_numpy(self.support).astype(np.uint8),
            "displacement": to_numpy(self.displacement).astype(np.float32, copy=False),
            "strain": to_numpy(self.strain).astype(np.float32, copy=False),
        }

    def strain_stats(self) -> dict[str, float]:
        """The strain's ``strain_min``, ``strain_max``, ``strain_rms`` and ``strain_mean`` over
        the support less its surface layer (NaN when nothing is left), from ``meta``."""
        return {k: self.meta.get(k, _NAN) for k in STRAIN_STATS}


def postprocess(
    obj: Any,
    support: Any = None,
    *,
    g_hat: Sequence[float] = (0.0, 1.0, 0.0),
    g_norm: float | None = None,
    voxel_size: Sequence[float] | None = None,
    threshold: float = 0.2,
    reference: Any = None,
    largest_component: bool = True,
    center: bool = True,
) -> PostProcessed:
    """Turn a reconstructed object into amplitude, phase, displacement and strain.

    Steps: support (threshold on the amplitude, largest component) when none is given; twin
    choice against ``reference`` when given; integer centring of the amplitude centroid on
    ``N // 2``; removal of the linear phase ramp and of the offset inside the support; then
    displacement from the unwrapped phase and strain from the wrap-free gradient.

    Parameters
    ----------
    obj : array-like
        Complex 3D object ``(z, y, x)``, fitting ``|fft_centered(obj)|**2 ≈ I``.
    support : array-like, optional
        The support; default :func:`support_from_amplitude` at ``threshold``.
    g_hat : sequence of 3 floats
        Direction of ``G`` in ``(z, y, x)`` grid axes.
    g_norm : float, optional
        ``|G|`` in 1/m (:func:`bcdi_stream.physics.scattering_vector_norm`).
    voxel_size : sequence of 3 floats, optional
        Voxel size ``(z, y, x)`` in metres (:func:`bcdi_stream.physics.voxel_size`).
    threshold : float
        Support threshold, fraction of the maximum amplitude.
    reference : array-like, optional
        Resolve the twin against this object (:func:`choose_twin`).
    largest_component : bool
        Keep only the largest connected component of a computed support.
    center : bool
        Centre the object (:func:`center_object`).

    Returns
    -------
    PostProcessed
        Units: displacement in metres if ``g_norm`` is given, else radians; strain
        dimensionless if both ``g_norm`` and ``voxel_size`` are given, else the phase gradient
        along ``Ĝ`` divided by ``g_norm`` (if any) in per-voxel or per-metre units -- recorded
        in ``meta["units"]``.
    """
    t = _complex(obj)
    _require_3d(t, "obj")
    gh = _unit_vector(g_hat)
    gn = None if g_norm is None else _positive(g_norm, "g_norm")
    vs = None if voxel_size is None else _vec3(voxel_size, "voxel_size", positive=True)
    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")

    is_twin = False
    if reference is not None:
        t, is_twin = choose_twin(t, reference)
    if support is None:
        m = support_from_amplitude(t, threshold, largest_component=largest_component)
    else:
        m = _mask(support, t)
        if is_twin:
            m = mirror(m)
    if not bool(m.any()):
        raise ValueError("the support is empty: nothing to post-process")
    shift = (0, 0, 0)
    if center:
        t, shift = center_object(t, m)
        m = torch.roll(m, shift, dims=SPATIAL_DIMS)

    ramp = _mean_phase_steps(t, m)
    t = remove_phase_ramp(t, m)

    amp = t.abs().to(torch.float32)
    amax = float(amp.max())
    amplitude = amp / amax if amax > 0 else amp
    nan32 = torch.tensor(_NAN, dtype=torch.float32, device=t.device)
    phase = torch.where(m, torch.angle(t).to(torch.float32), nan32)
    disp = displacement(t, m, gn, remove_ramp=False)
    eps = strain(t, m, gh, vs or (1.0, 1.0, 1.0), gn or 1.0)

    inner = _erode(m, 1)
    if not bool(inner.any()):
        inner = m
    inside = eps[inner & torch.isfinite(eps)].to(torch.float64)
    if inside.numel():
        stats = {
            "strain_rms": float(torch.sqrt((inside**2).mean())),
            "strain_mean": float(inside.mean()),
            "strain_min": float(inside.min()),
            "strain_max": float(inside.max()),
        }
    else:
        stats = dict.fromkeys(STRAIN_STATS, _NAN)
    if gn is not None and vs is not None:
        strain_units = "1"
    elif gn is not None:
        strain_units = "m/voxel"
    elif vs is not None:
        strain_units = "rad/m"
    else:
        strain_units = "rad/voxel"
    meta: dict[str, Any] = {
        **stats,
        "support_voxels": int(m.sum()),
        "shift": list(shift),
        "twin": bool(is_twin),
        "ramp": [float(x) for x in ramp.tolist()],
        "g_hat": list(gh),
        "g_norm": gn,
        "threshold": float(threshold),
        "units": {
            "phase": "rad",
            "displacement": "m" if gn is not None else "rad",
            "strain": strain_units,
            "voxel_size": "m",
            "ramp": "rad/voxel",
        },
        "outside_support": "nan",
    }
    return PostProcessed(
        obj=t,
        amplitude=amplitude,
        phase=phase,
        support=m,
        displacement=disp,
        strain=eps,
        voxel_size=vs,
        meta=meta,
    )
