"""The ai/auto methods end to end with a (tiny, untrained) weights file: plumbing, not skill."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bcdi_stream import physics
from bcdi_stream.ai_phasing import (
    N_VIEWS,
    OFFSET_MIN,
    cached_model,
    phase_auto,
    predict_start,
    seeded_starts,
    view_axes,
)
from bcdi_stream.config import AISettings, PhasingSettings, Settings
from bcdi_stream.errors import InputError
from bcdi_stream.model import ModelConfig, PhaseModel, UNetConfig, export_weights
from bcdi_stream.phasing import excess_misfit
from bcdi_stream.pipeline import default_method, model_available, reconstruct
from bcdi_stream.simulation import simulate_crystal


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    m = PhaseModel(ModelConfig(kind="patterson", grid=32, unet=UNetConfig(channels=(4, 8))))
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    return export_weights({"model_config": m.config.to_dict(), "state_dict": m.state_dict()},
                          path)


@pytest.fixture(scope="module")
def crystal():
    return simulate_crystal(11, n=32, strain="weak", device="cpu")


def _settings(weights, **ai) -> Settings:
    ai = {"polish_raar": 10, "polish_er": 5, **ai}
    return Settings(device="cpu", ai=AISettings(model=str(weights), n_raar=10, n_er=10, **ai),
                    phasing=PhasingSettings(runs=2, n_raar=20, n_er=10, psf="off"))


def test_ai_method_runs_and_records_the_model(weights, crystal) -> None:
    rec = reconstruct(crystal.intensity, crystal.mask, method="ai",
                      settings=_settings(weights))
    assert rec.method == "ai"
    assert rec.obj.shape == (32, 32, 32) and rec.support.any()
    assert rec.meta["model"]["name"] == "tiny" and len(rec.meta["model"]["hash"]) == 64
    assert rec.timings["predict"] > 0 and rec.timings["refine"] >= 0
    assert rec.quality["llk"] > 0 and len(rec.quality["psf_sigma"]) == 3
    assert rec.meta["peak_filled"] is None  # no masked peak core to fill


def _fallback_llks(fb: dict) -> dict[str, float]:
    """``used`` label → LLK of every result the fallback produced."""
    llks = {"ai": fb["ai_llk"], **{f"auto:view{v['view']}": v["llk"] for v in fb["views"]}}
    if "polish" in fb:
        llks["auto:polish"] = fb["polish"]["llk"]
    if "view_polish" in fb:
        llks[f"auto:view{fb['view_polish']['view']}:polish"] = fb["view_polish"]["llk"]
    if "conventional_llk" in fb:
        llks["auto:conventional"] = fb["conventional_llk"]
    return llks


def test_auto_falls_back_when_the_misfit_is_poor(weights, crystal) -> None:
    rec = reconstruct(crystal.intensity, crystal.mask, method="auto",
                      settings=_settings(weights, fallback_misfit=1e-9, fallback_runs=2))
    fb = rec.quality["fallback"]
    assert fb["ai_misfit"] > 1e-9 and "excess misfit" in fb["reason"]
    # no view fits a threshold of 1e-9: all are refined, then the conventional recipe
    assert [v["view"] for v in fb["views"]] == list(range(1, N_VIEWS))
    llks = _fallback_llks(fb)
    best_view = min(fb["views"], key=lambda v: v["llk"])
    assert set(llks) == {"ai", "auto:polish", "auto:conventional",
                         f"auto:view{best_view['view']}:polish",
                         *(f"auto:view{v}" for v in range(1, 8))}
    # the polish (RAAR 10 + ER 5 here) ran first, from the AI result, kept if it lowered the
    # LLK; after the views, none fitting, the best view was polished the same way
    pol, vpol = fb["polish"], fb["view_polish"]
    assert pol["llk"] <= fb["ai_llk"] and vpol["llk"] <= best_view["llk"]
    assert ("+ RAAR10 ER5 x" in pol["algorithm"]) == (pol["llk"] < fb["ai_llk"])
    assert ("+ RAAR10 ER5 x" in vpol["algorithm"]) == (vpol["llk"] < best_view["llk"])
    # the lowest LLK is kept, and the result says which
    assert rec.method == min(llks, key=llks.get)
    assert rec.quality["llk"] == pytest.approx(min(llks.values()))
    misfits = {"ai": fb["ai_misfit"], "auto:conventional": fb["conventional_misfit"],
               "auto:polish": pol["misfit"], f"auto:view{vpol['view']}:polish": vpol["misfit"],
               **{f"auto:view{v['view']}": v["misfit"] for v in fb["views"]}}
    assert rec.quality["excess_misfit"] == pytest.approx(misfits[rec.method])


def test_auto_views_stop_at_the_first_that_fits(weights, crystal) -> None:
    # the views alone (the polish before them is tested on its own)
    s = _settings(weights, fallback_misfit=1e-9, views=4, fallback_conventional=False,
                  polish_cycles=0)
    loaded = cached_model(weights)
    out = phase_auto(crystal.intensity, crystal.mask, loaded=loaded, ai=s.ai,
                     settings=s.phasing)
    fb = out.fallback
    # views 1..3, no conventional recipe
    assert [v["view"] for v in fb["views"]] == [1, 2, 3] and "conventional_llk" not in fb
    llks = _fallback_llks(fb)
    assert out.used == min(llks, key=llks.get) and out.result.llk == pytest.approx(
        min(llks.values()))
    # with the best view's misfit as the threshold, the search stops at the first view that
    # reaches it (or never starts, if view 0 already does)
    misfits = [fb["ai_misfit"]] + [v["misfit"] for v in fb["views"]]
    thr = min(misfits[1:])
    s2 = _settings(weights, fallback_misfit=thr, views=4, fallback_conventional=False,
                   polish_cycles=0)
    again = phase_auto(crystal.intensity, crystal.mask, loaded=loaded, ai=s2.ai,
                       settings=s2.phasing)
    if misfits[0] <= thr:
        assert again.fallback is None and again.used == "ai"
    else:
        stop = next(k for k in range(1, 4) if misfits[k] <= thr)
        assert [v["view"] for v in again.fallback["views"]] == list(range(1, stop + 1))
    one = _settings(weights, fallback_misfit=1e-9, views=1, fallback_runs=2)
    straight = phase_auto(crystal.intensity, crystal.mask, loaded=loaded, ai=one.ai,
                          settings=one.phasing)
    assert straight.fallback["views"] == [] and "conventional_llk" in straight.fallback


def test_views_reflect_the_pattern_and_the_prediction_back(weights) -> None:
    assert view_axes(0) == () and view_axes(5) == (0, 2) and view_axes(7) == (0, 1, 2)
    with pytest.raises(ValueError, match="view"):
        view_axes(N_VIEWS)
    loaded = cached_model(weights)
    data = simulate_crystal(3, n=32, strain="strong", device="cpu").intensity
    for view in (1, 6):
        axes = view_axes(view)
        a = predict_start(loaded, data, view=view)
        b = predict_start(loaded, physics.reflect(data, axes))
        assert a.view == view and b.view == 0
        # the model saw the same (reflected) pattern; its phase is reflected back
        assert torch.allclose(torch.polar(torch.ones_like(a.phase_q), a.phase_q),
                              physics.reflect(torch.polar(torch.ones_like(b.phase_q),
                                                          b.phase_q), axes), atol=1e-4)
        assert a.offset == pytest.approx(b.offset)
    with pytest.raises(ValueError, match="view"):
        predict_start(loaded, data, view=-1)


def test_auto_keeps_ai_when_the_misfit_is_good(weights, crystal) -> None:
    rec = reconstruct(crystal.intensity, crystal.mask, method="auto",
                      settings=_settings(weights, fallback_misfit=1e9))
    assert rec.method == "ai" and "fallback" not in rec.quality
    assert rec.quality["excess_misfit"] < 1e9


def test_phase_auto_without_fallback_is_the_ai_method(weights, crystal) -> None:
    s = _settings(weights, fallback_misfit=1e-9, fallback_runs=2)
    loaded = cached_model(weights)
    out = phase_auto(crystal.intensity, crystal.mask, loaded=loaded, ai=s.ai,
                     settings=s.phasing, fallback=False)
    assert out.used == "ai" and out.fallback is None and out.result is out.ai_result
    fb = phase_auto(crystal.intensity, crystal.mask, loaded=loaded, ai=s.ai,
                    settings=s.phasing)
    # the same AI refinement, then the fallback; the lower LLK is kept
    assert fb.ai_result.llk == pytest.approx(out.ai_result.llk)
    assert fb.fallback is not None and fb.result.llk == pytest.approx(
        min(_fallback_llks(fb.fallback).values()))


def test_seeded_starts_keep_the_measured_modulus_and_the_ai_phase(crystal) -> None:
    data = crystal.intensity.clamp_min(0)
    phase = torch.rand(data.shape, generator=torch.Generator().manual_seed(1)) * 6 - 3
    starts = seeded_starts(data, None, phase, 3, seed=0)
    assert starts.shape == (3, *data.shape) and starts.dtype == torch.complex64
    psi = physics.fft_centered(starts)
    assert torch.allclose(psi.abs(), data.sqrt().expand_as(psi), rtol=1e-3, atol=1e-2)
    # run 0 is the AI phase itself; later runs add noise that grows with the run index
    d0 = torch.angle(psi[0] * torch.exp(-1j * phase))[data > 1].abs().mean()
    d2 = torch.angle(psi[2] * torch.exp(-1j * phase))[data > 1].abs().mean()
    assert float(d0) < 1e-3 < float(d2)
    with pytest.raises(ValueError, match="runs"):
        seeded_starts(data, None, phase, 0, seed=0)


def test_missing_weights_is_an_input_error(tmp_path, crystal) -> None:
    s = Settings(device="cpu", ai=AISettings(model=str(tmp_path / "none.pt")))
    assert not model_available(s) and default_method(s) == "conventional"
    with pytest.raises(InputError, match="weights"):
        reconstruct(crystal.intensity, method="ai", settings=s)


def test_default_method_with_weights(weights) -> None:
    s = _settings(weights)
    assert model_available(s) and default_method(s) == "ai"


@pytest.mark.parametrize("shape", [(40, 32, 24), (32, 32, 32), (16, 48, 32)])
def test_predict_start_on_other_grids(weights, shape) -> None:
    loaded = cached_model(weights)
    g = torch.Generator().manual_seed(0)
    i = torch.rand(shape, generator=g) * 100
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[0, 0, 0] = True
    st = predict_start(loaded, i, mask, seed=3)
    assert st.obj.shape == shape and st.support.shape == shape and st.phase_q.shape == shape
    assert st.psf_sigma is None  # not asked for
    hyp = predict_start(loaded, i, mask, seed=3, estimate_psf=True).psf_sigma
    assert hyp is None or (hyp[0] == 0.0 and hyp[1] == hyp[2] >= 0.5)
    assert st.support.any() and torch.isfinite(st.obj.abs()).all()
    # the same call again is deterministic, and the cached model is reused
    assert torch.equal(predict_start(loaded, i, mask, seed=3).phase_q, st.phase_q)
    assert cached_model(weights) is loaded


def test_a_wide_gap_through_the_peak_is_phased_left_empty() -> None:
    """A detector gap 12 px wide beside the peak (columns 19-30 of 64, flagged) hides 45 % of
    the intensity: interpolated for the model, the result is wrong (0.78 rad); the same
    pattern with the gap left empty, as the model saw gaps in training, phases it at a lower
    LLK, and ``phase_ai`` keeps that one (docs/MODEL_RESEARCH.md, session 30)."""
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.simulation import simulate_crystal as sim

    c = sim(4_200_001_000, device="cpu", n=64, strain="weak")
    mask = c.mask.clone()
    mask[:, :, 19:31] = True
    data = c.intensity.masked_fill(mask, 0.0)
    loaded = cached_model()
    res, start = phase_ai(data, mask, loaded=loaded, seed=0, device="cpu", unfilled=0.0)
    assert start.filled is not None and start.filled > 0.3
    assert not compare(res.obj, c.obj, c.support, recon_support=res.support).success
    res, start = phase_ai(data, mask, loaded=loaded, seed=0, device="cpu")
    assert start.filled is None and res.timings["unfilled"] > 0  # the empty pass kept
    m = compare(res.obj, c.obj, c.support, recon_support=res.support)
    assert m.success, m


def test_shipped_model_phases_a_crystal_whose_saturated_peak_is_masked() -> None:
    """The Bragg peak's core (expected counts above 0.3 of the peak) flagged bad, as for a
    saturated detector: with the zero hole the model fails this weak crystal (0.87 rad,
    support IoU 0.35); with the hole filled by a Gaussian fitted around it, it phases
    (docs/MODEL_RESEARCH.md, session 21). This crystal's module gap is not filled: far from
    the peak, it hides less than ``FILL_SHARE``."""
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.physics import fft_centered
    from bcdi_stream.simulation import simulate_crystal as sim

    c = sim(4_200_008_000, device="cpu", n=64, strain="weak")
    clean = fft_centered(c.obj).abs().square()
    core = clean > 0.3 * clean.max()
    mask = c.mask | core
    data = c.intensity.masked_fill(mask, 0.0)
    loaded = cached_model()
    res, start = phase_ai(data, mask, loaded=loaded, seed=0, device="cpu")
    assert start.filled is not None and start.filled > 0.2
    assert res.timings["refill"] > 0  # the second pass, from the first result's |FFT|²
    assert res.timings["unfilled"] > 0  # and the third, the hole left empty (a worse LLK)
    with pytest.raises(ValueError, match="unfilled"):
        phase_ai(data, mask, loaded=loaded, unfilled=1.5)
    m = compare(res.obj, c.obj, c.support, recon_support=res.support)
    assert m.success, m
    # without the fill, the same call fails
    bare = predict_start(loaded, data, mask, seed=0, fill_share=None)
    assert bare.filled is None
    # its gap alone is not filled
    assert predict_start(loaded, c.intensity, c.mask, seed=0).filled is None
    # the same core saturated without a flag (counts capped): the pipeline finds the
    # plateau, leaves it free and the model sees it filled
    capped = c.intensity.clamp(max=float(c.intensity[core].min()))
    rec = reconstruct(capped, c.mask, method="ai", seed=0, model=loaded,
                      settings=Settings(device="cpu"))
    assert rec.meta["saturated_voxels"] > 10 and rec.meta["peak_filled"] > 0.2
    assert compare(rec.obj, c.obj, c.support, recon_support=rec.support).success


def test_a_dropped_frame_is_left_free() -> None:
    """The frame through the peak lost (all zeros, not flagged): phased as a measurement it
    made every weak crystal fail, from the true phase too; the pipeline now leaves it free and
    the model sees it interpolated (docs/MODEL_RESEARCH.md, session 21). The frame hides
    about a quarter of the intensity, so the pattern left empty is a candidate too
    (``ai.peak_unfilled``, session 30), whose LLK here is close to the filled one's: it is
    turned off to see the fill's result."""
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import AISettings

    c = simulate_crystal(4_200_001_000, device="cpu", n=64, strain="weak")
    data = c.intensity.clone()
    data[32] = 0.0
    rec = reconstruct(data, c.mask, method="ai", seed=0, model=cached_model(),
                      settings=Settings(device="cpu", ai=AISettings(peak_unfilled=0.0)))
    assert rec.meta["lost_frames"] == [32] and rec.meta["peak_filled"] > 0.02
    assert compare(rec.obj, c.obj, c.support, recon_support=rec.support).success
    assert reconstruct(c.intensity, c.mask, method="ai", seed=0, model=cached_model(),
                       settings=Settings(device="cpu")).meta["lost_frames"] == []


