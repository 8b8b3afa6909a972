"""Research probe: multi-resolution phasing of strongly strained crystals.

Phase the central m**3 of the pattern first (a band-limited, coarser object: fewer unknowns,
same oversampling), then pad its reciprocal field into the next level's grid as that level's
start, up to the full grid. A plain-torch RAAR/ER loop with shrink-wrap, no PSF, so that the
single-level control (``--levels 64``) runs the very same arithmetic.

    python benchmarks/research/multires.py --n 8 --start true_support --levels 64
    python benchmarks/research/multires.py --n 8 --start true_support --levels 24 32 48 64
    python benchmarks/research/multires.py --n 8 --start ai --levels 32 48 64

Validation crystals (seeds 2_300_000_000 + …, disjoint from training and the test set).
"""

from __future__ import annotations

import argparse
import time

import torch
from _probe import modulus, report, shipped_model_if

from bcdi_stream import physics
from bcdi_stream.ai_phasing import predict_start
from bcdi_stream.phasing import shrinkwrap_support


def crop(x: torch.Tensor, m: int) -> torch.Tensor:
    """The central ``m**3`` of a centred ``n**3`` array (q = 0 stays at the centre)."""
    n = x.shape[-1]
    a = n // 2 - m // 2
    return x[..., a:a + m, a:a + m, a:a + m]


def pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """Embed a centred ``m**3`` array in the centre of an ``n**3`` zero array."""
    m = x.shape[-1]
    out = torch.zeros((n, n, n), dtype=x.dtype)
    a = n // 2 - m // 2
    out[a:a + m, a:a + m, a:a + m] = x
    return out


def phase_level(amp: torch.Tensor, valid: torch.Tensor, rho: torch.Tensor, sup: torch.Tensor,
                n_raar: int, n_er: int, beta: float = 0.9, sw_every: int = 20,
                sigma: tuple[float, float] = (2.0, 1.0), thr: float = 0.2,
                fixed_support: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """RAAR then ER with shrink-wrap on a centred grid; returns the object and its support."""
    total = n_raar + n_er
    for it in range(total):
        p = modulus(rho, amp, valid)
        if it < n_raar:
            rho = torch.where(sup, p, beta * rho + (1 - 2 * beta) * p)
        else:
            rho = torch.where(sup, p, torch.zeros_like(p))
        if not fixed_support and it % sw_every == sw_every - 1 and it < total - 10:
            s = sigma[0] + (sigma[1] - sigma[0]) * it / total
            sup = shrinkwrap_support(rho, s, thr, previous=sup)
    return rho, sup


def multires(intensity: torch.Tensor, mask: torch.Tensor, rho0: torch.Tensor, sup0: torch.Tensor,
             levels: list[int], n_raar: int, n_er: int, fixed_support: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase level by level; the start at each level is the previous object's padded field."""
    n = intensity.shape[-1]
    amp_full = intensity.clamp_min(0).sqrt()
    valid_full = ~mask
    psi0 = physics.fft_centered(rho0)
    rho = sup = None
    for li, m in enumerate(levels):
        amp, valid = crop(amp_full, m), crop(valid_full, m)
        if li == 0:
            r = physics.ifft_centered(crop(psi0, m)).to(torch.complex64)
            # the support on the coarse grid: the true/initial one resampled
            s = physics.ifft_centered(crop(physics.fft_centered(sup0.to(torch.complex64)), m))
            s = s.abs() > 0.3 * s.abs().max()
            r = r * s
        else:
            r = physics.ifft_centered(pad(physics.fft_centered(rho), m)).to(torch.complex64)
            s = shrinkwrap_support(r, 1.0, 0.2)
        last = li == len(levels) - 1
        rho, sup = phase_level(amp, valid, r, s, n_raar, n_er if last else n_er // 2,
                                  fixed_support=fixed_support and li == 0 and m == n)
    return rho, sup


def main() -> None:
    from bcdi_stream.training._datasets import fixed_set

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--start", choices=["true_support", "ai"], default="true_support")
    ap.add_argument("--levels", type=int, nargs="+", default=[64])
    ap.add_argument("--raar", type=int, default=200)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    loaded = shipped_model_if(args.start)
    ok = 0
    for _, seed, c in fixed_set(2_300_000_000, {args.cls: args.n}):
        t0 = time.perf_counter()
        best = None
        for run in range(args.runs):
            if loaded is not None:
                st = predict_start(loaded, c.intensity, c.mask, seed=run)
                rho0, sup0 = st.obj, st.support
            else:
                gen = torch.Generator().manual_seed(seed + run)
                ph = torch.rand(c.intensity.shape, generator=gen) * 2 * torch.pi
                rho0 = physics.ifft_centered(torch.polar(c.intensity.clamp_min(0).sqrt(), ph))
                sup0 = c.support
                rho0 = (rho0 * sup0).to(torch.complex64)
            rho, sup = multires(c.intensity, c.mask, rho0, sup0, args.levels, args.raar, args.er)
            mis = float(((physics.fft_centered(rho).abs() - c.intensity.sqrt()) ** 2).sum())
            if best is None or mis < best[0]:
                best = (mis, rho, sup)
        ok += report(seed, best[1], best[2], c, t0)
    print(f"{args.start} levels={args.levels}: {ok}/{args.n} solved")


if __name__ == "__main__":
    main()
