"""Where the ``ai`` method's time goes, crystal by crystal (session 31).

Each test crystal (``bcdi-stream benchmark model``'s fixed set, one class) is phased by the
shipped ``ai`` refinement (:func:`bcdi_stream.ai_phasing.phase_ai`, the benchmark's ``ai_er``
call) after one warm-up crystal; one JSON line per crystal: the wall time, how many
predictions the start made (2 or 3 where the deblurred start was tried), whether a deblurred
start came of it, the fill share, and :attr:`PhasingResult.timings` (``predict``: the start;
``iterate``, ``psf``, ``support``, ``quality``: the main run; ``psf_hypothesis``, ``refill``,
``unfilled``: the other runs). Then the median wall time.

    python benchmarks/research/ai_time_split.py --cls strong --n 25
"""

from __future__ import annotations

import json
import statistics
import time

from _probe import ai_calls, bench_class_arguments, benchmark_crystals


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.config import Settings

    args = bench_class_arguments(__doc__, "strong")
    settings = Settings(device="cpu")
    loaded = aip.cached_model()
    crystals = list(benchmark_crystals({args.cls: args.n}))

    def phase(seed, c):
        return aip.phase_ai(c.intensity, c.mask, loaded=loaded, settings=settings.phasing,
                            seed=seed, device="cpu", **aip.phase_ai_options(settings.ai))

    phase(crystals[0][1], crystals[0][2])  # warm-up (model, kernels, the |psi|^2 read timed)
    walls = []
    for _, seed, c in crystals:
        with ai_calls("_predict_object") as predictions:
            t0 = time.perf_counter()
            res, start = phase(seed, c)
            wall = time.perf_counter() - t0
        walls.append(wall)
        stages = {k: round(v, 3) for k, v in res.timings.items() if isinstance(v, int | float)}
        print(json.dumps({"seed": seed, "s": round(wall, 3), "npred": len(predictions),
                          "deblurred": start.deblurred is not None, "filled": start.filled,
                          **stages}), flush=True)
    print(f"median {statistics.median(walls):.3f} s over {len(walls)} crystals", flush=True)


if __name__ == "__main__":
    main()
