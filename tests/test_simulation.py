"""Tests of the strained-crystal simulator (small grids, CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bcdi_stream.physics import centroid, fft_centered
from bcdi_stream.simulation import (
    DISLOCATION_MODELS,
    FAULT_JUMP,
    FAULT_MODELS,
    LOOP_MODELS,
    NEEDLE_ASPECT,
    SHAPES,
    SMOOTH_MODELS,
    STRAIN_MODELS,
    THIN_PLATE,
    CrystalSpec,
    SimulatedBatch,
    SimulatedCrystal,
    simulate_batch,
    simulate_capped,
    simulate_crystal,
)

N = 32
CPU = "cpu"


def _wrap(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def _extent(support: torch.Tensor) -> list[int]:
    out = []
    for ax in range(3):
        prof = support.any(dim=tuple(d for d in range(3) if d != ax))
        idx = torch.nonzero(prof).flatten()
        out.append(int(idx.max() - idx.min() + 1))
    return out


def _assert_valid(sim: SimulatedCrystal, n: int = N) -> None:
    shape = (n, n, n)
    assert sim.intensity.shape == shape and sim.intensity.dtype == torch.float32
    assert sim.obj.shape == shape and sim.obj.dtype == torch.complex64
    assert sim.phase.shape == shape and sim.phase.dtype == torch.float32
    assert sim.support.shape == shape and sim.support.dtype == torch.bool
    assert sim.phase_q.shape == shape and sim.phase_q.dtype == torch.float32
    assert sim.mask.shape == shape and sim.mask.dtype == torch.bool
    assert torch.isfinite(sim.intensity).all() and (sim.intensity >= 0).all()
    assert torch.isfinite(sim.obj).all() and torch.isfinite(sim.phase).all()
    assert int(sim.support.sum()) >= 20
    assert float(sim.intensity.max()) > 0
    json.dumps(sim.meta)  # JSON-able
    ext = _extent(sim.support)
    assert max(ext) <= n / sim.spec.oversampling + 1e-9, (ext, sim.spec.oversampling)
    assert (centroid(sim.obj.abs()) - n // 2).abs().max() < 0.01


# ------------------------------------------------------------------ reproducibility
def test_same_seed_is_bit_identical_and_seeds_differ() -> None:
    a = simulate_crystal(11, n=N, strain="strong", device=CPU)
    b = simulate_crystal(11, n=N, strain="strong", device=CPU)
    c = simulate_crystal(12, n=N, strain="strong", device=CPU)
    assert a.spec == b.spec
    for name in ("intensity", "obj", "phase", "support", "phase_q", "mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.meta == b.meta
    assert not torch.equal(a.intensity, c.intensity)


def test_spec_reproduces_the_crystal_and_round_trips_through_json() -> None:
    spec = CrystalSpec.random(5, n=N, strain="any")
    again = CrystalSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    a = simulate_crystal(spec, device=CPU)
    b = simulate_crystal(again, device=CPU)
    assert torch.equal(a.intensity, b.intensity)
    assert CrystalSpec.random(5, n=N, strain="any") == spec


def test_batch_matches_single_crystals() -> None:
    seeds = [1, 2, 3]
    batch = simulate_batch(seeds, n=N, strain="any", device=CPU)
    assert isinstance(batch, SimulatedBatch) and len(batch) == 3
    assert batch.intensity.shape == (3, N, N, N)
    assert batch.obj.shape == (3, N, N, N) and batch.obj.dtype == torch.complex64
    assert batch.support.dtype == torch.bool and batch.mask.shape == (3, N, N, N)
    for seed, sim in zip(seeds, batch, strict=True):
        one = simulate_crystal(seed, n=N, strain="any", device=CPU)
        assert sim.spec == one.spec
        torch.testing.assert_close(sim.obj, one.obj)
        torch.testing.assert_close(sim.intensity, one.intensity)


def test_capped_simulation_drops_steep_crystals_and_keeps_the_rest_exactly() -> None:
    specs = [CrystalSpec.random(s, n=N, strain="strong") for s in range(6)]
    full = simulate_batch(specs, device=CPU)
    grads = [c.meta["phase_gradient_mean"] for c in full]
    cap = sorted(grads)[2]  # three at or under it, three over
    caps = [cap] * 5 + [None]  # the last one is never dropped
    capped = simulate_capped(specs, caps, device=CPU)
    for c, got, g, k in zip(full, capped, grads, caps, strict=True):
        if k is not None and g > k:
            assert got is None
        else:
            assert got is not None and got.meta == c.meta
            assert torch.equal(got.intensity, c.intensity) and torch.equal(got.obj, c.obj)
    assert sum(c is None for c in capped) == sum(g > cap for g in grads[:5]) >= 2
    with pytest.raises(ValueError, match="max_gradient_mean"):
        simulate_capped(specs, [None], device=CPU)


def test_vectorised_heterogeneous_batch_matches_single_crystals() -> None:
    # one chunk mixing every shape and strain model (the GPU code path, run on the CPU)
    specs = [
        CrystalSpec.random(s, n=N, strain=lvl, shapes=[shape], dislocation_probability=1.0,
                           fault_probability=0.5, loop_probability=0.5)
        for s, (shape, lvl) in enumerate(
            zip(SHAPES, ["weak", "strong", "medium", "strong"] * 2, strict=True)
        )
    ]
    specs.append(specs[0].replace(amp_modulation=0.08, gaps=((2, 3, 2),), blur_sigma=0.7))
    specs.append(CrystalSpec.random(9, n=N, strain="strong", polynomial_probability=1.0))
    kinds = {m["kind"] for s in specs for m in s.strain_models}
    assert kinds == set(STRAIN_MODELS)
    batch = simulate_batch(specs, device=CPU, chunk_size=len(specs))
    for spec, sim in zip(specs, batch, strict=True):
        one = simulate_crystal(spec, device=CPU)
        torch.testing.assert_close(sim.obj, one.obj, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(sim.phase, one.phase, atol=1e-4, rtol=1e-4)
        assert torch.equal(sim.support, one.support) and torch.equal(sim.mask, one.mask)
        assert sim.meta["phase_span"] == pytest.approx(one.meta["phase_span"], rel=1e-5)


def test_batch_accepts_specs_and_overrides() -> None:
    specs = [CrystalSpec(n=N, seed=s) for s in range(2)]
    batch = simulate_batch(specs, device=CPU)
    assert [s.seed for s in batch.specs] == [0, 1]
    clean = simulate_batch([4, 5], n=N, device=CPU, poisson=False, background=0.0)
    assert all(not s.poisson for s in clean.specs)


# ------------------------------------------------------------------ geometry
@pytest.mark.parametrize("seed", range(6))
def test_oversampling_and_exact_centring(seed: int) -> None:
    sim = simulate_crystal(seed, n=N, strain="weak", device=CPU)
    ext = _extent(sim.support)
    assert max(ext) <= N / sim.spec.oversampling
    assert sim.meta["extent"] == ext
    assert (centroid(sim.obj.abs()) - N // 2).abs().max() < 0.01
    assert torch.equal(sim.support, sim.obj.abs() > 0.5)


def test_centring_with_substrate_and_modulation() -> None:
    spec = CrystalSpec(
        n=N,
        shape="truncated_octahedron",
        substrate_cut=0.4,
        substrate_normal=(0.3, -1, 0.2),
        amp_modulation=0.1,
        oversampling=2.5,
        rotation=(0.9, 0.1, 0.3, -0.2),
        seed=3,
    )
    sim = simulate_crystal(spec, device=CPU)
    assert (centroid(sim.obj.abs()) - N // 2).abs().max() < 0.01
    assert max(_extent(sim.support)) <= N / 2.5


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_gives_a_valid_crystal(shape: str) -> None:
    spec = CrystalSpec.random(7, n=N, strain="medium", shapes=[shape])
    assert spec.shape == shape
    _assert_valid(simulate_crystal(spec, device=CPU))


@pytest.mark.parametrize("kind", STRAIN_MODELS)
def test_every_strain_model_gives_a_valid_crystal(kind: str) -> None:
    span = 2.0 if kind in SMOOTH_MODELS else 0.0
    spec = CrystalSpec(
        n=N,
        shape="cuboctahedron",
        oversampling=2.5,
        strain_models=({"kind": kind},),
        phase_span=span,
        rotation=(1.0, 0.2, -0.1, 0.3),
        seed=2,
    )
    sim = simulate_crystal(spec, device=CPU)
    _assert_valid(sim)
    assert sim.meta["strain_models"] == [kind]
    if kind in SMOOTH_MODELS:
        assert sim.meta["phase_span"] == pytest.approx(span, rel=1e-4)
    elif kind in FAULT_MODELS:
        assert len(sim.meta["faults"]) == 1 and not sim.meta["dislocations"]
    elif kind in LOOP_MODELS:
        assert len(sim.meta["loops"]) == 1 and not sim.meta["dislocations"]
    else:
        assert len(sim.meta["dislocations"]) == 1 and not sim.meta["faults"]
        assert not sim.meta["loops"]


def test_random_draws_only_allowed_models() -> None:
    for seed in range(6):
        spec = CrystalSpec.random(seed, n=N, strain="strong", strain_models=["screw"])
        assert [m["kind"] for m in spec.strain_models][:1] == ["screw"]
        assert spec.phase_span == 0.0
        spec = CrystalSpec.random(seed, n=N, strain_models=["interface"], shapes=["cube"])
        assert {m["kind"] for m in spec.strain_models} == {"interface"}


# ------------------------------------------------------------------ forward model
def test_intensity_is_scaled_modulus_squared_and_phase_q_matches() -> None:
    spec = CrystalSpec.random(3, n=N, strain="strong").replace(
        poisson=False, background=0.0, blur_sigma=0.0, gaps=()
    )
    sim = simulate_crystal(spec, device=CPU)
    psi = fft_centered(sim.obj)
    clean = psi.abs() ** 2
    expected = clean * sim.meta["intensity_scale"]
    torch.testing.assert_close(sim.intensity, expected.float(), rtol=1e-4, atol=1e-3)
    assert float(sim.intensity.max()) == pytest.approx(spec.peak_counts, rel=1e-5)
    # the Bragg peak (q = 0) at the grid centre, phase_q = angle(psi) where the field is not ~0
    strong = clean > clean.max() * 1e-8
    diff = _wrap(sim.phase_q - torch.angle(psi))[strong]
    assert diff.abs().max() < 1e-3


def test_bragg_peak_centre_of_mass_at_grid_centre() -> None:
    # the linear phase ramp is removed, so the pattern's centre of mass sits on n // 2
    for seed in range(3):
        sim = simulate_crystal(seed, n=N, strain="weak", device=CPU)
        clean = fft_centered(sim.obj).abs() ** 2
        assert (centroid(clean) - N // 2).abs().max() < 0.25


def test_weak_phase_span_below_pi_inside_support() -> None:
    for seed in range(4):
        sim = simulate_crystal(seed, n=N, strain="weak", device=CPU)
        rho = sim.obj[sim.support]
        ref = torch.angle(rho.sum())
        rel = torch.angle(rho * torch.exp(-1j * ref))
        assert float(rel.max() - rel.min()) < math.pi
        assert sim.meta["phase_span"] < math.pi
        assert not any(m["kind"] in DISLOCATION_MODELS for m in sim.spec.strain_models)
        # the unwrapped phase field agrees with the object
        ph = sim.phase[sim.support]
        assert _wrap(ph - torch.angle(rho)).abs().max() < 1e-3


def test_strong_phase_span_above_4pi_inside_support() -> None:
    for seed in range(4):
        sim = simulate_crystal(seed, n=N, strain="strong", device=CPU)
        ph = sim.phase[sim.support]
        assert float(ph.max() - ph.min()) > 4 * math.pi
        assert sim.meta["phase_span"] == pytest.approx(float(ph.max() - ph.min()), rel=1e-5)
        wrapped = torch.angle(sim.obj[sim.support])
        assert float(wrapped.max() - wrapped.min()) > 1.9 * math.pi  # it wraps


def test_strain_levels_of_random_specs() -> None:
    for seed in range(20):
        assert CrystalSpec.random(seed, n=N, strain="weak").phase_span < math.pi
        assert CrystalSpec.random(seed, n=N, strain="strong").phase_span > 4 * math.pi
        lo, hi = 1.0, 2.0
        assert lo <= CrystalSpec.random(seed, n=N, strain=(lo, hi)).phase_span <= hi
    kinds = [
        m["kind"]
        for s in range(30)
        for m in CrystalSpec.random(s, n=N, strain="strong").strain_models
    ]
    assert set(kinds) & set(DISLOCATION_MODELS), "strong strain should include dislocations"


def _loop_winding(obj: torch.Tensor, point: list[float], r: int = 3) -> float:
    """Winding number of angle(obj) around a line along z through `point`, in the y→x sense."""
    z, cy, cx = (round(v) for v in point)
    pts = [(cy - r, x) for x in range(cx - r, cx + r)]
    pts += [(y, cx + r) for y in range(cy - r, cy + r)]
    pts += [(cy + r, x) for x in range(cx + r, cx - r, -1)]
    pts += [(y, cx - r) for y in range(cy + r, cy - r, -1)]
    ph = torch.stack([torch.angle(obj[z, y, x]) for y, x in pts])
    steps = _wrap(torch.diff(torch.cat([ph, ph[:1]])))
    return -float(steps.sum()) / (2 * math.pi)  # the loop above turns from +x to +y


@pytest.mark.parametrize(("kind", "winding"), [("screw", 1), ("screw", -2), ("edge", 1)])
def test_dislocation_phase_winding(kind: str, winding: int) -> None:
    spec = CrystalSpec(
        n=N,
        shape="sphere",
        oversampling=2.2,
        seed=1,
        strain_models=(
            {"kind": kind, "winding": winding, "line": [1, 0, 0], "point": [0, 0.04, -0.03]},
        ),
    )
    sim = simulate_crystal(spec, device=CPU)
    point = sim.meta["dislocations"][0]["point"]
    assert _loop_winding(sim.obj, point) == pytest.approx(winding, abs=1e-6)
    # a loop that does not enclose the line has no winding
    assert _loop_winding(sim.obj, [point[0], point[1] + 5, point[2]], r=2) == pytest.approx(
        0, abs=1e-6
    )


def test_poisson_statistics() -> None:
    spec = CrystalSpec(n=N, oversampling=3.0, peak_counts=1e4, background=0.5, seed=9)
    noisy = simulate_crystal(spec, device=CPU)
    clean = simulate_crystal(spec.replace(poisson=False), device=CPU)
    counts, rate = noisy.intensity.double(), clean.intensity.double()
    assert torch.equal(counts, counts.round())  # integer counts
    assert torch.equal(noisy.obj, clean.obj)
    z = (counts - rate) / rate.sqrt()
    assert abs(float(z.mean())) < 0.02
    assert float(z.var()) == pytest.approx(1.0, abs=0.03)
    assert float(rate.min()) >= 0.5 - 1e-6  # the background is in the expected counts
    bright = rate > 100
    assert float(((counts - rate) / rate.sqrt())[bright].var()) == pytest.approx(1.0, abs=0.2)


def test_detector_blur_keeps_flux_and_smooths() -> None:
    spec = CrystalSpec(n=N, poisson=False, seed=4, peak_counts=1e5)
    sharp = simulate_crystal(spec, device=CPU).intensity
    blurred = simulate_crystal(spec.replace(blur_sigma=1.0), device=CPU).intensity
    assert float(blurred.sum()) == pytest.approx(float(sharp.sum()), rel=1e-2)
    assert float(blurred.max()) < float(sharp.max())
    # blur acts on the detector axes only: a frame's sum is unchanged
    frame = N // 2
    assert float(blurred[frame].sum()) == pytest.approx(float(sharp[frame].sum()), rel=1e-2)


def test_mask_and_detector_gaps() -> None:
    spec = CrystalSpec(n=N, gaps=((1, 3, 2), (2, 25, 1)), seed=2)
    sim = simulate_crystal(spec, device=CPU)
    assert sim.mask.shape == (N, N, N) and sim.mask.dtype == torch.bool
    assert sim.mask[:, 3:5, :].all() and sim.mask[:, :, 25].all()
    assert int(sim.mask.sum()) == N * (2 * N + N - 2)
    assert float(sim.intensity[sim.mask].abs().max()) == 0.0
    assert not simulate_crystal(CrystalSpec(n=N), device=CPU).mask.any()


# ------------------------------------------------------------------ argument checks
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 8}, "n"),
        ({"shape": "blob"}, "shape"),
        ({"shape_params": {"ratio": 5.0}}, "shape_params"),
        ({"shape_params": {"bogus": 1}}, "shape_params"),
        ({"oversampling": 1.5}, "oversampling"),
        ({"substrate_cut": 0.9}, "substrate_cut"),
        ({"substrate_normal": (0, 0, 0)}, "substrate_normal"),
        ({"rotation": (0, 0, 0, 0)}, "rotation"),
        ({"g_hat": (1, 2)}, "g_hat"),
        ({"peak_counts": -5.0}, "peak_counts"),
        ({"background": -1.0}, "background"),
        ({"blur_sigma": -0.1}, "blur_sigma"),
        ({"gaps": ((3, 0, 1),)}, "gaps"),
        ({"gaps": ((1, 62, 4),)}, "gaps"),
        ({"amp_modulation": 0.5}, "amp_modulation"),
        ({"strain_models": ({"kind": "twist"},)}, "strain_models"),
        ({"strain_models": ({"kind": "screw", "winding": 0},)}, "strain_models"),
        ({"strain_models": ({"kind": "smooth", "length": -1},)}, "strain_models"),
        ({"phase_span": 3.0}, "phase_span"),
        ({"seed": -1}, "seed"),
        ({"poisson": "yes"}, "poisson"),
    ],
)
def test_bad_spec_arguments_raise_value_error_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CrystalSpec(**kwargs)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: CrystalSpec.random(1, strain="huge"), "strain"),
        (lambda: CrystalSpec.random(1, strain=(3.0, 1.0)), "strain"),
        (lambda: CrystalSpec.random(1, shapes=["blob"]), "shapes"),
        (lambda: CrystalSpec.random(1, strain_models=["twist"]), "strain_models"),
        (lambda: CrystalSpec.random(1, strain="weak", strain_models=["screw"]), "strain_models"),
        (lambda: CrystalSpec.random(1, peak_counts=(10.0, 1.0)), "peak_counts"),
        (lambda: CrystalSpec.random(1, oversampling=(1.0, 3.0)), "oversampling"),
        (lambda: CrystalSpec.random(-3), "seed"),
        (lambda: simulate_crystal("abc"), "spec_or_seed"),
        (lambda: simulate_crystal(CrystalSpec(n=N), blur_sigma=-1.0), "blur_sigma"),
        (lambda: simulate_crystal(1, n=N, device="tpu"), "device"),
        (lambda: simulate_batch([], n=N), "seeds"),
        (lambda: simulate_batch([1], n=N, chunk_size=0), "chunk_size"),
        (lambda: simulate_batch(3, n=N), "seeds"),
        (lambda: simulate_batch([CrystalSpec(n=N), CrystalSpec(n=48)]), "seeds"),
    ],
)
def test_bad_call_arguments_raise_value_error_naming_them(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_geometry() -> None:  # pragma: no cover - GPU only
    spec = CrystalSpec.random(3, n=N, strain="strong")
    cpu = simulate_crystal(spec, device="cpu")
    gpu = simulate_crystal(spec, device="cuda")
    assert gpu.intensity.device.type == "cuda"
    torch.testing.assert_close(gpu.obj.cpu(), cpu.obj, atol=2e-4, rtol=1e-4)
    bright = (
        fft_centered(cpu.obj).abs() ** 2 > 1e-6 * cpu.intensity.max() / cpu.meta["intensity_scale"]
    )
    assert _wrap(gpu.phase_q.cpu() - cpu.phase_q)[bright].abs().max() < 1e-2


def test_dislocation_probability_applies_at_every_strain_level() -> None:
    def kinds(spec: CrystalSpec) -> set[str]:
        return {m["kind"] for m in spec.strain_models}

    for seed in range(6):
        weak = CrystalSpec.random(seed, n=N, strain="weak")
        assert not kinds(weak) & set(DISLOCATION_MODELS)  # the level's odds: none
        forced = CrystalSpec.random(seed, n=N, strain="weak", dislocation_probability=1.0)
        assert kinds(forced) & set(DISLOCATION_MODELS)
        assert forced.phase_span < math.pi  # the smooth part stays weak
        # the same geometry and smooth part; the dislocations come on top
        assert forced.shape == weak.shape and forced.rotation == weak.rotation
        assert [m for m in forced.strain_models if m["kind"] not in DISLOCATION_MODELS] == [
            m for m in weak.strain_models
        ]
        none = CrystalSpec.random(seed, n=N, strain="strong", dislocation_probability=0.0)
        assert not kinds(none) & set(DISLOCATION_MODELS)


def _across(sim: SimulatedCrystal, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase differences between support voxels k voxels apart along z, split by whether the
    pair straddles the (z-normal) fault plane of ``sim``'s first fault."""
    f = sim.meta["faults"][0]
    z = torch.arange(N, dtype=torch.float32).view(N, 1, 1).expand(N, N, N)
    d = z - f["point"][0]
    both = sim.support[k:] & sim.support[:-k]
    straddle = both & (d[:-k] <= 0) & (d[k:] > 0)
    diff = sim.phase[k:] - sim.phase[:-k]
    return diff[straddle], diff[both & ~straddle & (d[:-k] > 0)]


