"""Research probe: HIO, RAAR and OSS on the strong class, from the true support or the AI start.

``--start true_support``: random phases inside the TRUE support, kept fixed (no shrink-wrap),
``--iters`` iterations of the algorithm, then ER 50 — what each algorithm can do when the
support is not the problem. ``--start ai``: the shipped model's start and support, shrink-wrap
every 20 iterations (σ 2 → 1 px, threshold 0.2), then ER 50. A plain-torch loop (no PSF) so
that the algorithms differ only in their outside-support update:

- HIO: ``ρ − β P_M ρ``; RAAR: ``β ρ + (1 − 2β) P_M ρ`` (β = 0.9);
- OSS (Rodriguez et al., J. Appl. Cryst. 46, 312, 2013): HIO, then the outside of the
  support replaced by its Gaussian low-pass in q, the filter width falling from N to 1 px in 10
  stages; the iterate with the lowest modulus misfit of the last stage is kept.

    python benchmarks/research/fixed_support_algorithms.py --algo hio --iters 1000 --n 8
    python benchmarks/research/fixed_support_algorithms.py --algo hio --iters 400 --start ai --n 10

Validation crystals (seeds 2_300_000_000 + …), one thread.
"""

from __future__ import annotations

import argparse
import time

import torch
from _probe import modulus, report, shipped_model_if

from bcdi_stream import physics
from bcdi_stream.ai_phasing import predict_start
from bcdi_stream.phasing import shrinkwrap_support


def phase(algo: str, amp: torch.Tensor, valid: torch.Tensor, rho: torch.Tensor,
          sup: torch.Tensor, iters: int, shrinkwrap: bool, beta: float = 0.9
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``iters`` iterations of ``algo`` then ER 50; returns the object and its support."""
    n = amp.shape[-1]
    g = torch.meshgrid(*[torch.arange(n) - n // 2] * 3, indexing="ij")
    k2 = sum(x.float() ** 2 for x in g)
    best = (float("inf"), rho)
    total = iters + 50
    for it in range(total):
        p = modulus(rho, amp, valid)
        if it >= iters:
            rho = p * sup
        elif algo == "raar":
            rho = torch.where(sup, p, beta * rho + (1 - 2 * beta) * p)
        else:
            rho = torch.where(sup, p, rho - beta * p)
            if algo == "oss":
                stage = min(9, it * 10 // iters)
                alpha = n * (1 - stage / 9) + stage / 9
                window = torch.exp(-0.5 * k2 / alpha**2)
                low = physics.ifft_centered(physics.fft_centered(rho) * window)
                rho = torch.where(sup, rho, low)
                if it >= 0.9 * iters:
                    inside = physics.fft_centered(rho * sup).abs()
                    err = float(((inside - amp)[valid] ** 2).sum())
                    if err < best[0]:
                        best = (err, rho.clone())
                if it == iters - 1:
                    rho = best[1]
        if shrinkwrap and it % 20 == 19 and it < total - 10:
            sup = shrinkwrap_support(rho * sup, 2.0 - it / total, 0.2, previous=sup)
    return rho, sup


def main() -> None:
    from bcdi_stream.training._datasets import fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", choices=["hio", "raar", "oss"], default="hio")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--start", choices=["true_support", "ai"], default="true_support")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--cls", default="strong")
    args = ap.parse_args()
    loaded = shipped_model_if(args.start)
    ok = 0
    for _, seed, c in fixed_set(2_300_000_000, {args.cls: args.n}):
        amp, valid = c.intensity.clamp_min(0).sqrt(), ~c.mask
        if loaded is not None:
            st = predict_start(loaded, c.intensity, c.mask, seed=0)
            rho, sup = st.obj.clone(), st.support.clone()
        else:
            gen = torch.Generator().manual_seed(seed)
            ph = torch.rand(amp.shape, generator=gen) * 2 * torch.pi
            sup = c.support
            rho = (physics.ifft_centered(torch.polar(amp, ph)) * sup).to(torch.complex64)
        t0 = time.perf_counter()
        rho, sup = phase(args.algo, amp, valid, rho, sup, args.iters, shrinkwrap=loaded is not None)
        ok += report(seed, rho, sup, c, t0)
    print(f"{args.start} {args.algo} {args.iters}: {ok}/{args.n} solved")


if __name__ == "__main__":
    main()
