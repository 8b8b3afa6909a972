"""One scan in, one reconstruction out: validation, phasing, post-processing, quality, timings.

This is the function the CLI, the live callback and the worker all call. It takes arrays and
returns arrays (no file or Tiled I/O here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from bcdi_stream import __version__
from bcdi_stream.analysis import PostProcessed, crystal_support, postprocess
from bcdi_stream.arrays import resolve_device
from bcdi_stream.config import AISettings, PhasingSettings, Settings
from bcdi_stream.errors import InputError
from bcdi_stream.geometry import Geometry
from bcdi_stream.phasing import apply_noise_filter, excess_misfit, run_conventional
from bcdi_stream.validation import (
    clamp_sub_photon_negatives,
    leave_free,
    photon_scale,
    sub_photon_noise,
    validate_intensity,
)

__all__ = ["METHODS", "Reconstruction", "default_method", "finish", "model_available",
           "reconstruct"]

Method = Literal["conventional", "ai", "auto"]

#: Reconstruction methods the CLI and the callback accept.
METHODS: tuple[str, ...] = ("conventional", "ai", "auto")


@dataclass
class Reconstruction:
    """Result of :func:`reconstruct`.

    Attributes
    ----------
    obj : torch.Tensor
        Complex64 real-space object on the input grid (CXI ``/entry_1/image_1/data``), centred,
        with the linear phase ramp and offset removed (``post`` arrays share its frame), after
        the noise filter (``settings.phasing.noise_filter``, :func:`bcdi_stream.phasing.denoise`).
    support : torch.Tensor
        Bool support on the same grid: the crystal's (``settings.phasing.crystal_support``,
        :func:`bcdi_stream.analysis.crystal_support`), else the last shrink-wrap's.
    post : PostProcessed
        Amplitude, phase, displacement, strain and their statistics.
    method : str
        The method that produced the result.
    quality : dict
        Poisson LLK, χ², per-run LLKs and success flags, of the refined object (before the
        noise filter, which gives up the fit at noisy pixels on purpose), in photons (an
        intensity of scaled counts is converted, ``meta["photon_scale"]``).
    timings : dict
        Seconds per stage (``validate``, ``phase``, ``denoise``, ``support``, ``postprocess``,
        ``total``).
    meta : dict
        JSON-able provenance: software version, device, seed, settings, geometry,
        ``photon_scale`` (photons per unit of the input intensity,
        :func:`bcdi_stream.validation.photon_scale`: 1 for counts, None when the values are not
        counts), ``rounded_to_photons`` (the values were photons plus sub-photon noise, a
        charge-integrating detector's, and were rounded:
        :func:`bcdi_stream.validation.sub_photon_noise`), ``clamped_negative`` (how many of
        their values below 0 were set to 0), ``noise_filter`` (its counts; 0 = off, or not
        applied because the intensity is not in photons), ``crystal_support`` (its threshold;
        0 = off),
        ``saturated_voxels`` (a clipped peak's voxels left free,
        :func:`bcdi_stream.validation.saturated_plateau`; 0 = none), ``lost_frames`` (frames
        with no counts inside the rocking curve, left free,
        :func:`bcdi_stream.validation.lost_frames`; empty = none), ``dead_rows`` and
        ``dead_columns`` (detector rows and columns with no count in any frame, an unflagged
        gap, left free, :func:`bcdi_stream.validation.dead_lines`; empty = none),
        ``secondary_peak_voxels`` (the region of another grain's Bragg peak, left free,
        :func:`bcdi_stream.validation.secondary_peaks`; 0 = none), ``hot_pixels`` and
        ``dead_pixels`` (detector pixels hot, stuck or dead, left free in every frame; 0 =
        none), ``zinger_voxels`` (cosmic-ray hits, left free), ``glitched_frames`` and
        ``glitch_factors`` (frames scaled by a beam glitch and their counts over what the
        rocking curve predicts; left free when the data are counts,
        :func:`bcdi_stream.validation.leave_free`), ``peak_filled``
        (``ai``/``auto``: the share of the intensity a masked peak core, lost frames or detector
        gaps held, filled for the model, :attr:`bcdi_stream.ai_phasing.AIStart.filled`; None =
        not filled).
    """

    obj: torch.Tensor
    support: torch.Tensor
    post: PostProcessed
    method: str
    quality: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-able one-level summary for logs, ``--json`` and Tiled metadata."""
        return {
            "method": self.method,
            "shape": list(self.obj.shape),
            "quality": self.quality,
            "timings": self.timings,
            "strain": self.post.strain_stats(),
            "units": self.post.meta.get("units", {}),
            **{k: v for k, v in self.meta.items() if k not in ("settings",)},
        }