def test_fault_jumps_the_phase_across_its_plane() -> None:
    jump = -FAULT_JUMP
    spec = CrystalSpec(n=N, shape="cube", oversampling=2.5, seed=4,
                       strain_models=({"kind": "fault", "normal": [1.0, 0.0, 0.0],
                                       "offset": 0.1, "jump": jump},))
    sim = simulate_crystal(spec, device=CPU)
    _assert_valid(sim)
    (f,) = sim.meta["faults"]
    assert f["jump"] == pytest.approx(jump) and f["width"] == 0.0
    assert f["point"][0] == pytest.approx(N // 2 + 0.1 * sim.meta["size"], abs=0.05)
    straddle, beyond = _across(sim, 1)
    # the jump, give or take the small linear ramp removed to keep the Bragg peak centred
    assert straddle.numel() > 0 and (straddle - jump).abs().max() < 0.3
    assert beyond.abs().max() < 0.3
    # a lamella: the phase comes back beyond the slab
    lam = simulate_crystal(spec.replace(strain_models=(
        {"kind": "fault", "normal": [1.0, 0.0, 0.0], "offset": -0.1, "jump": jump,
         "width": 0.25},)), device=CPU)
    width = lam.meta["faults"][0]["width"]
    assert width == pytest.approx(0.25 * lam.meta["size"])
    z0 = lam.meta["faults"][0]["point"][0]
    inside = (torch.arange(N).view(N, 1, 1) > z0) & (torch.arange(N).view(N, 1, 1) <= z0 + width)
    mid = lam.support & inside
    out = lam.support & ~inside
    assert (lam.phase[mid].mean() - lam.phase[out].mean() - jump).abs() < 0.3



@pytest.mark.parametrize("kind", ["fault", "loop"])
def test_a_defect_alone_needs_its_odds(kind: str) -> None:
    odds = f"{kind}_probability"
    only = CrystalSpec.random(1, n=N, strain_models=[kind], **{odds: 1.0})
    assert [m["kind"] for m in only.strain_models] == [kind] and only.phase_span == 0.0
    with pytest.raises(ValueError, match=odds):
        CrystalSpec.random(1, n=N, strain_models=[kind])
    for bad in (1.5, -0.5):
        with pytest.raises(ValueError, match=odds):
            CrystalSpec.random(1, n=N, **{odds: bad})

def test_fault_probability_adds_a_fault_and_changes_nothing_else() -> None:
    for seed in range(6):
        plain = CrystalSpec.random(seed, n=N, strain="medium")
        assert CrystalSpec.random(seed, n=N, strain="medium", fault_probability=0.0) == plain
        assert not {m["kind"] for m in plain.strain_models} & set(FAULT_MODELS)
        faulted = CrystalSpec.random(seed, n=N, strain="medium", fault_probability=1.0)
        *rest, fault = faulted.strain_models
        assert fault["kind"] == "fault" and abs(fault["jump"]) == pytest.approx(FAULT_JUMP)
        assert faulted.replace(strain_models=tuple(rest)) == plain
    for bad, name in [({"jump": 0.0}, "jump"), ({"offset": 0.7}, "offset"),
                      ({"width": -1.0}, "width"), ({"normal": [0.0, 0.0, 0.0]}, "normal")]:
        with pytest.raises(ValueError, match=name):
            CrystalSpec(n=N, strain_models=({"kind": "fault", **bad},))


def _circulation(sim: SimulatedCrystal, at: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                 radius: float) -> float:
    """Phase winding (turns) of ``sim`` along the circle ``at + radius (cos t u + sin t v)``,
    read at the nearest voxels."""
    vals = []
    for k in range(32):
        t = 2 * math.pi * k / 32
        z, y, x = (at + radius * (math.cos(t) * u + math.sin(t) * v)).round().long().tolist()
        assert bool(sim.support[z, y, x])
        vals.append(float(sim.phase[z, y, x]))
    ph = torch.tensor(vals)
    return float(_wrap(torch.diff(torch.cat([ph, ph[:1]]))).sum() / (2 * math.pi))


def test_loop_winds_the_phase_around_its_line_and_not_across_its_disc() -> None:
    n = 48
    normal = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    turns = []
    for winding in (1, -1):
        spec = CrystalSpec(n=n, shape="cube", oversampling=2.0, seed=4, rotation=(1, 0, 0, 0),
                           strain_models=({"kind": "loop", "normal": normal.tolist(),
                                           "centre": [0.0, 0.0, 0.0], "radius": 0.25,
                                           "winding": winding},))
        sim = simulate_crystal(spec, device=CPU)
        _assert_valid(sim, n)
        (lp,) = sim.meta["loops"]
        assert lp["winding"] == winding and lp["radius"] == pytest.approx(0.25 * sim.meta["size"])
        centre = torch.tensor(lp["centre"], dtype=torch.float64)
        radial = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        # once around the loop line (through its point at +radius along y) ...
        turns.append(_circulation(sim, centre + lp["radius"] * radial, normal, radial, 2.5))
        # ... and none around a circle of the same size threading the disc far from the line
        assert abs(_circulation(sim, centre + 2.0 * normal, normal,
                                torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), 2.5)) < 0.01
        z, y, x = centre.round().long().tolist()
        # across the disc at its centre, ±1 voxel: Ω/2 = ±π(1 − 1/√(1 + R²)), so the phase
        # differs by the loop's dilatation 2π/√(1 + R²), its 2π jump hidden in exp(iφ)
        step = float(_wrap(sim.phase[z + 1, y, x] - sim.phase[z - 1, y, x]).abs())
        assert step == pytest.approx(2 * math.pi / math.hypot(1.0, lp["radius"]), abs=0.2)
    assert sorted(turns) == pytest.approx([-1.0, 1.0], abs=1e-3)