def test_a_charge_integrating_detector_is_rounded_to_photons() -> None:
    """Counts plus Gaussian noise of 0.15 photon, clamped at 0 (a calibrated Jungfrau or ePix
    frame): rounded to counts, so the excess misfit has its Poisson term again and a success is
    flagged as one (docs/MODEL_RESEARCH.md, session 21)."""
    c = simulate_crystal(2_000_002_000, device="cpu", n=64, strain="weak")
    g = torch.Generator().manual_seed(1)
    data = (c.intensity + 0.15 * torch.randn(c.intensity.shape, generator=g)).clamp_min(0)
    rec = reconstruct(data, c.mask, method="ai", seed=0, model=cached_model(),
                      settings=Settings(device="cpu"))
    assert rec.meta["rounded_to_photons"] and rec.meta["photon_scale"] == 1.0
    plain = reconstruct(c.intensity, c.mask, method="ai", seed=0, model=cached_model(),
                        settings=Settings(device="cpu"))
    assert not plain.meta["rounded_to_photons"]
    # the misfit is the counts' again (as given, the noise counted as misfit)
    misfit, counted = rec.quality["excess_misfit"], plain.quality["excess_misfit"]
    assert abs(misfit - counted) < 0.001, (misfit, counted)
    # the same frames not clamped: their noise below 0 is set to 0, not refused
    raw = c.intensity + 0.15 * torch.randn(c.intensity.shape, generator=g)
    rec_raw = reconstruct(raw, c.mask, method="ai", seed=0, model=cached_model(),
                          settings=Settings(device="cpu"))
    assert rec_raw.meta["clamped_negative"] > 1000 and rec_raw.meta["rounded_to_photons"]
    assert plain.meta["clamped_negative"] == 0


