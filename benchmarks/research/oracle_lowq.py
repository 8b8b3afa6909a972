"""Research probe: how much of the true reciprocal-space phase does iterative phasing need?

For strongly strained simulated crystals, start phasing from the measured modulus combined with
the TRUE phase inside |q| <= qc (low-pass, zero beyond), and see whether RAAR/ER + shrink-wrap
finish the job. Tells what a phase-prediction model must deliver.

    python benchmarks/research/oracle_lowq.py --n 6 --qc 4 8 12 16

``--validation``: the benchmark's strong class instead (validation seeds 2_300_000_000 + …,
gradient-capped, see ``bcdi_stream.training._datasets``), uniform random phases beyond qc
instead of zero modulus, and the shipped AI refinement (RAAR 100 + ER 100, one run):

    python benchmarks/research/oracle_lowq.py --validation --n 10 --qc 4 8 12 16 24
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


def lowpass_start(intensity: torch.Tensor, phase_q: torch.Tensor, qc: float,
                  beyond: torch.Tensor | None = None) -> torch.Tensor:
    """``IFFT(√I·e^{iφ})`` with the true φ inside |q| <= qc; beyond it zero (``beyond`` None)
    or the phases ``beyond``."""
    g = torch.meshgrid(*[torch.arange(s) - s // 2 for s in intensity.shape], indexing="ij")
    r = torch.sqrt(sum(x.float() ** 2 for x in g))
    amp = torch.sqrt(intensity.clamp_min(0))
    outside = 0 if beyond is None else amp * torch.exp(1j * beyond)
    psi = torch.where(r <= qc, amp * torch.exp(1j * phase_q), outside).to(torch.complex64)
    return physics.ifft_centered(psi)


def validation(args: argparse.Namespace) -> None:
    """The benchmark's strong class, random phases beyond qc, the shipped AI refinement."""
    from bcdi_stream.model import wca
    from bcdi_stream.model._loss import log_minmax
    from bcdi_stream.phasing import shrinkwrap_support
    from bcdi_stream.training._datasets import fixed_set

    s = PhasingSettings(runs=1, n_raar=100, n_hio=0, n_er=100)
    solved = dict.fromkeys(args.qc, 0)
    for _, seed, c in fixed_set(2_300_000_000, {"strong": args.n}):
        rnd = torch.rand(c.intensity.shape, generator=torch.Generator().manual_seed(seed))
        row: dict = {"seed": seed}
        for qc in args.qc:
            start = lowpass_start(c.intensity, c.phase_q, qc, (rnd * 2 - 1) * torch.pi)
            res = run_conventional(c.intensity, c.mask, settings=s, seed=0, device="cpu",
                                   obj_init=start, support=shrinkwrap_support(start, 2.0, 0.2),
                                   detwin=False)
            m = compare(res.obj, c.obj, c.support, recon_support=res.support)
            agree = float(wca(c.phase_q, torch.angle(physics.fft_centered(start)),
                              log_minmax(c.intensity)))
            row[f"qc{qc:g}"] = {"wca": round(agree, 2), "rmse": round(m.phase_rmse, 2),
                                "ok": bool(m.success)}
            solved[qc] += bool(m.success)
        print(json.dumps(row), flush=True)
    for qc in args.qc:
        print(f"qc={qc:g}: {solved[qc]}/{args.n} solved")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--qc", type=float, nargs="+", default=[4, 8, 12, 16])
    ap.add_argument("--strain", default="strong")
    ap.add_argument("--raar", type=int, default=200)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--oversampling", type=float, nargs=2, default=None)
    ap.add_argument("--validation", action="store_true",
                    help="the benchmark's strong validation crystals (see the docstring)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if args.validation:
        validation(args)
        return
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
