"""``bcdi-stream demo``: a simulated beamline, a Tiled server and live reconstructions.

:func:`run_demo` starts an embedded Tiled server (``SimpleTiledServer``) unless given one, builds
a RunEngine with ``TiledWriter`` and the live :class:`callbacks.BCDICallback`, measures several
rocking curves of different simulated strained crystals on the simulated beamline, waits for
their reconstructions, checks each one from a *fresh* Tiled client, prints per-scan latency and
how to browse the results, and exits (or keeps serving with ``serve=True``).
"""

from __future__ import annotations

import numbers
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bcdi_stream.arguments import is_finite_real, is_integral

__all__ = ["run_demo"]

_STAGES = ("read", "preprocess", "predict", "refine", "write")
_STRAINS = ("weak", "medium", "strong", "any")
#: Grid sizes the crystal simulator accepts (``bcdi_stream.simulation``: ``n`` in [16, 1024]).
_SIZES = (16, 1024)


def run_demo(
    n_scans: int = 3,
    serve: bool = False,
    tiled_uri: str | None = None,
    api_key: str | None = None,
    echo: Callable[[str], Any] = print,
    *,
    size: int = 64,
    detector_shape: Sequence[int] | None = None,
    strains: Sequence[str] = ("weak", "medium", "weak"),
    seed: int = 0,
    exposure_s: float = 0.05,
    settings: Any | None = None,
    directory: str | Path | None = None,
    timeout: float = 900.0,
    publish_analysis: bool = True,
    live_figure_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run the live BCDI demo.

    Parameters
    ----------
    n_scans : int
        Rocking curves to measure (different crystals), >= 1.
    serve : bool
        Keep the embedded Tiled server up after the scans, until Ctrl-C.
    tiled_uri : str, optional
        Use this Tiled server (``http://host:port/api/v1``) instead of an embedded one.
    api_key : str, optional
        API key for ``tiled_uri`` (default ``TILED_API_KEY`` from the environment); with the
        embedded server, the key it accepts (default a random one). Tiled 0.2.20 shares server
        auth settings process-wide: embedded servers in one process must use one key.
    echo : callable(str)
        Where the progress lines go.
    size : int
        Crystal grid (``size``³) and number of rocking frames, in [16, 1024].
    detector_shape : (int, int), optional
        Detector size in pixels, larger than ``size`` (default 128×160 up to ``size`` 64,
        ``2·size × (2·size + 32)`` beyond).
    strains : sequence of str, or str
        Strain classes cycled over the scans (``weak``, ``medium``, ``strong``, ``any``); a
        string is one class or a comma-separated list (``"weak,strong"``).
    seed : int
        Seed of the first crystal (scan ``k`` uses ``seed + k``) and of the detector.
    exposure_s : float
        Simulated exposure per frame in seconds (0.05: a 64-frame scan takes ~3 s, about one
        reconstruction, so results keep pace with the scans).
    settings : JobSettings, optional
        Live job settings (default: crop to ``size``³, the live phasing preset).
    directory : str or Path, optional
        Keep the embedded server's data there (default a temporary directory); created if
        missing, and it must be writable. Not with ``tiled_uri``.
    timeout : float
        Seconds to wait for all reconstructions.
    publish_analysis : bool
        Also publish each result as a Bluesky analysis run linked to the raw uid.
    live_figure_dir : str or Path, optional
        Save the live figure of each scan there (headless :class:`LiveStrainFigure`);
        created if missing, and it must be writable.

    Returns
    -------
    list of dict
        One summary per scan: ``uid``, ``sample``, ``status``, ``latency``, ``timings``,
        ``strain_rms``, ``quality_flag``, ``path``, ``readback`` (checked from a fresh client).

    Raises
    ------
    ValueError
        A bad argument (the message names it), checked before anything starts;
        :class:`bcdi_stream.errors.InputError` (a ``ValueError``) when the Tiled server at
        ``tiled_uri`` cannot be used, or ``directory`` or ``live_figure_dir`` is not a
        writable directory.
    """
    if not is_integral(n_scans) or n_scans < 1:
        raise ValueError(f"n_scans must be an integer >= 1, got {n_scans!r}")
    if not is_integral(size) or not _SIZES[0] <= size <= _SIZES[1]:
        raise ValueError(f"size must be an integer in [{_SIZES[0]}, {_SIZES[1]}] (the "
                         f"simulator's grid), got {size!r}")
    if not is_integral(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    n_scans, size, seed = int(n_scans), int(size), int(seed)
    if isinstance(strains, str):
        strains = [s.strip() for s in strains.split(",") if s.strip()]
    if not strains:
        raise ValueError("strains must name at least one strain class")
    # a real number > 0 (inf: no time limit)
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise ValueError(f"timeout must be a number > 0, got {timeout!r}")
    if serve and tiled_uri is not None:
        raise ValueError("serve applies to the embedded server only; drop tiled_uri or serve")
    if directory is not None and tiled_uri is not None:
        raise ValueError("directory is for the embedded server only; drop tiled_uri or "
                         "directory")
    if not is_finite_real(exposure_s) or not exposure_s >= 0:
        raise ValueError(f"exposure_s must be a finite number >= 0, got {exposure_s!r}")
    bad = [repr(s) if not isinstance(s, str) else s for s in strains if s not in _STRAINS]
    if bad:
        raise ValueError(f"strains must be among {', '.join(_STRAINS)}, got {', '.join(bad)}")
    if detector_shape is None:
        detector_shape = (max(128, 2 * size), max(160, 2 * size + 32))
    if len(detector_shape) != 2 or min(detector_shape) < size:
        raise ValueError(
            f"detector_shape must be (rows, cols) of at least size={size} pixels, "
            f"got {tuple(detector_shape)}"
        )
    if tiled_uri is not None and not tiled_uri.startswith(("http://", "https://")):
        raise ValueError(f"tiled_uri must be an http(s) URL, got {tiled_uri!r}")
    if directory is not None:
        directory = _usable_directory(directory, "directory")
    if live_figure_dir is not None:
        live_figure_dir = _usable_directory(live_figure_dir, "live_figure_dir")

    from bluesky import RunEngine
    from bluesky.utils import RunEngineInterrupted
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri

    from bcdi_stream.beamline import crystal_source, make_beamline
    from bcdi_stream.tiled_io import RESULT_ARRAYS, JobSettings, connect, server_base
    from callbacks import BCDICallback, LiveStrainFigure

    server = None
    bcdi_callback = None
    t_setup = time.perf_counter()
    try:
        if tiled_uri is None:
            from tiled.server import SimpleTiledServer

            echo("starting an embedded Tiled server ...")
            server = SimpleTiledServer(directory=directory, api_key=api_key)
            uri = server.uri
            client = from_uri(uri)
        else:
            uri = tiled_uri
            # a quick probe, then the client: one line when it cannot be used
            client = connect(tiled_uri, api_key=api_key)
        echo(f"Tiled: {server_base(uri)} (ready in {time.perf_counter() - t_setup:.1f} s)")

        settings = settings or JobSettings(shape=(size, size, size))
        RE = RunEngine({})
        RE.subscribe(TiledWriter(client))
        bcdi_callback = BCDICallback(client, settings=settings,
                                     echo=lambda line: echo("  " + line),
                                     publish_analysis=publish_analysis)
        RE.subscribe(bcdi_callback)
        if live_figure_dir is not None:
            bcdi_callback.add_listener(LiveStrainFigure(save_dir=live_figure_dir,
                                                        interactive=False))
        beamline = make_beamline(detector_shape=detector_shape, seed=seed,
                                 exposure_s=exposure_s)
        echo(f"beamline: rocking motor '{beamline.motor.name}', detector "
             f"'{beamline.detector.name}' {beamline.detector.frame_shape[0]}x"
             f"{beamline.detector.frame_shape[1]} px, {size} frames per rocking curve; "
             f"method {settings.method}")

        scans: list[dict[str, Any]] = []
        for k in range(int(n_scans)):
            strain = strains[k % len(strains)]
            source = crystal_source(seed + k, n=size, strain=strain)
            beamline.load(source)
            t0 = time.perf_counter()
            try:
                (uid,) = RE(beamline.rocking_curve(md={"purpose": "bcdi-stream demo"}))
            except RunEngineInterrupted:  # Ctrl-C during a scan: abort it and stop
                RE.abort(reason="interrupted by the user")
                raise KeyboardInterrupt from None
            echo(f"scan {k + 1}/{n_scans} {uid[:8]}: {source.name} ({strain} strain), "
                 f"{size} frames in {time.perf_counter() - t0:.1f} s -> reconstruction queued")
            scans.append({"uid": uid, "sample": source.name, "strain_class": strain})
        echo(f"waiting for {bcdi_callback.pending} reconstruction(s) ...")
        if not bcdi_callback.wait(timeout):
            echo(f"timed out after {timeout:.0f} s with {bcdi_callback.pending} still running")

        fresh = from_uri(uri) if tiled_uri is None else from_uri(tiled_uri, api_key=api_key)
        rows = [_readback(bcdi_callback, fresh, scan, settings.processed_key,
                          RESULT_ARRAYS) for scan in scans]
        _table(echo, rows)
        n_ok = sum(1 for r in rows if r.get("status") == "ok" and r.get("readback"))
        echo(f"{n_ok}/{len(rows)} scans reconstructed and read back from a fresh Tiled client")
        _browse_help(echo, uri, scans, settings.processed_key, server is not None)

        if serve and server is not None:
            echo("serving; press Ctrl-C to stop")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                echo("stopping")
        return rows
    finally:
        if bcdi_callback is not None:
            bcdi_callback.close(wait=False, cancel=True)
        if server is not None:
            server.close()




def _usable_directory(directory: str | Path, name: str) -> Path:
    """A directory the demo writes to, created if missing; a one-line :class:`InputError`
    naming the argument ``name`` when it is not a writable directory (checked before the
    server starts, rather than an internal error from deep inside it)."""
    from bcdi_stream.errors import InputError

    path = Path(directory).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} {str(path)!r} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"{name} {str(path)!r} is not a writable directory: {reason}"
                         ) from None
    return path


def _readback(bcdi_callback: Any, fresh: Any, scan: dict[str, Any], pkey: str,
              result_arrays: Sequence[str]) -> dict[str, Any]:
    """One scan's row: the callback's result, checked against what a fresh client reads."""
    from bcdi_stream.tiled_io import read_result

    uid = scan["uid"]
    try:
        res = bcdi_callback.result(uid)
    except KeyError:
        return {**scan, "status": "pending", "readback": False}
    row = {**scan, **res.to_dict()}
    row["latency"] = res.timings.get("latency")
    row["strain_rms"] = res.summary.get("strain_rms")
    row["quality_flag"] = res.quality_flag
    try:
        back = read_result(fresh, uid, processed_key=pkey)
        status = back["metadata"].get("status")
        row["readback_arrays"] = {k: list(v.shape) for k, v in back["arrays"].items()}
        if res.status == "ok":
            row["readback"] = status == "ok" and set(back["arrays"]) == set(result_arrays)
        else:  # skipped or failed scans leave a failure record
            row["readback"] = status == "failed"
    except Exception as exc:
        row["readback"] = False
        row["readback_error"] = f"{type(exc).__name__}: {exc}"
    return row


def _table(echo: Callable[[str], Any], rows: list[dict[str, Any]]) -> None:
    echo("")
    echo("per-scan latency, stop -> result in Tiled (seconds; 'wait' = Tiled writer flush "
         "+ queue behind earlier scans):")
    echo(f"  {'scan':8} {'sample':22} {'status':7} {'latency':>7} {'wait':>6}  "
         + " ".join(f"{s:>10}" for s in _STAGES) + "   strain rms  quality  readback")
    for r in rows:
        t = r.get("timings") or {}
        rms = r.get("strain_rms")
        lat, tot = r.get("latency"), t.get("total")
        wait = lat - tot if isinstance(lat, float) and isinstance(tot, float) else None
        echo(f"  {r['uid'][:8]:8} {r['sample'][:22]:22} {r.get('status', '?'):7} "
             f"{_f(lat):>7} {_f(wait):>6}  "
             + " ".join(f"{_f(t.get(s)):>10}" for s in _STAGES)
             + f"   {(f'{rms:.2e}' if isinstance(rms, float) else 'n/a'):>10}"
             f"  {r.get('quality_flag', 'none'):7}  {'ok' if r.get('readback') else 'NO'}")


def _f(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "n/a"


def _browse_help(echo: Callable[[str], Any], uri: str, scans: list[dict[str, Any]], pkey: str,
                 embedded: bool) -> None:
    from bcdi_stream.tiled_io import server_base

    base = server_base(uri)
    key = ""
    if "api_key=" in uri:
        key = uri.split("api_key=", 1)[1].split("&", 1)[0]
    q = f"?api_key={key}" if key else ""
    amp = "&" if q else "?"
    echo("")
    echo("browse the results:")
    echo("  from tiled.client import from_uri")
    if embedded:
        echo(f"  c = from_uri({uri!r})")
    else:
        echo(f"  c = from_uri({base + '/api/v1'!r}, api_key=...)   "
             "# or set TILED_API_KEY and omit api_key")
    if scans:
        uid = scans[-1]["uid"]
        echo(f"  r = c[{pkey!r}][{uid!r}]            # metadata: r.metadata")
        echo("  strain = r['strain'].read()   # also amplitude, phase, support, displacement")
        echo("  r['figures']['slices'].export('slices.png')   # central slices as PNG")
        echo(f"  c[{uid!r}]['primary']                # the raw frames")
        echo(f"  web UI: {base}/{q}")
        echo(f"  PNG:    {base}/api/v1/array/full/{quote(pkey)}/{uid}/figures/slices"
             f"{q}{amp}format=image/png")
    if embedded:
        echo("  (the embedded server lives as long as this command; use --serve to keep it)")
