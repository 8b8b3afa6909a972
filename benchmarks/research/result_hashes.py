"""The ``ai`` method's results and seconds on the first test crystals, for comparing checkouts.

Phases the first ``N`` weak and ``N`` strong test crystals (``TEST_SEED0``) with the shipped
``phase_ai`` (the settings' options, one thread) and prints, per crystal, the SHA-256 prefix of
the refined object's bytes, its LLK, the seconds and the seconds spent iterating. Run it once
per checkout with ``PYTHONPATH`` pointing at that checkout (the first line names the package
imported) and compare: a change meant to be exact must leave every hash as it was.

    PYTHONPATH=/tmp/old python result_hashes.py 8 > old.log
    PYTHONPATH=/work/main python result_hashes.py 8 > new.log
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import torch


def main() -> None:
    import bcdi_stream
    from bcdi_stream.ai_phasing import cached_model, phase_ai, phase_ai_options
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.config import Settings
    from bcdi_stream.training import TEST_SEED0, fixed_set

    print(bcdi_stream.__file__, flush=True)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = cached_model()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    counts = {c: n if c in ("weak", "strong") else 0 for c in BENCH_CLASSES}
    for _cls, seed, c in fixed_set(TEST_SEED0, counts, 64):
        t0 = time.perf_counter()
        res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, settings=settings.phasing,
                          seed=seed % 100_000, device="cpu", **phase_ai_options(settings.ai))
        dt = time.perf_counter() - t0
        digest = hashlib.sha256(res.obj.numpy().tobytes()).hexdigest()[:16]
        print(json.dumps({"seed": seed, "hash": digest, "llk": res.llk, "s": round(dt, 3),
                          "it": res.timings.get("iterate")}), flush=True)


if __name__ == "__main__":
    main()