def test_loop_probability_adds_a_loop_and_changes_nothing_else() -> None:
    for seed in range(6):
        plain = CrystalSpec.random(seed, n=N, strain="medium", fault_probability=0.5)
        assert CrystalSpec.random(seed, n=N, strain="medium", fault_probability=0.5,
                                  loop_probability=0.0) == plain
        looped = CrystalSpec.random(seed, n=N, strain="medium", fault_probability=0.5,
                                    loop_probability=1.0)
        *rest, loop = looped.strain_models
        assert loop["kind"] == "loop" and abs(loop["winding"]) == 1
        assert 0.15 <= loop["radius"] <= 0.3 and max(map(abs, loop["centre"])) <= 1 / 6
        assert looped.replace(strain_models=tuple(rest)) == plain
    for bad, name in [({"winding": 0}, "winding"), ({"radius": 0.9}, "radius"),
                      ({"centre": [0.6, 0.0, 0.0]}, "centre"), ({"normal": [0, 0, 0]}, "normal")]:
        with pytest.raises(ValueError, match=name):
            CrystalSpec(n=N, strain_models=({"kind": "loop", **bad},))


def test_network_probability_adds_lines_to_three_or_four_and_changes_nothing_else() -> None:
    disl = ("screw", "edge")
    counts = []
    for seed in range(12):
        plain = CrystalSpec.random(seed, n=N, strain="medium", loop_probability=0.5)
        assert CrystalSpec.random(seed, n=N, strain="medium", loop_probability=0.5,
                                  network_probability=0.0) == plain
        net = CrystalSpec.random(seed, n=N, strain="medium", loop_probability=0.5,
                                 network_probability=1.0)
        lines = [m for m in net.strain_models if m["kind"] in disl]
        counts.append(len(lines))
        # the drawn models stay, in their order; the added lines come last
        assert net.strain_models[:len(plain.strain_models)] == plain.strain_models
        assert all(m["kind"] in disl for m in net.strain_models[len(plain.strain_models):])
    assert set(counts) == {3, 4}
    # no dislocation model allowed: no network
    smooth = CrystalSpec.random(0, n=N, strain="weak", strain_models=("smooth",),
                                network_probability=1.0)
    assert all(m["kind"] == "smooth" for m in smooth.strain_models)
    with pytest.raises(ValueError, match="network_probability"):
        CrystalSpec.random(0, n=N, network_probability=1.5)


