"""Tiled adapters against a real embedded Tiled server: the processed/<uid> contract, figures
exportable as PNG, failure records, refusals, and reading frames with retries."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from conftest_live import API_KEY, one_torch_thread, shared_server
from tiled.client import from_uri
from tiled.queries import Key

from bcdi_stream.errors import InputError
from bcdi_stream.tiled_io import (
    RESULT_ARRAYS,
    RESULT_SPEC,
    JobSettings,
    TiledRefused,
    find_image_field,
    holds_ok_result,
    jsonable,
    misfit_limit,
    quality_flag,
    read_result,
    read_scan,
    render_slices,
    write_failure,
    write_result,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def client():
    return from_uri(shared_server().uri)


def _arrays(n: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sup = np.zeros((n, n, n), np.uint8)
    sup[4:12, 4:12, 4:12] = 1
    amp = rng.random((n, n, n)).astype(np.float32) * sup
    nan = np.where(sup > 0, 0.0, np.nan).astype(np.float32)
    return {"amplitude": amp, "phase": nan + 0.1, "support": sup,
            "displacement": nan + 1e-11, "strain": nan + 1e-4}


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"det_image": {"shape": [128, 128]}, "eta": {"shape": []}}, "det_image"),
        ({"cam": {"shape": [1, 64, 80]}, "eta": {"shape": []}}, "cam"),
        ({"spectrum": {"shape": [100]}, "img": {"shape": [10, 12]}}, "img"),
    ],
)
def test_find_image_field(keys: dict, expected: str) -> None:
    assert find_image_field(keys) == expected


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"eta": {"shape": []}}, "no 2D detector image"),
        ({"a": {"shape": [8, 8]}, "b": {"shape": [8, 8]}}, "several"),
    ],
)
def test_find_image_field_errors(keys: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        find_image_field(keys)


def test_jsonable_cleans_numpy_and_nan() -> None:
    out = jsonable({"a": np.float32(1.5), "b": float("nan"), "c": (1, np.int64(2)),
                    "d": np.arange(2)})
    assert out == {"a": 1.5, "b": None, "c": [1, 2], "d": [0, 1]}


def test_result_contract_and_png(client) -> None:
    uid = "contract-test-uid"
    fig = render_slices(*(_arrays()[k] for k in ("amplitude", "phase", "strain", "support")),
                        voxel_size=(1e-8, 1e-8, 1e-8), title="test")
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3
    md = {"method": "conventional", "timings": {"read": 0.1}, "quality": {"llk": 1.1},
          "voxel_size_m": [1e-8] * 3, "software": "bcdi-stream test"}
    node = write_result(client, uid, _arrays(), md, figures={"slices": fig},
                        finalize=lambda w: {"timings": {"read": 0.1, "write": w}})
    fresh = from_uri(shared_server().uri)
    back = read_result(fresh, uid)
    meta = back["metadata"]
    assert back["specs"] == [RESULT_SPEC]
    assert meta["status"] == "ok" and meta["raw_uid"] == uid
    assert meta["timings"]["write"] > 0 and meta["timings"]["read"] == 0.1
    for key in RESULT_ARRAYS:
        arr = back["arrays"][key]
        assert arr.shape == (16, 16, 16)
        assert arr.dtype == (np.uint8 if key == "support" else np.float32)
        assert list(fresh["processed"][uid][key].dims) == ["z", "y", "x"]
    assert back["figures"] == ["slices"]
    assert uid in fresh["processed"].search(Key("status") == "ok")
    # a person opens the figure as PNG from the server
    base = shared_server().uri.split("/api/v1")[0]
    r = httpx.get(f"{base}/api/v1/array/full/processed/{uid}/figures/slices",
                  params={"format": "image/png", "api_key": shared_server().api_key})
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    png = np.asarray(Image.open(io.BytesIO(r.content)))
    assert png.shape[:2] == fig.shape[:2]
    assert np.abs(png[..., :3].astype(int) - fig.astype(int)).mean() < 3  # identity scaling
    # writing again replaces the previous result
    write_failure(client, uid, "second try failed", {"method": "conventional"})
    meta2 = read_result(from_uri(shared_server().uri), uid)["metadata"]
    assert meta2["status"] == "failed" and meta2["error"] == "second try failed"
    assert node is not None


def test_write_refused_on_a_foreign_node(client) -> None:
    uid = "foreign-node-uid"
    from bcdi_stream.tiled_io import processed_container

    processed_container(client).write_array(np.zeros(3), key=uid)
    with pytest.raises(TiledRefused, match="409"):
        write_result(client, uid, _arrays(), {"method": "conventional"})
    with pytest.raises(TiledRefused):
        write_failure(client, uid, "nope")


def test_write_result_validates_arrays(client) -> None:
    a = _arrays()
    del a["strain"]
    with pytest.raises(ValueError, match="strain"):
        write_result(client, "x", a, {})


def test_read_scan_gives_up_with_a_reason(client) -> None:
    with pytest.raises(TimeoutError, match="not readable"):
        read_scan(client, "no-such-run", timeout=0.3, poll=0.1)
    with pytest.raises(ValueError, match="uid"):
        read_scan(client, "")


def test_read_only_client_is_refused(tmp_path) -> None:
    """An in-process Tiled app that allows anonymous reads: writes are refused (401)."""
    from tiled.catalog import from_uri as catalog_from_uri
    from tiled.client import Context, from_context
    from tiled.config import Authentication
    from tiled.server.app import build_app

    d = tmp_path
    catalog = catalog_from_uri(d / "c.db", writable_storage=[d / "data"], init_if_not_exists=True)
    from tiled.server.settings import get_settings

    shared_server()  # same process-wide auth settings: same key (see conftest_live.API_KEY)
    app = build_app(catalog, authentication=Authentication(single_user_api_key=API_KEY,
                                                           allow_anonymous_access=True))
    try:
        with Context.from_app(app, api_key=None) as ctx:
            anon = from_context(ctx)
            with pytest.raises(TiledRefused, match=r"401|403"):
                write_result(anon, "ro-uid", _arrays(), {})
    finally:
        get_settings().allow_anonymous_access = False


def test_read_scan_retries_until_the_run_is_written(client) -> None:
    """The writer is behind: the run appears in Tiled only after the first attempts."""
    import threading
    import time

    uid = "late-run-uid"
    frames = np.random.default_rng(1).poisson(5, (6, 16, 20)).astype(np.uint32)
    geometry = {"energy_kev": 9.0, "detector_distance": 1.0, "pixel_size": 55e-6,
                "angular_step_deg": 0.005}

    def late_writer() -> None:
        time.sleep(0.6)
        run = client.create_container(uid, metadata={"start": {"uid": uid, "bcdi": geometry},
                                                      "stop": {"exit_status": "success"}})
        stream = run.create_container("primary", metadata={
            "data_keys": {"cam": {"shape": [16, 20], "dtype": "array"},
                          "eta": {"shape": [], "dtype": "number"}}})
        stream.write_array(frames, key="cam")

    thread = threading.Thread(target=late_writer)
    thread.start()
    try:
        raw = read_scan(client, uid, timeout=20, poll=0.1)
    finally:
        thread.join()
    assert raw.attempts > 1 and raw.field == "cam"
    np.testing.assert_array_equal(raw.frames, frames)
    assert raw.geometry is not None and raw.geometry.energy_kev == 9.0


def test_read_scan_refuses_an_oversized_array_before_reading(client) -> None:
    uid = "big-run-uid"
    frames = np.ones((8, 16, 20), np.uint32)  # 10,240 bytes
    run = client.create_container(uid, metadata={"start": {"uid": uid},
                                                  "stop": {"exit_status": "success"}})
    stream = run.create_container("primary", metadata={
        "data_keys": {"cam": {"shape": [16, 20], "dtype": "array"}}})
    stream.write_array(frames, key="cam")
    with pytest.raises(InputError, match="larger than"):
        read_scan(client, uid, timeout=5, max_bytes=10_000)
    assert read_scan(client, uid, timeout=5, max_bytes=10_240).frames.shape == (8, 16, 20)
    with pytest.raises(ValueError, match="max_bytes"):
        read_scan(client, uid, max_bytes=0)


def test_quality_flag_limit_follows_the_fallback_trigger(monkeypatch) -> None:
    """The live flag's misfit limit is ``auto``'s fallback trigger unless set on its own."""
    monkeypatch.delenv("BCDI_AI__FALLBACK_MISFIT", raising=False)
    assert misfit_limit(JobSettings()) == 0.0025
    monkeypatch.setenv("BCDI_AI__FALLBACK_MISFIT", "0.01")
    assert misfit_limit(JobSettings()) == 0.01  # read when the scan is flagged
    assert misfit_limit(JobSettings(misfit_good=0.004)) == 0.004
    with pytest.raises(ValueError, match="misfit_good"):
        JobSettings(misfit_good=0.0)


def test_quality_flag_poor_for_a_misfit_far_below_zero() -> None:
    """Fitting noise (a pattern without a Bragg peak: misfit -0.06 .. -0.23) is not good."""
    s = JobSettings(misfit_good=0.0025)
    assert quality_flag(0.001, None, s) == "good"
    assert quality_flag(-0.016, None, s) == "good"  # the lowest measured on a real fit
    for misfit in (-0.061, -0.12, -0.23, float("nan")):
        assert quality_flag(misfit, None, s) == "poor"
    assert quality_flag(None, 1.0, s) == "good" and quality_flag(None, 9.0, s) == "poor"


def test_read_scan_uses_the_image_field_named_by_the_plan(client) -> None:
    """Two 2D fields: the start document's ``bcdi.image_field`` picks the image (reprocess)."""
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from conftest_live import two_image_detector

    from bcdi_stream.beamline import make_beamline, rocking_curve

    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    bl = make_beamline(detector_shape=(64, 80))
    cams = two_image_detector(bl.motor, "cams2")
    (uid,) = RE(rocking_curve(cams, bl.motor))
    raw = read_scan(client, uid, timeout=10)
    assert raw.field == "cams2_image" and raw.frames.shape == (32, 64, 80)


