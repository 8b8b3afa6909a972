"""prepare_frames: hot pixels, peak finding, crop and padding, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bcdi_stream.errors import InputError
from bcdi_stream.preprocess import (
    fill_lost_planes,
    fill_peak_holes,
    find_hot_pixels,
    prepare_frames,
)


def _frames(n: int = 24, rows: int = 48, cols: int = 40, peak=(10, 30, 12), seed: int = 0):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    r2 = (z - peak[0]) ** 2 + (y - peak[1]) ** 2 + (x - peak[2]) ** 2
    lam = 1e4 * np.exp(-r2 / 8.0) + 0.5
    return rng.poisson(lam).astype(np.uint32)


def test_crop_centres_peak_and_masks_hot_pixel() -> None:
    f = _frames()
    f[:, 3, 5] = 5000  # a hot pixel in every frame
    p = prepare_frames(f, shape=(16, 16, 16))
    assert p.intensity.shape == (16, 16, 16) and p.intensity.dtype == torch.float32
    idx = np.unravel_index(int(p.intensity.argmax()), p.intensity.shape)
    assert tuple(int(i) for i in idx) == (8, 8, 8)
    assert p.meta["hot_pixels"] == 1
    assert p.origin == (2, 22, 4)
    assert not p.mask.any()


def test_padding_is_masked_and_4d_frames_accepted() -> None:
    f = _frames(peak=(2, 30, 12))[:, None]  # (n, 1, rows, cols), peak near the first frame
    p = prepare_frames(f, shape=(16, 16, 16))
    assert p.origin[0] < 0
    assert p.mask[: -p.origin[0]].all()
    assert p.meta["padded_voxels"] == (-p.origin[0]) * 16 * 16


def test_detector_mask_and_saturation() -> None:
    f = _frames()
    m = np.zeros(f.shape[1:], dtype=np.uint8)
    m[30, 12] = 1
    p = prepare_frames(f, m, shape=(8, 8, 8), saturation=9000)
    assert p.mask[4, 4, 4]
    assert p.intensity[4, 4, 4] == 0
    assert p.meta["saturated_voxels"] >= 1


def test_values_at_the_dtype_maximum_are_masked_before_the_peak_search() -> None:
    """Eiger-style flags (2**32 - 1 in a band of gap rows): masked, so the crop finds the
    Bragg peak, not the band; a uint16 peak clipped at 65535 is masked, not phased."""
    f = _frames()
    f[:, 2:6, :] = np.iinfo(np.uint32).max
    p = prepare_frames(f, shape=(16, 16, 16))
    assert p.origin == (2, 22, 4) and p.meta["ceiling_voxels"] == 24 * 4 * 40
    clipped = np.minimum(_frames().astype(np.int64) * 10, 65535).astype(np.uint16)
    p = prepare_frames(clipped, shape=(16, 16, 16))
    assert p.meta["ceiling_voxels"] > 0 and p.mask[8, 8, 8] and p.intensity[8, 8, 8] == 0


def test_hot_pixel_detector_ignores_peak() -> None:
    f = torch.as_tensor(_frames().astype(np.float32))
    assert not find_hot_pixels(f).any()
    with pytest.raises(ValueError, match="factor"):
        find_hot_pixels(f, factor=0.5)


@pytest.mark.parametrize(
    ("frames", "mask", "message"),
    [
        (np.ones((4, 4)), None, "frames must be"),
        (np.full((4, 8, 8), np.nan), None, "NaN"),
        (np.zeros((4, 8, 8)), None, "no counts"),
        (-np.ones((4, 8, 8)), None, "negative"),
        (np.ones((4, 8, 8)), np.zeros((3, 3)), "mask shape"),
    ],
)
def test_bad_input_one_line(frames, mask, message) -> None:
    with pytest.raises(InputError, match=message) as err:
        prepare_frames(frames, mask, shape=(4, 4, 4))
    assert "\n" not in str(err.value)


def test_shape_argument_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        prepare_frames(np.ones((4, 8, 8)), shape=(4, 4))


def test_bragg_offset_finds_the_centre_of_mass_under_background() -> None:
    from bcdi_stream.preprocess import bragg_offset
    from bcdi_stream.simulation import simulate_crystal

    c = simulate_crystal(5, n=32, strain="medium", device="cpu")
    g = torch.Generator().manual_seed(0)
    data = c.intensity + torch.poisson(torch.full(c.intensity.shape, 2.0), generator=g)
    base = bragg_offset(data, c.mask)
    assert base.abs().max() < 0.2  # the simulator centres the pattern on its centre of mass
    moved = bragg_offset(torch.roll(data, (2, 0, -3), (0, 1, 2)),
                         torch.roll(c.mask, (2, 0, -3), (0, 1, 2)))
    assert torch.allclose(moved - base, torch.tensor([2.0, 0.0, -3.0], dtype=torch.float64),
                          atol=0.1)
    # a hot bad pixel far from the peak is ignored when masked
    hot = data.clone()
    hot[0, 0, 0] = 1e9
    mask = c.mask.clone()
    mask[0, 0, 0] = True
    assert torch.allclose(bragg_offset(hot, mask), base, atol=0.01)
    assert torch.equal(bragg_offset(torch.zeros(8, 8, 8)), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="intensity"):
        bragg_offset(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="outer"):
        bragg_offset(data, outer=1.5)


def test_crop_centres_a_strained_pattern_on_its_centre_of_mass() -> None:
    """The brightest region of a strongly strained crystal lies pixels from its centre of mass;
    the crop is re-centred on the latter (the model's convention) to the voxel."""
    from bcdi_stream.training._datasets import draw_crystal

    c, _ = draw_crystal(2_300_000_000, "strong", n=64)
    frames = torch.zeros(72, 90, 100)
    frames[3:67, 11:75, 30:94] = c.intensity  # the crystal's grid starts at (3, 11, 30)
    p = prepare_frames(frames, shape=(64, 64, 64), hot_pixels=False)
    coarse = torch.tensor(p.meta["peak_com"]) - torch.tensor([35.0, 43.0, 62.0])
    assert coarse.abs().max() > 1.5  # the brightest region alone would crop it off-centre
    assert p.origin == (3, 11, 30)
    assert torch.equal(p.intensity, c.intensity)
    assert max(abs(v) for v in p.meta["bragg_offset"]) < 0.5


def test_fill_peak_holes_restores_a_masked_gaussian_peak_and_leaves_gaps() -> None:
    n = 32
    q = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float64) - 15.3,) * 3,
                                   indexing="ij"))
    peak = 1e5 * torch.exp(-(q[0] ** 2 / 8 + q[1] ** 2 / 5 + q[2] ** 2 / 12 + q[0] * q[1] / 20))
    truth = peak.float() + 0.5
    core = peak > 0.3 * peak.max()  # a saturated core, flagged
    gap = torch.zeros_like(core)
    gap[:, 24, :] = True  # a module gap: runs across the grid, never filled
    filled, share = fill_peak_holes(truth, core | gap)
    assert torch.allclose(filled[core], truth[core], rtol=0.02)
    assert (filled[gap] == 0).all()
    assert share == pytest.approx(float(truth[core].sum() / filled.sum()), rel=1e-3)
    assert share > 0.3
    # a dim hole (far from the peak) and no hole at all: nothing filled
    dim = torch.zeros_like(core)
    dim[2:4, 2:4, 2:4] = True
    assert fill_peak_holes(truth, dim)[1] == 0.0
    assert fill_peak_holes(truth, torch.zeros_like(core))[1] == 0.0
    with pytest.raises(ValueError, match="brightness"):
        fill_peak_holes(truth, core, brightness=0.0)
    with pytest.raises(ValueError, match="mask"):
        fill_peak_holes(truth, core[0])


