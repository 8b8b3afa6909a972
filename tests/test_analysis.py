"""Post-processing and metrics: invariances, wrap-free gradients, strain units and sign."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bcdi_stream.analysis import (
    Metrics,
    align_to_truth,
    center_object,
    choose_twin,
    compare,
    displacement,
    estimate_phase_ramp,
    mirror,
    phase_gradient,
    phase_rmse,
    postprocess,
    remove_phase_offset,
    remove_phase_ramp,
    strain,
    strain_rmse,
    support_from_amplitude,
    support_iou,
    truth_phase_rms,
    unwrap_phase,
)
from bcdi_stream.physics import (
    centroid,
    fft_centered,
    fourier_shift,
    scattering_vector_norm,
    twin,
)

N = 24
DIMS = (-3, -2, -1)


def _grid(n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r = torch.arange(n, dtype=torch.float64) - n // 2
    return torch.meshgrid(r, r, r, indexing="ij")


def _polar(amp: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    return torch.polar(amp.to(torch.float64), phase.to(torch.float64)).to(torch.complex64)


@pytest.fixture(scope="module")
def crystal() -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric strained crystal (ellipsoid + off-centre lobe), support ≤ N/2."""
    z, y, x = _grid()
    support = ((z / 5) ** 2 + (y / 6) ** 2 + (x / 4) ** 2 <= 1) | (
        (z - 2) ** 2 + (y - 4) ** 2 + (x + 3) ** 2 <= 6
    )
    phase = 0.9 * torch.sin(0.35 * y + 0.2) + 0.05 * (x + 1) ** 2 - 0.2 * z * y / 3
    amp = support * (1.0 + 0.1 * torch.cos(0.3 * x))
    return _polar(amp, phase), support


def _ramp(t: torch.Tensor, g: tuple[float, float, float], c: float = 0.0) -> torch.Tensor:
    z, y, x = _grid(t.shape[-1])
    return t * _polar(torch.ones_like(z), g[0] * z + g[1] * y + g[2] * x + c)


