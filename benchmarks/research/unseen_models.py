"""The shipped AI refinement on crystal models the simulator cannot make.

Each crystal is a simulated one (seeds 4_200_000_000 + 1000 k, disjoint from training,
validation, the test set and ``generalisation.py``) whose object is then changed in a way no
training crystal was, and diffracted again with the same detector (scale to the same peak
counts, the crystal's blur and background, Poisson noise from its seed, its gaps):

- ``fault``: a planar defect (stacking fault, twin boundary) — the phase jumps by ±2π/3 across
  a random plane through the crystal (within a quarter of its size of the centroid);
- ``lamella``: two parallel such planes 3–6 voxels apart (a thin twin lamella);
- ``void``: a spherical void (amplitude 0) inside the crystal, a third of its size — a
  support that is not convex; ``shell``: the crystal hollow, a wall 2.5–4 voxels thick left
  under its surface (a nanobox or nanocage, as galvanic replacement makes; session 29);
- ``inclusion``: a misfitting inclusion (a precipitate, a hydride nucleus): a centre of
  dilatation of radius a = 0.08–0.15 of the crystal's size within a sixth of its size of the
  centroid, u = A·r/a³ inside and A·r/|r|³ outside, the phase g·u reaching ±(1–2.5) rad at its
  edge (either sign), on top of the crystal's own strain (session 29);
- ``density``: the amplitude falls linearly to 40 % across the crystal (a composition or
  thickness gradient; the true support stays the crystal's shape);
- ``bent``: a quadratic phase along a random direction, peak-to-peak 2π across the crystal
  (bending), on top of its own strain; ``twist``: a bilinear phase s·t over two random
  orthogonal directions, ±π at the crystal's corners (a saddle: torsion of a rod, the
  displacement of a twisted crystal; session 29), on top of its own strain;
- ``loop``: a dislocation loop (radius 0.15–0.3 of the crystal's size, within a sixth of its
  size of the centroid, random plane): the phase is ±Ω/2, Ω the solid angle the loop subtends
  (g·b = ±1; the simulator's ``"loop"`` model since session 17, which found this blind spot),
  a vortex ring where the simulator made only straight lines;
- ``surface``: surface relaxation: A·(ĝ·n̂)·exp(−d/λ) with d the depth below the surface, n̂
  the outward normal, A 0.5–1.5 rad of either sign, λ 1–2.5 voxels — strain concentrated in
  the outer voxels of each facet;
- ``aggregate``: two copies of the crystal fused (the second shifted by up to half its size,
  as far as the grid's oversampling of 2 allows) with a random phase offset between them: a
  support that is not convex, with a neck; ``fused``: the same two copies without the offset
  (one lattice through the neck), to tell the shape from the offset;
- ``shear``: the object sampled on a sheared grid, as a rocking curve records it in the
  detector frame (the rocking axis z is not perpendicular to the detector plane: the frame is
  sheared by about tan θ, 0.2–0.5 at usual Bragg angles): each z slice translated along y or x
  (drawn) by s·(z − z̄), |s| 0.2–0.5 of either sign (session 21), a band-limited (Fourier)
  translation; the amplitude's ringing below 0.05 is cut; ``shear_large``: the same with |s|
  0.5–1.0 (Bragg angles of 27–45°);
- ``peakmask``: the crystal unchanged, the detector saturated at the Bragg peak and its
  pixels flagged: every voxel whose expected counts exceed 0.3 of the peak is in the mask
  (session 21); ``clipped``: the same saturation not flagged, the counts capped at 0.3 of the
  peak (an attenuator left out, a count-rate limit);
- ``dropframe``: the crystal unchanged, one frame of the rocking curve lost (a detector
  glitch, a beam loss): the frame through the peak (z = N/2) is all zeros, as delivered;
  ``dropmasked``: the same frame flagged bad (session 21);
- ``gap``: the crystal unchanged, a gap between detector chips or modules near the peak: a
  band 2–6 pixels wide along y or x (drawn), its near edge 0–10 px from the peak on either
  side, flagged bad in every frame (the mask a CXI file carries); ``gapcross``: one such band
  along y and one along x (the peak near a chip's corner); ``gapzero``: the ``gap`` band's
  counts zero and not flagged (a file written without its mask); ``gapwide``: a band 7–12 px
  wide, as between a Pilatus's or an Eiger's modules (7–17 px), flagged (session 30);
- ``hotpixel``: three detector pixels (16–30 px from the peak along y and x) hot in every
  frame, 1 % of the peak's counts each, not flagged; ``zinger``: five voxels (cosmic rays,
  anywhere 12 px or more from the peak) at half the peak's counts, not flagged (session 21);
- ``cutcurve``: a rocking curve cut short on one side: the frames beyond N/2 + 8 not measured
  (flagged bad, as the live path pads a crop that runs past the scan); ``cutcurve4``: beyond
  N/2 + 4 (session 21);
- ``offcentre``: the crystal unchanged, the pattern (and its mask) rolled by (2, 9, -11)
  pixels: a CXI file whose Bragg peak is not at the array's centre (session 21);
- ``parasitic``: another grain's Bragg peak in the crop: the pattern of crystal ``seed + 7``
  at 0.3 of this one's peak counts, rolled 20 pixels along y and x, added before the noise
  (session 21);
- ``flux``: the crystal unchanged, the incident flux not constant over the rocking curve and
  not normalised by a monitor: each frame's expected counts scaled by 1 + 0.1·N(0, 1), clamped
  to 0.6–1.4 (top-up injections, beam-position drift); ``flux20``: 0.2·N(0, 1) (session 22);
- ``deadtime``: the crystal unchanged, a photon-counting detector's count-rate loss left
  uncorrected (or under-corrected): expected counts I → I/(1 + I/I_c), I_c = 1.5 × the peak,
  so the peak reads 0.6 of its true value and the tails are untouched (session 22);
- ``anisoblur``: the crystal unchanged, a partially coherent beam whose coherence length is
  short along one detector axis only (the horizontal of a third-generation source): the
  pattern blurred by a Gaussian of σ 1.2–1.8 px along x only, on top of the crystal's own
  blur (session 22);
- ``zblur``: the same blur along the rocking axis z only (σ 1.2–1.8 px, which no detector PSF
  makes: an upper bound for partial coherence across the beam projected on z at large 2θ;
  bandwidth and divergence give ~0.1–0.2 px) (session 22);
- ``diagblur``: the ``anisoblur`` blur along the detector's diagonal (y + x)/√2 instead of x
  (partial coherence whose short direction is not a detector axis), made exactly in Fourier
  space; the true widths are not separable, ``psf`` gives its projections on y and x
  (session 22);
- ``halo``: the crystal unchanged, diffuse scattering under the peak (thermal diffuse or
  Huang scattering, not from the crystal's shape): expected counts 3·10⁻⁴ of the peak ×
  1/(1 + (|q|/3 px)²) added before the noise (session 22);
- ``jitter``: the crystal unchanged, the rocking-curve angles not evenly spaced (a motor's
  backlash and encoder error): frame k samples the pattern at q_z = k + δ_k, δ_k ~ 0.15·N(0, 1)
  px (exact, a non-integer DFT along z), while the data say k (session 22);
- ``network``: three or four straight dislocations (screw, winding ±1, random lines through
  points within a quarter of the crystal's size of its centroid): a dislocation network, as
  in cycled battery cathodes; the simulator makes at most two (session 22);
- ``substrate``: a crystal grown or dewetted on a substrate (a Winterbottom shape, the usual
  BCDI sample): cut by a plane normal to a random direction, 15–35 % of its extent along it
  removed (the contact facet, with a partial-volume edge), and strain at the interface: the
  phase A·exp(−h/λ) at height h above the contact plane, A 1–2 rad of either sign, λ 2–4
  voxels, on top of the crystal's own strain; ``truncated``: the cut alone (session 31);
- ``refraction``: refraction and absorption in the crystal (a large or dense crystal: a
  500 nm gold particle at 9 keV): the exit wave at r takes the phase −c·L(r) and the amplitude
  factor exp(−0.1·c·L(r)) (β/δ = 0.1, as for gold there), L(r) the path inside the crystal
  along the incident beam to r plus the path from r out along the exit beam; the beams at a
  Bragg angle θ of 10–30° either side of the plane normal to G (their difference along G),
  about a random axis; c sets max L·c over the crystal to 0.5–2 rad (session 32);
- ``beam``: a focused beam not much wider than the crystal (a nanofocus at a fourth-generation
  source): the object times the beam's field across its axis (the incident direction as in
  ``refraction``), a Gaussian whose amplitude falls to 0.5–0.8 at the crystal's farthest
  voxel from the axis, the axis off the centroid by up to a sixth of the crystal's size, and a
  curved wavefront (out of focus): the phase κ·ρ², ±(0.5–1.5) rad at that voxel (session 32);
- ``bend4pi``, ``twist4pi``, ``poly4pi``: strong strain from models the simulator does not
  use (its strong crystals' smooth strain is a random field, a substrate interface or a
  misfitting core, plus dislocations): on a weak crystal, a bending (the ``bent`` quadratic),
  a torsion (the ``twist`` saddle) or a random cubic polynomial of the position (its linear
  part removed by least squares over the crystal), scaled to a peak-to-peak of 4–6π inside it
  — strong strain as another simulator might make it (session 32);
- ``binary``: the crystal's amplitude made 1 inside its shape and 0 outside (``amplitude >
  0.5``: voxelised facets, no partial-volume edge, as simple simulators make crystals), the
  phase unchanged (session 19); ``none``: the crystal unchanged (diffracted again the same
  way), the control of any variant.

The base crystal is of the weak class unless the variant ends in ``_medium`` (span 1–2.5π) or
``_strong`` (the simulator's strong level, ``binary_strong`` and ``none_strong`` only).
Methods: AI = the shipped ``phase_ai``; with ``--random`` RAAR 100 + ER 100 from random phases;
with ``--truth`` the same from the TRUE φ(q) (the ceiling of any prediction). One JSON line per
crystal, a summary per variant.

    python benchmarks/research/unseen_models.py --variants fault lamella void density bent \\
        --n 10 --random --truth
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from generalisation import probe_arguments, score_variant

BASES = ("fault", "lamella", "void", "shell", "inclusion", "density", "bent", "twist", "loop",
         "surface", "aggregate", "fused", "binary", "shear", "shear_large", "peakmask", "clipped",
         "dropframe", "dropmasked", "gap", "gapcross", "gapzero", "gapwide", "hotpixel",
         "zinger", "cutcurve", "cutcurve4", "offcentre",
         "parasitic", "flux", "flux20", "deadtime", "anisoblur", "diagblur", "zblur", "halo",
         "jitter", "network", "substrate", "truncated", "refraction", "beam", "bend4pi",
         "twist4pi", "poly4pi", "none")
VARIANTS = (*BASES, *(f"{b}_medium" for b in BASES), "binary_strong", "none_strong")
SEED0 = 4_200_000_000


@dataclass
class Changed:
    """A changed crystal: what the probe phases and scores against."""

    intensity: torch.Tensor
    mask: torch.Tensor
    obj: torch.Tensor
    support: torch.Tensor
    phase_q: torch.Tensor
    #: the PSF widths (z, y, x) px the pattern was blurred with (detector and coherence; for
    #: ``diagblur``, the oblique kernel's projections on y and x)
    psf: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: ``diagblur``'s width along the detector's diagonal (px), else 0
    oblique: float = 0.0
    #: the crystal's own detector blur (px, on y and x)
    detector_sigma: float = 0.0


def yx_transfer(n: int, sigma_y: float = 0.0, sigma_x: float = 0.0,
                sigma_diag: float = 0.0) -> torch.Tensor:
    """Fourier transfer function ``(n, n)`` over (y, x) of Gaussian blurs along y, along x and
    along the diagonal (y + x)/√2 (widths in px; 0 = none), in FFT layout."""
    f = torch.fft.fftfreq(n, dtype=torch.float64)
    fy, fx = f.view(n, 1), f.view(1, n)
    out = torch.ones(n, n, dtype=torch.float64)
    if sigma_diag > 0:
        along = (fy + fx) / math.sqrt(2.0)
        out = torch.exp(-2.0 * (math.pi * sigma_diag * along) ** 2)
    return out * torch.exp(-2.0 * (math.pi * sigma_y * fy) ** 2) * torch.exp(
        -2.0 * (math.pi * sigma_x * fx) ** 2)


def _unit(gen: torch.Generator) -> torch.Tensor:
    v = torch.randn(3, generator=gen, dtype=torch.float64)
    return v / v.norm()


def _centred(v: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``v`` mapped from ``[lo, hi]`` onto ``[-1, 1]``."""
    return (v - 0.5 * (lo + hi)) / max(0.5 * (hi - lo), 1e-9)