def test_fill_lost_planes_interpolates_between_the_frames_around() -> None:
    z = torch.arange(8, dtype=torch.float32)
    data = (10.0 + z).view(8, 1, 1).expand(8, 4, 4).clone()
    mask = torch.zeros(8, 4, 4, dtype=torch.bool)
    mask[3:5] = True  # two frames lost
    mask[0] = True  # a lost first frame has no frame before it: left at 0
    mask[6, 0, 0] = True  # a bad pixel of a good frame stays 0
    given = mask.clone()
    out = fill_lost_planes(data, mask)
    assert torch.equal(mask, given)  # the caller's mask is not touched
    assert torch.allclose(out[3:5], data[3:5])  # linear data: exact
    assert (out[0] == 0).all() and out[6, 0, 0] == 0 and out[6, 1, 1] == 16.0
    # a pixel bad in a bordering frame is not interpolated
    mask[2, 1, 1] = True
    assert fill_lost_planes(data, mask)[3, 1, 1] == 0
    with pytest.raises(ValueError, match="mask"):
        fill_lost_planes(data, mask[0])


def test_fill_lost_planes_fills_detector_gaps_and_their_crossing() -> None:
    """Bands of rows and of columns bad in every frame (gaps between detector chips) are filled
    like lost frames; where they cross, along the columns from the rows' fill."""
    grids = torch.meshgrid(*(torch.arange(12, dtype=torch.float32),) * 3, indexing="ij")
    data = 100.0 + 2.0 * grids[0] + 3.0 * grids[1] + 5.0 * grids[2]  # linear: exact
    mask = torch.zeros(12, 12, 12, dtype=torch.bool)
    mask[:, 4:7] = True  # rows
    mask[:, :, 8] = True  # a column, crossing them
    out = fill_lost_planes(data, mask)
    assert torch.allclose(out, data)
    # a band at the edge has no good plane beyond it: left at 0
    mask[:, 10:] = True
    out = fill_lost_planes(data, mask)
    assert (out[:, 10:] == 0).all() and torch.allclose(out[:, :10], data[:, :10])


