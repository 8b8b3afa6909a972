"""Fine-tune the shipped model through a few differentiable RAAR steps (research probe).

The refinement, not the prediction, is what is scored: train the model for the start that
refinement finishes from. After the prediction, ``--k`` RAAR steps (β 0.9) run inside the
graph from ``IFFT(√I·e^{iφ})`` with the measured modulus; the support is the shrink-wrap of
the start (σ 2 px, threshold 0.2, no gradient). Loss = the usual losses on the prediction
plus the WCA and the object loss of the *refined* object. Validation logs the agreement of
the prediction and of the K-step refined object (strong class), against the same for the
control ``--refined-weight 0``.

    python benchmarks/research/unrolled_finetune.py --minutes 30 --k 20 --eps 1e-6 \
        --out benchmarks/training/experiments/v3-unrolled-k20-log.jsonl
    python benchmarks/research/unrolled_finetune.py --minutes 25 --k 5 --refined-weight 0.2 \
        --out benchmarks/training/experiments/v3-unrolled-k5-log.jsonl
"""

from __future__ import annotations

import time

import torch
from _probe import finetune_arguments, log_line, optimiser_step, shipped_model_to_finetune


def unrolled_raar(intensity: torch.Tensor, phasor: torch.Tensor, k: int,
                  beta: float = 0.9, eps: float = 0.1) -> torch.Tensor:
    """``k`` differentiable RAAR steps from ``IFFT(√I·phasor)``; returns the object.

    The modulus projection is softened to ``ψ·A/√(|ψ|² + (eps·mean A)²)``: its gradient
    is unbounded where ψ vanishes."""
    from bcdi_stream import physics
    from bcdi_stream.phasing import shrinkwrap_support

    amp = intensity.clamp_min(0).sqrt()
    e2 = (eps * amp.flatten(1).mean(-1)) ** 2
    e2 = e2.reshape(-1, *[1] * (amp.ndim - 1))
    rho = physics.ifft_centered(amp * phasor)
    with torch.no_grad():
        sup = shrinkwrap_support(rho.detach(), 2.0, 0.2)
    for _ in range(k):
        psi = physics.fft_centered(rho)
        p = physics.ifft_centered(psi * (amp * torch.rsqrt(psi.abs() ** 2 + e2)))
        rho = torch.where(sup, p, beta * rho + (1 - 2 * beta) * p)
    return rho * sup


def main() -> None:
    ap = finetune_arguments(__doc__, minutes=30.0, first_sample=80_000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--refined-weight", type=float, default=1.0)
    ap.add_argument("--eps", type=float, default=0.1,
                    help="softening of the modulus projection (fraction of the mean amplitude)")
    args = ap.parse_args()
    from bcdi_stream.model import object_loss, wca_loss_phasor
    from bcdi_stream.model._loss import log_minmax, wca_phasor
    from bcdi_stream.training._datasets import VAL_SEED0, fixed_set, training_batches

    model, opt = shipped_model_to_finetune(args.lr)
    val = [c for _, _, c in fixed_set(VAL_SEED0, {"strong": 6})]

    def validation() -> dict:
        model.eval()
        pred, refined = [], []
        with torch.no_grad():
            for c in val:
                i = c.intensity[None]
                u = model(i)
                w = log_minmax(i)
                pred.append(float(wca_phasor(c.phase_q[None], u, w)[0]))
                r = unrolled_raar(i, u, args.k, eps=args.eps)
                refined.append(float(wca_phasor(c.phase_q[None], model.phasor_of(r), w)[0]))
        model.train()
        return {"wca_strong": round(sum(pred) / len(pred), 4),
                "wca_strong_refined": round(sum(refined) / len(refined), 4)}

    batches = training_batches(args.first_sample, 4, 1_000_000, 0.0, 64,
                               strong_share=args.strong_share)
    t0 = time.perf_counter()
    step = 0
    with open(args.out, "w") as f:
        log_line(f, {"step": 0, **validation()})
        model.train()
        while time.perf_counter() - t0 < 60 * args.minutes:
            b = next(batches)
            obj = model.forward_object(b.intensity)
            u = model.phasor_of(obj)
            w = log_minmax(b.intensity)
            loss = wca_loss_phasor(b.phase_q, u, w) + object_loss(obj, b.obj)
            if args.refined_weight > 0:
                r = unrolled_raar(b.intensity, u, args.k, eps=args.eps)
                loss = loss + args.refined_weight * (
                    wca_loss_phasor(b.phase_q, model.phasor_of(r), w) + object_loss(r, b.obj))
            optimiser_step(model, opt, loss)
            step += 1
            if step % 100 == 0:
                log_line(f, {"step": step, "wall_s": round(time.perf_counter() - t0),
                             "loss": round(float(loss), 4), **validation()})


if __name__ == "__main__":
    main()
