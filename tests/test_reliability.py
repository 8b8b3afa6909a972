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
from conftest_live import API_KEY, one_torch_thread, tiny_settings, toy_source
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
    journal = Journal(tmp_path / "inflight")
    journal.begin(scans[0], image_field=None, stream="primary")  # died once: re-run
    for _ in range(2):  # killed its worker twice: record, no third try
        journal.begin(scans[1], image_field=None, stream="primary")
    cb = BCDICallback(tiled.client(), settings=tiny_settings(32), echo=None,
                      state_dir=tmp_path, replay_interval=0)
    try:
        assert cb.wait(120)
    finally:
        cb.close()
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