def test_charge_integrating_frames_are_accepted() -> None:
    """Calibrated frames of a charge-integrating detector scatter around 0 where no photon
    arrived: their negative values are set to 0 (and counted), other negatives refused."""
    g = torch.Generator().manual_seed(0)
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in (24, 40, 40)),
                             indexing="ij")
    rate = 300.0 * torch.exp(-((z - 12) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) / 18.0)
    frames = torch.poisson(rate, generator=g) + 0.15 * torch.randn(rate.shape, generator=g)
    prep = prepare_frames(frames, shape=(16, 16, 16), hot_pixels=False)
    assert prep.meta["clamped_negative"] == int((frames < 0).sum()) > 100
    assert float(prep.intensity.min()) >= 0
    with pytest.raises(InputError, match="negative"):
        prepare_frames(frames - 2.0, shape=(16, 16, 16))


@pytest.mark.parametrize("kind", ["poisson0.5", "poisson5", "flat"])
def test_frames_without_a_bragg_peak_are_refused(kind) -> None:
    """A rocking curve that missed the peak (background only) is an InputError, not a fit."""
    rng = np.random.default_rng(3)
    frames = {"poisson0.5": lambda: rng.poisson(0.5, (32, 64, 80)),
              "poisson5": lambda: rng.poisson(5.0, (32, 64, 80)),
              "flat": lambda: np.full((32, 64, 80), 3)}[kind]().astype(np.uint32)
    with pytest.raises(InputError, match="no Bragg peak above the background") as info:
        prepare_frames(frames, shape=(32, 32, 32))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("strain", ["weak", "medium", "strong"])
def test_faint_genuine_patterns_pass_the_peak_test(strain) -> None:
    from bcdi_stream.preprocess import MIN_PEAK_SIGNIFICANCE
    from bcdi_stream.simulation import simulate_crystal

    for seed in (0, 2):
        sim = simulate_crystal(seed, n=32, strain=strain, peak_counts=2e3, background=3.0,
                               device="cpu")
        prep = prepare_frames(sim.intensity, shape=(32, 32, 32))
        assert prep.meta["peak_significance"] > 10 * MIN_PEAK_SIGNIFICANCE


