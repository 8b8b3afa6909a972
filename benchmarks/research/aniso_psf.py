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
- ``oracle``: the TRUE widths the pattern was blurred with (the ceiling of any hypothesis;
  for ``diagblur``, the oblique kernel's projections on y and x);
- ``oblique``: for ``diagblur``, the TRUE oblique kernel as ``(0, s_y, s_x, r)`` (the
  correlation capped at ``CORR_MAX``; session 24); ``oracle`` for the other variants;
- ``separable``: the shipped rule without its oblique part (``correlation=False``: the rule of
  sessions 22–23);
- ``none``: no hypothesis (the refinement's own PSF estimate only).

One JSON line per crystal and rule, a summary per variant and rule.

    python benchmarks/research/aniso_psf.py --variants anisoblur anisoblur_medium --n 10
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from _probe import blur_hypothesis_rule, print_rule_summaries, scored_row
from unseen_models import SEED0, change

RULES = ("shipped", "shared", "oracle", "oblique", "separable", "none")


def main() -> None:
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.config import Settings
    from bcdi_stream.phasing import detector_blur_of
    from bcdi_stream.phasing._psf import CORR_MAX
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

                def hypothesis(obj, intensity, mask=None, rocking=False, rule=rule, c=c):
                    if rule == "oblique" and c.oblique > 0:
                        s_y = math.sqrt(c.oblique**2 / 2 + c.detector_sigma**2)
                        r = min(CORR_MAX, c.oblique**2 / 2 / s_y**2)
                        return (0.0, s_y, s_y, r)
                    if rule in ("oracle", "oblique"):
                        return c.psf if max(c.psf) > 0 else None
                    if rule == "none":
                        return None
                    kw = {"per_axis": False} if rule == "shared" else {}
                    if rule == "separable":
                        kw = {"correlation": False}
                    return detector_blur_of(obj, intensity, mask, rocking=rocking, **kw)

                with blur_hypothesis_rule(hypothesis) as made:
                    t0 = time.perf_counter()
                    rec = reconstruct(c.intensity, c.mask, method="ai", seed=0, model=loaded,
                                      settings=settings)
                    dt = time.perf_counter() - t0
                scored_row(rows[rule], rec, c, dt, variant=variant, seed=seed, rule=rule,
                           true_psf=[round(v, 2) for v in c.psf],
                           hypothesis=[None if h is None else [round(v, 2) for v in h]
                                       for h in made])
        print_rule_summaries(variant, rows)


if __name__ == "__main__":
    main()
