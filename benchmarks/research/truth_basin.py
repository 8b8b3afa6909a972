"""Do the strong-class failures fit the data worse than the truth does? (research probe)

If a failed reconstruction fits the measured pattern as well as the refinement started from
the TRUE phase, the data cannot tell them apart and no prediction can be scored right on that
crystal; if it fits clearly worse, the failure is the optimisation's (a better start would
fix it). For each validation crystal: the shipped AI method (``phase_ai``), and the same
refinement (HIO 100 + ER 100, shrink-wrap, ``psf="auto"``, one run) started from
``IFFT(√I·e^{iφ_true})``; both Poisson LLKs are the refinement engine's.

    python benchmarks/research/truth_basin.py --n 20
    python benchmarks/research/truth_basin.py --n 20 --truth-recipe er   # ER 200 from the truth
    python benchmarks/research/truth_basin.py --n 10 --cls weak+net --test-set   # session 23

``--test-set``: the crystals of ``bcdi-stream benchmark model --classes CLS`` (the test set's
seeds and the class's place among ``BENCH_CLASSES``) instead of validation crystals.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import refine_from_phase


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--truth-recipe", choices=["hio", "er"], default="hio",
                    help="refinement from the true phase: the shipped HIO 100 + ER 100, or ER 200")
    ap.add_argument("--test-set", action="store_true",
                    help="the benchmark's test crystals of --cls (default: validation crystals)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.training._datasets import TEST_SEED0, fixed_set

    loaded = cached_model()
    n_hio = 100 if args.truth_recipe == "hio" else 0
    recipe = PhasingSettings(runs=1, n_raar=0, n_hio=n_hio, n_er=200 - n_hio)
    rows = []
    if args.test_set:
        if args.cls not in BENCH_CLASSES:
            raise SystemExit(f"--cls must be one of {BENCH_CLASSES} with --test-set")
        chosen = (TEST_SEED0, {k: args.n if k == args.cls else 0 for k in BENCH_CLASSES})
    else:
        chosen = (2_300_000_000, {args.cls: args.n})
    for _, seed, c in fixed_set(*chosen):
        t0 = time.perf_counter()
        res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
        m = compare(res.obj, c.obj, c.support, recon_support=res.support)
        tru = refine_from_phase(c.intensity, c.mask, c.phase_q, recipe)
        mt = compare(tru.obj, c.obj, c.support, recon_support=tru.support)
        row = {"seed": seed, "ai_ok": bool(m.success), "ai_rmse": round(m.phase_rmse, 3),
               "ai_llk": round(res.llk, 3), "truth_ok": bool(mt.success),
               "truth_rmse": round(mt.phase_rmse, 3), "truth_llk": round(tru.llk, 3),
               "s": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    fails = [r for r in rows if not r["ai_ok"]]
    worse = [r for r in fails if r["ai_llk"] > 1.2 * r["truth_llk"]]
    print(f"AI {sum(r['ai_ok'] for r in rows)}/{len(rows)}, from the truth "
          f"{sum(r['truth_ok'] for r in rows)}/{len(rows)}; of the {len(fails)} AI failures "
          f"{len(worse)} fit the data > 1.2x worse (LLK) than the truth's refinement", flush=True)


if __name__ == "__main__":
    main()