@pytest.mark.parametrize("n", [1, 2])
def test_too_few_frames_one_line(n) -> None:
    frames = np.random.default_rng(0).poisson(50.0, (n, 64, 80)).astype(np.uint32)
    with pytest.raises(InputError, match=f"too few frames: {n}"):
        prepare_frames(frames, shape=(32, 32, 32))


def _crystal(seed: int, strain: str, peak: float, background: float = 0.0) -> torch.Tensor:
    from bcdi_stream.simulation import simulate_crystal

    return simulate_crystal(seed, n=64, strain=strain, peak_counts=peak, background=background,
                            device="cpu").intensity


@pytest.mark.parametrize("size", [(3, 3), (2, 4), (4, 3), (4, 4)])
def test_hot_pixel_clusters_up_to_4x4_are_found(size) -> None:
    """A compact cluster of hot pixels, each other's neighbours, escaped the 3x3-median test
    (a 3x3 or larger cluster was never found whole); clusters up to MAX_HOT_CLUSTER wide are
    found, and prepare_frames masks them."""
    from bcdi_stream.preprocess import MAX_HOT_CLUSTER

    h, w = size
    assert max(h, w) <= MAX_HOT_CLUSTER
    frames = _crystal(0, "weak", 2e3, background=1.0)
    frames[:, 5:5 + h, 40:40 + w] += 500.0
    cluster = torch.zeros(frames.shape[1:], dtype=torch.bool)
    cluster[5:5 + h, 40:40 + w] = True
    assert torch.equal(find_hot_pixels(frames), cluster)
    assert not find_hot_pixels(frames, max_cluster=0)[cluster].all()  # the 3x3 test alone
    prep = prepare_frames(frames, shape=(32, 32, 32))
    assert prep.meta["hot_pixels"] == h * w
    # a stuck cluster (the same count in every frame) and one beside the peak
    frames = _crystal(1, "strong", 2e3)
    frames[:, 22:22 + h, 22:22 + w] = 3000.0
    cluster = torch.zeros(frames.shape[1:], dtype=torch.bool)
    cluster[22:22 + h, 22:22 + w] = True
    assert torch.equal(find_hot_pixels(frames), cluster)


def test_hot_pixel_clusters_spare_the_bragg_peak() -> None:
    """No pixel of a crystal's pattern passes for a hot cluster: weak and strong strain, dim
    and bright, with and without background (64 patterns; 128 measured)."""
    for strain in ("weak", "strong"):
        for peak, background in ((2e3, 1.0), (1e6, 0.0)):
            for seed in range(16):
                frames = _crystal(seed, strain, peak, background)
                assert not find_hot_pixels(frames).any(), (strain, peak, seed)


def test_find_hot_pixels_arguments() -> None:
    f = torch.ones(4, 8, 8)
    with pytest.raises(ValueError, match="max_cluster"):
        find_hot_pixels(f, max_cluster=-1)
    with pytest.raises(ValueError, match="persistence"):
        find_hot_pixels(f, persistence=0.0)


def test_live_frames_with_flagged_gaps_crossing_have_no_hot_pixels() -> None:
    """The detector mask's gaps crossing beside the Bragg peak: the live crop left the bright
    pixels at their corners with dark (masked) neighbours and masked 4 of them as hot."""
    from bcdi_stream.simulation import simulate_crystal

    data = simulate_crystal(0, n=64, strain="weak", peak_counts=1e5, background=0.0,
                            device="cpu").intensity
    mask = torch.zeros(data.shape[1:], dtype=torch.bool)
    mask[28:30] = True
    mask[:, 35:37] = True
    p = prepare_frames(data, mask, shape=(64, 64, 64))
    assert p.meta["hot_pixels"] == 0


