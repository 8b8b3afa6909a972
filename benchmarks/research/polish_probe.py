"""Polishing the AI result: a further RAAR + ER run from it, the lower LLK kept (research probe).

On the strong validation crystals several AI failures are near misses (0.3–0.45 rad) that fit
the data worse than the refinement from the true phase does. This probe phases each crystal
of a validation class (``VAL_SEED0`` order, as ``model_side_by_side.py``) with the shipped
``phase_ai`` (v3, HIO 100 + ER 100, blur hypothesis) and then:

- ``--mode recipes``: continues from the result with each named recipe (one run, its support
  and PSF, shrink-wrap from σ 2 again; ``2x`` = twice, each from the lower-LLK result) and
  prints ``[RMSE, success, LLK]`` per recipe;
- ``--mode trigger``: ``bcdi_stream.ai_phasing.polish`` (RAAR 200 + ER 100) under four rules:
  A = up to 2 polishes while the excess misfit exceeds 0.0025 (``auto``'s threshold),
  B = one polish always, C = up to 2 always, D = up to 2 above 0.001; ``[RMSE, seconds,
  end of the algorithm string]`` each;
- ``--mode views``: for a result whose misfit exceeds 0.0025, the polish (A) and views 1–7
  (each refined like view 0, stopping at the first that fits), so that ``auto`` without the
  conventional recipe can be scored with and without the polish before the views; when
  neither the polish nor any view fits, the best view polished as well (``view_polish``).

    python benchmarks/research/polish_probe.py --mode recipes --first 0 --last 30 \\
        --recipes hio100er100,er300,raar100er100,hio200er100
    python benchmarks/research/polish_probe.py --mode trigger --first 0 --last 45   # and 45 90
    python benchmarks/research/polish_probe.py --mode views --first 0 --last 45     # and 45 90

Results: docs/MODEL_RESEARCH.md, session 14.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

RECIPES = {"hio100er100": (0, 100, 100), "er300": (0, 0, 300), "raar50er50": (50, 0, 50),
           "raar100er100": (100, 0, 100), "raar200er100": (200, 0, 100),
           "hio200er100": (0, 200, 100)}
RULES = {"A": {"cycles": 2, "misfit_max": 0.0025}, "B": {"cycles": 1, "misfit_max": 0.0},
         "C": {"cycles": 2, "misfit_max": 0.0}, "D": {"cycles": 2, "misfit_max": 0.001}}
THRESHOLD = 0.0025


def summarise(paths: list[str]) -> None:
    """Successes per column of the given logs (a ``views`` log: ``auto`` without the recipe,
    with and without the polish before the views)."""
    rows = [json.loads(line) for p in paths for line in open(p) if line.startswith('{"seed')]
    for r in rows:  # the first views runs (session 14's logs) named them v0 and p0
        for old, new in (("v0", "base"), ("p0", "polish")):
            if old in r:
                r[new] = r.pop(old)
    if any("views" in r for r in rows):
        plain = polished = both = 0
        for r in rows:
            if "views" not in r:
                plain += r["base"]["ok"]
                polished += r["base"]["ok"]
                both += r["base"]["ok"]
                continue
            plain += min([r["base"], *r["views"]], key=lambda x: x["llk"])["ok"]
            p = r["polish"]
            polished += (p if p["misfit"] <= THRESHOLD
                         else min([p, *r["views"]], key=lambda x: x["llk"]))["ok"]
            cands = [p, *r["views"], *([r["view_polish"]] if "view_polish" in r else [])]
            both += (p if p["misfit"] <= THRESHOLD else min(cands, key=lambda x: x["llk"]))["ok"]
        solo = sum(r.get("polish", r["base"])["ok"] for r in rows)
        print(f"{len(rows)} crystals: ai {sum(r['base']['ok'] for r in rows)}, ai + polish "
              f"{solo}, views {plain}, polish then views {polished}, and the best view "
              f"polished when none fits {both}")
        return
    cols = [k for k in rows[0] if k != "seed"]
    print(f"{len(rows)} crystals: " + ", ".join(
        f"{k} {sum(r[k]['ok'] for r in rows)} "
        f"(mean {sum(r[k]['s'] for r in rows) / len(rows):.2f} s)" for k in cols))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summarise", nargs="+", metavar="LOG", help="only summarise these logs")
    ap.add_argument("--mode", choices=["recipes", "trigger", "views"])
    ap.add_argument("--recipes", default="raar200er100,2xraar200er100",
                    help="recipes mode: comma-separated names of RECIPES, optionally 2x…")
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=30)
    args = ap.parse_args()
    if args.summarise:
        summarise(args.summarise)
        return
    if args.mode is None:
        ap.error("--mode is required (or --summarise)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream.ai_phasing import phase_ai, polish
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.model import default_weights_path, load_model
    from bcdi_stream.phasing import excess_misfit, run_conventional
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = load_model(default_weights_path())
    base = PhasingSettings()

    def scored(res, c, t0: float) -> dict:
        m = compare(res.obj, c.obj, c.support, recon_support=res.support)
        return {"ok": bool(m.success), "rmse": round(m.phase_rmse, 3), "llk": round(res.llk, 3),
                "misfit": round(float(excess_misfit(res.obj, c.intensity, c.mask,
                                                    psf_sigma=res.psf_sigma)), 5),
                "s": round(time.perf_counter() - t0, 2)}

    counts = {"weak": 0, "strong": 0, args.cls: args.last}
    for i, (_, seed, c) in enumerate(fixed_set(VAL_SEED0, counts)):
        if i < args.first:
            continue
        t0 = time.perf_counter()
        res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
        row: dict = {"seed": seed, "base": scored(res, c, t0)}
        if args.mode == "recipes":
            for name in args.recipes.split(","):
                n_raar, n_hio, n_er = RECIPES[name.removeprefix("2x")]
                s = base.model_copy(update={"runs": 1, "n_raar": n_raar, "n_hio": n_hio,
                                            "n_er": n_er})
                cur, t0 = res, time.perf_counter()
                for _ in range(2 if name.startswith("2x") else 1):
                    out = run_conventional(c.intensity, c.mask, settings=s, seed=0,
                                           device="cpu", obj_init=cur.obj, support=cur.support,
                                           detwin=False, psf_start=cur.psf_sigma
                                           if any(cur.psf_sigma) else None)
                    cur = out if out.llk < cur.llk else cur
                row[name] = scored(cur, c, t0)
        elif args.mode == "trigger":
            for name, rule in RULES.items():
                t0 = time.perf_counter()
                out, _ = polish(res, c.intensity, c.mask, settings=base, seed=0, device="cpu",
                                **rule)
                row[name] = {**scored(out, c, t0), "algorithm": out.algorithm}
        elif row["base"]["misfit"] > THRESHOLD:
            t0 = time.perf_counter()
            row["polish"] = scored(polish(res, c.intensity, c.mask, settings=base, seed=0,
                                          device="cpu", **RULES["A"])[0], c, t0)
            row["views"], best = [], None
            for view in range(1, 8):
                t0 = time.perf_counter()
                rv, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu",
                                 view=view)
                row["views"].append(scored(rv, c, t0))
                best = rv if best is None or rv.llk < best.llk else best
                if row["views"][-1]["misfit"] <= THRESHOLD:
                    break
            if row["polish"]["misfit"] > THRESHOLD and row["views"][-1]["misfit"] > THRESHOLD:
                # no view fits either: the best view polished too
                t0 = time.perf_counter()
                row["view_polish"] = scored(polish(best, c.intensity, c.mask, settings=base,
                                                   seed=0, device="cpu", **RULES["A"])[0], c,
                                            t0)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
