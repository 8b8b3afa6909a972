"""Denoising the refined object: a low-pass or a count-based Wiener filter after the refinement.

``photon_starved.py`` (session 18) found that a Gaussian low-pass of the AI result takes weak
crystals at 2e3 peak counts from 6/20 to 12/20: the misses were noise. This probe asks what a
filter that needs no tuning per pattern does on every class. Each crystal is phased once by the
shipped ``phase_ai``; the result is scored

- ``raw``: as it is;
- ``gS``: Gaussian low-pass of the complex object, σ = S voxels;
- ``wC``: a Wiener filter from the data (:func:`bcdi_stream.phasing.wiener_filter`): ψ(q) of
  the object times Ī/(Ī + C), Ī the 3³ mean of the measured counts around q, C in counts — at
  a pixel with C counts expected the amplitude is kept by half (until the filter shipped, this
  probe left bad pixels out of Ī instead of putting the object's own |ψ|² there, so a gap 3
  pixels wide lost its middle row: the session-18 logs ``denoise-*.log``);

each with the refinement's support and (suffix ``s``) with the support re-drawn from the
filtered object (shrink-wrap σ 0.5, threshold 0.2 of the maximum, the refinement's last).

Sets: ``validation`` (``fixed_set(2_300_000_000, {"weak": 0, CLS: n})``, the strong validation
crystals of ``model_side_by_side.py``), ``test`` (the benchmark's test set, ``CLS``), or
``photons`` (weak crystals at ``--peak`` counts, seeds 4_100_000_000 + 1000 k).

    python benchmarks/research/denoise.py --set validation --cls strong --n 30
    python benchmarks/research/denoise.py --set photons --peak 2e3 --n 20
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

import torch
from photon_starved import SEED0, lowpass

SIGMAS = (0.5, 1.0)
CONSTANTS = (0.5, 2.0, 8.0)


def crystals(args):
    from bcdi_stream.simulation import simulate_crystal
    from bcdi_stream.training import TEST_SEED0
    from bcdi_stream.training._datasets import fixed_set

    if args.set == "validation":
        for _, seed, c in fixed_set(2_300_000_000, {"weak": 0, args.cls: args.n}):
            yield seed, c
    elif args.set == "test":
        from bcdi_stream.benchmarking._model import BENCH_CLASSES

        counts = {c: args.n if c == args.cls else 0 for c in BENCH_CLASSES}
        for _, seed, c in fixed_set(TEST_SEED0, counts):
            yield seed, c
    else:
        for k in range(args.n):
            seed = SEED0 + 1000 * k
            yield seed, simulate_crystal(seed, device="cpu", n=64, strain="weak",
                                         peak_counts=args.peak)


def main() -> None:
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.phasing import shrinkwrap_support, wiener_filter

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("validation", "test", "photons"), default="validation")
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--peak", type=float, default=2e3)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--sigmas", nargs="*", type=float, default=list(SIGMAS))
    ap.add_argument("--constants", nargs="*", type=float, default=list(CONSTANTS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    loaded = cached_model()
    ok: dict[str, list[bool]] = defaultdict(list)
    rm: dict[str, list[float]] = defaultdict(list)
    for seed, c in crystals(args):
        res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
        row: dict = {"seed": seed, "llk": round(res.llk, 3)}
        filtered = {"raw": res.obj}
        for s in args.sigmas:
            filtered[f"g{s:g}"] = lowpass(res.obj, s)
        for k in args.constants:
            filtered[f"w{k:g}"] = wiener_filter(res.obj, c.intensity, c.mask, counts=k)
        for name, obj in filtered.items():
            for suffix, sup in (("", res.support), ("s", shrinkwrap_support(obj, 0.5, 0.2))):
                m = compare(obj, c.obj, c.support, recon_support=sup)
                key = name + suffix
                row[key] = [round(m.phase_rmse, 3), round(m.support_iou, 2)]
                ok[key].append(bool(m.success))
                rm[key].append(m.phase_rmse)
        print(json.dumps(row), flush=True)
    for key in ok:
        print(f"{args.set} {args.cls if args.set != 'photons' else args.peak} {key}: "
              f"{sum(ok[key])}/{len(ok[key])}, median {statistics.median(rm[key]):.3f} rad",
              flush=True)


if __name__ == "__main__":
    main()