def test_coherence_probability_blurs_the_pattern_and_changes_nothing_else() -> None:
    """Partial coherence from a generator of its own: every other field of the spec as drawn
    without it, the odds 0 change nothing; the kernel has the drawn widths and correlation."""
    import dataclasses
    import math

    from bcdi_stream.simulation._forward import coherence_blur

    kinds = []
    for seed in range(16):
        plain = CrystalSpec.random(seed, n=N, strain="medium", network_probability=0.5)
        assert CrystalSpec.random(seed, n=N, strain="medium", network_probability=0.5,
                                  coherence_probability=0.0) == plain
        coh = CrystalSpec.random(seed, n=N, strain="medium", network_probability=0.5,
                                 coherence_probability=1.0)
        assert plain.coherence == (0.0, 0.0, 0.0, 0.0)
        assert dataclasses.replace(coh, coherence=plain.coherence) == plain
        z, y, x, r = coh.coherence
        kinds.append("z" if z > 0 else "yx")
        if z > 0:
            assert 0.6 <= z <= 1.2 and y == x == r == 0.0
        else:  # 1.0-1.8 px along a direction, 0.25-0.6 across: the total variance between
            assert 1.0**2 + 0.25**2 <= y * y + x * x <= 1.8**2 + 0.6**2 and abs(r) < 0.97
    assert set(kinds) == {"z", "yx"}
    with pytest.raises(ValueError, match="coherence_probability"):
        CrystalSpec.random(0, n=N, coherence_probability=2.0)
    for bad in ((0.0, 1.0, 0.0, 0.5), (0.0, 1.0, 1.0, 1.0), (0.0, -1.0, 1.0, 0.0), (1.0, 2.0)):
        with pytest.raises(ValueError, match="coherence"):
            CrystalSpec(n=N, coherence=bad)
    # the kernel: unit sum, the widths and the correlation asked for, on a delta
    delta = torch.zeros(16, 32, 32, dtype=torch.float64)
    delta[8, 16, 16] = 1.0
    k = coherence_blur(delta, (0.8, 1.2, 1.0, -0.6))
    zz, yy, xx = torch.meshgrid(torch.arange(16.0) - 8, torch.arange(32.0) - 16,
                                torch.arange(32.0) - 16, indexing="ij")
    assert float(k.sum()) == pytest.approx(1.0) and float(k.min()) >= 0.0
    m = {n_: float((k * a * b).sum()) for n_, a, b in (("zz", zz, zz), ("yy", yy, yy),
                                                         ("xx", xx, xx), ("yx", yy, xx))}
    assert math.sqrt(m["zz"]) == pytest.approx(0.8, abs=0.01)
    assert math.sqrt(m["yy"]) == pytest.approx(1.2, abs=0.01)
    assert math.sqrt(m["xx"]) == pytest.approx(1.0, abs=0.01)
    assert m["yx"] / math.sqrt(m["yy"] * m["xx"]) == pytest.approx(-0.6, abs=0.01)
    assert coherence_blur(delta, (0.0, 0.0, 0.0, 0.0)) is delta