def test_another_grains_peak_is_left_free() -> None:
    """A second crystal's pattern in the array at 0.3 of the peak, 20 px away along y and x:
    every weak crystal failed with it phased as data; its region is now left free
    (docs/MODEL_RESEARCH.md, session 21)."""
    from bcdi_stream.analysis import compare
    from bcdi_stream.physics import fft_centered

    c = simulate_crystal(4_200_001_000, device="cpu", n=64, strain="weak")
    other = simulate_crystal(4_200_001_007, device="cpu", n=64, strain="weak")
    clean = fft_centered(other.obj).abs().square()
    extra = torch.roll(clean * (0.3 * float(c.intensity.max()) / clean.max()), (0, 20, 20),
                       (0, 1, 2))
    data = c.intensity + torch.poisson(extra, generator=torch.Generator().manual_seed(0))
    rec = reconstruct(data, c.mask, method="ai", seed=0, model=cached_model(),
                      settings=Settings(device="cpu"))
    assert rec.meta["secondary_peak_voxels"] > 100
    assert compare(rec.obj, c.obj, c.support, recon_support=rec.support).success


def test_shipped_model_phases_a_strongly_blurred_crystal() -> None:
    """A validation crystal blurred by σ = 0.81 px on the detector: the blur hypothesis made from
    the prediction is refined beside the plain run and wins by LLK (the plain run alone ends
    at ≈ 0.6 rad, docs/MODEL_RESEARCH.md 2026-12-02)."""
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.training._datasets import draw_crystal

    c, _ = draw_crystal(2_300_029_000, "weak", 64)
    assert c.meta["blur_sigma"] > 0.8
    res, start = phase_ai(c.intensity, c.mask, loaded=cached_model(), seed=0, device="cpu")
    assert start.psf_sigma is not None and abs(start.psf_sigma[1] - 0.81) < 0.2
    assert len(res.llk_runs) == 2 and res.llk == min(res.llk_runs) and res.best_run == 1
    assert abs(res.psf_sigma[1] - 0.81) < 0.15 and res.timings["psf_hypothesis"] > 0
    assert compare(res.obj, c.obj, c.support, recon_support=res.support).success
    # without the hypothesis (or with psf off) the plain run alone is made
    plain, _ = phase_ai(c.intensity, c.mask, loaded=cached_model(), seed=0, device="cpu",
                        psf_hypothesis=0)
    assert len(plain.llk_runs) == 1 and "psf_hypothesis" not in plain.timings
    with pytest.raises(ValueError, match="psf_hypothesis"):
        phase_ai(c.intensity, c.mask, loaded=cached_model(), psf_hypothesis=-1)


