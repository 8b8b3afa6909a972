"""Does the model predict a blurred pattern better once the blur is taken out of its input?

Session 24 found the prediction reading a blur it was not trained on (partial coherence along
a line, along the rocking axis) as a smaller crystal, and the blur hypothesis made from that
prediction short by 20-50 %. Here the model sees the pattern deconvolved (Richardson-Lucy,
``--rl`` iterations, bad pixels without weight) by a kernel, the start's modulus and the
refinement keep the measured intensity, and the kernel is the blur hypothesis of the run:

- ``shipped``: ``reconstruct --method ai`` as in the checkout;
- ``true_hyp``: the TRUE kernel as the hypothesis, the input as measured (session 24's
  ``oblique`` rule: the ceiling of a better hypothesis alone);
- ``deconv_true``: the input deconvolved by the TRUE kernel, which is also the hypothesis (the
  ceiling of this idea);
- ``deconv_est``: the shipped run first; when its final PSF (``quality["psf_sigma"]``) is
  wider than ``--min-sigma`` px along some axis, a second run on the input deconvolved by it,
  that PSF as hypothesis, and again from the second run's PSF (``--passes``); the lowest LLK
  kept.
- ``deconv_fix``: a fixed point of the kernel before any refinement: the PSF (z, y, x[, r])
  fitted by LLK (``estimate_sigma``, wide) to the prediction from the pattern as measured,
  then ``--passes`` times to the prediction from the pattern deconvolved by the last kernel;
  the run is ``deconv_true``'s with that kernel, when it is wider than ``--min-sigma`` px
  along some axis (else the shipped run).

The crystals are ``unseen_models.py``'s (seeds 4_200_000_000 + 1000 k). One JSON line per
crystal and rule, a summary per variant and rule.

    python deconv_input.py --variants diagblur zblur none --n 10
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Sequence

import torch
from _probe import blur_hypothesis_rule, print_rule_summaries, scored_row
from unseen_models import SEED0, change

RULES = ("shipped", "true_hyp", "deconv_true", "deconv_est", "deconv_fix")


@contextlib.contextmanager
def deconvolved_input(sigma: Sequence[float], n_iter: int) -> Iterator[None]:
    """Inside the block the model sees the pattern deconvolved by ``sigma``; the start's
    modulus is the measured one and ``sigma`` is the blur hypothesis."""
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream import physics
    from bcdi_stream.phasing import deconvolve, shrinkwrap_support

    shipped = aip.predict_start

    def predict(loaded, intensity, mask=None, *, settings=None, **kw):
        kw["estimate_psf"] = False
        st = shipped(loaded, deconvolve(intensity, sigma, mask, n_iter), mask,
                     settings=settings, **kw)
        data = intensity.to(torch.float32).clamp_min(0)
        if mask is not None:
            data = data.masked_fill(mask.bool(), 0.0)
        obj = physics.ifft_centered(torch.polar(data.sqrt(), st.phase_q)).to(torch.complex64)
        s = settings or aip.PhasingSettings()
        support = shrinkwrap_support(obj, s.shrinkwrap_sigma_start, s.shrinkwrap_threshold)
        return dataclasses.replace(st, obj=obj, support=support,
                                   psf_sigma=tuple(float(v) for v in sigma))

    aip.predict_start = predict
    try:
        yield
    finally:
        aip.predict_start = shipped


def true_kernel(c) -> tuple[float, ...]:
    """The kernel the pattern was blurred with, in the engine's form."""
    from bcdi_stream.phasing._psf import CORR_MAX

    if c.oblique > 0:
        s_y = math.sqrt(c.oblique**2 / 2 + c.detector_sigma**2)
        return (0.0, s_y, s_y, min(CORR_MAX, c.oblique**2 / 2 / s_y**2))
    return tuple(c.psf)


def fixed_point_kernel(loaded, intensity: torch.Tensor, mask: torch.Tensor | None,
                       passes: int, n_iter: int) -> list[tuple[float, ...]]:
    """The kernels of ``deconv_fix``, first to last (64³ patterns)."""
    from bcdi_stream.ai_phasing import _predict_object
    from bcdi_stream.phasing import deconvolve
    from bcdi_stream.phasing._kernels import prepare_measured
    from bcdi_stream.phasing._psf import estimate_sigma
    from bcdi_stream.phasing._quality import _intensity_of

    data = intensity.to(torch.float32).clamp_min(0)
    bad = torch.zeros_like(data, dtype=torch.bool) if mask is None else mask.bool()
    meas = prepare_measured(data, bad)
    x = data.masked_fill(bad, 0.0)
    kernels: list[tuple[float, ...]] = []
    for _ in range(passes + 1):
        with torch.no_grad():
            _, obj_m = _predict_object(loaded, x, bad)
        k = estimate_sigma(_intensity_of(obj_m.to(torch.complex64)), meas, wide=True)
        kernels.append(tuple(round(float(v), 3) for v in k))
        x = deconvolve(data, k, bad, n_iter).masked_fill(bad, 0.0)
    return kernels


def main() -> None:
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.config import Settings
    from bcdi_stream.pipeline import reconstruct

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["diagblur", "zblur", "none"])
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--rl", type=int, default=20)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--min-sigma", type=float, default=0.6)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    loaded = cached_model()

    def run(c):
        return reconstruct(c.intensity, c.mask, method="ai", seed=0, model=loaded,
                           settings=settings)

    for variant in args.variants:
        rows: dict[str, list] = {r: [] for r in args.rules}
        for k in range(args.first, args.first + args.n):
            seed = SEED0 + 1000 * k
            c = change(variant, seed)
            kernel = true_kernel(c)
            base = None
            for rule in args.rules:
                t0 = time.perf_counter()
                trail = []
                if rule == "shipped" or (rule == "deconv_est" and base is None):
                    rec = run(c)
                    if rule == "shipped":
                        base = rec
                if rule == "deconv_est":
                    rec = base
                    best = rec
                    for _ in range(args.passes):
                        sig = [float(v) for v in rec.quality["psf_sigma"]]
                        trail.append([round(v, 2) for v in sig])
                        if max(sig[:3]) < args.min_sigma:
                            break
                        with deconvolved_input(sig, args.rl):
                            rec = run(c)
                        if rec.quality["llk"] < best.quality["llk"]:
                            best = rec
                    rec = best
                elif rule == "deconv_fix":
                    ks = fixed_point_kernel(loaded, c.intensity, c.mask, args.passes, args.rl)
                    trail = [list(k) for k in ks]
                    if max(ks[-1][:3]) < args.min_sigma:
                        rec = run(c)
                    else:
                        with deconvolved_input(ks[-1], args.rl):
                            rec = run(c)
                elif rule == "true_hyp":
                    with blur_hypothesis_rule(lambda *a, k=kernel, **kw: k):
                        rec = run(c)
                elif rule == "deconv_true":
                    with deconvolved_input(kernel, args.rl):
                        rec = run(c)
                dt = time.perf_counter() - t0
                scored_row(rows[rule], rec, c, dt, variant=variant, seed=seed, rule=rule,
                           true=[round(v, 2) for v in kernel],
                           psf=[round(v, 2) for v in rec.quality["psf_sigma"]],
                           trail=trail, llk=round(rec.quality["llk"], 3))
        print_rule_summaries(variant, rows)


if __name__ == "__main__":
    main()
