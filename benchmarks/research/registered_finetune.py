"""Fine-tune with the target moved to where the model put the crystal (research probe).

The losses (WCA on φ(q), the real-space object loss) are not translation invariant, while
phasing is: a start shifted by d voxels refines to the same crystal shifted by d. The shipped
v3 places strong crystals up to ~1.4 voxels off the truth's convention (amplitude centroid on
N // 2), which costs agreement at high |q| (a ramp of 2π·|q|·d/N) that the refinement would
not miss. Here each target (phase and object, and their twins) is first moved by the sub-voxel
shift, within ``--register`` voxels per axis, that best matches the prediction
(:func:`register_targets`), so the loss is spent on what the refinement needs.

Two runs side by side on the same crystals from the shipped weights (batch 4, one thread each,
bfloat16 autocast, lr 5e-4):

    python benchmarks/research/registered_finetune.py --register 0 --minutes 35 --out runs/s15-plain
    python benchmarks/research/registered_finetune.py --register 2 --minutes 35 --out runs/s15-reg

``--qw W`` windows the WCA weights to low |q| (``exp(-|q|²/2W²)``, as
``lowq_window_finetune.py``; the object loss and the logged validation are unchanged):

    python benchmarks/research/registered_finetune.py --qw 12 --minutes 35 --out runs/s15-qw12

Each writes ``log.jsonl`` (every 100 steps: plain and registered WCA on 6 weak + 6 strong
validation crystals) and ``weights.pt`` (weights to score with ``model_side_by_side.py``).
Results: docs/MODEL_RESEARCH.md, session 15.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from _probe import finetune_arguments, log_line, optimiser_step, shipped_model_to_finetune


def _ramp(shape: tuple[int, ...], d: torch.Tensor) -> torch.Tensor:
    """``2π q·d / N`` on centred grids, ``d`` ``(B, 3)`` → ``(B, z, y, x)``."""
    n = shape[-1]
    q = torch.arange(n, dtype=torch.float32, device=d.device) - n // 2
    return 2 * math.pi * (d[:, 0, None, None, None] * q[:, None, None]
                          + d[:, 1, None, None, None] * q[None, :, None]
                          + d[:, 2, None, None, None] * q[None, None, :]) / n


def _peak(c: torch.Tensor, max_shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-voxel argmax of ``|Σ_q c(q) e^{2πi q·d/N}|`` over ``|d_i| ≤ max_shift``:
    ``(d, value)``."""
    b, n = c.shape[0], c.shape[-1]
    corr = torch.fft.ifftn(torch.fft.ifftshift(c, dim=(-3, -2, -1)), dim=(-3, -2, -1)).abs()
    k = torch.arange(n, device=c.device)
    signed = torch.where(k < n // 2, k, k - n)
    far = signed.abs() > math.floor(max_shift)
    corr = corr.masked_fill(far[:, None, None] | far[None, :, None] | far[None, None, :], -1.0)
    flat = corr.flatten(1).argmax(1)
    idx = torch.stack([flat // (n * n), (flat // n) % n, flat % n], 1)
    d = signed[idx].to(torch.float32)
    bi = torch.arange(b, device=c.device)
    for ax in range(3):  # parabola through the peak and its two neighbours on each axis
        def at(off: int, ax: int = ax) -> torch.Tensor:
            j = idx.clone()
            j[:, ax] = (j[:, ax] + off) % n
            return corr[bi, j[:, 0], j[:, 1], j[:, 2]].clamp_min(0)
        lo, mid, hi = at(-1), at(0), at(1)
        den = lo - 2 * mid + hi
        d[:, ax] += torch.where(den < 0, 0.5 * (lo - hi) / den.where(den < 0, -1.0), 0.0)
    return d.clamp(-max_shift, max_shift), corr.flatten(1).amax(1)


@torch.no_grad()
def best_shift(phi_true: torch.Tensor, phasor_pred: torch.Tensor, weights: torch.Tensor,
               max_shift: float) -> torch.Tensor:
    """The shift ``d`` ``(B, 3)`` (voxels, within ``max_shift`` per axis) for which the target
    ``φt + 2π q·d/N``, or for the twin ``−φt − 2π q·d/N`` (its twin moved by ``−d``), best
    matches the prediction: the truth is to be moved by ``−d``."""
    w = weights / weights.flatten(1).sum(-1).clamp_min(1e-12)[:, None, None, None]
    e = torch.polar(torch.ones_like(phi_true), phi_true)
    d1, v1 = _peak(w * e * phasor_pred.conj(), max_shift)
    d2, v2 = _peak(w * e.conj() * phasor_pred.conj(), max_shift)
    # direct: φt + 2π q·d/N matches φp; twin: −φt + 2π q·d/N does, i.e. φt − 2π q·d/N
    return torch.where((v1 >= v2)[:, None], d1, -d2)


@torch.no_grad()
def move_targets(phi_true: torch.Tensor, obj_true: torch.Tensor | None, d: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The targets moved by ``−d`` (``d`` from :func:`best_shift`): ``φt + 2π q·d/N`` and the
    object translated to match (:func:`bcdi_stream.physics.fourier_shift`)."""
    ramp = _ramp(tuple(phi_true.shape), d)
    phi = torch.remainder(phi_true + ramp + math.pi, 2 * math.pi) - math.pi
    obj = None
    if obj_true is not None:
        from bcdi_stream import physics

        obj = physics.fourier_shift(obj_true, -d).to(obj_true.dtype)
    return phi, obj


def register_targets(phi_true: torch.Tensor, obj_true: torch.Tensor | None,
                     phasor_pred: torch.Tensor, weights: torch.Tensor, max_shift: float
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Move each target by the shift (within ``max_shift`` voxels per axis) that best matches
    the prediction, for whichever of the target and its twin matches it better
    (:func:`best_shift`, :func:`move_targets`).

    Returns the moved ``(phi_true, obj_true)``; the twin-min losses then score them as usual.
    """
    return move_targets(phi_true, obj_true,
                        best_shift(phi_true, phasor_pred, weights, max_shift))


def main() -> None:
    ap = finetune_arguments(__doc__, minutes=35, first_sample=9_000_000)
    ap.add_argument("--register", type=float, default=0.0,
                    help="largest shift per axis in voxels (0: the plain losses)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--qw", type=float, default=0.0,
                    help="window the WCA weights by exp(-|q|²/2qw²) (px; 0: no window)")
    args = ap.parse_args()
    from bcdi_stream.model import export_weights, object_loss, wca_loss_phasor
    from bcdi_stream.model._loss import log_minmax, wca_phasor
    from bcdi_stream.training._datasets import VAL_SEED0, fixed_set, training_batches
    from bcdi_stream.training._loop import validate

    model, opt = shipped_model_to_finetune(args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    val = list(fixed_set(VAL_SEED0, {"weak": 6, "strong": 6}))
    window = None
    if args.qw > 0:
        q = torch.arange(64, dtype=torch.float32) - 32
        q2 = q[:, None, None] ** 2 + q[None, :, None] ** 2 + q[None, None, :] ** 2
        window = torch.exp(-q2 / (2 * args.qw ** 2))

    def registered_wca() -> dict[str, float]:
        was = model.training
        model.eval()
        by: dict[str, list[float]] = {}
        with torch.no_grad():
            for name, _seed, c in val:
                i = c.intensity[None]
                u = model(i)
                w = log_minmax(i)
                phi, _ = register_targets(c.phase_q[None], None, u, w, 2.0)
                by.setdefault(name, []).append(float(wca_phasor(phi, u, w)[0]))
        model.train(was)
        return {f"wca_reg_{k}": round(sum(v) / len(v), 4) for k, v in by.items()}

    def loss_of(batch) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            obj = model.forward_object(batch.intensity)
        u = model.phasor_of(obj)
        w = log_minmax(batch.intensity)
        phi, obj_t = batch.phase_q, batch.obj
        if window is not None:
            w = w * window
        if args.register > 0:
            phi, obj_t = register_targets(phi, obj_t, u.detach(), w, args.register)
        return wca_loss_phasor(phi, u, w) + object_loss(obj, obj_t)

    batches = training_batches(args.first_sample, 4, 1_000_000, 0.0, 64,
                               strong_share=args.strong_share)
    with open(out / "log.jsonl", "w") as f:
        log_line(f, {"step": 0, "wall_s": 0, **validate(model, val), **registered_wca()})
        t0, step = time.perf_counter(), 0
        while time.perf_counter() - t0 < 60 * args.minutes:
            optimiser_step(model, opt, loss_of(next(batches)))
            step += 1
            if step % 100 == 0:
                log_line(f, {"step": step, "wall_s": round(time.perf_counter() - t0),
                             **validate(model, val), **registered_wca()})
    model.eval()
    export_weights({"state_dict": model.state_dict(),
                    "model_config": model.config.to_dict(), "step": step},
                   out / "weights.pt", half=False)
    print(json.dumps({"steps": step, "out": str(out / "weights.pt")}))


if __name__ == "__main__":
    main()
