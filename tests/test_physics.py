"""Conventions of bcdi_stream.physics, geometry, arrays and config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bcdi_stream import physics
from bcdi_stream.analysis import strain
from bcdi_stream.arrays import as_tensor, resolve_device, to_numpy
from bcdi_stream.config import Settings, load_settings
from bcdi_stream.geometry import Geometry


def _obj(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    amp = torch.rand(n, n, n, generator=g)
    ph = torch.rand(n, n, n, generator=g) * 6
    return torch.polar(amp, ph)


@pytest.mark.parametrize("n", [8, 9, 16])
def test_centered_fft_roundtrip_and_modulus(n: int) -> None:
    x = _obj(n)
    psi = physics.fft_centered(x)
    assert torch.allclose(physics.ifft_centered(psi), x, atol=1e-5)
    # A real-space shift does not change the modulus: phasing may skip the shifts.
    # (in ifftshift layout for the reciprocal space).
    assert torch.allclose(torch.fft.ifftshift(psi.abs()), torch.fft.fftn(x).abs(),
                          rtol=1e-4, atol=1e-4)


def test_forward_kernel_sign() -> None:
    # A point at +1 voxel along x from the centre gives psi(q) = exp(-2πi q/N):
    # the kernel is e^{-iqr}.
    n = 8
    x = torch.zeros(n, n, n, dtype=torch.complex64)
    x[n // 2, n // 2, n // 2 + 1] = 1
    psi = physics.fft_centered(x)
    q = torch.arange(n) - n // 2
    expected = torch.exp(-2j * math.pi * q / n).to(torch.complex64)
    assert torch.allclose(psi[n // 2, n // 2], expected, atol=1e-5)


@pytest.mark.parametrize("n", [8, 9, 16])
def test_twin_conjugates_reciprocal_phase(n: int) -> None:
    x = _obj(n)
    t = physics.twin(x)
    psi, psi_t = physics.fft_centered(x), physics.fft_centered(t)
    assert torch.allclose(psi_t, psi.conj(), atol=1e-4)
    assert torch.allclose(physics.twin(t), x, atol=1e-5)
    # The twin of a point at centre+d sits at centre-d (a plain flip would be off by one).
    p = torch.zeros(n, n, n, dtype=torch.complex64)
    p[n // 2 + 1, n // 2 - 2, n // 2 + 3] = 1j
    tp = physics.twin(p)
    idx = np.unravel_index(int(tp.abs().argmax()), tp.shape)
    assert tuple(int(i) for i in idx) == (n // 2 - 1, n // 2 + 2, n // 2 - 3)
    assert torch.allclose(tp[idx], torch.tensor(-1j, dtype=torch.complex64), atol=1e-5)


def test_fourier_shift_integer_is_roll_and_subvoxel_moves_centroid() -> None:
    x = _obj(16)
    assert torch.allclose(physics.fourier_shift(x, (1, -2, 3)),
                          torch.roll(x, (1, -2, 3), dims=(0, 1, 2)), atol=1e-5)
    blob = torch.zeros(32, 32, 32)
    blob[12:20, 10:18, 14:22] = 1
    c0 = physics.centroid(blob)
    moved = physics.fourier_shift(blob, (0.3, -0.25, 0.5)).abs()
    c1 = physics.centroid(moved**2)
    assert torch.allclose(c1 - c0, torch.tensor([0.3, -0.25, 0.5], dtype=torch.float64), atol=0.05)
    with pytest.raises(ValueError, match="shift"):
        physics.fourier_shift(x, (1, 2))


def test_centroid_batched_and_empty() -> None:
    w = torch.zeros(2, 8, 8, 8)
    w[0, 1, 2, 3] = 1
    w[1, 4, 5, 6] = 2
    assert physics.centroid(w).tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="weights"):
        physics.centroid(torch.zeros(4, 4, 4))


def test_periodic_centroid_counts_an_object_split_across_the_edge_whole() -> None:
    w = torch.zeros(32, 40, 36)
    w[10:20, 12:30, 5:20] = 1
    w[14, 20, 8] = 3  # asymmetric, so a wrong centre shows
    # nothing touches both ends: centroid()'s result, bit for bit
    assert torch.equal(physics.periodic_centroid(w), physics.centroid(w))
    for roll in [(0, 20, 0), (16, 20, 18), (-9, -11, 30)]:
        split = torch.roll(w, roll, dims=(0, 1, 2))
        c = physics.periodic_centroid(split)
        shift = [round(n // 2 - float(ci)) for n, ci in zip(w.shape, c, strict=True)]
        centred = torch.roll(split, shift, dims=(0, 1, 2))
        expected = [round(n // 2 - float(ci)) for n, ci in zip(w.shape, physics.centroid(w),
                                                               strict=True)]
        assert torch.equal(centred, torch.roll(w, expected, dims=(0, 1, 2)))
    # an axis filled end to end has no gap to find: the plain centroid
    full = torch.ones(4, 6, 8)
    assert torch.equal(physics.periodic_centroid(full), physics.centroid(full))
    with pytest.raises(ValueError, match="weights"):
        physics.periodic_centroid(torch.ones(2, 4, 4, 4))


def test_tensile_strain_is_positive_when_g_hat_points_to_decreasing_q() -> None:
    """The documented physical reading of the sign (physics module, "What the sign means")."""
    a, eps, g = 3.924e-10, 5e-3, 2 * np.pi / 3.924e-10
    # atoms of a lattice stretched by eps along G: the peak sits at |Q| < |G|, either kernel
    r = np.arange(200) * a * (1 + eps)
    q = np.linspace(-0.03, 0.03, 2001) * g
    for sign in (-1, 1):
        peak = q[np.argmax(np.abs(np.exp(sign * 1j * np.outer(g + q, r)).sum(1)))]
        assert peak / g == pytest.approx(1 / (1 + eps) - 1, abs=2e-4)
    # the same crystal under the package's conventions: eps > 0, intensity at +q along g_hat
    n, d = 64, 5e-9
    x = (torch.arange(n, dtype=torch.float64) - n // 2) * d
    inside = (x.abs() < 14 * d).double()
    obj = torch.polar(inside, g * eps * x).reshape(1, 1, n).expand(4, 4, n).clone()
    eps_code = strain(obj, obj.abs() > 0, (0, 0, 1), (d, d, d), g)
    assert float(eps_code[obj.abs() > 0].mean()) == pytest.approx(eps, rel=1e-3)
    profile = (physics.fft_centered(obj).abs() ** 2).sum((0, 1))
    assert int(torch.argmax(profile)) - n // 2 > 0  # so +g_hat is the direction of smaller |Q|


def test_geometry_pt111() -> None:
    g = Geometry(energy_kev=9.0, detector_distance=1.0, pixel_size=55e-6, angular_step_deg=0.01,
                 reflection=(1, 1, 1), lattice_constant=3.924e-10, g_hat=(0, 2, 0))
    assert g.g_hat == (0.0, 1.0, 0.0)
    assert g.bragg_angle_deg == pytest.approx(17.70, abs=0.01)
    vz, vy, _vx = g.voxel_size((64, 64, 64))
    lam = physics.wavelength(9.0)
    assert vy == pytest.approx(lam * 1.0 / (64 * 55e-6))
    assert vz == pytest.approx(2 * math.pi / (64 * g.g_norm * math.radians(0.01)))
    assert Geometry.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError, match="pixel_size"):
        Geometry(9.0, 1.0, -1.0, 0.01)
    with pytest.raises(ValueError, match="energy_kev"):
        Geometry.from_dict({"detector_distance": 1})
    with pytest.raises(ValueError, match="not reachable"):
        Geometry(1.0, 1.0, 55e-6, 0.01, reflection=(4, 4, 4))


def test_as_tensor_inputs() -> None:
    a = np.arange(27, dtype=">u4").reshape(3, 3, 3)
    t = as_tensor(a, dtype=torch.float32)
    assert t.dtype == torch.float32 and t[2, 2, 2] == 26
    ro = np.ones((2, 2, 2))
    ro.flags.writeable = False
    assert as_tensor(ro).sum() == 8
    assert as_tensor(torch.ones(2)).sum() == 2
    assert to_numpy(as_tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="convert"):
        as_tensor(object())
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("nonsense")


def test_settings_env_overrides_file(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "bcdi.toml"
    cfg.write_text('device = "cpu"\nseed = 3\n[phasing]\nruns = 7\nn_er = 11\n')
    s = load_settings(cfg)
    assert (s.device, s.seed, s.phasing.runs, s.phasing.n_er) == ("cpu", 3, 7, 11)
    monkeypatch.setenv("BCDI_PHASING__RUNS", "5")
    monkeypatch.setenv("BCDI_SEED", "9")
    s = load_settings(cfg)
    assert (s.seed, s.phasing.runs, s.phasing.n_er) == (9, 5, 11)
    assert Settings().phasing.runs == 5
    with pytest.raises(ValueError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_settings_name_the_replaced_fallback_key(tmp_path, monkeypatch) -> None:
    """The LLK trigger of ``auto`` is gone: its old key fails loudly instead of being ignored."""
    cfg = tmp_path / "bcdi.toml"
    cfg.write_text("[ai]\nfallback_llk = 3.0\n")
    with pytest.raises(ValueError, match=r"replaced by ai\.fallback_misfit"):
        load_settings(cfg)
    monkeypatch.setenv("BCDI_AI__FALLBACK_LLK", "3")
    with pytest.raises(ValueError, match="BCDI_AI__FALLBACK_MISFIT"):
        load_settings()
    monkeypatch.delenv("BCDI_AI__FALLBACK_LLK")
    monkeypatch.setenv("BCDI_AI__FALLBACK_MISFIT", "0.004")
    assert load_settings().ai.fallback_misfit == 0.004


@pytest.mark.parametrize("shift", [(0.0, 2.0, -3.0), (1.0, 0.0, 5.0)])
def test_shift_ramp_moves_the_diffraction_pattern(shift) -> None:
    x = _obj(16)
    ramp = physics.shift_ramp(x.shape, torch.tensor(shift))
    assert ramp.dtype == torch.complex64 and ramp[8, 8, 8] == 1
    moved = physics.fft_centered(x * ramp)
    rolled = torch.roll(physics.fft_centered(x), tuple(int(s) for s in shift), (0, 1, 2))
    assert torch.allclose(moved, rolled, atol=1e-3 * float(rolled.abs().max()))
    with pytest.raises(ValueError, match="shift"):
        physics.shift_ramp(x.shape, torch.zeros(2))


@pytest.mark.parametrize("n", [8, 9])
def test_reflect_about_the_centre_reflects_the_pattern(n: int) -> None:
    g = torch.Generator().manual_seed(0)
    rho = torch.randn((n, n, n), generator=g, dtype=torch.complex64)
    for axes in ([0], [1, 2], [0, 1, 2]):
        # reflecting the object reflects its diffraction pattern (and phase) along the same axes
        assert torch.allclose(physics.fft_centered(physics.reflect(rho, axes)),
                              physics.reflect(physics.fft_centered(rho), axes), atol=1e-4)
        assert torch.equal(physics.reflect(physics.reflect(rho, axes), axes), rho)
    # the centre voxel stays put; all three axes and a conjugate make the twin
    assert physics.reflect(rho, [0, 1, 2])[n // 2, n // 2, n // 2] == rho[n // 2, n // 2, n // 2]
    assert torch.allclose(physics.reflect(rho.conj(), [0, 1, 2]), physics.twin(rho), atol=1e-5)
    assert physics.reflect(rho, []) is rho
    with pytest.raises(ValueError, match="axes"):
        physics.reflect(rho, [3])
    with pytest.raises(ValueError, match="axes"):
        physics.reflect(rho, [1, 1])
    assert [physics.reflection_axes(c) for c in (0, 1, 6, 7)] == [(), (0,), (1, 2), (0, 1, 2)]
    with pytest.raises(ValueError, match="code"):
        physics.reflection_axes(8)


_GEOMETRY = {"energy_kev": 9.0, "detector_distance": 1.0, "pixel_size": 55e-6,
             "angular_step_deg": 0.01}


@pytest.mark.parametrize(
    ("changes", "name"),
    [({"energy_kev": True}, "energy_kev"), ({"energy_kev": math.inf}, "energy_kev"),
     ({"detector_distance": math.inf}, "detector_distance"),
     ({"pixel_size": math.nan}, "pixel_size"),
     ({"angular_step_deg": "0.01"}, "angular_step_deg"), ({"reflection": 111}, "reflection"),
     ({"reflection": "111"}, "reflection"), ({"reflection": ("a", 1, 1)}, "reflection"),
     ({"reflection": (1.5, 1, 1)}, "reflection"), ({"g_hat": (math.nan, 0, 0)}, "g_hat"),
     ({"g_hat": (math.inf, 0, 0)}, "g_hat"), ({"g_hat": "abc"}, "g_hat"),
     ({"g_hat": (True, 0, 0)}, "g_hat")],
)
def test_geometry_rejects_bad_values_naming_them(changes: dict, name: str) -> None:
    """Bools, non-finite numbers, strings and fractional Miller indices were accepted (an
    infinite distance, g_hat all NaN, (1.5, 1, 1) truncated to (1, 1, 1)) or failed with a
    TypeError that named nothing."""
    with pytest.raises(ValueError, match=name) as err:
        Geometry(**{**_GEOMETRY, **changes})
    assert "\n" not in str(err.value)


def test_geometry_accepts_integral_indices_and_arrays() -> None:
    g = Geometry(**_GEOMETRY, reflection=np.array([2, 0, 0]), g_hat=np.array([0.0, 3.0, 0.0]))
    assert g.reflection == (2, 0, 0) and g.g_hat == (0.0, 1.0, 0.0)
    assert Geometry(**_GEOMETRY, reflection=(1.0, 1.0, 1.0)).reflection == (1, 1, 1)


@pytest.mark.parametrize(
    ("d", "name"),
    [(5, "d"), ({**_GEOMETRY, "energy_kev": "abc"}, "energy_kev"),
     ({**_GEOMETRY, "pixel_size": None}, "pixel_size"),
     ({**_GEOMETRY, "detector_distance": True}, "detector_distance"),
     ({**_GEOMETRY, "reflection": 5}, "reflection"),
     ({**_GEOMETRY, "reflection": [1, "x", 1]}, r"reflection\[1\]"),
     ({**_GEOMETRY, "reflection": [1, 1.5, 1]}, r"reflection\[1\]"),
     ({**_GEOMETRY, "lattice_constant": [1]}, "lattice_constant"),
     ({**_GEOMETRY, "g_hat": [0, None, 1]}, r"g_hat\[1\]")],
)
def test_geometry_from_dict_names_the_bad_key(d: object, name: str) -> None:
    """Start-document metadata: TypeErrors and bare "could not convert string to float" became
    one-line ValueErrors naming the key."""
    with pytest.raises(ValueError, match=name) as err:
        Geometry.from_dict(d)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    ok = Geometry.from_dict({**_GEOMETRY, "energy_kev": "9", "reflection": ["1", "1", "1"]})
    assert ok.energy_kev == 9.0 and ok.reflection == (1, 1, 1)  # JSON-ish strings still work


def test_geometry_and_the_beamline_import_without_torch() -> None:
    """Geometries (and the simulated beamline, which builds a default one when imported) need
    only the plain-number diffraction helpers (bcdi_stream.diffraction), not torch (~1.5 s):
    a profile's devices load fast; physics re-exports the same functions."""
    import subprocess
    import sys

    from bcdi_stream import diffraction, physics

    assert physics.bragg_angle is diffraction.bragg_angle
    assert physics.voxel_size is diffraction.voxel_size
    code = ("import sys, bcdi_stream.geometry, bcdi_stream.beamline; "
            "g = bcdi_stream.geometry.Geometry(9.0, 1.0, 55e-6, 0.01); g.voxel_size((8, 8, 8)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