def model_available(settings: Settings | None = None) -> bool:
    """Whether the ``ai``/``auto`` methods have weights (``settings.ai.model`` or shipped)."""
    from bcdi_stream.model import default_weights_path
    from bcdi_stream.model import model_available as _exists

    path = (settings.ai.model if settings is not None else "") or default_weights_path()
    return _exists(path)


def default_method(settings: Settings | None = None) -> str:
    """``"ai"`` when model weights are available (shipped or configured), else conventional."""
    return "ai" if model_available(settings) else "conventional"


def _load(model: Any, ai: AISettings, dev: torch.device) -> Any:
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.model import LoadedModel

    if isinstance(model, LoadedModel):
        return model
    try:
        return cached_model(model or ai.model or None, dev, ai.precision)
    except ValueError as exc:
        raise InputError(f"the ai method needs model weights: {exc}") from None


def _background(background: float | None, data: torch.Tensor, bad: torch.Tensor | None,
                scale: float) -> float:
    """The flat background to model, in the units of ``data`` (``background`` × ``scale``);
    0.0 when none is given or it is not below the mean of the measured voxels (the excess
    misfit's domain: such a value is no background of these data)."""
    if not background:
        return 0.0
    bg = float(background) * float(scale)
    values = data if bad is None else data[~bad]
    if values.numel() == 0 or not bg < float(values.to(torch.float64).mean()):
        return 0.0
    return bg


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 4)


