"""Tests of bcdi_stream.phasing: operators, supports, figures of merit, recipes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import bcdi_stream.phasing._kernels as kernels_module
from bcdi_stream.config import PhasingSettings
from bcdi_stream.phasing import (
    PhasingResult,
    autocorrelation_support,
    chi2,
    denoise,
    er,
    excess_misfit,
    fourier_error,
    gaussian_smooth,
    hio,
    modulus_projection,
    poisson_amplitude_floor,
    poisson_llk,
    raar,
    refine_er,
    resolve_compile,
    run_conventional,
    shrinkwrap_support,
    support_projection,
    wiener_filter,
)
from bcdi_stream.phasing._engine import Engine, coefficients, default_block
from bcdi_stream.phasing._kernels import (
    Kernels,
    compiled_for,
    prepare_measured,
    squared_modulus,
    update_eager,
)
from bcdi_stream.phasing._psf import (
    EPS,
    ROCKING_RANGE,
    BlurTarget,
    Psf,
    blur,
    blur_fit_of,
    deconvolve,
    detector_blur_of,
    estimate_detector_sigma,
    estimate_sigma,
    parse_psf,
    project_blurred,
)
from bcdi_stream.phasing._quality import _intensity_of, llk_chi2
from bcdi_stream.phasing._recipe import _build_plan, _psf_marks
from bcdi_stream.phasing._support import bounding_box
from bcdi_stream.physics import fft_centered, ifft_centered, twin

DIMS = (-3, -2, -1)


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny grids gain nothing from threads, and on a busy machine a 2-thread MKL FFT of 16**3
    waits ~16 ms for its worker thread to be scheduled (0.05 ms on one thread)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_object(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric crystal-like blob (<= n/2 wide) with a smooth phase, and its support."""
    ax = torch.arange(n, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    s = n / 32
    body = (z / (6 * s)) ** 2 + (y / (5 * s)) ** 2 + (x / (7 * s)) ** 2 <= 1.0
    bump = (z - 3 * s) ** 2 + (y + 3 * s) ** 2 + (x - 4 * s) ** 2 <= (3 * s) ** 2
    shape = (body | bump) & ((x + 0.6 * y) < 5.0 * s)
    phase = 0.8 * torch.sin(2 * math.pi * x / (20 * s)) + 0.5 * (z / (6 * s)) ** 2
    phase = phase + 0.3 * y / (5 * s)
    return torch.polar(shape.float(), phase * shape), shape


def scaled(obj: torch.Tensor, photons: float = 1e9) -> torch.Tensor:
    """``obj`` scaled so that its pattern holds ``photons`` in total."""
    return obj * math.sqrt(photons / float((fft_centered(obj).abs() ** 2).sum()))


def pattern(obj: torch.Tensor) -> torch.Tensor:
    """Noise-free centred intensity ``|fft_centered(obj)|**2``."""
    return fft_centered(obj).abs() ** 2


def align(rec: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Align ``rec`` to ``ref`` over the ambiguities: integer shift, twin, global phase, scale."""
    best = None
    for cand in (rec, twin(rec)):
        xc = torch.fft.ifftn(torch.fft.fftn(cand) * torch.fft.fftn(ref).conj())
        k = int(torch.argmax(xc.abs()))
        shape = ref.shape
        idx = np.unravel_index(k, shape)
        moved = torch.roll(cand, [-int(i) for i in idx], dims=(0, 1, 2))
        overlap = (moved * ref.conj()).sum()
        if best is None or overlap.abs() > best[0]:
            scale = overlap.abs() / (moved.abs() ** 2).sum()
            best = (overlap.abs(), moved * torch.exp(-1j * torch.angle(overlap)) * scale)
    return best[1]


def phase_error(rec: torch.Tensor, ref: torch.Tensor, support: torch.Tensor) -> float:
    """RMS phase difference (rad) over ``support`` after alignment."""
    a = align(rec, ref)
    d = torch.angle(a * ref.conj())[support]
    return float(d.pow(2).mean().sqrt())


@pytest.fixture(scope="module")
def crystal() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    obj, shape = make_object(32)
    obj = scaled(obj)
    return obj, shape, pattern(obj)


@pytest.fixture(scope="module")
def small() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    obj, shape = make_object(16)
    obj = scaled(obj)
    return obj, shape, pattern(obj)


def dilate(s: torch.Tensor, k: int = 3) -> torch.Tensor:
    f = s.float()[None, None]
    return torch.nn.functional.max_pool3d(f, kernel_size=k, stride=1, padding=k // 2)[0, 0] > 0


# ----------------------------------------------------------------------------- projections
def test_modulus_projection_sets_amplitude_keeps_phase_and_masked_pixels() -> None:
    gen = torch.Generator().manual_seed(1)
    psi = torch.randn(2, 6, 7, 8, dtype=torch.complex64, generator=gen)
    amp = torch.rand(6, 7, 8, generator=gen) * 5
    mask = torch.rand(6, 7, 8, generator=gen) > 0.8
    out = modulus_projection(psi, amp, mask)
    free = mask.expand(psi.shape)
    measured = ~free
    assert torch.allclose(out.abs()[measured], amp.expand(psi.shape)[measured], rtol=1e-5)
    assert torch.equal(out[free], psi[free])
    # phase kept where the amplitude is not zero
    keep = measured & (amp.expand(psi.shape) > 1e-3)
    dphi = torch.angle(out[keep] * psi[keep].conj())
    assert float(dphi.abs().max()) < 1e-5


def test_modulus_projection_zero_field_and_idempotent() -> None:
    psi = torch.zeros(4, 4, 4, dtype=torch.complex64)
    psi[0, 0, 0] = 3 + 4j
    amp = torch.full((4, 4, 4), 2.0)
    out = modulus_projection(psi, amp)
    assert torch.isfinite(torch.view_as_real(out)).all()
    assert out[0, 0, 0].abs() == pytest.approx(2.0)
    assert float(out[1:].abs().max()) == 0.0  # psi = 0 stays 0 (no NaN)
    gen = torch.Generator().manual_seed(2)
    psi = torch.randn(5, 5, 5, dtype=torch.complex64, generator=gen)
    amp = torch.rand(5, 5, 5, generator=gen)
    mask = torch.rand(5, 5, 5, generator=gen) > 0.7
    once = modulus_projection(psi, amp, mask)
    assert torch.allclose(modulus_projection(once, amp, mask), once, atol=1e-6)


def test_support_projection_and_idempotence() -> None:
    gen = torch.Generator().manual_seed(3)
    rho = torch.randn(2, 5, 5, 5, dtype=torch.complex64, generator=gen)
    sup = torch.rand(5, 5, 5, generator=gen) > 0.5
    out = support_projection(rho, sup)
    assert float(out[:, ~sup].abs().max()) == 0.0
    assert torch.equal(out[:, sup], rho[:, sup])
    assert torch.equal(support_projection(out, sup), out)


# ----------------------------------------------------------------------------- iterations
def test_true_object_is_a_fixed_point_of_er_hio_raar(small) -> None:
    obj, shape, intensity = small
    sup = dilate(shape)
    for op in (er, hio, raar):
        out = op(obj, intensity, sup, n_iter=2)
        rel = float((out - obj).abs().max() / obj.abs().max())
        assert rel < 1e-4, op.__name__


def test_er_never_increases_the_error(small) -> None:
    obj, shape, intensity = small
    sup = dilate(shape)
    mask = torch.zeros(intensity.shape, dtype=torch.bool)
    mask[8, 8, 3:6] = True  # a few free pixels
    gen = torch.Generator().manual_seed(4)
    rho = obj * torch.exp(1j * 0.8 * torch.randn(obj.shape, generator=gen)) * sup
    errors = [float(fourier_error(rho, intensity, mask))]
    for _ in range(25):
        rho = er(rho, intensity, sup, mask)
        errors.append(float(fourier_error(rho, intensity, mask)))
    assert errors[-1] < 0.5 * errors[0]
    for a, b in itertools.pairwise(errors):
        assert b <= a * (1 + 1e-4) + 1e-9


def test_batched_operators_match_single_runs(small) -> None:
    obj, shape, intensity = small
    sup = dilate(shape)
    gen = torch.Generator().manual_seed(5)
    rhos = obj * torch.exp(1j * torch.randn(3, *obj.shape, generator=gen)) * sup
    batched = raar(rhos, intensity, sup, n_iter=4)
    for i in range(3):
        assert torch.allclose(batched[i], raar(rhos[i], intensity, sup, n_iter=4), atol=1e-6)


def test_engine_blocks_do_not_change_results(small) -> None:
    obj, shape, intensity = small
    sup = dilate(shape).expand(4, *shape.shape).contiguous()
    meas = prepare_measured(intensity, None)
    gen = torch.Generator().manual_seed(6)
    rho = (obj * torch.exp(1j * torch.randn(4, *obj.shape, generator=gen)) * sup).contiguous()
    out = []
    for block in (1, 3, 4):
        eng = Engine(meas, rho.clone(), sup, Kernels(torch.device("cpu"), False), block=block)
        eng.iterate("RAAR", 3)
        eng.iterate("ER", 3)
        out.append(eng.rho)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    assert default_block(torch.device("cpu"), 64**3, 20) == 1
    assert default_block(torch.device("cpu"), 16**3, 20) == 20
    assert default_block(torch.device("cpu"), 32**3, 20) == 4


def test_compiled_kernels_match_eager(small) -> None:
    if compiled_for(torch.device("cpu")) is None:
        pytest.skip("torch.compile kernels unavailable on this machine")
    obj, shape, intensity = small
    sup = dilate(shape)
    mask = torch.zeros(intensity.shape, dtype=torch.bool)
    mask[8, 8, :4] = True
    gen = torch.Generator().manual_seed(7)
    rho = obj * torch.exp(1j * torch.randn(2, *obj.shape, generator=gen)) * sup
    for op in (er, hio, raar):
        a = op(rho, intensity, sup, mask, n_iter=3, compile=True)
        b = op(rho, intensity, sup, mask, n_iter=3, compile=False)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), op.__name__


@pytest.mark.parametrize("int64_view", [True, False])
def test_squared_modulus_is_bit_for_bit_the_strided_sum(monkeypatch, int64_view) -> None:
    """The eager kernels' ``|psi|**2``, read through the int64 view or through the strided
    halves (whichever this CPU runs faster: both are forced here), equals ``re*re + im*im`` of
    the ``view_as_real`` halves to the bit (so that the refinements' results do not move), for
    single and batched grids, odd sizes, signed zeros, subnormals and non-contiguous input."""
    monkeypatch.setattr(kernels_module, "_INT64_HALVES", int64_view)
    gen = torch.Generator().manual_seed(3)
    cases = [torch.randn(16, 16, 16, dtype=torch.complex64, generator=gen) * 1e3,
             torch.randn(3, 8, 8, 8, dtype=torch.complex64, generator=gen),
             torch.randn(5, 7, 9, dtype=torch.complex64, generator=gen),
             torch.randn(8, 8, 16, dtype=torch.complex64, generator=gen)[..., ::2]]
    edge = cases[2].clone()
    edge.view(-1)[:4] = torch.tensor([complex(-0.0, 0.0), complex(1e-40, -1e-40),
                                      complex(-3.0, 0.0), complex(0.0, -2.5)])
    cases.append(edge)
    for psi in cases:
        r = torch.view_as_real(psi)
        ref = torch.mul(r[..., 0], r[..., 0]).addcmul_(r[..., 1], r[..., 1])
        got = squared_modulus(psi)
        assert got.dtype == torch.float32 and got.shape == psi.shape
        assert torch.equal(got.view(torch.int32), ref.contiguous().view(torch.int32))


def test_quality_intensity_is_the_unfused_squared_modulus() -> None:
    """The quality figures' and the PSF estimates' ``|fftn(obj)|**2`` (``_intensity_of``) is
    ``re*re + im*im`` with two roundings, in the object's precision: not the iterations'
    :func:`squared_modulus` (fused where the CPU has FMA), which looks like its duplicate but
    would move the LLKs, the PSF widths estimated from them and so the ``ai`` results."""
    gen = torch.Generator().manual_seed(4)
    for dtype in (torch.complex64, torch.complex128):
        obj = torch.randn(12, 10, 14, dtype=dtype, generator=gen)
        r = torch.view_as_real(torch.fft.fftn(obj, dim=DIMS))
        ref = r[..., 0] * r[..., 0] + r[..., 1] * r[..., 1]
        got = _intensity_of(obj)
        assert got.dtype == ref.dtype and torch.equal(got, ref)
        if dtype == torch.complex64:  # zeros stay zeros, signed or not
            zero = torch.zeros(4, 4, 4, dtype=dtype)
            zero[0, 0, 0] = complex(-0.0, 0.0)
            assert torch.equal(_intensity_of(zero), torch.zeros(4, 4, 4))


def test_the_squared_modulus_path_is_timed_once_per_process(monkeypatch) -> None:
    monkeypatch.setattr(kernels_module, "_INT64_HALVES", None)
    first = kernels_module.int64_halves_faster()
    assert isinstance(first, bool) and kernels_module._INT64_HALVES is first
    assert kernels_module.int64_halves_faster() is first


@pytest.mark.parametrize("algo", ["HIO", "RAAR"])
def test_the_update_inside_the_support_box_is_bit_for_bit_the_full_one(algo) -> None:
    """HIO/RAAR's eager update selects inside the support's bounding box only: the same bits
    as the selection over the whole grid, single runs and blocks of runs."""
    gen = torch.Generator().manual_seed(11)
    for shape in ((12, 10, 14), (3, 12, 10, 14)):
        keep = torch.zeros(shape, dtype=torch.bool)
        keep[..., 3:8, 2:7, 4:11] = torch.rand(shape, generator=gen)[..., 3:8, 2:7, 4:11] > 0.3
        rho = torch.randn(shape, dtype=torch.complex64, generator=gen)
        p = torch.randn(shape, dtype=torch.complex64, generator=gen)
        a, b = coefficients(algo, 0.9)
        full, boxed = rho.clone(), rho.clone()
        update_eager(full, p, keep.float(), keep, a, b)
        update_eager(boxed, p, keep.float(), keep, a, b, bounding_box(keep))
        assert torch.equal(full.view(torch.int64), boxed.view(torch.int64))


def test_the_blurred_projection_is_bit_for_bit_its_formula() -> None:
    """``psi * sqrt(I / max(psf(|psi|**2), EPS))`` (+ 1/N on free pixels), with the zero
    intensities held apart from the square root (:class:`BlurTarget`): every bit as the
    formula written out, with and without zeros and free pixels."""
    gen = torch.Generator().manual_seed(5)
    shape = (10, 12, 14)
    psf = Psf((0.6, 1.0, 0.8), shape)
    psi0 = torch.randn(shape, dtype=torch.complex64, generator=gen)
    iobs = torch.rand(shape, generator=gen) * 1e3
    zeros = torch.rand(shape, generator=gen) < 0.4
    free = (torch.rand(shape, generator=gen) < 0.1).float() / 7.0
    for io, fr in ((iobs, None), (torch.where(zeros, 0.0, iobs), None),
                   (torch.where(zeros | (free > 0), 0.0, iobs), free), (iobs * (free == 0), free)):
        r = torch.view_as_real(psi0)
        ic = psf.apply(torch.mul(r[..., 0], r[..., 0]).addcmul_(r[..., 1], r[..., 1]))
        factor = torch.sqrt(io / ic.clamp(min=EPS))
        if fr is not None:
            factor = factor + fr
        want = psi0 * factor
        got = psi0.clone()
        project_blurred(got, psf, BlurTarget(io), fr)
        assert torch.equal(got.view(torch.int64), want.view(torch.int64))


# ----------------------------------------------------------------------------- supports
def test_autocorrelation_and_shrinkwrap_supports(crystal) -> None:
    obj, shape, intensity = crystal
    ac = autocorrelation_support(intensity, 0.1)
    assert ac.dtype == torch.bool and ac.shape == shape.shape
    assert bool(ac[shape].all())  # contains the (centred) object
    assert int(ac.sum()) > int(shape.sum())
    sw = shrinkwrap_support(obj, sigma=0.5, threshold=0.2)
    iou = float((sw & shape).sum() / (sw | shape).sum())
    assert iou > 0.75
    # collapse guard: an object with a single hot voxel keeps the previous support
    spike = torch.zeros_like(obj)
    spike[0, 0, 0] = 1e6
    kept = shrinkwrap_support(spike[None], 0.0, 0.5, previous=shape[None])
    assert torch.equal(kept[0], shape)


def test_gaussian_smooth_width_and_sum() -> None:
    x = torch.zeros(2, 16, 16, 16)
    x[:, 8, 8, 8] = 1.0
    y = gaussian_smooth(x, 1.5)
    assert y.shape == x.shape
    assert float(y[0].sum()) == pytest.approx(1.0, abs=1e-5)
    ax = torch.arange(16.0) - 8
    var = float((y[1].sum(dim=(0, 1)) * ax**2).sum())
    assert var == pytest.approx(1.5**2, rel=0.01)
    assert torch.equal(gaussian_smooth(x, 0), x)


def test_recipe_plan() -> None:
    plan = _build_plan(100, 20, 60, 20, 2.0, 0.5, shrinkwrap=True, detwin=True)
    iters = [p for p in plan if p[0] == "iter"]
    assert sum(p[2] for p in iters) == 180
    assert sum(p[2] for p in iters if p[1] == "RAAR") == 100
    assert sum(p[2] for p in iters if p[1] == "HIO") == 20
    assert sum(p[2] for p in iters if p[1] == "ER") == 60
    sigmas = [p[1] for p in plan if p[0] == "shrinkwrap"]
    assert len(sigmas) == 8  # 20, 40, ..., 160 (none in the last 20)
    assert sigmas == sorted(sigmas, reverse=True) and 0.5 < sigmas[-1] < sigmas[0] < 2.0
    kinds = [p[0] for p in plan]
    assert kinds.index("detwin") < kinds.index("restore")
    assert _build_plan(0, 0, 50, 20, 2, 0.5, shrinkwrap=False, detwin=True) == [("iter", "ER", 50)]


# ----------------------------------------------------------------------------- quality
def test_llk_is_about_one_for_poisson_data_and_larger_for_a_wrong_model(crystal) -> None:
    obj = scaled(crystal[0], 1e11)
    gen = torch.Generator().manual_seed(8)
    expected = pattern(obj) + 20.0  # high counts everywhere
    data = torch.poisson(expected, generator=gen)
    true_obj = torch.fft.ifftn(torch.fft.ifftshift(expected.sqrt(), dim=DIMS))  # same intensity
    true_obj = torch.fft.fftshift(true_obj, dim=DIMS)
    assert float(poisson_llk(true_obj, data)) == pytest.approx(1.0, abs=0.05)
    assert float(chi2(true_obj, data)) == pytest.approx(1.0, abs=0.1)
    wrong = obj * torch.exp(1j * torch.roll(torch.angle(obj), 3, dims=0))
    assert float(poisson_llk(wrong, data)) > 5.0
    # direct check of the estimator on a synthetic model
    meas_model = torch.rand(64, 64, 16, generator=gen) * 2000 + 50
    meas = prepare_measured(torch.poisson(meas_model, generator=gen), None)
    llk, chi = llk_chi2(torch.fft.ifftshift(meas_model, dim=DIMS), meas)
    assert llk == pytest.approx(1.0, abs=0.03) and chi == pytest.approx(1.0, abs=0.05)
    # batched figures of merit
    both = poisson_llk(torch.stack([true_obj, wrong]), data)
    assert both.shape == (2,) and float(both[0]) < float(both[1])


def test_poisson_amplitude_floor_matches_sampled_counts() -> None:
    gen = torch.Generator().manual_seed(3)
    lam = torch.tensor([0.0, 1e-3, 0.05, 1.0, 4.0, 30.0, 500.0, 1e6], dtype=torch.float64)
    k = torch.poisson(lam[:, None].expand(-1, 200_000).contiguous(), generator=gen)
    sampled = (k.sqrt() - lam[:, None].sqrt()).square().mean(1)
    floor = poisson_amplitude_floor(lam)
    assert torch.allclose(floor, sampled, rtol=0.03, atol=2e-5)
    assert float(floor[-1]) == pytest.approx(0.25) and float(floor[0]) == 0.0
    assert float(poisson_amplitude_floor(torch.tensor(1e-6))) == pytest.approx(2e-6, rel=0.01)


def test_excess_misfit_is_flux_independent_where_the_llk_is_not(crystal) -> None:
    """A correct model scores ≈ 0 (unbiased; the spread falls with the total counts) from 30
    to 10⁸ photons in the pattern's brightest pixel, whereas its LLK grows with the flux once
    the model carries a small error; a wrong model scores far above the ``auto`` threshold at
    every flux."""
    gen = torch.Generator().manual_seed(9)
    obj = crystal[0]
    wrong = obj * torch.exp(1j * torch.roll(torch.angle(obj), 3, dims=0))
    rough = obj * torch.exp(0.05j * torch.randn(obj.shape, generator=gen))  # 5 % error
    for peak in (30.0, 1e4, 1e8):
        expected = pattern(obj) * (peak / float(pattern(obj).max()))
        data = torch.poisson(expected, generator=gen)
        good = float(excess_misfit(obj, data))
        assert abs(good) < (0.02 if peak < 100 else 1e-3), (peak, good)  # 1.2e3 photons in all
        assert float(excess_misfit(wrong, data)) > 0.05
        if peak == 1e8:  # the same small model error: LLK ≫ 1, misfit still small
            assert float(poisson_llk(rough, data)) > 10 * float(poisson_llk(obj, data))
            assert float(excess_misfit(rough, data)) < 0.01
    both = excess_misfit(torch.stack([obj, wrong]), data)
    assert both.shape == (2,) and float(both[0]) < float(both[1])


def test_excess_misfit_of_an_intensity_that_is_not_counts(crystal) -> None:
    """A noise-free pattern normalised to 1: counted as photons, the Poisson term exceeds the
    intensity and every model scores below zero; without it (``counts=False``) the correct
    model scores ≈ 0 and a wrong one what it scores on counts."""
    obj = crystal[0]
    wrong = obj * torch.exp(1j * torch.roll(torch.angle(obj), 3, dims=0))
    clean = pattern(obj) / float(pattern(obj).max())
    assert float(excess_misfit(obj, clean)) < 0 and float(excess_misfit(wrong, clean)) < 0
    assert abs(float(excess_misfit(obj, clean, counts=False))) < 1e-6
    assert float(excess_misfit(wrong, clean, counts=False)) > 0.05
    counts = pattern(obj) * (1e8 / float(pattern(obj).max()))
    assert float(excess_misfit(wrong, clean, counts=False)) == pytest.approx(
        float(excess_misfit(wrong, counts)), rel=0.01)


def test_excess_misfit_of_data_on_a_flat_background(crystal) -> None:
    """A flat background the phasing does not model counts as misfit: a correct model of a
    pattern on 0.5 photon/pixel scores far above the ``auto`` threshold (0.0025), and the
    more so the fewer photons the crystal gives. Given as ``background``, the model is
    ``s·Ic + background`` and the noise term that of the sum: the correct model scores ≈ 0
    again at every flux, a wrong one still far above the threshold; ``background=0`` is the
    default bit for bit, and a background that is negative, not finite or not below the mean
    intensity is refused naming the argument."""
    gen = torch.Generator().manual_seed(5)
    obj = crystal[0]
    wrong = obj * torch.exp(1j * torch.roll(torch.angle(obj), 3, dims=0))
    for peak in (1e3, 1e4):  # 4e4 and 4e5 photons in the pattern without background
        expected = pattern(obj) * (peak / float(pattern(obj).max()))
        for bg in (0.0, 0.5, 2.0):
            data = torch.poisson(expected + bg, generator=gen)
            plain = float(excess_misfit(obj, data))
            told = float(excess_misfit(obj, data, background=bg))
            assert abs(told) < (4e-3 if peak < 1e4 else 1e-3), (peak, bg, told)  # its spread
            if bg:  # 0.14 / 0.39 at 1e3, 0.004 / 0.037 at 1e4
                assert plain > 0.0025 and plain > 5 * abs(told), (peak, bg, plain)
            else:
                assert told == plain
            assert float(excess_misfit(wrong, data, background=bg)) > 0.02
    mask = torch.zeros(data.shape, dtype=torch.bool)
    mask[:, :3] = True  # the measured pixels only: a masked one holds no background
    data[mask] = 0.0
    assert abs(float(excess_misfit(obj, data, mask, background=2.0))) < 1e-3
    assert torch.equal(excess_misfit(torch.stack([obj, wrong]), data, mask),
                       excess_misfit(torch.stack([obj, wrong]), data, mask, background=0))
    mean = float(data[~mask].mean())
    for bad in (-0.1, float("nan"), float("inf"), mean, "x"):
        with pytest.raises(ValueError, match="background"):
            excess_misfit(obj, data, mask, background=bad)


# ----------------------------------------------------------------------------- recipes
SMALL = PhasingSettings(runs=3, n_raar=40, n_hio=10, n_er=20, shrinkwrap_every=10)


def test_recipe_recovers_a_crystal(crystal) -> None:
    obj, shape, intensity = crystal
    mask = torch.zeros(intensity.shape, dtype=torch.bool)
    mask[16, 16, 20:23] = True
    mask[5, 9:12, 4] = True
    corrupted = intensity.clone()
    corrupted[mask] = 1e9  # garbage on bad pixels: must be ignored
    settings = PhasingSettings(runs=6, n_raar=300, n_er=100, shrinkwrap_every=20)
    calls: list[tuple[int, int]] = []
    res = run_conventional(
        corrupted.numpy(), mask.numpy(), settings, progress=lambda d, t: calls.append((d, t))
    )
    assert isinstance(res, PhasingResult)
    assert res.obj.shape == obj.shape and res.obj.dtype == torch.complex64
    assert res.runs == 6 and res.iterations == 400 and res.algorithm == "RAAR300 ER100"
    assert res.llk == min(res.llk_runs) == res.llk_runs[res.best_run]
    assert res.llk < 0.01
    assert phase_error(res.obj, obj, shape) < 0.05
    a = align(res.obj, obj)
    assert float((a.abs()[shape] / obj.abs()[shape] - 1).abs().mean()) < 0.05
    assert calls[-1] == (6 * 400, 6 * 400)
    assert all(d2 >= d1 for (d1, _), (d2, _) in itertools.pairwise(calls))
    assert {"setup", "iterate", "support", "quality", "total", "per_iteration"} <= set(res.timings)


def test_recipe_is_deterministic_and_batch_independent(small) -> None:
    _, _, intensity = small
    a = run_conventional(intensity, settings=SMALL, seed=3)
    b = run_conventional(intensity, settings=SMALL, seed=3)
    assert a.llk_runs == b.llk_runs and torch.equal(a.obj, b.obj)
    c = run_conventional(intensity, settings=SMALL, seed=4)
    assert c.llk_runs != a.llk_runs
    seq = run_conventional(intensity, settings=SMALL.model_copy(update={"batch": 1}), seed=3)
    assert seq.llk_runs == pytest.approx(a.llk_runs, rel=1e-9)
    assert torch.allclose(seq.obj, a.obj, atol=1e-6 * float(a.obj.abs().max()))


def test_recipe_with_given_support_and_object(small) -> None:
    obj, shape, intensity = small
    res = run_conventional(
        intensity,
        settings=SMALL.model_copy(update={"runs": 2}),
        support=dilate(shape),
        obj_init=obj,
        detwin=False,
    )
    assert res.llk < 1e-3


def test_refine_er_improves_a_noisy_guess(crystal) -> None:
    obj, shape, intensity = crystal
    gen = torch.Generator().manual_seed(9)
    guess = obj * torch.exp(1j * 0.6 * torch.randn(obj.shape, generator=gen))
    guess = guess + 0.05 * torch.randn(obj.shape, dtype=torch.complex64, generator=gen)
    before = float(poisson_llk(guess, intensity))
    res = refine_er(intensity, None, guess, n_iter=60)
    assert res.llk < 0.1 * before
    assert res.iterations == 60 and res.algorithm == "ER60"
    assert phase_error(res.obj, obj, shape) < 0.3
    fixed = refine_er(intensity, None, guess, dilate(shape), n_iter=20, shrinkwrap=False)
    assert torch.equal(fixed.support, dilate(shape))


# ----------------------------------------------------------------------------- noise filter
def test_wiener_gain_is_set_by_the_local_counts() -> None:
    gen = torch.Generator().manual_seed(4)
    psi = torch.polar(torch.full((8, 8, 8), math.sqrt(8.0)),
                      2 * math.pi * torch.rand((8, 8, 8), generator=gen))
    obj = ifft_centered(psi)
    counts = torch.full((8, 8, 8), 8.0)
    # a pixel expecting `counts` photons keeps half its amplitude; far brighter ones all of it
    half = wiener_filter(obj, counts, counts=8.0)
    assert torch.allclose(half, 0.5 * obj, atol=1e-6)
    assert torch.allclose(wiener_filter(obj, counts * 1e7, counts=8.0), obj, atol=1e-5)
    # at bad pixels (masked, or negative) the object's own |ψ|² = 8 stands in for the garbage
    dirty, mask = counts.clone(), torch.zeros((8, 8, 8), dtype=torch.bool)
    dirty[3:7], mask[3:7] = 1e9, True  # a gap wider than the 3³ box
    dirty[1, 2, 2] = -5.0
    assert torch.allclose(wiener_filter(obj, dirty, mask, counts=8.0), half, atol=1e-6)
    # a batch of runs is filtered run by run
    batch = wiener_filter(torch.stack([obj, 2 * obj]), counts, counts=8.0)
    assert batch.shape == (2, 8, 8, 8) and torch.allclose(batch[0], half, atol=1e-6)
    assert torch.allclose(batch[1], 2 * half, atol=1e-6)


def test_noise_filter_lowers_the_phase_error_of_a_photon_starved_result() -> None:
    obj, shape = make_object(32)
    gen = torch.Generator().manual_seed(3)
    for photons, gain in ((1e5, 0.8), (1e9, 1.02)):
        o = scaled(obj, photons)
        i = torch.poisson(pattern(o), generator=gen)
        res = refine_er(i, None, o, n_iter=100)
        filtered, support = denoise(res.obj, res.support, i, counts=8.0)
        before, after = phase_error(res.obj, o, shape), phase_error(filtered, o, shape)
        # photon-starved: less error; bright: (almost) nothing to remove
        assert after < gain * before, (photons, before, after)
        assert torch.equal(support, shrinkwrap_support(filtered, 0.5, 0.2))
        assert bool(support[shape].float().mean() > 0.95)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"counts": 0.0}, "counts must be a positive finite number"),
        ({"counts": math.inf}, "counts must be a positive finite number"),
        ({"counts": 8.0, "intensity": torch.ones(4, 8, 8)}, "obj must have shape"),
        ({"counts": 8.0, "support": torch.ones(4, 8, 8)}, "support must have shape"),
        ({"counts": 8.0, "mask": torch.ones(8, 8, 4)}, "mask must have"),
    ],
)
def test_denoise_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"obj": torch.ones(8, 8, 8, dtype=torch.complex64),
            "support": torch.ones(8, 8, 8, dtype=torch.bool),
            "intensity": torch.ones(8, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=match):
        denoise(**args)


def test_resolve_compile() -> None:
    cpu = torch.device("cpu")
    assert resolve_compile(False, cpu, 1e12) is False
    assert resolve_compile("on", cpu, 0) is True
    assert resolve_compile("auto", torch.device("meta"), 1e12) is False
    assert resolve_compile("auto", cpu, 1e12) is True and resolve_compile(None, cpu, 1e6) is False


def test_auto_compile_ignores_kernels_built_earlier(monkeypatch) -> None:
    # a short refinement runs eager even after a long job built the fused kernels in this
    # process: eager and fused kernels round differently, and the iterations amplify it
    from bcdi_stream.phasing import _kernels

    monkeypatch.setitem(_kernels._COMPILED, "cpu", ())
    assert resolve_compile("auto", torch.device("cpu"), 1e6) is False


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"intensity": np.ones((8, 8))}, "intensity"),
        ({"intensity": np.full((8, 8, 8), np.nan)}, "intensity"),
        ({"intensity": np.zeros((8, 8, 8))}, "intensity"),
        ({"intensity": np.ones((2, 8, 8))}, "intensity"),
        ({"intensity": "abc"}, "intensity"),
        ({"mask": np.zeros((8, 8, 4))}, "mask"),
        ({"mask": np.ones((8, 8, 8))}, "mask"),
        ({"settings": {"runs": 2}}, "settings"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"progress": 3}, "progress"),
        ({"device": "nonsense"}, "device"),
        ({"support": np.zeros((8, 8, 8))}, "support"),
        ({"support": np.ones((4, 4, 4))}, "support"),
        ({"obj_init": np.ones((8, 8, 7))}, "obj_init"),
        ({"compile": "sometimes"}, "compile"),
    ],
)
def test_run_conventional_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"intensity": np.ones((8, 8, 8)), "settings": PhasingSettings(runs=1, n_raar=2, n_er=2)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_conventional(**args)


def test_operators_reject_bad_arguments(small) -> None:
    obj, shape, intensity = small
    with pytest.raises(ValueError, match="beta"):
        hio(obj, intensity, shape, beta=1.5)
    with pytest.raises(ValueError, match="n_iter"):
        er(obj, intensity, shape, n_iter=-1)
    with pytest.raises(ValueError, match="rho"):
        raar(obj[:8], intensity, shape)
    with pytest.raises(ValueError, match="psi"):
        modulus_projection(torch.ones(4, 4, 4), torch.ones(4, 4, 4))
    with pytest.raises(ValueError, match="amplitude"):
        modulus_projection(torch.ones(4, 4, 4, dtype=torch.complex64), -torch.ones(4, 4, 4))
    with pytest.raises(ValueError, match="threshold"):
        autocorrelation_support(intensity, threshold=1.5)
    with pytest.raises(ValueError, match="obj_init"):
        refine_er(intensity, None, None)
    with pytest.raises(ValueError, match="support_init"):
        refine_er(intensity, None, obj, support_init=torch.zeros(obj.shape))


# ----------------------------------------------------------------------------- PSF (blur)
def test_blur_is_a_normalised_periodic_separable_gaussian() -> None:
    x = torch.zeros(8, 16, 16)
    x[0, 0, 0] = 1.0  # at the corner: the periodic kernel wraps around
    b = blur(x, (0.0, 0.8, 0.8))
    assert float(b.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(b[0, 1, 0], b[0, -1, 0]) and torch.allclose(b[0, 0, 1], b[0, 1, 0])
    assert float(b[1:].abs().max()) == 0.0  # z untouched
    var = float((b[0, :, 0] * torch.tensor([min(i, 16 - i) ** 2 for i in range(16)])).sum())
    assert var / float(b[0, :, 0].sum()) == pytest.approx(0.8**2, rel=0.05)
    assert torch.equal(blur(x, (0.0, 0.0, 0.0)), x)
    assert parse_psf("off")[0] == parse_psf(None)[0] == parse_psf(0.0)[0] == "off"
    assert parse_psf(0.7) == ("fixed", (0.0, 0.7, 0.7))
    assert parse_psf((0.5, 0.6)) == ("fixed", (0.0, 0.5, 0.6))
    assert parse_psf([0.4, 0.5, 0.6]) == ("fixed", (0.4, 0.5, 0.6))
    assert parse_psf("auto") == ("auto", (0.0, 0.0, 0.0))
    for bad in ("blurry", -1.0, (1.0,), True, float("nan")):
        with pytest.raises(ValueError, match="psf"):
            parse_psf(bad)


@pytest.fixture(scope="module")
def blurred(crystal) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]:
    """The 32**3 crystal's pattern blurred on the detector axes, with Poisson noise."""
    obj = crystal[0]
    sigma = (0.0, 0.7, 0.9)
    obj = scaled(obj, 1e8)
    expected = blur(pattern(obj), sigma)
    data = torch.poisson(expected, generator=torch.Generator().manual_seed(5))
    return obj, data, sigma


def test_blurred_modulus_projection_is_consistent(blurred) -> None:
    obj, data, sigma = blurred
    exact = blur(pattern(obj), sigma)
    psi = fft_centered(obj)
    # noise-free data made with the true PSF: the true field is a fixed point
    out = modulus_projection(psi, exact.sqrt(), psf_sigma=sigma)
    assert torch.allclose(out, psi, rtol=1e-3, atol=1e-4 * float(psi.abs().max()))
    # the plain projection is not: it forces the blurred modulus on the sharp field
    plain = modulus_projection(psi, exact.sqrt())
    assert float((plain - psi).abs().norm()) > 100 * float((out - psi).abs().norm())
    # masked pixels stay free; noisy data: a small, bounded change
    mask = torch.zeros(data.shape, dtype=torch.bool)
    mask[16, 16, 14:19] = True
    noisy = modulus_projection(psi, data.sqrt(), mask, psf_sigma=sigma)
    assert torch.equal(noisy[mask], psi.to(torch.complex64)[mask])
    rel = float((noisy - psi).abs().norm() / psi.abs().norm())
    assert rel < 0.05
    # the LLK of the truth under the blurred model is the noise level (~1), not under the sharp
    llk_psf = float(poisson_llk(obj, data, psf_sigma=sigma))
    assert llk_psf == pytest.approx(float(poisson_llk(obj, data, psf_sigma=sigma)))
    assert 0.3 < llk_psf < 1.5
    assert float(poisson_llk(obj, data)) > 3 * llk_psf
    assert float(chi2(obj, data, psf_sigma=sigma)) < float(chi2(obj, data))


def test_blurred_engine_keeps_the_truth_and_reports_the_blurred_llk(blurred) -> None:
    obj, data, sigma = blurred
    shape = obj.abs() > 0
    meas = prepare_measured(data, None)
    eng = Engine(meas, obj[None].clone(), shape[None].clone(), Kernels(obj.device, False))
    eng.set_psf(sigma)
    assert eng.psf_sigma == [sigma]
    llk0 = eng.quality()[0][0]
    assert llk0 == pytest.approx(float(poisson_llk(obj, data, psf_sigma=sigma)), rel=1e-4)
    eng.iterate("ER", 10)
    assert phase_error(eng.rho[0], obj, shape) < 0.02
    assert eng.quality()[0][0] <= llk0 * 1.02


def test_sigma_estimation_recovers_a_known_blur(blurred) -> None:
    obj, data, sigma = blurred
    meas = prepare_measured(data, None)
    i0 = _intensity_of(obj)
    est = estimate_sigma(i0, meas, wide=True)
    assert all(abs(e - s) < 0.15 for e, s in zip(est, sigma, strict=True)), est
    # a later, local estimate from a nearby start also converges
    est2 = estimate_sigma(i0, meas, (0.0, 0.4, 1.2), wide=False, sweeps=3)
    assert all(abs(e - s) < 0.15 for e, s in zip(est2, sigma, strict=True)), est2
    # without blur, no PSF
    sharp = torch.poisson(pattern(obj), generator=torch.Generator().manual_seed(6))
    assert estimate_sigma(i0, prepare_measured(sharp, None)) == (0.0, 0.0, 0.0)


def test_width_search_llk_is_the_poisson_llk_of_the_full_blur(blurred) -> None:
    """The searches' LLK (data terms computed once, the axes a line does not vary blurred once)
    is the PyNX Poisson LLK of the model blurred on every axis, masked pixels left out."""
    from bcdi_stream.phasing._psf import Psf, _Search, llk_fast
    from bcdi_stream.phasing._quality import IMODEL_MIN

    obj, data, _ = blurred
    mask = torch.zeros(data.shape, dtype=torch.bool)
    mask[:, :3, :] = True  # a detector gap, and no counts in a corner
    meas = prepare_measured(data, mask)
    i0 = _intensity_of(obj)

    def reference(sigma: tuple[float, float, float]) -> float:
        ic = Psf(sigma, i0.shape).apply(i0).clone() * meas.valid
        ic = ic * (float(meas.iobs.sum()) / float(ic.sum()))
        io = meas.iobs
        floor = torch.where(ic < IMODEL_MIN, ic + IMODEL_MIN, ic)
        term = ic - io + io * torch.log(torch.where(io > 0, io, 1.0) / floor)
        return 2.0 * float(term[meas.valid].double().sum()) / meas.n_valid

    search = _Search(i0, meas)
    line = search.along((0.4, 0.8, 0.0), (2,))
    for c in (0.0, 0.6, 1.1):
        assert line(c) == pytest.approx(reference((0.4, 0.8, c)), rel=1e-5)
    shared = search.along((0.0, 0.0, 0.0), (1, 2))
    assert shared(0.9) == pytest.approx(reference((0.0, 0.9, 0.9)), rel=1e-5)
    assert llk_fast(Psf((0.0, 0.9, 0.9), i0.shape).apply(i0), meas) == pytest.approx(
        shared(0.9), rel=1e-6)


def test_oblique_psf_is_the_correlated_gaussian() -> None:
    """``(z, y, x, r)``: a unit-sum, positive kernel with those widths and that y, x
    correlation; r = 0 is the separable kernel; parse_psf takes and checks the form."""
    from bcdi_stream.phasing._psf import axes_of_yx, yx_of_axes

    delta = torch.zeros(16, 32, 32)
    delta[8, 16, 16] = 1.0
    z, y, x = torch.meshgrid(torch.arange(16.0) - 8, torch.arange(32.0) - 16,
                             torch.arange(32.0) - 16, indexing="ij")
    for sigma in ((0.0, 1.0, 1.5, 0.6), (0.8, 1.2, 0.9, -0.5)):
        k = blur(delta, sigma)
        assert float(k.sum()) == pytest.approx(1.0, abs=1e-5) and float(k.min()) >= 0.0
        cyy, cxx, cyx = (float((k * a * b).sum()) for a, b in ((y, y), (x, x), (y, x)))
        assert math.sqrt(float((k * z * z).sum())) == pytest.approx(sigma[0], abs=0.01)
        assert math.sqrt(cyy) == pytest.approx(sigma[1], abs=0.01)
        assert math.sqrt(cxx) == pytest.approx(sigma[2], abs=0.01)
        assert cyx / math.sqrt(cyy * cxx) == pytest.approx(sigma[3], abs=0.01)
    # near the cap the width across (0.25 px) is below a pixel: sampled, a line along y = x
    k = blur(delta, (0.0, 1.1, 1.1, 0.95))
    assert float(k.min()) >= 0.0 and float((k * y * x).sum()) / float((k * y * y).sum()) > 0.95
    assert torch.allclose(blur(delta, (0.5, 0.8, 1.0, 0.0)), blur(delta, (0.5, 0.8, 1.0)))
    assert parse_psf((0.0, 1.0, 1.0, 0.5)) == ("fixed", (0.0, 1.0, 1.0, 0.5))
    assert parse_psf((0.0, 1.0, 1.0, 0.0)) == ("fixed", (0.0, 1.0, 1.0))
    for bad in ((0.0, 1.0, 1.0, 0.995), (0.0, 1.0, 1.0, float("nan"))):
        with pytest.raises(ValueError, match="correlation"):
            parse_psf(bad)
    su, sv, th = axes_of_yx(*yx_of_axes(1.5, 0.3, 0.6))
    assert (su, sv, th) == pytest.approx((1.5, 0.3, 0.6), abs=1e-9)


def test_an_oblique_blur_is_estimated_and_projected(blurred) -> None:
    """A pattern blurred along the detector's diagonal (partial coherence short along an
    oblique direction): from the true object the estimate finds the oblique kernel, which the
    separable one cannot hold; with it the truth is a fixed point of the projection and of the
    engine. Data without such a blur get no correlation."""
    obj = blurred[0]
    sigma = (0.0, 1.0, 1.0, 0.9)
    data = torch.poisson(blur(pattern(obj), sigma), generator=torch.Generator().manual_seed(7))
    meas = prepare_measured(data, None)
    i0 = _intensity_of(obj)
    est = estimate_sigma(i0, meas)
    assert len(est) == 4 and est[3] > 0.8 and est[0] <= 0.3 and all(
        abs(e - s) < 0.15 for e, s in zip(est[1:3], sigma[1:3], strict=True)), est
    sep = estimate_sigma(i0, meas, correlation=False)
    llk_est = float(poisson_llk(obj, data, psf_sigma=est))
    assert len(sep) == 3 and float(poisson_llk(obj, data, psf_sigma=sep)) > 3 * llk_est
    assert llk_est < 1.5
    # the separable blurred data of the fixture: no correlation
    assert len(estimate_sigma(i0, prepare_measured(blurred[1], None))) == 3
    # the truth is kept by the projection and by ER in the engine
    psi = fft_centered(obj)
    exact = blur(pattern(obj), sigma)
    out = modulus_projection(psi, exact.sqrt(), psf_sigma=sigma)
    assert torch.allclose(out, psi, rtol=1e-3, atol=1e-4 * float(psi.abs().max()))
    shape = obj.abs() > 0
    eng = Engine(meas, obj[None].clone(), shape[None].clone(), Kernels(obj.device, False))
    eng.set_psf(est)
    assert eng.psf_sigma == [est]
    eng.iterate("ER", 10)
    assert phase_error(eng.rho[0], obj, shape) < 0.02
    assert bool(torch.isfinite(eng.rho).all())


def test_psf_off_path_is_unchanged(small) -> None:
    obj, shape, intensity = small
    assert _psf_marks("off", 800) == _psf_marks("fixed", 800) == frozenset()
    assert min(_psf_marks("auto", 800)) == 200 and max(_psf_marks("auto", 800)) == 750
    plain = _build_plan(40, 10, 20, 10, 2.0, 0.5, shrinkwrap=True, detwin=True)
    assert plain == _build_plan(
        40, 10, 20, 10, 2.0, 0.5, shrinkwrap=True, detwin=True, psf_marks=frozenset()
    )
    assert not any(step[0] == "psf" for step in plain)
    # engine: setting then clearing a PSF restores the plain iteration bit for bit
    meas = prepare_measured(intensity, None)
    gen = torch.Generator().manual_seed(2)
    rho = obj * torch.exp(1j * 0.3 * torch.randn(obj.shape, generator=gen))
    ref = Engine(meas, rho[None].clone(), dilate(shape)[None], Kernels(obj.device, False))
    eng = Engine(meas, rho[None].clone(), dilate(shape)[None], Kernels(obj.device, False))
    eng.set_psf((0.0, 0.8, 0.8))
    eng.set_psf(None)
    for e in (ref, eng):
        e.iterate("RAAR", 5)
        e.iterate("ER", 5)
    assert torch.equal(ref.rho, eng.rho) and eng.psf_sigma == [(0.0, 0.0, 0.0)]
    a = run_conventional(intensity, settings=SMALL, seed=3, psf="off")
    b = run_conventional(intensity, settings=SMALL, seed=3, psf=0.0)
    assert a.psf == "off" and a.psf_sigma == (0.0, 0.0, 0.0)
    assert a.llk_runs == b.llk_runs and torch.equal(a.obj, b.obj)
    assert "psf" not in {s[0] for s in plain}


def test_recipe_with_psf_on_blurred_data(crystal) -> None:
    obj, shape, _ = crystal
    sigma = (0.0, 0.7, 0.9)
    obj = scaled(obj, 1e6)  # peak ~2e4 counts, as the simulator's crystals
    data = torch.poisson(blur(pattern(obj), sigma), generator=torch.Generator().manual_seed(5))
    settings = PhasingSettings(runs=2, n_raar=200, n_er=100, shrinkwrap_every=20)
    res = run_conventional(data, settings=settings, seed=1, psf="auto")
    assert res.psf == "auto" and "psf" in res.timings
    assert all(abs(e - s) < 0.35 for e, s in zip(res.psf_sigma, sigma, strict=True)), res.psf_sigma
    assert res.llk < 2.0 and phase_error(res.obj, obj, shape) < 0.3
    fixed = run_conventional(data, settings=settings, seed=1, psf=sigma[1:])
    assert fixed.psf == "fixed" and fixed.psf_sigma == sigma
    ref = refine_er(data, None, obj, dilate(shape), n_iter=20, shrinkwrap=False, psf=sigma[1:])
    assert ref.psf_sigma == sigma and ref.llk < 1.5


def test_detector_sigma_estimate_recovers_a_shared_blur(blurred) -> None:
    obj, data, _ = blurred
    sigma = (0.0, 0.8, 0.8)
    expected = blur(pattern(obj), sigma)
    data = torch.poisson(expected, generator=torch.Generator().manual_seed(7))
    est = estimate_detector_sigma(_intensity_of(obj), prepare_measured(data, None))
    assert est[0] == 0.0 and est[1] == est[2] and abs(est[1] - 0.8) < 0.1, est
    # the same from the centred object and data, with a masked band
    mask = torch.zeros(data.shape, dtype=torch.bool)
    mask[:, 3:5, :] = True
    hyp = detector_blur_of(obj, data, mask)
    assert hyp is not None and hyp[0] == 0.0 and abs(hyp[1] - 0.8) < 0.1
    # the same blur on every axis is not a detector's: no hypothesis
    iso = torch.poisson(blur(pattern(obj), (0.8, 0.8, 0.8)),
                        generator=torch.Generator().manual_seed(9))
    assert detector_blur_of(obj, iso) is None
    # one axis only; no blur -> 0
    z_only = estimate_detector_sigma(_intensity_of(obj), prepare_measured(data, None), axes=(0,))
    assert z_only[1] == z_only[2] == 0.0
    sharp = torch.poisson(pattern(obj), generator=torch.Generator().manual_seed(8))
    assert detector_blur_of(obj, sharp) is None
    with pytest.raises(ValueError, match="axes"):
        estimate_detector_sigma(_intensity_of(obj), prepare_measured(data, None), axes=(3,))
    with pytest.raises(ValueError, match="candidates"):
        estimate_detector_sigma(_intensity_of(obj), prepare_measured(data, None), (-1.0, 0.5))
    with pytest.raises(ValueError, match="same shape"):
        detector_blur_of(obj[:8], data)


def test_detector_blur_hypothesis_follows_a_blur_along_one_axis(blurred) -> None:
    # partial coherence short along x only: the shared width splits the difference and, on
    # the simulator's crystals, fell under the floor or far from x (session 22); each axis on
    # its own finds it
    obj, _, _ = blurred
    data = torch.poisson(blur(pattern(obj), (0.0, 0.0, 1.4)),
                         generator=torch.Generator().manual_seed(11))
    hyp = detector_blur_of(obj, data)
    assert hyp is not None and hyp[0] == 0.0, hyp
    assert abs(hyp[2] - 1.4) < 0.2 and hyp[1] < 0.4, hyp
    shared = detector_blur_of(obj, data, per_axis=False)
    assert shared is None or (shared[1] == shared[2] and abs(shared[2] - 1.4) > 0.2), shared
    # the same width along y only: the axes are not mixed up
    along_y = torch.poisson(blur(pattern(obj), (0.0, 1.4, 0.0)),
                            generator=torch.Generator().manual_seed(12))
    hyp_y = detector_blur_of(obj, along_y)
    assert hyp_y is not None and abs(hyp_y[1] - 1.4) < 0.2 and hyp_y[2] < 0.4, hyp_y


def test_a_blur_along_the_rocking_axis_is_a_hypothesis_only_when_asked(blurred) -> None:
    # partial coherence across the incident beam blurs the rocking axis z (session 25): not a
    # detector's blur, so a hypothesis only with rocking=True, with the widths fitted beside it
    obj, _, _ = blurred
    data = torch.poisson(blur(pattern(obj), (1.4, 0.0, 0.0)),
                         generator=torch.Generator().manual_seed(13))
    assert detector_blur_of(obj, data) is None
    hyp = detector_blur_of(obj, data, rocking=True)
    assert hyp is not None and abs(hyp[0] - 1.4) < 0.2 and max(hyp[1:3]) < 0.4, hyp
    # outside ROCKING_RANGE (an imperfect prediction asks for a little z blur): none
    low = ROCKING_RANGE[0] - 0.4
    weak = torch.poisson(blur(pattern(obj), (low, 0.0, 0.0)),
                         generator=torch.Generator().manual_seed(14))
    assert detector_blur_of(obj, weak, rocking=True) is None
    # a detector blur stays a detector hypothesis (z = 0), rocking or not
    det = torch.poisson(blur(pattern(obj), (0.0, 1.2, 1.2)),
                        generator=torch.Generator().manual_seed(15))
    assert detector_blur_of(obj, det, rocking=True) == detector_blur_of(obj, det)
    # the full fit finds the z width too
    fit = blur_fit_of(obj, data)
    assert abs(fit[0] - 1.4) < 0.2 and max(fit[1:3]) < 0.4, fit
    with pytest.raises(ValueError, match="same shape"):
        blur_fit_of(obj[:8], data)


def test_deconvolution_undoes_a_known_blur(blurred) -> None:
    # Richardson-Lucy by the kernel the pattern was blurred with brings it back towards the
    # sharp pattern (the model's input in the blur hypothesis, session 25); bad pixels keep
    # their value and nothing goes negative
    obj, _, _ = blurred
    sharp = pattern(obj) * (1e5 / pattern(obj).max())
    sigma = (0.0, 1.0, 1.0, 0.8)
    data = blur(sharp, sigma)
    mask = torch.zeros(data.shape, dtype=torch.bool)
    mask[:, 2, :] = True
    out = deconvolve(data, sigma, mask, n_iter=30)
    assert out.shape == data.shape and out.dtype == torch.float32 and bool((out >= 0).all())
    assert torch.equal(out[mask], data[mask])
    ok = ~mask
    before = float((data - sharp)[ok].norm() / sharp[ok].norm())
    after = float((out - sharp)[ok].norm() / sharp[ok].norm())
    assert after < 0.6 * before, (before, after)
    # no blur: a copy; bad arguments
    assert torch.equal(deconvolve(data, (0.0, 0.0, 0.0)), data)
    with pytest.raises(ValueError, match="n_iter"):
        deconvolve(data, sigma, n_iter=-1)
    with pytest.raises(ValueError, match="3D"):
        deconvolve(data[0], sigma)


def test_psf_start_makes_the_auto_estimates_local(blurred, small) -> None:
    obj, data, sigma = blurred
    settings = PhasingSettings(runs=1, n_raar=0, n_er=100, shrinkwrap_every=20)
    start = (0.0, 0.6, 0.8)
    res = refine_er(data, None, obj, obj.abs() > 0, n_iter=100, shrinkwrap=False,
                    settings=settings, psf="auto", psf_start=start)
    assert res.psf == "auto" and res.psf_sigma[0] <= 0.3, res.psf_sigma
    assert abs(res.psf_sigma[1] - sigma[1]) < 0.15 and abs(res.psf_sigma[2] - sigma[2]) < 0.15
    # the start is used as is by a run too short to re-estimate
    short = run_conventional(data, settings=settings.model_copy(update={"n_er": 20}),
                             obj_init=obj, support=obj.abs() > 0, detwin=False,
                             psf="auto", psf_start=start)
    assert short.psf_sigma == start
    # the plan: the first estimate is wide unless a start is given
    marks = frozenset({20, 40})
    wide = [st for st in _build_plan(0, 0, 60, 20, 2.0, 0.5, True, False, marks) if st[0] == "psf"]
    local = [st for st in _build_plan(0, 0, 60, 20, 2.0, 0.5, True, False, marks, psf_wide=False)
             if st[0] == "psf"]
    assert wide == [("psf", True), ("psf", False)] and local == [("psf", False)] * 2
    # a fixed or disabled PSF ignores the start
    off = refine_er(data, None, obj, obj.abs() > 0, n_iter=5, psf="off", psf_start=start)
    assert off.psf_sigma == (0.0, 0.0, 0.0)
    for bad in ((0.0, 0.5), (0.0, -1.0, 0.5), (0.0, float("nan"), 0.5)):
        with pytest.raises(ValueError, match="psf_start"):
            refine_er(data, None, obj, n_iter=1, psf="auto", psf_start=bad)


def test_public_operators_refuse_non_finite_arguments_naming_them() -> None:
    """A NaN or infinite amplitude, smoothing width or filter count was taken and gave NaN
    arrays (or an empty support) without a word; a ``previous`` support given as a numpy
    array (``obj`` may be one) was an ``AttributeError``; a count given as text a
    ``TypeError``. Valid arguments give the same bits as before."""
    gen = torch.Generator().manual_seed(8)
    psi = torch.randn(8, 8, 8, dtype=torch.complex64, generator=gen)
    amp = torch.rand(8, 8, 8, generator=gen)
    for bad in (float("nan"), float("inf"), -1.0):
        a = amp.clone()
        a[1, 2, 3] = bad
        with pytest.raises(ValueError, match="amplitude"):
            modulus_projection(psi, a)
        for f in (lambda s: gaussian_smooth(amp, s),
                  lambda s: shrinkwrap_support(psi, s, 0.2)):
            with pytest.raises(ValueError, match="sigma"):
                f(bad)
    ref = psi * amp / psi.abs()
    assert torch.allclose(modulus_projection(psi, amp), ref, rtol=1e-5, atol=1e-6)
    previous = psi.abs() > 0.5
    as_numpy = shrinkwrap_support(psi.numpy(), 1.0, 0.2, previous=previous.numpy())
    assert torch.equal(as_numpy, shrinkwrap_support(psi, 1.0, 0.2, previous=previous))
    intensity = (amp * 100).square()
    for bad in ("3", float("nan"), 0.0, None):
        with pytest.raises(ValueError, match="counts"):
            wiener_filter(psi, intensity, counts=bad)
    assert torch.equal(wiener_filter(psi, intensity, counts=np.float32(3.0)),
                       wiener_filter(psi, intensity, counts=3.0))
