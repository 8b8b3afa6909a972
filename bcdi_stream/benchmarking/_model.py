"""The model benchmark: AI+ER, AI alone, random-start ER and the conventional recipe, side by side.

A fixed simulated test set (seeds from :data:`bcdi_stream.training.TEST_SEED0`, disjoint from
training and validation) in two classes, ``weak`` (peak-to-peak phase < π) and ``strong``
(> 4π, see :mod:`bcdi_stream.training._datasets`), and on request two whose crystals all
carry 1–2 dislocations, ``weak+disl`` and ``medium+disl``, and two whose crystals all carry a
planar defect (a stacking fault or a twin lamella), ``weak+fault`` and ``medium+fault``,
and two whose crystals all carry a dislocation loop, ``weak+loop`` and ``medium+loop``, and
``strong+field``, the strong class with the Gaussian random field alone as its smooth strain,
and two whose crystals all carry a dislocation network (3–4 straight dislocations),
``weak+net`` and ``medium+net``, and two whose patterns all have partial coherence beyond the
detector blur (along a random direction in the detector plane or along the rocking axis),
``weak+coh`` and ``medium+coh``, and ``medium+habit``, whose crystals are all needles (rods of
aspect 3–5) or thin plates (platelets 0.1–0.2 thick), habits beyond the simulator's default
ranges, and ``strong+poly``, the strong class with a low-order polynomial field alone as its
smooth strain (a bending, a torsion or a random quadratic and cubic field: strong strain as
other simulators make it) (:data:`BENCH_CLASSES`). Every
method runs on every crystal in the same process, one after the other, so the time ratios are
measured under the same load.
Every method's result passes the pipeline's :func:`bcdi_stream.pipeline.finish` (the noise
filter, ``phasing.noise_filter``, and the crystal's support, ``phasing.crystal_support``;
inside its timing) before it is scored; its excess misfit is the refined object's.
Success: phase RMSE < 0.3 rad and support IoU > 0.6 after alignment
(:func:`bcdi_stream.analysis.compare`), issue 3's rule; ``success_design`` also asks the phase
RMSE to be below half the crystal's own phase variation (DESIGN.md's baselines,
:data:`DESIGN_RELATIVE`).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from bcdi_stream.config import AISettings, PhasingSettings

#: Test classes, in the order that fixes each one's seed range (adding one never moves another).
BENCH_CLASSES: tuple[str, ...] = ("weak", "strong", "weak+disl", "medium+disl", "weak+fault",
                                   "medium+fault", "weak+loop", "medium+loop", "strong+field",
                                   "weak+net", "medium+net", "weak+coh", "medium+coh",
                                   "medium+habit", "strong+poly")

#: Methods scored, in the order they run on each crystal. ``ai_er``: the shipped AI method (the
#: prediction, then HIO + ER by default, :class:`~bcdi_stream.config.AISettings`);
#: ``ai_er_only``: the prediction then ER alone (same iteration count); ``ai``: the prediction
#: alone;
#: ``random_er``: random phases in the autocorrelation support, then the same iterations as
#: ``ai_er``, one run; ``conventional``: the 20-run recipe; ``auto``: ``ai_er``, then, when
#: the excess misfit exceeds ``ai.fallback_misfit``, the other views of the pattern until one
#: fits and then the conventional recipe seeded by the best
#: (:func:`bcdi_stream.ai_phasing.phase_auto`, the ``auto`` method of ``reconstruct``);
#: ``ai_views``: ``auto`` without the conventional recipe (``ai.fallback_conventional`` off).
MODEL_METHODS: tuple[str, ...] = ("ai_er", "ai_er_only", "ai", "random_er", "conventional",
                                  "ai_views", "auto")
#: Methods scored when none are named (``auto`` costs a conventional run per AI failure).
DEFAULT_METHODS: tuple[str, ...] = MODEL_METHODS[:5]


#: Parts of ``bcdi_stream`` that cannot change what this benchmark measures (I/O, the live
#: service, the CLI, the other benchmarks): left out of :func:`code_identity`'s source hash,
#: so that editing them does not restart a long benchmark. Everything else is in it.
_NOT_SCORED: tuple[str, ...] = ("tiled_io/", "beamline/", "io/", "cli.py", "_service_commands.py",
                                "_train_command.py", "demo.py", "benchmarking/_conventional.py",
                                "benchmarking/_iteration.py", "benchmarking/_simulator.py",
                                "benchmarking/_training.py", "benchmarking/_machine.py",
                                "benchmarking/__init__.py")


def code_identity(package_dir: str | Path | None = None) -> dict[str, Any]:
    """Which code scores the crystals: the package version, a SHA-256 of the engine's
    sources (every ``bcdi_stream/**/*.py`` but those in :data:`_NOT_SCORED`; the weights are
    identified by the model's own hash) and, when the package is a git checkout and git runs,
    the commit and whether those sources differ from it (``git``: None otherwise).

    ``version`` and ``source_sha256`` are part of the resume key of :func:`bench_model`; the
    git fields are recorded for the reader (a commit that changes no engine source keeps the
    rows comparable).
    """
    from bcdi_stream import __version__

    root = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    n = 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel or rel.startswith(_NOT_SCORED):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        digest.update(rel.encode() + b"\0" + data + b"\0")
        n += 1
    return {"version": __version__, "source_sha256": digest.hexdigest()[:16], "source_files": n,
            "git": _git_state(root)}


def _git_state(package_dir: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout holding ``package_dir``, or None (no git, not a
    checkout, or a checkout that is not this project's: an installed package inside some
    other repository). Read-only git calls."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True,
                              text=True, timeout=10, check=True, env=env).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if package_dir.resolve() != top / package_dir.name \
                or not (top / "pyproject.toml").is_file():
            return None
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return {"commit": commit, "dirty": bool(changed)}


#: DESIGN.md's baselines also ask the phase error to be below this share of the crystal's own
#: phase variation (:func:`bcdi_stream.analysis.truth_phase_rms`, the error of a flat-phase
#: answer); issue 3's rule, ``success``, does not. Both are scored: a weak crystal's own
#: variation is 0.055-0.53 rad on the test set, so under the issue's rule a reconstruction that
#: found no strain can pass (a flat phase on the true support passes 18 of 25 weak crystals).
DESIGN_RELATIVE = 0.5


def _score(obj: torch.Tensor, support: torch.Tensor, crystal: Any) -> dict[str, Any]:
    from bcdi_stream.analysis import compare

    m = compare(obj.cpu(), crystal.obj.cpu(), crystal.support.cpu(), recon_support=support.cpu())
    return {"phase_rmse": round(float(m.phase_rmse), 4),
            "support_iou": round(float(m.support_iou), 3), "success": bool(m.success),
            "own_variation": round(float(m.truth_phase_rms), 4),
            "success_design": bool(m.success
                                   and m.phase_rmse < DESIGN_RELATIVE * m.truth_phase_rms)}


def _run_method(method: str, crystal: Any, loaded: Any, settings: Any, ai: Any, seed: int,
                dev: torch.device) -> dict[str, Any]:
    from bcdi_stream.ai_phasing import phase_ai, phase_ai_options, phase_auto, predict_start
    from bcdi_stream.phasing import excess_misfit, run_conventional
    from bcdi_stream.pipeline import finish

    i_t, m_t = crystal.intensity.to(dev), crystal.mask.to(dev)
    t0 = time.perf_counter()
    llk = None
    res = None
    extra: dict[str, Any] = {}
    if method in ("ai_er", "ai_er_only"):
        options = phase_ai_options(ai)
        if method == "ai_er_only":  # the same iterations, all ER
            options.update(n_er_first=0, n_raar=0, n_hio=0,
                           n_er=ai.n_er_first + ai.n_raar + ai.n_hio + ai.n_er)
        res, _ = phase_ai(i_t, m_t, loaded=loaded, settings=settings, seed=seed, device=dev,
                          **options)
        obj, sup, llk = res.obj, res.support, res.llk
    elif method == "ai":
        start = predict_start(loaded, i_t, m_t, seed=seed, settings=settings,
                              fill_share=ai.peak_fill or None)
        obj, sup = start.obj * start.support, start.support
    elif method == "random_er":
        # the same iterations as AI+ER, from random phases in the autocorrelation support
        s = settings.model_copy(update={"runs": 1, "n_raar": ai.n_raar, "n_hio": ai.n_hio,
                                        "n_er": ai.n_er + ai.n_er_first})
        res = run_conventional(i_t, m_t, settings=s, seed=seed, device=dev, detwin=False)
        obj, sup, llk = res.obj, res.support, res.llk
    elif method == "conventional":
        res = run_conventional(i_t, m_t, settings=settings, seed=seed, device=dev)
        obj, sup, llk = res.obj, res.support, res.llk
    elif method in ("auto", "ai_views"):
        if method == "ai_views":
            ai = ai.model_copy(update={"fallback_conventional": False})
        out = phase_auto(i_t, m_t, loaded=loaded, ai=ai, settings=settings, seed=seed,
                         device=dev)
        obj, sup, llk = out.result.obj, out.result.support, out.result.llk
        extra = {"fell_back": out.fallback is not None, "used": out.used,
                 "excess_misfit": round(out.misfit, 5),
                 "views": 1 + len(out.fallback["views"]) if out.fallback else 1}
    else:
        raise ValueError(f"method must be one of {MODEL_METHODS}, got {method!r}")
    raw = obj
    obj, sup = finish(obj, sup, i_t, m_t, settings)  # as the pipeline does
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    row = {"seconds": round(seconds, 3), **_score(obj, sup, crystal)}
    if llk is not None:
        row["llk"] = round(float(llk), 4)
    if res is not None:  # outside the timing, as auto's is inside it
        row["excess_misfit"] = round(float(excess_misfit(raw, i_t, m_t,
                                                         psf_sigma=res.psf_sigma)), 5)
    return {**row, **extra}


def summarise(rows: list[dict[str, Any]], methods: tuple[str, ...] = MODEL_METHODS
              ) -> dict[str, Any]:
    """Success rate, median RMSE and median time per (class, method), and the key ratios.

    ``paired`` (the crystals scored by both ``ai_er`` and ``conventional``): the success rates,
    the median times and their ratio (``speedup_ai_er_vs_conventional``, the headline), the
    ratio of the total times (``speedup_total``) and the median of each crystal's own ratio
    (``speedup_per_scan_median``): a crystal that takes an extra pass can move a median time
    by a rank, and the other two readings show how much the headline owes to that.
    """
    out: dict[str, Any] = {}
    for cls in sorted({r["class"] for r in rows}):
        sub = [r for r in rows if r["class"] == cls]
        out[cls] = {}
        for m in methods:
            vals = [r[m] for r in sub if m in r]
            if not vals:
                continue
            out[cls][m] = {
                "n": len(vals),
                "success_rate": round(sum(v["success"] for v in vals) / len(vals), 3),
                # DESIGN.md's rule (also below half the crystal's own phase variation); None
                # for rows scored before it was recorded
                "design_success_rate": (
                    round(sum(v["success_design"] for v in vals) / len(vals), 3)
                    if all("success_design" in v for v in vals) else None),
                "median_rmse": round(statistics.median(v["phase_rmse"] for v in vals), 4),
                "median_seconds": round(statistics.median(v["seconds"] for v in vals), 3),
            }
            if m in ("auto", "ai_views"):
                out[cls][m]["fell_back"] = sum(v["fell_back"] for v in vals)
                out[cls][m]["mean_views"] = round(statistics.mean(v["views"] for v in vals), 2)
        paired = [r for r in sub if "ai_er" in r and "conventional" in r]
        if paired:
            # measured side by side on the same crystals, in the same process
            t_ai = statistics.median(r["ai_er"]["seconds"] for r in paired)
            t_conv = statistics.median(r["conventional"]["seconds"] for r in paired)
            # two readings less sensitive to which crystal lands on a median: the total
            # times' ratio, and the median of each crystal's own ratio
            sum_ai = sum(r["ai_er"]["seconds"] for r in paired)
            sum_conv = sum(r["conventional"]["seconds"] for r in paired)
            per_scan = statistics.median(r["conventional"]["seconds"]
                                         / max(1e-9, r["ai_er"]["seconds"]) for r in paired)
            ok_ai = sum(r["ai_er"]["success"] for r in paired) / len(paired)
            ok_conv = sum(r["conventional"]["success"] for r in paired) / len(paired)
            out[cls]["paired"] = {
                "n": len(paired),
                "ai_er_success_rate": round(ok_ai, 3),
                "conventional_success_rate": round(ok_conv, 3),
                "ai_er_median_seconds": round(t_ai, 3),
                "conventional_median_seconds": round(t_conv, 3),
                "speedup_ai_er_vs_conventional": round(t_conv / max(1e-9, t_ai), 1),
                "speedup_total": round(sum_conv / max(1e-9, sum_ai), 1),
                "speedup_per_scan_median": round(per_scan, 1),
                "success_ratio_ai_er_vs_conventional": (
                    round(ok_ai / ok_conv, 2) if ok_conv > 0 else None),
            }
    return out


def bench_model(*, n_per_class: int = 25, quick: bool = False, device: str | None = None,
                model: str | Path | None = None, methods: tuple[str, ...] = DEFAULT_METHODS,
                out: str | Path | None = None, machine: dict[str, Any] | None = None,
                classes: tuple[str, ...] = ("weak", "strong"),
                echo: Callable[[str], None] = print,
                ai: AISettings | None = None,
                phasing: PhasingSettings | None = None) -> dict[str, Any]:
    """Score the methods on the fixed test set; resumable through ``out`` (JSON).

    Parameters
    ----------
    n_per_class : int
        Crystals per strain class (25 + 25 = 50 by default).
    quick : bool
        Smoke run: 2 crystals per class, conventional recipe cut to 2 runs × (RAAR 60 + HIO
        ≤ 20 + ER 30).
    device : str, optional
        Compute device (default: auto).
    model : str or Path, optional
        Weights (default: the shipped ones).
    methods : tuple of str
        Subset of :data:`MODEL_METHODS` (default :data:`DEFAULT_METHODS`: all but ``ai_views``
        and ``auto``).
    out : str or Path, optional
        JSON file written after every crystal; an existing file with the same settings, code
        (:func:`code_identity`: version and engine sources) and machine is resumed (crystals
        already scored are skipped); any other is replaced, with a line saying why.
    machine : dict, optional
        Machine description recorded with the results.
    classes : tuple of str
        Test classes scored, a subset of :data:`BENCH_CLASSES` (``("weak",)`` and
        ``("strong",)`` can run as two processes side by side, one CPU thread each;
        :func:`summarise` merges their rows).
    echo : callable
        Receives one line per crystal.
    ai : AISettings, optional
        The AI refinement scored as ``ai_er`` (default: the defaults of
        :class:`~bcdi_stream.config.AISettings`; ``quick`` cuts its iterations).
    phasing : PhasingSettings, optional
        The conventional recipe (and the shrink-wrap, PSF and noise-filter settings of every
        method; default: the defaults of :class:`~bcdi_stream.config.PhasingSettings`).

    Returns
    -------
    dict
        ``settings``, ``rows`` (per crystal and method) and ``summary``.
    """
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.arrays import resolve_device
    from bcdi_stream.config import AISettings, PhasingSettings
    from bcdi_stream.simulation import SMOOTH_MODELS
    from bcdi_stream.training import TEST_SEED0, fixed_set

    if not classes or any(c not in BENCH_CLASSES for c in classes):
        raise ValueError(f"classes must be a non-empty subset of {BENCH_CLASSES}, got {classes}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    bad = [m for m in methods if m not in MODEL_METHODS]
    if bad or not methods:
        raise ValueError(f"methods must be a non-empty subset of {MODEL_METHODS}, got {methods}")
    dev = resolve_device(device)
    settings = phasing if phasing is not None else PhasingSettings()
    ai = ai if ai is not None else AISettings()
    if quick:
        n_per_class = min(n_per_class, 2)
        settings = settings.model_copy(update={"runs": 2, "n_raar": 60,
                                               "n_hio": min(settings.n_hio, 20), "n_er": 30})
        ai = ai.model_copy(update={"n_raar": min(ai.n_raar, 20), "n_hio": min(ai.n_hio, 20),
                                   "n_er": 10, "psf_hypothesis": 10})
    uses_model = {"ai", "ai_er", "ai_er_only", "ai_views", "auto"} & set(methods)
    loaded = cached_model(model, dev, ai.precision) if uses_model else None
    code = code_identity()
    header = {
        "code": {"version": code["version"], "source_sha256": code["source_sha256"]},
        "n_per_class": n_per_class, "quick": quick, "device": str(dev),
        "methods": list(methods), "conventional": settings.model_dump(), "ai": ai.model_dump(),
        "model": loaded.identity() if loaded else None,
        "precision": loaded.precision if loaded else None, "test_seed0": TEST_SEED0,
        "threads": torch.get_num_threads(), "classes": list(classes),
    }
    rows: list[dict[str, Any]] = []
    path = Path(out) if out is not None else None
    if path is not None and path.is_file():
        old = json.loads(path.read_text())
        same_machine = _machine_key(old.get("machine")) == _machine_key(machine)
        old_settings = old.get("settings") if isinstance(old.get("settings"), dict) else {}
        if old_settings == header and same_machine:
            rows = old.get("rows", [])
            echo(f"resuming {path}: {len(rows)} crystals already scored")
        else:  # never mix rows of other settings or code, or timings of another machine
            if {k: v for k, v in old_settings.items() if k != "code"} != \
                    {k: v for k, v in header.items() if k != "code"}:
                why = "other settings"
            elif old_settings.get("code") != header["code"]:
                why = "another code version: " + _code_change(old_settings.get("code"),
                                                               header["code"])
            else:
                why = "another machine"
            echo(f"not resuming {path} ({why}): it is replaced as the crystals are scored")
    done = {(r["class"], r["seed"]) for r in rows}
    # every class keeps its place (its seed range); the classes not scored draw nothing
    counts = {c: n_per_class if c in classes else 0 for c in BENCH_CLASSES}
    for cls, seed, crystal in fixed_set(TEST_SEED0, counts, 64):
        if (cls, seed) in done:
            continue
        row: dict[str, Any] = {"class": cls, "seed": seed, "shape": crystal.spec.shape,
                               "phase_span_pi": round(crystal.meta["phase_span"] / 3.14159265, 2),
                               "dislocations": crystal.meta["dislocations"],
                               "faults": crystal.meta["faults"],
                               "loops": crystal.meta["loops"],
                               "coherence": crystal.meta["coherence"],
                               "smooth_models": [m["kind"] for m in crystal.spec.strain_models
                                                 if m["kind"] in SMOOTH_MODELS]}
        for m in methods:
            row[m] = _run_method(m, crystal, loaded, settings, ai, seed % 100_000, dev)
        rows.append(row)
        echo(f"{cls} {seed} ({crystal.spec.shape}): " + ", ".join(
            f"{m} {row[m]['phase_rmse']:.2f} rad {'ok' if row[m]['success'] else 'FAIL'} "
            f"{row[m]['seconds']:.2f} s" for m in methods))
        result = {"settings": header, "machine": machine, "git": code["git"], "rows": rows,
                  "summary": summarise(rows, methods)}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=1))
            tmp.replace(path)
    return {"settings": header, "machine": machine, "git": code["git"], "rows": rows,
            "summary": summarise(rows, methods)}


def _code_change(old: Any, new: dict[str, Any]) -> str:
    """One line: how the code of an earlier results file differs from this one."""
    if not isinstance(old, dict):
        return "the file does not record its code"
    parts = []
    if old.get("version") != new["version"]:
        parts.append(f"bcdi-stream {old.get('version')} -> {new['version']}")
    if old.get("source_sha256") != new["source_sha256"]:
        parts.append(f"engine sources {old.get('source_sha256')} -> {new['source_sha256']}")
    return ", ".join(parts) or "changed"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (one row per class and method)."""
    lines = ["| class | method | n | success | success, design rule | median phase RMSE (rad) "
             "| median s/scan |", "|---|---|---|---|---|---|---|"]
    for cls, s in summary.items():
        for m in MODEL_METHODS:
            if m in s:
                r = s[m]
                design = r.get("design_success_rate")
                design_s = "–" if design is None else f"{100 * design:.0f} %"
                lines.append(f"| {cls} | {m} | {r['n']} | {100 * r['success_rate']:.0f} % | "
                             f"{design_s} | {r['median_rmse']:.3f} | "
                             f"{r['median_seconds']:.2f} |")
    for cls, s in summary.items():
        if "paired" in s:
            p = s["paired"]
            lines.append(f"\n{cls}, {p['n']} crystals scored by both: AI+ER "
                         f"{100 * p['ai_er_success_rate']:.0f} % in "
                         f"{p['ai_er_median_seconds']:.2f} s,"
                         f" conventional {100 * p['conventional_success_rate']:.0f} % in "
                         f"{p['conventional_median_seconds']:.1f} s: "
                         f"{p['speedup_ai_er_vs_conventional']}× faster (total times "
                         f"{p['speedup_total']}×, median per scan "
                         f"{p['speedup_per_scan_median']}×), success ratio "
                         f"{p['success_ratio_ai_er_vs_conventional']}")
    return "\n".join(lines)


def _machine_key(machine: Any) -> Any:
    """What makes two runs' timings comparable: the machine description less its date."""
    if not isinstance(machine, dict):
        return machine
    return {k: v for k, v in machine.items() if k != "date"}
