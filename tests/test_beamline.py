"""Simulated beamline: diffraction source, detector realism, rocking_curve metadata, and the
frames' round trip through a real TiledWriter + Tiled server."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from bluesky import RunEngine
from conftest_live import one_torch_thread, shared_server, toy_source

from bcdi_stream.beamline import (
    DEFAULT_GEOMETRY,
    DiffractionSource,
    SimBCDIDetector,
    bcdi_metadata,
    make_beamline,
    make_rocking_motor,
    rocking_curve,
)
from bcdi_stream.geometry import Geometry


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


def _collect(RE: RunEngine) -> list[tuple[str, dict]]:
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros((4, 4)), "3D"),
        (np.zeros((4, 4, 4), complex), "real counts"),
        (np.full((4, 4, 4), np.nan), "finite"),
        (-np.ones((4, 4, 4)), "non-negative"),
    ],
)
def test_source_rejects_bad_volumes(arr: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DiffractionSource(arr)


def test_source_meta_and_name_are_checked_when_made() -> None:
    """``meta=None`` is an empty description (it used to fail only later, in
    ``SimBCDIDetector.load``, with an AttributeError); a non-mapping is refused at once."""
    vol = np.ones((4, 4, 4), np.float32)
    det = SimBCDIDetector(make_rocking_motor(), name="d", shape=(16, 16))
    det.load(DiffractionSource(vol, meta=None))
    assert det.source.meta == {}
    with pytest.raises(ValueError, match="meta"):
        DiffractionSource(vol, meta=["g_hat"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        DiffractionSource(vol, name=None)  # type: ignore[arg-type]


def test_source_slices_interpolate_and_vanish_outside() -> None:
    vol = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
    src = DiffractionSource(vol)
    np.testing.assert_allclose(src.slice_at(1.0), vol[1])
    np.testing.assert_allclose(src.slice_at(1.5), 0.5 * (vol[1] + vol[2]))
    assert not src.slice_at(-0.5).any()
    assert not src.slice_at(3.5).any()


def test_detector_frame_realism() -> None:
    motor = make_rocking_motor("eta", 0.0)
    det = SimBCDIDetector(motor, name="det", shape=(96, 128), n_hot_pixels=4, seed=3)
    src = toy_source(32, seed=1)
    det.load(src, peak_offset=(5, -7), rocking_center_deg=0.0)
    frame = det.render(0.0)
    assert frame.dtype == np.uint32 and frame.shape == (96, 128)
    # hot pixels: fixed positions, huge counts, identical in every frame
    hot = frame[det.hot_pixels[:, 0], det.hot_pixels[:, 1]]
    assert len(det.hot_pixels) == 4 and (hot >= 20_000).all()
    frame2 = det.render(0.0)
    np.testing.assert_array_equal(frame2[det.hot_pixels[:, 0], det.hot_pixels[:, 1]], hot)
    # Poisson noise: two frames at the same angle differ, means agree
    clean = frame.astype(float)
    clean[det.hot_pixels[:, 0], det.hot_pixels[:, 1]] = 0
    assert not np.array_equal(frame, frame2)
    # the peak sits at the requested pixel
    r, c = np.unravel_index(np.argmax(clean), clean.shape)
    assert abs(r - (48 + 5)) <= 1 and abs(c - (64 - 7)) <= 1
    # far from the Bragg angle: background only
    off = det.render(10.0).astype(float)
    off[det.hot_pixels[:, 0], det.hot_pixels[:, 1]] = 0
    assert off.mean() < 0.1


def test_detector_validates_arguments() -> None:
    motor = make_rocking_motor()
    with pytest.raises(ValueError, match="shape"):
        SimBCDIDetector(motor, name="d", shape=(4, 4))
    with pytest.raises(ValueError, match="n_hot_pixels"):
        SimBCDIDetector(motor, name="d", n_hot_pixels=-1)
    det = SimBCDIDetector(motor, name="d", shape=(16, 16))
    with pytest.raises(ValueError, match="do not fit"):
        det.load(toy_source(32))


def test_rocking_curve_start_document_carries_geometry() -> None:
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    bl.load(toy_source(32))
    RE = RunEngine({})
    docs = _collect(RE)
    RE(bl.rocking_curve())
    start = docs[0][1]
    assert start["plan_name"] == "rocking_curve"
    g = Geometry.from_dict(start["bcdi"])
    assert g == bl.geometry
    assert start["bcdi"]["image_field"] == "det_image"
    assert start["bcdi"]["num_frames"] == 32
    assert start["sample"]["name"] == "toy-0"
    assert set(DEFAULT_GEOMETRY.to_dict()) <= set(start["bcdi"])
    events = [d for n, d in docs if n == "event"]
    angles = np.array([e["data"]["eta"] for e in events])
    assert len(events) == 32
    np.testing.assert_allclose(np.diff(angles), g.angular_step_deg, rtol=1e-6)
    assert angles[16] == pytest.approx(bl.detector.rocking_center_deg)
    # the brightest frame is the centre one (Bragg peak at the centre of the rocking axis)
    sums = [e["data"]["det_image"].astype(float).sum() for e in events]
    assert int(np.argmax(sums)) == 16
    desc = docs[1][1]["data_keys"]["det_image"]
    assert desc["shape"] == [64, 80] and desc["dtype_numpy"] == "<u4"


def test_rocking_curve_validates_arguments() -> None:
    bl = make_beamline()
    with pytest.raises(ValueError, match="num"):
        list(rocking_curve(bl.detector, num=1))
    with pytest.raises(ValueError, match="step_deg"):
        list(rocking_curve(bl.detector, step_deg=0))
    with pytest.raises(ValueError, match="geometry"):
        bcdi_metadata({"energy_kev": 9})  # type: ignore[arg-type]


def test_frames_round_trip_through_tiled_writer() -> None:
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri

    server = shared_server()
    client = from_uri(server.uri)
    bl = make_beamline(detector_shape=(64, 80), seed=2)
    bl.load(toy_source(32, seed=2))
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    docs = _collect(RE)
    (uid,) = RE(bl.rocking_curve(num=20))
    frames = client[uid]["primary"]["det_image"].read()
    assert frames.dtype == np.uint32 and frames.shape == (20, 64, 80)
    sent = np.stack([d["data"]["det_image"] for n, d in docs if n == "event"])
    np.testing.assert_array_equal(frames, sent)
    assert client[uid].metadata["start"]["bcdi"]["energy_kev"] == 9.0


# ------------------------------------------------------------- odd arguments, devices re-used


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num": 1}, "num"),
        ({"num": 0}, "num"),
        ({"num": -4}, "num"),
        ({"num": 2.5}, "num"),
        ({"num": float("nan")}, "num"),
        ({"num": "5"}, "num"),
        ({"step_deg": 0}, "step_deg"),
        ({"step_deg": -0.005}, "step_deg"),
        ({"step_deg": float("inf")}, "step_deg"),
        ({"step_deg": float("nan")}, "step_deg"),
        ({"center_deg": float("nan")}, "center_deg"),
        ({"center_deg": float("inf")}, "center_deg"),
        ({"center_deg": "abc"}, "center_deg"),
        ({"md": ["not", "a", "mapping"]}, "md"),
    ],
)
def test_rocking_curve_rejects_bad_arguments_when_called(kwargs: dict, name: str) -> None:
    """Eager, one-line ``ValueError`` naming the argument: raised by the call itself (not on
    the RunEngine's first step), so ``RE(rocking_curve(..., num=1))`` opens no run."""
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    bl.load(toy_source(32))
    with pytest.raises(ValueError, match=name) as err:
        rocking_curve(bl.detector, **kwargs)  # not iterated
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=name):
        bl.rocking_curve(**kwargs)
    RE = RunEngine({})
    docs = _collect(RE)
    with pytest.raises(ValueError, match=name):
        RE(bl.rocking_curve(**kwargs))
    assert docs == []  # no run was opened


