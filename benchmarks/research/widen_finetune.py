"""Is the strong class capacity-limited? Widen the shipped model, fine-tune (research probe).

Every CPU fine-tune since v2 left the strong validation agreement in the same band (WCA
0.14–0.18), and the research log put it down to capacity. This probe tests that directly: the
shipped model's levels are widened by ``--factor`` (default: the 32³ level, 16 → 32 channels)
*function-preservingly* (Net2Net: each new channel copies an old one; the layers that read it
share the old weight among the copies with an antisymmetric split ``1/k ± ε`` so that the
copies train apart while the output stays exactly the shipped model's), then fine-tuned on
fresh crystals with the other fine-tune probes' options. ``--factor 1`` is the side-by-side
control (the shipped model, same crystals, same steps).

    python benchmarks/research/widen_finetune.py --levels 0 1 --factor 2 --minutes 60 \
        --out benchmarks/training/experiments/v4-widen01x2-log.jsonl
    python benchmarks/research/widen_finetune.py --factor 1 --minutes 60 \
        --out benchmarks/training/experiments/v4-widen-control-log.jsonl

Result (2026-12-02, session 7, docs/MODEL_RESEARCH.md): flat. Strong WCA over steps 100–800
(3,200 crystals) mean 0.165 (0.143–0.179) against the control's 0.163 (0.145–0.181).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from _probe import finetune_arguments, shipped_model_to_finetune, timed_finetune
from torch import nn


def _index(old: int, new: int, c: int, k: int) -> tuple[torch.Tensor, bool]:
    """Source index of each new entry along a dim of ``old`` → ``new`` entries, and whether
    the dim was widened (a level of ``c`` channels widened ``k`` times; a dim may hold that
    level once, twice (a decoder concatenation) or once followed by the 6 input features)."""
    if new == old:
        return torch.arange(old), False
    rep = torch.arange(k * c) % c
    if old == c and new == k * c:
        return rep, True
    if old == 2 * c and new == 2 * k * c:
        return torch.cat([rep, c + rep]), True
    if new - k * c == old - c:
        return torch.cat([rep, torch.arange(c, old)]), True
    raise ValueError(f"cannot map a dim of {old} to {new} entries")


def widen(src: nn.Module, level: int, factor: int, eps: float, seed: int) -> nn.Module:
    """The shipped ``PhaseModel`` with one ``level`` widened ``factor`` times, same function
    (one level at a time: two levels' concatenations could not be told apart by shape)."""
    from bcdi_stream.model import PhaseModel

    cfg = src.config
    ch = list(cfg.unet.channels)
    c = ch[level]
    ch[level] *= factor
    new_cfg = dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, channels=tuple(ch)))
    dst = PhaseModel(new_cfg)
    gen = torch.Generator().manual_seed(seed)
    old_mods = dict(src.named_modules())
    with torch.no_grad():
        for name, m in dst.named_modules():
            if not isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d)):
                continue
            o = old_mods[name]
            w = o.weight.detach().clone()
            b = None if o.bias is None else o.bias.detach().clone()
            if isinstance(m, nn.InstanceNorm3d):
                idx, _ = _index(w.shape[0], m.weight.shape[0], c, factor)
                w, b = w[idx], b[idx]
                m.weight.copy_(w)
                m.bias.copy_(b)
                continue
            out_dim, in_dim = (0, 1) if isinstance(m, nn.Conv3d) else (1, 0)
            idx, wide = _index(w.shape[out_dim], m.weight.shape[out_dim], c, factor)
            if wide:
                w = w.index_select(out_dim, idx)
                if b is not None:
                    b = b[idx]
            idx, wide = _index(w.shape[in_dim], m.weight.shape[in_dim], c, factor)
            if wide:
                w = w.index_select(in_dim, idx)
                # the copies of one old channel share its weight: 1/k ± ε, summing to 1
                split = torch.full((len(idx),), 1.0)
                counts = torch.bincount(idx)
                for src_ch in torch.nonzero(counts > 1).flatten():
                    pos = torch.nonzero(idx == src_ch).flatten()
                    d = eps * torch.randn(len(pos), generator=gen)
                    split[pos] = 1.0 / len(pos) + (d - d.mean())
                shape = [1] * w.ndim
                shape[in_dim] = len(idx)
                w = w * split.view(shape)
            m.weight.copy_(w)
            if b is not None:
                m.bias.copy_(b)
    return dst


def main() -> None:
    ap = finetune_arguments(__doc__, minutes=80.0, first_sample=60_000)
    ap.add_argument("--levels", type=int, nargs="+", default=[0],
                    help="levels to widen, one after the other")
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--eps", type=float, default=0.1, help="antisymmetric split of the copies")
    args = ap.parse_args()
    from bcdi_stream.model import count_parameters, object_loss, wca_loss_phasor
    from bcdi_stream.model._loss import log_minmax
    from bcdi_stream.training._datasets import VAL_SEED0, fixed_set

    model, opt = shipped_model_to_finetune(args.lr)
    if args.factor > 1:
        base = model
        model = base.to(memory_format=torch.contiguous_format)
        for k, level in enumerate(args.levels):
            model = widen(model, level, args.factor, args.eps, seed=k)
        model = model.to(memory_format=torch.channels_last_3d)
        model.train()
        _, _, check = next(iter(fixed_set(VAL_SEED0, {"weak": 1})))
        x = check.intensity[None]
        with torch.no_grad():
            base.eval()
            model.eval()
            diff = (model.forward_object(x) - base.forward_object(x)).abs().max()
            ref = base.forward_object(x).abs().max()
        print(f"widened: {count_parameters(base)} -> {count_parameters(model)} parameters, "
              f"max |Δρ| / max |ρ| = {float(diff / ref):.2e}", flush=True)
        model.train()
        del base
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    def loss_of(model: Any, b: Any) -> torch.Tensor:
        obj = model.forward_object(b.intensity)
        return (wca_loss_phasor(b.phase_q, model.phasor_of(obj), log_minmax(b.intensity))
                + object_loss(obj, b.obj))

    with open(args.out, "w") as f:
        step = timed_finetune(model, opt, args, loss_of, f, log_start=True)
        if args.factor > 1:
            torch.save({"model_config": model.config.to_dict(), "state_dict": model.state_dict(),
                        "step": step}, args.out.replace("-log.jsonl", ".pt"))


if __name__ == "__main__":
    main()
