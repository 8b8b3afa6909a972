"""The live job: one raw run in Tiled -> one reconstruction in Tiled.

``process_run`` reads the frames (retrying while they are not readable yet), masks and crops them
around the Bragg peak (:func:`bcdi_stream.preprocess.prepare_frames`), reconstructs
(:func:`bcdi_stream.pipeline.reconstruct`), renders the slice figure and writes
``processed/<raw_uid>``. It never raises for a bad scan or a refusing server: it returns a
:class:`ScanResult` whose ``status`` is ``ok``, ``failed`` or ``skipped``, and writes a failure
record when it can.

Per-stage timings (seconds): ``read``, ``preprocess``, ``predict`` (AI phase prediction; 0 for
the conventional method), ``refine`` (phasing + post-processing), ``write``, ``total`` (read to
written) and ``latency`` (the stop document's time to written: what a user waits).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, field_validator

from bcdi_stream import __version__
from bcdi_stream.config import PhasingSettings, Settings
from bcdi_stream.errors import InputError
from bcdi_stream.phasing import MISFIT_FLOOR, SUPPORT_FRACTION_MAX
from bcdi_stream.tiled_io._frames import TiledRefused, _short, read_scan
from bcdi_stream.tiled_io._results import (
    DEFAULT_PROCESSED_KEY,
    check_uid,
    jsonable,
    write_failure,
    write_result,
)
from bcdi_stream.tiled_io._spool import Spool, is_unreachable

__all__ = ["MISFIT_FLOOR", "JobSettings", "ScanResult", "live_phasing", "misfit_limit",
           "partial_run_reason", "process_run", "quality_flag", "record_skipped",
           "resolve_method"]

log = logging.getLogger("bcdi_stream.live")

STAGES: tuple[str, ...] = ("read", "preprocess", "predict", "refine", "write")


def live_phasing() -> PhasingSettings:
    """The fast "live" preset of the conventional recipe (seconds per 64³ scan on 2 CPU cores).

    Two random starts of RAAR 100 + ER 40 with shrink-wrap every 10 iterations: enough for a
    weakly strained crystal's strain map while the sample is on the beam; the full recipe
    (:class:`PhasingSettings` defaults) is for offline work.
    """
    return PhasingSettings(runs=2, n_raar=100, n_hio=0, n_er=40, shrinkwrap_every=10)


class JobSettings(BaseModel):
    """Settings of the live job.

    Attributes
    ----------
    shape : (int, int, int)
        Phasing grid the frames are cropped to around the Bragg peak.
    method : {"auto", "conventional", "ai"}
        ``auto`` is the AI model when its weights exist, else the conventional recipe.
    phasing : PhasingSettings
        Conventional recipe (default: the :func:`live_phasing` preset).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
    seed : int
        Seed of the random starts.
    read_timeout : float
        Seconds to keep retrying the read of a scan's frames.
    processed_key : str
        Tiled key of the container of results.
    figures : bool
        Render and store the PNG-exportable slice figure.
    misfit_good : float or None
        Excess misfit (:func:`bcdi_stream.phasing.excess_misfit`: the share of the measured
        intensity left unexplained beyond Poisson noise, ≈ 0 for a correct model at any flux)
        at or below which the quality flag is ``good``. ``None`` (default): ``ai.fallback_misfit``
        of :class:`~bcdi_stream.config.Settings` (0.0025 unless ``BCDI_AI__FALLBACK_MISFIT``
        says otherwise), the limit above which ``auto`` tries further, so that the flag and the
        fallback agree.
    llk_good : float
        Poisson LLK at or below which the quality flag is ``good`` when the reconstruction
        reports no excess misfit (a reconstruct function of one's own).
    partial_runs : bool
        Reconstruct rocking curves that were aborted or stopped before their planned frames
        (:func:`partial_run_reason`) too; by default they are recorded as skipped, live and
        when re-processed alike (``bcdi-stream reprocess --partial`` sets it).
    background : bool
        Model the flat detector background read outside the crop, far from the peak
        (:func:`bcdi_stream.preprocess.outside_background`; always recorded as
        ``preprocess.background``), in the excess misfit that triggers ``auto``'s fallback and
        sets the quality flag (:func:`bcdi_stream.pipeline.reconstruct`'s ``background``; the
        record's ``background``: the value modelled, None when not). Off by default: the
        refinement does not model the background and its result keeps part of it, so the
        figure that models it counts that part twice. Measured on live-like scans (weak and
        medium 64³ crystals, 1e4 and 1e5 peak counts, 8 seeds each, ``benchmarks/research/
        background_trigger.py``, docs/LIVE.md): at 0.5 photon/pixel it spared 5 of 16 false
        fallbacks (those at 1e5) and caught the same 7 of 9 failures; at 1 photon/pixel it
        made 20 of 21 correct results fall back (3 without) while catching 10 of 11 failures
        (6 without).
    """

    shape: tuple[int, int, int] = (64, 64, 64)
    method: str = "auto"
    phasing: PhasingSettings = Field(default_factory=live_phasing)
    device: str = "auto"
    seed: int = 0
    read_timeout: float = Field(30.0, ge=0)
    processed_key: str = DEFAULT_PROCESSED_KEY
    figures: bool = True
    misfit_good: float | None = Field(None, gt=0)
    llk_good: float = Field(3.0, gt=0)
    partial_runs: bool = False
    background: bool = False

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 8 for s in v):
            raise ValueError(f"shape sizes must be >= 8, got {v}")
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in ("auto", "conventional", "ai"):
            raise ValueError(f"method must be auto, conventional or ai, got {v!r}")
        return v


def quality_flag(misfit: Any, llk: Any, settings: JobSettings,
                 support_fraction: Any = None) -> str:
    """``good`` or ``poor``: the excess misfit within ``[MISFIT_FLOOR, misfit_limit]`` (far
    below zero the model fits the noise: a pattern without a Bragg peak), else, without a
    misfit, the LLK at or below ``settings.llk_good``; ``poor`` whatever the fit when the
    support covers more than :data:`~bcdi_stream.phasing.SUPPORT_FRACTION_MAX` of the grid
    (``support_fraction``: the pattern is not oversampled enough to determine its phase)."""
    if isinstance(support_fraction, (int, float)) and not (
            support_fraction <= SUPPORT_FRACTION_MAX):
        return "poor"
    if isinstance(misfit, (int, float)):
        good = math.isfinite(misfit) and MISFIT_FLOOR <= misfit <= misfit_limit(settings)
    else:
        good = (isinstance(llk, (int, float)) and math.isfinite(llk)
                and llk <= settings.llk_good)
    return "good" if good else "poor"


def misfit_limit(settings: JobSettings) -> float:
    """The excess misfit at or below which a scan's quality flag is ``good``.

    Parameters
    ----------
    settings : JobSettings
        ``misfit_good``, or when it is ``None`` the ``ai.fallback_misfit`` of
        :class:`~bcdi_stream.config.Settings` (read from the environment now).

    Returns
    -------
    float
    """
    if settings.misfit_good is not None:
        return float(settings.misfit_good)
    return float(Settings().ai.fallback_misfit)


@dataclass
class ScanResult:
    """What became of one scan (inspectable from Python, summarised in one line).

    Attributes
    ----------
    raw_uid : str
        The raw run's uid.
    status : {"ok", "failed", "skipped", "spooled"}
        ``skipped``: an aborted/failed scan or not a rocking curve with data; ``spooled``:
        Tiled was unreachable, the result (or record) waits in the local spool for replay.
    error : str or None
        One-line reason when not ``ok``.
    method : str or None
        Reconstruction method used.
    timings : dict
        Seconds per stage (see the module docstring).
    summary : dict
        Strain statistics, quality, voxel size, preprocessing record.
    path : str or None
        Where the result/record is in Tiled (``processed/<uid>``); None if it could not be
        written.
    scan : dict
        Scan identity: ``scan_id``, ``plan_name``, ``sample``, ``field``, ``frames``.
    arrays : dict or None
        The result arrays (numpy), when kept.
    figure : numpy.ndarray or None
        The rendered slice figure (RGB).
    """

    raw_uid: str
    status: str
    error: str | None = None
    method: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    scan: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)
    figure: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the reconstruction was written."""
        return self.status == "ok"

    @property
    def quality_flag(self) -> str:
        """``good``, ``poor`` or ``none`` (no reconstruction)."""
        return str(self.summary.get("quality_flag", "none"))

    def line(self) -> str:
        """One-line summary: strain range and rms, quality flag, latency and stage times."""
        sid = self.scan.get("scan_id")
        head = f"scan {sid} " if sid is not None else "scan "
        head += f"{self.raw_uid[:8]}"
        if self.scan.get("sample"):
            head += f" ({self.scan['sample']})"
        t = self.timings
        lat = t.get("latency")
        lat_s = f"{lat:.1f} s" if lat is not None else "n/a"
        if self.status == "ok":
            s = self.summary
            stages = " ".join(f"{k} {t.get(k, 0.0):.2f}" for k in STAGES)
            llk = s.get("llk")
            llk_s = f"LLK {llk:.2f}" if isinstance(llk, (int, float)) else "LLK n/a"
            misfit = s.get("excess_misfit")
            if isinstance(misfit, (int, float)):
                llk_s += f", misfit {misfit:.2g}"
            return (
                f"{head}: strain {_e(s.get('strain_min'))} .. {_e(s.get('strain_max'))}, "
                f"rms {_e(s.get('strain_rms'))}; {llk_s} [{self.quality_flag}]; "
                f"latency {lat_s} ({stages} s) -> {self.path}"
            )
        if self.status == "spooled":
            return (f"{head}: SPOOLED (Tiled unreachable): {self.error}; kept in {self.path}, "
                    f"written when Tiled is back")
        where = f" -> {self.path}" if self.path else " (no record written)"
        return f"{head}: {self.status.upper()}: {self.error}{where}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (without the arrays)."""
        return jsonable({
            "raw_uid": self.raw_uid, "status": self.status, "error": self.error,
            "method": self.method, "timings": self.timings, "summary": self.summary,
            "path": self.path, "scan": self.scan,
        })


def _e(v: Any) -> str:
    return f"{v:+.2e}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def resolve_method(requested: str) -> str:
    """The method to run: ``auto`` is the AI model when the engine reports usable weights
    (``bcdi_stream.pipeline.model_available()``), else ``conventional``."""
    if requested not in ("auto", "conventional", "ai"):
        raise ValueError(f"requested must be auto, conventional or ai, got {requested!r}")
    if requested != "auto":
        return requested
    from bcdi_stream import pipeline

    probe = getattr(pipeline, "model_available", None)
    try:
        if callable(probe) and probe():
            return "auto"
    except Exception:  # a broken model install must not stop the live service
        log.exception("model_available() failed; using the conventional method")
    return "conventional"


def _scan_info(start: Mapping[str, Any], field_name: str | None, n_frames: int | None
               ) -> dict[str, Any]:
    sample = start.get("sample")
    if isinstance(sample, Mapping):
        sample = sample.get("name")
    return jsonable({
        "scan_id": start.get("scan_id"),
        "plan_name": start.get("plan_name"),
        "sample": sample,
        "field": field_name,
        "frames": n_frames,
    })


def _failure(client: Any, uid: str, error: str, md: dict[str, Any], processed_key: str,
             result: ScanResult, spool: Spool | None = None, rerun: bool = False
             ) -> ScanResult:
    result.error = error
    try:
        write_failure(client, uid, error, md, processed_key=processed_key)
        result.path = f"{processed_key}/{uid}"
    except Exception as exc:  # even the record was refused: the reason goes to the log
        if spool is not None and is_unreachable(exc):
            try:
                path = spool.put_failure(uid, error, md, processed_key=processed_key,
                                         reason=_short(exc), rerun=rerun)
            except Exception as sexc:
                log.exception("scan %s: could not spool the failure record", uid)
                result.error = f"{error}; failure record not written: {_short(sexc)}"
                return result
            result.status = "spooled"
            result.path = str(path)
            return result
        result.error = f"{error}; failure record not written: {_short(exc)}"
        log.error("scan %s: %s", uid, result.error)
    return result


def record_skipped(
    client: Any,
    raw_uid: str,
    reason: str,
    *,
    start: Mapping[str, Any] | None = None,
    stop_time: float | None = None,
    processed_key: str = DEFAULT_PROCESSED_KEY,
    spool: Spool | None = None,
) -> ScanResult:
    """Record a scan that is not reconstructed (aborted, failed, no detector data): a
    ``failed`` record with ``skipped: true`` in Tiled, a ``skipped`` result in Python.

    Never raises; a refused write leaves the reason in the result and the log. With a
    ``spool``, a record that cannot reach Tiled is spooled (status ``spooled``) and written
    on replay.
    """
    result = ScanResult(raw_uid=raw_uid, status="skipped",
                        scan=_scan_info(start or {}, None, None))
    if stop_time is not None:
        result.timings["latency"] = round(time.time() - stop_time, 4)
    md = {"skipped": True, "software": f"bcdi-stream {__version__}", "scan": result.scan,
          "method": None, "model": {"name": None, "hash": None},
          "timings": dict(result.timings)}
    _failure(client, raw_uid, f"skipped: {reason}", md, processed_key, result, spool)
    result.error = (result.error or "").removeprefix("skipped: ")
    return result


def partial_run_reason(start: Mapping[str, Any], stop: Mapping[str, Any],
                       stream: str = "primary") -> str | None:
    """Why a finished run is not a whole rocking curve, or None when it is.

    A run that did not end in ``success`` (``"scan abort (sample moved)"``), or one that
    recorded fewer ``stream`` events than its plan's ``start["bcdi"]["num_frames"]``
    (``RE.stop()`` ends with ``success``: ``"incomplete rocking curve: 4 of 32 frames"``).
    An empty ``stop`` (not written yet) gives None.

    Parameters
    ----------
    start, stop : mapping
        The run's start and stop documents.
    stream : str
        The event stream of the frames.
    """
    if not stop:
        return None
    status = stop.get("exit_status", "success")
    if status != "success":
        if not isinstance(status, str) or not status:
            return f"stop document without a valid exit_status ({str(status)[:40]!r})"
        reason = stop.get("reason") or ""
        return f"scan {status}" + (f" ({reason})" if reason else "")
    bcdi = start.get("bcdi")
    planned = bcdi.get("num_frames") if isinstance(bcdi, Mapping) else None
    num_events = stop.get("num_events")  # a malformed stop (from the network): no count
    n_events = num_events.get(stream) if isinstance(num_events, Mapping) else None
    if (isinstance(planned, int) and not isinstance(planned, bool)
            and isinstance(n_events, int) and 0 < n_events < planned):
        return f"incomplete rocking curve: {n_events} of {planned} frames"
    return None


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def process_run(
    client: Any,
    raw_uid: str,
    *,
    settings: JobSettings | None = None,
    image_field: str | None = None,
    stream: str = "primary",
    expected_frames: int | None = None,
    stop_time: float | None = None,
    device: Any | None = None,
    model: Any | None = None,
    keep_arrays: bool = True,
    spool: Spool | None = None,
) -> ScanResult:
    """Reconstruct one raw run from Tiled and write ``processed/<raw_uid>``.

    Parameters
    ----------
    client : tiled container client
        Catalog root holding the raw run; results are written to the same catalog.
    raw_uid : str
        The raw run's uid.
    settings : JobSettings, optional
        Job settings (default :class:`JobSettings`).
    image_field : str, optional
        Detector image data key; default the start document's ``bcdi.image_field`` when the
        stream has it, else the stream's one 2D field.
    stream : str
        Event stream of the frames.
    expected_frames : int, optional
        Frames counted by the stop document (fewer in Tiled = not written yet: retried).
    stop_time : float, optional
        Epoch time of the stop document; gives the ``latency`` timing.
    device : str or torch.device, optional
        Overrides ``settings.device`` (a worker's assigned GPU).
    model : object, optional
        A loaded phase-prediction model, passed to the pipeline when it accepts one.
    keep_arrays : bool
        Keep the result arrays and figure in the returned :class:`ScanResult`.
    spool : Spool, optional
        Where the result (or failure record) goes when Tiled does not answer at write time
        (status ``spooled``); a read that timed out because Tiled was down is spooled as
        "re-run on replay". Without a spool such a scan ends ``failed``.

    Returns
    -------
    ScanResult
        Never raises for a bad scan or a refusing server.
    """
    check_uid(raw_uid)
    settings = settings or JobSettings()
    pkey = settings.processed_key
    t_begin = time.perf_counter()
    timings: dict[str, float] = {}
    result = ScanResult(raw_uid=raw_uid, status="failed", timings=timings)
    md: dict[str, Any] = {
        "software": f"bcdi-stream {__version__}",
        "model": {"name": None, "hash": None},
        "method": None,
        "timings": timings,
        "settings": settings.model_dump(mode="json"),
    }
    stage = "read"
    rerun = False

    def _finish_latency() -> None:
        timings["total"] = round(time.perf_counter() - t_begin, 4)
        if stop_time is not None:
            timings["latency"] = round(time.time() - stop_time, 4)

    try:
        t0 = time.perf_counter()
        raw = read_scan(client, raw_uid, field=image_field, stream=stream,
                        expected_frames=expected_frames, timeout=settings.read_timeout)
        timings["read"] = round(time.perf_counter() - t0, 4)
        log.debug("scan %s: read %d frames in %.2f s", raw_uid, raw.frames.shape[0],
                  timings["read"])
        result.scan = _scan_info(raw.start, raw.field, int(raw.frames.shape[0]))
        md["scan"] = result.scan
        partial = partial_run_reason(raw.start, raw.stop, stream)
        if partial is not None and not settings.partial_runs:
            # what the live callback skips is skipped again when re-processed
            return record_skipped(client, raw_uid, partial, start=raw.start,
                                  stop_time=stop_time, processed_key=settings.processed_key,
                                  spool=spool)
        md["read_attempts"] = raw.attempts
        geometry = raw.geometry
        md["geometry"] = geometry.to_dict() if geometry is not None else None

        stage = "preprocess"
        from bcdi_stream.preprocess import prepare_frames

        t0 = time.perf_counter()
        prep = prepare_frames(raw.frames, shape=settings.shape)
        timings["preprocess"] = round(time.perf_counter() - t0, 4)
        md["preprocess"] = prep.meta

        stage = "reconstruct"
        from bcdi_stream.pipeline import reconstruct

        method = resolve_method(settings.method)
        md["method"] = result.method = method
        kwargs: dict[str, Any] = {}
        background = prep.meta.get("background")
        if (settings.background and isinstance(background, (int, float)) and background > 0
                and _accepts(reconstruct, "background")):
            kwargs["background"] = float(background)
        md["background"] = kwargs.get("background")  # modelled (per pixel per frame); None: not
        if model is not None and _accepts(reconstruct, "model"):
            kwargs["model"] = model
            md["model"] = {"name": getattr(model, "name", type(model).__name__),
                           "hash": getattr(model, "hash", None)}
        t0 = time.perf_counter()
        rec = reconstruct(prep.intensity, prep.mask, method=method, phasing=settings.phasing,
                          geometry=geometry, device=device or settings.device,
                          seed=settings.seed, **kwargs)
        wall = time.perf_counter() - t0
        if isinstance(getattr(rec, "method", None), str):  # what "auto" turned out to be
            md["method"] = result.method = rec.method
        predict = float(rec.timings.get("predict", 0.0))
        timings["predict"] = round(predict, 4)
        timings["refine"] = round(wall - predict, 4)
        if isinstance(rec.meta.get("model"), Mapping):
            md["model"] = dict(rec.meta["model"])
        if md["background"] is not None and rec.meta.get("background_modelled") is False:
            md["background"] = None  # not below the crop's mean: not modelled
        for key in ("noise_filter", "crystal_support"):
            if isinstance(rec.meta.get(key), (int, float)):
                md[key] = float(rec.meta[key])
        if "photon_scale" in rec.meta:  # None: the frames were not counts
            scale = rec.meta["photon_scale"]
            md["photon_scale"] = float(scale) if isinstance(scale, (int, float)) else None
        # an integrating detector's frames rounded; a clipped peak, another grain's peak left free
        # hot, stuck or dead detector pixels and cosmic-ray hits: left free
        for key, kind in (("rounded_to_photons", bool), ("saturated_voxels", int),
                          ("secondary_peak_voxels", int), ("hot_pixels", int),
                          ("dead_pixels", int), ("zinger_voxels", int)):
            if isinstance(rec.meta.get(key), kind):
                md[key] = kind(rec.meta[key])
        # dropped frames, unflagged detector gaps, frames of a beam glitch: left free
        for key in ("lost_frames", "dead_rows", "dead_columns", "glitched_frames"):
            if isinstance(rec.meta.get(key), list):
                md[key] = [int(k) for k in rec.meta[key]]
        if isinstance(rec.meta.get("glitch_factors"), list):
            md["glitch_factors"] = [float(v) for v in rec.meta["glitch_factors"]]
        if "peak_filled" in rec.meta:  # a masked core, lost frames or gaps filled for the model
            filled = rec.meta["peak_filled"]
            md["peak_filled"] = float(filled) if isinstance(filled, (int, float)) else None

        stage = "write"
        t0 = time.perf_counter()
        arrays = rec.post.to_numpy()
        pmeta = dict(rec.post.meta)
        quality = dict(rec.quality)
        llk = quality.get("llk")
        misfit = quality.get("excess_misfit")
        flag = quality_flag(misfit, llk, settings, quality.get("support_fraction"))
        quality["flag"] = flag
        summary = {
            **rec.post.strain_stats(),
            "support_voxels": pmeta.get("support_voxels"),
            "llk": llk,
            "chi2": quality.get("chi2"),
            "excess_misfit": misfit,
            "quality_flag": flag,
            "voxel_size_m": rec.meta.get("voxel_size_m"),
            "shape": list(arrays["amplitude"].shape),
        }
        md.update(
            quality=quality,
            voxel_size_m=rec.meta.get("voxel_size_m"),
            postprocess=pmeta,
            strain=rec.post.strain_stats(),
            device=rec.meta.get("device"),
            pipeline_timings=rec.timings,
            summary=summary,
        )
        figures = {}
        if settings.figures:
            from bcdi_stream.tiled_io._figures import render_slices

            title = f"{raw_uid[:8]}"
            if result.scan.get("sample"):
                title += f" · {result.scan['sample']}"
            title += f" · strain rms {_e(pmeta.get('strain_rms'))} · {method}"
            figures["slices"] = render_slices(
                arrays["amplitude"], arrays["phase"], arrays["strain"], arrays["support"],
                voxel_size=rec.meta.get("voxel_size_m"), title=title)
        render_s = time.perf_counter() - t0

        def _finalize(write_s: float) -> dict[str, Any]:
            timings["write"] = round(render_s + write_s, 4)
            _finish_latency()
            return {"timings": dict(timings)}

        t_write = time.perf_counter()
        try:
            write_result(client, raw_uid, arrays, md, figures=figures, processed_key=pkey,
                         finalize=_finalize)
            result.status = "ok"
            result.path = f"{pkey}/{raw_uid}"
        except Exception as exc:
            if spool is None or not is_unreachable(exc):
                raise
            md.update(_finalize(time.perf_counter() - t_write))
            result.path = str(spool.put_result(raw_uid, arrays, md, figures=figures,
                                               processed_key=pkey, reason=_short(exc)))
            result.status = "spooled"
            result.error = _short(exc)
        result.summary = summary
        if keep_arrays:
            result.arrays = arrays
            result.figure = figures.get("slices")
        return result
    except (InputError, ValueError) as exc:
        error = f"{stage}: {' '.join(str(exc).split())}"
    except TiledRefused as exc:
        error = f"{stage}: {exc}"
    except TimeoutError as exc:
        error = f"{stage}: {exc}"
        rerun = stage == "read" and is_unreachable(exc)
    except Exception as exc:  # anything else: keep the service alive, record the reason
        log.exception("scan %s failed in %s", raw_uid, stage)
        error = f"{stage}: {_short(exc)}"
    _finish_latency()
    md["failed_stage"] = stage
    md.pop("summary", None)
    return _failure(client, raw_uid, error, md, pkey, result, spool, rerun)