def _is_habit(spec: CrystalSpec) -> bool:
    p = spec.shape_params
    return ((spec.shape == "rod" and NEEDLE_ASPECT[0] <= p["aspect"] <= NEEDLE_ASPECT[1])
            or (spec.shape == "platelet" and THIN_PLATE[0] <= p["thickness"] <= THIN_PLATE[1]))


def test_habit_probability_draws_needles_and_thin_plates_and_changes_no_other_crystal() -> None:
    """A habit beyond the default ranges from a generator of its own: at odds 1 every crystal
    is a needle or a thin plate (both come), at odds 0 every spec is the one drawn without the
    argument, and at odds in between the crystals that draw no habit are as drawn without it;
    only the rods and platelets among ``shapes`` are candidates."""
    kinds, drawn_apart = set(), 0
    for seed in range(24):
        plain = CrystalSpec.random(seed, n=64, strain="medium")
        assert not _is_habit(plain), plain.shape_params
        assert CrystalSpec.random(seed, n=64, strain="medium", habit_probability=0.0) == plain
        habit = CrystalSpec.random(seed, n=64, strain="medium", habit_probability=1.0)
        assert _is_habit(habit), habit.shape_params
        kinds.add(habit.shape)
        half = CrystalSpec.random(seed, n=64, strain="medium", habit_probability=0.5)
        if not _is_habit(half):
            assert half == plain
            drawn_apart += 1
    assert kinds == {"rod", "platelet"} and 0 < drawn_apart < 24
    # the default ranges stay out of the habits' (a default rod or platelet is no habit)
    for seed in range(40):
        default = CrystalSpec.random(seed, n=64, shapes=("rod", "platelet"))
        assert not _is_habit(default), default.shape_params
    only = [CrystalSpec.random(s, n=64, shapes=("rod", "sphere"), habit_probability=1.0)
            for s in range(6)]
    assert all(s.shape == "rod" and _is_habit(s) for s in only)
    assert (CrystalSpec.random(3, n=64, shapes=("sphere", "cube"), habit_probability=1.0)
            == CrystalSpec.random(3, n=64, shapes=("sphere", "cube")))
    with pytest.raises(ValueError, match="habit_probability"):
        CrystalSpec.random(0, n=64, habit_probability=-0.1)
    # a needle and a thin plate simulate, the crystal as thin as its habit
    for shape in ("rod", "platelet"):
        spec = CrystalSpec.random(5, n=64, shapes=(shape,), habit_probability=1.0)
        sim = simulate_crystal(spec, poisson=False)
        inside = (sim.obj.abs() > 0.5).nonzero().double()
        inside -= inside.mean(0)
        var = torch.linalg.eigvalsh(inside.T @ inside / len(inside))  # along the principal axes
        assert float((var[-1] / var[0]).sqrt()) > 2.5, (shape, var)
    # the simulated pattern: the same crystal, its intensity blurred, the counts kept
    spec = CrystalSpec.random(3, n=N, strain="weak").replace(poisson=False, background=0.0)
    sharp = simulate_crystal(spec, device=CPU)
    soft = simulate_crystal(spec.replace(coherence=(0.0, 1.0, 1.0, 0.8)), device=CPU)
    assert torch.equal(sharp.obj, soft.obj)
    assert float(soft.intensity.sum()) == pytest.approx(float(sharp.intensity.sum()), rel=1e-4)
    assert float(soft.intensity.max()) < 0.8 * float(sharp.intensity.max())
    assert soft.meta["coherence"] == [0.0, 1.0, 1.0, 0.8]


