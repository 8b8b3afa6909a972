"""BCDICallback end to end with real components: RunEngine + ophyd devices + TiledWriter + an
embedded Tiled server. Happy path, stop/event overhead, back-to-back scans, and every failure
path (NaN frames, empty frames, no detector stream, aborted/failed scans, Tiled refusing the
write) followed by a scan that is still processed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from bluesky_tiled_plugins import TiledWriter
from conftest_live import (
    one_torch_thread,
    shared_server,
    start_and_drain,
    tiny_settings,
    toy_source,
    two_image_detector,
)
from ophyd.sim import det as scalar_det
from tiled.client import from_uri
from tiled.queries import Key

from bcdi_stream.beamline import SimBCDIDetector, make_beamline
from bcdi_stream.tiled_io import RESULT_ARRAYS, read_result
from callbacks import BCDICallback, LiveStrainFigure, ScanResult

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def client():
    return from_uri(shared_server().uri)


@pytest.fixture()
def rig(client):
    """RunEngine -> TiledWriter -> BCDICallback, and a small simulated beamline."""
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    yield RE, cb, bl
    cb.close()


def _fresh():
    return from_uri(shared_server().uri)


def _scan(RE, bl, seed: int = 0) -> str:
    bl.load(toy_source(32, seed=seed))
    (uid,) = RE(bl.rocking_curve())
    return uid


def test_rocking_curve_reconstructed_into_tiled(rig) -> None:
    RE, cb, bl = rig
    uid = _scan(RE, bl)
    assert cb.wait(120)
    res = cb.result(uid)
    assert isinstance(res, ScanResult)
    assert res.status == "ok", res.error
    assert res.path == f"processed/{uid}"
    assert set(res.timings) >= {"read", "preprocess", "predict", "refine", "write", "latency"}
    assert 0 < res.timings["latency"] < 120
    assert res.summary["quality_flag"] in ("good", "poor")
    assert "strain" in res.line() and "latency" in res.line()
    assert res.arrays is not None and res.figure is not None
    # the contract, from a fresh client
    back = read_result(_fresh(), uid)
    md = back["metadata"]
    assert back["specs"] == ["BCDIReconstruction"]
    assert md["status"] == "ok" and md["raw_uid"] == uid and md["method"] == "conventional"
    assert md["model"] == {"name": None, "hash": None}
    assert md["noise_filter"] == 8.0  # the result passed the default noise filter
    assert md["crystal_support"] == 0.4  # and reports the crystal's support
    assert md["photon_scale"] == 1.0  # the detector's frames are photon counts
    assert md["saturated_voxels"] == 0 and md["secondary_peak_voxels"] == 0  # no faults
    assert md["rounded_to_photons"] is False  # counts already
    assert set(md["timings"]) >= {"read", "preprocess", "predict", "refine", "write"}
    assert md["software"].startswith("bcdi-stream")
    assert len(md["voxel_size_m"]) == 3 and all(v > 0 for v in md["voxel_size_m"])
    assert md["quality"]["llk"] > 0 and "flag" in md["quality"]
    # the flag follows the excess misfit (count-independent), not the LLK
    misfit = md["quality"]["excess_misfit"]
    assert md["quality"]["flag"] == ("good" if misfit <= 0.0025 else "poor")
    assert res.summary["excess_misfit"] == pytest.approx(misfit) and "misfit" in res.line()
    assert md["geometry"]["energy_kev"] == 9.0
    for key in RESULT_ARRAYS:
        assert back["arrays"][key].shape == (32, 32, 32)
    assert back["figures"] == ["slices"]
    # RunEngine never held up: the stop call only enqueues
    assert max(cb.stop_overheads) < 0.05


def test_live_reconstruction_recovers_the_simulated_crystal(client) -> None:
    """The whole live path is right, not just alive: a weakly strained simulated crystal, seen
    through the simulated detector (noise, hot pixels, offset peak), TiledWriter and Tiled, comes
    back from the callback with its true phase (after twin/shift/ramp alignment)."""
    import torch

    from bcdi_stream.analysis import compare
    from bcdi_stream.beamline import crystal_source
    from bcdi_stream.simulation import simulate_crystal
    from callbacks import JobSettings

    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    cb = BCDICallback(client, settings=JobSettings(shape=(32, 32, 32), method="conventional",
                                                   device="cpu"), echo=None)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(128, 160), seed=1)
    bl.load(crystal_source(3, n=32, strain="weak"))
    (uid,) = RE(bl.rocking_curve())
    assert cb.wait(120)
    res = cb.result(uid)
    cb.close()
    assert res.status == "ok", res.error
    a = res.arrays
    obj = (a["amplitude"] * np.exp(1j * np.nan_to_num(a["phase"]))).astype(np.complex64)
    truth = simulate_crystal(3, n=32, strain="weak", device="cpu", poisson=False, gaps=())
    m = compare(torch.as_tensor(obj), truth.obj, truth.support,
                recon_support=torch.as_tensor(a["support"].astype(bool)))
    assert m.phase_rmse < 0.15 and m.support_iou > 0.6, m


def test_nothing_measurable_per_event(client) -> None:
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None)
    try:
        cb("start", {"uid": "u1", "time": 0.0, "bcdi": {"energy_kev": 9.0}})
        cb("descriptor", {"uid": "d1", "run_start": "u1", "name": "primary", "time": 0.0,
                          "data_keys": {"img": {"shape": [128, 128], "dtype": "array",
                                                "source": "x"}}})
        frame = np.zeros((128, 128), np.uint32)
        docs = [{"uid": f"e{i}", "descriptor": "d1", "seq_num": i + 1, "time": 0.0,
                 "data": {"img": frame}, "timestamps": {"img": 0.0}} for i in range(200)]
        t0 = time.perf_counter()
        for doc in docs:
            cb("event", doc)
        per_event = (time.perf_counter() - t0) / len(docs)
        assert per_event < 1e-4, f"{per_event * 1e6:.1f} µs per event"
    finally:
        cb.close()


def test_back_to_back_scans_all_get_results(rig) -> None:
    RE, cb, bl = rig
    uids = [_scan(RE, bl, seed=s) for s in range(10)]
    assert cb.wait(240)
    assert [cb.result(u).status for u in uids] == ["ok"] * 10
    assert max(cb.stop_overheads) < 0.05
    fresh = _fresh()
    ok = set(fresh["processed"].search(Key("status") == "ok"))
    assert set(uids) <= ok
    # only the last keep_arrays results keep their arrays in memory
    assert sum(cb.result(u).arrays is not None for u in uids) == cb.keep_arrays


class _NaNDetector(SimBCDIDetector):
    """A float detector whose frames hold NaN (a broken correction upstream)."""

    def render(self, angle_deg: float) -> np.ndarray:
        frame = super().render(angle_deg).astype(np.float32)
        frame[3, 5] = np.nan
        return frame


class _DroppingDetector(SimBCDIDetector):
    """A detector that loses the frame at the Bragg peak (a readout glitch): all zeros."""

    def render(self, angle_deg: float) -> np.ndarray:
        frame = super().render(angle_deg)
        n = self.source.shape[0] if self.source is not None else 1
        if round(self.rocking_index(angle_deg)) == n // 2:
            frame[:] = 0
        return frame


class _GappedDetector(SimBCDIDetector):
    """A detector with a gap between chips 2 px beside the Bragg peak: three columns that never
    count, and a mask that does not say so."""

    def render(self, angle_deg: float) -> np.ndarray:
        frame = super().render(angle_deg)
        frame[:, self.peak_pixel[1] + 2:self.peak_pixel[1] + 5] = 0
        return frame


class _GlitchDetector(SimBCDIDetector):
    """A beam dump during the frame after the Bragg peak's: a tenth of its counts."""

    def render(self, angle_deg: float) -> np.ndarray:
        frame = super().render(angle_deg)
        n = self.source.shape[0] if self.source is not None else 1
        if round(self.rocking_index(angle_deg)) == n // 2 + 1:
            frame = (frame * 0.1).astype(frame.dtype)
        return frame


