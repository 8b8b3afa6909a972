"""Gradient-based phasing with a coarse-to-fine smooth phase field (research probe).

The object is ``a(r)·exp(iφ(r))`` inside a support; ``φ`` is a sum of trilinearly upsampled
coarse grids (spacing 8, 4, 2 voxels, activated in turn), ``a`` free. Adam minimises the
amplitude misfit ``mean((|FFT ρ| ⊛ psf)^½ − √I)²`` over good pixels. Starts:

- ``oracle_support``: the true support, uniform amplitude, zero phase;
- ``ai``: the shipped model's start (its support, amplitude and phase as the base field);

then (optionally) the shipped RAAR+ER refinement from the fitted object. Prints one JSON line
per crystal and a summary.

    python benchmarks/research/smooth_fit.py --cls strong --n 8 --start oracle_support

Result (2026-12-02, docs/MODEL_RESEARCH.md): even from the true support the fit stalls far
from the data (amplitude misfit 40 after 1,500 steps, 0/1 solved, ~100 s per crystal on one
CPU thread): not pursued.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def smooth_phase(coarse: list[torch.Tensor], n: int) -> torch.Tensor:
    out = torch.zeros((n, n, n))
    for c in coarse:
        out = out + F.interpolate(c[None, None], size=(n, n, n), mode="trilinear",
                                  align_corners=False)[0, 0]
    return out


def blur_yx(i: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0.05:
        return i
    r = int(max(1, round(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-x * x / (2 * sigma * sigma))
    k = k / k.sum()
    v = i[None, None]
    v = F.conv3d(F.pad(v, (0, 0, r, r, 0, 0), mode="replicate"), k.reshape(1, 1, 1, -1, 1))
    v = F.conv3d(F.pad(v, (r, r, 0, 0, 0, 0), mode="replicate"), k.reshape(1, 1, 1, 1, -1))
    return v[0, 0]


def fit(intensity, mask, support, amp0, base, sigma, iters, levels, lr, log=None):
    from bcdi_stream import physics

    n = intensity.shape[0]
    good = ~mask
    sq = intensity.clamp_min(0).sqrt()
    # ortho FFT: scale the amplitude to the total counts
    i0 = physics.fft_centered((amp0 * support).to(torch.complex64)).abs() ** 2
    scale = (intensity[good].sum() / i0[good].sum().clamp_min(1e-12)).sqrt()
    a = (amp0 * scale).clone().requires_grad_(True)
    coarse = [torch.zeros((n // s,) * 3, requires_grad=True) for s in levels]
    sup = support.float()
    per = iters // len(levels)
    hist = []
    opt = None
    for lv in range(len(levels)):
        opt = torch.optim.Adam([{"params": [a], "lr": lr * float(scale)},
                                {"params": coarse[: lv + 1], "lr": lr}])
        for it in range(per):
            phi = smooth_phase(coarse[: lv + 1], n) + base
            rho = torch.polar(a * sup, phi)
            ic = physics.fft_centered(rho).abs() ** 2
            ic = blur_yx(ic, sigma)
            loss = ((ic.clamp_min(1e-9).sqrt() - sq)[good] ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                a.clamp_(min=0)
            if it % 50 == 0:
                hist.append(round(float(loss.detach()), 3))
    with torch.no_grad():
        phi = smooth_phase(coarse, n) + base
        return torch.polar(a * sup, phi).detach().to(torch.complex64), hist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed0", type=int, default=2_300_000_000)
    ap.add_argument("--start", default="oracle_support", choices=["oracle_support", "ai"])
    ap.add_argument("--iters", type=int, default=600)
    ap.add_argument("--levels", default="8,4,2")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--psf", default="true", choices=["true", "none"])
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.phasing import run_conventional, shrinkwrap_support
    from bcdi_stream.training._datasets import fixed_set

    levels = [int(v) for v in args.levels.split(",")]
    loaded = cached_model() if args.start == "ai" else None
    rows = []
    for _, seed, c in fixed_set(args.seed0, {args.cls: args.n}):
        sigma = float(c.meta["blur_sigma"]) if args.psf == "true" else 0.0
        t0 = time.perf_counter()
        if args.start == "oracle_support":
            support = c.support.clone()
            amp0 = support.float()
            base = torch.zeros(support.shape)
        else:
            st = predict_start(loaded, c.intensity, c.mask, seed=0)
            support = st.support
            amp0 = st.obj.abs()
            base = torch.angle(st.obj)
        obj, hist = fit(c.intensity, c.mask, support, amp0, base, sigma, args.iters, levels,
                        args.lr)
        t_fit = time.perf_counter() - t0
        m = compare(obj, c.obj, c.support, recon_support=support)
        row = {"seed": seed, "span": round(c.meta["phase_span"] / 3.14159, 1),
               "blur": round(c.meta["blur_sigma"], 2), "fit_rmse": round(m.phase_rmse, 3),
               "fit_iou": round(m.support_iou, 2), "fit_ok": bool(m.success), "hist": hist,
               "t_fit": round(t_fit, 2)}
        if args.refine:
            s = PhasingSettings().model_copy(update={"runs": 1, "n_raar": 100, "n_hio": 0,
                                                     "n_er": 100})
            sw = shrinkwrap_support(obj, 1.0, 0.2)
            res = run_conventional(c.intensity, c.mask, settings=s, seed=0, device="cpu",
                                   obj_init=obj, support=sw, detwin=False)
            m2 = compare(res.obj, c.obj, c.support, recon_support=res.support)
            row.update({"ref_rmse": round(m2.phase_rmse, 3), "ref_ok": bool(m2.success),
                        "llk": round(res.llk, 2)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"fit solved {sum(r['fit_ok'] for r in rows)}/{len(rows)}, median "
          f"{statistics.median(r['fit_rmse'] for r in rows):.3f}")
    if args.refine:
        print(f"refined solved {sum(r['ref_ok'] for r in rows)}/{len(rows)}, median "
              f"{statistics.median(r['ref_rmse'] for r in rows):.3f}")


if __name__ == "__main__":
    main()
