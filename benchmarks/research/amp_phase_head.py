"""From-scratch training with the object read out as amplitude and phase (research probe).

The shipped ``"patterson"`` model writes the object on its 32³ box as (Re ρ, Im ρ). A strongly
strained crystal's ρ then oscillates (its phase wraps two or three times across the crystal),
which a small CNN must draw voxel by voxel. Here the same UNet's two output channels are read
as ρ = softplus(o₀)·exp(i·s·o₁): the network writes a (mostly smooth) phase field instead of
oscillating real and imaginary parts. Everything else is v1's recipe (``train_config`` of
the v1 weights, ``bcdi_stream/model/weights/bcdi-phase-v1.pt``, the same as in v1's training
checkpoint: the same crystals, schedule, losses, validation), so the
learning curve compares step for step with a control trained side by side (``--head reim``).

    python benchmarks/research/amp_phase_head.py --head ampphase --until 1000 \
        --out benchmarks/training/experiments/v4-ampphase
    python benchmarks/research/amp_phase_head.py --head reim --until 1000 \
        --out benchmarks/training/experiments/v4-reim-control

Result (2026-12-02, session 7, docs/MODEL_RESEARCH.md): no gain. At step 1,000 (4,000
crystals, side by side) strong WCA 0.086 vs the control's 0.084 (the two curves cross
throughout, 0.073–0.090), weak 0.44 vs 0.49 (behind all the way). Each run writes
``OUT/log.jsonl``; the two logs are kept as
``benchmarks/training/experiments/v4-ampphase-log.jsonl`` and ``v4-reim-control-log.jsonl``.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", choices=["reim", "ampphase"], required=True)
    ap.add_argument("--scale", type=float, default=3.0, help="s: radians per output unit")
    ap.add_argument("--until", type=int, default=1000, help="stop at this step (resumable)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    from bcdi_stream.model import PhaseModel
    from bcdi_stream.model._phase_model import patterson_features
    from bcdi_stream.training import TrainConfig
    from bcdi_stream.training._loop import train

    if args.head == "ampphase":
        scale = args.scale

        def forward_object(self: PhaseModel, intensity: torch.Tensor,
                           offset: torch.Tensor | None = None) -> torch.Tensor:
            intensity = self._check(intensity)
            out = self.unet(patterson_features(intensity, offset))
            n, q = self.config.grid, self.config.grid // 4
            c = n // 2
            obj = torch.zeros((out.shape[0], n, n, n), dtype=torch.complex64,
                              device=out.device)
            amp = torch.nn.functional.softplus(out[:, 0])
            obj[:, c - q:c + q, c - q:c + q, c - q:c + q] = torch.polar(amp, scale * out[:, 1])
            return obj

        PhaseModel.forward_object = forward_object
    weights = torch.load("bcdi_stream/model/weights/bcdi-phase-v1.pt", map_location="cpu",
                         weights_only=False)
    cfg = TrainConfig.from_dict(weights["meta"]["train_config"])
    train(cfg, args.out, resume=args.resume, until_step=args.until, threads=1, device="cpu")


if __name__ == "__main__":
    main()
