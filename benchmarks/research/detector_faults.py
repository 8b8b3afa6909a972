"""Detector faults through the whole pipeline (``bcdi_stream.pipeline.reconstruct``).

The crystals of ``unseen_models.py`` (seeds 4_200_000_000 + 1000 k) with the peak's core
saturated: ``peakmask`` (the voxels whose expected counts exceed 0.3 of the peak are flagged
bad) and ``clipped`` (their counts capped at 0.3 of the peak, not flagged); or with the frame
through the peak lost, all zeros (``dropframe``, not flagged); of the weak class or, with
``_medium``, a span of 1–2.5π. Each is reconstructed as ``bcdi-stream reconstruct``
does (``--method ai`` or ``auto``, the settings from the environment: ``BCDI_AI__PEAK_FILL=0``
turns the fill off, ``BCDI_AI__PEAK_REFILL=false`` its second pass) and scored against the
truth. One JSON line per crystal (the clipped voxels and lost frames the pipeline left free,
the share it filled), a summary per variant. Session 21:

    python benchmarks/research/detector_faults.py --variants peakmask clipped peakmask_medium \\
        clipped_medium --n 10
    BCDI_AI__PEAK_FILL=0 python benchmarks/research/detector_faults.py ...
    python benchmarks/research/detector_faults.py --variants dropframe dropframe_medium --n 10
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import summary_line
from unseen_models import SEED0, change

VARIANTS = ("peakmask", "clipped", "peakmask_medium", "clipped_medium", "dropframe",
            "dropframe_medium", "gap", "gap_medium", "gapcross", "gapcross_medium", "gapzero",
            "gapzero_medium", "gapwide", "gapwide_medium", "hotpixel", "zinger", "cutcurve",
            "cutcurve4",
            "cutcurve_medium", "cutcurve4_medium", "offcentre", "offcentre_medium", "parasitic",
            "flux", "flux_medium", "flux20", "flux20_medium", "deadtime", "deadtime_medium",
            "anisoblur", "anisoblur_medium", "diagblur", "diagblur_medium", "zblur",
            "zblur_medium", "halo", "halo_medium",
            "jitter", "jitter_medium", "network", "network_medium", "none", "none_medium")


def main() -> None:
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import Settings
    from bcdi_stream.pipeline import reconstruct

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS[:4]), choices=VARIANTS)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--method", default="ai", choices=("ai", "auto"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = cached_model()
    print(json.dumps({"peak_fill": settings.ai.peak_fill,
                      "peak_refill": settings.ai.peak_refill,
                      "peak_unfilled": settings.ai.peak_unfilled}), flush=True)
    for variant in args.variants:
        rows = []
        for k in range(args.n):
            seed = SEED0 + 1000 * k
            c = change(variant, seed)
            t0 = time.perf_counter()
            rec = reconstruct(c.intensity, c.mask, method=args.method, seed=0, model=loaded,
                              settings=settings)
            m = compare(rec.obj, c.obj, c.support, recon_support=rec.support)
            row = {"variant": variant, "seed": seed, "rmse": round(m.phase_rmse, 3),
                   "iou": round(m.support_iou, 2), "ok": bool(m.success),
                   "saturated_voxels": rec.meta["saturated_voxels"],
                   "lost_frames": rec.meta["lost_frames"],
                   "secondary_peak_voxels": rec.meta["secondary_peak_voxels"],
                   "peak_filled": (None if rec.meta["peak_filled"] is None
                                   else round(rec.meta["peak_filled"], 3)),
                   "method": rec.method, "s": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        print(summary_line(f"{variant}: {args.method}", rows), flush=True)


if __name__ == "__main__":
    main()
