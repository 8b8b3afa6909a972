"""What the per-axis blur hypothesis costs on the test set, side by side (session 22).

Each test crystal (``bcdi-stream benchmark model``'s fixed set) is phased by the shipped
``ai`` refinement (:func:`bcdi_stream.ai_phasing.phase_ai`, the benchmark's ``ai_er`` call)
twice in a row, with the blur hypothesis made per axis (``detector_blur_of(per_axis=True)``,
the default since session 22) and with one width shared by y and x (the rule before), in
alternating order. One JSON line per crystal (both times, whether each rule made a hypothesis,
the phase RMSE of each), then the medians and their ratio.

    python benchmarks/research/hypothesis_cost.py --cls weak --n 25
"""

from __future__ import annotations

import json
import statistics
import time

from _probe import bench_class_arguments, benchmark_crystals, blur_hypothesis_rule


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import Settings
    from bcdi_stream.phasing import detector_blur_of

    args = bench_class_arguments(__doc__, "weak")
    settings = Settings(device="cpu")
    ai = settings.ai
    loaded = aip.cached_model()
    times: dict[bool, list[float]] = {True: [], False: []}
    for k, (_, seed, c) in enumerate(benchmark_crystals({args.cls: args.n})):
        row: dict = {"seed": seed}
        for per_axis in ((True, False) if k % 2 == 0 else (False, True)):

            def rule(obj, intensity, mask=None, rocking=False, per_axis=per_axis):
                return detector_blur_of(obj, intensity, mask, per_axis=per_axis,
                                        rocking=rocking)

            with blur_hypothesis_rule(rule) as made:
                t0 = time.perf_counter()
                res, _ = aip.phase_ai(c.intensity, c.mask, loaded=loaded,
                                      settings=settings.phasing, seed=seed, device="cpu",
                                      **aip.phase_ai_options(ai))
                dt = time.perf_counter() - t0
            times[per_axis].append(dt)
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            key = "per_axis" if per_axis else "shared"
            row[key] = {"s": round(dt, 3), "hypothesis": any(h is not None for h in made),
                        "rmse": round(m.phase_rmse, 4)}
        print(json.dumps(row), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.cls}, {len(times[True])} crystals: per axis {med[True]:.3f} s, shared "
          f"{med[False]:.3f} s (median), ratio {med[True] / med[False]:.3f}; hypothesis runs "
          f"made: see the rows", flush=True)


if __name__ == "__main__":
    main()
