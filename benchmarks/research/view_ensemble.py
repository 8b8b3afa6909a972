"""Views averaged: does the mean of the eight views' predictions make a better start than one?

Session 10 refined each view of the pattern on its own (``views.py``); session 5 scored the
best single view's start. Here the eight predictions of φ(q) (``predict_start(view=v)``, each
reflected back) are aligned to view 0 — the global phase offset, and the twin ``−φ(−q)``
where it agrees better — and their unit phasors averaged (then aligned to that mean and
averaged once more). For each validation crystal (seeds from ``VAL_SEED0``, class order as in
``model_side_by_side.py``) one JSON line: the start's WCA against the true φ(q) for view 0,
the mean and best single view, and the average; then the same refinement (the shipped
HIO 100 + ER 100 of ``run_conventional``, no blur hypothesis) from view 0 and from the
average, ``[phase RMSE, success, LLK]`` each.

    python benchmarks/research/view_ensemble.py --classes weak=0 strong=30
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import add_class_options, class_counts, print_totals, score_into


def aligned(phi_v: torch.Tensor, ref: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The unit phasor of ``phi_v`` or of its twin ``−φ(−q)``, whichever agrees better with the
    phasor ``ref`` under weights ``w``, rotated by the weighted mean phase difference."""
    from bcdi_stream import physics

    best, best_c = None, -1.0
    for cand in (phi_v, -physics.reflect(phi_v, (0, 1, 2))):
        p = torch.polar(torch.ones_like(cand), cand)
        c = (w * p * ref.conj()).sum()
        if float(c.abs()) > best_c:
            best, best_c = p * (c.conj() / c.abs().clamp_min(1e-30)), float(c.abs())
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--model", default=None, help="weights file (default: the shipped one)")
    args = ap.parse_args()
    counts = class_counts(args)
    from bcdi_stream import physics
    from bcdi_stream.ai_phasing import N_VIEWS, cached_model, predict_start
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.model import log_minmax, wca
    from bcdi_stream.phasing import run_conventional, shrinkwrap_support
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model(args.model)
    settings = PhasingSettings()
    s_run = settings.model_copy(update={"runs": 1, "n_raar": 0, "n_hio": 100, "n_er": 100})
    totals = {cls: {"view0": 0, "average": 0} for cls in counts}

    def refine(data: torch.Tensor, mask: torch.Tensor, phi: torch.Tensor):
        start = physics.ifft_centered(torch.polar(data.clamp_min(0).sqrt(), phi)
                                      ).to(torch.complex64)
        sup = shrinkwrap_support(start, settings.shrinkwrap_sigma_start,
                                 settings.shrinkwrap_threshold)
        return run_conventional(data, mask, settings=s_run, seed=0, device="cpu",
                                obj_init=start, support=sup, detwin=False)

    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        t0 = time.perf_counter()
        w = log_minmax(c.intensity)
        phis = [predict_start(loaded, c.intensity, c.mask, seed=0, view=v).phase_q
                for v in range(N_VIEWS)]
        ref = torch.polar(torch.ones_like(phis[0]), phis[0])
        for _ in range(2):
            mean = sum(aligned(p, ref, w) for p in phis)
            ref = mean / mean.abs().clamp_min(1e-12)
        phi_avg = torch.angle(ref)
        wcas = [float(wca(c.phase_q, p, w)) for p in phis]
        row: dict = {"class": cls, "seed": seed, "wca_view0": round(wcas[0], 3),
                     "wca_mean_view": round(sum(wcas) / len(wcas), 3),
                     "wca_best_view": round(max(wcas), 3),
                     "wca_average": round(float(wca(c.phase_q, phi_avg, w)), 3),
                     "coherence": round(float((w * mean.abs()).sum() / w.sum() / N_VIEWS), 3)}
        score_into(row, totals[cls], "view0", refine(c.intensity, c.mask, phis[0]), c)
        score_into(row, totals[cls], "average", refine(c.intensity, c.mask, phi_avg), c)
        row["s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
    for cls, t in totals.items():
        print_totals(cls, t, counts[cls])


if __name__ == "__main__":
    main()
