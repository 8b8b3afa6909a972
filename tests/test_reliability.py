"""Reliability of the live job path with real components: a ``tiled serve`` subprocess that is
killed and restarted, a RunEngine with TiledWriter, the BCDICallback with a state directory.

- Tiled killed after the frames were read: the result is spooled (CXI/HDF5 + JSON) and written
  by the automatic replay once Tiled is back;
- Tiled down before the read: the scan is spooled as "re-run" and reconstructed after restart;
- idempotent writes: re-writing a uid replaces ``processed/<uid>``, never duplicates it;
- bounded queue: ``overflow="record"`` gives every overflowing scan a ``queue full`` record,
  ``overflow="block"`` processes them all;
- journal: a scan left by a dead process is re-run; one that killed its worker twice gets a
  failure record.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator

import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from conftest_live import API_KEY, one_torch_thread, start_and_drain, tiny_settings, toy_source
from conftest_service import TiledProcess, wait_for

from bcdi_stream.beamline import make_beamline
from bcdi_stream.tiled_io import (
    RESULT_ARRAYS,
    Journal,
    Spool,
    read_result,
    write_failure,
    write_result,
)
from callbacks import BCDICallback

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


@pytest.fixture(autouse=True)
def _short_client_retries(monkeypatch) -> None:
    """The Tiled client retries a dead server for 45 s per call (``TILED_RETRY_TIMEOUT``);
    the tests give up after 3 s (the same setting an operator can lower)."""
    import tiled.client.utils as tcu

    monkeypatch.setattr(tcu, "TILED_RETRY_TIMEOUT", 3.0)
    monkeypatch.setattr(tcu, "TILED_RETRY_ATTEMPTS", 3)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> Iterator[TiledProcess]:
    proc = TiledProcess(tmp_path_factory.mktemp("tiled"), API_KEY).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def scans(tiled) -> list[str]:
    """Five rocking curves written by a RunEngine + TiledWriter (shared by the tests)."""
    client = tiled.client()
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    uids = []
    for k in range(5):
        bl.load(toy_source(32, seed=k))
        uids += list(RE(bl.rocking_curve()))
    return uids


def _arrays(value: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(int(value))
    arr = {k: rng.random((8, 8, 8), dtype=np.float32) + value for k in RESULT_ARRAYS}
    arr["support"] = (arr["support"] > value + 0.5).astype(np.uint8)
    return arr


class _KillOnRead(logging.Handler):
    """Kills the Tiled server right after the job has read a scan's frames."""

    def __init__(self, tiled: TiledProcess) -> None:
        super().__init__(logging.DEBUG)
        self.tiled = tiled
        self.fired = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and record.getMessage().startswith("scan ") and " read " in \
                record.getMessage():
            self.fired = True
            self.tiled.stop(signal.SIGKILL)


def test_writes_are_idempotent(tiled) -> None:
    client = tiled.client()
    uid = "idempotent-uid-1"
    write_failure(client, uid, "first attempt failed", {"method": None})
    write_result(client, uid, _arrays(1.0), {"method": "conventional"})
    node = write_result(client, uid, _arrays(2.0), {"method": "conventional"})
    assert sorted(node) == sorted(RESULT_ARRAYS)
    fresh = tiled.client()
    assert list(fresh["processed"]).count(uid) == 1
    back = read_result(fresh, uid)
    assert back["metadata"]["status"] == "ok" and "error" not in back["metadata"]
    np.testing.assert_allclose(back["arrays"]["amplitude"], _arrays(2.0)["amplitude"])


