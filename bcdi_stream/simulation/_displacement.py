"""Amplitude and phase fields, evaluated in torch on a batch of boxes around the crystals.

Every function takes batched coordinates ``Z, Y, X`` of shapes ``(B, M, 1, 1)``,
``(B, 1, M, 1)`` and ``(B, 1, 1, M)`` (voxels, relative to each crystal's origin) and per-sample
parameters of leading size ``B``; they return ``(B, M, M, M)`` float32 tensors.

Phase conventions (see :mod:`bcdi_stream.physics`): the phase is ``φ = |G| u·ĝ`` in radians.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "core_shell_phase",
    "dislocation_phase",
    "gaussian_random_field",
    "interface_phase",
    "loop_phase",
    "masked_ptp",
    "mean_phase_gradient",
    "polytope_amplitude",
    "remove_ramp",
    "wrap",
]

TWO_PI = 2.0 * math.pi


def _b(t: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(B,)`` tensor to broadcast against ``(B, M, M, M)``."""
    return t.reshape(-1, 1, 1, 1)


def _dot(v: torch.Tensor, zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``v·r`` for per-sample vectors ``v`` of shape ``(B, 3)``."""
    z, y, x = zyx
    return _b(v[:, 0]) * z + _b(v[:, 1]) * y + _b(v[:, 2]) * x


def polytope_amplitude(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    normals: torch.Tensor,
    offsets: torch.Tensor,
    radius: torch.Tensor,
    edge_width: torch.Tensor,
) -> torch.Tensor:
    """Soft-edged indicator of an intersection of half-spaces (and optionally a ball).

    The signed distance is approximated by ``max_p(n_p·r - d_p)`` (and ``|r| - R``); the
    amplitude is a smoothstep of it over ``edge_width`` voxels, exactly 0.5 on the surface.

    Parameters
    ----------
    zyx : tuple of tensors
        Batched coordinates relative to the crystal origin.
    normals : torch.Tensor
        ``(B, P, 3)`` unit normals (padding rows: zero normal with a huge offset).
    offsets : torch.Tensor
        ``(B, P)`` plane distances.
    radius : torch.Tensor
        ``(B,)`` sphere radius, ``inf`` for none.
    edge_width : torch.Tensor
        ``(B,)`` edge width in voxels.

    Returns
    -------
    torch.Tensor
        ``(B, M, M, M)`` amplitude in ``[0, 1]``.
    """
    z, y, x = zyx
    shape = (z.shape[0], z.shape[1], y.shape[2], x.shape[3])
    sd = torch.full(shape, -1e30, dtype=z.dtype, device=z.device)
    for p in range(normals.shape[1]):
        s = _dot(normals[:, p], zyx) - _b(offsets[:, p])
        torch.maximum(sd, s, out=sd)
    if torch.isfinite(radius).any():
        r = torch.sqrt(z * z + y * y + x * x) - _b(torch.nan_to_num(radius, posinf=1e30))
        torch.maximum(sd, r, out=sd)
    t = (0.5 - sd / _b(edge_width)).clamp_(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gaussian_random_field(noise: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """Low-pass Gaussian random field with a Gaussian covariance ``exp(-r²/(2ℓ²))``.

    Parameters
    ----------
    noise : torch.Tensor
        ``(B, n, n, n // 2 + 1)`` complex white noise (rfft layout).
    lengths : torch.Tensor
        ``(B,)`` correlation lengths ℓ in voxels.
    n : int
        Grid side.

    Returns
    -------
    torch.Tensor
        ``(B, n, n, n)`` real field (arbitrary scale).
    """
    dev = noise.device
    k = TWO_PI * torch.fft.fftfreq(n, device=dev)
    kr = TWO_PI * torch.fft.rfftfreq(n, device=dev)
    k2 = k.reshape(-1, 1, 1) ** 2 + k.reshape(1, -1, 1) ** 2 + kr.reshape(1, 1, -1) ** 2
    filt = torch.exp(-k2.unsqueeze(0) * _b(lengths.to(k2.dtype)) ** 2 / 4.0)
    return torch.fft.irfftn(noise * filt, s=(n, n, n), dim=(-3, -2, -1))


def interface_phase(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    normal: torch.Tensor,
    offset: torch.Tensor,
    centre: torch.Tensor,
    decay: torch.Tensor,
    lateral: torch.Tensor,
    half_size: torch.Tensor,
) -> torch.Tensor:
    """Strain decaying away from a substrate plane.

    ``f = exp(-d / decay) * (1 + lateral * ρ² / half_size²)`` with ``d = offset - n·r`` the
    depth from the interface and ``ρ`` the distance from the crystal's axis through ``centre``
    along ``n``.
    """
    depth = (_b(offset) - _dot(normal, zyx)).clamp_min(0.0)
    z, y, x = zyx
    cz, cy, cx = (_b(centre[:, i]) for i in range(3))
    dz, dy, dx = z - cz, y - cy, x - cx
    along = _b(normal[:, 0]) * dz + _b(normal[:, 1]) * dy + _b(normal[:, 2]) * dx
    rho2 = (dz * dz + dy * dy + dx * dx - along * along).clamp_min(0.0)
    return torch.exp(-depth / _b(decay)) * (1.0 + _b(lateral) * rho2 / _b(half_size) ** 2)


def core_shell_phase(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    centre: torch.Tensor,
    radius: torch.Tensor,
    g_hat: torch.Tensor,
) -> torch.Tensor:
    """Projection on ĝ of the displacement of a misfitting spherical inclusion (Eshelby).

    ``u = A r`` inside the core (``|r| < a``) and ``A a³ r / |r|³`` outside; returns ``ĝ·u / A``.
    """
    z, y, x = zyx
    dz, dy, dx = z - _b(centre[:, 0]), y - _b(centre[:, 1]), x - _b(centre[:, 2])
    r2 = dz * dz + dy * dy + dx * dx
    a = _b(radius)
    decay = torch.where(r2 > a * a, (a * a / r2.clamp_min(1e-12)) ** 1.5, torch.ones_like(r2))
    proj = _b(g_hat[:, 0]) * dz + _b(g_hat[:, 1]) * dy + _b(g_hat[:, 2]) * dx
    return proj * decay


def polynomial_phase(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    centre: torch.Tensor,
    half_size: torch.Tensor,
    coefficients: torch.Tensor,
    terms: tuple[tuple[int, ...], ...],
) -> torch.Tensor:
    """A polynomial of the position: ``Σ_k c_k Π_{i ∈ terms[k]} s_i`` with ``s = (r − centre) /
    half_size`` (per sample), ``coefficients`` ``(B, len(terms))``."""
    z, y, x = zyx
    s = (
        (z - _b(centre[:, 0])) / _b(half_size),
        (y - _b(centre[:, 1])) / _b(half_size),
        (x - _b(centre[:, 2])) / _b(half_size),
    )
    out = torch.zeros(torch.broadcast_shapes(*(t.shape for t in s)), dtype=z.dtype,
                      device=z.device)
    for k, term in enumerate(terms):
        monomial = s[term[0]]
        for i in term[1:]:
            monomial = monomial * s[i]
        out = out + _b(coefficients[:, k]) * monomial
    return out


def dislocation_phase(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    point: torch.Tensor,
    line: torch.Tensor,
    burgers: torch.Tensor,
    winding: torch.Tensor,
    edge: torch.Tensor,
    poisson_ratio: torch.Tensor,
    g_hat: torch.Tensor,
    scale: torch.Tensor,
    core: float = 0.5,
) -> torch.Tensor:
    """Phase of a straight dislocation through ``point`` along ``line`` (isotropic elasticity).

    In the right-handed frame ``(b̂, n̂ = t̂ × b̂, t̂)`` with ``θ = atan2(n̂·r, b̂·r)``:

    - screw (``u = b θ / 2π`` along t̂, ``G·b = 2π·winding``): ``φ = winding · θ``;
    - edge (Hirth & Lothe), with ``G·b = 2π·winding`` and ``κ = (ĝ·n̂) / (ĝ·b̂)``:
      ``φ = winding · [θ + sin2θ / (4(1-ν)) - κ ((1-2ν)/(4(1-ν)) ln(r²/scale²) + cos2θ/(4(1-ν)))]``.

    Either way the phase winds by ``2π · winding`` around the line. ``core`` (voxels)
    regularises the logarithm and the angular terms on the line.

    Parameters
    ----------
    point, line, burgers : torch.Tensor
        ``(B, 3)``; ``burgers`` ⊥ ``line`` (unit vectors).
    winding : torch.Tensor
        ``(B,)`` integer winding (0 = no dislocation for that sample).
    edge : torch.Tensor
        ``(B,)`` 1.0 for an edge dislocation, 0.0 for a screw.
    poisson_ratio, scale : torch.Tensor
        ``(B,)`` Poisson ratio ν and the length in the logarithm.
    g_hat : torch.Tensor
        ``(B, 3)`` scattering-vector direction.
    """
    z, y, x = zyx
    dz, dy, dx = z - _b(point[:, 0]), y - _b(point[:, 1]), x - _b(point[:, 2])
    nvec = torch.linalg.cross(line, burgers, dim=-1)
    xp = _b(burgers[:, 0]) * dz + _b(burgers[:, 1]) * dy + _b(burgers[:, 2]) * dx
    yp = _b(nvec[:, 0]) * dz + _b(nvec[:, 1]) * dy + _b(nvec[:, 2]) * dx
    theta = torch.atan2(yp, xp)
    phase = _b(winding) * theta
    if bool((edge != 0).any()):
        nu = _b(poisson_ratio)
        r2 = xp * xp + yp * yp + core * core
        c = 1.0 / (4.0 * (1.0 - nu))
        sin2 = 2.0 * xp * yp / r2
        cos2 = (xp * xp - yp * yp) / r2
        gb = (g_hat * burgers).sum(-1)
        gn = (g_hat * nvec).sum(-1)
        kappa = _b(torch.where(gb.abs() > 1e-6, gn / gb, torch.zeros_like(gb)))
        extra = sin2 * c - kappa * (
            (1.0 - 2.0 * nu) * c * torch.log(r2 / _b(scale) ** 2) + cos2 * c
        )
        phase = phase + _b(winding * edge) * extra
    return phase


def fault_phase(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    point: torch.Tensor,
    normal: torch.Tensor,
    jump: torch.Tensor,
    width: torch.Tensor,
) -> torch.Tensor:
    """Phase of a planar defect: ``jump`` beyond the plane through ``point`` of unit ``normal``.

    With ``width > 0`` the jump holds only inside the slab ``0 < d <= width`` (``d`` the signed
    distance from the plane along ``normal``): a lamella bounded by two faults.

    Parameters
    ----------
    point, normal : torch.Tensor
        ``(B, 3)``.
    jump, width : torch.Tensor
        ``(B,)`` phase jump (rad; 0 = no fault for that sample) and slab thickness (voxels;
        0 = a single fault).
    """
    z, y, x = zyx
    d = (
        _b(normal[:, 0]) * (z - _b(point[:, 0]))
        + _b(normal[:, 1]) * (y - _b(point[:, 1]))
        + _b(normal[:, 2]) * (x - _b(point[:, 2]))
    )
    w = _b(width)
    inside = (d > 0) & ((w <= 0) | (d <= w))
    return _b(jump) * inside.to(d.dtype)


def loop_phase(
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    centre: torch.Tensor,
    normal: torch.Tensor,
    radius: torch.Tensor,
    winding: torch.Tensor,
    segments: int = 48,
) -> torch.Tensor:
    """Phase of a circular dislocation loop: ``winding · Ω / 2``, the solid-angle term of
    Burgers' formula (``G·b = 2π·winding``).

    ``Ω`` is the signed solid angle the loop (centre ``centre``, unit ``normal``, ``radius``)
    subtends at each voxel, summed over the fan of ``segments`` triangles from the centre
    (Van Oosterom & Strackee, 1983). It jumps by 4π across the disc, so the phase jumps by
    ``2π · winding`` there (invisible in ``exp(iφ)``) and winds by ``2π · winding`` around the
    loop line: a ring of phase vortex. A polygon of 48 sides departs from the circle by
    0.2 % of the radius.

    Parameters
    ----------
    centre, normal : torch.Tensor
        ``(B, 3)``; ``normal`` unit.
    radius : torch.Tensor
        ``(B,)`` voxels.
    winding : torch.Tensor
        ``(B,)`` integer winding (0 = no loop for that sample).
    segments : int
        Sides of the polygon standing for the circle.
    """
    if segments < 8:
        raise ValueError(f"segments must be >= 8, got {segments}")
    z, y, x = zyx
    # an in-plane basis (a, b) of each loop
    helper = torch.zeros_like(normal)
    helper[torch.arange(normal.shape[0]), normal.abs().argmin(dim=1)] = 1.0
    a = torch.linalg.cross(normal, helper, dim=-1)
    a = a / a.norm(dim=-1, keepdim=True)
    b = torch.linalg.cross(normal, a, dim=-1)
    # the disc is moved 1e-3 voxel along the normal: a voxel exactly on it (and on a spoke of
    # the fan) would otherwise get Ω = 0 instead of ±2π
    centre = centre + 1e-3 * normal
    d0 = (z - _b(centre[:, 0]), y - _b(centre[:, 1]), x - _b(centre[:, 2]))  # r − centre
    v0 = tuple(-c for c in d0)  # centre − r
    n0 = torch.sqrt(v0[0] ** 2 + v0[1] ** 2 + v0[2] ** 2)

    def corner(k: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        t = 2.0 * math.pi * k / segments
        p = (math.cos(t) * a + math.sin(t) * b) * radius[:, None]  # (B, 3) from the centre
        v = tuple(_b(p[:, i]) + v0[i] for i in range(3))
        return v, torch.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)

    # n0 has the broadcast (B, ...) shape (torch.broadcast_shapes would import sympy: 0.8 s in
    # every simulation worker)
    omega = torch.zeros_like(n0)
    v1, n1 = corner(0)
    for k in range(1, segments + 1):
        v2, n2 = corner(k)
        cross = (v1[1] * v2[2] - v1[2] * v2[1], v1[2] * v2[0] - v1[0] * v2[2],
                 v1[0] * v2[1] - v1[1] * v2[0])
        num = v0[0] * cross[0] + v0[1] * cross[1] + v0[2] * cross[2]
        d01 = v0[0] * v1[0] + v0[1] * v1[1] + v0[2] * v1[2]
        d02 = v0[0] * v2[0] + v0[1] * v2[1] + v0[2] * v2[2]
        d12 = v1[0] * v2[0] + v1[1] * v2[1] + v1[2] * v2[2]
        omega = omega + torch.atan2(num, n0 * n1 * n2 + d01 * n2 + d02 * n1 + d12 * n0)
        v1, n1 = v2, n2
    return _b(winding) * omega  # Ω = 2 Σ atan2(…), and the phase is winding · Ω / 2


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles into ``[-π, π)``."""
    return torch.remainder(x + math.pi, TWO_PI) - math.pi


def _central_diffs(phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wrapped central differences on the interior ``(M-2)³`` of each box."""
    c = slice(1, -1)
    gz = wrap(phase[:, 2:, c, c] - phase[:, :-2, c, c]) / 2
    gy = wrap(phase[:, c, 2:, c] - phase[:, c, :-2, c]) / 2
    gx = wrap(phase[:, c, c, 2:] - phase[:, c, c, :-2]) / 2
    return gz, gy, gx


def mean_phase_gradient(phase: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of the (wrap-free) phase gradient, ``(B, 3)`` in rad/voxel.

    With ``weight = |ρ|²`` this is ``2π/n`` times the centre of mass of the diffraction
    pattern (in pixels from the centre), so subtracting the ramp centres the Bragg peak.
    """
    w = weight[:, 1:-1, 1:-1, 1:-1]
    tot = w.sum(dim=(1, 2, 3)).clamp_min(1e-30)
    return torch.stack([(w * g).sum(dim=(1, 2, 3)) / tot for g in _central_diffs(phase)], dim=-1)


def phase_gradient_stats(
    phase: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and maximum of ``|∇φ|`` (rad/voxel) inside ``mask``, each ``(B,)``.

    The gradient is made of wrapped forward differences, taken where a voxel and its three
    forward neighbours are all inside ``mask``; each component is at most π.
    """
    c = slice(0, -1)
    gz = wrap(phase[:, 1:, c, c] - phase[:, :-1, c, c])
    gy = wrap(phase[:, c, 1:, c] - phase[:, c, :-1, c])
    gx = wrap(phase[:, c, c, 1:] - phase[:, c, c, :-1])
    g = torch.sqrt(gz * gz + gy * gy + gx * gx)
    m = mask[:, c, c, c] & mask[:, 1:, c, c] & mask[:, c, 1:, c] & mask[:, c, c, 1:]
    cnt = m.sum(dim=(1, 2, 3)).clamp_min(1)
    mean = torch.where(m, g, torch.zeros_like(g)).sum(dim=(1, 2, 3)) / cnt
    top = torch.where(m, g, torch.zeros_like(g)).amax(dim=(1, 2, 3))
    return mean, top


def remove_ramp(
    phase: torch.Tensor,
    weight: torch.Tensor,
    zyx: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Subtract the weighted-mean linear phase ramp (see :func:`mean_phase_gradient`)."""
    g = mean_phase_gradient(phase, weight)
    return phase - _dot(g, zyx)


def masked_ptp(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample peak-to-peak and mid-range of ``x`` inside ``mask``, each ``(B,)``."""
    big = torch.finfo(x.dtype).max
    hi = torch.where(mask, x, torch.full_like(x, -big)).amax(dim=(1, 2, 3))
    lo = torch.where(mask, x, torch.full_like(x, big)).amin(dim=(1, 2, 3))
    any_ = mask.any(dim=(1, 2, 3))
    ptp = torch.where(any_, hi - lo, torch.zeros_like(hi))
    mid = torch.where(any_, (hi + lo) / 2, torch.zeros_like(hi))
    return ptp, mid
