"""The predicted phase as a soft constraint during the refinement, not only as its start.

DESIGN.md's "directions" name iterative phasing "that keeps the predicted low-q phases as a
soft constraint". Here the modulus projection of the first ``K`` iterations of HIO 100 + ER
100 (plain-torch loop of ``fixed_support_algorithms.py``: shrink-wrap every 20 iterations,
σ 2 → 1 px, threshold 0.2, no PSF) sets the measured modulus on the unit phasor
``(1 − λ)·e^{i arg ψ} + λ·W(q)·e^{iφ_AI}``, λ falling linearly from ``λ0`` to 0 over ``K``
iterations; ``W`` is 1 inside ``|q| ≤ qc`` (all of q with ``qc`` 0) and 0 beyond. λ0 = 0 is
the plain loop, the control. For each validation crystal (seeds from ``VAL_SEED0``, class
order as in ``model_side_by_side.py``) one JSON line with ``[phase RMSE, success]`` per
variant ``λ0/K/qc``; the closing lines count the successes.

    python benchmarks/research/soft_phase.py --classes weak=0 strong=20 \\
        --variants 0/0/0 0.3/100/0 0.6/100/0 0.6/100/16 0.9/60/16
"""

from __future__ import annotations

import argparse
import json

import torch
from _probe import add_class_options, class_counts, modulus


def refine(amp: torch.Tensor, valid: torch.Tensor, rho: torch.Tensor, sup: torch.Tensor,
           phasor_ai: torch.Tensor, lam0: float, k: int, window: torch.Tensor,
           n_hio: int = 100, n_er: int = 100, beta: float = 0.9
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """HIO ``n_hio`` + ER ``n_er`` with the soft phase constraint over the first ``k``."""
    from bcdi_stream import physics
    from bcdi_stream.phasing import shrinkwrap_support

    total = n_hio + n_er
    for it in range(total):
        lam = lam0 * max(0.0, 1.0 - it / k) if k else 0.0
        if lam > 0:
            psi = physics.fft_centered(rho)
            u = psi / (psi.abs() + 1e-12)
            mix = (1 - lam) * u + lam * window * phasor_ai
            mix = torch.where(window > 0, mix / (mix.abs() + 1e-12), u)
            p = physics.ifft_centered(torch.where(valid, amp * mix, psi))
        else:
            p = modulus(rho, amp, valid)
        rho = p * sup if it >= n_hio else torch.where(sup, p, rho - beta * p)
        if it % 20 == 19 and it < total - 10:
            sup = shrinkwrap_support(rho * sup, 2.0 - it / total, 0.2, previous=sup)
    return rho, sup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--variants", nargs="+", default=["0/0/0", "0.3/100/0", "0.6/100/16"],
                    help="λ0/K/qc")
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    counts = class_counts(args)
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.analysis import compare
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model(args.model)
    variants = [tuple(float(x) for x in v.split("/")) for v in args.variants]
    totals = {cls: dict.fromkeys(args.variants, 0) for cls in counts}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        st = predict_start(loaded, c.intensity, c.mask, seed=0)
        amp, valid = c.intensity.clamp_min(0).sqrt(), ~c.mask
        n = amp.shape[-1]
        g = torch.meshgrid(*[torch.arange(n) - n // 2] * 3, indexing="ij")
        q = torch.sqrt(sum(x.float() ** 2 for x in g))
        phasor = torch.polar(torch.ones_like(st.phase_q), st.phase_q)
        row: dict = {"class": cls, "seed": seed}
        for name, (lam0, k, qc) in zip(args.variants, variants, strict=True):
            window = (q <= qc).float() if qc > 0 else torch.ones_like(q)
            rho, sup = refine(amp, valid, st.obj.clone(), st.support.clone(), phasor, lam0,
                              int(k), window)
            m = compare(rho, c.obj, c.support, recon_support=sup)
            row[name] = [round(m.phase_rmse, 3), bool(m.success)]
            totals[cls][name] += bool(m.success)
        print(json.dumps(row), flush=True)
    for cls, t in totals.items():
        if counts[cls]:
            print(f"{cls}: " + ", ".join(f"{k} {v}/{counts[cls]}" for k, v in t.items()),
                  flush=True)


if __name__ == "__main__":
    main()
