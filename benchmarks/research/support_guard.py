"""Does a support-volume guard in shrink-wrap rescue the strong class? (research probe)

On the strong test crystals the AI refinement often ends with a collapsed support (IoU
0.1–0.26 after it started at 0.6–0.8, `benchmarks/results/model-cpu-fast-v2hio-strong.json`).
This probe phases validation crystals with the shipped ``phase_ai`` and variants of its
shrink-wrap: ``base`` (shipped), ``init:F`` (a new support is never smaller than F times the
AI start's support: the threshold is lowered to the volume's quantile when it would be) and
``prev:F`` (never smaller than F times the previous support). The variants replace the
recipe's ``shrinkwrap_support`` for this process only.

    python benchmarks/research/support_guard.py --modes base init:0.6 --n 20
    python benchmarks/research/support_guard.py --modes prev:0.85 init:0.8 --n 20

Result (2026-12-02, session 7, docs/MODEL_RESEARCH.md): no gain in successes (4/20 base,
4/20 init:0.6, 3/20 init:0.8, 4/20 prev:0.85), although the guard fits the data better
(median LLK 9.8 → 5.6 / 3.1) and keeps the support (IoU < 0.6: 9/20 → 3/20 / 5/20).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import bcdi_stream.phasing._recipe as recipe
from bcdi_stream.phasing._support import _count, _modulus, gaussian_smooth, shrinkwrap_support

GUARD = {"mode": "base", "f": 0.0, "n0": None}


def guarded_shrinkwrap(obj: torch.Tensor, sigma: float, threshold: float,
                       previous: torch.Tensor | None = None) -> torch.Tensor:
    """The shipped shrink-wrap, then the volume guard of ``GUARD``."""
    new = shrinkwrap_support(obj, sigma, threshold, previous)
    if GUARD["mode"] == "base" or previous is None:
        return new
    ref = _count(previous.bool()).float() if GUARD["mode"] == "prev" else GUARD["n0"]
    need = (GUARD["f"] * ref).ceil().long()
    have = _count(new).long()
    smooth = gaussian_smooth(_modulus(obj), sigma)
    out = new.clone()
    for b in range(new.shape[0]):
        if int(have[b]) < int(need[b]):
            thr = smooth[b].flatten().topk(int(need[b])).values[-1]
            out[b] = smooth[b] >= thr
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["base"])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--cls", default="strong")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream.ai_phasing import cached_model, phase_ai, predict_start
    from bcdi_stream.analysis import compare
    from bcdi_stream.training._datasets import fixed_set

    recipe.shrinkwrap_support = guarded_shrinkwrap
    loaded = cached_model()
    rows: dict[str, list[dict]] = {m: [] for m in args.modes}
    for _, seed, c in fixed_set(2_300_000_000, {args.cls: args.n}):
        line = {"seed": seed, "true_vol": int(c.support.sum())}
        for mode in args.modes:
            name, _, f = mode.partition(":")
            start = predict_start(loaded, c.intensity, c.mask, seed=0)
            GUARD.update(mode=name, f=float(f or 0), n0=_count(start.support[None]).float())
            t0 = time.perf_counter()
            res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            line[mode] = {"rmse": round(m.phase_rmse, 3), "iou": round(m.support_iou, 2),
                          "ok": bool(m.success), "llk": round(res.llk, 2),
                          "vol": int(res.support.sum()), "vol0": int(start.support.sum()),
                          "s": round(time.perf_counter() - t0, 2)}
            rows[mode].append(line[mode])
        print(json.dumps(line), flush=True)
    for mode, rs in rows.items():
        print(f"{mode}: {sum(r['ok'] for r in rs)}/{len(rs)} solved, median RMSE "
              f"{statistics.median(r['rmse'] for r in rs):.3f} rad, median LLK "
              f"{statistics.median(r['llk'] for r in rs):.2f}, IoU < 0.6: "
              f"{sum(r['iou'] < 0.6 for r in rs)}", flush=True)


if __name__ == "__main__":
    main()