@pytest.mark.slow
def test_tiled_down_result_spooled_then_replayed(tiled, scans, tmp_path) -> None:
    uid_write, uid_read = scans[0], scans[1]
    client = tiled.client()
    events: list[str] = []
    cb = BCDICallback(client, settings=tiny_settings(32, read_timeout=2.0), echo=events.append,
                      state_dir=tmp_path, replay_interval=1.0)
    live = logging.getLogger("bcdi_stream.live")
    killer = _KillOnRead(tiled)
    level = live.level
    live.setLevel(logging.DEBUG)
    live.addHandler(killer)
    try:
        # 1) Tiled dies between the read and the write: the result goes to the spool
        cb.submit(uid_write)
        assert cb.wait(120)
        res = cb.result(uid_write)
        assert killer.fired and not tiled.alive
        assert res.status == "spooled", res.line()
        assert "SPOOLED" in res.line()
        entry = cb.spool.entries()[0]
        with h5py.File(entry.data_path) as f:  # CXI layout, complex object + support
            assert f["entry_1/image_1/data"].dtype == np.complex64
            assert f["entry_1/image_1/data"].shape == (32, 32, 32)
            assert f["entry_1/image_1/mask"].shape == (32, 32, 32)
        # 2) a scan arriving while Tiled is down: not readable -> spooled as "re-run"
        cb.submit(uid_read)
        assert cb.wait(60)
        assert cb.result(uid_read).status == "spooled"
        assert len(cb.spool) == 2 and len(cb.journal) == 0
        time.sleep(1.5)  # the automatic replay keeps trying against the dead server
        assert len(cb.spool) == 2
        # 3) Tiled is back: the replay thread writes one and re-runs the other
        tiled.start()
        wait_for(lambda: len(cb.spool) == 0, 60, "spool emptied by the automatic replay")
        assert cb.wait(120)
        assert cb.result(uid_read).status == "ok", cb.result(uid_read).line()
    finally:
        live.removeHandler(killer)
        live.setLevel(level)
        cb.close()
    fresh = tiled.client()
    for uid in (uid_write, uid_read):
        back = read_result(fresh, uid)
        assert back["metadata"]["status"] == "ok"
        assert back["arrays"]["amplitude"].shape == (32, 32, 32)
    assert back["figures"] == ["slices"]
    assert read_result(fresh, uid_write, arrays=False)["metadata"]["spooled"]["reason"]
    assert any(e.startswith("spool: 1 written") for e in events), events


def test_bounded_queue_overflow_records_never_drops(tiled, scans) -> None:
    client = tiled.client()
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, max_pending=1)
    try:
        for uid in scans[2:5]:
            cb.submit(uid)
        assert cb.wait(120)
    finally:
        cb.close()
    statuses = [cb.result(u).status for u in scans[2:5]]
    assert statuses == ["ok", "failed", "failed"]
    fresh = tiled.client()
    for uid in scans[3:5]:
        md = read_result(fresh, uid, arrays=False)["metadata"]
        assert md["status"] == "failed" and md["error"].startswith("queue full")
        assert f"bcdi-stream reprocess {uid}" in md["error"]


def test_bounded_queue_block_policy_processes_all(tiled, scans) -> None:
    cb = BCDICallback(tiled.client(), settings=tiny_settings(32), echo=None, max_pending=1,
                      overflow="block")
    try:
        t0 = time.perf_counter()
        for uid in scans[2:4]:
            cb.submit(uid)
        blocked = time.perf_counter() - t0
        assert cb.wait(120)
    finally:
        cb.close()
    assert [cb.result(u).status for u in scans[2:4]] == ["ok", "ok"]
    assert blocked > 0.2  # the second submit waited for the first job


def test_journal_leftovers_rerun_or_recorded(tiled, scans, tmp_path) -> None:
    # scans[1]'s earlier tries left no ok result (an earlier test of this module may have
    # written one, which a crash record would never replace)
    write_failure(tiled.client(), scans[1], "killed mid-job", {"method": None})
    journal = Journal(tmp_path / "inflight")
    journal.begin(scans[0], image_field=None, stream="primary")  # died once: re-run
    for _ in range(2):  # killed its worker twice: record, no third try
        journal.begin(scans[1], image_field=None, stream="primary")
    cb = start_and_drain(tiled.client(), tmp_path, 120)
    assert cb.result(scans[0]).status == "ok"
    crashed = cb.result(scans[1])
    assert crashed.status == "failed" and "stopped 2 times" in crashed.error
    md = read_result(tiled.client(), scans[1], arrays=False)["metadata"]
    assert md["status"] == "failed" and md["crashes"] == 2
    assert len(journal) == 0


def test_spool_rejects_unsafe_names(tmp_path) -> None:
    spool = Spool(tmp_path)
    for bad in ("../etc/passwd", "", ".hidden", "a/b", "x" * 300):
        with pytest.raises(ValueError, match="raw_uid"):
            spool.put_failure(bad, "error")
    with pytest.raises(ValueError, match="arrays"):
        spool.put_result("ok-uid", {"amplitude": np.zeros((2, 2, 2))}, {})


