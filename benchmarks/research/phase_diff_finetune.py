"""Fine-tune the shipped model with a phase-difference (local strain) loss (research probe).

For a strongly strained crystal the object loss ``1 − |⟨p, t⟩|²/‖p‖²‖t‖²`` needs the phase
right to ≪ 1 rad over the whole crystal before its gradient says much. The phase-difference
loss compares the *difference objects* ``d(r) = ρ(r)·ρ*(r + e)`` (e one voxel along z, y, x)
instead: it needs only the local phase gradient right to ≪ 1 rad/voxel — what the diffraction
pattern encodes locally (stationary phase: the intensity at q comes from where ∇φ = q). It is
invariant to a global phase and to a phase ramp; twin-min like the object loss.

    python benchmarks/research/phase_diff_finetune.py --minutes 40 --weight 1 \
        --out benchmarks/training/experiments/v3-phase-diff-log.jsonl

Compare the per-shell validation agreement with the plain control
``benchmarks/training/experiments/v3-continue-log.jsonl``.
"""

from __future__ import annotations

import time

import torch
from _probe import finetune_arguments, log_line, optimiser_step, shipped_model_to_finetune


def difference_objects(obj: torch.Tensor) -> list[torch.Tensor]:
    """``ρ(r)·ρ*(r + e)`` for the unit steps e along the last three axes (periodic)."""
    return [obj * torch.roll(obj, -1, dims=d).conj() for d in (-3, -2, -1)]


def phase_difference_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean over the three axes of ``1 − |⟨d_p, d_t⟩| / (‖d_p‖ ‖d_t‖)``, twin-min, batch mean."""
    from bcdi_stream.model._loss import twin_object

    dp = difference_objects(pred)
    out = []
    for t in (true, twin_object(true)):
        acc = 0.0
        for a, b in zip(dp, difference_objects(t.to(pred.dtype)), strict=True):
            a, b = a.flatten(1), b.flatten(1)
            num = (a.conj() * b).sum(-1).abs()
            den = (a.abs() ** 2).sum(-1).sqrt() * (b.abs() ** 2).sum(-1).sqrt()
            acc = acc + (1 - num / den.clamp_min(1e-20))
        out.append(acc / 3)
    return torch.minimum(out[0], out[1]).mean()


def main() -> None:
    ap = finetune_arguments(__doc__, minutes=40.0, first_sample=60_000)
    ap.add_argument("--weight", type=float, default=1.0, help="phase-difference loss weight")
    args = ap.parse_args()
    from bcdi_stream.model import object_loss, wca_loss_phasor
    from bcdi_stream.model._loss import log_minmax
    from bcdi_stream.training._datasets import VAL_SEED0, fixed_set, training_batches
    from bcdi_stream.training._loop import validate

    model, opt = shipped_model_to_finetune(args.lr)
    val = list(fixed_set(VAL_SEED0, {"weak": 6, "strong": 6}))

    def diff_agreement() -> float:
        with torch.no_grad():
            objs = [model.forward_object(c.intensity[None])[0] for n, _, c in val if n == "strong"]
            trues = [c.obj for n, _, c in val if n == "strong"]
            return 1 - float(phase_difference_loss(torch.stack(objs), torch.stack(trues)))

    batches = training_batches(args.first_sample, 4, 1_000_000, 0.0, 64,
                               strong_share=args.strong_share)
    t0 = time.perf_counter()
    step = 0
    with open(args.out, "w") as f:
        model.eval()
        log_line(f, {"step": 0, **validate(model, val),
                     "diff_strong": round(diff_agreement(), 4)})
        model.train()
        while time.perf_counter() - t0 < 60 * args.minutes:
            b = next(batches)
            obj = model.forward_object(b.intensity)
            u = model.phasor_of(obj)
            pd = phase_difference_loss(obj, b.obj)
            loss = (wca_loss_phasor(b.phase_q, u, log_minmax(b.intensity))
                    + object_loss(obj, b.obj) + args.weight * pd)
            optimiser_step(model, opt, loss)
            step += 1
            if step % 100 == 0:
                rec = validate(model, val)  # restores the training mode
                log_line(f, {"step": step, "wall_s": round(time.perf_counter() - t0),
                             "loss": round(float(loss), 4), "pd": round(float(pd), 4),
                             **rec, "diff_strong": round(diff_agreement(), 4)})


if __name__ == "__main__":
    main()