def _crystal() -> Any:
    """A simulated weak crystal: a rocking curve without the toy box's deep fringes, along
    which a frame scaled by a glitch stands out."""
    from bcdi_stream.beamline import crystal_source

    return crystal_source(0, n=32, strain="weak", peak_counts=1e5)


@pytest.mark.parametrize(("detector", "source", "key", "count"), [
    (_DroppingDetector, toy_source, "lost_frames", 1),  # a frame lost at the peak
    (_GappedDetector, toy_source, "dead_columns", 3),  # a gap between chips, not in the mask
    (_GlitchDetector, _crystal, "glitched_frames", 1),  # a beam dump during one frame
])
def test_a_detector_fault_is_left_free_and_recorded(rig, detector, source, key, count) -> None:
    RE, cb, bl = rig
    det = detector(bl.motor, name="faulty", shape=(64, 80), seed=4)
    det.load(source(32) if source is toy_source else source())
    (uid,) = RE(_rc_md(det, bl))
    assert cb.wait(120)
    res = cb.result(uid)
    assert res.status == "ok", res.error
    md = read_result(_fresh(), uid, arrays=False)["metadata"]
    assert md["status"] == "ok" and len(md[key]) == count, md.get(key)
    faults = ("lost_frames", "dead_rows", "dead_columns", "glitched_frames")
    assert all(md[other] == [] for other in faults if other != key)
    assert len(md["glitch_factors"]) == len(md["glitched_frames"])


