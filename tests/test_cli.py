"""The bcdi-stream command line: end to end on a simulated crystal, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from bcdi_stream.cli import main


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_help_everywhere(capsys) -> None:
    code, out, err = _run(capsys)
    assert "Usage" in out + err  # bare command: help
    for args in (["--help"], ["simulate", "--help"], ["reconstruct", "--help"],
                 ["compare", "--help"], ["benchmark", "--help"]):
        code, out, _ = _run(capsys, *args)
        assert code == 0, args
        assert "Usage" in out
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.startswith("bcdi-stream ")


@pytest.mark.slow
def test_simulate_reconstruct_weak_64(tmp_path: Path, capsys) -> None:
    """The issue's acceptance path: a weak 64³ crystal is recovered to < 0.2 rad."""
    cxi = tmp_path / "crystal.cxi"
    code, out, err = _run(capsys, "simulate", cxi, "--seed", "1", "--strain", "weak", "--json")
    assert code == 0, err
    sim = json.loads(out)
    assert sim["phase_span"] < np.pi
    truth = Path(sim["truth"])
    with h5py.File(cxi) as f:
        assert f["/entry_1/data_1/data"].shape == (64, 64, 64)
    rec = tmp_path / "recon.cxi"
    code, out, err = _run(capsys, "reconstruct", cxi, "--out", rec, "--method", "conventional",
                          "--runs", "4", "--n-raar", "300", "--n-er", "150", "--truth", truth,
                          "--json", "--device", "cpu")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["metrics"]["phase_rmse"] < 0.2
    assert summary["metrics"]["support_iou"] > 0.6
    assert summary["method"] == "conventional"
    stats = summary["strain"]  # the strain statistics and units reach the summary
    assert sorted(stats) == ["strain_max", "strain_mean", "strain_min", "strain_rms"]
    assert stats["strain_min"] <= stats["strain_mean"] <= stats["strain_max"]
    assert stats["strain_rms"] > 0 and summary["units"]["strain"] == "rad/voxel"
    with h5py.File(rec) as f:
        assert f["/entry_1/image_1/data"].dtype == np.complex64
        assert f["/entry_1/image_1/data"].shape == (64, 64, 64)
        assert f["/entry_1/image_1/mask"].shape == (64, 64, 64)
    code, out, err = _run(capsys, "compare", rec, truth, "--json")
    assert code == 0, err
    assert json.loads(out)["phase_rmse"] < 0.2


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    good = rng.poisson(5, (16, 16, 16)).astype(np.float32)
    cases: dict[str, tuple[Path, str]] = {}
    p = tmp / "flat.npy"
    np.save(p, good[0])
    cases["2d"] = (p, "3D")
    p = tmp / "nan.npy"
    a = good.copy()
    a[1, 2, 3] = np.nan
    np.save(p, a)
    cases["nan"] = (p, "NaN")
    p = tmp / "inf.npy"
    a = good.copy()
    a[1, 2, 3] = np.inf
    np.save(p, a)
    cases["inf"] = (p, "inf")
    p = tmp / "zeros.npy"
    np.save(p, np.zeros((16, 16, 16)))
    cases["zeros"] = (p, "zero")
    p = tmp / "nodata.cxi"
    with h5py.File(p, "w") as f:
        f.create_group("entry_1/data_1")
    cases["cxi without data"] = (p, "entry_1/data_1/data")
    p = tmp / "badmask.npz"
    np.savez(p, data=good, mask=np.zeros((8, 8, 8), dtype=bool))
    cases["mask shape"] = (p, "mask")
    p = tmp / "tiny.npy"
    np.save(p, np.ones((4, 4, 4)))
    cases["too small"] = (p, "too small")
    p = tmp / "huge.npy"
    np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=(1024, 1024, 8))
    cases["too large"] = (p, "too large")
    p = tmp / "garbage.cxi"
    p.write_bytes(b"not an hdf5 file")
    cases["not hdf5"] = (p, "HDF5")
    cases["missing"] = (tmp / "missing.cxi", "not found")
    p = tmp / "flags.npy"
    np.save(p, good > 5)
    cases["bool"] = (p, "dtype bool")
    p = tmp / "big.npy"
    np.save(p, good.astype(np.float64) * 1e40)
    cases["beyond float32"] = (p, "float32")
    p = tmp / "brokenmask.cxi"
    with h5py.File(p, "w") as f:
        f.create_dataset("entry_1/data_1/data", data=good)
        f["entry_1/instrument_1/detector_1/mask"] = h5py.ExternalLink("gone.h5", "/mask")
    cases["broken mask link"] = (p, "mask is a broken link")
    return cases