def _blurred_along_z(seed: int, width: float) -> tuple[torch.Tensor, Any]:
    """Weak crystal ``seed`` diffracted again with a blur of ``width`` px along the rocking axis
    on top of its own detector blur (partial coherence across the beam), Poisson noise."""
    from bcdi_stream.phasing._psf import blur
    from bcdi_stream.physics import fft_centered
    from bcdi_stream.simulation._forward import detector_blur, poisson_noise

    c = simulate_crystal(seed, device="cpu", n=64, strain="weak")
    clean = fft_centered(c.obj).abs().square()
    rate = detector_blur(clean * (c.spec.peak_counts / clean.max()), c.spec.blur_sigma)
    rate = blur(rate, (width, 0.0, 0.0)) + c.spec.background
    counts = poisson_noise(rate, torch.Generator().manual_seed(seed + 1))
    return counts.float().masked_fill(c.mask, 0.0), c


def test_a_blur_the_model_never_saw_is_taken_out_of_its_input() -> None:
    """A blur of 1.68 px along the rocking axis: the prediction reads it as a crystal shorter
    along z, and refining it fails; the hypothesis along z, taken out of the pattern before a
    second prediction, phases it (docs/MODEL_RESEARCH.md, session 25)."""
    from bcdi_stream.ai_phasing import UNSEEN_MAX, phase_ai, unseen_blur
    from bcdi_stream.analysis import compare
    from bcdi_stream.phasing._psf import WIDE_GRID

    data, c = _blurred_along_z(4_200_004_000, 1.68)
    res, start = phase_ai(data, c.mask, loaded=cached_model(), seed=0, device="cpu")
    assert start.psf_sigma is not None and abs(start.psf_sigma[0] - 1.68) < 0.4, start.psf_sigma
    assert res.best_run == 2 and len(res.llk_runs) == 3 and res.llk == min(res.llk_runs)
    assert start.deblurred is None  # the start returned is the deblurred one, which was kept
    # end to end, and with the deblurred hypothesis turned off in the settings
    rec = reconstruct(data, c.mask, method="ai", seed=0, model=cached_model(),
                      settings=Settings(device="cpu"))
    assert rec.quality["psf_hypothesis"]["deblurred"] and rec.quality["psf_sigma"][0] > 0.9
    assert compare(rec.obj, c.obj, c.support, recon_support=rec.support).success
    off = reconstruct(data, c.mask, method="ai", seed=0, model=cached_model(),
                      settings=Settings(device="cpu", ai=AISettings(deblur=0)))
    assert "psf_hypothesis" not in off.quality  # no detector blur, and z is not asked about
    assert not compare(off.obj, c.obj, c.support, recon_support=off.support).success
    # what counts as a blur the model never saw
    assert not unseen_blur((0.0, 0.9, 0.95)) and not unseen_blur((0.0, 2.3, 2.5, -0.6))
    assert unseen_blur((1.2, 0.4, 0.5)) and unseen_blur((0.0, 0.8, 0.8, 0.6))
    assert unseen_blur((0.0, 0.4, 1.3)) and unseen_blur((0.0, 1.2, 1.2))
    # the top of the hypothesis's width grid is what a prediction far from the truth asks for
    assert not unseen_blur((0.0, 0.5, 2.0)) and not unseen_blur((2.0, 0.8, 0.8))
    assert unseen_blur((0.0, 0.5, 1.999))
    assert UNSEEN_MAX == max(WIDE_GRID)
    with pytest.raises(ValueError, match="deblur"):
        phase_ai(data, c.mask, loaded=cached_model(), deblur=-1)


