"""Rejecting over-cap strong draws before their diffraction: the same crystals, side by side.

Draws the strong-class specs of ``--n`` training seeds (each seed's first spec, as
``draw_batch``'s first round does) and simulates them two ways in turn, ``--rounds`` times, in
one process on one thread: ``simulate_batch`` then the cap (before session 11) and
``simulate_capped`` (the cap checked before the diffraction, blur and noise). Prints seconds
per way, the ratio, and checks that the kept crystals are identical.

    python benchmarks/research/capped_simulation.py --n 32 --rounds 3
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="strong-class specs")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    from bcdi_stream.simulation import CrystalSpec, simulate_batch, simulate_capped
    from bcdi_stream.training import MAX_MEAN_GRADIENT, TRAIN_SEED0, class_arguments

    torch.set_num_threads(1)
    kw = class_arguments("strong", 0.4)
    specs = [CrystalSpec.random(TRAIN_SEED0 + 100 * k, n=64, **kw) for k in range(args.n)]
    caps = [MAX_MEAN_GRADIENT] * len(specs)
    times: dict[str, list[float]] = {"simulate_batch + cap": [], "simulate_capped": []}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        full = [c if c.meta["phase_gradient_mean"] <= MAX_MEAN_GRADIENT else None
                for c in simulate_batch(specs, device="cpu")]
        times["simulate_batch + cap"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        capped = simulate_capped(specs, caps, device="cpu")
        times["simulate_capped"].append(time.perf_counter() - t0)
    same = all((a is None and b is None) or (a is not None and b is not None
               and torch.equal(a.intensity, b.intensity) and torch.equal(a.obj, b.obj))
               for a, b in zip(full, capped, strict=True))
    kept = sum(c is not None for c in capped)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k}: {v:.2f} s for {len(specs)} specs (best of {args.rounds})")
    print(f"kept {kept}/{len(specs)}; identical: {same}; ratio "
          f"{best['simulate_batch + cap'] / best['simulate_capped']:.2f}x")


if __name__ == "__main__":
    main()
