"""Research probe: does a good support (shape) alone let RAAR/ER phase strongly strained crystals?

    python benchmarks/research/support_oracle.py --n 6
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from bcdi_stream.analysis import compare
from bcdi_stream.config import PhasingSettings
from bcdi_stream.phasing import run_conventional
from bcdi_stream.simulation import simulate_crystal


def dilate(mask: torch.Tensor, r: int) -> torch.Tensor:
    m = mask.float()[None, None]
    return (F.max_pool3d(m, 2 * r + 1, 1, r)[0, 0] > 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--span", type=float, nargs=2, default=[4.2, 8.0])
    ap.add_argument("--os", type=float, nargs=2, default=[2.5, 3.0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--seed0", type=int, default=710_000)
    args = ap.parse_args()
    torch.manual_seed(0)
    for i in range(args.n):
        span = (args.span[0] * math.pi, args.span[1] * math.pi)
        c = simulate_crystal(args.seed0 + i, n=64, strain=span, oversampling=tuple(args.os))
        row = {"seed": args.seed0 + i, "shape": c.spec.shape,
               "grad_mean": round(float(c.meta.get("phase_gradient_mean", float("nan"))), 2),
               "grad_max": round(float(c.meta.get("phase_gradient_max", float("nan"))), 2),
               "span_pi": round(c.spec.phase_span / math.pi, 1),
               "disl": any(m["kind"] in ("screw", "edge") for m in c.spec.strain_models)}
        trials = {
            "conv": dict(settings=PhasingSettings(runs=args.runs, n_raar=600, n_er=200)),
            "sup+raar": dict(settings=PhasingSettings(runs=args.runs, n_raar=200, n_er=100),
                             support=dilate(c.support, 1), detwin=False),
            "sup+er": dict(settings=PhasingSettings(runs=args.runs, n_raar=0, n_er=300),
                           support=dilate(c.support, 1), detwin=False),
            "amp+er": dict(settings=PhasingSettings(runs=1, n_raar=0, n_er=300),
                           support=dilate(c.support, 1), detwin=False,
                           obj_init=c.obj.abs().to(torch.complex64)),
        }
        for name, kw in trials.items():
            t0 = time.perf_counter()
            res = run_conventional(c.intensity, c.mask, seed=i, **kw)
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            row[name] = (round(m.phase_rmse, 2), round(m.support_iou, 2), m.success,
                         round(time.perf_counter() - t0, 1))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
