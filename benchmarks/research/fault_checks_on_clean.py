"""The pipeline's data checks on crystals that have none of the faults they look for.

``bcdi_stream.pipeline.reconstruct`` leaves free a clipped peak
(:func:`bcdi_stream.validation.saturated_plateau`), lost frames
(:func:`~bcdi_stream.validation.lost_frames`), detector rows and columns that never count
(:func:`~bcdi_stream.validation.dead_lines`, since session 30) and another grain's Bragg peak
(:func:`~bcdi_stream.validation.secondary_peaks`). None of them may fire on ordinary patterns,
or the benchmark figures would move: this runs the checks on test and validation crystals,
prints each crystal they fire on and the totals, then the secondary-peak check on the
detector-fault variants of ``unseen_models.py`` (10 each; only ``parasitic`` has another peak).
Session 21 (the first three checks), session 30 (all four; ``--benchmark-order`` draws the
test classes as ``bcdi-stream benchmark model`` does, so that all of them are its crystals):

    python benchmarks/research/fault_checks_on_clean.py [--benchmark-order]
"""

from __future__ import annotations

import argparse

import torch
from unseen_models import SEED0, change

FAULT_VARIANTS = ("peakmask", "clipped", "dropframe", "peakmask_medium", "dropframe_medium",
                  "shear_large_medium", "parasitic", "gap_medium", "gapcross_medium",
                  "gapzero_medium")


def main() -> None:
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.training import TEST_SEED0, VAL_SEED0, fixed_set
    from bcdi_stream.validation import (
        dead_lines,
        leave_free,
        lost_frames,
        saturated_plateau,
        secondary_peaks,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark-order", action="store_true",
                    help="draw the test classes in the benchmark's order (its crystals); by "
                         "default in the order written here, as session 21 did, so that only "
                         "weak and strong are the benchmark's")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = {"weak": 25, "strong": 25, "medium+fault": 10, "weak+disl": 10, "medium+loop": 10,
            "strong+field": 10}
    if args.benchmark_order:  # the benchmark's crystals (its classes keep their seed ranges)
        test = {c: test.get(c, 0) for c in BENCH_CLASSES}
    sets = ((TEST_SEED0, test), (VAL_SEED0, {"strong": 30, "medium": 20, "weak": 20}))
    n = fired = 0
    for seed0, counts in sets:
        for cls, seed, c in fixed_set(seed0, counts):
            n += 1
            found = {"secondary_peaks": secondary_peaks(c.intensity, c.mask) is not None,
                     "saturated_plateau": saturated_plateau(c.intensity, c.mask) is not None,
                     "lost_frames": bool(lost_frames(c.intensity, c.mask)),
                     "dead_lines": any(dead_lines(c.intensity, c.mask))}
            if any(found.values()):
                fired += 1
                print(cls, seed, [k for k, v in found.items() if v], flush=True)
    print(f"{n} crystals, a check fired on {fired}", flush=True)
    for variant in FAULT_VARIANTS:
        hits = 0
        for k in range(10):
            c = change(variant, SEED0 + 1000 * k)
            # as the pipeline calls it: lost frames and dead lines bridged
            hits += leave_free(c.intensity, c.mask, counts=True)[1]["secondary_peak_voxels"] > 0
        print(f"{variant}: secondary peak found in {hits}/10", flush=True)


if __name__ == "__main__":
    main()
