"""Fit the network itself to one measured pattern before refining (research probe).

The shipped model's strong-class prediction is a poor start (validation WCA ≈ 0.15) and
gradient fitting of an explicit smooth phase field stalls (``smooth_fit.py``). Here the
*network* is the parameterisation (as in AutoPhaseNN's refinement, or a deep image prior
started from a trained network): a copy of the shipped model is optimised on a single
crystal's intensity — ``|s·FFT(ρ_net)|`` against ``√I`` on the valid pixels (``s`` the
least-squares scale; optionally through the crystal's true detector blur) — for ``--steps``
Adam steps. The agreement with the true φ(q) is logged along the way; the fitted and the
unfitted predictions are then both refined with the shipped refinement (HIO 100 + ER 100,
one run, from ``IFFT(√I·e^{iφ})``) and scored.

    python benchmarks/research/test_time_fit.py --n 10 --steps 200
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _probe import print_totals, refine_from_phase, score_into


def misfit(model, x, amp, valid, blur):
    """Relative amplitude misfit of the model's object to the measured amplitude."""
    from bcdi_stream import physics
    from bcdi_stream.simulation._forward import detector_blur

    obj = model.forward_object(x[None])[0]
    inten = physics.fft_centered(obj).abs() ** 2
    if blur > 0:
        inten = detector_blur(inten, blur)
    a = inten.clamp_min(0).add(1e-12).sqrt()[valid]
    m = amp[valid]
    s = (a * m).sum() / (a * a).sum().clamp_min(1e-30)
    return ((s.detach() * a - m) ** 2).sum() / (m * m).sum(), obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--first", type=int, default=0, help="skip this many crystals")
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--psf", choices=["none", "true"], default="none")
    ap.add_argument("--train-only", default="", help="parameter-name prefix to fit (default all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.model import PhaseModel, log_minmax, wca
    from bcdi_stream.training._datasets import fixed_set

    src = cached_model().model
    recipe = PhasingSettings(runs=1, n_raar=0, n_hio=100, n_er=100)
    tot = {"base": 0, "fit": 0}
    items = list(fixed_set(2_300_000_000, {args.cls: args.first + args.n}))[args.first:]
    for _, seed, c in items:
        t0 = time.perf_counter()
        model = PhaseModel(src.config)
        model.load_state_dict(src.state_dict())
        model.train()
        params = [p for n, p in model.named_parameters() if n.startswith(args.train_only)]
        opt = torch.optim.Adam(params, lr=args.lr)
        x = c.intensity.clamp_min(0).masked_fill(c.mask, 0.0)
        amp = x.sqrt()
        valid = ~c.mask
        blur = float(c.meta.get("blur_sigma", 0.0)) if args.psf == "true" else 0.0
        w = log_minmax(c.intensity[None])
        curve = []
        for step in range(args.steps + 1):
            loss, obj = misfit(model, x, amp, valid, blur)
            if step % 25 == 0 or step == args.steps:
                with torch.no_grad():
                    phi = torch.angle(model.phasor_of(obj[None].detach()))
                    curve.append([step, round(float(loss), 4),
                                  round(float(wca(c.phase_q[None], phi, w)[0]), 3)])
                if step == 0:
                    phi0 = phi[0].clone()
            if step == args.steps:
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        row = {"seed": seed, "curve": curve}
        for name, ph in (("base", phi0), ("fit", phi[0])):
            score_into(row, tot, name, refine_from_phase(c.intensity, c.mask, ph, recipe), c)
        row["s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
    print_totals(args.cls, tot, len(items))


if __name__ == "__main__":
    main()
