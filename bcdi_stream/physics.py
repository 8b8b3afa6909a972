"""Physics conventions of bcdi-stream, written down once and used everywhere.

Grids and axes
--------------
Every 3D array is indexed ``(z, y, x)``: axis 0 is the rocking direction, axes 1 and 2 are the
detector's vertical and horizontal pixels. A grid of ``N`` points along an axis has its *centre*
at index ``N // 2`` (numpy/torch ``fftshift`` convention).

Centring
--------
Both spaces are stored *centred*: the real-space object has its amplitude-weighted centroid at
the grid centre, and the diffraction pattern has the Bragg peak (q = 0 of the local reciprocal
grid) at the grid centre.

Fourier transform
-----------------
The forward transform is the plain discrete Fourier transform with kernel ``exp(-i q·r)``
(``torch.fft.fftn``), applied to centred arrays through ``ifftshift``/``fftshift``::

    psi(q) = fftshift(fftn(ifftshift(rho(r))))        # fft_centered
    rho(r) = fftshift(ifftn(ifftshift(psi(q))))       # ifft_centered

so a reconstruction satisfies ``|fft_centered(rho)|**2 ≈ I``. The conjugate object fits the data
equally well under the opposite kernel (cohere, some PyNX paths) and flips the sign of every
strain; this convention is tested with an asymmetric crystal.

Because a real-space shift only multiplies the transform by a phase ramp,
``|fftn(rho_centred)| == |fft_centered(rho_centred)|``; iterative phasing therefore runs with the
object centred and the measured modulus in ``ifftshift`` layout, and no shift per iteration.

Phase, displacement, strain
---------------------------
The object is ``rho(r) = |rho(r)| exp(i phi(r))`` with ``phi = G·u(r)``: the displacement
projected on the scattering vector is ``u_G = phi / |G|``, and the strain along ``Ĝ`` is
``eps = d u_G / d x_Ĝ``. Gradients of the phase are computed wrap-free from the complex field,
``grad phi = Im(conj(rho) grad rho) / |rho|**2`` (see :mod:`bcdi_stream.analysis`).

What the sign means physically: with the forward kernel ``exp(-i q·r)`` and ``phi = G·u``, a
phase rising along ``Ĝ`` (``eps > 0``) puts the diffracted intensity at ``+q`` along ``Ĝ``
in the array. A lattice really stretched by ``eps`` diffracts at ``|G| / (1 + eps)``, i.e.
towards *smaller* ``|Q|``, whichever kernel the transform uses. So ``eps > 0`` means tensile
when the array's ``Ĝ`` (``Geometry.g_hat``) points towards decreasing ``|Q|``. If it points
towards increasing ``|Q|``, the usual reading of a detector frame, every strain and
displacement comes out with the opposite sign. Pass ``-Ĝ`` in that case (as ``bcdi``'s
``invert_phase`` does for measured data).

Ambiguities of phase retrieval
------------------------------
A solution is defined up to a global phase offset, an integer translation, a linear phase ramp
and the twin ``conj(rho(-r))``, whose reciprocal-space phase is ``-phi(q)``. The twin is built in
Fourier space (:func:`twin`), because a plain array flip is off by one voxel on even grids.

Units
-----
Lengths in metres unless a name says otherwise (``_nm``, ``_um``, ``_mm``), energies in keV,
angles in degrees in metadata and radians in computations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .diffraction import (  # torch-free: geometry and the beamline import them alone
    HC_KEV_M,
    bragg_angle,
    scattering_vector_norm,
    voxel_size,
    wavelength,
)

__all__ = [
    "HC_KEV_M",
    "SPATIAL_DIMS",
    "bragg_angle",
    "centroid",
    "fft_centered",
    "fourier_shift",
    "gaussian_axes_to_yx",
    "gaussian_kernel_yx",
    "ifft_centered",
    "periodic_centroid",
    "periodic_rolls",
    "reciprocal_phase",
    "reflect",
    "reflection_axes",
    "scattering_vector_norm",
    "shift_ramp",
    "twin",
    "voxel_size",
    "wavelength",
]

#: The three spatial axes of a (..., z, y, x) array.
SPATIAL_DIMS: tuple[int, int, int] = (-3, -2, -1)



def fft_centered(x: torch.Tensor, dims: Sequence[int] = SPATIAL_DIMS) -> torch.Tensor:
    """Forward centred FFT, kernel ``exp(-i q·r)``.

    Parameters
    ----------
    x : torch.Tensor
        Complex (or real) array, centred real-space object, spatial axes last.
    dims : sequence of int
        The axes to transform.

    Returns
    -------
    torch.Tensor
        The centred reciprocal-space field ``fftshift(fftn(ifftshift(x)))``.
    """
    dims = tuple(dims)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifft_centered(x: torch.Tensor, dims: Sequence[int] = SPATIAL_DIMS) -> torch.Tensor:
    """Inverse of :func:`fft_centered`.

    Parameters
    ----------
    x : torch.Tensor
        Centred reciprocal-space field, spatial axes last.
    dims : sequence of int
        The axes to transform.

    Returns
    -------
    torch.Tensor
        The centred real-space object ``fftshift(ifftn(ifftshift(x)))``.
    """
    dims = tuple(dims)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def reciprocal_phase(obj: torch.Tensor) -> torch.Tensor:
    """Reciprocal-space phase ``angle(fft_centered(obj))`` of a centred object (the model's target).

    Parameters
    ----------
    obj : torch.Tensor
        Complex centred real-space object, spatial axes last.

    Returns
    -------
    torch.Tensor
        Real tensor in ``(-pi, pi]`` on the same grid.
    """
    return torch.angle(fft_centered(obj))


def twin(obj: torch.Tensor) -> torch.Tensor:
    """The twin image ``conj(rho(-r))`` about the grid centre, built in Fourier space.

    Its diffraction pattern is identical and its reciprocal-space phase is ``-phi(q)``.

    Parameters
    ----------
    obj : torch.Tensor
        Complex centred real-space object, spatial axes last.

    Returns
    -------
    torch.Tensor
        The twin, on the same grid.
    """
    if not torch.is_complex(obj):
        obj = obj.to(torch.complex64)
    return ifft_centered(torch.conj(fft_centered(obj)))


def reflection_axes(code: int) -> tuple[int, ...]:
    """The spatial axes (0, 1, 2 = z, y, x) a 3-bit code names: axis ``a`` when bit ``a`` is set.

    Parameters
    ----------
    code : int
        ``0 … 7`` (0: none; 7: all three), for :func:`reflect`.
    """
    if not 0 <= int(code) < 8:
        raise ValueError(f"code must be in 0..7, got {code}")
    return tuple(a for a in range(3) if (int(code) >> a) & 1)


def reflect(x: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """Reflect a centred array about the grid centre ``N // 2`` along some spatial axes.

    Index ``i`` goes to ``(2·(N // 2) − i) mod N``: on even grids a plain flip is off by one
    voxel. Reflecting a diffraction pattern along an axis reflects its object along the same
    axis (``FFT(ρ(−z, y, x)) = F(−q_z, q_y, q_x)``), and the reciprocal-space phase with it.

    Parameters
    ----------
    x : torch.Tensor
        Centred array, spatial axes last.
    axes : sequence of int
        Spatial axes to reflect, each in ``0, 1, 2`` (z, y, x); empty: ``x`` itself.

    Returns
    -------
    torch.Tensor
        The reflected array (a new tensor unless ``axes`` is empty).
    """
    axes = [int(a) for a in axes]
    if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct spatial axes in (0, 1, 2), got {axes}")
    if x.ndim < 3:
        raise ValueError(f"x must have 3 spatial axes, got shape {tuple(x.shape)}")
    if not axes:
        return x
    dims = [a - 3 for a in axes]
    shifts = [2 * (x.shape[d] // 2) - x.shape[d] + 1 for d in dims]
    return torch.roll(torch.flip(x, dims), shifts, dims)


def fourier_shift(x: torch.Tensor, shift: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Translate an array by a (sub-voxel) shift with a Fourier-space phase ramp.

    Parameters
    ----------
    x : torch.Tensor
        Centred real-space array (complex or real), spatial axes last.
    shift : sequence of 3 floats or tensor of shape (3,) or (..., 3)
        Shift in voxels along ``(z, y, x)``; positive moves content to higher indices. A
        leading batch shape must match ``x``'s.

    Returns
    -------
    torch.Tensor
        Complex array of the same shape.
    """
    n = x.shape[-3:]
    shift_t = torch.as_tensor(shift, dtype=torch.float64, device=x.device)
    if shift_t.shape[-1] != 3:
        raise ValueError(
            f"shift must have 3 components (z, y, x), got shape {tuple(shift_t.shape)}"
        )
    xc = x if torch.is_complex(x) else x.to(torch.complex64)
    psi = torch.fft.fftn(xc, dim=SPATIAL_DIMS)
    # Separable ramp: one 1D phase factor per axis, broadcast (no full-grid exponential).
    batch = shift_t.shape[:-1]
    for ax in range(3):
        f = torch.fft.fftfreq(n[ax], device=x.device, dtype=torch.float64)
        s = shift_t[..., ax].reshape((*batch, 1))
        factor = torch.exp(-2j * math.pi * s * f).to(psi.dtype)
        view = [*list(batch), 1, 1, 1]
        view[len(batch) + ax] = n[ax]
        psi = psi * factor.reshape(view)
    return torch.fft.ifftn(psi, dim=SPATIAL_DIMS)


def shift_ramp(shape: Sequence[int], shift: torch.Tensor, device: torch.device | None = None
               ) -> torch.Tensor:
    """Real-space phase ramp that translates a centred diffraction pattern by ``shift`` pixels.

    ``fft_centered(obj * shift_ramp(obj.shape, s))`` is ``fft_centered(obj)`` moved by ``s``
    pixels along ``(z, y, x)`` (positive: to higher indices; sub-pixel shifts interpolate). The
    ramp is ``exp(2πi s·r/N)`` with ``r`` measured from the grid centre ``N // 2``, so it is 1
    there; the autocorrelation ``ifft_centered(I)`` of the moved pattern is multiplied by it too.

    Parameters
    ----------
    shape : sequence of int
        ``(..., z, y, x)``; only the last three sizes are used.
    shift : torch.Tensor
        ``(3,)`` shift in pixels.
    device : torch.device, optional
        Where to build the ramp (default: ``shift``'s device).

    Returns
    -------
    torch.Tensor
        complex64 ``(z, y, x)``.
    """
    s = torch.as_tensor(shift, dtype=torch.float64, device=device)
    if s.shape != (3,):
        raise ValueError(f"shift must have shape (3,), got {tuple(s.shape)}")
    n = tuple(int(v) for v in shape[-3:])
    out = torch.zeros(n, dtype=torch.float64, device=s.device)
    for ax in range(3):
        r = torch.arange(n[ax], dtype=torch.float64, device=s.device) - n[ax] // 2
        view = [1, 1, 1]
        view[ax] = n[ax]
        out = out + (2 * math.pi * s[ax] / n[ax] * r).reshape(view)
    return torch.polar(torch.ones_like(out), out).to(torch.complex64)


def gaussian_axes_to_yx(su: float, sv: float, theta: float) -> tuple[float, float, float]:
    """``(sigma_y, sigma_x, r)`` of the ``y, x`` Gaussian with width ``su`` along the direction
    at ``theta`` radians from ``y`` towards ``x`` and ``sv`` across it (the parameters of
    :func:`gaussian_kernel_yx`; ``r = 0`` where a width is 0)."""
    c, s = math.cos(theta), math.sin(theta)
    cyy = su * su * c * c + sv * sv * s * s
    cxx = su * su * s * s + sv * sv * c * c
    sy, sx = math.sqrt(cyy), math.sqrt(cxx)
    if sy == 0.0 or sx == 0.0:
        return sy, sx, 0.0
    return sy, sx, (su * su - sv * sv) * c * s / (sy * sx)


def gaussian_kernel_yx(sigma_y: float, sigma_x: float, r: float, n_y: int, n_x: int
                       ) -> torch.Tensor:
    """A unit-sum Gaussian over ``(y, x)`` with widths ``sigma_y, sigma_x`` (pixels) and
    correlation ``r``, sampled on the periodic ``(n_y, n_x)`` grid in FFT layout (the centre at
    ``[0, 0]``), float64.

    A partial-coherence or detector kernel whose principal directions need not be the detector's
    axes (covariance ``[[sy**2, r sy sx], [r sy sx, sx**2]]``); sampled in real space, it is
    positive, as a PSF must be. Used by the simulator and the phasing engine alike.
    """
    if not (sigma_y > 0 and sigma_x > 0 and abs(r) < 1):
        raise ValueError(f"sigma_y, sigma_x must be > 0 and |r| < 1, got {sigma_y}, {sigma_x}, {r}")
    dy = torch.fft.fftfreq(n_y, 1.0 / n_y, dtype=torch.float64).view(n_y, 1)
    dx = torch.fft.fftfreq(n_x, 1.0 / n_x, dtype=torch.float64).view(1, n_x)
    det = (sigma_y * sigma_x) ** 2 * (1.0 - r * r)
    # d^T C^-1 d
    m = (sigma_x**2 * dy * dy - 2.0 * r * sigma_y * sigma_x * dy * dx + sigma_y**2 * dx * dx) / det
    k = torch.exp(-0.5 * m)
    return k / k.sum()


def centroid(weights: torch.Tensor) -> torch.Tensor:
    """Weighted centroid of a 3D (or batched) non-negative array, in voxels.

    Parameters
    ----------
    weights : torch.Tensor
        Real non-negative weights, spatial axes last.

    Returns
    -------
    torch.Tensor
        Float64 tensor of shape ``(..., 3)`` with the ``(z, y, x)`` centroid.
    """
    w = weights.to(torch.float64)
    total = w.sum(dim=SPATIAL_DIMS)
    if torch.any(total <= 0):
        raise ValueError("weights must have a positive sum to define a centroid")
    out = []
    for ax in range(3):
        n = w.shape[-3 + ax]
        idx = torch.arange(n, dtype=torch.float64, device=w.device)
        other = tuple(d for d in SPATIAL_DIMS if d != -3 + ax)
        marginal = w.sum(dim=other)
        out.append((marginal * idx).sum(-1) / total)
    return torch.stack(out, dim=-1)


def periodic_centroid(weights: torch.Tensor) -> torch.Tensor:
    """Centroid of a 3D array on a periodic grid: an object split across an edge counts whole.

    FFT-based phasing leaves an object anywhere on the periodic grid, possibly split across
    an edge, where the plain :func:`centroid` lands between the two halves. Along an axis where
    the weight touches both ends but leaves some slices empty, the array is first rolled so
    that the longest run of empty slices (counted circularly) straddles the edge; the
    centroid is then measured and moved back by that roll, so it may lie outside
    ``[0, N)``. Rolling by ``round(N // 2 - c)`` (``torch.roll`` wraps) then centres the
    object. Where no axis needs it, the result is :func:`centroid`'s, bit for bit.

    Parameters
    ----------
    weights : torch.Tensor
        Real non-negative weights ``(z, y, x)``.

    Returns
    -------
    torch.Tensor
        Float64 tensor of shape ``(3,)``, the ``(z, y, x)`` centroid in voxels.
    """
    if weights.dim() != 3:
        raise ValueError(f"weights must be a 3D array (z, y, x), got shape {tuple(weights.shape)}")
    rolls = periodic_rolls(weights > 0)
    if not any(rolls):
        return centroid(weights)
    c = centroid(torch.roll(weights, rolls, dims=SPATIAL_DIMS))
    return c - torch.tensor(rolls, dtype=c.dtype, device=c.device)


def periodic_rolls(occupied: torch.Tensor) -> tuple[int, int, int]:
    """Roll per spatial axis that makes an object split across the periodic grid's edge whole.

    Along an axis where ``occupied`` touches both ends of the grid but leaves some slices
    empty, the roll brings the longest run of empty slices (counted circularly) to the edge;
    0 along every other axis, so an object inside the grid gives ``(0, 0, 0)``
    (:func:`periodic_centroid` and the post-processing's ramp and metrics use it).

    Parameters
    ----------
    occupied : torch.Tensor
        Bool ``(..., z, y, x)``: where the object is (leading dimensions merged).

    Returns
    -------
    tuple of 3 ints
        The rolls for ``torch.roll(x, rolls, dims=SPATIAL_DIMS)``.
    """
    occ = occupied.reshape((-1, *occupied.shape[-3:])).any(dim=0)
    rolls = []
    for ax in range(3):
        other = tuple(d for d in range(3) if d != ax)
        rolls.append(_gap_roll(occ.any(dim=other).tolist()))
    return rolls[0], rolls[1], rolls[2]


def _gap_roll(occupied: list[bool]) -> int:
    """Roll that puts the longest circular run of empty slices at the edge (0: none needed)."""
    n = len(occupied)
    if not (occupied[0] and occupied[-1]) or all(occupied):
        return 0
    best_len, best_end, run = 0, 0, 0
    for i in range(2 * n):  # twice round, so a run through the edge is counted whole
        if occupied[i % n]:
            run = 0
            continue
        run += 1
        if run > best_len:
            best_len, best_end = run, i % n
    # the slice after the run moves to index 0
    return -((best_end + 1) % n)
