"""ER first, then HIO, keeping the lower LLK of the two stages (research probe).

``truth_basin.py`` found that HIO 100 + ER 100 started from the TRUE phase leaves the truth
on 5 of 20 strong validation crystals (ER 200 from it: 1 of 20): HIO escapes poor starts and
also walks away from good ones. This recipe spends the same 200 iterations as ER ``--er1``
from the AI start (a snapshot), then HIO ``--hio`` + ER ``--er2`` from the snapshot, and keeps
whichever of the snapshot and the end fits the data better (Poisson LLK). Compared with the
shipped refinement run from the same AI start (no blur hypothesis in either).

    python benchmarks/research/er_first.py --cls strong --n 20
    python benchmarks/research/er_first.py --cls weak --n 20
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import print_totals, score_into
from generalisation import crystals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls", default="strong", choices=["weak", "strong", "medium"])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--er1", type=int, default=50)
    ap.add_argument("--hio", type=int, default=100)
    ap.add_argument("--er2", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.phasing import run_conventional
    from bcdi_stream.training._datasets import fixed_set

    loaded = cached_model()
    if args.cls == "medium":  # the generalisation probe's medium-strain (1–2.5π) crystals
        items = [(seed, c) for seed, c, _ in crystals("medium", args.n, "weak")]
    else:
        items = [(seed, c) for _, seed, c in fixed_set(2_300_000_000, {args.cls: args.n})]
    base_s = PhasingSettings(runs=1, n_raar=0, n_hio=100, n_er=100)
    er1_s = PhasingSettings(runs=1, n_raar=0, n_hio=0, n_er=args.er1)
    rest_s = PhasingSettings(runs=1, n_raar=0, n_hio=args.hio, n_er=args.er2)
    tot = {"base": 0, "er_first": 0, "snapshot": 0, "end": 0}
    for seed, c in items:
        t0 = time.perf_counter()
        st = predict_start(loaded, c.intensity, c.mask, seed=0)
        kw = {"seed": 0, "device": "cpu", "detwin": False}
        base = run_conventional(c.intensity, c.mask, settings=base_s, obj_init=st.obj,
                                support=st.support, **kw)
        snap = run_conventional(c.intensity, c.mask, settings=er1_s, obj_init=st.obj,
                                support=st.support, **kw)
        end = run_conventional(c.intensity, c.mask, settings=rest_s, obj_init=snap.obj,
                               support=snap.support, psf_start=snap.psf_sigma, **kw)
        keep = snap if snap.llk < end.llk else end
        row = {"seed": seed, "s": 0.0}
        for name, r in (("base", base), ("snapshot", snap), ("end", end), ("er_first", keep)):
            score_into(row, tot, name, r, c)
        row["kept"] = "snapshot" if keep is snap else "end"
        row["s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
    print_totals(args.cls, tot, len(items))


if __name__ == "__main__":
    main()