# -------------------------------------------------------------------------------------------
# invariances of the metrics
# -------------------------------------------------------------------------------------------
TRANSFORMS = {
    "identity": (lambda t: t, False, 1e-4),
    "offset": (lambda t: t * complex(math.cos(1.3), math.sin(1.3)), False, 1e-4),
    "twin": (twin, True, 1e-4),
    "roll": (lambda t: torch.roll(t, (2, -3, 1), DIMS), False, 1e-4),
    "ramp": (lambda t: _ramp(t, (0.3, -0.2, 0.45)), False, 1e-4),
    "roll+ramp+offset": (
        lambda t: torch.roll(_ramp(t, (-0.25, 0.4, 0.1), 2.0), (-1, 2, 3), DIMS),
        False,
        1e-4,
    ),
    "twin(roll+ramp+offset)": (
        lambda t: twin(torch.roll(_ramp(t, (0.3, -0.2, 0.45), 1.1), (1, 2, -2), DIMS)),
        True,
        1e-4,
    ),
    "roll(twin)*ramp": (
        lambda t: _ramp(torch.roll(twin(t), (0, -2, 1), DIMS), (0.1, 0.2, -0.3), -0.7),
        True,
        1e-4,
    ),
    "subvoxel shift": (lambda t: fourier_shift(t, (0.3, -0.4, 0.25)), False, 5e-3),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_metrics_invariant_to_ambiguities(crystal, name):
    truth, support = crystal
    fn, is_twin, tol = TRANSFORMS[name]
    recon = fn(truth)
    m = compare(recon, truth, support)
    assert isinstance(m, Metrics)
    assert m.phase_rmse < tol
    assert m.twin is is_twin
    assert m.support_iou > 0.95
    assert m.strain_rmse < 10 * tol
    assert m.success
    d = m.to_dict()
    assert d["twin"] is is_twin and isinstance(d["shift"], list)


def test_align_reports_shift_ramp_and_offset(crystal):
    truth, support = crystal
    recon = torch.roll(_ramp(truth, (0.3, -0.2, 0.45), 0.5), (2, -3, 1), DIMS)
    aligned, info = align_to_truth(recon, truth, support, subpixel=False)
    assert info["shift"] == (-2.0, 3.0, -1.0)
    assert np.allclose(info["ramp"], (0.3, -0.2, 0.45), atol=1e-5)
    assert phase_rmse(aligned, truth, support) < 1e-4
    assert info["coherence"] > 0.9999


def test_recon_support_follows_twin_and_shift(crystal):
    truth, support = crystal
    recon = torch.roll(twin(truth), (1, -2, 2), DIMS)
    recon_support = torch.roll(mirror(support), (1, -2, 2), DIMS)
    m = compare(recon, truth, support, recon_support=recon_support)
    assert m.twin and m.support_iou == 1.0


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_wrong_phase_is_not_a_success(crystal, sigma):
    truth, support = crystal
    z, y, x = _grid()
    wrong = _polar(truth.abs(), torch.angle(truth) + sigma * torch.sin(0.9 * x * z + y))
    m = compare(wrong, truth, support)
    assert m.phase_rmse > 0.3
    assert not m.success


def test_an_empty_reconstruction_fails(crystal):
    truth, support = crystal
    m = compare(torch.zeros_like(truth), truth, support)
    assert m.phase_rmse == pytest.approx(math.pi / math.sqrt(3), rel=1e-6)
    assert m.support_iou == 0.0 and not m.success


def test_flat_phase_scores_the_truth_phase_spread(crystal):
    truth, support = crystal
    spread = truth_phase_rms(truth, support)
    assert spread > 0.3
    m = compare(truth.abs().to(torch.complex64), truth, support, relative_threshold=0.5)
    assert m.phase_rmse == pytest.approx(spread, rel=0.1)
    assert not m.success
    assert m.truth_phase_rms == pytest.approx(spread)


@pytest.mark.parametrize("delta", [0.0, 0.2, -0.7, 3.0])
def test_phase_rmse_of_a_constant_error(crystal, delta):
    truth, support = crystal
    recon = truth * complex(math.cos(delta), math.sin(delta))
    assert phase_rmse(recon, truth, support) == pytest.approx(abs(delta), abs=1e-5)


def test_phase_rmse_is_weighted_by_the_truth_amplitude():
    truth = torch.ones(8, 8, 8, dtype=torch.complex64)
    truth[:4] *= 3.0
    support = torch.ones(8, 8, 8, dtype=torch.bool)
    recon = truth.clone()
    recon[4:] *= complex(math.cos(0.4), math.sin(0.4))  # error only where |truth| = 1
    expected = math.sqrt(0.4**2 * 1 / (3 + 1))
    assert phase_rmse(recon, truth, support) == pytest.approx(expected, rel=1e-5)


IOU_CASES = [
    ("identical", (slice(2, 6),), (slice(2, 6),), 1.0),
    ("disjoint", (slice(0, 2),), (slice(4, 6),), 0.0),
    ("half", (slice(0, 4),), (slice(2, 6),), 2 / 6),
    ("nested", (slice(0, 8),), (slice(2, 6),), 0.5),
    ("both empty", (slice(0, 0),), (slice(0, 0),), 1.0),
]


@pytest.mark.parametrize(("name", "sa", "sb", "expected"), IOU_CASES, ids=[c[0] for c in IOU_CASES])
def test_support_iou(name, sa, sb, expected):
    a = np.zeros((8, 8, 8), dtype=np.uint8)
    b = torch.zeros(8, 8, 8, dtype=torch.bool)
    a[sa] = 1
    b[sb] = True
    assert support_iou(a, b) == pytest.approx(expected)


# -------------------------------------------------------------------------------------------
# wrap-free gradient, unwrapping, strain
# -------------------------------------------------------------------------------------------
def _box(n: int, half: tuple[int, int, int]) -> torch.Tensor:
    z, y, x = _grid(n)
    return (z.abs() <= half[0]) & (y.abs() <= half[1]) & (x.abs() <= half[2])


def test_phase_gradient_is_wrap_free():
    """φ = 2y + 0.03y²: ~8 wraps over the crystal, steps up to 2.7 rad per voxel."""
    n = 32
    _z, y, _x = _grid(n)
    support = _box(n, (5, 12, 6))
    phi = 2.0 * y + 0.03 * y**2
    obj = _polar(support.double(), phi)
    assert float(phi[support].max() - phi[support].min()) > 7 * 2 * math.pi
    grad = phase_gradient(obj, support=support)
    assert grad.shape == (3, n, n, n) and grad.dtype == torch.float32
    interior = support & (y.abs() < 12)
    expected = (2.0 + 0.06 * y).float()
    assert torch.allclose(grad[1][interior], expected[interior], atol=1e-4)
    edge = support & (y.abs() == 12)
    # one-sided differences at the support edge: exact slope of the chord
    one_sided = (2.0 + 0.03 * (2 * y.abs() - 1) * torch.sign(y)).float()
    assert torch.allclose(grad[1][edge], one_sided[edge], atol=1e-4)
    assert torch.allclose(grad[0][support], torch.zeros(()), atol=1e-5)
    assert torch.isnan(grad[:, ~support]).all()
    # the gradient is in rad per unit of spacing
    g2 = phase_gradient(obj, spacing=(1.0, 0.5, 1.0), support=support)
    assert torch.allclose(g2[1][interior], 2 * expected[interior], atol=2e-4)


def test_unwrap_and_displacement_across_many_wraps():
    n = 32
    z, y, x = _grid(n)
    support = _box(n, (5, 12, 6)) & ~((y == 3) & (x.abs() <= 6) & (z > 0))  # a notch
    phi = 2.0 * y + 0.03 * y**2 + 0.2 * x
    obj = _polar(support.double() * (1 + 0.2 * torch.cos(x)), phi)
    u = unwrap_phase(obj, support)
    diff = (u.double() - phi)[support]
    k = diff / (2 * math.pi)
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert float(k.max() - k.min()) < 1e-3  # one constant multiple of 2π
    assert torch.isnan(u[~support]).all()
    g = scattering_vector_norm((1, 1, 1), 3.924e-10)
    d = displacement(obj, support, g, remove_ramp=False)
    assert torch.allclose((d.double() * g)[support], u.double()[support], atol=1e-4)


def test_strain_of_a_quadratic_displacement_field():
    """u = a·y² (metres) → ε = 2a·y, dimensionless, with anisotropic voxels."""
    n = 32
    _z, y, _x = _grid(n)
    vs = (3e-9, 2e-9, 4e-9)
    g = scattering_vector_norm((1, 1, 1), 3.924e-10)
    a = 2.8 / (g * 2 * 12 * vs[1] ** 2)  # phase step 2.8 rad/voxel at the edge (> π/2)
    ym = y * vs[1]
    support = _box(n, (4, 12, 5))
    obj = torch.polar(support.double(), g * a * ym**2)  # complex128 stays complex128
    eps = strain(obj, support, (0, 1, 0), vs, g)
    assert eps.dtype == torch.float32
    interior = support & (y.abs() < 12)
    expected = 2 * a * ym
    assert float(expected.abs().max()) > 1e-3
    assert torch.allclose(eps.double()[interior], expected[interior], rtol=1e-4, atol=1e-9)
    edge = support & (y.abs() == 12)
    err = (eps.double() - expected).abs()[edge]
    assert float(err.max()) == pytest.approx(a * vs[1], rel=1e-3)  # one-sided: off by a·dy
    assert torch.isnan(eps[~support]).all()
    # Ĝ along z sees no strain; a tilted Ĝ sees the projection
    assert torch.allclose(strain(obj, support, (1, 0, 0), vs, g)[support], torch.zeros(()))
    tilted = strain(obj, support, (1, 1, 0), vs, g)
    assert torch.allclose(
        tilted.double()[interior], expected[interior] / math.sqrt(2), rtol=1e-4, atol=1e-9
    )


def test_strain_sign_convention_with_an_asymmetric_crystal():
    """φ increasing along Ĝ → ε > 0 and intensity at +q; twin: same ε mirrored; conj: −ε."""
    n = 24
    z, y, x = _grid(n)
    support = ((z / 4) ** 2 + (y / 7) ** 2 + (x / 5) ** 2 <= 1) | (
        (z + 2) ** 2 + (y - 3) ** 2 + (x - 3) ** 2 <= 5
    )
    assert not torch.equal(support, mirror(support))  # asymmetric
    phi = 0.4 * y + 0.01 * y**2  # dφ/dy > 0 on the crystal
    obj = _polar(support * (1 + 0.3 * (x + 5) / 10), phi)
    eps = strain(obj, support)
    finite = support & torch.isfinite(eps)
    assert bool((eps[finite] > 0).all())
    # the diffracted intensity sits at +q along Ĝ (kernel exp(-i q·r))
    intensity = fft_centered(obj).abs() ** 2
    assert float(centroid(intensity)[1]) > n // 2 + 0.5
    # twin: same strain, same sign, at the mirrored position
    eps_twin = strain(twin(obj), mirror(support))
    assert torch.allclose(mirror(eps_twin), eps, atol=1e-5, equal_nan=True)
    # conjugate (the opposite FFT convention): the opposite sign
    assert torch.allclose(strain(obj.conj(), support), -eps, atol=1e-6, equal_nan=True)
    # and Ĝ reversed flips it too
    assert torch.allclose(strain(obj, support, (0, -1, 0)), -eps, atol=1e-6, equal_nan=True)


def test_strain_rmse_detects_a_strain_error(crystal):
    truth, support = crystal
    _z, y, _x = _grid()
    assert strain_rmse(_ramp(truth, (0.1, 0.2, 0.3)), truth, support) < 1e-4
    bent = truth * _polar(torch.ones_like(y), 0.02 * y**2)
    assert strain_rmse(bent, truth, support, align=False) > 0.05


# -------------------------------------------------------------------------------------------
# post-processing
# -------------------------------------------------------------------------------------------
def test_ramp_and_offset_removal(crystal):
    truth, support = crystal
    obj = _ramp(truth, (0.3, -0.5, 0.2), 1.0)
    g = estimate_phase_ramp(obj, support) - estimate_phase_ramp(truth, support)
    assert torch.allclose(g, torch.tensor([0.3, -0.5, 0.2], dtype=torch.float64), atol=1e-5)
    a = remove_phase_ramp(obj, support)
    b = remove_phase_ramp(truth, support)
    assert torch.allclose(a, b, atol=1e-4)
    assert torch.allclose(estimate_phase_ramp(a, support), torch.zeros(3, dtype=torch.float64),
                          atol=1e-6)
    mean = torch.angle((a * support).sum())
    assert abs(float(mean)) < 1e-5
    off = remove_phase_offset(truth * 1j, support)
    assert abs(float(torch.angle((off * support).sum()))) < 1e-5


def test_batched_inputs(crystal):
    truth, support = crystal
    batch = torch.stack([truth, _ramp(truth, (0.2, 0.1, 0.0))])
    out = remove_phase_ramp(batch, support)
    assert out.shape == batch.shape
    assert torch.allclose(out[0], out[1], atol=1e-4)
    eps = strain(batch, support)
    assert eps.shape == batch.shape
    ok = torch.isfinite(eps[0])
    assert int(ok.sum()) > 0.9 * int(support.sum())
    assert torch.allclose((eps[1] - eps[0])[ok], torch.tensor(0.1), atol=1e-5)
    assert phase_gradient(batch, support=support).shape == (2, 3, N, N, N)


def test_center_object_and_support(crystal):
    truth, support = crystal
    obj = torch.roll(truth, (3, -2, 4), DIMS)
    centred, shift = center_object(obj)
    c = centroid(centred.abs())
    assert torch.all((c - N // 2).abs() <= 0.5)
    assert isinstance(shift, tuple) and all(isinstance(s, int) for s in shift)
    assert torch.equal(centred, torch.roll(obj, shift, DIMS))
    # split across the periodic grid's edge, the object is centred whole
    split = torch.roll(truth, (0, N // 2, N // 2 - 1), DIMS)
    whole, _ = center_object(obj, support=torch.roll(support, (3, -2, 4), DIMS))
    rejoined, _ = center_object(split, support=torch.roll(support, (0, N // 2, N // 2 - 1), DIMS))
    assert torch.equal(rejoined, whole)
    noisy = obj.clone()
    noisy[0, 0, 0] = 0.9  # an isolated bright voxel
    s1 = support_from_amplitude(noisy, 0.2)
    s2 = support_from_amplitude(noisy, 0.2, largest_component=True)
    assert bool(s1[0, 0, 0]) and not bool(s2[0, 0, 0])
    assert int(s2.sum()) == int(support.sum())
    assert not support_from_amplitude(torch.zeros(4, 4, 4)).any()


def test_choose_twin(crystal):
    truth, _ = crystal
    obj, flag = choose_twin(twin(truth))
    assert not flag and torch.equal(obj, twin(truth))
    obj, flag = choose_twin(torch.roll(twin(truth), (1, 0, -1), DIMS), reference=truth)
    assert flag
    _, flag = choose_twin(_ramp(truth, (0.1, 0.0, 0.0)), reference=truth)
    assert not flag


def test_postprocess(crystal):
    truth, support = crystal
    g = scattering_vector_norm((1, 1, 1), 3.924e-10)
    vs = (5e-9, 5e-9, 5e-9)
    recon = torch.roll(_ramp(truth, (0.2, -0.3, 0.1), 0.8), (2, 1, -3), DIMS)
    pp = postprocess(recon, g_norm=g, voxel_size=vs)
    assert pp.meta["units"]["strain"] == "1" and pp.meta["units"]["displacement"] == "m"
    assert pp.amplitude.dtype == torch.float32 and float(pp.amplitude.max()) == 1.0
    for name in ("phase", "displacement", "strain"):
        arr = getattr(pp, name)
        assert arr.dtype == torch.float32 and arr.shape == truth.shape
        assert torch.isnan(arr[~pp.support]).all()
    assert torch.isfinite(pp.phase[pp.support]).all()
    assert torch.isfinite(pp.displacement[pp.support]).all()
    assert int(pp.support.sum()) == int(support.sum())
    assert torch.all((centroid(pp.amplitude * pp.support) - N // 2).abs() <= 0.5)
    assert torch.allclose(estimate_phase_ramp(pp.obj, pp.support), torch.zeros(3,
                          dtype=torch.float64), atol=1e-5)
    assert np.allclose(pp.meta["ramp"], (0.2, -0.3, 0.1), atol=0.2)
    expected = strain(pp.obj, pp.support, (0, 1, 0), vs, g)
    assert torch.allclose(pp.strain, expected, equal_nan=True)
    for key in ("strain_rms", "strain_min", "strain_max", "strain_mean"):
        assert math.isfinite(pp.meta[key])
    host = pp.to_numpy()
    assert host["support"].dtype == np.uint8 and host["strain"].dtype == np.float32
    # without |G| and voxel size: phase units
    pp2 = postprocess(recon)
    assert pp2.meta["units"] == {**pp.meta["units"], "strain": "rad/voxel",
                                 "displacement": "rad"}
    assert torch.allclose(pp2.strain.double() / g / vs[1], pp.strain.double(), rtol=1e-4,
                          equal_nan=True)
    # twin resolved against a reference
    pp3 = postprocess(twin(recon), reference=truth)
    assert pp3.meta["twin"] is True


BAD_PARAMS = [
    ("threshold", lambda t, s: support_from_amplitude(t, 1.5)),
    ("g_hat", lambda t, s: strain(t, s, (0, 0, 0))),
    ("voxel_size", lambda t, s: strain(t, s, (0, 1, 0), (1, -1, 1))),
    ("g_norm", lambda t, s: strain(t, s, (0, 1, 0), (1, 1, 1), 0.0)),
    ("spacing", lambda t, s: phase_gradient(t, spacing=(1, 1))),
    ("support", lambda t, s: strain(t, s[:-1])),
    ("truth_support", lambda t, s: compare(t, t, torch.zeros_like(s))),
    ("recon and truth", lambda t, s: compare(t[:-1], t, s)),
    ("obj", lambda t, s: center_object(torch.zeros_like(t))),
    ("erode", lambda t, s: strain_rmse(t, t, s, erode=-1)),
]


@pytest.mark.parametrize(("name", "call"), BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_bad_parameters_raise_value_error_naming_them(crystal, name, call):
    truth, support = crystal
    with pytest.raises(ValueError, match=name.split()[0]):
        call(truth, support)


# --------------------------------------------------------------------------- crystal support
def _blurred_cube(n: int = 24, side: int = 6, sigma: float = 0.7) -> tuple[torch.Tensor, ...]:
    """A cube of amplitude 1 blurred by a Gaussian (a finite resolution) and its true shape."""
    from bcdi_stream.phasing import gaussian_smooth

    lo = n // 2 - side // 2
    true = torch.zeros((n, n, n), dtype=torch.bool)
    true[lo:lo + side, lo:lo + side, lo:lo + side] = True
    amp = gaussian_smooth(true.to(torch.float32), sigma)
    phase = torch.linspace(0, 1, n)[:, None, None].expand(n, n, n)
    return torch.polar(amp, phase), true


def test_crystal_support_finds_the_edge_a_shrink_wrap_support_overshoots() -> None:
    from bcdi_stream.analysis import crystal_support
    from bcdi_stream.phasing import shrinkwrap_support

    obj, true = _blurred_cube()
    wide = shrinkwrap_support(obj, 0.5, 0.2)
    got = crystal_support(obj, wide)
    assert float(support_iou(wide, true)) < 0.75  # a small crystal: about a voxel too wide
    assert float(support_iou(got, true)) > 0.95


def test_crystal_support_closes_a_dislocation_core_but_not_a_void() -> None:
    from bcdi_stream.analysis import crystal_support

    n = 32
    obj = torch.zeros((n, n, n), dtype=torch.complex64)
    obj[6:26, 6:26, 6:26] = 1.0
    obj[6:26, 10, 12] = 0.05  # the amplitude dip along a dislocation line
    z, y, x = torch.meshgrid(*[torch.arange(n) for _ in range(3)], indexing="ij")
    void = (z - 16) ** 2 + (y - 18) ** 2 + (x - 18) ** 2 <= 9
    obj[void] = 0
    support = obj.abs() > 0
    support[6:26, 10, 12] = True
    got = crystal_support(obj, support)
    assert bool(got[8:24, 10, 12].all())  # the core is closed
    # the void stays open (the closing fills only the staircase corners of its surface)
    assert not bool(got[15:18, 17:20, 17:20].any()) and int((got & void).sum()) < 0.35 * int(
        void.sum())
    assert not bool(got[:6].any())


def test_crystal_support_keeps_the_given_support_when_the_cut_collapses() -> None:
    from bcdi_stream.analysis import crystal_support

    obj, _ = _blurred_cube()
    support = obj.abs() > 0.01
    hot = obj.clone()
    hot[12, 12, 12] = 1e6  # the 100th percentile is one hot voxel: the cut would keep it alone
    assert torch.equal(crystal_support(hot, support, percentile=100.0), support)
    assert int(crystal_support(hot, support).sum()) > 100  # the 90th ignores it
    empty = torch.zeros_like(support)
    assert torch.equal(crystal_support(obj, empty), empty)
    assert torch.equal(crystal_support(torch.zeros_like(obj), support), support)


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.0}, "threshold"),
    ({"threshold": float("nan")}, "threshold"), ({"percentile": 0.0}, "percentile"),
    ({"percentile": 101.0}, "percentile"), ({"percentile": float("nan")}, "percentile"),
])
def test_crystal_support_rejects_bad_parameters(kwargs, word) -> None:
    from bcdi_stream.analysis import crystal_support

    obj, true = _blurred_cube()
    with pytest.raises(ValueError, match=word):
        crystal_support(obj, true, **kwargs)


def test_crystal_support_rejects_bad_shapes() -> None:
    from bcdi_stream.analysis import crystal_support

    obj, true = _blurred_cube()
    with pytest.raises(ValueError, match="3D"):
        crystal_support(obj[None], true)
    with pytest.raises(ValueError, match="support"):
        crystal_support(obj, true[:-1])


# ------------------------------------------------------------------ audit regressions (s33)
def _split(t: torch.Tensor) -> torch.Tensor:
    """Roll by half the grid: the object straddles the periodic edge on every axis."""
    return torch.roll(t, tuple(n // 2 for n in t.shape[-3:]), DIMS)


def test_a_truth_split_across_the_periodic_edge_is_compared_whole(crystal):
    """The ramp is linear over the object, not over the grid's indices: a truth split by the
    periodic edge scored a perfect, ramped reconstruction 1.4 rad and its own phase spread
    0.79 rad instead of 0.21."""
    truth, support = crystal
    recon = _ramp(truth, (0.2, 0.1, -0.1), 0.4)  # centred, with a ramp: a perfect answer
    m = compare(recon, _split(truth), _split(support))
    assert m.phase_rmse < 1e-3 and m.success and m.support_iou > 0.95
    assert truth_phase_rms(_split(truth), _split(support)) == pytest.approx(
        truth_phase_rms(truth, support), rel=1e-4)
    flat = remove_phase_ramp(_split(_ramp(truth, (0.3, 0.0, -0.2))), _split(support))
    assert torch.allclose(flat, _split(remove_phase_ramp(truth, support)), atol=1e-4)


def test_crystal_support_keeps_a_crystal_across_the_periodic_edge() -> None:
    """The closing was not periodic: a crystal touching the grid's edge lost its edge layer,
    one split across it two (IoU 0.83 against the whole cube)."""
    from bcdi_stream.analysis import crystal_support

    obj, _ = _blurred_cube()
    centred = crystal_support(obj, obj.abs() > 0.2)
    for k in (9, 12, 15):  # touching the edge, split across it
        rolled = crystal_support(torch.roll(obj, (k, 0, k), DIMS),
                                 torch.roll(obj.abs() > 0.2, (k, 0, k), DIMS))
        assert torch.equal(rolled, torch.roll(centred, (k, 0, k), DIMS))


def test_zero_amplitude_has_no_phase_for_the_gradient() -> None:
    """A zero-amplitude line inside the support (a dislocation core) halved its neighbours'
    strain (angle(0) = 0 entered the central difference) and gave the core itself 0."""
    n = 24
    _z, y, _x = _grid(n)
    support = _box(n, (6, 6, 6))
    amp = support.double().clone()
    amp[:, n // 2, n // 2 + 2] = 0.0
    eps = strain(_polar(amp, 0.3 * y), support)
    ok = support & (amp > 0)
    assert torch.allclose(eps[ok], torch.tensor(0.3), atol=1e-5)
    assert torch.isnan(eps[support & (amp == 0)]).all()


@pytest.mark.parametrize("shape", [(20, 28, 32), (21, 25, 27), (16, 32, 23)])
def test_metrics_invariances_on_non_cubic_and_odd_grids(shape):
    z, y, x = (torch.arange(n, dtype=torch.float64) - n // 2 for n in shape)
    z, y, x = torch.meshgrid(z, y, x, indexing="ij")
    support = ((z / 4) ** 2 + (y / 6) ** 2 + (x / 5) ** 2 <= 1) | (
        (z - 2) ** 2 + (y - 3) ** 2 + (x + 3) ** 2 <= 5)
    truth = _polar(support * (1 + 0.1 * torch.cos(0.3 * x)),
                   0.9 * torch.sin(0.35 * y + 0.2) + 0.02 * (x + 1) ** 2 - 0.05 * z * y)
    lin = _polar(torch.ones_like(z), 0.3 * z - 0.2 * y + 0.1 * x + 1.0)
    recon = torch.roll(twin(truth * lin), (1, -2, 3), DIMS)
    m = compare(recon, truth, support,
                recon_support=torch.roll(mirror(support), (1, -2, 3), DIMS))
    assert m.twin and m.phase_rmse < 1e-4 and m.support_iou == 1.0 and m.success
    m = compare(fourier_shift(truth, (0.4, -0.3, 0.5)), truth, support)
    assert not m.twin and m.phase_rmse < 5e-3


@pytest.mark.parametrize("where", ["inside", "outside", "everywhere"])
def test_a_reconstruction_with_nans_never_succeeds(crystal, where):
    truth, support = crystal
    recon = truth.clone()
    if where == "inside":
        recon[N // 2, N // 2, N // 2] = float("nan")
    elif where == "outside":
        recon[0, 0, 0] = complex(float("nan"), 0.0)
    else:
        recon[:] = float("nan")
    m = compare(recon, truth, support, recon_support=support)
    assert not m.success
    assert not m.phase_rmse < 0.3  # reported as no phase at all (or NaN), never as a match


def test_strain_of_a_vector_displacement_field_against_the_analytic_gradient():
    """u(r) with three components, φ = |G| Ĝ·u, tilted Ĝ, anisotropic voxels, non-cubic grid:
    ε = Σ_k Ĝ_k ∂(Ĝ·u)/∂r_k in the interior, exactly (central differences of a quadratic)."""
    shape = (20, 26, 30)
    axes = [torch.arange(n, dtype=torch.float64) - n // 2 for n in shape]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    vs = (3e-9, 2e-9, 4e-9)
    g = scattering_vector_norm((1, 1, 1), 3.924e-10)
    gh = torch.tensor([0.3, 0.8, -0.5], dtype=torch.float64)
    gh = gh / gh.norm()
    rz, ry, rx = z * vs[0], y * vs[1], x * vs[2]
    a = 1e6
    u_g = gh[0] * 0.5 * a * rz * ry + gh[1] * 0.4 * a * ry**2 - gh[2] * 0.4 * a * rx * rz
    grad = (gh[0] * 0.5 * a * ry - gh[2] * 0.4 * a * rx, gh[0] * 0.5 * a * rz
            + gh[1] * 0.8 * a * ry, -gh[2] * 0.4 * a * rz)
    expected = sum(gh[k] * grad[k] for k in range(3))
    support = ((z / 6) ** 2 + (y / 9) ** 2 + (x / 10) ** 2 <= 1) & ~((z > 2) & (x > 4))
    obj = torch.polar(support.double(), g * u_g)
    eps = strain(obj, support, tuple(gh.tolist()), vs, g).double()
    interior = support.clone()
    for dim in DIMS:
        interior &= torch.roll(support, 1, dim) & torch.roll(support, -1, dim)
    assert float(expected[interior].abs().max()) > 5e-3
    assert torch.allclose(eps[interior], expected[interior], rtol=0, atol=1e-8)
    d = displacement(obj, support, g, remove_ramp=False).double()
    zero = torch.zeros((), dtype=torch.float64)
    assert torch.allclose(d[support] - u_g[support], zero, atol=1e-13)


def test_strain_rmse_of_a_split_truth_is_that_of_the_whole_one(crystal):
    truth, support = crystal
    bent = truth * _polar(torch.ones(truth.shape, dtype=torch.float64), 0.01 * _grid()[1] ** 2)
    whole = strain_rmse(bent, truth, support, align=False)
    assert whole > 0.01
    assert strain_rmse(_split(bent), _split(truth), _split(support), align=False) == \
        pytest.approx(whole, rel=1e-5)