def test_cancelled_jobs_stay_in_the_journal_and_rerun(tiled, scans, tmp_path) -> None:
    """close(wait=False, cancel=True) (a drain that timed out): the cancelled scans are neither
    recorded nor lost; the next start re-runs them."""
    client = tiled.client()
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, state_dir=tmp_path,
                      replay_interval=0)
    for uid in scans[2:5]:
        cb.submit(uid)
    time.sleep(0.3)
    cb.close(wait=False, cancel=True)
    assert cb.wait(120)
    cancelled = [r.raw_uid for r in cb.results if r.error and r.error.startswith("cancelled")]
    assert cancelled, [r.line() for r in cb.results]
    left = {d["raw_uid"] for d in Journal(tmp_path / "inflight").leftover()}
    assert set(cancelled) <= left
    cb2 = start_and_drain(client, tmp_path, 180)
    for uid in cancelled:
        assert cb2.result(uid).status == "ok"
    assert len(Journal(tmp_path / "inflight")) == 0


def test_skip_record_spooled_while_tiled_is_down(tiled, tmp_path) -> None:
    """An aborted scan's record meets an unreachable Tiled: spooled, written on replay."""
    import uuid

    client = tiled.client()
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, state_dir=tmp_path,
                      replay_interval=0)
    geo = make_beamline(detector_shape=(64, 80)).geometry.to_dict()
    uid = str(uuid.uuid4())
    tiled.stop()
    try:
        cb("start", {"uid": uid, "time": time.time(), "bcdi": geo, "scan_id": 1})
        cb("stop", {"uid": str(uuid.uuid4()), "run_start": uid, "time": time.time(),
                    "exit_status": "abort", "reason": "sample moved", "num_events": {}})
        assert cb.wait(120)
        res = cb.result(uid)
        assert res.status == "spooled", res.line()
        assert [(e.raw_uid, e.kind) for e in cb.spool.entries()] == [(uid, "failure")]
    finally:
        tiled.start()
    try:
        cb.replay()
    finally:
        cb.close()
    md = read_result(tiled.client(), uid, arrays=False)["metadata"]
    assert md["status"] == "failed" and md["skipped"] is True
    assert md["error"] == "skipped: scan abort (sample moved)"


def test_no_crash_or_skip_record_over_an_ok_result(tiled, tmp_path) -> None:
    """A stale journal entry (its result was written after all) and a forged or repeated
    ``stop`` of an aborted scan must never turn an ``ok`` result into a failure record."""
    import uuid

    client = tiled.client()
    crashed, forged = str(uuid.uuid4()), str(uuid.uuid4())
    for uid in (crashed, forged):
        write_result(client, uid, _arrays(1.0), {"method": "conventional"})
    journal = Journal(tmp_path / "inflight")
    for _ in range(3):  # over max_attempts: a crash record, were there no ok result
        journal.begin(crashed, image_field=None, stream="primary")
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, state_dir=tmp_path,
                      replay_interval=0)
    geo = make_beamline(detector_shape=(64, 80)).geometry.to_dict()
    try:
        cb("start", {"uid": forged, "time": time.time(), "bcdi": geo, "scan_id": 1})
        cb("stop", {"uid": str(uuid.uuid4()), "run_start": forged, "time": time.time(),
                    "exit_status": "abort", "reason": "forged", "num_events": {}})
        assert cb.wait(60)
    finally:
        cb.close()
    for uid in (crashed, forged):
        md = read_result(tiled.client(), uid, arrays=False)["metadata"]
        assert md["status"] == "ok" and "error" not in md, md
        assert cb.result(uid).status == "skipped" and "kept the ok result" in cb.result(uid).error
    assert len(journal) == 0