def _failed_then_recovered(rig, detector, expect: str) -> None:
    """A rocking curve measured with ``detector`` gets a failure record naming ``expect``,
    and the next, good scan is reconstructed all the same."""
    RE, cb, bl = rig
    (uid,) = RE(_rc(detector, bl))
    ok_uid = _scan(RE, bl, seed=7)
    assert cb.wait(120)
    res = cb.result(uid)
    assert res.status == "failed" and expect in res.error, res.error
    md = read_result(_fresh(), uid, arrays=False)["metadata"]
    assert md["status"] == "failed" and expect in md["error"]
    assert cb.result(ok_uid).status == "ok"


def test_nan_frames_give_a_failure_record(rig) -> None:
    nan_det = _NaNDetector(rig[2].motor, name="nandet", shape=(64, 80), seed=2)
    nan_det.load(toy_source(32))
    _failed_then_recovered(rig, nan_det, "NaN")


def _rc(detector, bl):
    from bcdi_stream.beamline import rocking_curve

    return rocking_curve(detector, bl.motor)


def test_empty_frames_give_a_failure_record(rig) -> None:
    dark = SimBCDIDetector(rig[2].motor, name="dark", shape=(64, 80), n_hot_pixels=0,
                           background=0.0)
    _failed_then_recovered(rig, dark, "no counts")


def test_run_without_detector_stream_is_skipped(rig) -> None:
    RE, cb, bl = rig
    md = {"bcdi": bl.geometry.to_dict()}
    (no_stream,) = RE(bpp.run_wrapper(bps.null(), md=md))
    (no_image,) = RE(bp.count([scalar_det], num=3, md=md))
    ok_uid = _scan(RE, bl, seed=3)
    assert cb.wait(120)
    assert cb.result(no_stream).status == "skipped"
    assert "no 'primary' stream" in cb.result(no_stream).error
    assert "no 2D detector image" in cb.result(no_image).error
    for uid in (no_stream, no_image):
        md_back = read_result(_fresh(), uid, arrays=False)["metadata"]
        assert md_back["status"] == "failed" and md_back["skipped"] is True
    assert cb.result(ok_uid).status == "ok"


def test_aborted_and_failed_scans_are_skipped(rig) -> None:
    RE, cb, bl = rig
    bl.load(toy_source(32, seed=4))

    def paused_scan():
        def per_step(detectors, step, pos_cache):
            yield from bps.one_nd_step(detectors, step, pos_cache)
            if next(iter(step.values())) > bl.detector.rocking_center_deg:
                yield from bps.checkpoint()
                yield from bps.pause()

        return (yield from bp.scan([bl.detector], bl.motor, bl.detector.rocking_center_deg,
                                   bl.detector.rocking_center_deg + 0.1, 8, per_step=per_step,
                                   md={"bcdi": bl.geometry.to_dict()}))

    with pytest.raises(RunEngineInterrupted):
        RE(paused_scan())
    assert RE.state == "paused"
    RE.abort(reason="sample moved")

    def failing_scan():
        yield from bps.open_run(md={"bcdi": bl.geometry.to_dict()})
        yield from bps.trigger_and_read([bl.detector, bl.motor])
        raise RuntimeError("shutter closed")

    with pytest.raises(RuntimeError, match="shutter"):
        RE(failing_scan())
    ok_uid = _scan(RE, bl, seed=5)
    assert cb.wait(120)
    skipped = [r for r in cb.results if r.status == "skipped"]
    assert len(skipped) == 2
    assert any(r.error.startswith("scan abort") for r in skipped)
    assert any(r.error == "scan fail (shutter closed)" for r in skipped)
    for r in skipped:
        assert read_result(_fresh(), r.raw_uid, arrays=False)["metadata"]["skipped"] is True
    assert cb.result(ok_uid).status == "ok"