def test_a_refit_at_the_width_cap_makes_no_deblurred_start() -> None:
    """Strong test crystal 3010000000: the prediction asks for an oblique blur the model never
    saw, and the blur refitted after taking it out runs to the search's cap (2.5 px): a
    prediction far from the truth, not a blur, so no deblurred start (its run was never kept
    for such a refit; docs/MODEL_RESEARCH.md, session 28)."""
    from bcdi_stream.ai_phasing import DEBLUR, UNSEEN_MAX, _predict_object, unseen_blur
    from bcdi_stream.phasing import blur_fit_of, deconvolve
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ((_, seed, c),) = fixed_set(TEST_SEED0, {"weak": 0, "strong": 1}, 64)
    assert seed == 3_010_000_000
    loaded = cached_model()
    start = predict_start(loaded, c.intensity, c.mask, estimate_psf=True)
    assert unseen_blur(start.psf_sigma) and start.deblurred is None, start.psf_sigma
    with torch.inference_mode():
        x, bad = c.intensity.float(), c.mask.bool()
        _, obj = _predict_object(loaded, deconvolve(x, start.psf_sigma, bad, DEBLUR), bad)
        assert max(blur_fit_of(obj, x, bad)[:3]) >= UNSEEN_MAX


def test_shipped_model_is_blind_to_where_the_pattern_sits() -> None:
    """The model was trained on patterns centred exactly on their centre of mass; a pattern
    two pixels off (a peak centred on its brightest pixel, a coarse crop) is predicted as if
    centred and moved back. Before, this crystal ended at 0.71 rad (0.05 rad centred)."""
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.training._datasets import draw_crystal

    c, _ = draw_crystal(2_300_007_000, "weak", 64)
    shift = (0, 2, -2)
    res, start = phase_ai(torch.roll(c.intensity, shift, (0, 1, 2)),
                          torch.roll(c.mask, shift, (0, 1, 2)), loaded=cached_model(), seed=0,
                          device="cpu")
    assert start.offset is not None
    assert max(abs(a - b) for a, b in zip(start.offset, shift, strict=True)) < 0.1
    m = compare(res.obj, c.obj, c.support, recon_support=res.support)
    assert m.success and m.phase_rmse < 0.1
    # centred as in training: below OFFSET_MIN the prediction is the model's plain output
    loaded = cached_model()
    centred = predict_start(loaded, c.intensity, c.mask, seed=0)
    assert max(abs(v) for v in centred.offset) < OFFSET_MIN
    with torch.no_grad(), loaded.autocast():  # in the precision the pipeline predicts in
        x = c.intensity.masked_fill(c.mask, 0.0)
        plain = torch.angle(loaded.model(x[None])[0])
    assert torch.equal(centred.phase_q, plain)