def _smooth_replaced(seed: int, kw: dict, odds: str, kind: str) -> tuple[CrystalSpec, dict]:
    """``(the plain spec, the one smooth model)`` of crystal ``seed`` drawn with ``odds`` 1:
    checks that odds 0 change nothing and that odds 1 replace the smooth models drawn by one
    model of ``kind`` (weight ±0.4–1) and leave everything else — the span, the other strain
    models, shape, detector — as it was."""
    from bcdi_stream.simulation import SMOOTH_MODELS

    plain = CrystalSpec.random(seed, **kw)
    assert CrystalSpec.random(seed, **kw, **{odds: 0.0}) == plain
    changed = CrystalSpec.random(seed, **kw, **{odds: 1.0})
    first, *rest = changed.strain_models
    assert first["kind"] == kind and 0.4 <= abs(first["weight"]) <= 1.0
    assert tuple(rest) == tuple(m for m in plain.strain_models if m["kind"] not in SMOOTH_MODELS)
    assert changed.replace(strain_models=plain.strain_models) == plain
    return plain, first


def test_field_probability_makes_the_smooth_strain_the_random_field_alone() -> None:
    """The smooth models drawn give way to one random field (the same span); everything else
    — shape, detector, dislocations, faults — stays, and the odds 0 change nothing."""
    from bcdi_stream.simulation import SMOOTH_MODELS

    changed = 0
    for seed in range(8):
        kw = {"n": N, "strain": "strong", "dislocation_probability": 0.5,
              "fault_probability": 0.5}
        plain, first = _smooth_replaced(seed, kw, "field_probability", "smooth")
        assert 0.3 <= first["length"] <= 0.7
        changed += [m["kind"] for m in plain.strain_models if m["kind"] in SMOOTH_MODELS] != [
            "smooth"]
    assert changed >= 4  # the mixture drew other fields for most of these seeds
    # no smooth part (dislocations only): nothing to replace
    only = CrystalSpec.random(3, n=N, strain="strong", strain_models=("screw",),
                              field_probability=1.0)
    assert [m["kind"] for m in only.strain_models] == ["screw"] * len(only.strain_models)
    with pytest.raises(ValueError, match="field_probability"):
        CrystalSpec.random(0, n=N, field_probability=1.5)


