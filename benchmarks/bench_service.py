"""Load and scale-out figures of the live service (docs/RELIABILITY.md).

``python benchmarks/bench_service.py --scans 50`` runs N rocking curves back to back through a
RunEngine + TiledWriter + BCDICallback (embedded Tiled server, 32³ crops, a short conventional
preset, bounded queue ``max_pending=N``) and counts the results found in Tiled from a fresh
client; ``--dask 1,2`` also times the same job on a Dask ``LocalCluster`` with 1 and 2 worker
processes (scans per minute). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _rig(client, executor, n_pending, state_dir, job_raar=30):
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from conftest_live import tiny_settings

    from bcdi_stream.beamline import make_beamline
    from callbacks import BCDICallback

    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    settings = tiny_settings(32)
    settings.phasing.n_raar = job_raar
    cb = BCDICallback(client, settings=settings, echo=None, executor=executor,
                      max_pending=n_pending, state_dir=state_dir, keep_arrays=0)
    RE.subscribe(cb)
    return RE, cb, make_beamline(detector_shape=(64, 80), seed=1)


def run(n: int, executor, state_dir, seed0: int = 0, job_raar: int = 30) -> dict:
    from conftest_live import shared_server, toy_source
    from tiled.client import from_uri

    client = from_uri(shared_server().uri)
    RE, cb, bl = _rig(client, executor, n, state_dir, job_raar)
    t0 = time.perf_counter()
    uids = []
    for k in range(n):
        bl.load(toy_source(32, seed=seed0 + k))
        uids += list(RE(bl.rocking_curve()))
    t_scans = time.perf_counter() - t0
    finished = cb.wait(3600)
    wall = time.perf_counter() - t0
    cb.close()
    fresh = from_uri(shared_server().uri)
    statuses = {}
    for uid in uids:
        try:
            s = fresh["processed"][uid].metadata.get("status")
        except KeyError:
            s = "missing"
        statuses[s] = statuses.get(s, 0) + 1
    lat = sorted(r.timings.get("latency", float("nan")) for r in cb.results)
    return {
        "scans": n, "finished": finished, "statuses_in_tiled": statuses,
        "lost": n - sum(v for k, v in statuses.items() if k in ("ok", "failed")),
        "scan_seconds": round(t_scans, 1), "wall_seconds": round(wall, 1),
        "scans_per_minute": round(60 * n / wall, 2),
        "latency_median_s": round(lat[len(lat) // 2], 2), "latency_max_s": round(lat[-1], 2),
        "stop_overhead_max_ms": round(1e3 * max(cb.stop_overheads), 2),
        "state_dir_left": sum(1 for _ in Path(state_dir).rglob("*.json")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=50)
    ap.add_argument("--dask", default="", help="worker counts to time, e.g. 1,2")
    ap.add_argument("--dask-scans", type=int, default=12)
    ap.add_argument("--job-raar", type=int, default=30,
                    help="RAAR iterations per job (30: I/O-bound jobs; 600: compute-bound)")
    ap.add_argument("--skip-load", action="store_true", help="only the Dask runs")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from callbacks import WorkerPool

    out: dict = {"host_cpus": os.cpu_count(), "job_raar": args.job_raar,
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_load:
            out["load"] = run(args.scans, WorkerPool(["cpu"], threads=1), Path(tmp) / "load",
                              job_raar=args.job_raar)
        for nw in [int(v) for v in args.dask.split(",") if v.strip()]:
            import distributed
            from conftest_live import API_KEY

            os.environ["TILED_API_KEY"] = API_KEY
            os.environ["OMP_NUM_THREADS"] = "1"
            with distributed.LocalCluster(n_workers=nw, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as lc, \
                    distributed.Client(lc) as dc:
                out[f"dask_{nw}_workers"] = run(args.dask_scans, dc, Path(tmp) / f"d{nw}",
                                                seed0=1000 * nw, job_raar=args.job_raar)
    print(json.dumps(out, indent=1))
    os._exit(0)  # the embedded server's thread


if __name__ == "__main__":
    main()