def test_shipped_refinement_is_hio_and_phases_a_medium_strain_crystal() -> None:
    """From the shipped model's start, HIO + ER (HIO since session 6, 170 + 30 since session
    26) phases a crystal with a 1–2.5π strain span that RAAR 100 + ER 100 leaves at 0.51 rad
    (docs/MODEL_RESEARCH.md: medium 19/20 vs 14/20, strong test set 32 % vs 24 %)."""
    import math

    from bcdi_stream.ai_phasing import phase_ai, polish
    from bcdi_stream.analysis import compare

    assert AISettings().n_hio == 170 and AISettings().n_er == 30 and AISettings().n_raar == 0
    c = simulate_crystal(4_100_006_000, n=64, strain=(math.pi, 2.5 * math.pi), device="cpu")
    loaded = cached_model()
    res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
    assert "HIO" in res.algorithm
    m = compare(res.obj, c.obj, c.support, recon_support=res.support)
    assert m.success and m.phase_rmse < 0.2
    raar, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu", n_raar=100,
                       n_hio=0, n_er=100)
    assert "RAAR" in raar.algorithm
    assert not compare(raar.obj, c.obj, c.support, recon_support=raar.support).success
    # auto's polish (RAAR 200 + ER 100 from the result, which does not fit) finishes it
    polished, _ = polish(raar, c.intensity, c.mask, settings=PhasingSettings())
    assert polished.algorithm.startswith("RAAR100 ER100 + RAAR200 ER100 x")
    assert compare(polished.obj, c.obj, c.support, recon_support=polished.support).success
    with pytest.raises(ValueError, match="n_hio"):
        phase_ai(c.intensity, c.mask, loaded=loaded, n_hio=-1)


def test_er_first_refines_the_start_with_er_before_hio(weights, crystal) -> None:
    """``n_er_first``: ER from the prediction, then the HIO + ER run from ER's object, support
    and PSF — the same result as composing the two runs by hand."""
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.phasing import run_conventional

    loaded = cached_model(weights)
    s = PhasingSettings(psf="off")
    res, start = phase_ai(crystal.intensity, crystal.mask, loaded=loaded, n_er_first=5,
                          n_hio=10, n_er=5, settings=s, psf_hypothesis=0)
    kw = {"seed": 0, "device": "cpu", "detwin": False}
    first = run_conventional(crystal.intensity, crystal.mask, obj_init=start.obj,
                             support=start.support, psf_start=None, **kw,
                             settings=s.model_copy(update={"runs": 1, "n_raar": 0, "n_hio": 0,
                                                           "n_er": 5}))
    then = run_conventional(crystal.intensity, crystal.mask, obj_init=first.obj,
                            support=first.support, psf_start=first.psf_sigma, **kw,
                            settings=s.model_copy(update={"runs": 1, "n_raar": 0, "n_hio": 10,
                                                          "n_er": 5}))
    assert torch.equal(res.obj, then.obj) and torch.equal(res.support, then.support)
    plain, _ = phase_ai(crystal.intensity, crystal.mask, loaded=loaded, n_hio=10, n_er=5,
                        settings=s, psf_hypothesis=0)
    assert not torch.equal(plain.obj, res.obj)
    assert res.timings["er_first"] > 0 and "er_first" not in plain.timings
    for kw_bad, name in [({"n_er_first": -1}, "n_er_first"),
                         ({"n_er_first": 5, "n_hio": 0}, "n_er_first")]:
        with pytest.raises(ValueError, match=name):
            phase_ai(crystal.intensity, crystal.mask, loaded=loaded, settings=s, **kw_bad)
    with pytest.raises(ValueError, match="n_er_first"):
        AISettings(n_er_first=-1)


def test_polish_lowers_the_llk_of_a_result_that_does_not_fit(weights, crystal) -> None:
    """The polish: RAAR + ER from the result (its support and PSF), kept when its LLK is
    lower, repeated while the result does not fit; a result that fits is left alone."""
    from bcdi_stream.ai_phasing import phase_ai, polish
    from bcdi_stream.phasing import run_conventional

    loaded = cached_model(weights)
    s = PhasingSettings(psf="off")
    rough, _ = phase_ai(crystal.intensity, crystal.mask, loaded=loaded, n_hio=4, n_er=2,
                        settings=s, psf_hypothesis=0)
    out, misfit = polish(rough, crystal.intensity, crystal.mask, settings=s, n_raar=20,
                         n_er=10, cycles=2, misfit_max=0.0)
    assert out.llk < rough.llk
    assert misfit == float(excess_misfit(out.obj, crystal.intensity, crystal.mask,
                                          psf_sigma=out.psf_sigma))
    assert out.algorithm.startswith(rough.algorithm + " + RAAR20 ER10 x")
    assert out.llk_runs[0] == rough.llk and out.llk == out.llk_runs[out.best_run]
    assert len(out.llk_runs) in (2, 3) and out.llk == min(out.llk_runs)
    assert rough.llk_runs == [rough.llk] and "polish" not in rough.timings  # left as it was
    assert out.timings["polish"] > 0 and out.timings["predict"] == rough.timings["predict"]
    # the first polish is one RAAR 20 + ER 10 run from the rough result
    one, _ = polish(rough, crystal.intensity, crystal.mask, settings=s, n_raar=20, n_er=10,
                    cycles=1, misfit_max=0.0)
    by_hand = run_conventional(crystal.intensity, crystal.mask, obj_init=rough.obj,
                               support=rough.support, psf_start=None, seed=0, device="cpu",
                               detwin=False,
                               settings=s.model_copy(update={"runs": 1, "n_raar": 20,
                                                             "n_hio": 0, "n_er": 10}))
    assert torch.equal(one.obj, by_hand.obj) and one.algorithm.endswith(" x1")
    # a result that fits (any misfit counts as fitting here) is returned as it was
    same, same_misfit = polish(rough, crystal.intensity, crystal.mask, settings=s,
                               misfit_max=1e9)
    assert torch.equal(same.obj, rough.obj) and same.algorithm == rough.algorithm
    assert same.llk_runs == rough.llk_runs
    assert same_misfit == float(excess_misfit(rough.obj, crystal.intensity, crystal.mask,
                                                    psf_sigma=rough.psf_sigma))
    # a misfit the caller gives is taken as the result's (not computed again)
    told, told_misfit = polish(rough, crystal.intensity, crystal.mask, settings=s,
                               misfit_max=0.5, misfit=0.25)
    assert torch.equal(told.obj, rough.obj) and told_misfit == 0.25


