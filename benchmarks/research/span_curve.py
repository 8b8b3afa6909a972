"""Where the shipped AI refinement stops phasing: success against the strain's phase span.

The test set has two classes, weak (span < π) and strong (4.2–7π); a user wants to know what
happens in between and where the AI result stops being trustworthy. Each bin draws crystals
with the smooth part's peak-to-peak phase uniform in the bin (``CrystalSpec.random(seed,
strain=(lo, hi))``), on the strong class's larger crystals (oversampling 2–2.6) with the
strong class's cap on the mean phase gradient (:data:`MAX_MEAN_GRADIENT`: a draw over it is
replaced by the next seed) and no dislocation, so that only the span changes from bin to bin.
Seeds 4_400_000_000 + 1000 k (+ j for the replacements), disjoint from training, validation,
the test set and the other probes. ``--models smooth`` keeps only the Gaussian random field
(the hardest of the smooth models: every span on one random field), default the training
mixture (smooth, interface, core–shell); ``--models polynomial`` a low-order polynomial field
alone (the simulator's ``polynomial_probability``: a bending, a torsion or a random quadratic and
cubic field; session 32). Each crystal is phased and scored as
``generalisation.py`` does (the AI result after the pipeline's noise filter and crystal
support; ``--auto``, ``--truth`` as there).

    python benchmarks/research/span_curve.py --n 10
    python benchmarks/research/span_curve.py --n 10 --models smooth
    python benchmarks/research/span_curve.py --n 10 --models polynomial --truth
"""

from __future__ import annotations

import math

from generalisation import probe_arguments, score_variant

#: Span bins, in units of π.
BINS = ((0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0), (3.0, 3.5), (3.5, 4.0),
        (4.0, 5.0), (5.0, 6.0), (6.0, 7.0))
SEED0 = 4_400_000_000


def crystals(lo: float, hi: float, n: int, models: str):
    """``n`` crystals with span in ``[lo, hi)`` π under the gradient cap."""
    from bcdi_stream.simulation import CrystalSpec, simulate_capped
    from bcdi_stream.training._datasets import MAX_MEAN_GRADIENT

    for k in range(n):
        for j in range(50):
            seed = SEED0 + 1000 * k + j
            spec = CrystalSpec.random(
                seed, strain=(lo * math.pi, hi * math.pi), oversampling=(2.0, 2.6),
                dislocation_probability=0.0,
                strain_models=("smooth",) if models == "smooth" else None,
                polynomial_probability=1.0 if models == "polynomial" else None)
            # a draw over the cap stops before its diffraction
            (c,) = simulate_capped([spec], [MAX_MEAN_GRADIENT], "cpu")
            if c is not None:
                break
        else:
            raise RuntimeError(f"no crystal under the gradient cap in 50 draws at {lo}-{hi} π")
        yield seed, c, round(spec.phase_span / math.pi, 2)


def main() -> None:
    names = [f"{lo:g}-{hi:g}pi" for lo, hi in BINS]
    args = probe_arguments(__doc__, names, names, extra=[
        ("--models", {"choices": ["mix", "smooth", "polynomial"], "default": "mix",
                      "help": "smooth models drawn: the training mixture, the random field or a "
                      "low-order polynomial field"})])
    for (lo, hi), name in zip(BINS, names, strict=True):
        if name not in args.variants:
            continue
        score_variant(f"{args.models}:{name}", (
            (seed, c.intensity, c.mask, c.phase_q, c.obj, c.support, {"span_pi": span})
            for seed, c, span in crystals(lo, hi, args.n, args.models)), args)


if __name__ == "__main__":
    main()
