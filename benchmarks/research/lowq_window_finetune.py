"""Fine-tune the shipped model with the WCA weights windowed to low |q| (research probe).

The refinement finishes the strong class once the phase is right out to |q| ≈ 24 px
(``oracle_lowq.py --validation``), while the log-intensity weights put most of the loss
beyond 16 px. This fine-tune multiplies the weights by ``exp(-|q|²/2qw²)`` (object loss
unchanged) and logs the validation agreement per |q| shell every 100 steps, to compare with
the unwindowed control ``benchmarks/training/experiments/v3-continue-log.jsonl``.

    python benchmarks/research/lowq_window_finetune.py --qw 12 --minutes 45 --strong-share 0.75 \
        --out benchmarks/training/experiments/v3-lowq-window-log.jsonl

Result (2026-12-02, docs/MODEL_RESEARCH.md session 5): flat, within the control's band.
"""

from __future__ import annotations

from typing import Any

import torch
from _probe import finetune_arguments, shipped_model_to_finetune, timed_finetune


def main() -> None:
    ap = finetune_arguments(__doc__, minutes=45.0, first_sample=40_000)
    ap.add_argument("--qw", type=float, default=12.0, help="window width (px)")
    args = ap.parse_args()
    from bcdi_stream.model import object_loss, wca_loss_phasor
    from bcdi_stream.model._loss import log_minmax

    model, opt = shipped_model_to_finetune(args.lr)
    g = torch.meshgrid(*[torch.arange(64) - 32 for _ in range(3)], indexing="ij")
    window = torch.exp(-sum(x.float() ** 2 for x in g) / (2 * args.qw ** 2))

    def loss_of(model: Any, b: Any) -> torch.Tensor:
        obj = model.forward_object(b.intensity)
        return (wca_loss_phasor(b.phase_q, model.phasor_of(obj),
                                log_minmax(b.intensity) * window)
                + object_loss(obj, b.obj))

    with open(args.out, "w") as f:
        timed_finetune(model, opt, args, loss_of, f)

if __name__ == "__main__":
    main()
