"""Two weights files side by side: the shipped AI method on the same validation crystals.

Each crystal of the validation classes (seeds from ``VAL_SEED0``, disjoint from training and
the test set; a ``+disl`` class carries 1–2 dislocations in every crystal) is phased by
``phase_ai`` (prediction + the shipped refinement) with each model; one JSON line per crystal
(``[phase RMSE, success, LLK]`` per model) and the successes per class and model.

    python benchmarks/research/model_side_by_side.py \\
        --models bcdi_stream/model/weights/bcdi-phase-v2.pt runs/v3d/last.pt \\
        --classes weak=20 strong=30 weak+disl=20 medium+disl=20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _probe import add_class_options, class_counts, print_totals, score_into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True,
                    help="weights files or training checkpoints")
    add_class_options(ap)
    args = ap.parse_args()
    counts = class_counts(args)
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.model import load_model
    from bcdi_stream.training import VAL_SEED0, fixed_set

    models = {Path(m).parent.name if Path(m).name == "last.pt" else Path(m).stem:
              load_model(m) for m in args.models}
    totals = {cls: dict.fromkeys(models, 0) for cls in counts}
    # the class order fixes each class's seed range (fixed_set), so keep it between runs; a
    # count of 0 keeps a class's place (to split the classes over two processes)
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        row: dict = {"class": cls, "seed": seed}
        for label, loaded in models.items():
            res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
            score_into(row, totals[cls], label, res, c)
        print(json.dumps(row), flush=True)
    for cls, t in totals.items():
        print_totals(cls, t, counts[cls])


if __name__ == "__main__":
    main()
