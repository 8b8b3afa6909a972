"""Refinement recipes after the AI prediction, side by side on validation crystals.

For each crystal (validation seeds, disjoint from training and the benchmark test set) and
each recipe: the shipped model's predicted phase, K starts IFFT(√I·e^{i(φ+noise)}) (start 0
without noise), RAAR + ER with shrink-wrap, the run with the lowest Poisson LLK kept.
Prints one line per crystal and a summary (success, median RMSE, median seconds).

    python benchmarks/research/refine_recipes.py --n 8 --classes strong weak
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

RECIPES = {
    # name: (K starts, phase-noise sigma rad, n_raar, n_er)
    "k1_r100_e100": (1, 0.0, 100, 100),
    "k1_r300_e100": (1, 0.0, 300, 100),
    "k4_s05_r100_e100": (4, 0.5, 100, 100),
    "k4_s10_r100_e100": (4, 1.0, 100, 100),
    "k2_s10_r100_e100": (2, 1.0, 100, 100),
    "k2_s10_r150_e100": (2, 1.0, 150, 100),
    "k3_s10_r100_e100": (3, 1.0, 100, 100),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--classes", nargs="+", default=["strong", "weak"])
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed0", type=int, default=2_100_000_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from bcdi_stream import physics
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.phasing import run_conventional, shrinkwrap_support
    from bcdi_stream.training._datasets import fixed_set

    loaded = cached_model()
    settings = PhasingSettings()
    rows = []
    counts = {c: args.n for c in args.classes}
    for cls, seed, c in fixed_set(args.seed0, counts):
        row = {"class": cls, "seed": seed, "span_pi": round(c.meta["phase_span"] / 3.14159, 2)}
        for name in args.recipes:
            k, sigma, n_raar, n_er = RECIPES[name]
            t0 = time.perf_counter()
            start = predict_start(loaded, c.intensity, c.mask, seed=0, settings=settings)
            amp = c.intensity.clamp_min(0).masked_fill(c.mask.bool(), 0).sqrt()
            gen = torch.Generator().manual_seed(seed % 100_000)
            objs, sups = [], []
            for j in range(k):
                phi = start.phase_q
                if j and sigma > 0:
                    phi = phi + sigma * torch.randn(phi.shape, generator=gen)
                o = physics.ifft_centered(torch.polar(amp, phi)).to(torch.complex64)
                objs.append(o)
                sups.append(start.support if j == 0 else shrinkwrap_support(
                    o, settings.shrinkwrap_sigma_start, settings.shrinkwrap_threshold))
            s = settings.model_copy(update={"runs": k, "n_raar": n_raar, "n_hio": 0,
                                            "n_er": n_er})
            res = run_conventional(c.intensity, c.mask, settings=s, seed=seed % 100_000,
                                   device="cpu", obj_init=torch.stack(objs),
                                   support=torch.stack(sups), detwin=False)
            dt = time.perf_counter() - t0
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            row[name] = {"rmse": round(float(m.phase_rmse), 3),
                         "iou": round(float(m.support_iou), 2), "ok": bool(m.success),
                         "llk": round(float(res.llk), 2),
                         "s": round(dt, 2), "best_run": res.best_run}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for cls in args.classes:
        for name in args.recipes:
            r = [x[name] for x in rows if x["class"] == cls]
            print(f"{cls:7s} {name:20s} solved {sum(x['ok'] for x in r)}/{len(r)}  "
                  f"median rmse {statistics.median(x['rmse'] for x in r):.3f}  "
                  f"median s {statistics.median(x['s'] for x in r):.2f}")


if __name__ == "__main__":
    main()