def test_partial_rocking_curves_are_skipped_when_reprocessed_too(client) -> None:
    """An aborted (``fail``) run and one with fewer frames than planned: recorded as skipped
    by ``process_run`` (what ``reprocess`` runs), as the live callback skips them, with the
    record's timings; ``partial_runs`` phases them all the same."""
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from conftest_live import tiny_settings, toy_source

    from bcdi_stream.beamline import bcdi_metadata, make_beamline
    from bcdi_stream.tiled_io import partial_run_reason, process_run

    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    starts: list[str] = []
    RE.subscribe(lambda name, doc: starts.append(doc["uid"]), "start")
    bl = make_beamline(detector_shape=(64, 80))
    bl.load(toy_source(32))

    def failing(plan, after):  # the sample moved after a few frames
        ret, saved = None, 0
        while True:
            try:
                msg = plan.send(ret)
            except StopIteration:
                return
            saved += msg.command == "save"
            if saved > after:
                raise RuntimeError("sample moved")
            ret = yield msg

    with pytest.raises(RuntimeError, match="sample moved"):
        RE(failing(bl.rocking_curve(), 5))
    aborted = starts[-1]
    md = {"bcdi": bcdi_metadata(bl.geometry, num_frames=40,
                                image_field=bl.detector.image_field)}
    (short,) = RE(bl.rocking_curve(md=md))  # 32 frames of 40 planned
    stop = client[short].metadata["stop"]
    assert partial_run_reason(client[short].metadata["start"], stop) == (
        "incomplete rocking curve: 32 of 40 frames")
    for uid, reason in ((aborted, "scan fail"), (short, "incomplete rocking curve")):
        res = process_run(client, uid, settings=tiny_settings(32))
        assert res.status == "skipped" and res.error.startswith(reason), res.line()
        rec = read_result(client, uid, arrays=False)["metadata"]
        assert rec["status"] == "failed" and rec["skipped"] is True and "timings" in rec
    res = process_run(client, short, settings=tiny_settings(32, partial_runs=True))
    assert res.status == "ok", res.line()


