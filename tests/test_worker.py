"""``bcdi-stream worker`` out of the RunEngine's process, with real components: a
``bluesky-0MQ-proxy`` subprocess, the worker as a subprocess (the CLI), a RunEngine publishing
JSON documents to the proxy, TiledWriter and a Tiled server.

Scans are reconstructed by the worker; a worker killed (SIGKILL) with scans queued and running
loses none (its successor re-runs them from the journal); SIGTERM drains and exits 0; scans
finished while no worker ran are caught up at start.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from conftest_live import API_KEY, shared_server, tiny_settings, toy_source
from conftest_service import ManagedProcess, free_port, nice_env, wait_for
from tiled.client import from_uri

from bcdi_stream.beamline import make_beamline
from callbacks import make_publisher

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[tuple[int, int]]:
    exe = shutil.which("bluesky-0MQ-proxy")
    assert exe, "bluesky-0MQ-proxy not on PATH"
    p_in, p_out = free_port(), free_port()
    proc = ManagedProcess([exe, "--in-address", str(p_in), "--out-address", str(p_out)],
                          tmp_path_factory.mktemp("proxy") / "proxy.log").start()
    time.sleep(1.0)
    assert proc.alive, proc.log()
    yield p_in, p_out
    proc.stop()


@pytest.fixture(scope="module")
def client():
    return from_uri(shared_server().uri)


@pytest.fixture(scope="module")
def rig(client, proxy):
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    publisher = make_publisher(("127.0.0.1", proxy[0]), linger_ms=0)
    RE.subscribe(publisher)  # after TiledWriter
    time.sleep(1.0)  # 0MQ: let the publisher's connection settle
    yield RE, make_beamline(detector_shape=(64, 80), seed=1)
    publisher.close()  # an unclosed 0MQ context blocks in its garbage collection


def _worker_process(tmp: Path, proxy: tuple[int, int], name: str, *extra: str,
                    n_raar: int = 30) -> ManagedProcess:
    settings = tmp / f"settings-{name}.json"
    job = tiny_settings(32)
    settings.write_text(job.model_copy(
        update={"phasing": job.phasing.model_copy(update={"n_raar": n_raar})}
    ).model_dump_json())
    args = [sys.executable, "-m", "bcdi_stream.cli", "worker",
            "--zmq", f"127.0.0.1:{proxy[1]}",
            "--tiled-uri", shared_server().uri.split("?")[0], "--state-dir", str(tmp / "state"),
            "--settings", str(settings), "--threads", "1", "--replay-interval", "0", *extra]
    return ManagedProcess(args, tmp / f"{name}.log", env=nice_env(TILED_API_KEY=API_KEY))


def _worker(tmp: Path, proxy: tuple[int, int], name: str, *extra: str,
            n_raar: int = 30) -> ManagedProcess:
    proc = _worker_process(tmp, proxy, name, *extra, n_raar=n_raar).start()
    wait_for(lambda: "worker listening" in proc.log() or not proc.alive, 120, "worker start")
    assert proc.alive, proc.log()
    time.sleep(1.5)  # the subscription reaches the proxy
    return proc


def _status(client, uid: str) -> str | None:
    try:
        return from_uri(shared_server().uri)["processed"][uid].metadata.get("status")
    except KeyError:
        return None


def _scans(rig, n: int, seed: int) -> list[str]:
    RE, bl = rig
    uids = []
    for k in range(n):
        bl.load(toy_source(32, seed=seed + k))
        uids += list(RE(bl.rocking_curve()))
    return uids


@pytest.mark.slow
def test_worker_reconstructs_published_scans_and_drains(rig, proxy, client, tmp_path) -> None:
    worker = _worker(tmp_path, proxy, "w1")
    try:
        uids = _scans(rig, 2, seed=10)
        wait_for(lambda: all(_status(client, u) == "ok" for u in uids), 180,
                 "worker results in Tiled")
    finally:
        code = worker.stop(signal.SIGTERM, timeout=60)
    log = worker.log()
    assert code == 0, log
    assert "worker stopped: 2 results" in log
    assert all(u[:8] in log for u in uids)
    assert "API" not in log and API_KEY not in log  # no secret in the logs


@pytest.mark.slow
def test_killed_worker_loses_no_scan(rig, proxy, client, tmp_path) -> None:
    worker = _worker(tmp_path, proxy, "w1")
    inflight = tmp_path / "state" / "inflight"
    uids = _scans(rig, 3, seed=20)
    try:
        def all_received() -> bool:
            journalled = {p.stem for p in inflight.glob("*.json")}
            done = {u for u in uids if u not in journalled and _status(client, u) == "ok"}
            return bool(journalled) and len(journalled | done) == len(uids)

        wait_for(all_received, 60, "all scans received, some still in progress")
    finally:
        worker.stop(signal.SIGKILL)  # a crash: no drain
    unfinished = [u for u in uids if _status(client, u) != "ok"]
    assert unfinished, "the worker finished everything before it was killed"
    assert {p.stem for p in inflight.glob("*.json")} >= set(unfinished)
    # a scan finished while no worker runs: 0MQ does not keep it, the catch-up finds it
    (late,) = _scans(rig, 1, seed=30)
    successor = _worker(tmp_path, proxy, "w2", "--catch-up", "1")
    try:
        wait_for(lambda: all(_status(client, u) == "ok" for u in [*uids, late]), 240,
                 "all results after the restart")
    finally:
        assert successor.stop(signal.SIGTERM, timeout=60) == 0, successor.log()
    log = successor.log()
    assert "left unfinished by a previous worker" in log
    assert "catch-up:" in log
    assert list(inflight.glob("*.json")) == []


def _journal(tmp: Path) -> set[str]:
    return {p.stem for p in (tmp / "state" / "inflight").glob("*.json")}


@pytest.mark.slow
def test_second_worker_on_a_state_dir_refuses_to_start(proxy, tmp_path) -> None:
    """Two workers on one proxy would both reconstruct every scan and race on
    ``processed/<uid>``: the second one exits at once with one line (exit code 2)."""
    first = _worker(tmp_path, proxy, "w1")
    try:
        second = _worker_process(tmp_path, proxy, "w2").start()
        second.proc.wait(120)
        log = second.log()
        assert second.proc.returncode == 2, log
        assert f"another worker (pid {first.proc.pid}) is running on state directory" in log
        assert "Traceback" not in log and len(log.strip().splitlines()) == 1, log
        assert first.alive
    finally:
        assert first.stop(signal.SIGTERM, timeout=60) == 0, first.log()
    # the lock goes with its holder: the next worker starts
    third = _worker(tmp_path, proxy, "w3")
    assert third.stop(signal.SIGTERM, timeout=60) == 0, third.log()


@pytest.mark.slow
def test_sigterm_while_stop_waits_for_a_slot(rig, proxy, client, tmp_path) -> None:
    """``--overflow block``: SIGTERM lands while ``stop`` waits for a free slot (inside bluesky's
    ``make_class_safe``, which swallows exceptions). The worker still shuts down, and the scan
    in hand is journalled (re-run at the next start), not lost."""
    worker = _worker(tmp_path, proxy, "w1", "--max-pending", "1", "--overflow", "block",
                     "--drain-timeout", "1", n_raar=200_000)  # the first job runs for minutes
    try:
        uids = _scans(rig, 2, seed=40)
        wait_for(lambda: "queue full" in worker.log(), 60, "the second stop waiting")
        log = _sigterm_exits_promptly(worker)  # the 1 s drain, not the running job's end
    finally:
        worker.stop(signal.SIGKILL)
    assert "unfinished after the 1 s drain" in log
    assert _journal(tmp_path) == set(uids), log  # the running one and the waiting one


def _sigterm_exits_promptly(worker) -> str:
    """SIGTERM the worker; it must exit 0 well before a running job would end. Its log."""
    t0 = time.monotonic()
    code = worker.stop(signal.SIGTERM, timeout=60)
    log = worker.log()
    assert code == 0, log
    assert time.monotonic() - t0 < 30, log
    return log


@pytest.mark.slow
def test_drain_timeout_is_enforced(rig, proxy, client, tmp_path) -> None:
    """A job still running when the drain ends does not hold the process (systemd would
    SIGKILL it mid-write after TimeoutStopSec): the worker exits 0, the scan stays journalled."""
    worker = _worker(tmp_path, proxy, "w1", "--drain-timeout", "2", n_raar=200_000)
    try:
        (uid,) = _scans(rig, 1, seed=50)
        wait_for(lambda: uid in _journal(tmp_path), 60, "the scan journalled")
        time.sleep(1.0)  # the job is running
        log = _sigterm_exits_promptly(worker)
    finally:
        worker.stop(signal.SIGKILL)
    assert "1 jobs unfinished after the 2 s drain" in log
    assert _journal(tmp_path) == {uid}
    assert _status(client, uid) is None


@pytest.mark.timeout(60)
def test_publisher_to_a_gone_proxy_closes(tmp_path) -> None:
    """Documents queued for a proxy that has gone away must not block ``close()`` (0MQ's
    default linger is infinite: bluesky's plain ``Publisher`` then hangs forever, in ``close``
    or in the garbage collection of an unclosed one -- interpreter exit included)."""
    with pytest.raises(ValueError, match="linger_ms"):
        make_publisher(("127.0.0.1", free_port()), linger_ms=-1)
    p_in, p_out = free_port(), free_port()
    proxy = ManagedProcess([shutil.which("bluesky-0MQ-proxy"), "--in-address", str(p_in),
                            "--out-address", str(p_out)], tmp_path / "proxy.log").start()
    time.sleep(1.0)
    publisher = make_publisher(("127.0.0.1", p_in), linger_ms=200)
    time.sleep(1.0)  # connected, and the proxy has subscribed
    publisher("start", {"uid": "x", "time": 0.0})
    proxy.stop(signal.SIGKILL)
    for _ in range(20):
        publisher("event", {"uid": "y", "data": {"pad": "x" * 10_000}})
    publisher.close()  # returns after at most the linger (pytest-timeout fails a hang)
