"""Faults under load, out of process (docs/RELIABILITY.md): N scans back to back through
RunEngine + TiledWriter + JSON Publisher -> bluesky-0MQ-proxy -> ``bcdi-stream worker``
(subprocess) -> a ``tiled serve`` subprocess; while the worker works through the queue, Tiled is
killed (SIGKILL) and restarted, then the worker is killed (SIGKILL) and restarted on the same
state directory. Counts the results in Tiled at the end. Prints one JSON document.

    python benchmarks/fault_service.py --scans 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=20)
    ap.add_argument("--tiled-down", type=float, default=15.0, help="seconds Tiled stays down")
    args = ap.parse_args()
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from conftest_live import API_KEY, tiny_settings, toy_source
    from conftest_service import ManagedProcess, TiledProcess, free_port, nice_env, wait_for

    from bcdi_stream.beamline import make_beamline
    from callbacks import make_publisher

    tmp = Path(tempfile.mkdtemp())
    tiled = TiledProcess(tmp / "tiled", API_KEY).start()
    p_in, p_out = free_port(), free_port()
    proxy = ManagedProcess([shutil.which("bluesky-0MQ-proxy"), "--in-address", str(p_in),
                            "--out-address", str(p_out)], tmp / "proxy.log").start()
    (tmp / "job.json").write_text(tiny_settings(32).model_dump_json())
    wargs = [sys.executable, "-m", "bcdi_stream.cli", "worker", "--zmq", f"127.0.0.1:{p_out}",
             "--tiled-uri", tiled.uri, "--state-dir", str(tmp / "state"), "--settings",
             str(tmp / "job.json"), "--threads", "1", "--replay-interval", "2",
             "--max-pending", str(args.scans + 10)]
    wenv = nice_env(TILED_API_KEY=API_KEY, TILED_RETRY_TIMEOUT="3", TILED_RETRY_ATTEMPTS="3")

    def worker(name: str) -> ManagedProcess:
        w = ManagedProcess(wargs, tmp / f"{name}.log", env=wenv).start()
        wait_for(lambda: "worker listening" in w.log(), 180, "worker start")
        time.sleep(1.5)
        return w

    w1 = worker("worker1")
    client = tiled.client()
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    RE.subscribe(make_publisher(("127.0.0.1", p_in)))
    time.sleep(1.0)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    t0 = time.perf_counter()
    uids = []
    for k in range(args.scans):
        bl.load(toy_source(32, seed=k))
        uids += list(RE(bl.rocking_curve()))
    t_scans = time.perf_counter() - t0

    def status(uid: str):
        try:
            return tiled.client()["processed"][uid].metadata.get("status")
        except Exception:
            return None

    def n_ok() -> int:
        try:
            node = tiled.client()["processed"]
        except Exception:
            return -1
        return sum(1 for u in uids if u in node and node[u].metadata.get("status") == "ok")

    # fault 1: Tiled killed while the worker works through the queue
    wait_for(lambda: n_ok() >= 2, 300, "first results")
    before_kill = n_ok()
    tiled.stop(signal.SIGKILL)
    t_kill = time.perf_counter()
    time.sleep(args.tiled_down)
    tiled.start()
    down_s = time.perf_counter() - t_kill
    # fault 2: the worker killed mid-queue, restarted on the same state directory
    wait_for(lambda: n_ok() >= before_kill + 2, 600, "results after Tiled restart")
    w1.stop(signal.SIGKILL)
    left = len(list((tmp / "state" / "inflight").glob("*.json")))
    spooled_at_kill = len(list((tmp / "state" / "spool").glob("*.json")))
    w2 = worker("worker2")
    wait_for(lambda: n_ok() == len(uids), 1200, "all results", poll=2.0)
    wall = time.perf_counter() - t0
    w2.stop(signal.SIGTERM, timeout=90)
    log1, log2 = w1.log(), w2.log()
    statuses = {}
    for u in uids:
        s = status(u)
        statuses[s] = statuses.get(s, 0) + 1
    replay_lines = [ln for ln in (log1 + log2).splitlines() if ln.startswith("spool:")]
    out = {
        "scans": len(uids), "statuses_in_tiled": statuses,
        "lost": len(uids) - statuses.get("ok", 0) - statuses.get("failed", 0),
        "scan_seconds": round(t_scans, 1), "wall_seconds": round(wall, 1),
        "tiled_down_seconds": round(down_s, 1),
        "spooled_lines": sum("SPOOLED" in ln for ln in log1.splitlines()),
        "replay_lines": replay_lines,
        "journal_entries_at_worker_kill": left,
        "spool_entries_at_worker_kill": spooled_at_kill,
        "rerun_from_journal": log2.count("left unfinished by a previous worker"),
        "machine": f"{os.cpu_count()} CPUs, {sys.platform}",
    }
    print(json.dumps(out, indent=1))
    proxy.stop()
    tiled.stop()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