def test_tiled_refusing_the_write_is_logged_and_next_scan_processed(rig, client, caplog
                                                                     ) -> None:
    RE, cb, bl = rig
    from bcdi_stream.tiled_io import processed_container

    squatted: list[str] = []

    def squatter(name, doc):
        # a foreign node takes processed/<uid> as the scan starts: Tiled answers 409
        if name == "start" and not squatted:
            processed_container(client).write_array(np.zeros(2), key=doc["uid"])
            squatted.append(doc["uid"])

    token = RE.subscribe(squatter)
    uid = _scan(RE, bl, seed=6)
    RE.unsubscribe(token)
    ok_uid = _scan(RE, bl, seed=8)
    with caplog.at_level("WARNING", logger="bcdi_stream.live"):
        assert cb.wait(120)
    res = cb.result(uid)
    assert res.status == "failed" and res.path is None
    assert "409" in res.error and "failure record not written" in res.error
    assert any(uid[:8] in rec.getMessage() for rec in caplog.records)
    assert cb.result(ok_uid).status == "ok"


def test_callback_never_raises_into_the_run_engine(client) -> None:
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None)
    cb.close()  # a dead executor: submit() raises inside stop()
    RE = RunEngine({})
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80))
    bl.load(toy_source(32))
    (uid,) = RE(bl.rocking_curve(num=4))
    assert uid
    cb("stop", {"run_start": "unknown", "uid": "s", "time": 0.0})
    cb("descriptor", {"no": "keys"})


def test_two_image_fields_need_configuration(client) -> None:
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    bl = make_beamline(detector_shape=(64, 80))
    cams = two_image_detector(bl.motor, "cams")
    auto = BCDICallback(client, settings=tiny_settings(32, processed_key="processed_auto"),
                        echo=None)
    chosen = BCDICallback(client, image_field="cams_image",
                          settings=tiny_settings(32, processed_key="processed_chosen"),
                          echo=None)
    RE.subscribe(auto)
    RE.subscribe(chosen)
    (uid,) = RE(_rc_md(cams, bl))
    assert auto.wait(120) and chosen.wait(120)
    assert "several 2D detector images" in auto.result(uid).error
    assert chosen.result(uid).status == "ok"
    auto.close()
    chosen.close()


def _rc_md(detector, bl):
    from bcdi_stream.beamline import rocking_curve

    return rocking_curve(detector, bl.motor, md={"bcdi": bl.geometry.to_dict()})


def test_live_figure_and_analysis_run(client, tmp_path) -> None:
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    fig = LiveStrainFigure(save_dir=tmp_path, interactive=False)
    lines: list[str] = []
    cb = BCDICallback(client, settings=tiny_settings(32), echo=lines.append,
                      listeners=[fig], publish_analysis=True)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=3)
    uid = _scan(RE, bl, seed=9)
    assert cb.wait(120)
    assert (tmp_path / f"{uid}.png").stat().st_size > 1000
    assert fig.drawn == [uid]
    assert len(lines) == 1 and uid[:8] in lines[0]
    analysis = list(_fresh().search(Key("start.raw_uid") == uid))
    assert len(analysis) == 1
    assert cb.result(uid).summary["analysis_uid"] == analysis[0]
    cb.close()


def test_wait_reports_timeout_and_validates(rig) -> None:
    RE, cb, bl = rig
    _scan(RE, bl, seed=11)
    assert cb.wait(0) is False or cb.pending == 0
    assert cb.wait(120)
    with pytest.raises(ValueError, match="timeout"):
        cb.wait(-1)