def _depth(inside: torch.Tensor) -> torch.Tensor:
    """Each voxel's distance (voxels) to the nearest one outside ``inside`` (0 outside)."""
    from scipy import ndimage

    return torch.from_numpy(ndimage.distance_transform_edt(inside.numpy()))


def _path_inside(density: torch.Tensor, direction: torch.Tensor, step: float = 0.5) -> torch.Tensor:
    """Each voxel's path (voxels) through ``density`` (0–1, the crystal's partial volume) from
    it along the unit vector ``direction`` (z, y, x) to the grid's edge, by trilinear samples
    every ``step`` voxels."""
    n = density.shape[0]
    idx = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float64),) * 3,
                                     indexing="ij"), dim=-1)  # (n, n, n, 3) as (z, y, x)
    vol = density.view(1, 1, n, n, n)
    total = torch.zeros_like(density)
    for k in range(1, math.ceil(n * math.sqrt(3.0) / step) + 1):
        at = idx + (k * step) * direction.view(1, 1, 1, 3)
        coords = (2.0 * at / (n - 1) - 1.0).flip(-1)  # grid_sample wants (x, y, z) in [-1, 1]
        total += torch.nn.functional.grid_sample(vol, coords.unsqueeze(0), mode="bilinear",
                                                 padding_mode="zeros",
                                                 align_corners=True)[0, 0]
    return total * step