def test_job_finishing_during_the_drain_ends_its_journal_entry(tiled, tmp_path) -> None:
    """The journal is for scans whose result is NOT written: a job that writes its record
    after ``close()`` (a shutdown's drain) must not be re-run at the next start."""
    import threading
    import uuid

    uid = str(uuid.uuid4())
    journal = Journal(tmp_path / "inflight")
    for _ in range(3):  # a cheap counted job: the crash record
        journal.begin(uid, image_field=None, stream="primary")
    written, release = threading.Event(), threading.Event()

    def hold(result) -> None:
        written.set()
        release.wait(30)

    cb = BCDICallback(tiled.client(), settings=tiny_settings(32), echo=None, state_dir=tmp_path,
                      replay_interval=0, listeners=[hold])
    try:
        assert written.wait(60)
        cb.close(wait=False)  # the shutdown begins while the job finishes
        release.set()
        assert cb.wait(60)
    finally:
        release.set()
    assert cb.result(uid).path == f"processed/{uid}"
    assert len(journal) == 0


def test_spooled_bookkeeping_record_never_replaces_an_ok_result(tiled, tmp_path) -> None:
    """A skip record spooled while Tiled was down is dropped on replay when the scan has an
    ``ok`` result by then; a reconstruction's own failure is still written."""
    import uuid

    client = tiled.client()
    kept, failed = str(uuid.uuid4()), str(uuid.uuid4())
    for uid in (kept, failed):
        write_result(client, uid, _arrays(1.0), {"method": "conventional"})
    spool = Spool(tmp_path)
    spool.put_failure(kept, "skipped: scan abort (forged)", {"skipped": True})
    spool.put_failure(failed, "refine: diverged", {"method": "ai"})
    report = spool.replay(client)
    assert report.remaining == 0 and not report.refused
    assert read_result(client, kept, arrays=False)["metadata"]["status"] == "ok"
    md = read_result(client, failed, arrays=False)["metadata"]
    assert md["status"] == "failed" and md["error"] == "refine: diverged"



# ---------------------------------------------------------------- concurrency


def _new_scan(client, cb: BCDICallback | None = None, seed: int = 0) -> str:
    """One more rocking curve in Tiled (a uid no other test touches), through ``cb`` too."""
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    if cb is not None:
        RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    bl.load(toy_source(32, seed=seed))
    (uid,) = RE(bl.rocking_curve())
    return uid


class _Gate:
    """Wraps ``cb._job``: every job waits until ``release`` (``calls`` lists them)."""

    def __init__(self, cb: BCDICallback) -> None:
        import threading

        self.job, self.calls = cb._job, []
        self.started, self.release = threading.Event(), threading.Event()
        cb._job = self

    def __call__(self, uid, *args, **kwargs):
        self.calls.append(uid)
        self.started.set()
        self.release.wait(60)
        return self.job(uid, *args, **kwargs)


def test_resubmit_of_a_running_scan_joins_it(tiled, tmp_path) -> None:
    """A reprocess (or a spool re-run) of a scan whose job is in progress starts no second
    job: two would race on processed/<uid> and share one journal entry."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    client = tiled.client()
    uid = _new_scan(client, seed=5)
    pool = ThreadPoolExecutor(2)  # a free worker for a second job
    cb = BCDICallback(client, settings=tiny_settings(32), executor=pool, echo=None,
                      state_dir=tmp_path, replay_interval=0)
    gate = _Gate(cb)
    try:
        first = cb.submit(uid)
        assert gate.started.wait(30)
        assert cb.submit(uid) is first and cb.submit(uid) is first
        entry = json.loads((tmp_path / "inflight" / f"{uid}.json").read_text())
        assert entry["attempts"] == 1  # no false "the worker stopped" count
        gate.release.set()
        assert cb.wait(120)
    finally:
        gate.release.set()
        cb.close()
        pool.shutdown()
    assert gate.calls == [uid]
    assert cb.result(uid).status == "ok", cb.result(uid).line()
    assert read_result(tiled.client(), uid, arrays=False)["metadata"]["status"] == "ok"
    assert len(cb.journal) == 0


def test_a_finished_job_leaves_the_next_job_of_its_scan_registered(tiled, tmp_path) -> None:
    """A job done (its listeners still running) while the scan is submitted again: its end
    neither unregisters the new job (a third submit joins it) nor ends its journal entry."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    client = tiled.client()
    uid = _new_scan(client, seed=6)
    in_listener, leave = threading.Event(), threading.Event()

    def hold_first(result) -> None:
        if not in_listener.is_set():
            in_listener.set()
            leave.wait(60)

    pool = ThreadPoolExecutor(2)
    cb = BCDICallback(client, settings=tiny_settings(32), executor=pool, echo=None,
                      state_dir=tmp_path, replay_interval=0, listeners=[hold_first])
    gate = None
    try:
        first = cb.submit(uid)
        assert in_listener.wait(120) and first.done()
        gate = _Gate(cb)
        second = cb.submit(uid)  # the first is done: a new job
        assert second is not first and gate.started.wait(30)
        leave.set()
        wait_for(lambda: cb.pending == 1, 30, "the first job's end")
        assert cb.submit(uid) is second
        assert len(cb.journal) == 1  # the running job is still journalled
        gate.release.set()
        assert cb.wait(120)
    finally:
        leave.set()
        if gate is not None:
            gate.release.set()
        cb.close()
        pool.shutdown()
    assert gate.calls == [uid]
    assert cb.result(uid).status == "ok"
    assert len(cb.journal) == 0


