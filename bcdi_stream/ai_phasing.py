"""AI phasing: the model predicts φ(q), ψ = IFFT(√I·e^{iφ}) starts a short refinement.

The refinement is ``n_er_first`` ER (default 0), ``n_raar`` RAAR, ``n_hio`` HIO, then ``n_er``
ER iterations with shrink-wrap, one run, from the predicted start and its support (see
:class:`bcdi_stream.config.AISettings` for the defaults; ``n_raar = n_hio = 0`` is the plain
ER refinement of the paper).

Grid handling: the model works on ``G³`` (64³ for the shipped weights) centred on the Bragg
peak at ``N // 2``. Along an axis longer than ``G`` the model sees the central ``G`` pixels
(most of the weight of a BCDI pattern); along a shorter axis the pattern is zero-padded. The
predicted phase fills that central region of reciprocal space; outside it the start takes
seeded uniform random phases, which ER then fixes. The preprocessor of the live service
(:func:`bcdi_stream.preprocess.prepare_frames`) already crops scans to 64³.

Views: reflecting the pattern along some axes reflects the object along the same axes, so the
model can be asked the same question eight ways (:data:`N_VIEWS`, :func:`view_axes`): the
prediction for a reflected pattern, reflected back, is another start of about the same quality
whose refinement succeeds or fails on its own. The ``auto`` method polishes the first view's
result (:func:`polish`) and then refines further views when that result does not fit the data
(:func:`phase_auto`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import physics
from .arrays import resolve_device
from .config import AISettings, PhasingSettings
from .model import LoadedModel, load_model
from .phasing import (
    PhasingResult,
    blur_fit_of,
    deconvolve,
    detector_blur_of,
    excess_misfit,
    psf_params,
    refine_er,
    run_conventional,
    shrinkwrap_support,
)
from .phasing._common import check_int, check_intensity, check_mask
from .preprocess import bragg_offset, fill_lost_planes, fill_peak_holes

__all__ = ["DEBLUR", "FILL_SHARE", "N_VIEWS", "OFFSET_MIN", "AIStart", "AutoOutcome",
           "cached_model", "phase_ai", "phase_ai_options", "phase_auto", "polish", "predict_start",
           "seeded_starts", "unseen_blur", "view_axes"]

#: Pixels the pattern's centre of mass must be off the grid centre (along some axis) before the
#: prediction corrects for it. The training patterns themselves lie within ~0.75 px: the
#: simulator centres a pattern by removing the object's mean (wrapped) phase gradient, which
#: for strongly strained crystals differs from the centre of mass by up to that much.
OFFSET_MIN: float = 1.0

#: Share of the pattern's intensity that bad pixels over the Bragg peak (a masked saturated
#: core, :func:`bcdi_stream.preprocess.fill_peak_holes`), lost frames or detector gaps (planes
#: bad throughout, :func:`bcdi_stream.preprocess.fill_lost_planes`) must hide, as estimated,
#: before :func:`predict_start` shows the model the filled pattern and starts from it. The
#: model never saw such holes: a masked core left 5/10 weak crystals phased, 10/10 filled; a
#: lost frame through the peak, left free, 7/10 medium ones, 10/10 filled
#: (docs/MODEL_RESEARCH.md, session 21); a gap along the rows and one along the columns near
#: the peak, 6/10 medium ones, 9/10 filled (and bridged in the search for other peaks,
#: session 30).
FILL_SHARE: float = 0.02

#: Richardson-Lucy iterations of the blur hypothesis's own prediction (:func:`predict_start`'s
#: ``deblur``). The model saw isotropic detector blur of at most ~1 px in training; a blur it
#: never saw (partial coherence along a line of the detector plane, or along the rocking axis)
#: it reads as a smaller crystal, and the blur fitted to that prediction is 20-50 % short. When
#: the hypothesis is such a blur (:func:`unseen_blur`), the pattern deconvolved by it is
#: predicted, the blur fitted again to that prediction, and the prediction from the pattern
#: deconvolved by the new fit starts a second hypothesis run (docs/MODEL_RESEARCH.md,
#: session 25). 0: never.
DEBLUR: int = 20

#: :func:`unseen_blur`'s bounds (pixels): a y, x width difference or a correlation from this
#: on, or a width from :data:`UNSEEN_WIDTH`, is a blur the model never saw; a hypothesis (or
#: the refit after deconvolving by it) as wide as :data:`UNSEEN_MAX` along some axis, the top
#: of the hypothesis's width grid, is a prediction far from the truth (strong crystals the
#: model misses ask for the search's cap), not a blur to take out. Until session 28 only a
#: width beyond it counted, which the grid never gave on a single axis: 315 test, validation
#: and blurred crystals, the same successes, the ``ai`` method's median time -10 %
#: (docs/MODEL_RESEARCH.md, session 28).
UNSEEN_SPLIT: float = 0.3
UNSEEN_WIDTH: float = 1.15
UNSEEN_MAX: float = 2.0

#: Views of a pattern the model can be asked about: view ``v`` reflects the axes whose bit is
#: set in ``v`` (:func:`view_axes`); view 0 is the pattern as measured.
N_VIEWS: int = 8


def unseen_blur(sigma: tuple[float, ...]) -> bool:
    """Whether a blur hypothesis ``(z, y, x[, r])`` is one the model never saw in training
    (isotropic detector blur of at most ~1 px): along the rocking axis, oblique, different on
    ``y`` and ``x``, or wider than :data:`UNSEEN_WIDTH`, but narrower than :data:`UNSEEN_MAX`."""
    z, y, x, r = psf_params(sigma)  # checks the length first
    if _at_cap((z, y, x)):
        return False
    return (z > 0.0 or abs(r) >= UNSEEN_SPLIT or abs(y - x) >= UNSEEN_SPLIT
            or max(y, x) >= UNSEEN_WIDTH)


def _at_cap(sigma: tuple[float, ...]) -> bool:
    """Whether a blur hypothesis or refit ``(z, y, x[, r])`` is as wide as :data:`UNSEEN_MAX`
    along some axis: a prediction far from the truth, not a blur to take out."""
    return max(sigma[:3]) >= UNSEEN_MAX


def view_axes(view: int) -> tuple[int, ...]:
    """The spatial axes (0, 1, 2 = z, y, x) that view ``view`` reflects about the grid centre.

    Parameters
    ----------
    view : int
        ``0 … N_VIEWS − 1``; axis ``a`` is reflected when bit ``a`` of ``view`` is set.
    """
    if not 0 <= int(view) < N_VIEWS:
        raise ValueError(f"view must be in 0..{N_VIEWS - 1}, got {view}")
    return physics.reflection_axes(view)


@dataclass
class AIStart:
    """The model's prediction turned into a starting point for ER.

    Attributes
    ----------
    obj : torch.Tensor
        ``IFFT(√I·e^{iφ})`` on the data grid, complex64.
    support : torch.Tensor
        Initial bool support (shrink-wrap of ``obj``).
    phase_q : torch.Tensor
        The predicted reciprocal-space phase on the data grid (random outside the model's
        region, see the module docstring).
    seconds : float
        Wall time of the prediction (model forward pass included).
    psf_sigma : tuple of 3 or 4 floats or None
        Blur hypothesis made from the predicted object
        (:func:`bcdi_stream.phasing.detector_blur_of`): ``(0, s_y, s_x)`` on the detector
        (``(0, s_y, s_x, r)`` for an oblique one), or with :func:`predict_start`'s ``deblur``
        ``(s_z, s_y, s_x)`` along the rocking axis; for :attr:`deblurred`, the blur refitted to
        its prediction. None when not asked for or when the prediction shows no such blur.
    offset : tuple of 3 floats or None
        Centre of mass of the model's input pattern in pixels from the grid centre
        (:func:`bcdi_stream.preprocess.bragg_offset`, capped at G/8; of the reflected pattern
        for a view other than 0). When it reaches :data:`OFFSET_MIN` along some axis, the
        prediction is made for the pattern centred exactly and moved back. None for
        ``"direct"`` models.
    view : int
        Which view of the pattern the model saw (:func:`view_axes`); the prediction is
        reflected back, so ``obj`` and ``phase_q`` belong to the pattern as given.
    filled : float or None
        Share of the intensity that bad pixels over the Bragg peak, lost frames or detector
        gaps hid (:func:`bcdi_stream.preprocess.fill_peak_holes`,
        :func:`~bcdi_stream.preprocess.fill_lost_planes`), when it reached ``fill_share`` and
        the model saw the filled pattern (``obj``'s modulus takes the estimate there too); None
        when they were not filled.
    """

    obj: torch.Tensor
    support: torch.Tensor
    phase_q: torch.Tensor
    seconds: float
    psf_sigma: tuple[float, ...] | None = None
    offset: tuple[float, float, float] | None = None
    view: int = 0
    filled: float | None = None
    #: the start of a second blur-hypothesis run (:func:`predict_start`'s ``deblur``): the
    #: prediction from the pattern deconvolved by the blur refitted after deconvolving by
    #: :attr:`psf_sigma`, with that refit as its own :attr:`psf_sigma`; None: no second run
    deblurred: AIStart | None = None


@functools.lru_cache(maxsize=4)
def _cached(path: str, device: str, precision: str, mtime: float) -> LoadedModel:
    del mtime  # part of the key: a rewritten file is loaded again
    return load_model(path, device, precision)


def cached_model(path: str | Path | None = None, device: str | torch.device = "cpu",
                 precision: str = "auto") -> LoadedModel:
    """Load a weights file once per (path, device, precision) and keep it (the live worker's
    model).

    Parameters
    ----------
    path : str or Path, optional
        Weights file (default: the shipped weights, see
        :func:`bcdi_stream.model.default_weights_path`).
    device : str or torch.device
        Device the model runs on (``"auto"``: CUDA when present, else the CPU).
    precision : {"auto", "fp32", "bf16"}
        Arithmetic of the prediction (:func:`bcdi_stream.model.load_model`).
    """
    from .model import default_weights_path

    p = Path(path or default_weights_path()).resolve()
    if not p.is_file():
        raise ValueError(f"model weights {p} do not exist")
    # resolve_device: "auto" is a device name, and one this machine cannot use is a
    # ValueError naming it (was a torch RuntimeError/AssertionError)
    return _cached(str(p), str(resolve_device(device)), precision, p.stat().st_mtime)


def _windows(shape: tuple[int, ...], g: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the overlap between a centred data grid and a centred ``g³`` model grid."""
    data, model = [], []
    for n in shape:
        if n >= g:
            lo = n // 2 - g // 2
            data.append(slice(lo, lo + g))
            model.append(slice(0, g))
        else:
            lo = g // 2 - n // 2
            data.append(slice(0, n))
            model.append(slice(lo, lo + n))
    return tuple(data), tuple(model)


@torch.no_grad()
def predict_start(loaded: LoadedModel, intensity: torch.Tensor, mask: torch.Tensor | None = None,
                  *, seed: int = 0, settings: PhasingSettings | None = None,
                  estimate_psf: bool = False, view: int = 0,
                  fill_share: float | None = FILL_SHARE,
                  fill_with: torch.Tensor | None = None, deblur: int = DEBLUR) -> AIStart:
    """Predict φ(q) and build the ER start ``IFFT(√I·e^{iφ})`` and its support.

    Parameters
    ----------
    loaded : LoadedModel
        The model (see :func:`cached_model`).
    intensity : torch.Tensor
        Centred 3D intensity (counts), Bragg peak at ``N // 2``.
    mask : torch.Tensor, optional
        Bad pixels (True = bad): zero in the model input and in the start's modulus.
    seed : int
        Seed of the random phases outside the model's region.
    settings : PhasingSettings, optional
        Shrink-wrap width and threshold of the initial support.
    estimate_psf : bool
        Also make a detector-blur hypothesis from the predicted object (``"patterson"``
        models; :attr:`AIStart.psf_sigma`), on the model's grid.
    view : int
        Show the model the pattern reflected along :func:`view_axes` ``(view)`` and reflect
        its prediction back (0: as measured).
    fill_share : float or None
        ``"patterson"`` models: when compact groups of bad pixels over the Bragg peak and
        planes bad throughout (lost frames, detector gaps) hide at least this share of the
        intensity (estimated by a Gaussian fitted around the former,
        :func:`bcdi_stream.preprocess.fill_peak_holes`, and by interpolation between the planes
        around the latter, :func:`~bcdi_stream.preprocess.fill_lost_planes`), the model sees
        the pattern filled with those estimates and the start's modulus takes them
        (:attr:`AIStart.filled`); the refinement still leaves them free. None: never (default
        :data:`FILL_SHARE`).
    fill_with : torch.Tensor, optional
        Intensity on the data grid to fill those pixels with instead of the estimates (which
        still decide which pixels, and whether): :func:`phase_ai`'s second pass gives the
        first result's ``|FFT ρ|²``.
    deblur : int
        With ``estimate_psf``: the hypothesis may also be a blur along the rocking axis
        (``detector_blur_of(rocking=True)``), and when it is a blur the model never saw
        (:func:`unseen_blur`) the pattern is deconvolved by it (this many Richardson-Lucy
        iterations, :func:`bcdi_stream.phasing.deconvolve`) and predicted, the blur fitted
        again to that prediction (:func:`bcdi_stream.phasing.blur_fit_of`), and the prediction
        from the pattern deconvolved by the refit is :attr:`AIStart.deblurred` (see
        :data:`DEBLUR`). 0: neither.
    """
    if deblur < 0:
        raise ValueError(f"deblur must be >= 0, got {deblur}")
    if fill_share is not None and not 0 < fill_share < 1:
        raise ValueError(f"fill_share must be in (0, 1) or None, got {fill_share}")
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be 3D, got shape {tuple(intensity.shape)}")
    axes = view_axes(view)
    settings = settings or PhasingSettings()
    t0 = time.perf_counter()
    model = loaded.model
    dev = next(model.parameters()).device
    g = model.config.grid
    data = intensity.to(dev, torch.float32).clamp_min(0)
    if mask is not None:
        data = data.masked_fill(mask.to(dev, torch.bool), 0.0)
    d_sl, m_sl = _windows(tuple(data.shape), g)
    x = torch.zeros((g, g, g), device=dev)
    x[m_sl] = data[d_sl]
    x = physics.reflect(x, axes)
    psf_sigma = None
    offset = None
    filled = None
    estimate = None  # the filled intensity on the data grid's bad pixels
    phi_deblurred = None
    refit = None
    if model.config.kind == "patterson":
        bad = torch.ones((g, g, g), dtype=torch.bool, device=dev)
        bad[m_sl] = False if mask is None else mask.to(dev, torch.bool)[d_sl]
        bad = physics.reflect(bad, axes)
        holes = torch.zeros_like(bad)  # bad pixels inside the data window
        if mask is not None:
            holes[m_sl] = mask.to(dev, torch.bool)[d_sl]
            holes = physics.reflect(holes, axes)
        if fill_share is not None and bool(holes.any()):
            est, _ = fill_peak_holes(x, holes)
            est = torch.where(est > 0, est, fill_lost_planes(est, holes & (est <= 0)))
            done = holes & (est > 0)
            share = float(est[done].sum() / est.sum().clamp_min(1e-30))
            if share >= fill_share:
                if fill_with is not None:
                    other = torch.zeros((g, g, g), device=dev)
                    other[m_sl] = fill_with.to(dev, torch.float32)[d_sl]
                    est = torch.where(done, physics.reflect(other, axes), est)
                    share = float(est[done].sum() / est.sum().clamp_min(1e-30))
                x, bad, filled = est, bad & ~done, share
                estimate = physics.reflect(x, axes)[m_sl]
        offset, obj_m = _predict_object(loaded, x, bad)
        phi_m = torch.angle(model.phasor_of(obj_m[None])[0])
        if estimate_psf:
            psf_sigma = detector_blur_of(obj_m, x, bad, rocking=deblur > 0)
            if psf_sigma is not None and deblur > 0 and unseen_blur(psf_sigma):
                refit, phi_deblurred = _deblurred(loaded, x, bad, psf_sigma, deblur)
    else:
        with loaded.autocast():
            phi_m = model.predict_phase(x[None])[0].float()
    if estimate is not None:  # the start's modulus takes the estimate on the bad pixels
        data = data.clone()
        data[d_sl] = torch.where(mask.to(dev, torch.bool)[d_sl], estimate, data[d_sl])

    # seeded random phases outside the model's region, shared by every start of this pattern
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    phi_outside = (torch.rand(data.shape, generator=gen) * 2 * torch.pi - torch.pi).to(dev)

    def start_of(phi_model: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The phase on the data grid, the object and its support of a prediction."""
        phi = phi_outside.clone()
        phi[d_sl] = physics.reflect(phi_model, axes)[m_sl]
        obj = physics.ifft_centered(torch.polar(data.sqrt(), phi)).to(torch.complex64)
        support = shrinkwrap_support(obj, settings.shrinkwrap_sigma_start,
                                     settings.shrinkwrap_threshold)
        return phi, obj, support

    common = {"psf_sigma": psf_sigma, "view": int(view), "filled": filled,
              "offset": None if offset is None else tuple(float(v) for v in offset)}
    deblurred = None
    if phi_deblurred is not None:
        phi_d, obj_d, support_d = start_of(phi_deblurred)
        deblurred = AIStart(obj=obj_d, support=support_d, phase_q=phi_d, seconds=0.0,
                            **{**common, "psf_sigma": refit})
    phi, obj, support = start_of(phi_m)
    seconds = time.perf_counter() - t0
    if deblurred is not None:
        deblurred.seconds = seconds
    return AIStart(obj=obj, support=support, phase_q=phi, seconds=seconds,
                   deblurred=deblurred, **common)


def _deblurred(loaded: LoadedModel, x: torch.Tensor, bad: torch.Tensor,
               sigma: tuple[float, ...], n_iter: int
               ) -> tuple[tuple[float, ...] | None, torch.Tensor | None]:
    """The blur hypothesis ``sigma`` refitted to the prediction from pattern ``x`` (model grid)
    deconvolved by it, and the phase predicted from ``x`` deconvolved by the refit (see
    :data:`DEBLUR`); ``(None, None)`` when the refit finds no blur, or one as wide as
    :data:`UNSEEN_MAX` along some axis."""
    _, obj = _predict_object(loaded, deconvolve(x, sigma, bad, n_iter), bad)
    refit = blur_fit_of(obj, x, bad)
    if max(refit[:3]) <= 0.0 or _at_cap(refit):
        return None, None
    _, obj = _predict_object(loaded, deconvolve(x, refit, bad, n_iter), bad)
    return tuple(float(v) for v in refit), torch.angle(loaded.model.phasor_of(obj[None])[0])


def _predict_object(loaded: LoadedModel, x: torch.Tensor, bad: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``"patterson"`` model's object for pattern ``x`` (model grid, bad pixels zero) and
    the pattern's centre-of-mass offset (:func:`bragg_offset`, capped at G/8)."""
    model = loaded.model
    g = x.shape[-1]
    # the model was trained on patterns whose centre of mass lies within ~0.75 px of g // 2:
    # a pattern further off is predicted as if centred, and the object is moved (a phase
    # ramp) to where the data put it
    offset = bragg_offset(x, bad).clamp(-g / 8, g / 8)
    off = float(offset.abs().max()) >= OFFSET_MIN
    with loaded.autocast():
        obj_m = model.forward_object(x[None], offset[None].to(torch.float32) if off else None)[0]
    if off:
        obj_m = obj_m * physics.shift_ramp(obj_m.shape, offset, x.device)
    return offset, obj_m


def _ai_default(field: str) -> Any:
    """:class:`~bcdi_stream.config.AISettings`' default of ``field``: the ``ai`` method's
    defaults are set there once, and :func:`phase_ai`'s follow them."""
    return AISettings.model_fields[field].default


def phase_ai(intensity: Any, mask: Any = None, *, loaded: LoadedModel,
             n_er: int = _ai_default("n_er"), n_raar: int = _ai_default("n_raar"),
             shrinkwrap: bool = _ai_default("shrinkwrap"),
             settings: PhasingSettings | None = None, seed: int = 0,
             device: str | torch.device | None = None,
             psf_hypothesis: int = _ai_default("psf_hypothesis"),
             n_hio: int = _ai_default("n_hio"), view: int = 0,
             n_er_first: int = _ai_default("n_er_first"),
             fill_share: float | None = FILL_SHARE, refill: bool = _ai_default("peak_refill"),
             unfilled: float = _ai_default("peak_unfilled"),
             deblur: int = DEBLUR) -> tuple[PhasingResult, AIStart]:
    """AI + refinement: :func:`predict_start`, then ``n_er_first`` ER, ``n_raar`` RAAR,
    ``n_hio`` HIO and ``n_er`` ER iterations.

    Parameters
    ----------
    intensity, mask : array-like
        Centred intensity and bad-pixel mask (nonzero = bad).
    loaded : LoadedModel
        The model.
    n_er : int
        ER iterations.
    n_raar : int
        RAAR iterations first (with ``n_hio``: 0 for both is ER only, no re-centring of the
        result).
    shrinkwrap : bool
        Update the support during the refinement (always on when ``n_raar + n_hio > 0``).
    settings : PhasingSettings, optional
        Shrink-wrap parameters and PSF option.
    seed : int
        Seed of the random phases outside the model's region.
    device : str or torch.device, optional
        Where ER runs (the model's device is used for the prediction).
    psf_hypothesis : int
        With ``settings.psf == "auto"`` and > 0: when the predicted object says the detector
        axes are blurred (:func:`bcdi_stream.phasing.detector_blur_of`), a second run of this
        many iterations (half RAAR/HIO in the main run's proportion, half ER; ER only when
        ``n_raar + n_hio == 0``) refines the same start with that PSF, and the run with the
        lower LLK is kept. An object refined without a PSF mimics the blur, after which the
        LLK search finds too little of it, and strongly blurred crystals (σ ≳ 0.7 px) fail.
        Made for about two thirds of the crystals (those whose prediction looks blurred: 207
        of 310 test and validation crystals, docs/MODEL_RESEARCH.md session 28); 30 iterations
        by default since session 27 (60 before: the same successes, docs/MODEL_RESEARCH.md),
        ~0.1 s on one CPU thread at 64³.
    n_hio : int
        HIO iterations after the RAAR ones (the default refinement is HIO 170 + ER 30, as in
        :class:`~bcdi_stream.config.AISettings`: HIO since session 6, 170 of the 200
        iterations since session 26, docs/MODEL_RESEARCH.md).
    view : int
        Which view of the pattern the model predicts (:func:`view_axes`; 0: as measured).
    n_er_first : int
        ER iterations (shrink-wrap, PSF estimation as configured) before the RAAR/HIO ones: the
        main run then starts from their object, support and PSF. Only with
        ``n_raar + n_hio > 0``; the blur hypothesis's run does not take it. Measured with v3
        (docs/MODEL_RESEARCH.md, session 12): 50 + HIO 100 + ER 50 solves 11/25 strong test
        crystals against 12/25 for the default, the other classes alike, hence off.

    fill_share : float or None
        :func:`predict_start`'s: the share of the intensity a masked peak core, lost frames or
        detector gaps must hold to be filled for the model (None: never).
    refill : bool
        When the start filled a masked Bragg-peak core, lost frames or detector gaps
        (:attr:`AIStart.filled`), predict and refine a second time with them filled by the first
        result's ``|FFT ρ|²``, and keep the lower LLK (``timings["refill"]``: the other pass's
        seconds, counted in the total). Medium crystals with a masked core: 8/10 → 9/10;
        with crossing gaps near the peak: 8/10 → 9/10 (docs/MODEL_RESEARCH.md, sessions 21
        and 30).
    unfilled : float
        When the start was filled and the holes hid at least this share of the intensity
        (:attr:`AIStart.filled`), also predict and refine the pattern with them left empty
        (``fill_share=None``: as the model saw detector gaps in training), and keep the lowest
        LLK (``timings["unfilled"]``: the seconds of the pass not kept, counted in the total).
        A gap 7–12 px wide through the peak is phased better empty than interpolated: weak
        9/10 → 10/10, medium 8/10 → 9/10, both rescued at shares 0.42–0.46, where smaller holes
        changed no success (docs/MODEL_RESEARCH.md, session 30). 0: never.
    deblur : int
        :func:`predict_start`'s: a blur along the rocking axis is a hypothesis too, and when
        the hypothesis is a blur the model never saw (:func:`unseen_blur`) a third run, as
        long as the hypothesis's, refines the prediction from the deconvolved pattern
        (:attr:`AIStart.deblurred`) with its own refitted blur; the lowest LLK of the runs is
        kept (``best_run`` 2 for that one). 0: the plain prediction, detector blur only.

    Returns
    -------
    (PhasingResult, AIStart)
        The result kept and the start it came from.
    """
    settings = settings or PhasingSettings()
    # eager checks naming the argument, before the model runs: a mask of another shape was a
    # torch RuntimeError from inside the prediction, a device this machine cannot use (or
    # "auto") an AssertionError/RuntimeError, a negative seed refused only after the
    # prediction (and taken by the ER-only refinement)
    dev = (resolve_device(device) if device is not None
           else next(loaded.model.parameters()).device)
    seed = check_int(seed, "seed", 0)
    i_t = check_intensity(intensity, dev)
    m_t = check_mask(mask, tuple(i_t.shape), dev)
    if m_t is not None and not bool((i_t.masked_fill(m_t, 0.0) > 0).any()):
        # else the start is 0 and the refinement refuses its empty "support"
        raise ValueError("intensity has no counts on the pixels the mask leaves measured")
    if psf_hypothesis < 0:
        raise ValueError(f"psf_hypothesis must be >= 0, got {psf_hypothesis}")
    if not 0 <= unfilled <= 1:
        raise ValueError(f"unfilled must be in [0, 1], got {unfilled}")
    if n_raar < 0 or n_hio < 0 or n_er < 0:
        raise ValueError(f"n_raar, n_hio and n_er must be >= 0, got {n_raar}, {n_hio}, {n_er}")
    if n_er_first < 0:
        raise ValueError(f"n_er_first must be >= 0, got {n_er_first}")
    if n_er_first and n_raar + n_hio == 0:
        raise ValueError("n_er_first needs n_raar + n_hio > 0 (add it to n_er for ER only)")
    auto_psf = psf_hypothesis > 0 and settings.psf == "auto"
    start = predict_start(loaded, i_t, m_t, seed=seed, settings=settings, estimate_psf=auto_psf,
                          view=view, fill_share=fill_share, deblur=deblur)

    def refine(start: AIStart, n_r: int, n_h: int, n_e: int, psf_start: Any, n_f: int = 0
               ) -> PhasingResult:
        if n_raar + n_hio > 0:
            obj, support, before = start.obj, start.support, 0.0
            if n_f:
                s = settings.model_copy(update={"runs": 1, "n_raar": 0, "n_hio": 0, "n_er": n_f})
                first = run_conventional(i_t, m_t, settings=s, seed=seed, device=dev,
                                         obj_init=obj, support=support, detwin=False,
                                         psf_start=psf_start)
                obj, support, psf_start = first.obj, first.support, first.psf_sigma
                before = first.timings.get("total", 0.0)
            s = settings.model_copy(update={"runs": 1, "n_raar": n_r, "n_hio": n_h, "n_er": n_e})
            out = run_conventional(i_t, m_t, settings=s, seed=seed, device=dev, obj_init=obj,
                                   support=support, detwin=False, psf_start=psf_start)
            if n_f:
                out.timings["er_first"] = before
                out.timings["total"] = out.timings.get("total", 0.0) + before
            return out
        return refine_er(i_t, m_t, start.obj, start.support, n_iter=n_e, shrinkwrap=shrinkwrap,
                         device=dev, settings=settings, psf_start=psf_start)

    def attempt(start: AIStart) -> tuple[PhasingResult, AIStart]:
        """The refinement of ``start`` (and of its blur hypotheses, the lowest LLK kept), and
        the start of the run kept."""
        res = refine(start, n_raar, n_hio, n_er, None, n_er_first)
        kept = start
        if start.psf_sigma is not None:
            # the blur hypotheses: shorter runs from the same start with the hypothesis, and
            # from the prediction of the deconvolved pattern with the blur refitted to it; the
            # lowest LLK wins
            first = psf_hypothesis // 2 if n_raar + n_hio > 0 else 0
            n_h = round(first * n_hio / (n_raar + n_hio)) if first else 0
            timings = dict(res.timings)
            llks, chis = [res.llk], [res.chi2]
            best, spent = res, 0.0
            others = [start] if start.deblurred is None else [start, start.deblurred]
            for k, other in enumerate(others, start=1):
                alt = refine(other, first - n_h, n_h, psf_hypothesis - first, other.psf_sigma)
                spent += alt.timings.get("total", 0.0)
                llks.append(alt.llk)
                chis.append(alt.chi2)
                if alt.llk < best.llk:
                    best, kept = alt, other
                    best.best_run = k
            res = best
            timings["psf_hypothesis"] = spent
            timings["total"] = timings.get("total", 0.0) + spent
            res.llk_runs, res.chi2_runs, res.timings = llks, chis, timings
        res.timings["predict"] = start.seconds
        return res, kept

    def lower_llk(res: PhasingResult, kept: AIStart, other_start: AIStart, label: str
                  ) -> tuple[PhasingResult, AIStart]:
        """The lower-LLK result of ``res`` and a refinement from ``other_start``; the seconds
        of the one not kept are ``timings[label]``, counted in the total."""
        other, kept_other = attempt(other_start)
        if other.llk < res.llk:
            res, kept, other = other, kept_other, res
        spent = other.timings.get("total", 0.0) + other.timings["predict"]
        res.timings[label] = round(spent, 4)
        res.timings["total"] = res.timings.get("total", 0.0) + spent
        return res, kept

    res, kept = attempt(start)
    if start.filled is not None and refill:
        # the first result's own intensity on the filled pixels estimates a strained peak's core
        # better than the Gaussian (docs/MODEL_RESEARCH.md, session 21): predict and refine
        # again from it, the lower LLK kept
        again = predict_start(loaded, i_t, m_t, seed=seed, settings=settings,
                              estimate_psf=auto_psf, view=view, fill_share=fill_share,
                              fill_with=physics.fft_centered(res.obj).abs().square(),
                              deblur=deblur)
        res, kept = lower_llk(res, kept, again, "refill")
    if start.filled is not None and 0 < unfilled <= start.filled:
        # the holes left empty, as the model saw detector gaps in training: a wide gap through
        # the peak is phased better so than interpolated (docs/MODEL_RESEARCH.md, session 30)
        bare = predict_start(loaded, i_t, m_t, seed=seed, settings=settings,
                             estimate_psf=auto_psf, view=view, fill_share=None, deblur=deblur)
        res, kept = lower_llk(res, kept, bare, "unfilled")
    return res, kept


def phase_ai_options(ai: AISettings) -> dict[str, Any]:
    """:func:`phase_ai`'s keyword arguments as ``ai`` sets them (iterations, shrink-wrap, blur
    hypothesis and its deblurred run, peak filling), for every caller that refines as the
    ``ai`` method does."""
    return {"n_er": ai.n_er, "n_raar": ai.n_raar, "n_hio": ai.n_hio,
            "shrinkwrap": ai.shrinkwrap, "psf_hypothesis": ai.psf_hypothesis,
            "n_er_first": ai.n_er_first, "fill_share": ai.peak_fill or None,
            "refill": ai.peak_refill, "unfilled": ai.peak_unfilled, "deblur": ai.deblur}


def polish(res: PhasingResult, data: torch.Tensor, bad: torch.Tensor | None, *,
           settings: PhasingSettings, n_raar: int = 200, n_er: int = 100, cycles: int = 2,
           misfit_max: float = 0.0025, seed: int = 0,
           device: str | torch.device | None = None, misfit: float | None = None,
           counts: bool = True, background: float = 0.0) -> tuple[PhasingResult, float]:
    """Polish a refined result that does not fit the data (the ``auto`` method's first
    fallback stage, :func:`phase_auto`).

    Up to ``cycles`` runs of ``n_raar`` RAAR then ``n_er`` ER iterations (one run, shrink-wrap
    from ``settings.shrinkwrap_sigma_start`` again, no detwinning), each from the kept
    result's object, support and PSF, while its excess misfit
    (:func:`bcdi_stream.phasing.excess_misfit`) exceeds ``misfit_max``; a run is kept when its
    LLK is lower, and the polish stops at the first that is not.

    Parameters
    ----------
    res : PhasingResult
        The refined result.
    data, bad : torch.Tensor
        Centred intensity (counts) and bad pixels (True = bad, or None), on ``device``.
    settings : PhasingSettings
        Shrink-wrap and PSF options (its iteration counts and runs are replaced).
    n_raar, n_er : int
        Iterations of each polish.
    cycles : int
        At most this many polishes.
    misfit_max : float
        Excess misfit up to which a result counts as fitting (0: polish any result).
    seed : int
        Seed of the runs.
    device : str or torch.device, optional
        Where the runs go (default: ``data``'s device).
    misfit : float, optional
        ``res``'s excess misfit when the caller has it (else computed here).
    counts : bool
        ``data`` is photon counts (the excess misfit's ``counts``).
    background : float
        Known flat background of ``data`` (the excess misfit's ``background``; 0: none).

    Returns
    -------
    (PhasingResult, float)
        A new result (``res`` is left as it was) and its excess misfit. The result is the kept
        run's, with ``res``'s ``timings``
        (``"polish"`` added: the polishes' wall time, also added to ``"total"``); each
        polish run's LLK and χ² are appended to ``llk_runs`` and ``chi2_runs`` (``best_run``
        indexes them); its ``algorithm`` ends with the polishes kept, e.g.
        ``"HIO100 ER100 + RAAR200 ER100 x1"``.
    """
    if n_raar < 0 or n_er < 0 or n_raar + n_er == 0:
        raise ValueError(f"n_raar and n_er must be >= 0 with a positive sum, got {n_raar}, {n_er}")
    if cycles < 0:
        raise ValueError(f"cycles must be >= 0, got {cycles}")
    if not misfit_max >= 0:
        raise ValueError(f"misfit_max must be >= 0, got {misfit_max}")
    dev = data.device if device is None else resolve_device(device)
    t0 = time.perf_counter()
    s = settings.model_copy(update={"runs": 1, "n_raar": n_raar, "n_hio": 0, "n_er": n_er})
    first = res
    kept, llks, chis, best = 0, list(res.llk_runs), list(res.chi2_runs), res.best_run
    if misfit is None:
        misfit = float(excess_misfit(res.obj, data, bad, psf_sigma=res.psf_sigma, counts=counts,
                                     background=background))
    for _ in range(cycles):
        if misfit <= misfit_max:
            break
        out = run_conventional(data, bad, settings=s, seed=seed, device=dev, obj_init=res.obj,
                               support=res.support, detwin=False,
                               psf_start=res.psf_sigma if any(res.psf_sigma) else None)
        llks.append(out.llk)
        chis.append(out.chi2)
        if not out.llk < res.llk:
            break
        res, kept, best = out, kept + 1, len(llks) - 1
        misfit = float(excess_misfit(res.obj, data, bad, psf_sigma=res.psf_sigma, counts=counts,
                                     background=background))
    timings = {**first.timings, "polish": time.perf_counter() - t0}
    timings["total"] = timings.get("total", 0.0) + timings["polish"]
    algorithm = first.algorithm
    if kept:
        stages = " ".join(f"{name}{n}" for name, n in (("RAAR", n_raar), ("ER", n_er)) if n)
        algorithm = f"{algorithm} + {stages} x{kept}"
    # a new result: the caller's is left as it was
    return dataclasses.replace(res, llk_runs=llks, chi2_runs=chis, best_run=best,
                               timings=timings, algorithm=algorithm), misfit


@dataclass
class AutoOutcome:
    """What :func:`phase_auto` did.

    Attributes
    ----------
    result : PhasingResult
        The kept reconstruction.
    start : AIStart
        The prediction of view 0 (the pattern as measured).
    ai_result : PhasingResult
        The AI + refinement result of view 0 (``result`` itself unless the fallback won).
    used : str
        ``"ai"``, ``"auto:polish"`` (the polished AI result had the lowest LLK),
        ``"auto:view<v>"`` (view ``v``'s refinement had it), ``"auto:view<v>:polish"`` (the
        best view, polished) or ``"auto:conventional"`` (the conventional recipe had it).
    fallback : dict or None
        When the fallback ran: ``reason``, ``ai_llk``, ``ai_misfit``, ``polish`` and
        ``view_polish`` (when they ran: ``{"llk", "misfit", "algorithm"}``, and the polished
        view's ``"view"``), ``views`` (one
        ``{"view", "llk", "misfit"}`` per view refined) and, when the conventional recipe ran,
        ``conventional_llk`` and ``conventional_misfit``; else None.
    misfit : float
        Excess misfit of ``result`` (:func:`bcdi_stream.phasing.excess_misfit`).
    """

    result: PhasingResult
    start: AIStart
    ai_result: PhasingResult
    used: str
    fallback: dict[str, Any] | None
    misfit: float


def seeded_starts(data: torch.Tensor, bad: torch.Tensor | None, phase_q: torch.Tensor,
                  runs: int, seed: int) -> torch.Tensor:
    """Starts of the ``auto`` fallback: run 0 from the AI phase, run r from it plus Gaussian
    noise of 2r/(runs − 1) rad.

    Parameters
    ----------
    data : torch.Tensor
        Centred intensity (counts).
    bad : torch.Tensor or None
        Bad pixels (True = bad): zero modulus.
    phase_q : torch.Tensor
        The predicted reciprocal-space phase (:attr:`AIStart.phase_q`).
    runs : int
        Number of starts (>= 1).
    seed : int
        Seed of the noise.

    Returns
    -------
    torch.Tensor
        ``(runs, *data.shape)`` complex64 objects.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    amp = data.clamp_min(0).sqrt()
    if bad is not None:
        amp = amp.masked_fill(bad, 0.0)
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + 7919)
    starts = []
    for r in range(runs):
        sigma = 2.0 * r / max(1, runs - 1)
        noise = torch.randn(phase_q.shape, generator=gen).to(phase_q.device) * sigma
        starts.append(physics.ifft_centered(torch.polar(amp, phase_q + noise)))
    return torch.stack(starts).to(torch.complex64)


def phase_auto(intensity: torch.Tensor, mask: torch.Tensor | None, *, loaded: LoadedModel,
               ai: AISettings, settings: PhasingSettings, seed: int = 0,
               device: str | torch.device | None = None, progress: Any = None,
               fallback: bool = True, counts: bool = True,
               background: float = 0.0) -> AutoOutcome:
    """The ``ai`` method and, with ``fallback``, the ``auto`` method's fallback.

    :func:`phase_ai` with the iterations of ``ai``. Then, when ``fallback`` is set and the
    result's excess misfit (:func:`bcdi_stream.phasing.excess_misfit`, the share of the
    measured intensity left unexplained beyond Poisson noise) exceeds ``ai.fallback_misfit``:

    0. the polish (:func:`polish`: up to ``ai.polish_cycles`` runs of ``ai.polish_raar`` RAAR
       + ``ai.polish_er`` ER from the result, kept when their LLK is lower), ~1.5 refinements;
       done if the polished result fits;
    1. the other views of the pattern (:func:`view_axes`), ``1 … ai.views − 1`` in turn, each
       predicted and refined like the first, until one fits (excess misfit at most
       ``ai.fallback_misfit``); the lowest LLK so far is kept. Each costs what the first did;
       when none fits, the view with the lowest LLK is polished too (done if it then fits);
    2. if none fits and ``ai.fallback_conventional`` is set, the conventional recipe
       (``settings``, ``ai.fallback_runs`` or ``settings.runs`` runs) started from the kept
       view's phase (:func:`seeded_starts`); the lower LLK is kept.

    Parameters
    ----------
    intensity, mask : torch.Tensor
        Centred intensity (counts) and bad pixels (True = bad), on ``device``.
    loaded : LoadedModel
        The model.
    ai : AISettings
        Iterations, blur hypothesis, views, fallback threshold, recipe and runs.
    settings : PhasingSettings
        Shrink-wrap, PSF and the fallback recipe.
    seed : int
        Seed of the refinement and of the fallback's starts.
    device : str or torch.device, optional
        Where the refinement runs.
    progress : callable(done, total), optional
        Progress of the fallback recipe.
    fallback : bool
        False: the ``ai`` method (never falls back).
    counts : bool
        The intensity is photon counts (:func:`bcdi_stream.validation.photon_scale` is 1);
        False: the excess misfits count its noise as misfit
        (:func:`bcdi_stream.phasing.excess_misfit`).
    background : float
        Known flat background of the intensity (a detector pedestal, the mean of dark frames;
        per pixel, in its units), modelled by every excess misfit here
        (:func:`~bcdi_stream.phasing.excess_misfit`'s ``background``). 0 (default): none, and a
        background counts as misfit. Measured with the shipped model (two weak 64³ crystals,
        1e4 counts in the brightest pixel, 0.5 photon/pixel): the AI results were right but
        scored 0.012 and 0.008, and the fallback ran to the conventional recipe (~190 s
        instead of ~4 s); with the background given, 0.005 and 0.004, still above the default
        ``ai.fallback_misfit``: the refinement, which does not model the background either,
        leaves misfit of its own. At 1e5 counts: 0.0015 and 0.0009 (0.0010, 0.0007 given).

    Returns
    -------
    AutoOutcome
    """
    data = torch.as_tensor(intensity)
    bad = None if mask is None else torch.as_tensor(mask).to(data.device).bool()

    def refined(view: int) -> tuple[PhasingResult, AIStart, float]:
        res, st = phase_ai(intensity, mask, loaded=loaded, settings=settings, seed=seed,
                           device=device, view=view, **phase_ai_options(ai))
        return res, st, float(excess_misfit(res.obj, data, bad, psf_sigma=res.psf_sigma,
                                            counts=counts, background=background))

    result, start, misfit = refined(0)
    out = AutoOutcome(result=result, start=start, ai_result=result, used="ai", fallback=None,
                      misfit=misfit)
    if not fallback or misfit <= ai.fallback_misfit:
        return out
    out.fallback = {"reason": f"AI+ER excess misfit {misfit:.3g} > {ai.fallback_misfit:g}",
                    "ai_llk": float(result.llk), "ai_misfit": misfit, "views": []}
    polishing = bool(ai.polish_cycles and ai.polish_raar + ai.polish_er)

    def polished(res: PhasingResult, res_misfit: float, key: str, label: str,
                 **extra: Any) -> bool:
        """Polish ``res`` (excess misfit ``res_misfit``), record it in ``out.fallback[key]``
        (with ``extra``), keep it if its LLK is the lowest so far; whether it fits."""
        pol, pol_misfit = polish(res, data, bad, settings=settings, n_raar=ai.polish_raar,
                                 n_er=ai.polish_er, cycles=ai.polish_cycles,
                                 misfit_max=ai.fallback_misfit, seed=seed, device=device,
                                 misfit=res_misfit, counts=counts, background=background)
        out.fallback[key] = {**extra, "llk": float(pol.llk), "misfit": pol_misfit,
                             "algorithm": pol.algorithm}
        if pol.llk < out.result.llk:
            out.result, out.used, out.misfit = pol, label, pol_misfit
        return pol_misfit <= ai.fallback_misfit

    if polishing and polished(result, misfit, "polish", "auto:polish"):
        return out
    kept_phase = start.phase_q
    best_view: tuple[int, PhasingResult, float] | None = None
    for view in range(1, ai.views):
        res_v, start_v, misfit_v = refined(view)
        out.fallback["views"].append({"view": view, "llk": float(res_v.llk),
                                      "misfit": misfit_v})
        if res_v.llk < out.result.llk:
            out.result, out.used, out.misfit = res_v, f"auto:view{view}", misfit_v
            kept_phase = start_v.phase_q
        if misfit_v <= ai.fallback_misfit:
            return out
        if best_view is None or res_v.llk < best_view[1].llk:
            best_view = (view, res_v, misfit_v)
    if polishing and best_view is not None and polished(
            best_view[1], best_view[2], "view_polish", f"auto:view{best_view[0]}:polish",
            view=best_view[0]):
        return out
    if not ai.fallback_conventional:
        return out
    runs = ai.fallback_runs or settings.runs
    conv = run_conventional(
        data, bad, settings=settings.model_copy(update={"runs": runs}), seed=seed,
        device=device, progress=progress,
        obj_init=seeded_starts(data, bad, kept_phase.to(data.device), runs, seed),
    )
    conv_misfit = float(excess_misfit(conv.obj, data, bad, psf_sigma=conv.psf_sigma,
                                      counts=counts, background=background))
    out.fallback.update(conventional_llk=float(conv.llk), conventional_misfit=conv_misfit)
    if conv.llk < out.result.llk:
        out.result, out.used, out.misfit = conv, "auto:conventional", conv_misfit
    return out