def test_any_executor_with_submit(client) -> None:
    """A plain concurrent.futures executor works too (no per-worker state)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    cb = BCDICallback(client, settings=tiny_settings(32), executor=pool, echo=None)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=4)
    uid = _scan(RE, bl, seed=12)
    assert cb.wait(120)
    assert cb.result(uid).status == "ok"
    cb.close()  # does not shut down a pool it does not own
    assert pool.submit(lambda: 1).result() == 1
    pool.shutdown()


def test_stopped_rocking_curve_is_skipped_as_incomplete(rig) -> None:
    """RE.stop() ends with exit_status "success": fewer frames than planned is not a scan."""
    from bcdi_stream.beamline import bcdi_metadata

    RE, cb, bl = rig
    bl.load(toy_source(32))
    c, dstep = bl.detector.rocking_center_deg, bl.geometry.angular_step_deg
    md = {"bcdi": bcdi_metadata(bl.geometry, num_frames=32, rocking_center_deg=c)}

    def per_step(detectors, step, pos_cache):
        yield from bps.one_nd_step(detectors, step, pos_cache)
        if next(iter(step.values())) >= c - 13 * dstep:
            yield from bps.checkpoint()
            yield from bps.pause()

    with pytest.raises(RunEngineInterrupted):
        RE(bp.scan([bl.detector], bl.motor, c - 16 * dstep, c + 15 * dstep, 32,
                   per_step=per_step, md=md))
    (uid,) = RE.stop()
    assert cb.wait(120)
    res = cb.result(uid)
    assert res.status == "skipped" and res.error == "incomplete rocking curve: 4 of 32 frames"
    md_back = read_result(_fresh(), uid, arrays=False)["metadata"]
    assert md_back["status"] == "failed" and md_back["skipped"] is True


def test_one_frame_without_plan_gives_a_one_line_reason(rig) -> None:
    RE, cb, bl = rig
    bl.load(toy_source(32))
    (uid,) = RE(bp.count([bl.detector], num=1, md={"bcdi": bl.geometry.to_dict()}))
    assert cb.wait(120)
    expected = "preprocess: too few frames: 1 (a rocking curve needs at least 3)"
    assert cb.result(uid).error == expected


class _BackgroundOnly(SimBCDIDetector):
    """The crystal is off the Bragg condition: Poisson background only."""

    def render(self, angle):
        shape = super().render(angle).shape
        return np.random.default_rng(int(angle * 1e6) % 2**32).poisson(0.5, shape).astype(
            np.uint32)


def test_rocking_curve_that_missed_the_peak_is_a_failure(rig) -> None:
    det = _BackgroundOnly(rig[2].motor, name="offpeak", shape=(64, 80), n_hot_pixels=0)
    det.load(toy_source(32))
    _failed_then_recovered(rig, det, "no Bragg peak above the background")


def test_a_model_loader_that_raises_gives_a_failure_record(client) -> None:
    from callbacks import WorkerPool

    def broken(device):
        raise RuntimeError("weights file truncated")

    pool = WorkerPool(["cpu"], load_model=broken, threads=0)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    cb = BCDICallback(client, settings=tiny_settings(32).model_copy(update={"method": "ai"}),
                      executor=pool, echo=None)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    uid = _scan(RE, bl, seed=4)
    try:
        assert cb.wait(120)
    finally:
        cb.close()
        pool.shutdown()
    res = cb.result(uid)
    assert res.status == "failed" and "could not load the phase model" in res.error
    assert "weights file truncated" in res.error and "\n" not in res.error
    md = read_result(_fresh(), uid, arrays=False)["metadata"]
    assert md["status"] == "failed" and "could not load the phase model" in md["error"]


def test_the_default_pool_runs_on_the_settings_device(client) -> None:
    """``device="cpu"`` keeps a GPU machine's jobs on the CPU (each worker's device overrides
    ``settings.device``, so the pool must be built from it); ``auto``: one worker per GPU."""
    from callbacks._executors import default_devices

    for device, expected in (("cpu", ["cpu"]), ("cuda:1", ["cuda:1"]),
                             ("auto", default_devices())):
        settings = tiny_settings(32).model_copy(update={"device": device})
        cb = BCDICallback(client, settings=settings, echo=None)
        try:
            assert cb.executor.devices == expected
        finally:
            cb.close()


def test_close_from_a_listener_closes(client, tmp_path) -> None:
    """A listener that closes the callback (a "stop after this scan" helper) runs on a pool
    thread, which cannot join itself: the pools shut down without waiting, and the callback
    is closed (its replay thread stops) instead of failing halfway."""
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, state_dir=tmp_path,
                      replay_interval=1)
    cb.add_listener(lambda result: cb.close())
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    uid = _scan(RE, bl, seed=3)
    assert cb.wait(120) and cb.result(uid).status == "ok"
    assert cb._closing.is_set()
    cb._replayer.join(10)
    assert not cb._replayer.is_alive()
    cb.close()  # a second close is harmless



def _closed_rig(client, **kwargs):
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, **kwargs)
    RE.subscribe(cb)
    return RE, cb, make_beamline(detector_shape=(64, 80), seed=1)


@pytest.mark.parametrize("own_pool", [True, False], ids=["own-pool", "external-executor"])
def test_a_scan_after_close_is_recorded_and_not_processed(client, caplog, own_pool) -> None:
    """Closed but still subscribed: a rocking curve that ends now is neither lost (before:
    a suppressed ``RuntimeError`` traceback and nothing in Tiled) nor reconstructed (before:
    an executor the callback does not own kept running jobs): a ``skipped`` record says the
    callback was closed and how to redo the scan, and the log has one warning line."""
    from concurrent.futures import ThreadPoolExecutor

    pool = None if own_pool else ThreadPoolExecutor(max_workers=1)
    RE, cb, bl = _closed_rig(client, executor=pool)
    cb.close()
    try:
        with caplog.at_level("WARNING", logger="bcdi_stream.live"):
            uid = _scan(RE, bl, seed=2)
            assert cb.wait(60)
        res = cb.result(uid)
        assert res.status == "skipped", res.line()
        assert "callback was closed" in res.error
        assert f"bcdi-stream reprocess {uid}" in res.error
        md = read_result(_fresh(), uid, arrays=False)["metadata"]
        assert md["status"] == "failed" and md["skipped"] is True
        assert "callback was closed" in md["error"]
        assert any(uid in r.getMessage() and "closed" in r.getMessage()
                   for r in caplog.records)
        assert not [r for r in caplog.records if r.exc_info], "a traceback, not one line"
        assert max(cb.stop_overheads) < 0.05  # the record is written off the RunEngine
        with pytest.raises(RuntimeError, match="closed"):
            cb.submit(uid)
    finally:
        if pool is not None:
            pool.shutdown()


def test_a_scan_after_close_is_journalled_and_rerun_at_the_next_start(client, tmp_path
                                                                       ) -> None:
    """With a ``state_dir`` the scan that ended after close() is also journalled (once: the
    next start re-runs it instead of taking it for a crash) and reconstructed by the next
    callback on that directory, whose ``ok`` result replaces the skip record."""
    from bcdi_stream.tiled_io import Journal

    RE, cb, bl = _closed_rig(client, state_dir=tmp_path, replay_interval=0)
    cb.close()
    uid = _scan(RE, bl, seed=3)
    assert cb.wait(60)
    assert "re-run when bcdi-stream starts again" in cb.result(uid).error
    left = Journal(tmp_path / "inflight").leftover()
    assert [(d["raw_uid"], d["attempts"]) for d in left] == [(uid, 1)]
    assert read_result(_fresh(), uid, arrays=False)["metadata"]["skipped"] is True
    cb2 = start_and_drain(client, tmp_path, 120)
    assert cb2.result(uid).status == "ok", cb2.result(uid).line()
    md = read_result(_fresh(), uid, arrays=False)["metadata"]
    assert md["status"] == "ok" and "skipped" not in md
    assert len(Journal(tmp_path / "inflight")) == 0


def test_malformed_documents_give_one_line_records(client, caplog) -> None:
    """Documents from the network (the 0MQ worker) can be anything. A malformed stop or
    descriptor of a BCDI run still gives a record naming the problem (before: a stop whose
    ``time`` or ``num_events`` had the wrong type raised inside the callback and the scan
    vanished); a start whose uid is not a valid Tiled key is ignored with one warning (before:
    ``../../etc`` was written as a key Tiled accepts but cannot serve back). No tracebacks."""
    import uuid

    geo = make_beamline(detector_shape=(64, 80)).geometry.to_dict()
    img = {"img": {"shape": [64, 80], "dtype": "array", "source": "x"}}
    cb = BCDICallback(client, settings=tiny_settings(32), echo=None)

    def stop(uid, **kw):
        return {"uid": str(uuid.uuid4()), "run_start": uid, "time": time.time(),
                "exit_status": "success", "num_events": {"primary": 3}, **kw}

    def desc(uid, **kw):
        return {"uid": str(uuid.uuid4()), "run_start": uid, "name": "primary",
                "time": time.time(), "data_keys": img, **kw}

    cases = {  # name: (descriptor or None, stop fields, expected reason)
        "stop time": (desc, {"time": "yesterday", "exit_status": "abort"}, "scan abort"),
        "num_events": (desc, {"num_events": [3], "exit_status": "abort"}, "scan abort"),
        "data_keys": (lambda u: desc(u, data_keys=["img"]), {}, "data_keys must be a mapping"),
        "exit_status": (desc, {"exit_status": None}, "without a valid exit_status"),
        "image_field": (lambda u: desc(u, data_keys={}), {}, "no 2D detector image"),
    }
    uids = {}
    with caplog.at_level("INFO", logger="bcdi_stream.live"):
        try:
            for name, (make_desc, fields, _) in cases.items():
                uid = uids[name] = str(uuid.uuid4())
                cb("start", {"uid": uid, "time": time.time(), "bcdi": geo})
                cb("descriptor", make_desc(uid))
                cb("stop", stop(uid, **fields))
            for bad in ("../../etc", 12, None):
                cb("start", {"uid": bad, "time": time.time(), "bcdi": geo})
                cb("stop", {"uid": "s", "run_start": bad, "time": time.time(),
                            "exit_status": "abort"})
            assert cb.wait(60)
        finally:
            cb.close()
    for name, (_, _, reason) in cases.items():
        res = cb.result(uids[name])
        assert res.status == "skipped" and reason in res.error, (name, res.line())
        md = read_result(_fresh(), uids[name], arrays=False)["metadata"]
        assert md["skipped"] is True and "\n" not in md["error"]
    assert len(cb.results) == len(cases)
    assert "../../etc" not in set(_fresh()["processed"])
    ignored = [r.getMessage() for r in caplog.records if "bcdi run ignored" in r.getMessage()]
    assert len(ignored) == 3 and all("\n" not in m for m in ignored)
    assert not [r for r in caplog.records if r.exc_info], "a traceback, not one line"


def test_a_second_subscription_gives_one_job_per_scan(client) -> None:
    """The callback subscribed twice to one RunEngine (a profile loaded twice) and to a second
    RunEngine: each scan is processed once (the second ``stop`` finds no run left), and both
    RunEngines' scans are processed."""
    RE, cb, bl = _closed_rig(client)
    RE.subscribe(cb)
    RE2 = RunEngine({})
    RE2.subscribe(TiledWriter(client))
    RE2.subscribe(cb)
    seen: list[str] = []
    cb.add_listener(lambda r: seen.append(r.raw_uid))
    try:
        uid = _scan(RE, bl, seed=4)
        uid2 = _scan(RE2, bl, seed=5)
        assert cb.wait(120)
    finally:
        cb.close()
    assert sorted(seen) == sorted([uid, uid2])
    assert cb.result(uid).status == "ok" and cb.result(uid2).status == "ok"


