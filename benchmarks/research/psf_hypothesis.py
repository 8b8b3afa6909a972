"""The AI refinement with and without the detector-blur hypothesis, on validation crystals.

For each crystal (validation seeds, disjoint from training and the benchmark test set): the
shipped ``ai`` refinement without (``psf_hypothesis=0``) and with the blur hypothesis (default),
scored against the truth. Prints one JSON line per crystal, then success, median RMSE, median
and mean seconds per variant, and how often the hypothesis was made.

    python benchmarks/research/psf_hypothesis.py --cls weak --n 30
    python benchmarks/research/psf_hypothesis.py --cls strong --n 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls", default="weak", choices=["weak", "medium", "strong"])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--seed0", type=int, default=2_300_000_000)
    ap.add_argument("--hypothesis", type=int, default=60, help="iterations of the second run")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.training._datasets import fixed_set

    loaded = cached_model()
    variants = {"plain": 0, "hypothesis": args.hypothesis}
    rows = []
    for _, seed, c in fixed_set(args.seed0, {args.cls: args.n}):
        row: dict = {"seed": seed, "blur": round(c.meta["blur_sigma"], 2),
                     "background": round(c.meta["background"], 2)}
        for name, n_h in variants.items():
            t0 = time.perf_counter()
            res, start = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu",
                                  psf_hypothesis=n_h)
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            row[name] = {"rmse": round(m.phase_rmse, 3), "ok": bool(m.success),
                         "llk_runs": [round(v, 2) for v in res.llk_runs],
                         "psf": [round(v, 2) for v in res.psf_sigma],
                         "hypothesis": start.psf_sigma,
                         "s": round(time.perf_counter() - t0, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for name in variants:
        r = [x[name] for x in rows]
        print(f"{args.cls} {name}: solved {sum(x['ok'] for x in r)}/{len(r)}, median RMSE "
              f"{statistics.median(x['rmse'] for x in r):.3f}, median "
              f"{statistics.median(x['s'] for x in r):.2f} s, mean "
              f"{statistics.mean(x['s'] for x in r):.2f} s")
    print("hypothesis made:", sum(x["hypothesis"]["hypothesis"] is not None for x in rows))


if __name__ == "__main__":
    main()
