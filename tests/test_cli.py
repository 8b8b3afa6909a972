"""The bcdi-stream command line: end to end on a simulated crystal, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