def test_bad_inputs_one_line_nonzero(tmp_path: Path, capsys) -> None:
    for name, (path, word) in _bad_inputs(tmp_path).items():
        code, _, err = _run(capsys, "reconstruct", path, "--out", tmp_path / "o.cxi",
                              "--runs", "1", "--n-raar", "2", "--n-er", "2")
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("bcdi-stream: error:"), (name, err)
        assert word.lower() in lines[0].lower(), (name, err)
        assert "Traceback" not in err


def test_bad_arguments(tmp_path: Path, capsys) -> None:
    good = tmp_path / "g.npy"
    np.save(good, np.random.default_rng(0).poisson(5, (16, 16, 16)).astype(np.float32))
    for args, word in [
        (["reconstruct", good, "--out", tmp_path / "o.txt"], ".cxi"),
        (["reconstruct", good, "--out", tmp_path / "o.cxi", "--device", "nonsense"], "device"),
        (["reconstruct", good, "--out", tmp_path / "o.cxi", "--method", "ai", "--model",
          tmp_path / "none.pt"], "weights"),
        (["simulate", tmp_path / "s.cxi", "--size", "3"], "n"),
        (["demo", "--size", "8"], "--size must be >= 16"),  # before Tiled starts
    ]:
        code, _, err = _run(capsys, *args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert word in err, (args, err)
    for option in (["--runs", "0"], ["--noise-filter", "-1"], ["--crystal-support", "1"]):
        code, _, err = _run(capsys, "reconstruct", good, "--out", tmp_path / "o.cxi", *option)
        assert code == 2 and "Traceback" not in err, (option, err)


def test_console_script_exit_code(tmp_path: Path) -> None:
    """The installed entry point itself: one line on stderr, exit code 2, no traceback."""
    bad = tmp_path / "flat.npy"
    np.save(bad, np.ones((8, 8)))
    proc = subprocess.run(
        [sys.executable, "-m", "bcdi_stream.cli", "reconstruct", str(bad), "--out",
         str(tmp_path / "o.cxi")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------------------------------
# checks that come before the phasing, the output file, the settings recorded
# -------------------------------------------------------------------------------------------
TINY = ("--method", "conventional", "--runs", "1", "--n-raar", "4", "--n-er", "4")


def _peak(path: Path) -> Path:
    """A 16³ Bragg peak that the tiny conventional run reconstructs in a fraction of a second."""
    g = np.meshgrid(*[np.arange(16) - 8] * 3, indexing="ij")
    counts = np.random.default_rng(0).poisson(2000 * np.exp(-sum(x**2 for x in g) / 8) + 0.5)
    with h5py.File(path, "w") as f:
        f.create_dataset("entry_1/data_1/data", data=counts.astype(np.uint16))
    return path


def _truth(path: Path, shape=(16, 16, 16), support_shape=(16, 16, 16), empty=False) -> Path:
    support = np.zeros(support_shape, bool) if empty else np.ones(support_shape, bool)
    np.savez(path, obj=np.ones(shape, np.complex64), support=support)
    return path


@pytest.fixture
def no_phasing(monkeypatch):
    """Make the phasing itself fail: a check that passes through would be seen."""
    import bcdi_stream.pipeline

    def boom(*args, **kwargs):
        raise AssertionError("the phasing ran")

    monkeypatch.setattr(bcdi_stream.pipeline, "reconstruct", boom)


def _existing_input(tmp: Path) -> Path:
    return _peak(tmp / "copy_of_input.cxi")


BEFORE_PHASING: dict[str, tuple[Any, str]] = {
    "unusable device": (lambda d: ["--device", "mps"], "device 'mps'"),
    "meta device": (lambda d: ["--device", "meta"], "device 'meta'"),
    "huge seed": (lambda d: ["--seed", "99999999999999999999"], "--seed"),
    "negative seed": (lambda d: ["--seed", "-1"], "--seed"),
    "infinite noise filter": (lambda d: ["--noise-filter", "inf"], "--noise-filter"),
    "truth grid": (lambda d: ["--truth", _truth(d / "t8.npz", shape=(8, 8, 8))],
                   "differs from the data"),
    "truth support shape": (lambda d: ["--truth", _truth(d / "ts.npz", support_shape=(4, 4))],
                            "support shape"),
    "truth support empty": (lambda d: ["--truth", _truth(d / "te.npz", empty=True)],
                            "support is empty"),
    "out is a directory": (lambda d: (d / "adir.cxi").mkdir() or ["--out", d / "adir.cxi"],
                           "is a directory"),
    "out under a file": (lambda d: (d / "afile").write_text("x") and
                         ["--out", d / "afile" / "o.cxi"], "not a directory"),
    # an existing file that is not a reconstruction (an input-data CXI) is never overwritten
    "out is input data": (lambda d: ["--out", _existing_input(d)], "not a reconstruction"),
}


@pytest.mark.parametrize("name", list(BEFORE_PHASING))
def test_bad_arguments_fail_before_phasing(tmp_path: Path, capsys, no_phasing, name) -> None:
    make, word = BEFORE_PHASING[name]
    inp = _peak(tmp_path / "in.cxi")
    extra = make(tmp_path)
    code, out, err = _run(capsys, "reconstruct", inp, "--out", tmp_path / "o.cxi", *TINY,
                          *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bcdi-stream: error:"), err
    assert word in lines[0], err
    assert not out.strip() and not (tmp_path / "o.cxi").exists()
    if name == "out is input data":  # left as it was
        with h5py.File(tmp_path / "copy_of_input.cxi") as f:
            assert "entry_1/image_1" not in f


def test_bad_settings_file_fails_before_phasing(tmp_path: Path, capsys, monkeypatch,
                                                no_phasing) -> None:
    inp = _peak(tmp_path / "in.cxi")
    monkeypatch.setenv("BCDI_CONFIG", str(tmp_path / "missing.toml"))
    code, _, err = _run(capsys, "reconstruct", inp, "--out", tmp_path / "o.cxi", *TINY)
    assert code == 2 and "BCDI_CONFIG" in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.delenv("BCDI_CONFIG")
    cfg = tmp_path / "bcdi.toml"
    cfg.write_text("[phasing]\nrun = 3\n")
    code, _, err = _run(capsys, "reconstruct", inp, "--out", tmp_path / "o.cxi", *TINY,
                        "--config", cfg)
    assert code == 2 and "'phasing.run'" in err and len(err.strip().splitlines()) == 1, err


def test_reconstruct_records_its_settings_and_replaces_a_reconstruction(tmp_path: Path,
                                                                         capsys) -> None:
    inp = _peak(tmp_path / "in.cxi")
    out = tmp_path / "rec.cxi"
    for runs in ("1", "2"):  # the second run replaces the first reconstruction
        code, _, err = _run(capsys, "reconstruct", inp, "--out", out, *TINY, "--runs", runs,
                            "--noise-filter", "3", "--json")
        assert code == 0, err
    with h5py.File(out) as f:
        meta = json.loads(f["entry_1/image_1/process_1/meta_json"][()])
        assert f["entry_1/image_1/process_1/settings/runs"][()] == 2
    assert meta["settings"]["runs"] == 2 and meta["settings"]["n_raar"] == 4
    assert meta["settings"]["noise_filter"] == 3.0


@pytest.mark.parametrize("source", ["env", "toml"])
def test_reconstruct_applies_the_settings_threads(tmp_path: Path, capsys, monkeypatch,
                                                  source) -> None:
    import torch

    inp = _peak(tmp_path / "in.cxi")
    args = ["reconstruct", inp, "--out", tmp_path / "o.cxi", *TINY]
    if source == "env":
        monkeypatch.setenv("BCDI_THREADS", "2")
    else:
        cfg = tmp_path / "bcdi.toml"
        cfg.write_text("threads = 2\n")
        args += ["--config", cfg]
    assert torch.get_num_threads() == 1
    code, _, err = _run(capsys, *args)
    assert code == 0, err
    assert torch.get_num_threads() == 2
    code, _, err = _run(capsys, *args, "--threads", "1")  # the option wins
    assert code == 0, err
    assert torch.get_num_threads() == 1


def test_truth_comparison_failure_keeps_the_reconstruction(tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    import bcdi_stream.cli

    def failing(*args, **kwargs):
        raise ValueError("cannot align")

    monkeypatch.setattr(bcdi_stream.cli, "_compare", failing)
    inp = _peak(tmp_path / "in.cxi")
    out = tmp_path / "rec.cxi"
    code, _, err = _run(capsys, "reconstruct", inp, "--out", out, *TINY,
                        "--truth", _truth(tmp_path / "t.npz"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot align" in err and str(out) in err
    with h5py.File(out) as f:
        assert f["entry_1/image_1/data"].shape == (16, 16, 16)


def test_simulate_truth_path(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "afile").write_text("x")
    for truth, word in ((tmp_path / "t.dat", ".npz"), (tmp_path / "afile" / "t.npz",
                                                       "not a directory")):
        code, _, err = _run(capsys, "simulate", tmp_path / "s.cxi", "--size", "16",
                            "--truth", truth)
        assert code == 2 and word in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "s.cxi").exists()  # nothing written
    assert not list(tmp_path.glob("t.dat*"))
    code, out, err = _run(capsys, "simulate", tmp_path / "s.cxi", "--size", "16", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["truth"] == str(tmp_path / "s.truth.npz") and Path(summary["truth"]).is_file()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    truth = tmp_path / "sub" / "t2.npz"
    code, _, err = _run(capsys, "simulate", tmp_path / "s2.cxi", "--size", "16",
                        "--truth", truth)
    assert code == 2 and str(truth) in err and "No space" in err, err
    assert not (tmp_path / "s2.cxi").exists()  # no measurement without its ground truth


def test_data_warnings_name_the_ceiling_and_a_fit_below_the_noise() -> None:
    from bcdi_stream.cli import _data_warnings
    from bcdi_stream.io import CXIData
    from bcdi_stream.validation import photon_scale

    def warnings_of(data: CXIData, quality: dict) -> list[str]:
        return _data_warnings(data, quality, photon_scale(data.intensity, data.mask))

    rng = np.random.default_rng(0)
    data = CXIData(intensity=rng.poisson(5, (16, 16, 16)).astype(np.float32), mask=None,
                   meta={"dtype": "uint8", "ceiling_voxels": 12, "ceiling_value": 255})
    warnings = warnings_of(data, {"excess_misfit": -0.35})
    assert any("12 voxels at the uint8 maximum 255" in w for w in warnings)
    assert any("better than their noise allows" in w for w in warnings)
    clean = CXIData(intensity=data.intensity, mask=None, meta={})
    assert not any("maximum" in w or "noise" in w or "pedestal" in w or "amplitudes" in w
                   or "oversampled" in w
                   for w in warnings_of(clean, {"excess_misfit": 0.001,
                                                "support_fraction": 0.02}))
    # a support over half the grid (a bright voxel "phased" into 0.85 of it)
    assert any("support covers 85% of the grid" in w and "not oversampled" in w
               for w in warnings_of(clean, {"excess_misfit": 0.001, "support_fraction": 0.85}))
    pedestal = CXIData(intensity=data.intensity + 100, mask=None, meta={})
    assert any("no measured voxel is 0" in w for w in warnings_of(pedestal, {}))
    amplitudes = CXIData(intensity=np.sqrt(data.intensity), mask=None, meta={})
    assert any("look like amplitudes" in w for w in warnings_of(amplitudes, {}))


def test_a_stuck_pixel_and_a_glitched_frame_are_named_as_such(tmp_path: Path, capsys) -> None:
    """CXI input with a pixel stuck at one count in every frame and a frame scaled by a beam
    dump: the warnings once called the pixel a saturated peak and another Bragg peak, and said
    nothing of the frame; each is now named for what it is, and left free."""
    from bcdi_stream.simulation import simulate_crystal

    counts = simulate_crystal(0, n=32, strain="weak", peak_counts=2e3, background=0.0,
                              device="cpu").intensity.numpy()
    k = int(counts.sum(axis=(1, 2)).argmax()) + 1
    counts[k] = np.round(counts[k] * 0.1)
    counts[:, 3, 25] = 5000
    inp = tmp_path / "faulty.cxi"
    with h5py.File(inp, "w") as f:
        f.create_dataset("entry_1/data_1/data", data=counts.astype(np.uint32))
    code, out, err = _run(capsys, "reconstruct", inp, "--out", tmp_path / "r.cxi", *TINY,
                          "--device", "cpu")
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert any("1 hot or stuck detector pixel" in w and "left free" in w for w in warnings)
    assert any(w.startswith(f"warning: frame {k} holds 0.1x") and "beam dump" in w
               and "left free" in w for w in warnings), warnings
    assert not any("share the maximum count" in w or "another Bragg peak in the array" in w
                   or "is cut" in w for w in warnings), warnings
    code, out, err = _run(capsys, "reconstruct", inp, "--out", tmp_path / "r.cxi", *TINY,
                          "--device", "cpu", "--json")
    summary = json.loads(out)
    assert summary["hot_pixels"] == 1 and summary["glitched_frames"] == [k]
    assert summary["saturated_voxels"] == 0 and summary["secondary_peak_voxels"] == 0
    assert sum("hot or stuck" in w for w in summary["warnings"]) == 1
    assert sum(w.startswith(f"frame {k} holds") for w in summary["warnings"]) == 1


def test_data_warnings_say_what_the_phasing_left_free() -> None:
    from bcdi_stream.cli import _data_warnings
    from bcdi_stream.io import CXIData

    rng = np.random.default_rng(0)
    data = CXIData(intensity=rng.poisson(5, (16, 16, 16)).astype(np.float32), mask=None,
                   meta={})
    faults = {"hot_pixels": 3, "dead_pixels": 2, "zinger_voxels": 1, "glitched_frames": [7],
              "glitch_factors": [2.9]}
    warnings = _data_warnings(data, {}, 1.0, faults=faults)
    assert any(w.startswith("1 voxel hit by a cosmic ray") and w.endswith(
        "left free in the phasing") for w in warnings)
    assert any(w.startswith("2 dead detector pixels") and w.endswith(
        "left free in the phasing") for w in warnings)
    assert any(w.startswith("3 hot or stuck detector pixels") and w.endswith(
        "left free in the phasing") for w in warnings)
    assert any(w.startswith("frame 7 holds 2.9x") and "top-up" in w
               and w.endswith("left free in the phasing") for w in warnings)
    # not photon counts: the phasing found the frame but phased it as measured
    warnings = _data_warnings(data, {}, None, faults=faults)
    assert any(w.startswith("frame 7") and w.endswith("phased as measured") for w in warnings)