def _detector_frames(background: float, shape=(128, 128), n: int = 32, seed: int = 0,
                     peak: float = 1e5, strain: str = "weak") -> np.ndarray:
    """A simulated crystal's rocking curve on the simulated detector (Poisson noise on a flat
    ``background`` per pixel per frame, 3 hot pixels, random peak offset)."""
    from bcdi_stream.beamline import SimBCDIDetector, crystal_source
    from bcdi_stream.beamline._devices import make_rocking_motor

    det = SimBCDIDetector(make_rocking_motor(), name="det", shape=shape, background=background,
                          seed=seed)
    det.load(crystal_source(seed, n=n, strain=strain, peak_counts=peak, background=0.0))
    step = det.geometry.angular_step_deg
    return np.stack([det.render(det.rocking_center_deg + (i - n // 2) * step)
                     for i in range(n)])


@pytest.mark.parametrize("background", [0.0, 0.05, 0.7])
def test_background_is_read_outside_the_crop(background: float) -> None:
    """The flat background per pixel per frame, from the detector pixels far from the peak:
    within 3 % or 0.003, on a weak and a strong crystal (the farthest 15 tiles of 16x16 px x
    32 frames: a statistical spread of ~0.4 % at 0.7, ~1.6 % at 0.05)."""
    for strain in ("weak", "strong"):
        f = _detector_frames(background, strain=strain, seed=1)
        p = prepare_frames(f, shape=(32, 32, 32))
        est = p.meta["background"]
        assert est == pytest.approx(background, rel=0.03, abs=0.003), (strain, est)
        assert p.meta["background_tiles"] >= 10 and p.meta["background_voxels"] > 1e5


def test_background_ignores_another_bright_spot_far_from_the_peak() -> None:
    """A second grain's peak in a far corner and a faint streak along the detector's edge
    (3 counts per frame in one column, not a hot pixel) raise a few of the farthest tiles:
    the estimate stays within 3 % (the plain mean of the far pixels is 23; the median of the
    farthest quarter of the tiles alone, 0.68)."""
    f = _detector_frames(0.5, seed=2).astype(np.float64)
    z, y, x = np.meshgrid(np.arange(32), np.arange(128), np.arange(128), indexing="ij")
    f += 2e3 * np.exp(-((z - 16) ** 2 + (y - 8) ** 2 + (x - 120) ** 2) / 18.0)
    f[:, :, 2] += 3.0
    p = prepare_frames(np.rint(f).astype(np.uint32), shape=(32, 32, 32))
    assert p.meta["background"] == pytest.approx(0.5, rel=0.03)


def test_no_background_without_pixels_outside_the_crop() -> None:
    f = _frames(n=16, rows=16, cols=16, peak=(8, 8, 8))
    p = prepare_frames(f, shape=(16, 16, 16))
    assert p.meta["background"] is None and p.meta["background_voxels"] == 0
    # a crop as wide as the 48x40 frames: nothing far from the peak; a 16^3 crop: 0.5 read
    assert prepare_frames(_frames(), shape=(16, 48, 40)).meta["background"] is None
    p = prepare_frames(_frames(), shape=(16, 16, 16))
    assert p.meta["background"] == pytest.approx(0.5, rel=0.05)
    assert "background" not in prepare_frames(_frames(), shape=(16, 16, 16),
                                              background=False).meta


def test_outside_background_arguments() -> None:
    from bcdi_stream.preprocess import outside_background

    c = torch.ones(4, 64, 64)
    b = torch.zeros_like(c, dtype=torch.bool)
    assert outside_background(c, b, (0, 24, 24), (4, 16, 16))[0] == 1.0
    with pytest.raises(ValueError, match="margin"):
        outside_background(c, b, (0, 0, 0), (4, 16, 16), margin=0)
    with pytest.raises(ValueError, match="tile"):
        outside_background(c, b, (0, 0, 0), (4, 16, 16), tile=0)
    with pytest.raises(ValueError, match="shape"):
        outside_background(c, b[0], (0, 0, 0), (4, 16, 16))
