"""`bcdi-stream train`, `benchmark model` and `reconstruct --method ai/auto` end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bcdi_stream.cli import main


def _run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Two real training steps of a tiny 64³ model through the CLI, exported."""
    d = tmp_path_factory.mktemp("train")
    code = main(["train", str(d / "run"), "--steps", "2", "--batch-size", "1",
                 "--channels", "4,8", "--val-every", "1", "--checkpoint-every", "1",
                 "--threads", "1", "--no-progress", "--export", str(d / "w.pt")])
    assert code == 0
    return d


def test_train_writes_log_checkpoint_and_weights(trained: Path, capsys) -> None:
    assert (trained / "w.pt").is_file() and (trained / "run" / "last.pt").is_file()
    log = [json.loads(x) for x in (trained / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    # a finished run resumes as a no-op; a new run refuses to overwrite it
    code, out, err = _run(capsys, "train", trained / "run", "--resume", "--no-progress")
    assert code == 0 and json.loads(out.splitlines()[0])["step"] == 2
    code, out, err = _run(capsys, "train", trained / "run", "--steps", "2", "--no-progress")
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["--channels", "a,b"], "--channels"),
    (["--kind", "vit"], "kind"),
    (["--export", "w.bin"], ".pt"),
    (["--curriculum", "3"], "curriculum"),
    (["--dislocations", "1.5"], "dislocation_probability"),
    (["--habits", "1.5"], "habit_probability"),
    (["--polynomials", "-0.5"], "polynomial_probability"),
    (["--val", "weak:6"], "--val"),
    (["--val", "weak=6,huge=2"], "strain_class"),
    (["--widen", "6,12"], "widen needs init_from"),
    (["--widen", "x"], "--widen"),
])
def test_train_bad_arguments(tmp_path: Path, capsys, args, needle) -> None:
    code, _, err = _run(capsys, "train", tmp_path / "r", "--no-progress", *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_train_widens_the_model_it_starts_from(trained: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _run(capsys, "train", tmp_path / "wide", "--init-from", trained / "w.pt",
                          "--widen", "6,12", "--steps", "1", "--batch-size", "1", "--val", "weak=1",
                          "--threads", "1", "--no-progress", "--export", tmp_path / "wide.pt")
    assert code == 0, err
    ck = torch.load(tmp_path / "wide" / "last.pt", weights_only=False)
    assert ck["model_config"]["unet"]["channels"] == [6, 12] and (tmp_path / "wide.pt").is_file()
    # narrower than the parent: one line, no run
    code, _, err = _run(capsys, "train", tmp_path / "narrow", "--init-from", trained / "w.pt",
                        "--widen", "2,12", "--no-progress")
    assert code == 2 and "at least" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--reuse", "0"], ["--workers", "-1"]])
def test_train_out_of_range_options(tmp_path: Path, capsys, args) -> None:
    # bounded options are checked by the command-line parser (its usage error names them)
    code, _, err = _run(capsys, "train", tmp_path / "r", "--no-progress", *args)
    assert code == 2 and f"Invalid value for '{args[0]}'" in err


def test_benchmark_model_quick_resumable(trained: Path, tmp_path: Path, capsys,
                                         monkeypatch) -> None:
    out = tmp_path / "bench.json"
    args = ["benchmark", "model", "--quick", "--n", "1", "--model", trained / "w.pt",
            "--out", out, "--threads", "1"]
    # the AI refinement and the conventional recipe as configured (here RAAR instead of the
    # default HIO, and HIO in the recipe), cut by --quick
    monkeypatch.setenv("BCDI_AI__N_RAAR", "100")
    monkeypatch.setenv("BCDI_AI__N_HIO", "0")
    monkeypatch.setenv("BCDI_PHASING__N_HIO", "200")
    code, table, err = _run(capsys, *args)
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["settings"]["ai"]["n_raar"] == 20 and res["settings"]["ai"]["n_hio"] == 0
    assert res["settings"]["conventional"]["n_hio"] == 20
    assert [r["class"] for r in res["rows"]] == ["weak", "strong"]
    for row in res["rows"]:
        assert {"ai_er", "ai_er_only", "ai", "random_er", "conventional"} <= set(row)
        assert row["ai_er"]["seconds"] > 0 and 0 <= row["ai_er"]["support_iou"] <= 1
    assert "| weak | ai_er |" in table and res["machine"]["torch"]
    # a second call with the same settings resumes: nothing is recomputed
    code, _, err = _run(capsys, *args)
    assert code == 0 and "resuming" in err and "2 crystals already scored" in err
    # rows timed on another machine are not mixed in: the run starts again
    res["machine"]["cpu"] = "another CPU"
    out.write_text(json.dumps(res))
    code, _, err = _run(capsys, *args)
    assert code == 0 and "not resuming" in err and "another machine" in err
    assert json.loads(out.read_text())["machine"]["cpu"] != "another CPU"


def test_benchmark_model_scores_auto_with_its_fallback(trained: Path, tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    out = tmp_path / "auto.json"
    # every AI result "fails" the misfit test: auto runs the (quick) conventional fallback
    monkeypatch.setenv("BCDI_AI__FALLBACK_MISFIT", "1e-9")
    code, table, err = _run(capsys, "benchmark", "model", "--quick", "--n", "1", "--model",
                            trained / "w.pt", "--out", out, "--threads", "1", "--classes",
                            "weak", "--methods", "ai_er,auto")
    assert code == 0, err
    res = json.loads(out.read_text())
    (row,) = res["rows"]
    auto, ai_er = row["auto"], row["ai_er"]
    assert auto["fell_back"] and auto["views"] == 8
    assert auto["used"] in ("ai", "auto:polish", "auto:conventional",
                            *(f"auto:view{v}{p}" for v in range(1, 8) for p in ("", ":polish")))
    # the same AI refinement first, then the lower LLK of it and the fallback is kept
    assert auto["llk"] <= ai_er["llk"] and auto["excess_misfit"] > 1e-9
    assert auto["seconds"] > ai_er["seconds"]
    assert res["summary"]["weak"]["auto"]["fell_back"] == 1 and "| weak | auto |" in table
    assert res["summary"]["weak"]["auto"]["mean_views"] == 8


def test_benchmark_model_scores_the_views_without_the_recipe(trained: Path, tmp_path: Path,
                                                             capsys, monkeypatch) -> None:
    out = tmp_path / "views.json"
    monkeypatch.setenv("BCDI_AI__FALLBACK_MISFIT", "1e-9")
    monkeypatch.setenv("BCDI_AI__VIEWS", "3")
    code, table, err = _run(capsys, "benchmark", "model", "--quick", "--n", "1", "--model",
                            trained / "w.pt", "--out", out, "--threads", "1", "--classes",
                            "weak", "--methods", "ai_er,ai_views")
    assert code == 0, err
    (row,) = json.loads(out.read_text())["rows"]
    views, ai_er = row["ai_views"], row["ai_er"]
    # the same AI refinement as ai_er, then views 1 and 2, never the conventional recipe
    assert views["fell_back"] and views["views"] == 3
    assert views["used"] in ("ai", "auto:polish", "auto:view1", "auto:view2",
                             "auto:view1:polish", "auto:view2:polish")
    assert views["llk"] <= ai_er["llk"] and "| weak | ai_views |" in table


@pytest.mark.parametrize(("cls", "place"), [("weak+disl", 2), ("medium+fault", 5),
                                            ("medium+loop", 7), ("strong+field", 8),
                                            ("medium+net", 10), ("medium+coh", 12),
                                            ("medium+habit", 13)])
def test_benchmark_model_defect_classes(trained: Path, tmp_path: Path, capsys, cls: str,
                                        place: int) -> None:
    from bcdi_stream.training import TEST_SEED0

    out = tmp_path / "defect.json"
    code, table, err = _run(capsys, "benchmark", "model", "--quick", "--n", "1", "--model",
                            trained / "w.pt", "--out", out, "--threads", "1", "--classes",
                            cls, "--methods", "ai")
    assert code == 0, err
    (row,) = json.loads(out.read_text())["rows"]
    # its own seed range (its place in the order), every crystal with the defect
    assert row["class"] == cls and TEST_SEED0 + place * 10_000_000 <= row["seed"]
    assert row["seed"] < TEST_SEED0 + (place + 1) * 10_000_000
    if cls.endswith("+field"):
        assert row["smooth_models"] == ["smooth"] and row["phase_span_pi"] > 4
    elif cls.endswith("+disl"):
        assert 1 <= len(row["dislocations"]) <= 2 and not row["faults"] and not row["loops"]
    elif cls.endswith("+fault"):
        assert len(row["faults"]) == 1 and abs(row["faults"][0]["jump"]) > 2.0
    elif cls.endswith("+net"):
        assert 3 <= len(row["dislocations"]) <= 4 and not row["faults"] and not row["loops"]
    elif cls.endswith("+coh"):
        assert max(row["coherence"][:3]) > 0 and not row["faults"] and not row["loops"]
    elif cls.endswith("+habit"):
        from bcdi_stream.simulation import NEEDLE_ASPECT, THIN_PLATE, CrystalSpec
        from bcdi_stream.training import class_arguments

        spec = CrystalSpec.random(row["seed"], n=64, **class_arguments(cls))
        assert row["shape"] == spec.shape and not row["faults"] and not row["loops"]
        p = spec.shape_params
        assert (p["aspect"] >= NEEDLE_ASPECT[0] if spec.shape == "rod"
                else p["thickness"] <= THIN_PLATE[1])
    else:
        assert len(row["loops"]) == 1 and not row["faults"]
    assert f"| {cls} | ai |" in table


def test_benchmark_model_rejects_an_unknown_class(trained: Path, capsys) -> None:
    code, _, err = _run(capsys, "benchmark", "model", "--quick", "--classes", "huge",
                        "--model", trained / "w.pt")
    assert code == 2 and "classes" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "benchmark", "model", "--quick", "--classes", "huge",
                        "--model", trained / "w.pt")
    assert code == 2 and "classes" in err and len(err.strip().splitlines()) == 1


def test_reconstruct_ai_and_auto(trained: Path, tmp_path: Path, capsys) -> None:
    cxi = tmp_path / "c.cxi"
    assert _run(capsys, "simulate", cxi, "--seed", "5", "--strain", "weak")[0] == 0
    for method, noise_filter in (("ai", []), ("auto", ["--noise-filter", "0",
                                                       "--crystal-support", "0"])):
        out = tmp_path / f"{method}.cxi"
        code, text, err = _run(capsys, "reconstruct", cxi, "--out", out, "--method", method,
                               "--model", trained / "w.pt", "--runs", "2", "--n-raar", "20",
                               "--n-er", "10", "--json", "--device", "cpu", *noise_filter)
        assert code == 0, err
        summary = json.loads(text)
        assert summary["method"] == "ai" or summary["method"].startswith("auto:")
        assert summary["model"]["name"] == "w"
        assert "predict" in summary["timings"]
        assert summary["noise_filter"] == (0.0 if noise_filter else 8.0)
        assert ("denoise" in summary["timings"]) == (not noise_filter)
        assert summary["crystal_support"] == (0.0 if noise_filter else 0.4)
        assert ("support" in summary["timings"]) == (not noise_filter)
    code, _, err = _run(capsys, "reconstruct", cxi, "--out", tmp_path / "x.cxi", "--method",
                        "ai", "--model", tmp_path / "missing.pt")
    assert code == 2 and "weights" in err


def test_reconstruct_warns_when_the_result_does_not_fit(trained: Path, tmp_path: Path,
                                                        capsys, monkeypatch) -> None:
    """The human-readable line of ``reconstruct`` says so when the result's excess misfit
    exceeds ``ai.fallback_misfit`` (auto's trigger), and what to try."""
    cxi = tmp_path / "c.cxi"
    assert _run(capsys, "simulate", cxi, "--seed", "5", "--strain", "weak")[0] == 0
    args = ("reconstruct", cxi, "--out", tmp_path / "ai.cxi", "--method", "ai", "--model",
            trained / "w.pt", "--n-raar", "20", "--n-er", "10", "--device", "cpu")
    for limit, warned in (("1e-9", True), ("10", False)):
        monkeypatch.setenv("BCDI_AI__FALLBACK_MISFIT", limit)
        code, text, err = _run(capsys, *args)
        assert code == 0, err
        assert ("warning: the result does not fit the data" in text) == warned, text
        assert ("--method auto tries further" in text) == warned


def test_reconstruct_warns_of_a_clipped_peak(trained: Path, tmp_path: Path, capsys) -> None:
    """Counts tied at a high maximum (a saturated detector, not flagged) are left free, and
    the human-readable output says so."""
    import h5py

    cxi = tmp_path / "c.cxi"
    assert _run(capsys, "simulate", cxi, "--seed", "5", "--strain", "weak")[0] == 0
    args = ("reconstruct", cxi, "--out", tmp_path / "ai.cxi", "--method", "ai", "--model",
            trained / "w.pt", "--n-raar", "20", "--n-er", "10", "--device", "cpu")
    code, text, err = _run(capsys, *args)
    assert code == 0 and "share the maximum count" not in text, err
    with h5py.File(cxi, "r+") as f:
        data = f["/entry_1/data_1/data"]
        top = float(data[...].max())
        data[...] = data[...].clip(max=0.3 * top)
    code, text, err = _run(capsys, *args)
    assert code == 0, err
    assert "voxels share the maximum count (a saturated peak?)" in text, text
    with h5py.File(cxi, "r+") as f:  # and a frame the detector dropped
        data = f["/entry_1/data_1/data"]
        middle = data.shape[0] // 2
        data[middle] = 0
    code, text, err = _run(capsys, *args)
    assert code == 0, err
    assert f"warning: frames [{middle}] have no counts" in text, text
    with h5py.File(cxi, "r+") as f:  # and another grain's peak, 12 px off along y and x
        data = f["/entry_1/data_1/data"]
        arr = data[...].astype("float64")
        shape = arr.shape
        grid = [np.arange(n) for n in shape]
        z, y, x = np.meshgrid(*grid, indexing="ij")
        c = [n // 2 for n in shape]
        blob = np.exp(-((z - c[0]) ** 2 + (y - c[1] - 12) ** 2 + (x - c[2] - 12) ** 2) / 8.0)
        data[...] = (arr + 0.5 * arr.max() * blob).astype(data.dtype)
    code, text, err = _run(capsys, *args)
    assert code == 0, err
    assert "warning: another Bragg peak in the array" in text, text
    with h5py.File(cxi, "r+") as f:  # and a gap between chips, its columns never counting
        data = f["/entry_1/data_1/data"]
        right = data.shape[2] // 2 + 2
        arr = data[...]
        arr[:, :, right:right + 3] = 0
        data[...] = arr
    code, text, err = _run(capsys, *args)
    assert code == 0, err
    cols = list(range(right, right + 3))
    assert f"warning: detector columns {cols} have no counts in any frame" in text, text


def test_benchmark_summary_reads_the_speed_up_three_ways() -> None:
    from bcdi_stream.benchmarking._model import format_summary, summarise

    def row(ai: float, conv: float) -> dict:
        scored = {"success": True, "phase_rmse": 0.1}
        return {"class": "strong", "ai_er": {**scored, "seconds": ai},
                "conventional": {**scored, "seconds": conv}}

    # two crystals took an extra pass (2 s): the medians read 80 / 2 = 40x, the totals
    # 240 / 5 = 48x, the crystals' own ratios 60, 50 and 40 have their median at 50x
    rows = [row(1.0, 60.0), row(2.0, 100.0), row(2.0, 80.0)]
    paired = summarise(rows, ("ai_er", "conventional"))["strong"]["paired"]
    assert paired["speedup_ai_er_vs_conventional"] == 40.0  # median 80 / median 2
    assert paired["speedup_total"] == 48.0
    assert paired["speedup_per_scan_median"] == 50.0
    assert "40.0× faster (total times 48.0×, median per scan 50.0×)" in format_summary(
        {"strong": {"paired": paired}})


def test_benchmark_model_never_resumes_rows_of_other_code(tmp_path: Path, capsys) -> None:
    """The resume key holds the code identity (package version + hash of the engine's
    sources): rows scored by an older code version are not mixed with new ones (before, only
    the settings and the machine were compared), and the reason is printed."""
    out = tmp_path / "bench.json"
    args = ["benchmark", "model", "--quick", "--n", "1", "--classes", "weak", "--methods",
            "random_er", "--out", out, "--threads", "1"]
    code, _, err = _run(capsys, *args)
    assert code == 0, err
    res = json.loads(out.read_text())
    ident = dict(res["settings"]["code"])
    assert ident["version"] and len(ident["source_sha256"]) == 16
    assert res["git"] is None or set(res["git"]) == {"commit", "dirty"}
    code, _, err = _run(capsys, *args)  # same code: resumed
    assert code == 0 and "resuming" in err and "1 crystals already scored" in err
    res["settings"]["code"]["source_sha256"] = "0123456789abcdef"  # an older version's rows
    out.write_text(json.dumps(res))
    code, _, err = _run(capsys, *args)
    assert code == 0 and "not resuming" in err and "another code version" in err, err
    assert "0123456789abcdef -> " + ident["source_sha256"] in err
    assert json.loads(out.read_text())["settings"]["code"] == ident
    res["settings"].pop("code")  # a file written before the code was recorded
    out.write_text(json.dumps(res))
    code, _, err = _run(capsys, *args)
    assert code == 0 and "does not record its code" in err, err


def test_code_identity_follows_the_engine_sources_and_needs_no_git(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The source hash changes with an engine module, not with an I/O or service module; with
    no git on the PATH (or outside a checkout) the identity is still there, ``git`` None."""
    import shutil

    import bcdi_stream
    from bcdi_stream.benchmarking._model import code_identity

    src = Path(bcdi_stream.__file__).parent
    pkg = tmp_path / "bcdi_stream"
    for path in src.rglob("*.py"):
        if "__pycache__" not in path.parts:
            (pkg / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, pkg / path.relative_to(src))
    here = code_identity(src)
    copy = code_identity(pkg)
    assert copy["source_sha256"] == here["source_sha256"] and copy["git"] is None
    with open(pkg / "tiled_io" / "_job.py", "a") as f:  # the live service: not scored
        f.write("\n# edited\n")
    assert code_identity(pkg)["source_sha256"] == here["source_sha256"]
    with open(pkg / "phasing" / "__init__.py", "a") as f:  # the engine
        f.write("\n# edited\n")
    assert code_identity(pkg)["source_sha256"] != here["source_sha256"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no git
    nogit = code_identity(src)
    assert nogit["git"] is None and nogit["source_sha256"] == here["source_sha256"]


def test_a_flat_phase_passes_the_issue_rule_not_the_design_rule() -> None:
    """A weakly strained crystal's own phase variation can be below 0.3 rad: its true shape
    with no phase at all passes issue 3's rule (phase RMSE < 0.3 rad, IoU > 0.6), not DESIGN's
    (also below half that variation). Both are scored and summarised; the truth passes both."""
    from bcdi_stream.benchmarking._model import _score, format_summary, summarise
    from bcdi_stream.simulation import simulate_crystal

    c = simulate_crystal(1, n=32, strain="weak", device="cpu")
    flat = _score(c.obj.abs().to(torch.complex64), c.support, c)
    assert flat["success"] and not flat["success_design"]
    assert flat["own_variation"] == pytest.approx(flat["phase_rmse"], abs=0.01)
    truth = _score(c.obj, c.support, c)
    assert truth["success"] and truth["success_design"]
    rows = [{"class": "weak", "ai_er": {**flat, "seconds": 1.0}},
            {"class": "weak", "ai_er": {**truth, "seconds": 1.0}}]
    s = summarise(rows, ("ai_er",))["weak"]["ai_er"]
    assert s["success_rate"] == 1.0 and s["design_success_rate"] == 0.5
    assert "| weak | ai_er | 2 | 100 % | 50 % |" in format_summary({"weak": {"ai_er": s}})
    old = [{"class": "weak", "ai_er": {"success": True, "phase_rmse": 0.1, "seconds": 1.0}}]
    assert summarise(old, ("ai_er",))["weak"]["ai_er"]["design_success_rate"] is None
