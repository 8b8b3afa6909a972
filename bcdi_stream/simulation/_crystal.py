"""Simulate strained crystals: `simulate_crystal`, `simulate_batch` and their results.

Pipeline for each crystal (batched over crystals in torch, any device):

1. Geometry (numpy/scipy, per crystal): the habit's half-spaces in the lab frame, scaled to the
   oversampling and placed so that its continuous centroid sits at the grid centre ``n // 2``.
2. Amplitude on a box around the crystal: smoothstep of the signed distance (edge ~1 voxel),
   times an optional mild low-pass modulation; ``support = amplitude > 0.5``.
3. Phase ``φ = |G| u·ĝ``: smooth components (each normalised to unit peak-to-peak inside the
   support, weighted, summed, linear ramp removed, scaled to ``phase_span``) plus dislocation
   vortices (ramp removed).
4. ``rho = amplitude · exp(iφ)`` on the full grid, then the amplitude-weighted centroid is put
   exactly on ``n // 2`` with :func:`bcdi_stream.physics.fourier_shift`.
5. ``psi = fft_centered(rho)``; ``I = scale·|psi|²`` with ``max = peak_counts``, detector blur,
   background, Poisson noise, gaps (set to 0 and masked).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..arrays import resolve_device
from ..physics import centroid, fft_centered, fourier_shift
from . import _displacement as fld
from ._forward import coherence_blur, detector_blur, gap_mask, poisson_noise
from ._shapes import Geometry, build_geometry
from ._spec import (
    DISLOCATION_MODELS,
    FAULT_MODELS,
    LOOP_MODELS,
    POLYNOMIAL_TERMS,
    SMOOTH_MODELS,
    CrystalSpec,
    _check_strain,
    _int,
    _is_number,
)

__all__ = ["SimulatedBatch", "SimulatedCrystal", "simulate_batch", "simulate_crystal"]

_RANDOM_KWARGS = frozenset(
    {
        "n",
        "strain",
        "shapes",
        "strain_models",
        "peak_counts",
        "oversampling",
        "g_hat",
        "dislocation_probability",
        "fault_probability",
        "loop_probability",
        "field_probability",
        "network_probability",
        "coherence_probability",
        "habit_probability",
        "polynomial_probability",
    }
)
#: Correlation length (fraction of the crystal size) of the amplitude modulation.
_MODULATION_LENGTH = 0.25
#: Margin (voxels) of the evaluation box around each crystal's bounding box, beyond the soft
#: edge (half the edge width).
_BOX_MARGIN = 2
#: Centring: the crystal is moved analytically (sub-voxel) until its sampled amplitude-weighted
#: centroid is within _CENTRING_TOL / 10 of n // 2 (at most _CENTRING_ITERS evaluations; each
#: divides the error by ~10 with amplitude modulation, more without); any residual above
#: _CENTRING_TOL is removed by Fourier shifts (at most _FOURIER_ITERS).
_CENTRING_TOL = 1e-3
_CENTRING_ITERS = 6
_FOURIER_ITERS = 3
#: Crystals simulated together on a GPU.
_GPU_CHUNK = 64


@dataclass
class SimulatedCrystal:
    """One simulated BCDI measurement and its ground truth.

    Attributes
    ----------
    intensity : torch.Tensor
        ``(n, n, n)`` float32 counts, Bragg peak (q = 0) at ``n // 2``; 0 where ``mask``.
    obj : torch.Tensor
        ``(n, n, n)`` complex64 object ``rho = |rho| exp(iφ)``, amplitude-weighted centroid at
        ``n // 2`` (sub-voxel); ``|fft_centered(obj)|**2 * meta["intensity_scale"]`` is the
        noise-free intensity (before blur and background).
    phase : torch.Tensor
        ``(n, n, n)`` float32 *unwrapped* real-space phase ``φ = |G| u·ĝ`` (rad) as built,
        ``obj = |obj| exp(i phase)``; 0 where ``|obj| = 0``. Dislocations make it jump by
        ``2π·winding`` across their branch cuts.
    support : torch.Tensor
        ``(n, n, n)`` bool, ``|obj| > 0.5``.
    phase_q : torch.Tensor
        ``(n, n, n)`` float32 reciprocal-space phase ``angle(fft_centered(obj))`` (the model's
        target), noise-free.
    mask : torch.Tensor
        ``(n, n, n)`` bool, True = bad pixel (detector gaps).
    spec : CrystalSpec
        Everything needed to reproduce the crystal.
    meta : dict
        JSON-able summary: ``n``, ``shape``, ``strain_models`` (kinds), ``phase_span`` (measured
        peak-to-peak phase inside the support, rad, including dislocation branch cuts),
        ``phase_span_smooth`` (requested), ``phase_gradient_mean`` and ``phase_gradient_max``
        (``|∇φ|`` in rad/voxel inside the support; above ~π/2 the pattern reaches the grid
        edge), ``g_hat``,
        ``peak_counts``, ``intensity_scale``, ``oversampling`` (requested),
        ``oversampling_measured`` (``n`` / largest support extent), ``extent`` (voxels along
        z, y, x), ``support_voxels``, ``centroid`` (z, y, x), ``dislocations`` (kind, winding,
        ``point`` on the final grid, ``line``), ``faults`` (``point`` on the final grid,
        ``normal``, ``jump``, ``width`` in voxels), ``loops`` (``centre`` on the final grid,
        ``normal``, ``radius`` in voxels, ``winding``), ``substrate_cut``, ``background``,
        ``blur_sigma``, ``gaps``, ``seed``.
    """

    intensity: torch.Tensor
    obj: torch.Tensor
    phase: torch.Tensor
    support: torch.Tensor
    phase_q: torch.Tensor
    mask: torch.Tensor
    spec: CrystalSpec
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def amplitude(self) -> torch.Tensor:
        """``|obj|`` (float32)."""
        return self.obj.abs()


@dataclass
class SimulatedBatch:
    """A batch of simulated crystals: the tensors of :class:`SimulatedCrystal` with a leading
    batch dimension ``(B, n, n, n)``, plus one spec and one meta dict per crystal.

    ``len(batch)`` is ``B``; ``batch[i]`` is the i-th :class:`SimulatedCrystal` (views);
    iterating yields them in order.
    """

    intensity: torch.Tensor
    obj: torch.Tensor
    phase: torch.Tensor
    support: torch.Tensor
    phase_q: torch.Tensor
    mask: torch.Tensor
    specs: tuple[CrystalSpec, ...]
    meta: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, i: int) -> SimulatedCrystal:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a batch of {len(self)}")
        return SimulatedCrystal(
            intensity=self.intensity[i],
            obj=self.obj[i],
            phase=self.phase[i],
            support=self.support[i],
            phase_q=self.phase_q[i],
            mask=self.mask[i],
            spec=self.specs[i],
            meta=self.meta[i],
        )

    def __iter__(self) -> Iterator[SimulatedCrystal]:
        return (self[i] for i in range(len(self)))


# ---------------------------------------------------------------------------- public API
def simulate_crystal(
    spec_or_seed: CrystalSpec | int,
    *,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> SimulatedCrystal:
    """Simulate one strained crystal and its diffraction pattern.

    Parameters
    ----------
    spec_or_seed : CrystalSpec or int
        A spec, or a seed for :meth:`CrystalSpec.random`.
    device : str, torch.device or None
        Compute device; ``None`` or ``"auto"`` picks CUDA when present, else the CPU.
    **kwargs
        With a seed: arguments of :meth:`CrystalSpec.random` (``n``, ``strain``, ``shapes``,
        ``strain_models``, ``peak_counts``, ``oversampling``, ``g_hat``,
        ``dislocation_probability``, ``fault_probability``, ``loop_probability``,
        ``field_probability``, ``network_probability``, ``coherence_probability``,
        ``habit_probability``); any
        other key overrides that field of the drawn spec (e.g. ``poisson=False``,
        ``gaps=()``). With a spec: field overrides.

    Returns
    -------
    SimulatedCrystal

    Examples
    --------
    >>> sim = simulate_crystal(7, n=32, strain="weak")
    >>> sim.intensity.shape
    torch.Size([32, 32, 32])
    """
    spec = _to_spec(spec_or_seed, kwargs, name="spec_or_seed")
    return _simulate([spec], resolve_device(device))[0]


def simulate_batch(
    seeds: Sequence[int | CrystalSpec],
    n: int = 64,
    strain: str | tuple[float, float] = "any",
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    **kwargs: Any,
) -> SimulatedBatch:
    """Simulate a batch of crystals at once (vectorised in torch, on any device).

    Each crystal is identical (to float rounding) to ``simulate_crystal(seed, n=n,
    strain=strain, **kwargs)``.

    Parameters
    ----------
    seeds : sequence of int or CrystalSpec
        One entry per crystal: a seed for :meth:`CrystalSpec.random`, or a ready spec. All
        crystals must share the same ``n``.
    n : int
        Grid side for the seeds, in [16, 1024] (checked even when every entry is a spec).
    strain : str or (lo, hi)
        Strain level for the seeds (see :meth:`CrystalSpec.random`).
    device : str, torch.device or None
        Compute device; ``None`` or ``"auto"`` picks CUDA when present, else the CPU.
    chunk_size : int, optional
        Crystals vectorised together. Default: 1 on a CPU (the work is memory-bound and a
        batch's arrays fall out of cache, so one at a time is fastest), 64 on a GPU.
    **kwargs
        As for :func:`simulate_crystal`.

    Returns
    -------
    SimulatedBatch
    """
    if isinstance(seeds, (str, bytes, CrystalSpec)) or not isinstance(seeds, Sequence):
        raise ValueError(
            f"seeds must be a sequence of ints or CrystalSpecs, got {type(seeds).__name__}"
        )
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty")
    n = _int("n", n, 16, 1024)  # checked even when every entry is a spec
    _check_strain(strain)
    specs = []
    for s in seeds:
        kw = dict(kwargs)
        if not isinstance(s, CrystalSpec):
            kw.update(n=n, strain=strain)
        specs.append(_to_spec(s, kw, name="seeds"))
    if len({s.n for s in specs}) != 1:
        raise ValueError(
            f"seeds must all give the same grid size n, got {sorted({s.n for s in specs})}"
        )
    dev = resolve_device(device)
    if chunk_size is None:
        chunk = 1 if dev.type == "cpu" else _GPU_CHUNK
    elif (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    else:
        chunk = int(chunk_size)
    parts = [_simulate(specs[i : i + chunk], dev) for i in range(0, len(specs), chunk)]
    assert all(p is not None for p in parts)  # no cap, no crystal dropped
    if len(parts) == 1:
        return parts[0]
    return SimulatedBatch(
        intensity=torch.cat([p.intensity for p in parts]),
        obj=torch.cat([p.obj for p in parts]),
        phase=torch.cat([p.phase for p in parts]),
        support=torch.cat([p.support for p in parts]),
        phase_q=torch.cat([p.phase_q for p in parts]),
        mask=torch.cat([p.mask for p in parts]),
        specs=tuple(specs),
        meta=[mm for p in parts for mm in p.meta],
    )


def simulate_capped(
    specs: Sequence[CrystalSpec],
    max_gradient_mean: Sequence[float | None],
    device: str | torch.device | None = None,
) -> list[SimulatedCrystal | None]:
    """Simulate crystals, dropping those whose mean phase gradient exceeds a cap.

    ``None`` in place of each crystal whose ``meta["phase_gradient_mean"]`` exceeds its cap;
    every other crystal is the one :func:`simulate_batch` gives. On a CPU a crystal over its
    cap stops before its diffraction, blur and noise (over half the cost of a rejected draw);
    on a GPU the batch is simulated whole and screened after.

    Parameters
    ----------
    specs : sequence of CrystalSpec
        The crystals, all on the same grid.
    max_gradient_mean : sequence of float or None
        One cap (rad/voxel, a finite number >= 0) per crystal; ``None``: no cap.
    device : str, torch.device or None
        As for :func:`simulate_batch`.

    Returns
    -------
    list of SimulatedCrystal or None
    """
    if isinstance(specs, (str, bytes, CrystalSpec)) or not isinstance(specs, Sequence):
        raise ValueError(f"specs must be a sequence of CrystalSpecs, got {type(specs).__name__}")
    for i, spec in enumerate(specs):
        if not isinstance(spec, CrystalSpec):
            raise ValueError(f"specs[{i}] must be a CrystalSpec, got {type(spec).__name__}")
    if isinstance(max_gradient_mean, (str, bytes)) or not isinstance(max_gradient_mean, Sequence):
        raise ValueError("max_gradient_mean must be a sequence of caps (float or None), got "
                         f"{type(max_gradient_mean).__name__}")
    if len(max_gradient_mean) != len(specs):
        raise ValueError(f"max_gradient_mean must have one entry per spec ({len(specs)}), "
                         f"got {len(max_gradient_mean)}")
    for i, cap in enumerate(max_gradient_mean):
        if cap is not None and not (_is_number(cap) and 0 <= cap < math.inf):
            raise ValueError(
                f"max_gradient_mean[{i}] must be None or a finite number >= 0, got {cap!r}")
    if len({s.n for s in specs}) > 1:
        raise ValueError(
            f"specs must all have the same grid size n, got {sorted({s.n for s in specs})}")
    dev = resolve_device(device)
    if not specs:
        return []
    if dev.type != "cpu":
        batch = simulate_batch(list(specs), device=dev)
        return [c if cap is None or c.meta["phase_gradient_mean"] <= cap else None
                for c, cap in zip(batch, max_gradient_mean, strict=True)]
    out: list[SimulatedCrystal | None] = []
    for spec, cap in zip(specs, max_gradient_mean, strict=True):
        one = _simulate([_to_spec(spec, {}, name="specs")], dev, cap)
        out.append(None if one is None else one[0])
    return out


def _to_spec(spec_or_seed: Any, kwargs: dict[str, Any], name: str) -> CrystalSpec:
    if isinstance(spec_or_seed, CrystalSpec):
        return spec_or_seed.replace(**kwargs) if kwargs else spec_or_seed
    if isinstance(spec_or_seed, bool) or not isinstance(spec_or_seed, (int, np.integer)):
        raise ValueError(f"{name} must be a CrystalSpec or an int seed, got {spec_or_seed!r}")
    rkw = {k: v for k, v in kwargs.items() if k in _RANDOM_KWARGS}
    over = {k: v for k, v in kwargs.items() if k not in _RANDOM_KWARGS}
    spec = CrystalSpec.random(int(spec_or_seed), **rkw)
    return spec.replace(**over) if over else spec


# ---------------------------------------------------------------------------- the engine
def _pad_stack(rows: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), width, *rows[0].shape[1:]), fill, dtype=np.float64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _simulate(specs: list[CrystalSpec], device: torch.device,
              max_gradient_mean: float | None = None) -> SimulatedBatch | None:
    """The engine; ``None`` for one crystal over ``max_gradient_mean`` (before diffraction)."""
    n = specs[0].n
    nb = len(specs)
    f32, f64 = torch.float32, torch.float64
    geoms: list[Geometry] = [
        build_geometry(
            s.n,
            s.shape,
            s.shape_params,
            s.rotation,
            s.oversampling,
            s.substrate_cut,
            s.substrate_normal,
        )
        for s in specs
    ]

    def tens(a: Any, dtype: torch.dtype = f32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=device)

    def col(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, 1, 1, 1)

    # --- a box around each crystal (common side m, per-crystal integer start)
    lo = np.stack([g.origin + g.lo for g in geoms])
    hi = np.stack([g.origin + g.hi for g in geoms])
    margin = _BOX_MARGIN + math.ceil(max(s.edge_width for s in specs) / 2)
    first = np.floor(lo).astype(int) - margin
    m = int(min(n, (np.ceil(hi).astype(int) + margin - first + 1).max()))
    starts = np.clip(first, 0, n - m)
    starts_t = torch.as_tensor(starts, dtype=f64, device=device)
    base = starts_t[:, :, None] + torch.arange(m, dtype=f64, device=device)  # (B, 3, m)
    geom_origin = tens(np.stack([g.origin for g in geoms]), f64)

    def coords(origin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = (base - origin[:, :, None]).to(f32)
        return (
            pos[:, 0].reshape(nb, m, 1, 1),
            pos[:, 1].reshape(nb, 1, m, 1),
            pos[:, 2].reshape(nb, 1, 1, m),
        )

    sizes = tens([g.size for g in geoms])
    centroids = tens(np.stack([g.centroid for g in geoms]))
    g_hat = tens([s.g_hat for s in specs])

    # --- white noise: one CPU generator per crystal, drawn in a fixed order
    gens = [torch.Generator().manual_seed(s.seed) for s in specs]
    rshape = (n, n, n // 2 + 1)

    def white(i: int) -> torch.Tensor:
        return torch.view_as_complex(torch.randn((*rshape, 2), generator=gens[i]))

    smooth_models = [[mm for mm in s.strain_models if mm["kind"] == "smooth"] for s in specs]
    smooth_noise = [[white(i) for _ in smooth_models[i]] for i in range(nb)]
    mod_noise = [white(i) if s.amp_modulation > 0 else None for i, s in enumerate(specs)]

    def grf_box(
        noises: list[torch.Tensor | None], lengths: list[float], unit_std: bool = False
    ) -> torch.Tensor:
        """Random fields of the crystals that have noise, cropped to their boxes (0 elsewhere);
        ``unit_std`` scales each field to unit standard deviation over the whole grid."""
        idx = [i for i, z in enumerate(noises) if z is not None]
        out = torch.zeros((nb, m, m, m), dtype=f32, device=device)
        if idx:
            stack = torch.stack([noises[i] for i in idx]).to(device)
            full = fld.gaussian_random_field(stack, tens([lengths[i] for i in idx]), n)
            if unit_std:
                full = full / full.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30)
            for k, i in enumerate(idx):
                a, b, c = starts[i]
                out[i] = full[k, a : a + m, b : b + m, c : c + m]
        return out

    # --- amplitude, placed so that its amplitude-weighted centroid is exactly n // 2
    n_planes = max(len(g.offsets) for g in geoms)
    normals = tens(_pad_stack([g.normals for g in geoms], n_planes, 0.0)).reshape(nb, n_planes, 3)
    offsets = tens(_pad_stack([g.offsets for g in geoms], n_planes, 1e30)).reshape(nb, n_planes)
    radius = tens([g.radius for g in geoms])
    edge = tens([s.edge_width for s in specs])
    modulation = None
    if any(s.amp_modulation > 0 for s in specs):
        mod = grf_box(mod_noise, [_MODULATION_LENGTH * g.size for g in geoms], unit_std=True)
        mod = mod.clamp_(-2.5, 2.5)
        modulation = 1.0 + col(tens([s.amp_modulation for s in specs])) * mod
    centre = torch.full((nb, 3), float(n // 2), dtype=f64, device=device)
    origin = geom_origin.clone()
    for it in range(_CENTRING_ITERS):
        zyx = coords(origin)
        amp = fld.polytope_amplitude(zyx, normals, offsets, radius, edge)
        if modulation is not None:
            amp = amp * modulation
        offset = centre - (centroid(amp) + starts_t)
        todo = offset.abs().amax(dim=1) >= _CENTRING_TOL / 10
        if not bool(todo.any()) or it == _CENTRING_ITERS - 1:
            break
        origin = origin + offset * todo[:, None]  # converged crystals stay put
    support = amp > 0.5
    weight = amp * amp

    # --- smooth phase: components normalised, weighted, summed, ramp removed, scaled
    smooth = torch.zeros_like(amp)

    def add_component(values: torch.Tensor, weights: list[float]) -> None:
        nonlocal smooth
        ptp, mid = fld.masked_ptp(values, support)
        w = tens(weights) / ptp.clamp_min(1e-20)
        smooth = smooth + col(w) * (values - col(mid))

    for j in range(max(len(p) for p in smooth_models)):
        lengths = [
            p[j]["length"] * g.size if j < len(p) else 1.0
            for p, g in zip(smooth_models, geoms, strict=True)
        ]
        weights = [p[j]["weight"] if j < len(p) else 0.0 for p in smooth_models]
        add_component(
            grf_box([z[j] if j < len(z) else None for z in smooth_noise], lengths), weights
        )
    per = [[mm for mm in s.strain_models if mm["kind"] == "interface"] for s in specs]
    for j in range(max(len(p) for p in per)):
        mm = [p[j] if j < len(p) else {"weight": 0.0, "decay": 1.0, "lateral": 0.0} for p in per]
        vals = fld.interface_phase(
            zyx,
            tens(np.stack([g.interface_normal for g in geoms])),
            tens([g.interface_offset for g in geoms]),
            centroids,
            tens([x["decay"] for x in mm]) * sizes,
            tens([x["lateral"] for x in mm]),
            sizes / 2,
        )
        add_component(vals, [x["weight"] for x in mm])
    per = [[mm for mm in s.strain_models if mm["kind"] == "core_shell"] for s in specs]
    for j in range(max(len(p) for p in per)):
        mm = [
            p[j] if j < len(p) else {"weight": 0.0, "radius": 0.1, "offset": [0, 0, 0]} for p in per
        ]
        core = centroids + tens([x["offset"] for x in mm]) * sizes[:, None]
        vals = fld.core_shell_phase(zyx, core, tens([x["radius"] for x in mm]) * sizes, g_hat)
        add_component(vals, [x["weight"] for x in mm])
    per = [[mm for mm in s.strain_models if mm["kind"] == "polynomial"] for s in specs]
    for j in range(max(len(p) for p in per)):
        mm = [p[j] if j < len(p) else {"weight": 0.0, "coefficients": [0.0] * len(POLYNOMIAL_TERMS)}
              for p in per]
        vals = fld.polynomial_phase(zyx, centroids, sizes / 2,
                                    tens([x["coefficients"] for x in mm]), POLYNOMIAL_TERMS)
        add_component(vals, [x["weight"] for x in mm])
    if any(any(mm["kind"] in SMOOTH_MODELS for mm in s.strain_models) for s in specs):
        smooth = fld.remove_ramp(smooth, weight, zyx)
        ptp, mid = fld.masked_ptp(smooth, support)
        span = tens([s.phase_span for s in specs])
        smooth = (smooth - col(mid)) * col(span / ptp.clamp_min(1e-20))

    # --- dislocations, faults and loops (ramp removed too), added on top
    phase = smooth
    disl = [[mm for mm in s.strain_models if mm["kind"] in DISLOCATION_MODELS] for s in specs]
    faults = [[mm for mm in s.strain_models if mm["kind"] in FAULT_MODELS] for s in specs]
    loops = [[mm for mm in s.strain_models if mm["kind"] in LOOP_MODELS] for s in specs]
    if max(len(d) + len(f) + len(lp) for d, f, lp in zip(disl, faults, loops, strict=True)):
        total = torch.zeros_like(amp)
        for j in range(max(len(d) for d in disl)):
            mm = [d[j] if j < len(d) else None for d in disl]
            lines = np.array([x["line"] if x else [1.0, 0.0, 0.0] for x in mm])
            burgers = []
            for x, t in zip(mm, lines, strict=True):
                if x is not None and x["kind"] == "edge":
                    burgers.append(x["burgers"])
                else:  # screw: any unit vector ⊥ line; it sets where the branch cut lies
                    a = np.eye(3)[int(np.argmin(np.abs(t)))]
                    b = a - (a @ t) * t
                    burgers.append(b / np.linalg.norm(b))
            total = total + fld.dislocation_phase(
                zyx,
                centroids + tens([x["point"] if x else [0, 0, 0] for x in mm]) * sizes[:, None],
                tens(lines),
                tens(burgers),
                tens([x["winding"] if x else 0 for x in mm]),
                tens([1.0 if x and x["kind"] == "edge" else 0.0 for x in mm]),
                tens([x.get("poisson_ratio", 0.3) if x else 0.3 for x in mm]),
                g_hat,
                sizes,
            )
        for j in range(max(len(f) for f in faults)):
            mm = [f[j] if j < len(f) else None for f in faults]
            normals_f = tens([x["normal"] if x else [1.0, 0.0, 0.0] for x in mm])
            offsets_f = tens([x["offset"] if x else 0.0 for x in mm]) * sizes
            total = total + fld.fault_phase(
                zyx,
                centroids + normals_f * offsets_f[:, None],
                normals_f,
                tens([x["jump"] if x else 0.0 for x in mm]),
                tens([x["width"] if x else 0.0 for x in mm]) * sizes,
            )
        for j in range(max(len(lp) for lp in loops)):
            # only the crystals with a j-th loop: the solid angle costs 48 triangles a voxel
            idx = [i for i, lp in enumerate(loops) if j < len(lp)]
            mm = [loops[i][j] for i in idx]
            at = torch.as_tensor(idx, device=device)
            total = total.index_add(0, at, fld.loop_phase(
                tuple(t[at] for t in zyx),
                centroids[at] + tens([x["centre"] for x in mm]) * sizes[at, None],
                tens([x["normal"] for x in mm]),
                tens([x["radius"] for x in mm]) * sizes[at],
                tens([x["winding"] for x in mm]),
            ))
        phase = phase + fld.remove_ramp(total, weight, zyx)

    span_meas, _ = fld.masked_ptp(phase, support)
    grad_mean, grad_max = fld.phase_gradient_stats(phase, support)
    if max_gradient_mean is not None and nb == 1 and grad_mean.tolist()[0] > max_gradient_mean:
        return None  # the meta's phase_gradient_mean would be this value
    phase = phase * amp.gt(0)  # zero where there is no crystal
    obj_box = torch.polar(amp, phase)

    # --- full grid; a Fourier shift removes any residual centring error
    obj = torch.zeros((nb, n, n, n), dtype=torch.complex64, device=device)
    phase_full = torch.zeros((nb, n, n, n), dtype=f32, device=device)
    for i, (a, b, c) in enumerate(starts):
        obj[i, a : a + m, b : b + m, c : c + m] = obj_box[i]
        phase_full[i, a : a + m, b : b + m, c : c + m] = phase[i]
    residual = centre - (centroid(amp) + starts_t)
    for i in torch.nonzero(residual.abs().amax(dim=1) > _CENTRING_TOL).flatten().tolist():
        for _ in range(_FOURIER_ITERS):  # only for crystals too small to centre analytically
            obj[i] = fourier_shift(obj[i], residual[i]).to(torch.complex64)
            origin[i] = origin[i] + residual[i]
            residual[i] = centre[i] - centroid(obj[i].abs())
            if float(residual[i].abs().max()) <= _CENTRING_TOL:
                break
    final_centroid = centroid(obj.abs())

    # --- diffraction and detector
    psi = fft_centered(obj)
    clean = psi.real.square() + psi.imag.square()
    phase_q = torch.angle(psi)
    scale = tens([s.peak_counts for s in specs]) / clean.amax(dim=(1, 2, 3)).clamp_min(1e-30)
    expected = clean * col(scale)
    mask = torch.stack([gap_mask(n, s.gaps, device) for s in specs])
    counts = []
    for i, s in enumerate(specs):
        rate = coherence_blur(detector_blur(expected[i], s.blur_sigma), s.coherence)
        if s.background > 0:
            rate = rate + s.background
        if s.poisson:
            gen = (
                gens[i]
                if device.type == "cpu"
                else torch.Generator(device=device).manual_seed(s.seed)
            )
            rate = poisson_noise(rate, gen)
        counts.append(rate)
    intensity = torch.stack(counts).to(f32).masked_fill_(mask, 0.0)
    support_full = obj.abs() > 0.5

    # --- meta
    moved = (origin - geom_origin).cpu().numpy()
    span_l, scale_l = span_meas.tolist(), scale.tolist()
    gmean_l, gmax_l = grad_mean.tolist(), grad_max.tolist()
    cen_l = final_centroid.tolist()
    n_support = support_full.sum(dim=(1, 2, 3)).tolist()
    metas = []
    for i, (s, g) in enumerate(zip(specs, geoms, strict=True)):
        ext = []
        for ax in range(3):
            other = tuple(d for d in (0, 1, 2) if d != ax)
            prof = torch.nonzero(support_full[i].any(dim=other[1]).any(dim=other[0])).flatten()
            ext.append(int(prof.max() - prof.min() + 1) if prof.numel() else 0)
        here = g.origin + moved[i] + g.centroid  # the crystal's centroid on the final grid

        def on_grid(offset: np.ndarray, here: np.ndarray = here) -> list[float]:
            """A point ``offset`` voxels from the centroid, on the final grid."""
            return [float(v) for v in here + offset]

        dls = [
            {"kind": mm["kind"], "winding": mm["winding"],
             "point": on_grid(np.asarray(mm["point"]) * g.size), "line": list(mm["line"])}
            for mm in s.strain_models if mm["kind"] in DISLOCATION_MODELS
        ]
        fts = [
            {"point": on_grid(np.asarray(mm["normal"]) * (mm["offset"] * g.size)),
             "normal": list(mm["normal"]), "jump": float(mm["jump"]),
             "width": float(mm["width"] * g.size)}
            for mm in s.strain_models if mm["kind"] in FAULT_MODELS
        ]
        lps = [
            {"centre": on_grid(np.asarray(mm["centre"]) * g.size), "normal": list(mm["normal"]),
             "radius": float(mm["radius"] * g.size), "winding": int(mm["winding"])}
            for mm in s.strain_models if mm["kind"] in LOOP_MODELS
        ]
        metas.append(
            {
                "n": n,
                "shape": s.shape,
                "strain_models": [mm["kind"] for mm in s.strain_models],
                "phase_span": float(span_l[i]),
                "phase_span_smooth": float(s.phase_span),
                "phase_gradient_mean": float(gmean_l[i]),
                "phase_gradient_max": float(gmax_l[i]),
                "g_hat": list(s.g_hat),
                "peak_counts": float(s.peak_counts),
                "intensity_scale": float(scale_l[i]),
                "oversampling": float(s.oversampling),
                "oversampling_measured": float(n / max(max(ext), 1)),
                "extent": ext,
                "support_voxels": int(n_support[i]),
                "size": float(g.size),
                "centroid": [float(v) for v in cen_l[i]],
                "dislocations": dls,
                "faults": fts,
                "loops": lps,
                "substrate_cut": float(s.substrate_cut),
                "background": float(s.background),
                "blur_sigma": float(s.blur_sigma),
                "coherence": [float(v) for v in s.coherence],
                "gaps": [list(gp) for gp in s.gaps],
                "poisson": bool(s.poisson),
                "seed": int(s.seed),
            }
        )
    return SimulatedBatch(
        intensity=intensity,
        obj=obj,
        phase=phase_full,
        support=support_full,
        phase_q=phase_q.to(f32),
        mask=mask,
        specs=tuple(specs),
        meta=metas,
    )