def test_polish_arguments_are_checked(weights, crystal) -> None:
    from bcdi_stream.ai_phasing import phase_ai, polish

    loaded = cached_model(weights)
    s = PhasingSettings(psf="off")
    res, _ = phase_ai(crystal.intensity, crystal.mask, loaded=loaded, n_hio=2, n_er=2,
                      settings=s, psf_hypothesis=0)
    for kw, name in [({"n_raar": -1}, "n_raar"), ({"n_raar": 0, "n_er": 0}, "n_raar"),
                     ({"cycles": -1}, "cycles"), ({"misfit_max": float("nan")}, "misfit_max")]:
        with pytest.raises(ValueError, match=name):
            polish(res, crystal.intensity, crystal.mask, settings=s, **kw)
    with pytest.raises(ValueError, match="polish_cycles"):
        AISettings(polish_cycles=-1)


def test_auto_polish_can_be_turned_off(weights, crystal) -> None:
    """``ai.polish_cycles = 0`` (or no iterations): auto goes straight to the views."""
    loaded = cached_model(weights)
    for off in ({"polish_cycles": 0}, {"polish_raar": 0, "polish_er": 0}):
        s = _settings(weights, fallback_misfit=1e-9, views=2, fallback_conventional=False,
                      **off)
        out = phase_auto(crystal.intensity, crystal.mask, loaded=loaded, ai=s.ai,
                         settings=s.phasing)
        assert "polish" not in out.fallback and "view_polish" not in out.fallback
        assert len(out.fallback["views"]) == 1


def _with_and_without(weights, crystal, method: str, setting: str, timing: str):
    """``reconstruct`` with the default ``phasing.<setting>`` and with it at 0; checks the
    record (``meta``, the ``timing`` key) and that both finished the same refinement."""
    on = _settings(weights)
    off = on.model_copy(update={"phasing": on.phasing.model_copy(update={setting: 0})})
    a, b = (reconstruct(crystal.intensity, crystal.mask, method=method, settings=s)
            for s in (on, off))
    assert a.meta[setting] == getattr(on.phasing, setting) > 0 and b.meta[setting] == 0.0
    assert a.timings[timing] > 0 and timing not in b.timings
    # one refinement: its quality figures are the refined object's, before either step
    assert a.quality["llk"] == b.quality["llk"]
    return a, b


@pytest.mark.parametrize("method", ["conventional", "ai"])
def test_every_method_reports_the_crystal_support(weights, crystal, method) -> None:
    from bcdi_stream.analysis import compare

    a, b = _with_and_without(weights, crystal, method, "crystal_support", "support")
    # a tighter support, nearer the true shape; the same phase
    assert 0.5 * int(b.support.sum()) < int(a.support.sum()) < int(b.support.sum())
    ma, mb = (compare(r.obj, crystal.obj, crystal.support, recon_support=r.support)
              for r in (a, b))
    assert ma.support_iou > mb.support_iou, (ma, mb)
    assert ma.phase_rmse == pytest.approx(mb.phase_rmse, abs=0.02)


def test_scaled_counts_are_phased_as_counts_and_other_values_without_the_filter(
        weights, crystal) -> None:
    from bcdi_stream.physics import fft_centered

    settings = _settings(weights)
    counts = reconstruct(crystal.intensity, crystal.mask, method="ai", settings=settings)
    top = float(crystal.intensity.max())
    scaled = reconstruct(crystal.intensity / top, crystal.mask, method="ai", settings=settings)
    assert counts.meta["photon_scale"] == 1.0 and counts.meta["noise_filter"] == 8.0
    assert scaled.meta["photon_scale"] == pytest.approx(top, rel=1e-5)
    assert scaled.meta["noise_filter"] == 8.0 and "denoise" in scaled.timings
    # the same counts (rounded back from float32), the same refinement, in the input's units
    assert scaled.quality["llk"] == counts.quality["llk"]
    assert torch.allclose(scaled.obj * top**0.5, counts.obj, rtol=1e-4, atol=1e-4 * float(
        counts.obj.abs().max()))
    model = float(fft_centered(scaled.obj).abs().square().sum())
    assert 0.5 < model / float(crystal.intensity[~crystal.mask].sum() / top) < 1.01
    # a noise-free pattern normalised to 1 carries no photon scale: no filter (whose 8 counts
    # would erase it)
    clean = fft_centered(crystal.obj).abs().square()
    rec = reconstruct(clean / clean.max(), crystal.mask, method="ai", settings=settings)
    assert rec.meta["photon_scale"] is None and rec.meta["noise_filter"] == 0.0
    assert "denoise" not in rec.timings and "support" in rec.timings
    # ... and its excess misfit (auto's trigger, the live quality flag) has no Poisson term:
    # the share of the intensity the result leaves unexplained, not ≈ -1 whatever the result
    assert 0 <= rec.quality["excess_misfit"] < 1


@pytest.mark.parametrize("method", ["conventional", "ai"])
def test_every_method_passes_the_noise_filter(weights, crystal, method) -> None:
    a, b = _with_and_without(weights, crystal, method, "noise_filter", "denoise")
    # the filtered object loses the amplitude of its faint pixels (centring and ramp removal
    # keep the total), and no more than that
    energy = [float(r.obj.abs().square().sum()) for r in (a, b)]
    assert 0.5 * energy[1] < energy[0] < 0.999 * energy[1]


