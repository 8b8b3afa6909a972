"""Training: a few real steps on simulated crystals, checkpoint, resume, export, AI phasing."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bcdi_stream.model import ModelConfig, UNetConfig, export_weights, load_model
from bcdi_stream.simulation import DISLOCATION_MODELS, simulate_crystal
from bcdi_stream.training import (
    N_SYMMETRIES,
    STRAIN_CLASSES,
    TEST_SEED0,
    TRAIN_SAMPLES,
    TRAIN_SEED0,
    VAL_SEED0,
    TrainConfig,
    apply_symmetry,
    class_arguments,
    draw_batch,
    draw_crystal,
    fixed_set,
    train,
    training_batches,
)
from bcdi_stream.training._datasets import MAX_MEAN_GRADIENT, class_mix


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _cfg(**kw) -> TrainConfig:
    base = dict(
        model=ModelConfig(kind="patterson", grid=32, unet=UNetConfig(channels=(4, 8))),
        steps=3, batch_size=1, val_every=2, checkpoint_every=1, warmup=1,
        val_counts={"weak": 1, "strong": 1}, threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_seed_ranges_are_disjoint() -> None:
    # training draws seeds TRAIN_SEED0 + 100 k (+ a few retries): far below VAL_SEED0
    assert TRAIN_SEED0 + 100 * 5_000_000 < VAL_SEED0 < TEST_SEED0
    assert TEST_SEED0 - VAL_SEED0 > 3 * 10_000_000


def test_strong_class_is_strong_and_sampled() -> None:
    c, seed = draw_crystal(TEST_SEED0 + 123, "strong", n=32)
    assert seed >= TEST_SEED0 + 123
    assert c.meta["phase_span"] > 4 * torch.pi * 0.999
    assert c.meta["phase_gradient_mean"] <= MAX_MEAN_GRADIENT * 64 / 32
    w, _ = draw_crystal(TEST_SEED0, "weak", n=32)
    assert w.meta["phase_span"] < torch.pi
    with pytest.raises(ValueError, match="strain_class"):
        draw_crystal(0, "extreme")
    assert set(STRAIN_CLASSES) == {"weak", "medium", "strong"}


def test_fixed_set_is_reproducible() -> None:
    a = [(c, s) for c, s, _ in fixed_set(VAL_SEED0, {"weak": 2}, n=32)]
    b = [(c, s) for c, s, _ in fixed_set(VAL_SEED0, {"weak": 2}, n=32)]
    assert a == b and len({s for _, s in a}) == 2


def test_strong_share_mix() -> None:
    assert class_mix(100, 100, 0.3, strong_share=1.0) == {"weak": 0.0, "medium": 0.0,
                                                          "strong": 1.0}
    assert class_mix(0, 100, 0.3, strong_share=0.05)["strong"] == pytest.approx(0.05)
    batch = next(training_batches(0, 3, 10, 0.0, n=32, strong_share=1.0))
    assert batch.classes == ["strong"] * 3
    with pytest.raises(ValueError, match="strong_share"):
        class_mix(0, 10, 0.3, strong_share=1.5)
    with pytest.raises(ValueError, match="strong_share"):
        _cfg(strong_share=-0.1)


def test_curriculum_mix() -> None:
    start, end = class_mix(0, 100, 0.3), class_mix(100, 100, 0.3)
    assert start["strong"] == pytest.approx(0.1) and end["strong"] == pytest.approx(0.5)
    assert sum(end.values()) == pytest.approx(1.0)


def test_training_batches_resume_the_sequence() -> None:
    full = training_batches(0, 2, 10, 0.3, n=32)
    next(full)
    second = next(full)
    resumed = next(training_batches(2, 2, 10, 0.3, n=32, start_step=1))
    assert second.seeds == resumed.seeds
    assert torch.equal(second.intensity, resumed.intensity)


def test_training_batches_from_workers_are_the_same_crystals() -> None:
    serial = training_batches(5, 2, 10, 0.3, n=32, start_step=2)
    pooled = training_batches(5, 2, 10, 0.3, n=32, start_step=2, workers=2)
    for _ in range(3):
        a, b = next(serial), next(pooled)
        assert a.seeds == b.seeds and a.classes == b.classes
        # one torch thread in a worker: FFT sums in another order, a rare count flips by one
        assert torch.allclose(a.intensity, b.intensity, rtol=1e-3, atol=1.0)
        assert torch.allclose(a.phase_q, b.phase_q, atol=1e-3)
    with pytest.raises(ValueError, match="workers"):
        next(training_batches(0, 1, 10, 0.3, n=32, workers=-1))
    with pytest.raises(ValueError, match="workers"):
        _cfg(workers=-1)


def test_symmetries_map_pattern_phase_and_object_together() -> None:
    from bcdi_stream.physics import fft_centered

    c, _ = draw_crystal(TEST_SEED0 + 7, "strong", n=32)
    psi = fft_centered(c.obj)
    strong = psi.abs() > 0.05 * psi.abs().max()
    seen = set()
    for k in range(N_SYMMETRIES):
        obj, phase = apply_symmetry(c.obj, k), apply_symmetry(c.phase_q, k)
        psi_k = fft_centered(obj)
        # the mapped object diffracts the mapped pattern with the mapped phase
        assert torch.allclose(psi_k.abs(), apply_symmetry(psi.abs(), k), rtol=1e-3, atol=1e-3)
        mask = apply_symmetry(strong, k)
        d = torch.angle(torch.exp(1j * (torch.angle(psi_k) - phase)))[mask]
        assert d.abs().max() < 1e-2, k
        seen.add(apply_symmetry(c.intensity, k).numpy().tobytes())
    assert len(seen) == N_SYMMETRIES  # all distinct
    assert apply_symmetry(c.intensity, 0) is c.intensity
    # the rocking axis (0) stays: a gap band along y or x stays a band of every frame
    swapped = apply_symmetry(c.intensity, 8)
    assert torch.equal(swapped, c.intensity.transpose(-1, -2))
    with pytest.raises(ValueError, match="index"):
        apply_symmetry(c.intensity, N_SYMMETRIES)


def test_training_batches_reuse_each_crystal_under_symmetries() -> None:
    # no curriculum: the class mix of a group follows its first step (3 here, 1 without reuse)
    plain = training_batches(0, 2, 20, 0.0, n=32)
    reused = training_batches(0, 2, 20, 0.0, n=32, reuse=3)
    p0, p1 = next(plain), next(plain)
    r = [next(reused) for _ in range(4)]
    assert torch.equal(r[0].intensity, p0.intensity)  # the first step as drawn
    assert r[0].seeds == r[1].seeds == r[2].seeds == p0.seeds and r[3].seeds == p1.seeds
    for b in r[1:3]:
        assert not torch.equal(b.intensity, p0.intensity)
        for x, y in zip(b.intensity, p0.intensity, strict=True):  # same counts, moved
            assert torch.equal(x.flatten().sort().values, y.flatten().sort().values)
    # resuming inside a group: its first sample, the step, and the rest of the group follows
    resumed = training_batches(0, 2, 20, 0.0, n=32, reuse=3, start_step=2)
    assert torch.equal(next(resumed).intensity, r[2].intensity)
    assert torch.equal(next(resumed).intensity, r[3].intensity)
    with pytest.raises(ValueError, match="reuse"):
        next(training_batches(0, 1, 10, 0.3, n=32, reuse=0))
    with pytest.raises(ValueError, match="reuse"):
        _cfg(reuse=0)


def test_resume_inside_a_reuse_group_matches_uninterrupted_run(tmp_path) -> None:
    a = train(_cfg(reuse=2), tmp_path / "a")
    assert a.samples == 2  # steps 0-1 on crystal 0, step 2 on crystal 1
    train(_cfg(reuse=2), tmp_path / "b", until_step=1)
    b = train(_cfg(reuse=2), tmp_path / "b", resume=True)
    assert b.samples == 2
    sa = torch.load(a.checkpoint, weights_only=False)["state_dict"]
    sb = torch.load(b.checkpoint, weights_only=False)["state_dict"]
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-5), k


def test_train_checkpoint_resume_export(tmp_path) -> None:
    out = tmp_path / "run"
    r1 = train(_cfg(), out, max_minutes=1e-6)  # stops after the first step, checkpointed
    assert r1.step == 1 and (out / "last.pt").is_file()
    with pytest.raises(ValueError, match="exists"):
        train(_cfg(), out)
    r2 = train(_cfg(), out, resume=True)
    assert r2.step == 3 and r2.samples == 3
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]  # a run stopped by time validates first
    assert {"wca_weak", "wca_strong", "shells_weak", "loss", "object_loss"} <= set(lines[-1])
    assert 0 <= lines[-1]["wca_weak"] <= 1
    w = export_weights(out / "last.pt", tmp_path / "w.pt")
    loaded = load_model(w)
    assert loaded.model.config.grid == 32 and loaded.meta["step"] == 3


def test_resume_matches_uninterrupted_run(tmp_path) -> None:
    a = train(_cfg(), tmp_path / "a")
    train(_cfg(), tmp_path / "b", max_minutes=1e-6)
    b = train(_cfg(), tmp_path / "b", resume=True)
    sa = torch.load(a.checkpoint, weights_only=False)["state_dict"]
    sb = torch.load(b.checkpoint, weights_only=False)["state_dict"]
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-5), k


def test_until_step_stops_early_and_validates(tmp_path) -> None:
    r = train(_cfg(val_every=5), tmp_path / "u", until_step=2)
    assert r.step == 2 and "wca_weak" in r.val
    assert train(_cfg(val_every=5), tmp_path / "u", resume=True).step == 3
    with pytest.raises(ValueError, match="until_step"):
        train(_cfg(), tmp_path / "v", until_step=0)


def test_fine_tune_starts_from_parent_weights_and_new_crystals(tmp_path) -> None:
    parent = train(_cfg(steps=1), tmp_path / "parent")
    w = export_weights(parent.checkpoint, tmp_path / "parent.pt")
    # the parent's architecture wins over the child's own model config
    other = ModelConfig(kind="patterson", grid=32, unet=UNetConfig(channels=(2, 4)))
    child = _cfg(model=other, steps=1, lr=1e-12, warmup=0, init_from=str(w), first_sample=5)
    r = train(child, tmp_path / "child")
    ck = torch.load(r.checkpoint, weights_only=False)
    assert ck["model_config"]["unet"]["channels"] == [4, 8]
    assert ck["train_config"]["init_from"] == str(w) and r.samples == 6  # crystal 5 only
    sp = load_model(w).model.state_dict()
    for k, v in ck["state_dict"].items():  # lr ~ 0: the child still holds the parent's weights
        assert torch.allclose(v.float(), sp[k].float(), atol=1e-2), k
    assert train(child, tmp_path / "child", resume=True).step == 1  # resume ignores init_from


def test_fine_tune_can_widen_the_parent(tmp_path) -> None:
    """``widen``: the parent's trunk widened function-preservingly, then trained; the
    checkpoint (and so a resume or an export) holds the wider model."""
    parent = train(_cfg(steps=1), tmp_path / "parent")
    w = export_weights(parent.checkpoint, tmp_path / "parent.pt")
    child = _cfg(steps=2, init_from=str(w), first_sample=5, widen=(6, 12))
    r = train(child, tmp_path / "child", until_step=1)
    ck = torch.load(r.checkpoint, weights_only=False)
    assert ck["model_config"]["unet"]["channels"] == [6, 12]
    assert ck["train_config"]["widen"] == [6, 12]
    assert train(child, tmp_path / "child", resume=True).step == 2
    assert load_model(export_weights(tmp_path / "child" / "last.pt", tmp_path / "c.pt")
                      ).model.config.unet.channels == (6, 12)
    with pytest.raises(ValueError, match="widen needs init_from"):
        _cfg(widen=(6, 12))


def test_train_config_errors(tmp_path) -> None:
    for kw, name in [({"steps": 0}, "steps"), ({"lr": 0}, "lr"), ({"curriculum": 2}, "curriculum"),
                     ({"object_weight": -1}, "object_weight"), ({"first_sample": -1},
                                                                "first_sample"),
                     ({"first_sample": TRAIN_SAMPLES}, "first_sample"),
                     ({"dislocation_probability": 1.5}, "dislocation_probability"),
                     ({"val_counts": {"huge": 1}}, "strain_class"),
                     ({"val_counts": {"weak": 0}}, "val_counts"),
                     ({"val_counts": {}}, "val_counts"), ({"precision": "fp16"}, "precision")]:
        with pytest.raises(ValueError, match=name):
            _cfg(**kw)
    with pytest.raises(ValueError, match="does not exist"):
        train(_cfg(), tmp_path / "none", resume=True)


def test_draw_batch_matches_draw_crystal() -> None:
    items = [(TRAIN_SEED0 + 7, "weak"), (TRAIN_SEED0 + 300, "strong"), (TRAIN_SEED0 + 9, "medium")]
    got = draw_batch(items, n=32, device="cpu")
    for (seed, cls), (c, s) in zip(items, got, strict=True):
        ref, rs = draw_crystal(seed, cls, 32)
        assert s == rs
        assert torch.equal(c.intensity, ref.intensity) and torch.equal(c.phase_q, ref.phase_q)
        # the crystals every earlier run and the test set were drawn with
        one = simulate_crystal(s, n=32, device="cpu", **STRAIN_CLASSES[cls])
        assert torch.equal(c.intensity, one.intensity) and torch.equal(c.obj, one.obj)
    with pytest.raises(ValueError, match="strain class"):
        draw_batch([(1, "huge")], n=32)
    with pytest.raises(ValueError, match="items"):
        draw_batch([], n=32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_matches_the_cpu_batches(tmp_path) -> None:
    cpu = next(training_batches(0, 2, 10, 0.3, n=32))
    gpu = next(training_batches(0, 2, 10, 0.3, n=32, device="cuda"))
    assert gpu.intensity.is_cuda and gpu.seeds == cpu.seeds and gpu.classes == cpu.classes
    # the same crystals (the Poisson noise comes from the device's own generator)
    assert torch.allclose(gpu.obj.cpu(), cpu.obj, atol=1e-4)
    r = train(_cfg(device="cuda"), tmp_path / "gpu")
    assert r.step == 3 and 0 <= r.val["wca_weak"] <= 1


_ROOT = Path(__file__).resolve().parents[1]
_DEVICE_TRAIN = _ROOT / "benchmarks" / "training" / "device_train.py"


def _run_device_train(tmp_path, *args: str) -> tuple[dict, list[dict]]:
    """benchmarks/training/device_train.py on the CPU, tiny trunk: (summary, log lines)."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(_ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(_DEVICE_TRAIN), "--out", str(out),
         "--run-dir", str(tmp_path / "run"), "--device", "cpu", "--batch-size", "1",
         "--channels", "4,8", "--val", "1", *args],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert load_model(out / summary["weights"]).model.config.unet.channels == (4, 8)
    return summary, [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_device_train_script_smoke(tmp_path) -> None:
    """The prepared device run (benchmarks/training/device_train.py) on the CPU, 2 tiny steps:
    what the device tool brings back is there and loads."""
    summary, log = _run_device_train(tmp_path, "--steps", "2", "--val-every", "1",
                                     "--dislocations", "0.4")
    assert summary["complete"] and summary["step"] == 2
    assert len(log) == 2 and "wca_medium+disl" in log[-1]
    # a second call on a warm machine starts from the first call's checkpoint, left in its run
    # folder, in a folder of its own (a run empties its --run-dir first, so that one is refused)
    first = str(tmp_path / "run" / "last.pt")
    again, _ = _run_device_train(tmp_path / "second", "--steps", "1", "--init-from", first,
                                 "--first-sample", str(summary["samples"]))
    assert again["train_config"]["init_from"] == first and again["samples"] == 3
    proc = subprocess.run([sys.executable, str(_DEVICE_TRAIN), "--out", str(tmp_path / "x"),
                           "--run-dir", str(tmp_path / "run"), "--init-from", first],
                          env=dict(os.environ, PYTHONPATH=str(_ROOT)), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "another --run-dir" in proc.stderr
    assert (tmp_path / "run" / "last.pt").is_file()


def test_device_train_sizes_its_schedule_to_the_budget(tmp_path) -> None:
    """``--steps 0``: a probe times the steps on this device and the schedule is sized to
    ``--minutes``; the crystals come from a worker process, each shown twice; the log ends
    with a validation."""
    summary, log = _run_device_train(tmp_path, "--steps", "0", "--probe-steps", "8",
                                     "--minutes", "0.4", "--workers", "1", "--reuse", "2",
                                     "--precision", "bf16")
    assert summary["probe_s_per_step"] > 0 and summary["steps"] >= 1
    assert summary["train_config"]["workers"] == 1 and summary["step"] >= 1
    assert summary["samples"] == (summary["step"] + 1) // 2  # distinct crystals
    assert not (tmp_path / "run-probe").exists()
    assert log[-1]["step"] == summary["step"] and "wca_strong" in log[-1]


def test_training_samples_stay_out_of_the_validation_seeds() -> None:
    """Sample k draws seeds from TRAIN_SEED0 + 100 k: the last sample a run may draw keeps
    them below VAL_SEED0, and a batch past it is refused rather than drawn."""
    assert TRAIN_SEED0 + 100 * (TRAIN_SAMPLES - 1) + 99 < VAL_SEED0
    stream = training_batches(TRAIN_SAMPLES - 1, 2, 10, 0.0, n=32)
    with pytest.raises(ValueError, match="validation seeds"):
        next(stream)


def _device_train_module():
    """benchmarks/training/device_train.py imported as a module (it is a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("device_train", _DEVICE_TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_train_probe_times_the_steady_stream() -> None:
    """With workers the probe outlasts the first round of batches (their arrival burst is not
    the stream's pace) and times only the rounds after it; without workers, steps past the
    first quarter."""
    window = _device_train_module().probe_window
    assert window(40, 0, 1) == (40, 10)
    assert window(40, 0, 4) == (40, 10)
    assert window(40, 15, 4) == (240, 60)  # session 12's H200 call timed steps 11-40
    assert window(400, 15, 4) == (400, 100)
    assert window(8, 1, 2) == (8, 2)
    with pytest.raises(ValueError, match="probe-steps"):
        window(4, 0, 1)


def test_device_train_cuts_large_weights_for_the_return(tmp_path) -> None:
    """A file over the device tool's 16 MiB comes back in parts that join to it."""
    module = _device_train_module()
    blob = bytes(range(256)) * 40  # 10,240 bytes
    big = tmp_path / "weights-step9.pt"
    big.write_bytes(blob)
    parts = module.split_for_return(big, limit=4096)
    assert [p.name for p in parts] == [f"weights-step9.pt.part{k}" for k in range(3)]
    assert not big.exists() and all(p.stat().st_size <= 4096 for p in parts)
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.part*"))) == blob
    small = tmp_path / "small.pt"
    small.write_bytes(b"x" * 10)
    assert module.split_for_return(small, limit=4096) == [small] and small.exists()
    with pytest.raises(ValueError, match="parts"):
        module.split_for_return(small, limit=1)
    with pytest.raises(ValueError, match="limit"):
        module.split_for_return(small, limit=0)


def _dislocated(c) -> bool:
    return any(m["kind"] in DISLOCATION_MODELS for m in c.spec.strain_models)


def test_dislocation_classes_and_odds() -> None:
    assert class_arguments("weak") == STRAIN_CLASSES["weak"]
    forced = {**STRAIN_CLASSES["weak"], "dislocation_probability": 1.0}
    assert class_arguments("weak+disl") == forced
    assert class_arguments("strong", 0.0)["dislocation_probability"] == 0.0
    for bad, name in [("huge+disl", "strain_class"), ("weak+twin", "strain_class")]:
        with pytest.raises(ValueError, match=name):
            class_arguments(bad)
    with pytest.raises(ValueError, match="dislocation_probability"):
        class_arguments("weak", 2.0)
    # a "+disl" class: every crystal, every level (weak too, which the simulator's odds never
    # give a dislocation), and the crystals of the class without the suffix stay as they were
    items = [(TRAIN_SEED0 + 7, "weak+disl"), (TRAIN_SEED0 + 300, "strong+disl")]
    assert all(_dislocated(c) for c, _ in draw_batch(items, n=32))
    plain, _ = draw_crystal(TRAIN_SEED0 + 7, "weak", 32)
    assert not _dislocated(plain)
    # the training stream's odds apply to every class
    got = draw_batch([(TRAIN_SEED0 + k, "weak") for k in range(3)], n=32,
                     dislocation_probability=1.0)
    assert all(_dislocated(c) for c, _ in got)
    name, _, c = next(fixed_set(VAL_SEED0, {"medium+disl": 1}, n=32))
    assert name == "medium+disl" and _dislocated(c)


def _faulted(c) -> bool:
    return any(m["kind"] == "fault" for m in c.spec.strain_models)


def test_fault_classes_and_odds() -> None:
    assert class_arguments("weak+fault") == {**STRAIN_CLASSES["weak"], "fault_probability": 1.0}
    both = class_arguments("medium+disl+fault")
    assert both["dislocation_probability"] == 1.0 and both["fault_probability"] == 1.0
    assert class_arguments("strong", None, 0.3)["fault_probability"] == 0.3
    assert "fault_probability" not in class_arguments("strong", None, 0.0)
    with pytest.raises(ValueError, match="strain_class"):
        class_arguments("weak+fault+disl")  # the suffixes come in one order
    with pytest.raises(ValueError, match="fault_probability"):
        class_arguments("weak", None, -0.1)
    with pytest.raises(ValueError, match="fault_probability"):
        TrainConfig(fault_probability=1.5)
    # every crystal of a "+fault" class; the same seed without the suffix has none, and the
    # same geometry (the fault is drawn apart from the rest of the spec)
    (c, s), = draw_batch([(TRAIN_SEED0 + 7, "medium+fault")], n=32)
    plain, s0 = draw_crystal(TRAIN_SEED0 + 7, "medium", 32)
    assert _faulted(c) and not _faulted(plain)
    assert s == s0 and c.spec.shape == plain.spec.shape and c.spec.seed == plain.spec.seed
    got = draw_batch([(TRAIN_SEED0 + k, "weak") for k in range(3)], n=32, fault_probability=1.0)
    assert all(_faulted(c) for c, _ in got)
    name, _, c = next(fixed_set(VAL_SEED0, {"weak+fault": 1}, n=32))
    assert name == "weak+fault" and _faulted(c) and c.meta["faults"]
    # the training stream passes its odds on: its crystals are the faulted draws
    batch = next(training_batches(0, 2, 10, 0.0, n=32, fault_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32, fault_probability=1.0)
    assert _faulted(first) and torch.equal(batch.intensity[0], first.intensity)


def _looped(c) -> bool:
    return any(m["kind"] == "loop" for m in c.spec.strain_models)


def test_loop_classes_and_odds() -> None:
    assert class_arguments("weak+loop") == {**STRAIN_CLASSES["weak"], "loop_probability": 1.0}
    all3 = class_arguments("medium+disl+fault+loop")
    assert all3["dislocation_probability"] == all3["fault_probability"] == 1.0
    assert all3["loop_probability"] == 1.0
    assert class_arguments("strong", None, None, 0.2)["loop_probability"] == 0.2
    assert "loop_probability" not in class_arguments("strong", None, 0.3, 0.0)
    with pytest.raises(ValueError, match="strain_class"):
        class_arguments("weak+loop+fault")  # +loop comes last
    with pytest.raises(ValueError, match="loop_probability"):
        TrainConfig(loop_probability=2.0)
    (c, s), = draw_batch([(TRAIN_SEED0 + 7, "medium+loop")], n=32)
    plain, s0 = draw_crystal(TRAIN_SEED0 + 7, "medium", 32)
    assert _looped(c) and not _looped(plain) and c.meta["loops"] and not plain.meta["loops"]
    assert s == s0 and c.spec.shape == plain.spec.shape
    # the training stream passes its odds on
    batch = next(training_batches(0, 2, 10, 0.0, n=32, loop_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32, loop_probability=1.0)
    assert _looped(first) and torch.equal(batch.intensity[0], first.intensity)


def test_network_classes_and_odds() -> None:
    assert class_arguments("weak+net") == {**STRAIN_CLASSES["weak"], "network_probability": 1.0}
    assert class_arguments("medium+disl+loop+net")["network_probability"] == 1.0
    assert class_arguments("strong", network_probability=0.2)["network_probability"] == 0.2
    with pytest.raises(ValueError, match="strain_class"):
        class_arguments("weak+net+loop")  # +net comes last
    with pytest.raises(ValueError, match="network_probability"):
        TrainConfig(network_probability=-0.1)

    def lines(c) -> int:
        return sum(m["kind"] in ("screw", "edge") for m in c.spec.strain_models)

    (c, s), = draw_batch([(TRAIN_SEED0 + 7, "weak+net")], n=32)
    plain, s0 = draw_crystal(TRAIN_SEED0 + 7, "weak", 32)
    assert 3 <= lines(c) <= 4 and lines(plain) == 0 and len(c.meta["dislocations"]) == lines(c)
    assert s == s0 and c.spec.shape == plain.spec.shape
    # the training stream passes its odds on
    batch = next(training_batches(0, 2, 10, 0.0, n=32, network_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32,
                             network_probability=1.0)
    assert lines(first) >= 3 and torch.equal(batch.intensity[0], first.intensity)


@pytest.mark.parametrize(("suffix", "odds", "earlier"), [
    ("+coh", "coherence_probability", "+net"), ("+habit", "habit_probability", "+coh")])
def test_last_suffixes_set_their_odds(suffix: str, odds: str, earlier: str) -> None:
    """A class suffix sets its simulator odds to 1, after every suffix before it; the training
    stream's odds pass to every class; an odds outside [0, 1] is refused by name."""
    assert class_arguments("medium" + suffix) == {**STRAIN_CLASSES["medium"], odds: 1.0}
    assert class_arguments("weak" + earlier + suffix)[odds] == 1.0
    assert class_arguments("strong", **{odds: 0.2})[odds] == 0.2
    with pytest.raises(ValueError, match="strain_class"):
        class_arguments("weak" + suffix + earlier)  # the order is fixed
    with pytest.raises(ValueError, match=odds):
        TrainConfig(**{odds: 1.5})


def test_habit_classes_and_odds() -> None:
    (c, _), = draw_batch([(TRAIN_SEED0 + 11, "medium+habit")], n=32)
    assert c.spec.shape in ("rod", "platelet")
    assert c.spec.shape_params.get("aspect", 3.0) >= 3.0
    assert c.spec.shape_params.get("thickness", 0.2) <= 0.2
    # the training stream passes its odds on
    batch = next(training_batches(0, 2, 10, 0.0, n=32, habit_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32, habit_probability=1.0)
    assert first.spec.shape in ("rod", "platelet")
    assert torch.equal(batch.intensity[0], first.intensity)
    plain = next(training_batches(0, 2, 10, 0.0, n=32))
    assert not torch.equal(plain.intensity[0], batch.intensity[0])


def test_polynomial_classes_and_odds() -> None:
    from bcdi_stream.simulation import SMOOTH_MODELS

    assert class_arguments("strong+poly") == {**STRAIN_CLASSES["strong"],
                                              "polynomial_probability": 1.0}
    assert class_arguments("strong+field+poly+disl")["polynomial_probability"] == 1.0
    with pytest.raises(ValueError, match="strain_class"):
        class_arguments("strong+poly+field")  # +field comes first
    with pytest.raises(ValueError, match="polynomial_probability"):
        TrainConfig(polynomial_probability=1.5)
    (c, _), = draw_batch([(TRAIN_SEED0 + 11, "strong+poly")], n=32)
    assert [m["kind"] for m in c.spec.strain_models if m["kind"] in SMOOTH_MODELS] == [
        "polynomial"]
    # the training stream passes its odds on
    batch = next(training_batches(0, 2, 10, 0.0, n=32, polynomial_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32,
                             polynomial_probability=1.0)
    assert torch.equal(batch.intensity[0], first.intensity)
    assert first.spec.strain_models[0]["kind"] == "polynomial"


def test_coherence_classes_and_odds() -> None:
    assert class_arguments("medium+disl+net+coh")["coherence_probability"] == 1.0
    (c, s), = draw_batch([(TRAIN_SEED0 + 7, "weak+coh")], n=32)
    plain, s0 = draw_crystal(TRAIN_SEED0 + 7, "weak", 32)
    assert max(c.spec.coherence[:3]) > 0 and plain.spec.coherence == (0.0, 0.0, 0.0, 0.0)
    assert s == s0 and c.spec.shape == plain.spec.shape and torch.equal(c.obj, plain.obj)
    # the training stream passes its odds on
    batch = next(training_batches(0, 2, 10, 0.0, n=32, coherence_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32,
                             coherence_probability=1.0)
    assert max(first.spec.coherence[:3]) > 0 and torch.equal(batch.intensity[0], first.intensity)


def _field_alone(c) -> bool:
    from bcdi_stream.simulation import SMOOTH_MODELS

    return [m["kind"] for m in c.spec.strain_models if m["kind"] in SMOOTH_MODELS] == ["smooth"]


def test_field_classes_and_odds() -> None:
    assert class_arguments("strong+field") == {**STRAIN_CLASSES["strong"],
                                               "field_probability": 1.0}
    both = class_arguments("strong+field+disl")
    assert both["field_probability"] == both["dislocation_probability"] == 1.0
    assert class_arguments("medium", None, None, None, 0.3)["field_probability"] == 0.3
    assert "field_probability" not in class_arguments("strong")
    with pytest.raises(ValueError, match="strain_class"):
        class_arguments("strong+disl+field")  # +field comes first
    with pytest.raises(ValueError, match="field_probability"):
        TrainConfig(field_probability=-0.1)
    (c, s), = draw_batch([(TRAIN_SEED0 + 11, "strong+field")], n=32)
    plain, s0 = draw_crystal(TRAIN_SEED0 + 11, "strong", 32)
    # the same draw but the field (the gradient cap may move either to a later seed)
    assert _field_alone(c) and (s != s0 or c.spec.shape == plain.spec.shape)
    # the training stream passes its odds on
    batch = next(training_batches(0, 2, 10, 0.0, n=32, field_probability=1.0))
    (first, _), = draw_batch([(batch.seeds[0], batch.classes[0])], n=32, field_probability=1.0)
    assert torch.equal(batch.intensity[0], first.intensity)
    assert _field_alone(first) or first.spec.phase_span == 0


def test_training_with_dislocations_validates_the_dislocated_class(tmp_path) -> None:
    res = train(_cfg(steps=2, dislocation_probability=1.0,
                     val_counts={"weak": 1, "weak+disl": 1}), tmp_path / "run")
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    val = [r for r in log if "wca_weak+disl" in r]
    assert val and "wca_weak" in val[-1] and res.step == 2
    ck = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["train_config"]["dislocation_probability"] == 1.0
    assert TrainConfig.from_dict(ck["train_config"]).val_counts == {"weak": 1, "weak+disl": 1}


def test_bf16_training_keeps_float32_weights_and_follows_fp32(tmp_path) -> None:
    a = train(_cfg(steps=2, val_every=1), tmp_path / "fp32")
    b = train(_cfg(steps=2, val_every=1, precision="bf16"), tmp_path / "bf16")
    ca = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    cb = torch.load(b.checkpoint, map_location="cpu", weights_only=False)
    assert cb["train_config"]["precision"] == "bf16" and ca["train_config"]["precision"] == "fp32"
    # weights (and the optimiser's state) stay float32; the convolutions did run in bfloat16
    assert all(v.dtype == ca["state_dict"][k].dtype for k, v in cb["state_dict"].items())
    assert any(not torch.equal(v, ca["state_dict"][k]) for k, v in cb["state_dict"].items())
    la, lb = ([json.loads(x) for x in (tmp_path / r / "log.jsonl").read_text().splitlines()]
              for r in ("fp32", "bf16"))
    # step 1: the same initial weights and crystal, so the loss differs by rounding only
    assert lb[0]["loss"] == pytest.approx(la[0]["loss"], rel=0.02)
    assert math.isfinite(lb[-1]["loss"]) and 0 <= lb[-1]["wca_weak"] <= 1
    # a checkpoint written before the option existed resumes in float32
    del ca["train_config"]["precision"]
    assert TrainConfig.from_dict(ca["train_config"]).precision == "fp32"


def test_training_step_benchmark_times_both_precisions(tmp_path) -> None:
    from typer.testing import CliRunner

    from bcdi_stream.cli import app

    out = tmp_path / "training.json"
    res = CliRunner().invoke(app, ["benchmark", "training", "--quick", "--threads", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    every = json.loads(out.read_text())["training"]
    rows = [r for r in every if "precision" in r]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    streams = [r for r in every if r.get("stream") == "training_batches"]
    assert [(r["workers"] > 0, r["reuse"]) for r in streams] == [
        (False, 1), (False, 4), (True, 1), (True, 4)]
    assert all(r["s_per_batch"] > 0 and r["crystals_shown_per_s"] > 0 for r in streams)
    assert all(r["median_s_per_step"] > 0 and r["steps"] == 2 for r in rows)
    assert rows[1]["speedup_vs_fp32"] > 0 and isinstance(rows[1]["cpu_bf16_flags"], list)