def test_a_record_left_writing_is_found_again(client) -> None:
    """A writer that died mid-write leaves ``status: writing`` (the old result already gone):
    after ``STALE_WRITING_S`` it counts as missing for catch-up and ``reprocess --failed``."""
    import time

    from bcdi_stream.tiled_io import stale_writing

    write_result(client, "died-writing", _arrays(), {"method": "conventional"})
    node = client["processed"]["died-writing"]
    node.update_metadata({"status": "writing", "writing_since": time.time() - 3600})
    write_result(client, "still-writing", _arrays(), {"method": "conventional"})
    client["processed"]["still-writing"].update_metadata(
        {"status": "writing", "writing_since": time.time()})
    stale = stale_writing(client)
    assert "died-writing" in stale and "still-writing" not in stale



@pytest.mark.parametrize("bad", ["../../etc", "a/b", ".hidden", "", "x" * 300, 12, None],
                         ids=["dotdot", "slash", "hidden", "empty", "300-chars", "int", "None"])
def test_result_keys_refuse_a_uid_that_is_not_a_tiled_key(client, bad) -> None:
    """The Tiled client accepts ``create_container("../../etc")`` (the node can then be neither
    read nor replaced, and ``processed["../../x"]`` climbs out of the container in its URL): the
    writers and readers of ``processed/<uid>`` refuse such a uid before any request."""
    before = set(from_uri(shared_server().uri)["processed"]) if "processed" in client else set()
    with pytest.raises(ValueError, match="raw_uid must be"):
        write_failure(client, bad, "forged")
    with pytest.raises(ValueError, match="raw_uid must be"):
        write_result(client, bad, _arrays(), {"method": "conventional"})
    for read in (read_result, holds_ok_result):
        with pytest.raises(ValueError, match="raw_uid must be"):
            read(client, bad)
    fresh = from_uri(shared_server().uri)
    assert (set(fresh["processed"]) if "processed" in fresh else set()) == before