def test_vertex_cache_changes_no_crystal_and_hands_out_copies(tmp_path) -> None:
    """The polytope-vertex cache (a crystal's geometry is built twice) is invisible: the same
    crystals with it off and on, and what it returns can be changed by the caller."""
    import numpy as np
    from typer.testing import CliRunner

    from bcdi_stream.cli import app
    from bcdi_stream.simulation import _shapes
    from bcdi_stream.training._datasets import draw_batch

    items = [(30_000_000, "strong"), (30_000_100, "weak+disl")]
    bound = _shapes.set_vertex_cache(0)
    try:
        off = [c.intensity for c, _ in draw_batch(items, N)]
        _shapes.set_vertex_cache(8)
        on = [c.intensity for c, _ in draw_batch(items, N)]
        assert all(torch.equal(a, b) for a, b in zip(off, on, strict=True))
        assert 0 < len(_shapes._VERTEX_CACHE) <= 8
        normals = np.array([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
        verts, _, _ = _shapes._vertices(normals, np.ones(6))
        verts[:] = 0
        again, _, _ = _shapes._vertices(normals, np.ones(6))
        assert np.abs(again).max() == 1.0
        with pytest.raises(ValueError, match="size"):
            _shapes.set_vertex_cache(-1)
    finally:
        _shapes.set_vertex_cache(bound)
    out = tmp_path / "sim.json"
    res = CliRunner().invoke(app, ["benchmark", "simulator", "--quick", "--threads", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["simulator"]
    draws = [r for r in rows if r["mode"].startswith("draws")]
    assert [r["mode"] for r in draws] == ["draws, vertex cache off", "draws, vertex cache on"]
    assert all(r["samples"] == 4 and r["samples_per_s"] > 0 for r in draws)


def test_polynomial_probability_makes_the_smooth_strain_a_low_order_field_alone() -> None:
    """Bendings, torsions and random cubic fields replace the smooth models drawn (the same
    span, the rest of the spec unchanged); the odds 0 change nothing; coefficients are checked
    by name."""
    from bcdi_stream.simulation import POLYNOMIAL_TERMS

    forms = set()
    for seed in range(12):
        kw = {"n": N, "strain": "strong", "dislocation_probability": 0.5,
              "field_probability": 0.5}
        _, first = _smooth_replaced(seed, kw, "polynomial_probability", "polynomial")
        c = np.array(first["coefficients"])
        assert c.shape == (len(POLYNOMIAL_TERMS),)
        # the quadratic form of a bending (a·r)² has rank 1, a torsion's (a·r)(b·r) rank 2
        q = np.zeros((3, 3))
        for k, (i, j) in enumerate(POLYNOMIAL_TERMS[:6]):
            q[i, j] += c[k] / (1 if i == j else 2)
            q[j, i] = q[i, j]
        cubic = bool(np.any(c[6:]))
        rank = int(np.sum(np.abs(np.linalg.eigvalsh(q)) > 1e-9))
        forms.add("cubic" if cubic else {1: "bend", 2: "twist"}[rank])
        if not cubic and rank == 2:  # a torsion: eigenvalues ±1/2 (orthonormal a, b)
            np.testing.assert_allclose(sorted(np.linalg.eigvalsh(q))[::2], [-0.5, 0.5],
                                       atol=1e-9)
        sim = simulate_crystal(CrystalSpec.random(seed, **kw, polynomial_probability=1.0),
                               device=CPU)
        _assert_valid(sim)
        assert sim.meta["strain_models"][0] == "polynomial"
    assert forms == {"bend", "twist", "cubic"}
    with pytest.raises(ValueError, match="polynomial_probability"):
        CrystalSpec.random(0, n=N, polynomial_probability=2.0)
    base = {"n": N, "shape": "cube", "oversampling": 2.5, "phase_span": 1.0}
    for coefficients, needle in (([1.0] * 15, "16 entries"), ([0.0] * 16, "all 0"),
                                 ([float("nan")] + [0.0] * 15, r"coefficients'\]\[0\]")):
        with pytest.raises(ValueError, match=needle):
            CrystalSpec(**base, strain_models=({"kind": "polynomial",
                                                "coefficients": coefficients},))


def test_polynomial_phase_is_the_polynomial_of_the_scaled_position() -> None:
    """A bending along x gives ((x - cx) / half)² with the default coefficients' order."""
    from bcdi_stream.simulation import POLYNOMIAL_TERMS
    from bcdi_stream.simulation._displacement import polynomial_phase

    m = 5
    z = torch.arange(m, dtype=torch.float32).view(1, m, 1, 1)
    y = torch.arange(m, dtype=torch.float32).view(1, 1, m, 1)
    x = torch.arange(m, dtype=torch.float32).view(1, 1, 1, m)
    coef = torch.zeros(2, len(POLYNOMIAL_TERMS))
    coef[0, POLYNOMIAL_TERMS.index((2, 2))] = 1.0  # x²
    coef[1, POLYNOMIAL_TERMS.index((0, 1, 2))] = 2.0  # 2·z·y·x
    centre = torch.tensor([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    half = torch.tensor([2.0, 1.0])
    out = polynomial_phase((z, y, x), centre, half, coef, POLYNOMIAL_TERMS)
    torch.testing.assert_close(out[0], ((x[0] - 2.0) / 2.0).square().expand(m, m, m))
    torch.testing.assert_close(out[1], (2.0 * (z[0] - 1.0) * (y[0] - 2.0) * (x[0] - 3.0)
                                        ).expand(m, m, m))


# ------------------------------------------------------------------ argument checks, continued
# Each case below was accepted (a string read as a range of its characters, a bool as 0 or 1)
# or failed with an OverflowError, a TypeError or a message that named nothing.
_SPEC_OK = {"n": 16, "oversampling": 2.5}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"peak_counts": (1, math.inf)}, "peak_counts"),  # OverflowError in numpy
        ({"peak_counts": "12"}, "peak_counts"),  # drawn in (1, 2)
        ({"peak_counts": (True, 10)}, "peak_counts"),
        ({"peak_counts": (1e-9, 1e-6)}, "peak_counts"),  # failed after the draw, value-dependent
        ({"peak_counts": (1e11, 1e13)}, "peak_counts"),
        ({"peak_counts": (0, 0)}, "peak_counts"),
        ({"oversampling": "23"}, "oversampling"),  # drawn in (2, 3)
        ({"oversampling": (2, True)}, "oversampling"),
        ({"strain": b"ab"}, "strain"),  # the range (97, 98)
        ({"strain": (False, True)}, "strain"),
        ({"strain": (math.nan, 1.0)}, "strain"),
        ({"strain": None}, "strain"),
        ({"g_hat": (True, False, False)}, "g_hat"),
    ],
)
def test_random_rejects_bad_ranges_before_drawing(monkeypatch, kwargs: dict, name: str) -> None:
    from bcdi_stream.simulation import _spec

    def no_work(*args, **kw):
        raise AssertionError("a crystal was drawn before the arguments were checked")

    monkeypatch.setattr(_spec, "build_geometry", no_work)
    with pytest.raises(ValueError, match=name) as err:
        CrystalSpec.random(0, **{"n": 64, **kwargs})
    assert "\n" not in str(err.value)


def test_random_takes_ranges_as_lists_arrays_and_numpy_numbers() -> None:
    ref = CrystalSpec.random(10, n=48, strain=(2.0, 8.0), peak_counts=(1e3, 1e5),
                             oversampling=(2.0, 3.0))
    assert CrystalSpec.random(10, n=np.int64(48), strain=np.array([2.0, 8.0]),
                              peak_counts=[np.float64(1e3), 1e5],
                              oversampling=[2, 3.0]) == ref
    assert CrystalSpec.random(10, n=48, peak_counts=np.float32(5e4)).peak_counts == 5e4


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"coherence": "0000"}, "coherence"),  # read as four zeros
        ({"coherence": (True, 0, 0, 0)}, "coherence"),
        ({"rotation": (True, 0, 0, 0)}, "rotation"),
        ({"g_hat": (0, True, 0)}, "g_hat"),
        ({"substrate_normal": np.array([False, True, False])}, "substrate_normal"),
        ({"shape_params": {"stretch": "abc"}}, "stretch"),  # "could not convert string to float"
        ({"shape_params": {"stretch": [1, "x", 1]}}, "stretch"),
        ({"shape_params": {"stretch": [True, 1, 1]}}, "stretch"),
        ({"shape": "polyhedron", "shape_params": {"normals": "abc"}}, "normals"),
        ({"shape": "polyhedron", "shape_params": {"offsets": [True] * 6}}, "offsets"),
        ({"strain_models": ({"kind": "screw", "point": [True, 0, 0]},)}, "point"),
    ],
)
def test_spec_rejects_bools_and_strings_naming_them(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name) as err:
        CrystalSpec(**{**_SPEC_OK, **kwargs})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("d", "name"),
    [({"rotation": 5}, "rotation"), ({"strain_models": 5}, "strain_models"),
     ({"strain_models": [5]}, r"strain_models\[0\]"), ({"gaps": [5]}, r"gaps\[0\]")],
)
def test_from_dict_names_the_bad_field(d: dict, name: str) -> None:
    """These raised "TypeError: 'int' object is not iterable"."""
    with pytest.raises(ValueError, match=name):
        CrystalSpec.from_dict({**_SPEC_OK, **d})
    spec = CrystalSpec.random(4, n=N, fault_probability=1.0, strain="strong")
    assert CrystalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(("kwargs", "name"), [({"n": True}, "n"), ({"n": 8}, "n"),
                                              ({"strain": "huge"}, "strain"),
                                              ({"strain": "12"}, "strain")])