def test_the_background_read_outside_the_crop_is_recorded_and_modelled(client) -> None:
    """A detector larger than the crop, 1 photon per pixel per frame of flat background: the
    live record carries the estimate read outside the crop (within 5 %), the excess misfit
    models it (``background``), and without the setting it is read but not modelled."""
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    on = BCDICallback(client, settings=tiny_settings(32, background=True), echo=None)
    off = BCDICallback(client, settings=tiny_settings(32, background=False,
                                                      processed_key="processed_nobg"), echo=None)
    RE.subscribe(on)
    RE.subscribe(off)
    bl = make_beamline(detector_shape=(96, 96), background=1.0, seed=3)
    try:
        uid = _scan(RE, bl, seed=2)
        assert on.wait(120) and off.wait(120)
    finally:
        on.close()
        off.close()
    assert on.result(uid).status == "ok" and off.result(uid).status == "ok"
    md = read_result(_fresh(), uid, arrays=False)["metadata"]
    est = md["preprocess"]["background"]
    assert est == pytest.approx(1.0, rel=0.05)
    assert md["preprocess"]["background_voxels"] > 5e4
    assert md["background"] == est  # modelled in the excess misfit
    md_off = read_result(_fresh(), uid, arrays=False, processed_key="processed_nobg")["metadata"]
    assert md_off["preprocess"]["background"] == est and md_off["background"] is None
    # the same phasing, a different figure of merit
    assert md_off["quality"]["llk"] == md["quality"]["llk"]
    assert md_off["quality"]["excess_misfit"] != md["quality"]["excess_misfit"]
