"""Which quality figure tells a failed AI+refinement result from a good one? (research probe)

Until session 8 the ``auto`` method fell back to the conventional recipe when the AI
result's Poisson LLK exceeded a fixed 1.5. The LLK of a *correct* reconstruction grows with
the counts (a relative model error ε costs ≈ 4ε²·I per pixel), so a fixed threshold flags good
high-count results and passes bad low-count ones. For validation crystals (seeds disjoint from
the benchmark's test set) this prints, per crystal, the shipped AI method's success and
candidate figures: the LLK; the amplitude misfit ``R = Σ(√Ic − √I)² / ΣI`` of the scaled,
blurred model; ``R`` less 1/4 per counted pixel; and ``R`` less its exact Poisson floor
``E[(√k − √λ)²]`` (which falls from 1/4 to 2λ at low counts) — the share of the measured
intensity the model leaves unexplained beyond the noise, shipped as
:func:`bcdi_stream.phasing.excess_misfit` and the ``auto`` trigger (column ``r_noise``); and
that last with a flat background fitted beside the model (``r_bg``: no false alarm, but
wrong low-count models hide misfit in the background, so not shipped).
The last line scores each figure's best threshold.

    python benchmarks/research/fallback_trigger.py --n 30 \
        > benchmarks/results/fallback-trigger-validation.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def fitted_background(ic: torch.Tensor, io: torch.Tensor, b_max: float) -> tuple[float, float]:
    """``(s, b)`` of the model ``s·Ic + b``: Poisson maximum likelihood by Newton steps with
    ``0 ≤ b ≤ b_max`` (the likelihood is concave in ``(s, b)``)."""
    total, model = float(io.sum()), float(ic.sum())
    s, b = total / model, 0.01 * b_max
    if not b_max > 0:
        return s, 0.0
    for _ in range(30):
        lam = (s * ic + b).clamp_min(1e-12)
        r = io / lam - 1.0
        g = torch.stack([(r * ic).sum(), r.sum()])
        q = io / lam.square()
        h = torch.stack([torch.stack([(q * ic * ic).sum(), (q * ic).sum()]),
                         torch.stack([(q * ic).sum(), q.sum()])])
        step = torch.linalg.solve(h + 1e-12 * torch.eye(2, dtype=h.dtype), g)
        s_new, b_new = s + float(step[0]), min(b_max, max(0.0, b + float(step[1])))
        if s_new <= 0:
            break
        done = abs(s_new - s) <= 1e-9 * s and abs(b_new - b) <= 1e-9 * max(b, 1e-9)
        s, b = s_new, b_new
        if done:
            break
    return (s, b) if b > 0 else (total / model, 0.0)


def amplitude_misfit(obj: torch.Tensor, data: torch.Tensor, bad: torch.Tensor,
                     psf_sigma: object) -> tuple[float, float, float]:
    """``R`` and ``R`` less 1/4 per counted pixel, for the model scaled to the data's total;
    and ``R`` less its exact Poisson floor (as :func:`bcdi_stream.phasing.excess_misfit`) for
    the model plus a flat background fitted between 0 and the mean count beyond the grid's
    inscribed ellipsoid."""
    from bcdi_stream import physics
    from bcdi_stream.phasing import poisson_amplitude_floor
    from bcdi_stream.phasing._psf import Psf, parse_psf

    ic = physics.fft_centered(obj).abs().square().to(torch.float64)
    mode, sigma = parse_psf(psf_sigma)
    if mode == "fixed":
        ic = Psf(sigma, tuple(ic.shape)).apply(ic)  # periodic and symmetric: any layout
    valid = ~bad
    axes = [(torch.arange(n, dtype=torch.float64) - n // 2) / (n // 2) for n in data.shape]
    r2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    io_all = data.to(torch.float64).clamp_min(0)
    b_max = float(io_all[valid & (r2 > 1.0)].mean())
    io = io_all[valid]
    ic = ic[valid]
    scale, bg = fitted_background(ic, io, b_max)
    lam = ic * scale + bg
    ic = ic * (io.sum() / ic.sum().clamp_min(1e-30))
    total = float(io.sum())
    r = float((ic.sqrt() - io.sqrt()).square().sum()) / total
    floor = 0.25 * float((io > 0).sum()) / total
    r_bg = (float((lam.sqrt() - io.sqrt()).square().sum())
            - float(poisson_amplitude_floor(lam).sum())) / total
    return r, r - floor, r_bg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30, help="crystals per class")
    ap.add_argument("--classes", default="weak,strong")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream.ai_phasing import cached_model, phase_auto
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import load_settings
    from bcdi_stream.training._datasets import VAL_SEED0, fixed_set

    s = load_settings()
    loaded = cached_model()
    rows = []
    counts = {c: args.n for c in args.classes.split(",")}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        t0 = time.perf_counter()
        out = phase_auto(c.intensity, c.mask, loaded=loaded, ai=s.ai, settings=s.phasing,
                         seed=0, device="cpu", fallback=False)
        res = out.result
        m = compare(res.obj, c.obj, c.support, recon_support=res.support)
        r, r_excess, r_bg = amplitude_misfit(res.obj, c.intensity, c.mask, res.psf_sigma)
        r_noise = out.misfit  # phasing.excess_misfit, the auto trigger
        row = {"class": cls, "seed": seed, "ok": bool(m.success),
               "rmse": round(m.phase_rmse, 3), "llk": round(res.llk, 4),
               "r": round(r, 5), "r_excess": round(r_excess, 5),
               "r_noise": round(r_noise, 5), "r_bg": round(r_bg, 5),
               "total": round(float(c.intensity[~c.mask].sum())),
               "s": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    for key in ("llk", "r", "r_excess", "r_noise", "r_bg"):
        vals = sorted({row[key] for row in rows})
        best = max(((sum(not q["ok"] and q[key] > t for q in rows)
                     - sum(q["ok"] and q[key] > t for q in rows)), t) for t in vals)
        t = best[1]
        print(f"{key}: best threshold {t:.4g}: flags "
              f"{sum(not q['ok'] and q[key] > t for q in rows)}/{sum(not q['ok'] for q in rows)}"
              f" failures and {sum(q['ok'] and q[key] > t for q in rows)}/"
              f"{sum(q['ok'] for q in rows)} successes", flush=True)


if __name__ == "__main__":
    main()
