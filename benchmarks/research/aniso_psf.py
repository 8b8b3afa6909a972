"""Anisotropic partial coherence: which blur hypothesis the ``ai`` method needs (session 22).

The crystals of ``unseen_models.py`` (seeds 4_200_000_000 + 1000 k) blurred along the
detector's x only (``anisoblur``: σ 1.2–1.8 px on top of the crystal's own detector blur, a
beam whose coherence length is short along one axis), weak or, with ``_medium``, a span of
1–2.5π, and the unchanged controls (``none``). Each is reconstructed as ``bcdi-stream
reconstruct --method ai`` does, with the blur hypothesis made from the prediction
(:func:`bcdi_stream.phasing.detector_blur_of`) by each rule in turn:

- ``shipped``: the rule in the checkout;
- ``shared``: one width shared by y and x, the rule up to session 21 (``detector_blur_of`` with
  ``per_axis=False``);
- ``oracle``: the TRUE widths the pattern was blurred with (the ceiling of any hypothesis);
- ``none``: no hypothesis (the refinement's own PSF estimate only).

One JSON line per crystal and rule, a summary per variant and rule.

    python benchmarks/research/aniso_psf.py --variants anisoblur anisoblur_medium --n 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from unseen_models import SEED0, change

RULES = ("shipped", "shared", "oracle", "none")


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import Settings
    from bcdi_stream.phasing import detector_blur_of
    from bcdi_stream.pipeline import reconstruct

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["anisoblur", "anisoblur_medium"])
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--n", type=int, default=10)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = cached_model()
    for variant in args.variants:
        rows: dict[str, list] = {r: [] for r in args.rules}
        for k in range(args.n):
            seed = SEED0 + 1000 * k
            c = change(variant, seed)
            for rule in args.rules:
                made: list = []

                def hypothesis(obj, intensity, mask=None, rule=rule, made=made, c=c):
                    if rule == "oracle":
                        out = c.psf if max(c.psf) > 0 else None
                    elif rule == "none":
                        out = None
                    else:
                        kw = {"per_axis": False} if rule == "shared" else {}
                        out = detector_blur_of(obj, intensity, mask, **kw)
                    made.append(out)
                    return out

                aip.detector_blur_of = hypothesis
                t0 = time.perf_counter()
                rec = reconstruct(c.intensity, c.mask, method="ai", seed=0, model=loaded,
                                  settings=settings)
                dt = time.perf_counter() - t0
                m = compare(rec.obj, c.obj, c.support, recon_support=rec.support)
                row = {"variant": variant, "seed": seed, "rule": rule,
                       "true_psf": [round(v, 2) for v in c.psf],
                       "hypothesis": [None if h is None else [round(v, 2) for v in h]
                                      for h in made],
                       "rmse": round(m.phase_rmse, 3), "iou": round(m.support_iou, 2),
                       "ok": bool(m.success), "s": round(dt, 2)}
                rows[rule].append(row)
                print(json.dumps(row), flush=True)
            aip.detector_blur_of = detector_blur_of
        for rule, rs in rows.items():
            print(f"{variant} {rule}: {sum(r['ok'] for r in rs)}/{len(rs)}, median "
                  f"{statistics.median(r['rmse'] for r in rs):.3f} rad, "
                  f"{statistics.median(r['s'] for r in rs):.2f} s", flush=True)


if __name__ == "__main__":
    main()
