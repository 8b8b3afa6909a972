"""Which blur hypotheses end in a deblurred start, and which in a refit thrown away (session 31).

:func:`bcdi_stream.ai_phasing.predict_start` with the ``ai`` method's arguments on crystals of
the test set (``bcdi-stream benchmark model``'s fixed set, classes and counts as given) and on
blurred variants of ``unseen_models.py`` (the blurs the deblurred start was made for, session
25). For each crystal: the blur hypothesis, whether it is one the model never saw
(:func:`~bcdi_stream.ai_phasing.unseen_blur`, the deblurred start is then tried), the refit
after deconvolving by it, whether a deblurred start came of it, and the seconds of the
prediction. One JSON line per crystal.

    python benchmarks/research/deblur_gate.py --classes strong=25 weak=25
    python benchmarks/research/deblur_gate.py --classes --variants zblur zblur_medium --n 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import ai_calls, benchmark_crystals


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.config import Settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="*", default=[], help="test classes as name=count")
    ap.add_argument("--variants", nargs="*", default=[], help="unseen_models.py variants")
    ap.add_argument("--n", type=int, default=10, help="crystals per variant")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = aip.cached_model()

    def items():
        asked = {k: int(v) for k, v in (c.split("=") for c in args.classes)}
        for cls, seed, c in benchmark_crystals(asked):
            yield cls, seed, c.intensity, c.mask
        if args.variants:
            from unseen_models import SEED0, change
            for v in args.variants:
                for k in range(args.n):
                    c = change(v, SEED0 + 1000 * k)
                    yield v, SEED0 + 1000 * k, c.intensity, c.mask

    for label, seed, intensity, mask in items():
        t0 = time.perf_counter()
        bad = None if mask is None else mask.bool()
        with ai_calls("_deblurred") as tried:  # (refit, phase), refit None when dropped
            start = aip.predict_start(loaded, intensity.float(), bad, seed=seed,
                                      settings=settings.phasing, estimate_psf=True,
                                      fill_share=settings.ai.peak_fill or None,
                                      deblur=settings.ai.deblur)
        refit = None
        if tried:
            refit = "none" if tried[0][0] is None else [round(v, 3) for v in tried[0][0]]
        row = {"set": label, "seed": seed, "s": round(time.perf_counter() - t0, 3),
               "sigma": None if start.psf_sigma is None else [round(v, 3) for v in start.psf_sigma],
               "tried": bool(tried), "refit": refit, "deblurred": start.deblurred is not None}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