def test_simulate_batch_checks_n_and_strain_even_for_specs(kwargs: dict, name: str) -> None:
    """With only specs, ``n`` and ``strain`` were ignored however wrong."""
    with pytest.raises(ValueError, match=name):
        simulate_batch([CrystalSpec(**_SPEC_OK)], device=CPU, **kwargs)


@pytest.mark.parametrize(
    ("specs", "caps", "name"),
    [
        ("spec", [None], "specs"),  # TypeError: object of type 'CrystalSpec' has no len()
        (["spec", 3], [None, None], r"specs\[1\]"),  # AttributeError, after the first crystal
        (["spec"], None, "max_gradient_mean"),
        (["spec"], 1.0, "max_gradient_mean"),
        (["spec"], [math.nan], r"max_gradient_mean\[0\]"),  # kept all on a CPU, none on a GPU
        (["spec"], [-1.0], r"max_gradient_mean\[0\]"),
        (["spec"], ["x"], r"max_gradient_mean\[0\]"),  # TypeError after the simulation
        (["spec"], [True], r"max_gradient_mean\[0\]"),
        (["spec"], [math.inf], r"max_gradient_mean\[0\]"),
    ],
)
def test_simulate_capped_checks_arguments_before_simulating(monkeypatch, specs, caps,
                                                            name: str) -> None:
    from bcdi_stream.simulation import _crystal

    def no_work(*args, **kw):
        raise AssertionError("a crystal was simulated before the arguments were checked")

    spec = CrystalSpec(**_SPEC_OK)
    specs = spec if specs == "spec" else [spec if s == "spec" else s for s in specs]
    monkeypatch.setattr(_crystal, "_simulate", no_work)
    with pytest.raises(ValueError, match=name) as err:
        simulate_capped(specs, caps, device=CPU)
    assert "\n" not in str(err.value)
    assert simulate_capped([], [], device=CPU) == []


def test_forward_model_helpers_check_their_arguments() -> None:
    from bcdi_stream.simulation._forward import coherence_blur, detector_blur, gap_mask
    from bcdi_stream.simulation._shapes import set_vertex_cache

    img = torch.ones(4, 8, 8)
    for sigma in (math.nan, math.inf, -1.0, "1", True):  # raw NaN/Overflow/TypeErrors
        with pytest.raises(ValueError, match="sigma"):
            detector_blur(img, sigma)
    assert detector_blur(img, 0.0) is img and detector_blur(img, np.float32(0.5)).shape == img.shape
    for kernel in ((math.nan, 0, 0, 0), (1, 0, 0), (-1, 0, 0, 0), "0000", (True, 0, 0, 0)):
        with pytest.raises(ValueError, match="kernel"):  # NaN was accepted
            coherence_blur(torch.ones(8, 8, 8), kernel)
    for gaps in ([(1, 7, 5)], [(1, -3, 2)], [(1, 2)], [(1, 2.0, 1)]):  # clipped or wrong rows
        with pytest.raises(ValueError, match=r"gaps\[0\]"):
            gap_mask(8, gaps)
    with pytest.raises(ValueError, match="axis"):
        gap_mask(8, [(3, 0, 1)])
    assert gap_mask(8, [(np.int64(1), 6, 2)])[:, 6:, :].all()
    previous = set_vertex_cache(64)
    try:
        for size in ("abc", 2.7, math.nan, True, -1):  # 2.7 became 2, True became 1
            with pytest.raises(ValueError, match="size"):
                set_vertex_cache(size)
    finally:
        set_vertex_cache(previous)
