"""The ``ai`` method's refinement split (HIO then ER iterations) side by side, through the pipeline.

For each crystal of a fixed set (validation seeds ``VAL_SEED0`` by default, in
``fixed_set``'s class order; ``--set test`` for the benchmark's test seeds) and each variant
``HIO/ER`` (optionally ``HIO/ER/beta``): the shipped :func:`bcdi_stream.ai_phasing.phase_ai`
with the settings' options but those iteration counts (and HIO's β), then
:func:`bcdi_stream.pipeline.finish`, scored against the truth. One JSON line per crystal
(``variant: [phase RMSE, success, LLK, seconds, excess misfit]``; the misfit is ``auto``'s
fallback trigger, :func:`bcdi_stream.phasing.excess_misfit`), then ``TOTAL {variant: [successes,
seconds]}``. The variants run one after the other on the same crystal, in one process.

    python refine_split.py --classes weak=0 strong=45 --variants 100/100 150/50 150/150
    python refine_split.py --classes weak=0 strong=90 --first 45 --variants 100/100 150/50
"""

from __future__ import annotations

import argparse
import json

from _probe import add_class_options, class_counts, shipped_ai


def parse_variant(v: str) -> tuple[int, int, float | None]:
    """``"HIO/ER"`` or ``"HIO/ER/beta"`` -> (n_hio, n_er, beta or None)."""
    parts = v.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"variant must be HIO/ER or HIO/ER/beta, got {v!r}")
    return int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) == 3 else None


def main() -> None:
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.config import Settings
    from bcdi_stream.phasing import excess_misfit
    from bcdi_stream.training import TEST_SEED0, VAL_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--set", choices=("val", "test"), default="val")
    ap.add_argument("--first", type=int, default=0, help="skip this many crystals of the set")
    ap.add_argument("--variants", nargs="+", default=["100/100", "150/50"])
    args = ap.parse_args()
    counts = class_counts(args)
    variants = {v: parse_variant(v) for v in args.variants}
    settings = Settings(device="cpu")
    ph = settings.phasing
    loaded = cached_model()
    seed0 = VAL_SEED0 if args.set == "val" else TEST_SEED0
    totals = {v: [0, 0.0] for v in variants}
    for k, (cls, seed, c) in enumerate(fixed_set(seed0, counts, 64)):
        if k < args.first:
            continue
        row: dict = {"class": cls, "seed": seed}
        for v, (n_hio, n_er, beta) in variants.items():
            s = ph if beta is None else ph.model_copy(update={"beta": beta})
            res, m, dt = shipped_ai(c, seed, loaded, settings.ai, s, n_hio=n_hio, n_er=n_er)
            misfit = excess_misfit(res.obj, c.intensity, c.mask, psf_sigma=res.psf_sigma)
            row[v] = [round(m.phase_rmse, 3), int(m.success), round(res.llk, 3), round(dt, 2),
                      round(float(misfit), 5)]
            totals[v][0] += int(m.success)
            totals[v][1] += dt
        print(json.dumps(row), flush=True)
    print("TOTAL", json.dumps(totals), flush=True)


if __name__ == "__main__":
    main()