def change(variant: str, seed: int) -> Changed:
    """Simulate crystal ``seed`` and apply ``variant`` to its object, then diffract it again."""
    from bcdi_stream.physics import centroid, fft_centered
    from bcdi_stream.simulation import _displacement as fld
    from bcdi_stream.simulation import simulate_crystal
    from bcdi_stream.simulation._forward import detector_blur, poisson_noise

    base = variant.removesuffix("_medium").removesuffix("_strong")
    strain = ((1.0 * math.pi, 2.5 * math.pi) if variant.endswith("_medium")
              else "strong" if variant.endswith("_strong") else "weak")
    c = simulate_crystal(seed, device="cpu", n=64, strain=strain)
    gen = torch.Generator().manual_seed(seed)
    amp, phase = c.obj.abs().double(), c.obj.angle().double()
    inside = amp > 0.5
    n = amp.shape[0]
    grid = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float64),) * 3,
                                      indexing="ij"))
    r = grid - centroid(amp).double().view(3, 1, 1, 1)
    size = max(float(e) for e in c.meta["extent"])
    u = _unit(gen)
    along = (r * u.view(3, 1, 1, 1)).sum(0)
    lo, hi = float(along[inside].min()), float(along[inside].max())
    g = torch.tensor(c.spec.g_hat, dtype=torch.float64).view(3, 1, 1, 1)  # the direction of G
    if base in ("fault", "lamella"):
        at = (torch.rand(1, generator=gen).item() - 0.5) * 0.5 * size
        sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
        jump = sign * 2 * math.pi / 3
        if base == "fault":
            phase = phase + jump * (along > at)
        else:
            width = 3 + 3 * torch.rand(1, generator=gen).item()
            phase = phase + jump * ((along > at) & (along <= at + width))
    elif base == "void":
        # the void sits where the crystal is thickest around the centroid's neighbourhood
        radius = size / 6
        centre = (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5) * 0.2 * size
        d = (r - centre.view(3, 1, 1, 1)).norm(dim=0)
        amp = amp * (d > radius)
        inside = inside & (d > radius)
    elif base == "shell":
        wall = 2.5 + 1.5 * torch.rand(1, generator=gen).item()
        depth = _depth(inside)
        amp = amp * (depth <= wall)
        inside = inside & (depth <= wall)
    elif base == "inclusion":
        a = (0.08 + 0.07 * torch.rand(1, generator=gen).item()) * size
        centre = (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5) * size / 3
        edge = (1.0 + 1.5 * torch.rand(1, generator=gen).item()) * (
            1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0)
        rr = r - centre.view(3, 1, 1, 1)
        # g·u with u = A r / max(|r|, a)^3 and A = edge · a²: ±edge at |r| = a along g
        phase = phase + edge * a * a * (g * rr).sum(0) / rr.norm(dim=0).clamp_min(a) ** 3
    elif base == "density":
        amp = amp * (1.0 - 0.6 * (along - lo) / max(hi - lo, 1e-9)).clamp(0.4, 1.0)
    elif base == "loop":
        m = _unit(gen)
        radius = (0.15 + 0.15 * torch.rand(1, generator=gen).item()) * size
        centre = (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5) * size / 3
        sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
        # the simulator's loop (winding ±1) about the centroid + centre
        phase = phase + fld.loop_phase(
            tuple(r[k].view(1, n, n, n).float() for k in range(3)), centre.view(1, 3).float(),
            m.view(1, 3).float(), torch.tensor([radius]), torch.tensor([sign]))[0].double()
    elif base == "surface":
        from scipy import ndimage

        depth = _depth(inside)
        lam = 1.0 + 1.5 * torch.rand(1, generator=gen).item()
        amp_rad = (0.5 + torch.rand(1, generator=gen).item()) * (
            1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0)
        smooth = torch.from_numpy(ndimage.gaussian_filter(depth.numpy(), 1.0))
        normal = -torch.stack(torch.gradient(smooth))
        normal = normal / normal.norm(dim=0).clamp_min(1e-9)
        phase = phase + amp_rad * (g * normal).sum(0) * torch.exp(-(depth - 1).clamp_min(0) / lam)
    elif base in ("aggregate", "fused"):
        span = hi - lo
        shift_len = min(0.5 * size, max(n / 2.0 - span, 0.25 * size))
        shift = [round(float(v)) for v in u * shift_len]
        copy_amp = torch.roll(amp, shift, (0, 1, 2))
        offset = 2 * math.pi * torch.rand(1, generator=gen).item() * (base == "aggregate")
        copy_phase = torch.roll(phase, shift, (0, 1, 2)) + offset
        new = (copy_amp > amp)
        amp = torch.where(new, copy_amp, amp)
        phase = torch.where(new, copy_phase, phase)
        inside = amp > 0.5
    elif base == "network":
        n_lines = 3 + int(torch.rand(1, generator=gen).item() < 0.5)
        zyx = tuple(r[k].view(1, n, n, n).float() for k in range(3))
        for _ in range(n_lines):
            line = _unit(gen)
            burgers = torch.linalg.cross(line, _unit(gen), dim=0)
            burgers = burgers / burgers.norm()
            point = (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5) * 0.5 * size
            sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
            phase = phase + fld.dislocation_phase(
                zyx, point.view(1, 3).float(), line.view(1, 3).float(),
                burgers.view(1, 3).float(), torch.tensor([sign]), torch.tensor([0.0]),
                torch.tensor([0.3]), torch.zeros(1, 3), torch.tensor([1.0]))[0].double()
    elif base in ("substrate", "truncated"):
        cut = lo + (0.15 + 0.2 * torch.rand(1, generator=gen).item()) * (hi - lo)
        height = along - cut
        amp = amp * (height + 0.5).clamp(0.0, 1.0)  # the contact facet, partial volume
        inside = inside & (height >= 0)
        if base == "substrate":
            lam = 2.0 + 2.0 * torch.rand(1, generator=gen).item()
            a_rad = (1.0 + torch.rand(1, generator=gen).item()) * (
                1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0)
            phase = phase + a_rad * torch.exp(-height.clamp_min(0.0) / lam)
    elif base in ("refraction", "beam"):
        theta = math.radians(10.0 + 20.0 * torch.rand(1, generator=gen).item())
        ghat = g.view(3)
        t = _unit(gen)
        t = t - (t * ghat).sum() * ghat
        t = t / t.norm()
        k_in = -math.sin(theta) * ghat + math.cos(theta) * t
        if base == "refraction":
            k_out = math.sin(theta) * ghat + math.cos(theta) * t
            path = _path_inside(amp.clamp(0.0, 1.0), -k_in) + _path_inside(
                amp.clamp(0.0, 1.0), k_out)
            c_rad = (0.5 + 1.5 * torch.rand(1, generator=gen).item()) / float(
                path[inside].max())
            phase = phase - c_rad * path
            amp = amp * torch.exp(-0.1 * c_rad * path)
        else:
            offset = (torch.rand(3, generator=gen, dtype=torch.float64) - 0.5) * size / 3
            across = r - offset.view(3, 1, 1, 1)
            across = across - (across * k_in.view(3, 1, 1, 1)).sum(0) * k_in.view(3, 1, 1, 1)
            rho2 = across.square().sum(0)
            far = float(rho2[inside].max())
            edge = 0.5 + 0.3 * torch.rand(1, generator=gen).item()
            curve = (0.5 + torch.rand(1, generator=gen).item()) * (
                1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0)
            amp = amp * torch.exp(math.log(edge) * rho2 / far)
            phase = phase + curve * rho2 / far
    elif base in ("bent", "twist", "bend4pi", "twist4pi", "poly4pi"):
        if base in ("bent", "bend4pi"):
            extra = _centred(along, lo, hi).square()  # 0 in the middle, 1 at the faces
        elif base in ("twist", "twist4pi"):
            w = _unit(gen)
            w = w - (w * u).sum() * u
            w = w / w.norm()
            across = (r * w.view(3, 1, 1, 1)).sum(0)
            # 0 on the two mid-planes, ±1 at the corners
            extra = _centred(along, lo, hi) * _centred(
                across, float(across[inside].min()), float(across[inside].max()))
        else:
            from bcdi_stream.simulation import POLYNOMIAL_TERMS

            coef = torch.randn(len(POLYNOMIAL_TERMS), generator=gen, dtype=torch.float64)
            extra = fld.polynomial_phase(tuple(r[i].unsqueeze(0) for i in range(3)),
                                         torch.zeros(1, 3, dtype=torch.float64),
                                         torch.tensor([0.5 * size], dtype=torch.float64),
                                         coef.view(1, -1), POLYNOMIAL_TERMS)[0]
            x = r / (0.5 * size)
            design = torch.stack([torch.ones_like(x[0][inside]), *(x[i][inside] for i in range(3))],
                                 dim=1)
            fit = torch.linalg.lstsq(design, extra[inside].unsqueeze(1)).solution.view(4)
            extra = extra - fit[0] - sum(fit[i + 1] * x[i] for i in range(3))
        if base == "bent":
            phase = phase + 2 * math.pi * extra
        elif base == "twist":
            phase = phase + math.pi * extra
        else:
            target = (4.0 + 2.0 * torch.rand(1, generator=gen).item()) * math.pi
            ptp = float(extra[inside].max() - extra[inside].min())
            phase = phase + extra * (target / max(ptp, 1e-9))
    elif base == "binary":
        amp = inside.double()
    elif base in ("shear", "shear_large"):
        axis = 1 + int(torch.rand(1, generator=gen).item() < 0.5)  # y or x
        lo_s, width_s = (0.2, 0.3) if base == "shear" else (0.5, 0.5)
        s = (lo_s + width_s * torch.rand(1, generator=gen).item()) * (
            1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0)
        zc = float(centroid(amp)[0])
        moved = s * (torch.arange(n, dtype=torch.float64) - zc)  # per z slice
        f = torch.fft.fftfreq(n, dtype=torch.float64)
        ramp = torch.exp(-2j * math.pi * moved.view(n, 1) * f.view(1, n))  # (z, f)
        ramp = ramp.view(n, 1, n) if axis == 2 else ramp.view(n, n, 1)
        sheared = torch.fft.ifft(torch.fft.fft(torch.polar(amp, phase), dim=axis) * ramp,
                                 dim=axis)
        amp = sheared.abs() * (sheared.abs() >= 0.05)
        phase = sheared.angle()
        inside = amp > 0.5
    elif base in ("none", "peakmask", "clipped", "dropframe", "dropmasked", "gap", "gapcross",
                  "gapzero", "gapwide", "hotpixel",
                  "zinger", "cutcurve", "cutcurve4", "offcentre", "parasitic", "flux", "flux20",
                  "deadtime", "anisoblur", "diagblur", "zblur", "halo", "jitter"):
        pass  # the detector side is changed below
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    obj = torch.polar(amp, phase * (amp > 0)).to(torch.complex64)
    psi = fft_centered(obj)
    clean = psi.real.square() + psi.imag.square()
    spec = c.spec
    if base == "jitter":
        # frame k is the pattern at q_z = k + delta_k: the object's z axis given the ramp
        # exp(-2 pi i delta_k z / n) before the transform (fft_centered's phase convention
        # checked against delta = 0 and delta = 1, a whole-frame roll)
        delta = 0.15 * torch.randn(n, generator=gen, dtype=torch.float64)
        zc = torch.arange(n, dtype=torch.float64) - n // 2
        clean = clean.clone()
        for k in range(n):
            ramp = torch.exp(-2j * math.pi * float(delta[k]) * zc / n).view(n, 1, 1)
            frame = fft_centered((obj.to(torch.complex128) * ramp).to(torch.complex64))[k]
            clean[k] = frame.real.square() + frame.imag.square()
    rate = detector_blur(clean * (spec.peak_counts / clean.max()), spec.blur_sigma)
    coherence = (0.0, 0.0, 0.0)  # the widths (z, y, x) of the blur added below, as projected
    oblique = 0.0
    if base in ("anisoblur", "zblur"):
        from bcdi_stream.phasing._psf import blur

        width = 1.2 + 0.6 * torch.rand(1, generator=gen).item()
        coherence = (0.0, 0.0, width) if base == "anisoblur" else (width, 0.0, 0.0)
        rate = blur(rate, coherence)
    elif base == "diagblur":
        oblique = 1.2 + 0.6 * torch.rand(1, generator=gen).item()
        rate = torch.fft.ifftn(torch.fft.fftn(rate.double(), dim=(1, 2))
                               * yx_transfer(n, sigma_diag=oblique),
                               dim=(1, 2)).real.clamp_min(0.0).to(rate.dtype)
        coherence = (0.0, oblique / math.sqrt(2.0), oblique / math.sqrt(2.0))
    psf = tuple(math.hypot(a, b) for a, b in zip((0.0, spec.blur_sigma, spec.blur_sigma),
                                                  coherence, strict=True))
    if base == "halo":
        q = (grid - n // 2).norm(dim=0)
        rate = rate + (3e-4 * spec.peak_counts / (1.0 + (q / 3.0).square())).to(rate.dtype)
    elif base == "deadtime":
        rate = rate / (1.0 + rate / (1.5 * float(rate.max())))
    elif base in ("flux", "flux20"):
        rms = 0.1 if base == "flux" else 0.2
        scale = (1.0 + rms * torch.randn(n, generator=gen, dtype=torch.float64)).clamp(0.6, 1.4)
        rate = rate * scale.view(n, 1, 1).to(rate.dtype)
    if spec.background > 0:
        rate = rate + spec.background
    if base == "parasitic":
        other = simulate_crystal(seed + 7, device="cpu", n=n, strain="weak")
        o_clean = fft_centered(other.obj).abs().square()
        rate = rate + torch.roll(o_clean * (0.3 * spec.peak_counts / o_clean.max()), (0, 20, 20),
                                 (0, 1, 2))
    counts = poisson_noise(rate, torch.Generator().manual_seed(seed + 1))
    mask = c.mask
    if base == "peakmask":
        mask = mask | (rate > 0.3 * spec.peak_counts)
    elif base == "clipped":
        counts = counts.clamp(max=round(0.3 * spec.peak_counts))
    elif base in ("hotpixel", "zinger"):
        counts = counts.clone()
        hot = torch.Generator().manual_seed(seed + 2)
        for _ in range(3 if base == "hotpixel" else 5):
            while True:
                p = torch.randint(0, n, (3,), generator=hot)
                d = (p - n // 2).abs()
                if base == "hotpixel" and 16 <= int(d[1:].max()) <= 30:
                    counts[:, p[1], p[2]] += round(0.01 * spec.peak_counts)
                    break
                if base == "zinger" and int(d.max()) >= 12:
                    counts[p[0], p[1], p[2]] += round(0.5 * spec.peak_counts)
                    break
    elif base == "offcentre":
        counts = torch.roll(counts, (2, 9, -11), (0, 1, 2))
        mask = torch.roll(mask, (2, 9, -11), (0, 1, 2))
    elif base in ("cutcurve", "cutcurve4"):
        mask = mask.clone()
        mask[n // 2 + (8 if base == "cutcurve" else 4) + 1:] = True
    elif base in ("dropframe", "dropmasked"):
        counts = counts.clone()
        counts[n // 2] = 0.0
        if base == "dropmasked":
            mask = mask.clone()
            mask[n // 2] = True
    elif base in ("gap", "gapcross", "gapzero", "gapwide"):
        bands = torch.Generator().manual_seed(seed + 3)
        axes = ((1, 2) if base == "gapcross"
                else (1 + int(torch.randint(2, (1,), generator=bands)),))
        gap = torch.zeros_like(mask)
        for axis in axes:
            width = int(torch.randint(*((7, 13) if base == "gapwide" else (2, 7)), (1,),
                                      generator=bands))
            near = int(torch.randint(0, 11, (1,), generator=bands))
            first = n // 2 + near if torch.rand(1, generator=bands).item() < 0.5 \
                else n // 2 - near - width + 1
            gap.narrow(axis, first, width).fill_(True)
        if base == "gapzero":
            counts = counts.masked_fill(gap, 0.0)
        else:
            mask = mask | gap
    intensity = counts.float().masked_fill(mask, 0.0)
    return Changed(intensity, mask, obj, inside, torch.angle(psi).float(), psf, oblique,
                   spec.blur_sigma)


def main() -> None:
    args = probe_arguments(__doc__, list(VARIANTS), list(BASES))
    for variant in args.variants:
        score_variant(variant, (
            (seed, c.intensity, c.mask, c.phase_q, c.obj, c.support, _strain_figures(c))
            for seed, c in ((s, change(variant, s)) for s in (SEED0 + 1000 * k
                                                               for k in range(args.n)))), args)


def _strain_figures(c: Changed) -> dict[str, float]:
    """The changed crystal's mean and largest phase gradient inside its support (rad/voxel,
    wrapped differences, as the simulator's meta reports them)."""
    from bcdi_stream.simulation._displacement import phase_gradient_stats

    mean, top = phase_gradient_stats(c.obj.angle().unsqueeze(0), c.support.unsqueeze(0))
    return {"grad_mean": round(float(mean), 2), "grad_max": round(float(top), 2)}


if __name__ == "__main__":
    main()
