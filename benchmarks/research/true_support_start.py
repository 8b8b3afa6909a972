"""Is a variant's miss the predicted phase or the predicted support? (research probe)

For each crystal of a ``generalisation.py`` variant: the shipped AI method (``phase_ai``), and
the shipped refinement (HIO + ER as :class:`~bcdi_stream.config.AISettings`, shrink-wrap, one
run) from the same predicted start with the TRUE support (``amplitude > 0.5``, dilated by one
voxel) in place of the predicted one; both through the pipeline's finish, scored against the
truth. If the true support rescues the start, the support estimate is the lever; if not, the
phase. Session 29 on needles of aspect 5 at medium strain: 3/10 either way (the predicted
start's support IoU 0.07–0.37).

    python benchmarks/research/true_support_start.py --variant needle_medium --n 10
"""

from __future__ import annotations

import argparse
import json

import torch
from generalisation import VARIANTS, _spec
from support_oracle import dilate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="needle_medium", choices=list(VARIANTS))
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import AISettings, PhasingSettings
    from bcdi_stream.phasing import run_conventional
    from bcdi_stream.pipeline import finish
    from bcdi_stream.simulation import simulate_crystal

    loaded, settings, ai = cached_model(), PhasingSettings(), AISettings()
    refine = settings.model_copy(update={"runs": 1, "n_raar": 0, "n_hio": ai.n_hio,
                                         "n_er": ai.n_er})
    solved = {"ai": 0, "true_support": 0}
    for k in range(args.n):
        seed = 4_100_000_000 + 1000 * k
        c = simulate_crystal(_spec(args.variant, seed), device="cpu")
        truth = c.obj.abs() > 0.5
        wide = dilate(truth, 1)
        res, start = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
        alt = run_conventional(c.intensity, c.mask, settings=refine, seed=0, device="cpu",
                               obj_init=start.obj, support=wide, detwin=False)
        row: dict = {"variant": args.variant, "seed": seed,
                     "start_support_iou": round(float((start.support & truth).sum()
                                                      / (start.support | truth).sum()), 2)}
        for name, r in (("ai", res), ("true_support", alt)):
            o, s = finish(r.obj, r.support, c.intensity, c.mask, settings)
            m = compare(o, c.obj, truth, recon_support=s)
            row[name] = [round(m.phase_rmse, 3), round(m.support_iou, 2), bool(m.success)]
            solved[name] += bool(m.success)
        print(json.dumps(row), flush=True)
    print(f"{args.variant}: solved {solved} of {args.n}")


if __name__ == "__main__":
    main()
