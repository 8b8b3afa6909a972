"""Each run of the ``ai`` method's blur hypotheses on its own: what a stricter trigger could skip.

For each crystal of a fixed set (``--set test``: the benchmark's test classes; ``--set val``:
validation seeds, ``--classes class=count``; ``--set unseen``: ``unseen_models.py``'s
``--variants``, ``--n`` crystals each, seeds ``4_200_000_000 + 1000 k``), the shipped ``ai``
method's pieces one by one on one CPU thread, as :func:`bcdi_stream.ai_phasing.phase_ai` makes them:

- the prediction (:func:`~bcdi_stream.ai_phasing.predict_start` with the blur hypothesis and
  its deblurred start), timed, with the seconds of the deblurred start's predictions apart;
- the main run (HIO + ER as shipped), the hypothesis run (``psf_hypothesis`` iterations with
  the hypothesis, when one is made) and the deblurred run (when one is made), each timed,
  finished as the pipeline finishes and scored against the truth, with its LLK and its excess
  misfit (:func:`bcdi_stream.phasing.excess_misfit`, ``auto``'s fallback trigger).

One JSON line per crystal: ``run: [phase RMSE, success, LLK, seconds, excess misfit]`` for
``main``, ``hyp``, ``deb``; ``predict`` and ``deblur`` seconds; the hypothesis ``sigma`` and the
refit; ``kept`` (the run ``phase_ai`` keeps: the lowest LLK, the main run on a tie). A rule that
makes fewer runs keeps the lowest LLK of those it makes, so its successes and time follow from
these lines (``--check K``: the first K crystals are also phased by ``phase_ai`` itself and its
LLK must equal the kept run's).

    python hypothesis_runs.py --set test --n 10
    python hypothesis_runs.py --set val --classes weak=30 strong=30 medium+coh=20
    python hypothesis_runs.py --set unseen --variants zblur diagblur anisoblur --n 20
    python hypothesis_runs.py --summarise LOG [LOG ...]

``--summarise`` scores rules on such logs: ``shipped`` (every run made), ``no_deblur`` (no
deblurred start or run), ``main_only`` (no hypothesis) and ``cap`` (session 28's rule: no
deblurred start when the hypothesis reaches ``UNSEEN_MAX`` along some axis, and no deblurred
run when its refit does); successes per class, mean and median seconds (prediction and runs,
without the pipeline's finish, which every rule pays alike). Logs made before session 28's rule
are the ones to score it on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from _probe import add_class_options, class_counts


def _cap_rule(r: dict[str, Any]) -> tuple[bool, bool, float]:
    """Session 28's rule, as the package makes it (:func:`bcdi_stream.ai_phasing.unseen_blur`
    and :data:`~bcdi_stream.ai_phasing.UNSEEN_MAX`), on a row logged before it: no deblurred
    start for a hypothesis at the cap, and no deblurred run (the start's second prediction
    saved, about half its seconds) for a refit at the cap."""
    from bcdi_stream.ai_phasing import UNSEEN_MAX, unseen_blur

    if "refit" not in r:
        return True, False, 0.0
    if not unseen_blur(tuple(r["sigma"])):
        return True, False, 1.0
    return True, max(r["refit"][:3]) < UNSEEN_MAX, 0.5


#: ``--summarise``'s rules: ``row -> (hypothesis run made, deblurred run made, share of the
#: deblurred start's seconds saved)``, from a row of a log made with every run
RULES: dict[str, Callable[[dict[str, Any]], tuple[bool, bool, float]]] = {
    "shipped": lambda r: (True, True, 0.0),
    "no_deblur": lambda r: (True, False, 1.0),
    "main_only": lambda r: (False, False, 1.0),
    "cap": _cap_rule,
}


def summarise(paths: list[str]) -> None:
    """Print each rule's successes per class and its mean and median seconds over ``paths``."""
    rows = [json.loads(line) for p in paths for line in open(p) if line.startswith("{")]
    classes = list(dict.fromkeys(r["class"] for r in rows))
    print("rule", *classes, "total", "mean_s", "median_s")
    for name, rule in RULES.items():
        ok: dict[str, int] = dict.fromkeys(classes, 0)
        secs = []
        for r in rows:
            hyp, deb, saved = rule(r)
            made = ["main"] + (["hyp"] if hyp and "hyp" in r else []) + (
                ["deb"] if deb and "deb" in r else [])
            kept = min(made, key=lambda n: (r[n][2], made.index(n)))
            ok[r["class"]] += r[kept][1]
            secs.append(r["predict"] + sum(r[n][3] for n in made)
                        - (saved * r["deblur"] if "deb" in r and "deb" not in made else 0.0))
        print(name, *(f"{ok[c]}/{sum(r['class'] == c for r in rows)}" for c in classes),
              sum(ok.values()), f"{statistics.mean(secs):.3f}", f"{statistics.median(secs):.3f}")


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.analysis import compare
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.config import Settings
    from bcdi_stream.phasing import excess_misfit, run_conventional
    from bcdi_stream.pipeline import finish
    from bcdi_stream.training import TEST_SEED0, VAL_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--set", choices=("val", "test", "unseen"), default="test")
    ap.add_argument("--variants", nargs="+", default=["zblur", "diagblur", "anisoblur"])
    ap.add_argument("--n", type=int, default=10, help="--set test: crystals per test class")
    ap.add_argument("--check", type=int, default=2)
    ap.add_argument("--summarise", nargs="+", metavar="LOG", help="score the rules on logs")
    args = ap.parse_args()
    if args.summarise:
        summarise(args.summarise)
        return
    if args.set == "val":
        crystals = fixed_set(VAL_SEED0, class_counts(args), 64)
    else:
        torch.manual_seed(0)
        torch.set_num_threads(args.threads)
        if args.set == "test":
            crystals = fixed_set(TEST_SEED0, {c: args.n for c in BENCH_CLASSES}, 64)
        else:
            from unseen_models import SEED0, change

            crystals = ((v, SEED0 + 1000 * k, change(v, SEED0 + 1000 * k))
                        for v in args.variants for k in range(args.n))
    settings = Settings(device="cpu")
    ai, ph = settings.ai, settings.phasing
    if ai.n_raar or ai.n_er_first or not ai.peak_refill:
        raise ValueError("the probe mirrors phase_ai for n_raar = n_er_first = 0 with refill")
    loaded = aip.cached_model()

    spent: list[float] = []
    deblurred = aip._deblurred

    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = deblurred(*a, **k)
        spent.append(time.perf_counter() - t)
        return out

    aip._deblurred = timed
    first = ai.psf_hypothesis // 2
    for k, (cls, seed, c) in enumerate(crystals):
        s = seed % 100_000
        spent.clear()
        t0 = time.perf_counter()
        start = aip.predict_start(loaded, c.intensity, c.mask, seed=s, settings=ph,
                                  estimate_psf=True, fill_share=ai.peak_fill or None,
                                  deblur=ai.deblur)
        row: dict[str, Any] = {"class": cls, "seed": seed,
                               "predict": round(time.perf_counter() - t0, 3),
                               "deblur": round(sum(spent), 3), "filled": start.filled,
                               "sigma": start.psf_sigma and [round(v, 3) for v in start.psf_sigma]}
        runs = {"main": (start, ai.n_hio, ai.n_er, None)}
        if start.psf_sigma is not None:
            runs["hyp"] = (start, first, ai.psf_hypothesis - first, start.psf_sigma)
            if start.deblurred is not None:
                d = start.deblurred
                runs["deb"] = (d, first, ai.psf_hypothesis - first, d.psf_sigma)
                row["refit"] = [round(v, 3) for v in d.psf_sigma]
        llks = {}
        for name, (st, hio, er, psf) in runs.items():
            t = time.perf_counter()
            r = run_conventional(c.intensity, c.mask, seed=s, device="cpu", obj_init=st.obj,
                                 support=st.support, detwin=False, psf_start=psf,
                                 settings=ph.model_copy(update={"runs": 1, "n_raar": 0,
                                                                "n_hio": hio, "n_er": er}))
            dt = time.perf_counter() - t
            misfit = float(excess_misfit(r.obj, c.intensity, c.mask, psf_sigma=r.psf_sigma))
            obj, sup = finish(r.obj, r.support, c.intensity, c.mask, ph)
            m = compare(obj, c.obj, c.support, recon_support=sup)
            row[name] = [round(m.phase_rmse, 3), int(m.success), round(r.llk, 5), round(dt, 3),
                         round(misfit, 5)]
            llks[name] = r.llk
        row["kept"] = min(llks, key=lambda n: (llks[n], list(llks).index(n)))
        if k < args.check and start.filled is None:
            res, _ = aip.phase_ai(c.intensity, c.mask, loaded=loaded, settings=ph, seed=s,
                                  device="cpu", **aip.phase_ai_options(ai))
            row["check"] = bool(res.llk == llks[row["kept"]])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