def test_phase_ai_checks_its_data_seed_and_device_before_predicting(weights, crystal,
                                                                     monkeypatch) -> None:
    """A mask of another shape, NaN counts, a mask over every count, a negative seed or a
    device this machine cannot use is a ``ValueError`` naming the argument, raised before the
    model runs (the mask and the device were a torch ``RuntimeError``/``AssertionError`` from
    deep inside the prediction; a mask over every count was refused by the refinement as an
    empty "support"; the seed was refused only by the RAAR/HIO refinement, after it, and taken
    by the ER-only one); ``"auto"`` is a device name as everywhere else."""
    import bcdi_stream.ai_phasing as ai_mod
    from bcdi_stream.ai_phasing import phase_ai, polish
    from bcdi_stream.arrays import resolve_device

    loaded = cached_model(weights)
    s = PhasingSettings(psf="off")
    nan = crystal.intensity.clone()
    nan[0, 0, 0] = float("nan")
    calls = []
    real = ai_mod.predict_start
    monkeypatch.setattr(ai_mod, "predict_start",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for kw, name in [({"mask": crystal.mask[:-1]}, "mask"),
                     ({"intensity": nan}, "intensity"),
                     ({"mask": crystal.intensity > 0}, "the mask leaves measured"),
                     ({"seed": -1}, "seed"), ({"seed": -1, "n_hio": 0}, "seed"),
                     ({"device": "gpu0"}, "device"), ({"device": "meta"}, "device")]:
        args = {"intensity": crystal.intensity, "mask": crystal.mask, "n_hio": 2, "n_er": 2,
                "psf_hypothesis": 0, **kw}
        with pytest.raises(ValueError, match=name):
            phase_ai(args.pop("intensity"), args.pop("mask"), loaded=loaded, settings=s,
                     **args)
    assert not calls  # refused before the prediction
    auto = resolve_device("auto")  # CUDA when present, else the CPU
    res, _ = phase_ai(crystal.intensity, crystal.mask, loaded=loaded, settings=s, n_hio=2,
                      n_er=2, psf_hypothesis=0, device="auto")
    ref, _ = phase_ai(crystal.intensity, crystal.mask, loaded=loaded, settings=s, n_hio=2,
                      n_er=2, psf_hypothesis=0, device=auto)
    assert res.obj.device.type == auto.type and torch.equal(res.obj, ref.obj)
    assert cached_model(weights, "auto") is cached_model(weights, auto)
    for bad in ("gpu0", "meta"):
        with pytest.raises(ValueError, match="device"):
            cached_model(weights, bad)
    with pytest.raises(ValueError, match="device"):
        polish(res, crystal.intensity, crystal.mask, settings=s, misfit_max=0.0, device="gpu0")
    out, _ = polish(res, crystal.intensity, crystal.mask, settings=s, n_raar=4, n_er=2,
                    misfit_max=0.0, device="auto")
    assert out.obj.device.type == auto.type


def test_auto_models_a_background_it_is_given(weights, crystal) -> None:
    """``phase_auto(background=b)``: every excess misfit it decides on (the AI result's, the
    polish's, the kept result's) models that flat background; the default models none."""
    loaded = cached_model(weights)
    s = _settings(weights, fallback_misfit=1e-9, views=1, fallback_conventional=False)
    gen = torch.Generator().manual_seed(2)
    data = crystal.intensity + torch.poisson(torch.full(crystal.intensity.shape, 0.5),
                                             generator=gen)
    for bg in (0.0, 0.5):
        kw = {"background": bg} if bg else {}
        out = phase_auto(data, crystal.mask, loaded=loaded, ai=s.ai, settings=s.phasing, **kw)

        def misfit(res, bg=bg):
            return float(excess_misfit(res.obj, data, crystal.mask, psf_sigma=res.psf_sigma,
                                       background=bg))

        assert out.misfit == misfit(out.result)
        assert out.fallback["ai_misfit"] == misfit(out.ai_result)
        assert "polish" in out.fallback
    assert misfit(out.ai_result, 0.0) > misfit(out.ai_result)  # the background is misfit


def test_a_support_over_half_the_grid_is_reported_and_flagged_poor(crystal) -> None:
    """A bright voxel on a flat background is "phased" by the shipped model into a support
    over most of the grid, which no pattern oversampled twice allows: the reconstruction
    reports the support's share of the grid, and the live flag is ``poor`` whatever the fit;
    a crystal's support covers a few per cent."""
    from bcdi_stream.phasing import SUPPORT_FRACTION_MAX
    from bcdi_stream.tiled_io import JobSettings, quality_flag

    s = Settings(device="cpu")
    rec = reconstruct(crystal.intensity, crystal.mask, method="ai", seed=0,
                      model=cached_model(), settings=s)
    assert 0 < rec.quality["support_fraction"] < 0.1
    g = torch.Generator().manual_seed(0)
    flat = torch.poisson(torch.full((32, 32, 32), 0.5), generator=g)
    flat[15, 17, 16] = 1e5
    odd = reconstruct(flat, method="ai", seed=0, model=cached_model(), settings=s)
    assert odd.quality["support_fraction"] > SUPPORT_FRACTION_MAX
    job = JobSettings(misfit_good=0.0025)
    assert quality_flag(0.001, None, job, odd.quality["support_fraction"]) == "poor"
    assert quality_flag(0.001, None, job, rec.quality["support_fraction"]) == "good"