def test_concurrent_writes_of_one_entry_never_collide(tmp_path, monkeypatch) -> None:
    """Two threads journalling (or spooling) one uid at once: each write has its own
    temporary file; a failed write leaves none behind."""
    import json
    import os
    import threading

    real_fsync = os.fsync
    both_open = threading.Barrier(2, timeout=10)

    def fsync(fd: int) -> None:  # both temporary files written, neither renamed yet
        if threading.current_thread().name.startswith("writer"):
            both_open.wait()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal, spool = Journal(tmp_path / "inflight"), Spool(tmp_path / "spool")
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            journal.begin("abc123", image_field=None, stream="primary", n_events=k)
            spool.put_failure("abc123", f"error {k}", {"method": None})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,), name=f"writer-{k}") for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert json.loads((tmp_path / "inflight" / "abc123.json").read_text())["raw_uid"]
    assert [e.raw_uid for e in spool.entries()] == ["abc123"]

    def refuse(src, dst) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        journal.begin("def456", image_field=None, stream="primary")
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_one_replay_of_a_spool_at_a_time(tiled, tmp_path, monkeypatch) -> None:
    """The worker's replay thread and a manual ``bcdi-stream replay`` on the same state dir:
    while one replays, another (thread or process) does nothing and says so."""
    import threading
    import uuid

    import bcdi_stream.tiled_io._spool as spool_mod

    client = tiled.client()
    uid = str(uuid.uuid4())
    spool = Spool(tmp_path)
    spool.put_result(uid, _arrays(1.0), {"method": "conventional"})
    writing, release = threading.Event(), threading.Event()
    written: list[str] = []
    real_write = spool_mod.write_result

    def slow_write(client, raw_uid, *args, **kwargs):
        written.append(raw_uid)
        writing.set()
        release.wait(10)
        return real_write(client, raw_uid, *args, **kwargs)

    monkeypatch.setattr(spool_mod, "write_result", slow_write)
    reports = []
    t = threading.Thread(target=lambda: reports.append(spool.replay(client)))
    t.start()
    try:
        assert writing.wait(30)
        same = spool.replay(client)                # another thread, the same Spool
        other = Spool(tmp_path).replay(client)     # another process (the directory lock)
    finally:
        release.set()
        t.join(60)
    for busy in (same, other):
        assert busy.busy and busy.written == [] and busy.remaining == 1
    assert written == [uid]
    assert reports[0].written == [uid] and not reports[0].busy and reports[0].remaining == 0
    assert not Spool(tmp_path).replay(client).busy  # the lock is released
    assert read_result(client, uid, arrays=False)["metadata"]["status"] == "ok"


def test_a_failed_journal_write_still_reconstructs_the_scan(tiled, tmp_path) -> None:
    """A full disk under ``state_dir``: ``stop`` still queues the scan (unjournalled)."""

    class FullDisk(Journal):
        def begin(self, raw_uid, **info):
            raise OSError(28, "No space left on device")

    client = tiled.client()
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, state_dir=tmp_path,
                      replay_interval=0)
    cb.journal = FullDisk(cb.journal.directory)
    try:
        uid = _new_scan(client, cb, seed=7)
        assert cb.wait(120)
    finally:
        cb.close()
    assert cb.result(uid).status == "ok", cb.result(uid).line()
    assert read_result(tiled.client(), uid, arrays=False)["metadata"]["status"] == "ok"
    assert cb.pending == 0 and cb._queued == 0