def finish(obj: torch.Tensor, support: torch.Tensor, intensity: torch.Tensor,
           mask: torch.Tensor | None, phasing: PhasingSettings,
           timings: dict[str, float] | None = None, *, counts: bool = True
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """What every method's result goes through before post-processing.

    The noise filter (``phasing.noise_filter``, :func:`bcdi_stream.phasing.denoise`), then
    the reported support (``phasing.crystal_support``,
    :func:`bcdi_stream.analysis.crystal_support`); a step set to 0 is skipped, and so is the
    filter when the intensity is not in photons (``counts`` False).

    Parameters
    ----------
    obj, support : torch.Tensor
        The refined object ``(z, y, x)`` and its phasing support.
    intensity, mask : torch.Tensor
        The measured counts and bad pixels (True = bad), on the object's device.
    phasing : PhasingSettings
        ``noise_filter``, ``crystal_support`` and the last shrink-wrap's width and threshold.
    timings : dict, optional
        Receives the seconds of each step run (``denoise``, ``support``).
    counts : bool
        The intensity is in photons (:func:`bcdi_stream.validation.photon_scale` is 1): the
        filter's ``noise_filter`` counts mean something.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The object and the bool support to post-process and report.
    """
    timings = {} if timings is None else timings
    if phasing.noise_filter > 0 and counts:
        with _stage(timings, "denoise"):
            obj, support = apply_noise_filter(obj, support, intensity, mask, phasing)
    if phasing.crystal_support > 0:
        with _stage(timings, "support"):
            support = crystal_support(obj, support, phasing.crystal_support)
    return obj, support


def reconstruct(
    intensity: Any,
    mask: Any | None = None,
    *,
    method: str = "conventional",
    settings: Settings | None = None,
    phasing: PhasingSettings | None = None,
    geometry: Geometry | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    model: Any = None,
    background: float | None = None,
) -> Reconstruction:
    """Reconstruct one BCDI scan.

    Parameters
    ----------
    intensity : array-like
        3D diffraction intensity, Bragg peak near the grid centre; numpy, torch or cupy.
        Photon counts, or counts scaled by one factor (normalised by a monitor, an exposure
        time or the maximum) or by gains near 1 (a flat field, a monitor per frame): converted
        back to photons for the phasing and the result scaled back. Photons plus sub-photon
        noise (a charge-integrating detector's, clamped at 0) are rounded to counts
        (``meta["rounded_to_photons"]``); their negative values above -1 photon are set to 0
        first (``meta["clamped_negative"]``; other negative values are refused). Other values
        (noise-free) are phased as given, without the noise filter, and their excess misfit
        counts any noise as misfit (:func:`bcdi_stream.validation.photon_scale`).
    mask : array-like, optional
        Bad-pixel mask of the same shape (nonzero = bad); bad pixels are left free. Counts
        tied at a high maximum (a clipped, saturated peak) are added to it
        (:func:`bcdi_stream.validation.saturated_plateau`, ``meta["saturated_voxels"]``), and
        so are frames with no counts inside the rocking curve (a frame the detector dropped,
        :func:`bcdi_stream.validation.lost_frames`, ``meta["lost_frames"]``), detector rows
        and columns with no count in any frame (a gap the mask does not flag,
        :func:`bcdi_stream.validation.dead_lines`, ``meta["dead_rows"]``,
        ``meta["dead_columns"]``), the region of another grain's Bragg peak
        (:func:`bcdi_stream.validation.secondary_peaks`, ``meta["secondary_peak_voxels"]``),
        hot, stuck and dead pixels, cosmic-ray hits and frames of a beam glitch
        (:func:`bcdi_stream.validation.leave_free`).
    method : {"conventional", "ai", "auto"}
        ``conventional``: the PyNX-style multi-run recipe. ``ai``: the model predicts φ(q),
        ``IFFT(√I·e^{iφ})`` starts a short refinement (``settings.ai.n_raar`` RAAR +
        ``settings.ai.n_hio`` HIO + ``settings.ai.n_er`` ER iterations, one run). ``auto``:
        ``ai``, then, when its excess misfit (the share of the measured intensity left
        unexplained beyond Poisson noise) exceeds ``settings.ai.fallback_misfit``, its polish
        (``settings.ai.polish_*``), then the other views of the pattern (reflected along some
        axes, ``settings.ai.views``) until one fits, and, when none does, the best view
        polished and the conventional recipe with its runs seeded by the best view's phase
        (``settings.ai.fallback_conventional``); the lowest LLK is kept and
        :attr:`Reconstruction.method` says which (``ai``, ``auto:polish``, ``auto:view<v>``,
        ``auto:view<v>:polish``, ``auto:conventional``). Every method's result then passes
        :func:`finish`: the noise filter (``phasing.noise_filter`` counts; 0 = off) and the
        crystal's support (``phasing.crystal_support``; 0 = off).
    settings : Settings, optional
        Global settings (device, seed, phasing recipe); defaults from the environment.
    phasing : PhasingSettings, optional
        Overrides ``settings.phasing``.
    geometry : Geometry, optional
        Measurement geometry; gives voxel sizes in metres, |G| and Ĝ for the strain.
    device : str or torch.device, optional
        Overrides ``settings.device``.
    seed : int, optional
        Overrides ``settings.seed``.
    progress : callable(done, total), optional
        Progress callback of the phasing stage.
    model : str, Path or LoadedModel, optional
        Weights for ``ai``/``auto`` (default: ``settings.ai.model``, else the shipped weights).
    background : float, optional
        Known flat background per voxel, in the intensity's units (e.g. read outside the crop
        by :func:`bcdi_stream.preprocess.prepare_frames`, ``meta["background"]``): modelled by
        every excess misfit, ``auto``'s fallback trigger and the reported one
        (:func:`bcdi_stream.phasing.excess_misfit`'s ``background``); the phasing itself does
        not model it. ``None`` or 0 (default): none, and a background counts as misfit. A
        value not below the mean intensity of the measured voxels is not modelled
        (``meta["background_modelled"]`` False).

    Returns
    -------
    Reconstruction

    Raises
    ------
    InputError
        Input that cannot be reconstructed, with a one-line reason.
    ValueError
        An invalid argument (unknown method...).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if background is not None:
        try:
            background = float(background)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"background must be a number, got {background!r}") from exc
        if not background >= 0 or background == float("inf"):
            raise ValueError(f"background must be a finite number >= 0, got {background!r}")
    settings = settings or Settings()
    phasing = phasing or settings.phasing
    dev = resolve_device(device if device is not None else settings.device)
    seed = settings.seed if seed is None else int(seed)
    ai = settings.ai
    loaded = _load(model, ai, dev) if method in ("ai", "auto") else None

    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with _stage(timings, "validate"):
        # a charge-integrating detector's noise below 0 (above -1 photon) is set to 0
        intensity, clamped = clamp_sub_photon_negatives(intensity, mask)
        data, bad = validate_intensity(intensity, mask)
        data = data.to(dev)
        bad = bad.to(dev) if bad is not None else None
        # photons: what the noise filter, the LLK and the excess misfit count in
        photons = photon_scale(data, bad)
        # a charge-integrating detector's photons plus sub-photon noise: the photon conversion
        # (clamped values passed that test already)
        rounded = photons is None and (clamped > 0 or sub_photon_noise(data, bad))
        if rounded:
            data, photons = torch.round(data), 1.0
        counts = photons is not None
        scaled = counts and photons != 1.0
        if scaled:
            data = torch.round(data * photons)  # the counts, to float32's last bit
        # a clipped peak, lost frames, another grain's peak: left free (the model sees the
        # first two filled, ai_phasing.predict_start)
        bad, faults = leave_free(data, bad, counts=counts)
        # the known flat background, in the units of data (photons when counts)
        bg = _background(background, data, bad, photons if scaled else 1.0)

    used = method
    fallback: dict[str, Any] | None = None
    hypothesis: dict[str, Any] | None = None
    with _stage(timings, "phase"):
        if loaded is None:
            result = run_conventional(
                data, bad, settings=phasing, seed=seed, device=dev, progress=progress
            )
            misfit = float(excess_misfit(result.obj, data, bad, psf_sigma=result.psf_sigma,
                                         counts=counts, background=bg))
        else:
            from bcdi_stream.ai_phasing import phase_auto

            outcome = phase_auto(data, bad, loaded=loaded, ai=ai, settings=phasing, seed=seed,
                                 device=dev, progress=progress, fallback=method == "auto",
                                 counts=counts, background=bg)
            start, result, used = outcome.start, outcome.result, outcome.used
            fallback = outcome.fallback
            misfit = outcome.misfit
            timings["predict"] = round(start.seconds, 4)
            timings["refine"] = round(outcome.ai_result.timings["total"], 4)
            if start.psf_sigma is not None:
                # the LLKs of the main run and of the hypothesis runs (a second one from the
                # deconvolved pattern's prediction when the blur is one the model never saw);
                # sigma: the hypothesis of the start kept
                first = outcome.ai_result
                hypothesis = {"sigma": [float(v) for v in start.psf_sigma],
                              "llk": [float(v) for v in first.llk_runs],
                              "kept": first.best_run >= 1,
                              "deblurred": first.best_run == 2}

    obj, support = finish(result.obj, result.support, data, bad, phasing, timings,
                          counts=counts)
    if scaled:
        obj = obj / photons**0.5  # back to the input's units
    g_hat = geometry.g_hat if geometry is not None else (0.0, 1.0, 0.0)
    g_norm = geometry.g_norm if geometry is not None else None
    voxel = geometry.voxel_size(tuple(data.shape)) if geometry is not None else None
    with _stage(timings, "postprocess"):
        post = postprocess(obj, support, g_hat=g_hat, g_norm=g_norm, voxel_size=voxel)
    timings["total"] = round(time.perf_counter() - t_start, 4)

    quality = {
        "llk": float(result.llk),
        "chi2": float(result.chi2),
        "excess_misfit": misfit,
        # share of the grid the reported support covers: above SUPPORT_FRACTION_MAX the
        # pattern is not oversampled enough for its phase to be determined
        "support_fraction": float(post.support.to(torch.float64).mean()),
        "llk_runs": [float(v) for v in result.llk_runs],
        "psf_sigma": [float(v) for v in result.psf_sigma],
    }
    if hypothesis is not None:
        quality["psf_hypothesis"] = hypothesis
    if fallback is not None:
        quality["fallback"] = fallback
    meta: dict[str, Any] = {
        "software": f"bcdi-stream {__version__}",
        "device": str(dev),
        "seed": seed,
        "voxel_size_m": list(voxel) if voxel is not None else None,
        "g_hat": list(g_hat),
        "geometry": geometry.to_dict() if geometry is not None else None,
        "settings": phasing.model_dump(),
        "noise_filter": float(phasing.noise_filter) if counts else 0.0,
        "photon_scale": photons,
        "rounded_to_photons": rounded,
        "clamped_negative": clamped,
        **faults,
        "crystal_support": float(phasing.crystal_support),
    }
    if background is not None:  # given: what was asked, and whether it was modelled
        meta["background"] = background
        meta["background_modelled"] = bg > 0
    if loaded is not None:
        meta["model"] = loaded.identity()
        meta["ai"] = ai.model_dump()
        # share a masked Bragg-peak core or lost frames held, filled for the model (None: not)
        meta["peak_filled"] = start.filled
    return Reconstruction(
        obj=post.obj,
        support=post.support.to(torch.bool),
        post=post,
        method=used,
        quality=quality,
        timings=timings,
        meta=meta,
    )
