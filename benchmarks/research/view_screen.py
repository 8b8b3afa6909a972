"""Can a cheap score pick the view whose refinement succeeds, before refining it? (probe)

For each validation crystal (``views.py``'s classes and seeds) and each of the eight views:
the share of the start's energy outside its own shrink-wrap support (free: no iteration), and
the Poisson LLK after 10 and 20 ER iterations from the view's start (no blur hypothesis). One
JSON line per crystal; with ``--outcomes`` (``views.py`` logs: each view's full refinement)
the closing lines give, per class, the successes of view 0, of the view each score picks, and
of the lowest LLK after the full refinement.

    python benchmarks/research/view_screen.py --classes weak=0 strong=30 \\
        --outcomes benchmarks/results/views-validation-weak-strong.log
    python benchmarks/research/view_screen.py --classes weak=0 strong=0 weak+disl=20 \\
        medium+disl=20 --outcomes benchmarks/results/views-validation-dislocated.log
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _probe import add_class_options, class_counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--outcomes", nargs="*", default=[], type=Path,
                    help="views.py logs of the same crystals (each view's full refinement)")
    args = ap.parse_args()
    counts = class_counts(args)
    from bcdi_stream.ai_phasing import N_VIEWS, cached_model, phase_ai, predict_start
    from bcdi_stream.training import VAL_SEED0, fixed_set

    done: dict[int, list] = {}
    for path in args.outcomes:
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                done[r["seed"]] = r["views"]
    loaded = cached_model()
    tally: dict[str, dict[str, int]] = {}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        scores: dict[str, list[float]] = {"outside": [], "er10": [], "er20": []}
        for v in range(N_VIEWS):
            st = predict_start(loaded, c.intensity, c.mask, view=v)
            e = st.obj.abs() ** 2
            scores["outside"].append(round(float(e[~st.support].sum() / e.sum()), 4))
            for n in (10, 20):
                res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, n_hio=0, n_er=n,
                                  psf_hypothesis=0, view=v, device="cpu")
                scores[f"er{n}"].append(round(float(res.llk), 3))
        print(json.dumps({"class": cls, "seed": seed, "scores": scores}), flush=True)
        if seed in done:
            ok = [bool(x[1]) for x in done[seed]]
            t = tally.setdefault(cls, {"n": 0, "view 0": 0, "full refinement": 0,
                                       **dict.fromkeys(scores, 0)})
            t["n"] += 1
            t["view 0"] += ok[0]
            t["full refinement"] += ok[min(range(N_VIEWS), key=lambda i: done[seed][i][2])]
            for name, s in scores.items():
                t[name] += ok[min(range(N_VIEWS), key=lambda i: s[i])]
    for cls, t in tally.items():
        n = t.pop("n")
        print(f"{cls} ({n}): " + ", ".join(f"{k} {v}/{n}" for k, v in t.items()), flush=True)


if __name__ == "__main__":
    main()
