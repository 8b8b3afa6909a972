"""The model shown a thinned copy of a bright pattern, the refinement the full one (research probe).

Session 14 found 4 of the 6 strong validation crystals above 1.5 × 10⁶ peak counts failing by
collapse. The ``"patterson"`` model's input is normalised by the total counts, so scaling a
pattern changes nothing the model sees, but its Poisson noise does. This probe phases crystals
``FIRST … LAST − 1`` of a validation class (``VAL_SEED0`` order, as ``model_side_by_side.py``)
with the shipped ``phase_ai`` as is (``base``) and with the model's input binomially thinned
to each ``--targets`` peak count (seed 0; patterns dimmer than a target are left alone), the
start ``IFFT(√I·e^{iφ})`` and its support then rebuilt from the full data; one JSON line
``[RMSE, success, LLK]`` per column and crystal.

    python benchmarks/research/thinned_input.py --first 0 --last 15    # and 15 30

Results: docs/MODEL_RESEARCH.md, session 15.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import print_totals, score_into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=30)
    ap.add_argument("--targets", nargs="+", type=float, default=[1e5, 3e5])
    ap.add_argument("--cls", default="strong")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    import bcdi_stream.ai_phasing as ai_phasing
    from bcdi_stream import physics
    from bcdi_stream.phasing import shrinkwrap_support
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = ai_phasing.cached_model()
    shipped = ai_phasing.predict_start
    target: list[float | None] = [None]

    def thinned_start(loaded, intensity, mask=None, *, seed=0, settings=None,
                      estimate_psf=False, view=0):
        kw = {"seed": seed, "settings": settings, "estimate_psf": estimate_psf, "view": view}
        peak = float(intensity.max())
        if target[0] is None or peak <= target[0]:
            return shipped(loaded, intensity, mask, **kw)
        gen = torch.Generator().manual_seed(0)
        counts = intensity.clamp_min(0).round().cpu()
        thin = torch.binomial(counts, torch.full_like(counts, target[0] / peak), generator=gen)
        st = shipped(loaded, thin, mask, **kw)
        data = intensity.clamp_min(0)
        if mask is not None:
            data = data.masked_fill(mask.bool(), 0.0)
        st.obj = physics.ifft_centered(torch.polar(data.sqrt(), st.phase_q)).to(torch.complex64)
        s = settings or ai_phasing.PhasingSettings()
        st.support = shrinkwrap_support(st.obj, s.shrinkwrap_sigma_start, s.shrinkwrap_threshold)
        return st

    ai_phasing.predict_start = thinned_start  # phase_ai looks it up in its module
    cols = {"base": None, **{f"t{t:.0e}": t for t in args.targets}}
    totals = dict.fromkeys(cols, 0)
    n = 0
    for k, (_, seed, c) in enumerate(fixed_set(VAL_SEED0, {"weak": 0, args.cls: args.last})):
        if k < args.first:
            continue
        row: dict = {"seed": seed, "peak": float(c.intensity.max())}
        t0 = time.perf_counter()
        for col, t in cols.items():
            if t is not None and row["peak"] <= t:  # not thinned: the base result
                row[col] = row["base"]
                totals[col] += row["base"][1]
                continue
            target[0] = t
            res, _ = ai_phasing.phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
            score_into(row, totals, col, res, c)
        row["s"] = round(time.perf_counter() - t0, 1)
        n += 1
        print(json.dumps(row), flush=True)
    print_totals(args.cls, totals, n)


if __name__ == "__main__":
    main()
