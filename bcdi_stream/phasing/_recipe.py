"""The PyNX-style conventional recipe and ER refinement of an initial guess."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..arrays import resolve_device
from ..config import PhasingSettings
from ..physics import SPATIAL_DIMS, periodic_centroid
from ._common import (
    ProgressCallback,
    check_int,
    check_intensity,
    check_mask,
    check_object,
    check_progress,
    check_settings,
    check_support,
    run_seed,
)
from ._engine import Engine, random_start
from ._kernels import Kernels, Measured, prepare_measured
from ._psf import CORR_MAX, Sigma, pack_psf, parse_psf
from ._support import AUTOCORR_THRESHOLD, autocorrelation_support, halve_support, shrinkwrap_support

__all__ = ["PhasingResult", "refine_er", "run_conventional", "warmup"]

#: ``compile="auto"`` builds the fused kernels when a job has at least this many
#: voxel-iterations (runs x iterations x voxels; the default recipe on 64**3 has 4.2e9): below
#: it the one-off compile time (seconds) outweighs the gain (~30 % of an iteration).
AUTO_COMPILE_WORK = 2e9

CompileOption = bool | Literal["auto", "on", "off"] | None
PsfOption = str | float | tuple[float, ...] | None

#: ``psf="auto"``: the PSF widths are first estimated after this fraction of the iterations
#: (the object must already resemble the crystal), then every :data:`PSF_EVERY` iterations,
#: the last :data:`PSF_EVERY` running with the final widths.
PSF_START = 0.25
PSF_EVERY = 50


@dataclass
class PhasingResult:
    """Outcome of a phasing job.

    Attributes
    ----------
    obj : torch.Tensor
        Best complex64 object ``(z, y, x)``, centred (support centroid on the grid centre for
        the conventional recipe), such that ``|fft_centered(obj)|**2 ~ I`` up to a scale.
    support : torch.Tensor
        Its bool support, same grid.
    llk : float
        Normalised Poisson log-likelihood of ``obj`` (PyNX style, ~1 for a good fit).
    chi2 : float
        Normalised chi-square of ``obj``.
    llk_runs, chi2_runs : list of float
        The same for every run, in run order.
    best_run : int
        Index of the run kept (lowest LLK).
    iterations : int
        Iterations per run.
    algorithm : str
        The chain that ran, e.g. ``"RAAR600 ER200"``.
    timings : dict of str to float
        Wall times in seconds: ``setup``, ``iterate``, ``support``, ``quality``, ``total``, and
        ``per_iteration`` (iterate time per run-iteration).
    seed : int
        Base seed (run ``i`` uses a seed derived from ``(seed, i)``).
    device : str
        Compute device.
    compiled : bool
        Whether the fused torch.compile kernels ran.
    psf_sigma : tuple of 3 or 4 floats
        Gaussian PSF widths ``(z, y, x)`` in pixels of the kept run's intensity model, followed
        by the ``y, x`` correlation where the kernel has one (estimated with ``psf="auto"``,
        given with a fixed ``psf``; zeros: no PSF).
    psf : str
        The PSF mode that ran: ``"off"``, ``"auto"`` or ``"fixed"``.
    """

    obj: torch.Tensor
    support: torch.Tensor
    llk: float
    chi2: float
    llk_runs: list[float]
    chi2_runs: list[float]
    best_run: int
    iterations: int
    algorithm: str
    timings: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    compiled: bool = False
    psf_sigma: Sigma = (0.0, 0.0, 0.0)
    psf: str = "off"

    @property
    def runs(self) -> int:
        """Number of runs."""
        return len(self.llk_runs)


# ---------------------------------------------------------------------------- helpers
def resolve_compile(option: Any, device: torch.device, work: float) -> bool:
    """Decide whether to use the compiled kernels.

    ``None``/``"auto"``: on a CPU when the job is large (:data:`AUTO_COMPILE_WORK`); eager on
    other devices. The job alone decides, not whether the kernels are already built in this
    process: eager and fused kernels round differently and the iterations amplify it, so a
    short refinement's result must not depend on what ran before it (until session 17 a
    process that had run the conventional recipe refined later scans with the fused kernels:
    the same scan scored 0.28 or 0.33 rad depending on what preceded it). ``True``/``"on"``,
    ``False``/``"off"`` force it.
    """
    if option is None or option == "auto":
        return device.type == "cpu" and work >= AUTO_COMPILE_WORK
    if option is True or option == "on":
        return True
    if option is False or option == "off":
        return False
    raise ValueError(f"compile must be True, False, None, 'auto', 'on' or 'off', got {option!r}")


def warmup(device: str | torch.device | None = None) -> bool:
    """Build the fused torch.compile kernels now (e.g. when a worker starts).

    Parameters
    ----------
    device : str or torch.device, optional
        Device type to build for (default: auto).

    Returns
    -------
    bool
        True if the compiled kernels are available.
    """
    return Kernels(resolve_device(device), compiled=True).compiled


def _available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return 4 * 1024**3
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def _chunk_size(requested: int, runs: int, voxels: int, device: torch.device) -> int:
    """Runs held in memory at once: ``settings.batch``, or what half the free memory allows."""
    if requested > 0:
        return min(requested, runs)
    per_run = 48 * voxels  # rho 8, support 5, FFT temporaries 16+, shrink-wrap 16 bytes/voxel
    return max(1, min(runs, int(0.5 * _available_memory(device)) // per_run))


def _build_plan(
    n_raar: int,
    n_hio: int,
    n_er: int,
    every: int,
    sigma_start: float,
    sigma_end: float,
    shrinkwrap: bool,
    detwin: bool,
    psf_marks: frozenset[int] | set[int] = frozenset(),
    psf_wide: bool = True,
) -> list[tuple]:
    """Segments and events of a recipe.

    Items: ``("iter", algo, n)``, ``("shrinkwrap", sigma)``, ``("detwin",)``, ``("restore",)``.
    Shrink-wrap runs every ``every`` iterations (not in the last ``every``), with the smoothing
    width decreasing geometrically from ``sigma_start`` to ``sigma_end`` over the run. Detwinning
    halves the support right after the first shrink-wrap and restores it ``every // 2``
    iterations later (PyNX ``DetwinRAAR``/``DetwinHIO``), only within the RAAR/HIO stage.
    ``("psf", wide)`` re-estimates the PSF widths at the iterations ``psf_marks`` (``wide`` at
    the first one unless ``psf_wide`` is False: local estimates around given starting widths),
    before a shrink-wrap due at the same iteration.
    """
    total = n_raar + n_hio + n_er
    sw = set(range(every, total - every + 1, every)) if shrinkwrap else set()
    d_start, d_end = every, every + max(1, every // 2)
    use_detwin = detwin and every >= 2 and d_end <= n_raar + n_hio and d_end < total
    stage_ends = {n_raar, n_raar + n_hio}
    psf_set = {m for m in psf_marks if 0 < m < total}
    first_psf = min(psf_set) if psf_set else -1
    marks = sorted({m for m in sw | stage_ends | psf_set
                    | ({d_start, d_end} if use_detwin else set()) if 0 < m < total})

    def algo_at(it: int) -> str:
        return "RAAR" if it < n_raar else ("HIO" if it < n_raar + n_hio else "ER")

    plan: list[tuple] = []
    it = 0
    for m in [*marks, total]:
        if m > it:
            plan.append(("iter", algo_at(it), m - it))
            it = m
        if m >= total:
            break
        if use_detwin and m == d_end:
            plan.append(("restore",))
        if m in psf_set:
            plan.append(("psf", psf_wide and m == first_psf))
        if m in sw and not (use_detwin and d_start < m < d_end):
            frac = m / total
            plan.append(("shrinkwrap", sigma_start * (sigma_end / sigma_start) ** frac))
        if use_detwin and m == d_start:
            plan.append(("detwin",))
    return plan


def _algorithm_name(n_raar: int, n_hio: int, n_er: int) -> str:
    parts = [f"{name}{n}" for name, n in (("RAAR", n_raar), ("HIO", n_hio), ("ER", n_er)) if n]
    return " ".join(parts) if parts else "none"


def _recentre(obj: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer roll putting the support's centroid on the grid centre (an object split
    across the periodic grid's edge counts whole: :func:`periodic_centroid`)."""
    c = periodic_centroid(support.to(torch.float32))
    shifts = [int(n // 2 - round(float(ci))) for n, ci in zip(support.shape, c, strict=True)]
    return (
        torch.roll(obj, shifts, dims=SPATIAL_DIMS),
        torch.roll(support, shifts, dims=SPATIAL_DIMS),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times = dict.fromkeys(("setup", "iterate", "support", "psf", "quality"), 0.0)
        self._t = time.perf_counter()

    def lap(self, key: str) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.times[key] += now - self._t
        self._t = now


def _execute(
    plan: list[tuple],
    eng: Engine,
    settings: PhasingSettings,
    run_ids: list[int],
    clock: _Clock,
    tick: Callable[[int], None] | None,
) -> None:
    saved: torch.Tensor | None = None
    for step in plan:
        kind = step[0]
        if kind == "iter":
            eng.iterate(step[1], step[2], settings.beta, tick)
            clock.lap("iterate")
            continue
        if kind == "shrinkwrap":
            eng.set_support(
                shrinkwrap_support(eng.rho, step[1], settings.shrinkwrap_threshold, eng.support)
            )
        elif kind == "detwin":
            saved = eng.support.clone()
            eng.set_support(halve_support(saved, [r % 3 for r in run_ids]))
        elif kind == "restore" and saved is not None:
            eng.set_support(saved)
            saved = None
        elif kind == "psf":
            eng.estimate_psf(wide=step[1])
            clock.lap("psf")
            continue
        clock.lap("support")


def _psf_marks(mode: str, total: int) -> frozenset[int]:
    """Iterations at which ``psf="auto"`` re-estimates the PSF (none for other modes)."""
    if mode != "auto" or total < 2 * PSF_EVERY:
        return frozenset()
    start = max(1, round(PSF_START * total))
    return frozenset(range(start, total - PSF_EVERY + 1, PSF_EVERY))


def _psf_start(mode: str, sigma: Sigma, start: Sigma | None) -> tuple[Sigma, bool]:
    """Widths to start from, and whether the ``auto`` estimates are local (a given start)."""
    if start is None or mode != "auto":
        return sigma, False
    vals = tuple(float(v) for v in start)
    if (len(vals) not in (3, 4) or not all(math.isfinite(v) and v >= 0 for v in vals[:3])
            or not (len(vals) == 3 or (math.isfinite(vals[3]) and abs(vals[3]) <= CORR_MAX))):
        raise ValueError(
            f"psf_start must be 3 finite widths >= 0, optionally then a y, x correlation "
            f"|r| <= {CORR_MAX}, got {start!r}"
        )
    return pack_psf(*vals), True


def _resolve_psf(option: Any, settings: PhasingSettings) -> tuple[str, Sigma]:
    if option is None:
        option = getattr(settings, "psf", "auto")
    return parse_psf(option)


@dataclass
class _Setup:
    """What both recipes derive from their arguments: kernels, PSF handling and the plan."""

    kernels: Kernels
    psf_mode: str
    psf_sigma0: Sigma
    local_psf: bool
    plan: list[tuple]

    def engine(self, meas: Measured, rho: torch.Tensor, support: torch.Tensor) -> Engine:
        """An engine on ``rho``/``support`` with the starting PSF set where one is given."""
        eng = Engine(meas, rho, support, self.kernels)
        if self.psf_mode == "fixed" or self.local_psf:
            eng.set_psf(self.psf_sigma0)
        return eng


def _setup(settings: PhasingSettings, dev: torch.device, meas: Measured, total: int,
           iterations: tuple[int, int, int], *, shrinkwrap: bool, detwin: bool,
           compile: CompileOption, psf: PsfOption, psf_start: Sigma | None) -> _Setup:
    """Resolve the kernels and the PSF option, and build the iteration plan."""
    if compile is None:
        compile = getattr(settings, "compile", None)
    kernels = Kernels(dev, resolve_compile(compile, dev, float(total) * meas.voxels))
    psf_mode, psf_sigma0 = _resolve_psf(psf, settings)
    psf_sigma0, local = _psf_start(psf_mode, psf_sigma0, psf_start)
    plan = _build_plan(
        *iterations,
        settings.shrinkwrap_every,
        settings.shrinkwrap_sigma_start,
        settings.shrinkwrap_sigma_end,
        shrinkwrap=shrinkwrap,
        detwin=detwin,
        psf_marks=_psf_marks(psf_mode, sum(iterations)),
        psf_wide=not local,
    )
    return _Setup(kernels, psf_mode, psf_sigma0, local, plan)


def _ticker(total: int, progress: ProgressCallback | None) -> Callable[[int], None]:
    """``tick(k)``: ``k`` more run-iterations done, reported to ``progress``."""
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    return tick


def _timings(clock: _Clock, t0: float, total: int) -> dict[str, float]:
    timings = dict(clock.times)
    timings["total"] = time.perf_counter() - t0
    timings["per_iteration"] = timings["iterate"] / total if total else 0.0
    return timings


# ---------------------------------------------------------------------------- recipes
def run_conventional(
    intensity: Any,
    mask: Any = None,
    settings: PhasingSettings | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
    *,
    support: Any = None,
    obj_init: Any = None,
    detwin: bool = True,
    compile: CompileOption = None,
    psf: PsfOption = None,
    psf_start: Sigma | None = None,
) -> PhasingResult:
    """PyNX-style conventional phasing: N random starts, RAAR/HIO/ER + shrink-wrap, best LLK.

    Each run starts from the measured modulus with uniform random phases (or ``obj_init``),
    inside the autocorrelation support (or ``support``); runs ``settings.n_raar`` RAAR, then
    ``n_hio`` HIO, then ``n_er`` ER iterations; updates the support by shrink-wrap every
    ``settings.shrinkwrap_every`` iterations; halves the support for a few iterations after the
    first update to break the twin symmetry (``detwin``, axis = run index mod 3). The runs are a
    batch dimension (``settings.batch`` runs in memory at once; 0 = as many as half the free
    memory holds). The run with the lowest Poisson LLK is returned.

    Parameters
    ----------
    intensity : array-like
        Centred 3D intensity (counts, Bragg peak at ``N // 2``); numpy, torch or cupy.
        Negative values are treated as masked.
    mask : array-like, optional
        Bad pixels (nonzero = masked), left free by the modulus projection and excluded from the
        LLK.
    settings : PhasingSettings, optional
        Recipe parameters (defaults: 20 runs, RAAR 600 + ER 200, beta 0.9, shrink-wrap every
        20 iterations, sigma 2 -> 0.5, threshold 0.2).
    seed : int
        Base seed; run ``i`` is seeded from ``(seed, i)``, so results do not depend on batching.
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``..., default auto.
    progress : callable, optional
        ``progress(done, total)`` in run-iterations, called as work completes.
    support : array-like, optional
        Initial centred support ``(z, y, x)`` or per run ``(runs, z, y, x)`` instead of the
        autocorrelation support.
    obj_init : array-like, optional
        Initial centred object ``(z, y, x)`` (shared) or per run ``(runs, z, y, x)`` instead of
        random starts.
    detwin : bool
        Apply the PyNX-style support halving.
    compile : bool, "auto", "on", "off" or None
        Fused torch.compile kernels (see :func:`resolve_compile`); ``None`` uses
        ``settings.compile`` when that setting exists, else ``"auto"``.
    psf : "auto", "off", float, tuple or None
        Blur-aware modulus constraint (detector PSF / partial coherence, see
        :mod:`bcdi_stream.phasing._psf`): ``"auto"`` estimates a Gaussian PSF per run by LLK
        from :data:`PSF_START` of the iterations on; ``"off"`` is the plain constraint; a number
        fixes the width on the detector axes ``(y, x)``, a 2- or 3-sequence the widths
        ``(y, x)`` or ``(z, y, x)``, a 4-sequence ``(z, y, x, r)`` the widths and the ``y, x``
        correlation of an oblique kernel (which ``"auto"`` estimates too). ``None`` uses
        ``settings.psf`` when that setting exists, else ``"auto"``.
    psf_start : tuple of 3 or 4 floats, optional
        With ``psf="auto"``: the widths ``(z, y, x)`` (and ``y, x`` correlation) the runs start
        with (e.g. estimated from the AI prediction,
        :func:`bcdi_stream.phasing.estimate_detector_sigma`); the later estimates then search
        locally around them instead of over a wide grid.

    Returns
    -------
    PhasingResult
    """
    t0 = time.perf_counter()
    settings = check_settings(settings)
    seed = check_int(seed, "seed", 0)
    progress = check_progress(progress)
    dev = resolve_device(device)
    clock = _Clock(dev)
    i_t = check_intensity(intensity, dev)
    shape = tuple(i_t.shape)
    m = check_mask(mask, shape, dev)
    runs = settings.runs
    s0 = None if support is None else check_support(support, shape, dev)
    o0 = None if obj_init is None else check_object(obj_init, shape, dev)
    for name, t in (("support", s0), ("obj_init", o0)):
        if t is not None and t.ndim == 4 and t.shape[0] not in (1, runs):
            raise ValueError(f"{name} has {t.shape[0]} runs, settings.runs is {runs}")
    meas = prepare_measured(i_t, m)
    if s0 is None:
        s0 = autocorrelation_support(i_t, AUTOCORR_THRESHOLD, mask=m)
    s0 = s0 if s0.ndim == 4 else s0.unsqueeze(0)
    n_it = settings.n_raar + settings.n_hio + settings.n_er
    total = runs * n_it
    setup = _setup(settings, dev, meas, total, (settings.n_raar, settings.n_hio, settings.n_er),
                   shrinkwrap=True, detwin=detwin, compile=compile, psf=psf,
                   psf_start=psf_start)
    chunk = _chunk_size(settings.batch, runs, meas.voxels, dev)
    clock.lap("setup")
    tick = _ticker(total, progress)
    llks: list[float] = []
    chis: list[float] = []
    best: tuple[float, int, torch.Tensor, torch.Tensor, Sigma] | None = None
    for start in range(0, runs, chunk):
        ids = list(range(start, min(start + chunk, runs)))
        sup = s0[[0 if s0.shape[0] == 1 else r for r in ids]].contiguous()
        if o0 is None:
            rho = random_start(meas, sup, [run_seed(seed, r) for r in ids])
        else:
            rho = (o0[[0 if o0.shape[0] == 1 else r for r in ids]] * sup).contiguous()
        eng = setup.engine(meas, rho, sup)
        clock.lap("setup")
        _execute(setup.plan, eng, settings, ids, clock, tick)
        c_llk, c_chi = eng.quality()
        llks += c_llk
        chis += c_chi
        i_best = min(range(len(ids)), key=lambda i: c_llk[i])
        if best is None or c_llk[i_best] < best[0]:
            obj_b, sup_b = eng.rho[i_best].clone(), eng.support[i_best].clone()
            best = (c_llk[i_best], ids[i_best], obj_b, sup_b, eng.psf_sigma[i_best])
        del eng, rho
        clock.lap("quality")
    assert best is not None
    obj, sup_best = _recentre(best[2], best[3])
    clock.lap("quality")
    return PhasingResult(
        obj=obj,
        support=sup_best,
        llk=llks[best[1]],
        chi2=chis[best[1]],
        llk_runs=llks,
        chi2_runs=chis,
        best_run=best[1],
        iterations=n_it,
        algorithm=_algorithm_name(settings.n_raar, settings.n_hio, settings.n_er),
        timings=_timings(clock, t0, total),
        seed=seed,
        device=str(dev),
        compiled=setup.kernels.compiled,
        psf_sigma=best[4],
        psf=setup.psf_mode,
    )


def refine_er(
    intensity: Any,
    mask: Any,
    obj_init: Any,
    support_init: Any = None,
    n_iter: int = 200,
    shrinkwrap: bool = True,
    device: str | torch.device | None = None,
    *,
    settings: PhasingSettings | None = None,
    progress: ProgressCallback | None = None,
    compile: CompileOption = None,
    psf: PsfOption = None,
    psf_start: Sigma | None = None,
) -> PhasingResult:
    """Refine an initial guess (e.g. the AI prediction) by error reduction.

    Parameters
    ----------
    intensity : array-like
        Centred 3D intensity (counts).
    mask : array-like or None
        Bad pixels (nonzero = masked).
    obj_init : array-like
        Centred complex object ``(z, y, x)``, or a batch ``(B, z, y, x)`` of candidates (the
        best by LLK is returned).
    support_init : array-like, optional
        Initial support (``(z, y, x)`` or per candidate); default: shrink-wrap of ``obj_init``
        (Gaussian width ``settings.shrinkwrap_sigma_start``, ``settings.shrinkwrap_threshold``).
    n_iter : int
        ER iterations.
    shrinkwrap : bool
        Update the support every ``settings.shrinkwrap_every`` iterations (width decreasing
        from ``shrinkwrap_sigma_start`` to ``shrinkwrap_sigma_end``).
    device : str or torch.device, optional
        Compute device (default: auto).
    settings : PhasingSettings, optional
        Shrink-wrap parameters (defaults of :class:`PhasingSettings`).
    progress : callable, optional
        ``progress(done, total)`` in run-iterations.
    compile : bool, "auto", "on", "off" or None
        Fused kernels (see :func:`resolve_compile`).
    psf : "auto", "off", float, tuple or None
        Blur-aware modulus constraint, as in :func:`run_conventional`.
    psf_start : tuple of 3 or 4 floats, optional
        Starting parameters with ``psf="auto"``, as in :func:`run_conventional`.

    Returns
    -------
    PhasingResult
        The object stays in the frame of ``obj_init`` (no re-centring).
    """
    t0 = time.perf_counter()
    settings = check_settings(settings)
    n_iter = check_int(n_iter, "n_iter", 0)
    progress = check_progress(progress)
    dev = resolve_device(device)
    clock = _Clock(dev)
    i_t = check_intensity(intensity, dev)
    shape = tuple(i_t.shape)
    m = check_mask(mask, shape, dev)
    o = check_object(obj_init, shape, dev)
    meas = prepare_measured(i_t, m)
    if support_init is None:
        s = shrinkwrap_support(
            o, settings.shrinkwrap_sigma_start, settings.shrinkwrap_threshold
        )
    else:
        s = check_support(support_init, shape, dev, name="support_init")
        s = s.expand(o.shape) if s.ndim == 3 else s
        if s.shape[0] != o.shape[0]:
            raise ValueError(f"support_init has {s.shape[0]} runs but obj_init has {o.shape[0]}")
    total = o.shape[0] * n_iter
    setup = _setup(settings, dev, meas, total, (0, 0, n_iter), shrinkwrap=bool(shrinkwrap),
                   detwin=False, compile=compile, psf=psf, psf_start=psf_start)
    eng = setup.engine(meas, (o * s).contiguous(), s.contiguous())
    clock.lap("setup")
    _execute(setup.plan, eng, settings, list(range(o.shape[0])), clock, _ticker(total, progress))
    llks, chis = eng.quality()
    i_best = min(range(len(llks)), key=lambda i: llks[i])
    clock.lap("quality")
    return PhasingResult(
        obj=eng.rho[i_best].clone(),
        support=eng.support[i_best].clone(),
        llk=llks[i_best],
        chi2=chis[i_best],
        llk_runs=llks,
        chi2_runs=chis,
        best_run=i_best,
        iterations=n_iter,
        algorithm=_algorithm_name(0, 0, n_iter),
        timings=_timings(clock, t0, total),
        seed=0,
        device=str(dev),
        compiled=setup.kernels.compiled,
        psf_sigma=eng.psf_sigma[i_best],
        psf=setup.psf_mode,
    )
