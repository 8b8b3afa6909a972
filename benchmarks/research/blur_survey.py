"""Which blur the plain prediction of a test crystal asks for (session 25's ``unseen_blur``).

For the first ``N`` crystals of each test class: the PSF ``(z, y, x[, r])`` fitted by LLK to the
shipped model's prediction from the pattern as measured (``phasing.blur_fit_of``, as
``deconv_input.py``'s first kernel), the detector-blur hypothesis as shipped before session 25
(``detector_blur_of``), the crystal's own detector blur and partial coherence, and the seconds
of prediction and fit. One JSON line per crystal.

    python blur_survey.py weak,strong 25
"""

from __future__ import annotations

import json
import sys
import time

import torch


def main() -> None:
    from bcdi_stream.ai_phasing import _predict_object, cached_model
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.phasing import blur_fit_of, detector_blur_of
    from bcdi_stream.training import TEST_SEED0, fixed_set

    torch.set_num_threads(1)
    torch.manual_seed(0)
    loaded = cached_model()
    classes, n = sys.argv[1].split(","), int(sys.argv[2])
    counts = {c: n if c in classes else 0 for c in BENCH_CLASSES}
    for cls, seed, c in fixed_set(TEST_SEED0, counts, 64):
        t0 = time.perf_counter()
        bad = c.mask.bool()
        x = c.intensity.clamp_min(0).masked_fill(bad, 0.0)
        with torch.no_grad():
            _, obj = _predict_object(loaded, x, bad)
        k0 = blur_fit_of(obj, x, bad)
        dt = time.perf_counter() - t0
        hyp = detector_blur_of(obj, x, bad)
        print(json.dumps({"class": cls, "seed": seed, "k0": [round(v, 3) for v in k0],
                          "hyp": None if hyp is None else [round(v, 2) for v in hyp],
                          "coh": c.meta["coherence"], "blur": round(c.spec.blur_sigma, 2),
                          "s": round(dt, 2)}), flush=True)


if __name__ == "__main__":
    main()
