"""Scale-out on Dask distributed with real components: a ``LocalCluster`` of worker
*processes* runs the live jobs submitted by the BCDICallback (RunEngine + TiledWriter + Tiled);
results land in Tiled like the in-process ones, and a worker process killed mid-job has its scan
re-run by the scheduler on the other worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from conftest_live import API_KEY, shared_server, tiny_settings, toy_source
from tiled.client import from_uri

from bcdi_stream.beamline import make_beamline
from bcdi_stream.tiled_io import read_result
from callbacks import BCDICallback

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    old = os.environ.get("TILED_API_KEY")
    os.environ["TILED_API_KEY"] = API_KEY  # the workers' key comes from their environment
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None, worker_dashboard_address=None)
        client = distributed.Client(lc)
        yield client
        client.close()
        lc.close()
    finally:
        if old is None:
            os.environ.pop("TILED_API_KEY", None)
        else:
            os.environ["TILED_API_KEY"] = old


@pytest.mark.slow
def test_callback_runs_jobs_on_dask_processes(cluster) -> None:
    tiled = from_uri(shared_server().uri)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(tiled))
    cb = BCDICallback(tiled, executor=cluster, settings=tiny_settings(32), echo=None)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    uids = []
    for k in range(3):
        bl.load(toy_source(32, seed=40 + k))
        uids += list(RE(bl.rocking_curve()))
    assert cb.wait(180)
    cb.close()
    assert [cb.result(u).status for u in uids] == ["ok"] * 3, [r.line() for r in cb.results]
    assert max(cb.stop_overheads) < 0.05  # submitting to Dask does not hold the RunEngine
    fresh = from_uri(shared_server().uri)
    for uid in uids:
        md = read_result(fresh, uid, arrays=False)["metadata"]
        assert md["status"] == "ok" and md["raw_uid"] == uid
    # the jobs ran in the worker processes, not here
    pids = cluster.run(os.getpid)
    assert os.getpid() not in pids.values()
    ran = cluster.run(lambda: __import__("callbacks._dask", fromlist=["x"])._clients.__len__())
    assert sum(ran.values()) >= 1


@pytest.mark.slow
def test_killed_dask_worker_scan_is_rerun(cluster) -> None:
    tiled = from_uri(shared_server().uri)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(tiled))
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    bl.load(toy_source(32, seed=50))
    (uid,) = RE(bl.rocking_curve())
    settings = tiny_settings(32)
    settings.phasing.n_raar = 600  # long enough to be killed in the middle
    cb = BCDICallback(tiled, executor=cluster, settings=settings, echo=None)
    fut = cb.submit(uid)
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        who = cluster.who_has(fut).get(fut.key) or ()
        proc = cluster.processing()
        busy = [w for w, keys in proc.items() if fut.key in keys]
        victim = busy[0] if busy and not who else None
        time.sleep(0.2)
    assert victim is not None, "the job never started"
    time.sleep(1.0)
    pid = cluster.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    assert cb.wait(240)
    cb.close()
    assert cb.result(uid).status == "ok", cb.result(uid).line()


@pytest.mark.slow
def test_tiled_unreachable_at_task_start_is_spooled_for_rerun(tmp_path) -> None:
    """The Dask task cannot open its Tiled client (Tiled down as it starts): the scan is not an
    "internal" failure that exists only in Python but a spooled "re-run", reconstructed once
    Tiled is back; the journal is empty."""
    from conftest_service import TiledProcess

    from bcdi_stream.tiled_io import Spool

    old = os.environ.get("TILED_API_KEY")
    os.environ["TILED_API_KEY"] = API_KEY
    tiled = TiledProcess(tmp_path / "tiled", API_KEY).start()
    lc = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None)
    dask_client = distributed.Client(lc)
    import tiled.client.utils as tcu

    saved = tcu.TILED_RETRY_TIMEOUT, tcu.TILED_RETRY_ATTEMPTS
    tcu.TILED_RETRY_TIMEOUT, tcu.TILED_RETRY_ATTEMPTS = 2.0, 2
    try:
        client = tiled.client()
        RE = RunEngine({})
        RE.subscribe(TiledWriter(client))
        bl = make_beamline(detector_shape=(64, 80), seed=1)
        bl.load(toy_source(32, seed=50))
        (uid,) = RE(bl.rocking_curve())
        cb = BCDICallback(client, executor=dask_client,
                          settings=tiny_settings(32, read_timeout=3), echo=None,
                          state_dir=tmp_path / "state", replay_interval=0)
        tiled.stop()
        cb.submit(uid)
        assert cb.wait(120)
        res = cb.result(uid)
        assert res.status == "spooled", res.line()
        (entry,) = Spool(tmp_path / "state" / "spool").entries()
        assert entry.raw_uid == uid and entry.rerun
        assert len(cb.journal) == 0
        tiled.start()
        cb.replay()  # re-runs the scan on Dask
        assert cb.wait(180)
        assert cb.result(uid).status == "ok", cb.result(uid).line()
        cb.close()
        assert read_result(tiled.client(), uid, arrays=False)["metadata"]["status"] == "ok"
    finally:
        tcu.TILED_RETRY_TIMEOUT, tcu.TILED_RETRY_ATTEMPTS = saved
        dask_client.close()
        lc.close()
        tiled.stop()
        if old is None:
            os.environ.pop("TILED_API_KEY", None)
        else:
            os.environ["TILED_API_KEY"] = old