def test_wait_counts_a_submission_in_progress(tiled, scans, tmp_path) -> None:
    """``wait()`` must not report "all done" while a scan is being journalled and queued."""
    import threading

    class SlowJournal(Journal):  # a slow disk: begin() blocks until released
        entered, release = threading.Event(), threading.Event()

        def begin(self, raw_uid, **info):
            self.entered.set()
            self.release.wait(30)
            return super().begin(raw_uid, **info)

    cb = BCDICallback(tiled.client(), settings=tiny_settings(32), echo=None,
                      state_dir=tmp_path, replay_interval=0)
    journal = cb.journal = SlowJournal(cb.journal.directory)
    t = threading.Thread(target=cb.submit, args=(scans[3],))
    t.start()
    try:
        assert journal.entered.wait(30)
        assert cb.wait(0) is False and cb.pending == 1
    finally:
        journal.release.set()
        t.join(30)
    try:
        assert cb.wait(120)
    finally:
        cb.close()
    assert cb.result(scans[3]).status == "ok"
    assert cb.pending == 0 and cb._queued == 0 and len(journal) == 0


def test_malformed_journal_entries_are_rerun_not_dropped(tiled, scans, tmp_path) -> None:
    """A truncated entry is re-run from its file name; a ``since`` that is not a number
    neither stops the callback's start nor drops the scan."""
    import json

    inflight = tmp_path / "inflight"
    inflight.mkdir()
    (inflight / f"{scans[0]}.json").write_text(f'{{"raw_uid": "{scans[0]}", "attem')
    (inflight / f"{scans[4]}.json").write_text(json.dumps(
        {"raw_uid": scans[4], "attempts": 1, "since": "2026-12-05T10:00"}))
    assert {d["raw_uid"] for d in Journal(inflight).leftover()} == {scans[0], scans[4]}
    cb = start_and_drain(tiled.client(), tmp_path, 180)
    for uid in (scans[0], scans[4]):
        assert cb.result(uid).status == "ok", cb.result(uid).line()
    assert len(cb.journal) == 0


def test_close_releases_a_stop_waiting_for_a_slot(tiled, scans, tmp_path) -> None:
    """``overflow="block"``: a ``stop`` waits for a free slot; ``close()`` meanwhile releases it
    at once (before: it waited for the slot, then submitted to the shut-down pool, which
    raised inside the callback: the scan had no record). The scan is journalled once and
    recorded as skipped because the callback was closed; the next start reconstructs it."""
    import threading

    client = tiled.client()
    started, release = threading.Event(), threading.Event()

    def hold(result) -> None:  # keeps the one slot taken
        started.set()
        release.wait(60)

    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, max_pending=1,
                      overflow="block", state_dir=tmp_path, replay_interval=0,
                      listeners=[hold])
    waiting = scans[1]
    raw = client[waiting].metadata
    desc = {"uid": f"d-{waiting}", "run_start": waiting, "name": "primary", "time": 0.0,
            "data_keys": {"det_image": {"shape": [64, 80], "dtype": "array", "source": "x"}}}
    stop_done = threading.Event()

    def stop_in_the_run_engine() -> None:
        cb("start", dict(raw["start"]))
        cb("descriptor", desc)
        cb("stop", dict(raw["stop"]))
        stop_done.set()

    try:
        cb.submit(scans[0])
        assert started.wait(120)
        thread = threading.Thread(target=stop_in_the_run_engine, daemon=True)
        thread.start()
        assert not stop_done.wait(1.0)  # waiting for the slot
        t0 = time.perf_counter()
        cb.close(wait=False)
        assert stop_done.wait(10) and time.perf_counter() - t0 < 5
    finally:
        release.set()
    assert cb.wait(60)
    res = cb.result(waiting)
    assert res.status == "skipped" and "callback was closed" in res.error, res.line()
    assert [(d["raw_uid"], d["attempts"]) for d in Journal(tmp_path / "inflight").leftover()
            ] == [(waiting, 1)]
    cb2 = start_and_drain(tiled.client(), tmp_path, 120)
    assert cb2.result(waiting).status == "ok"
