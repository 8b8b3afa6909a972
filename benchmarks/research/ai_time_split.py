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

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.config import Settings
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls", default="strong", choices=("weak", "strong"))
    ap.add_argument("--n", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = aip.cached_model()
    counts = {"weak": args.n if args.cls == "weak" else 0,
              "strong": args.n if args.cls == "strong" else 0}
    crystals = list(fixed_set(TEST_SEED0, counts, 64))
    predictions = [0]
    plain = aip._predict_object

    def counted(*a, **k):
        predictions[0] += 1
        return plain(*a, **k)

    aip._predict_object = counted

    def phase(seed, c):
        return aip.phase_ai(c.intensity, c.mask, loaded=loaded, settings=settings.phasing,
                            seed=seed, device="cpu", **aip.phase_ai_options(settings.ai))

    phase(crystals[0][1], crystals[0][2])  # warm-up (model, kernels, the |psi|^2 read timed)
    walls = []
    for _, seed, c in crystals:
        predictions[0] = 0
        t0 = time.perf_counter()
        res, start = phase(seed, c)
        wall = time.perf_counter() - t0
        walls.append(wall)
        stages = {k: round(v, 3) for k, v in res.timings.items() if isinstance(v, int | float)}
        print(json.dumps({"seed": seed, "s": round(wall, 3), "npred": predictions[0],
                          "deblurred": start.deblurred is not None, "filled": start.filled,
                          **stages}), flush=True)
    print(f"median {statistics.median(walls):.3f} s over {len(walls)} crystals", flush=True)


if __name__ == "__main__":
    main()