def test_the_job_reconstruct_models_a_given_background_in_the_misfit_only() -> None:
    """``reconstruct(background=)``, what the live job passes: the phasing is the same bit for
    bit, the excess misfit models it; None and 0 leave everything as without it; a value not
    below the measured mean is not modelled; a negative one is refused."""
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.pipeline import reconstruct
    from bcdi_stream.simulation import simulate_crystal

    c = simulate_crystal(3, n=32, strain="weak", peak_counts=1e4, background=0.5,
                         device="cpu")
    phasing = PhasingSettings(runs=1, n_raar=30, n_hio=0, n_er=10, shrinkwrap_every=10)

    def run(**kw):
        return reconstruct(c.intensity, method="conventional", phasing=phasing, seed=0,
                           device="cpu", **kw)

    base, none, zero, bg = run(), run(background=None), run(background=0.0), run(background=0.5)
    for other in (none, zero, bg):
        assert torch.equal(other.obj, base.obj) and other.quality["llk"] == base.quality["llk"]
    for other in (none, zero):
        assert other.quality == base.quality
    assert "background" not in base.meta and "background" not in none.meta
    assert zero.meta["background"] == 0.0 and zero.meta["background_modelled"] is False
    assert bg.meta["background"] == 0.5 and bg.meta["background_modelled"] is True
    assert bg.quality["excess_misfit"] != base.quality["excess_misfit"]
    huge = run(background=1e9)
    assert huge.meta["background_modelled"] is False
    assert huge.quality["excess_misfit"] == base.quality["excess_misfit"]
    with pytest.raises(ValueError, match="background"):
        run(background=-1.0)
