"""Views of the pattern: does refining the prediction for the reflected pattern rescue failures?

Reflecting a pattern along some axes reflects its object, so the model can be asked the same
question eight ways (``bcdi_stream.ai_phasing.view_axes``). For each validation crystal
(seeds from ``VAL_SEED0``, class order weak, strong, weak+disl, medium+disl as in
``model_side_by_side.py``; a count of 0 keeps a class's place) every view is predicted and
refined by the shipped AI method (``phase_ai(view=v)``); one JSON line per crystal with
``[phase RMSE, success, LLK, excess misfit, seconds]`` per view. The closing lines give, per
class, the successes of view 0 alone, of the lowest LLK of all eight, and of the ``auto``
method's view stage (views in order until one's excess misfit is at most
``ai.fallback_misfit``, the lowest LLK so far kept) with the views it refined on average.

    python benchmarks/research/views.py --classes weak=20 strong=30 weak+disl=0 medium+disl=0
    python benchmarks/research/views.py --classes weak=0 strong=0 weak+disl=20 medium+disl=20
"""

from __future__ import annotations

import argparse
import json
import time

from _probe import add_class_options, class_counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    counts = class_counts(ap.parse_args())
    from bcdi_stream.ai_phasing import N_VIEWS, cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import AISettings
    from bcdi_stream.phasing import excess_misfit
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model()
    threshold = AISettings().fallback_misfit
    rows: dict[str, list[list]] = {cls: [] for cls in counts}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        views = []
        for v in range(N_VIEWS):
            t0 = time.perf_counter()
            res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu", view=v)
            dt = time.perf_counter() - t0
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            mis = float(excess_misfit(res.obj, c.intensity, c.mask, psf_sigma=res.psf_sigma))
            views.append([round(m.phase_rmse, 3), bool(m.success), round(res.llk, 3),
                          round(mis, 5), round(dt, 2)])
        rows[cls].append(views)
        print(json.dumps({"class": cls, "seed": seed, "views": views}), flush=True)
    for cls, crystals in rows.items():
        if not crystals:
            continue
        first = sum(v[0][1] for v in crystals)
        best = sum(min(v, key=lambda r: r[2])[1] for v in crystals)
        auto_ok, used = 0, 0
        for v in crystals:
            kept = v[0]
            for r in v:
                used += 1
                if r[2] < kept[2]:
                    kept = r
                if r[3] <= threshold:
                    break
            auto_ok += kept[1]
        n = len(crystals)
        print(f"{cls}: view 0 {first}/{n}, lowest LLK of {N_VIEWS} {best}/{n}, auto's view "
              f"stage {auto_ok}/{n} refining {used / n:.2f} views per crystal", flush=True)


if __name__ == "__main__":
    main()
