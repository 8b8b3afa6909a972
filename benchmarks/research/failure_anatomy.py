"""Failure anatomy of the shipped AI method on strong validation crystals (research probe).

For crystals ``FIRST … LAST − 1`` of the strong validation class (``VAL_SEED0`` order, as
``model_side_by_side.py``): the crystal's make-up (shape, phase span in π, max |∇φ|, blur,
peak counts, oversampling, dislocations, share of the photons beyond |q| = 24 and 28 px), the
shipped ``phase_ai`` result ``ai`` = [RMSE, IoU, success, LLK], ER 200 from the TRUE phase
``tr`` (same fields), the voxels of the true / predicted start's / final support ``sup``, and
the start's intensity-weighted cos(φ_start − φ_true) per |q| shell (0–4, 4–8, 8–12, 12–16,
16–24, ≥ 24 px; not twin-aware: a twin start reads negative).

    python benchmarks/research/failure_anatomy.py 0 15     # and 15 30

Results: docs/MODEL_RESEARCH.md, session 14.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from _probe import refine_from_phase


def main() -> None:
    first, last = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream import physics
    from bcdi_stream.ai_phasing import phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.model import default_weights_path, load_model
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = load_model(default_weights_path())
    er200 = PhasingSettings(runs=1, n_raar=0, n_hio=0, n_er=200)
    z = torch.arange(64) - 32
    qq = (z[:, None, None] ** 2 + z[None, :, None] ** 2 + z[None, None, :] ** 2).float().sqrt()
    for i, (_, seed, c) in enumerate(fixed_set(VAL_SEED0, {"weak": 0, "strong": last})):
        if i < first:
            continue
        t0 = time.perf_counter()
        res, start = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
        m = compare(res.obj, c.obj, c.support, recon_support=res.support)
        tru = refine_from_phase(c.intensity, c.mask, c.phase_q, er200)
        mt = compare(tru.obj, c.obj, c.support, recon_support=tru.support)
        inten = c.intensity.float()
        agree = torch.cos(torch.angle(physics.fft_centered(start.obj)) - c.phase_q)
        shells = []
        for a, b in ((0, 4), (4, 8), (8, 12), (12, 16), (16, 24), (24, 40)):
            w = inten[(qq >= a) & (qq < b)]
            d = agree[(qq >= a) & (qq < b)]
            shells.append(round(float((w * d).sum() / w.sum().clamp_min(1e-9)), 2))
        meta = c.meta
        row = {"seed": seed, "shape": meta["shape"], "span": round(meta["phase_span"] / 3.1416, 1),
               "gmax": round(meta["phase_gradient_max"], 2), "blur": meta.get("blur_sigma"),
               "counts": meta.get("peak_counts"), "os": round(meta["oversampling_measured"], 2),
               "disl": len(meta.get("dislocations") or []),
               "q24": round(float(inten[qq > 24].sum() / inten.sum()), 4),
               "q28": round(float(inten[qq > 28].sum() / inten.sum()), 4),
               "ai": [round(m.phase_rmse, 3), round(m.support_iou, 2), bool(m.success),
                      round(res.llk, 2)],
               "tr": [round(mt.phase_rmse, 3), round(mt.support_iou, 2), bool(mt.success),
                      round(tru.llk, 2)],
               "sup": [int(c.support.sum()), int(start.support.sum()), int(res.support.sum())],
               "sh": shells, "s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
