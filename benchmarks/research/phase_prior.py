"""The shipped AI method with the prediction kept as a soft phase constraint, side by side.

``soft_phase.py`` measured the idea in a plain-torch loop; here it runs through the package
(``phase_ai(prior_weight=λ0)``: blur hypothesis, PSF estimation, the engine's shrink-wrap), one
weight per column, λ0 = 0 being the shipped method. For each validation crystal (seeds from
``VAL_SEED0``, class order as in ``model_side_by_side.py``) one JSON line with
``[phase RMSE, success, LLK]`` per weight, and the seconds of each; the closing lines count the
successes.

    python benchmarks/research/phase_prior.py --weights 0 0.15 0.3 --classes weak=0 strong=30
"""

from __future__ import annotations

import argparse
import json
import time

from _probe import add_class_options, class_counts, print_totals, score_into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.15, 0.3])
    ap.add_argument("--model", default=None, help="weights file (default: the shipped one)")
    args = ap.parse_args()
    counts = class_counts(args)
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model(args.model)
    names = [f"w{w:g}" for w in args.weights]
    totals = {cls: dict.fromkeys(names, 0) for cls in counts}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        row: dict = {"class": cls, "seed": seed}
        for name, w in zip(names, args.weights):
            t0 = time.perf_counter()
            res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu",
                              prior_weight=w)
            score_into(row, totals[cls], name, res, c)
            row[name].append(round(time.perf_counter() - t0, 2))
        print(json.dumps(row), flush=True)
    for cls, t in totals.items():
        if counts[cls]:
            print_totals(cls, t, counts[cls])


if __name__ == "__main__":
    main()
