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


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.config import Settings
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="*", default=[], help="test classes as name=count")
    ap.add_argument("--variants", nargs="*", default=[], help="unseen_models.py variants")
    ap.add_argument("--n", type=int, default=10, help="crystals per variant")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = aip.cached_model()
    refits: list = []
    plain = aip._deblurred

    def recording(*a, **k):
        out = plain(*a, **k)
        refits.append(out[0] if out[0] is not None else "none")
        return out

    aip._deblurred = recording

    def items():
        asked = dict(c.split("=") for c in args.classes)
        counts = {c: int(asked.get(c, 0)) for c in BENCH_CLASSES}
        for cls, seed, c in fixed_set(TEST_SEED0, counts, 64):
            yield cls, seed, c.intensity, c.mask
        if args.variants:
            from unseen_models import SEED0, change
            for v in args.variants:
                for k in range(args.n):
                    c = change(v, SEED0 + 1000 * k)
                    yield v, SEED0 + 1000 * k, c.intensity, c.mask

    for label, seed, intensity, mask in items():
        refits.clear()
        t0 = time.perf_counter()
        bad = None if mask is None else mask.bool()
        start = aip.predict_start(loaded, intensity.float(), bad, seed=seed,
                                  settings=settings.phasing, estimate_psf=True,
                                  fill_share=settings.ai.peak_fill or None,
                                  deblur=settings.ai.deblur)
        row = {"set": label, "seed": seed, "s": round(time.perf_counter() - t0, 3),
               "sigma": None if start.psf_sigma is None else [round(v, 3) for v in start.psf_sigma],
               "tried": bool(refits),
               "refit": (refits[0] if not refits or refits[0] == "none"
                         else [round(v, 3) for v in refits[0]]) if refits else None,
               "deblurred": start.deblurred is not None}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
