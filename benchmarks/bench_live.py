"""Live-service benchmark: stop -> result-in-Tiled latency per stage, and the time the callback
adds to the RunEngine, with real components (embedded Tiled, RunEngine, TiledWriter, ophyd).

Two phases:

1. ``--scans`` spaced scans (each waits for its result): the latency of one scan on an idle
   worker, per stage (read, preprocess, predict, refine, write); the time the callback takes
   for each ``stop`` document (what it adds to the RunEngine) and for each ``event`` document.
2. ``--burst`` back-to-back scans: every one must get a result; latency then includes queueing.

Usage::

    python benchmarks/bench_live.py [--scans 5] [--burst 10] [--frames 64] [--detector 128 160]
                                    [--out results.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

STAGES = ("read", "preprocess", "predict", "refine", "write")


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def run(scans: int = 5, burst: int = 10, frames: int = 64, detector: tuple[int, int] = (128, 160),
        strain: str = "weak", threads: int = 0, echo: Any = print) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-able dict."""
    import torch
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    from bcdi_stream.beamline import crystal_source, make_beamline
    from callbacks import BCDICallback, JobSettings

    if threads:
        torch.set_num_threads(threads)
    server = SimpleTiledServer()
    try:
        client = from_uri(server.uri)
        RE = RunEngine({})
        RE.subscribe(TiledWriter(client))
        settings = JobSettings(shape=(frames, frames, frames))
        cb = BCDICallback(client, settings=settings, echo=lambda s: echo("  " + s))
        # Subscribed through a timer: the wall time of every document the callback handles,
        # as the RunEngine sees it (make_class_safe and dispatch included).
        doc_times: dict[str, list[float]] = {}

        def timed(name: str, doc: dict) -> None:
            t0 = time.perf_counter()
            cb(name, doc)
            doc_times.setdefault(name, []).append(time.perf_counter() - t0)

        RE.subscribe(timed)
        bl = make_beamline(detector_shape=detector)
        sources = [crystal_source(s, n=frames, strain=strain) for s in range(max(scans, burst))]

        # warm-up (imports, first FFT plans): not counted
        bl.load(sources[0])
        RE(bl.rocking_curve())
        cb.wait(600)
        cb.stop_overheads.clear()
        doc_times.clear()
        load_before = os.getloadavg()

        spaced = []
        for k in range(scans):
            bl.load(sources[k])
            t0 = time.perf_counter()
            (uid,) = RE(bl.rocking_curve())
            scan_s = time.perf_counter() - t0
            cb.wait(600)
            res = cb.result(uid)
            spaced.append({"uid": uid, "status": res.status, "scan_s": round(scan_s, 3),
                           **res.timings})
        stop_spaced = list(cb.stop_overheads)
        stop_doc_spaced = list(doc_times.get("stop", []))
        event_times = list(doc_times.get("event", []))

        cb.stop_overheads.clear()
        doc_times.clear()
        uids = []
        t_burst = time.perf_counter()
        for k in range(burst):
            bl.load(sources[k])
            (uid,) = RE(bl.rocking_curve())
            uids.append(uid)
        scans_done = time.perf_counter() - t_burst
        cb.wait(1800)
        burst_s = time.perf_counter() - t_burst
        burst_results = [cb.result(u) for u in uids]
        load_after = os.getloadavg()
        out = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": {"cpu_count": os.cpu_count(), "cpu": platform.processor() or None,
                        "torch_threads": torch.get_num_threads(),
                        "python": platform.python_version(), "torch": torch.__version__},
            "load_avg_1_5_15": {"before": [round(v, 2) for v in load_before],
                                "after": [round(v, 2) for v in load_after]},
            "frames": frames, "detector": list(detector), "strain": strain,
            "phasing": settings.phasing.model_dump(),
            "spaced": {
                "n": scans,
                "ok": sum(r["status"] == "ok" for r in spaced),
                "latency_s": _stats([r["latency"] for r in spaced]),
                "stages_s": {s: _stats([r.get(s, 0.0) for r in spaced]) for s in STAGES},
                "scan_s": _stats([r["scan_s"] for r in spaced]),
                "stop_overhead_ms": _stats([1e3 * v for v in stop_spaced]),
                "stop_doc_ms": _stats([1e3 * v for v in stop_doc_spaced]),
                "event_doc_us": {**_stats([1e6 * v for v in event_times]),
                                 "mean": round(1e6 * statistics.fmean(event_times), 2)
                                 if event_times else None,
                                 "n": len(event_times)},
                "runs": spaced,
            },
            "burst": {
                "n": burst,
                "ok": sum(r.ok for r in burst_results),
                "all_results": len(burst_results) == burst,
                "scans_s": round(scans_done, 2),
                "all_written_s": round(burst_s, 2),
                "latency_s": _stats([r.timings.get("latency", float("nan"))
                                     for r in burst_results]),
                "stop_overhead_ms": _stats([1e3 * v for v in cb.stop_overheads]),
                "stop_doc_ms": _stats([1e3 * v for v in doc_times.get("stop", [])]),
                "all_stop_to_written_s": round(
                    max(r.timings.get("latency", float("nan")) for r in burst_results), 2),
            },
        }
        cb.close()
        return out
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scans", type=int, default=5)
    p.add_argument("--burst", type=int, default=10)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--detector", type=int, nargs=2, default=(128, 160))
    p.add_argument("--strain", default="weak")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    res = run(a.scans, a.burst, a.frames, tuple(a.detector), a.strain, a.threads,
              echo=lambda s: print(s, file=sys.stderr))
    text = json.dumps(res, indent=2, default=str)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "runs"} if isinstance(v, dict) else v
               for k, v in res.items()}
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