def test_rocking_curve_with_two_frames_and_a_range_that_misses_the_peak() -> None:
    """The smallest rocking curve (num=2) runs; a range far from the Bragg peak runs too and
    records only background (the live callback then reports "no Bragg peak")."""
    bl = make_beamline(detector_shape=(64, 80), seed=1, n_hot_pixels=0)
    bl.load(toy_source(32))
    RE = RunEngine({})
    docs = _collect(RE)
    RE(bl.rocking_curve(num=2))
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 2 and docs[0][1]["bcdi"]["num_frames"] == 2
    assert events[1]["data"]["eta"] == pytest.approx(bl.detector.rocking_center_deg)
    docs.clear()
    far = bl.detector.rocking_center_deg + 1.0  # 200 steps away
    RE(bl.rocking_curve(num=4, center_deg=far))
    frames = np.stack([d["data"]["det_image"] for n, d in docs if n == "event"])
    assert frames.mean() < 0.1  # background only
    assert docs[0][1]["bcdi"]["rocking_center_deg"] == pytest.approx(far)


def test_loading_a_crystal_without_g_hat_does_not_keep_the_previous_one() -> None:
    """A detector re-used across crystals: Ĝ comes from the crystal in the beam, or, when it
    states none, from the detector's own geometry, never from the crystal loaded before."""
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    own = bl.geometry.g_hat
    plain = toy_source(32)
    tilted = DiffractionSource(plain.intensity, name="tilted", meta={"g_hat": [0.0, 0.6, 0.8]})
    bl.load(tilted)
    assert bl.geometry.g_hat == pytest.approx((0.0, 0.6, 0.8))
    bl.load(plain)
    assert bl.geometry.g_hat == pytest.approx(own)
    RE = RunEngine({})
    docs = _collect(RE)
    RE(bl.rocking_curve(num=4))
    assert docs[0][1]["bcdi"]["g_hat"] == pytest.approx(list(own))
    assert docs[0][1]["sample"]["name"] == plain.name


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"exposure_s": float("inf")}, "exposure_s"),
        ({"exposure_s": float("nan")}, "exposure_s"),
        ({"background": float("inf")}, "background"),
        ({"geometry": {"energy_kev": 9.0}}, "geometry"),
    ],
)
def test_detector_rejects_non_finite_settings(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SimBCDIDetector(make_rocking_motor(), name="d", **kwargs)


def test_a_failed_exposure_fails_the_trigger_status_instead_of_hanging() -> None:
    """An exposure that cannot run (here: one of 1e300 s) ends the trigger's status with the
    error; before, the acquisition thread died and a plan waited on the status for ever."""
    det = SimBCDIDetector(make_rocking_motor(), name="d", shape=(16, 16), exposure_s=0.01)
    det.exposure_s = 1e300
    status = det.trigger()
    with pytest.raises(OverflowError):
        status.wait(10)
    det.exposure_s = 0.01
    det.trigger().wait(10)  # the detector still works


@pytest.mark.parametrize(
    ("offset", "match"),
    [((40, 0), "off the 64x80 detector"), ((0, -41), "off the 64x80 detector"),
     ((1.5, 0), "integers"), ((1, 2, 3), "rows, cols")],
)
def test_peak_offset_that_leaves_no_peak_on_the_detector_is_rejected(offset, match) -> None:
    det = SimBCDIDetector(make_rocking_motor(), name="d", shape=(64, 80))
    with pytest.raises(ValueError, match=match):
        det.load(toy_source(32), peak_offset=offset)
    assert det.source is None  # nothing half-loaded
    det.load(toy_source(32), peak_offset=(31, -40))  # the edge pixels are still allowed
    assert det.peak_pixel == (63, 0)


@pytest.mark.parametrize(("kwargs", "name"),
                         [({"seed": 1.5}, "seed"), ({"seed": "a"}, "seed"), ({"n": 16.5}, "n")])
def test_crystal_source_does_not_truncate_its_seed(kwargs: dict, name: str) -> None:
    """``crystal_source(1.5)`` was crystal 1 named ``crystal-1.5-weak``: now a ValueError."""
    from bcdi_stream.beamline import crystal_source

    with pytest.raises(ValueError, match=f"^{name} must be an integer"):
        crystal_source(**{"seed": 0, "n": 16, **kwargs})
