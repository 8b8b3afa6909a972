"""Research probe: how much of the true reciprocal-space phase does iterative phasing need?

For strongly strained simulated crystals, start phasing from the measured modulus combined with
the TRUE phase inside |q| <= qc (low-pass, zero beyond), and see whether RAAR/ER + shrink-wrap
finish the job. Tells what a phase-prediction model must deliver.

    python benchmarks/research/oracle_lowq.py --n 6 --qc 4 8 12 16
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from bcdi_stream import physics
from bcdi_stream.analysis import compare
from bcdi_stream.config import PhasingSettings
from bcdi_stream.phasing import run_conventional
from bcdi_stream.simulation import simulate_crystal


def lowpass_start(intensity: torch.Tensor, phase_q: torch.Tensor, qc: float) -> torch.Tensor:
    n = intensity.shape[-1]
    g = torch.meshgrid(*[torch.arange(s) - s // 2 for s in intensity.shape], indexing="ij")
    r = torch.sqrt(sum(x.float() ** 2 for x in g))
    amp = torch.sqrt(intensity.clamp_min(0))
    psi = torch.where(r <= qc, amp * torch.exp(1j * phase_q), 0).to(torch.complex64)
    del n
    return physics.ifft_centered(psi)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--qc", type=float, nargs="+", default=[4, 8, 12, 16])
    ap.add_argument("--strain", default="strong")
    ap.add_argument("--raar", type=int, default=200)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--oversampling", type=float, nargs=2, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for i in range(args.n):
        kw = {}
        if args.oversampling:
            kw["oversampling"] = tuple(args.oversampling)
        c = simulate_crystal(700_000 + i, n=64, strain=args.strain, **kw)
        for qc in args.qc:
            start = lowpass_start(c.intensity, c.phase_q, qc)
            amp = start.abs()
            sup = amp > 0.2 * amp.max()
            s = PhasingSettings(runs=1, n_raar=args.raar, n_er=args.er)
            t0 = time.perf_counter()
            res = run_conventional(c.intensity, c.mask, settings=s, seed=i, obj_init=start,
                                   support=sup, detwin=False)
            dt = time.perf_counter() - t0
            m = compare(res.obj, c.obj, c.support, recon_support=res.support, subpixel=False)
            row = {"seed": 700_000 + i, "qc": qc, "span": round(c.meta["phase_span"], 1),
                   "grad": round(c.meta["phase_gradient_mean"], 2), "rmse": round(m.phase_rmse, 3),
                   "iou": round(m.support_iou, 2), "ok": m.success, "s": round(dt, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for qc in args.qc:
        ok = sum(r["ok"] for r in rows if r["qc"] == qc)
        print(f"qc={qc}: {ok}/{args.n} solved")


if __name__ == "__main__":
    main()
