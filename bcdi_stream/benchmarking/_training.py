"""Training step time: the network's optimiser step in float32 and under bfloat16 autocast."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bcdi_stream.arrays import resolve_device

#: UNet channels per level timed: the shipped model's and the wider trunk of the GPU recipe.
TRUNKS: tuple[tuple[int, ...], ...] = ((16, 32, 64, 128), (32, 64, 128, 256))


def cpu_bf16_support() -> list[str]:
    """The CPU flags that make bfloat16 convolutions fast (AMX, AVX-512 BF16), if any."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in flags if f in ("amx_bf16", "avx512_bf16"))


def bench_training(*, quick: bool = False, device: str | None = None,
                   echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Seconds per optimiser step (batch of 4 at 64³) for each trunk in each precision.

    Both precisions train copies of the same initial weights on the same batch, their steps
    interleaved, so that the ratio is measured side by side; the simulation of fresh crystals
    (≈ 0.2–0.45 s per batch of 4 on one CPU core) is not included.

    Returns
    -------
    list of dict
        One row per (trunk, precision): parameters, median seconds per step, and for
        ``bf16`` the speed-up over ``fp32``.
    """
    from bcdi_stream.model import ModelConfig, PhaseModel, UNetConfig
    from bcdi_stream.training import PRECISIONS, Batch, TrainConfig, batch_losses, draw_batch

    dev = resolve_device(device)
    grid, trunks, steps = (32, ((4, 8),), 2) if quick else (64, TRUNKS, 6)
    classes = ["weak", "strong"] * 2
    batch = Batch.of(draw_batch([(10_000 + k, c) for k, c in enumerate(classes)], grid, dev),
                     classes)
    rows = []
    for channels in trunks:
        model_cfg = ModelConfig(grid=grid, unet=UNetConfig(channels=channels))
        torch.manual_seed(0)
        first = PhaseModel(model_cfg)
        runs = {}
        for precision in PRECISIONS:
            model = PhaseModel(model_cfg)
            model.load_state_dict(first.state_dict())
            model = model.to(dev).to(memory_format=torch.channels_last_3d).train()
            runs[precision] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4),
                               TrainConfig(model=model_cfg, precision=precision), [])
        for step in range(steps + 1):
            for model, opt, cfg, times in runs.values():
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                loss = batch_losses(model, batch, cfg)[0]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if step:  # the first step warms up
                    times.append(time.perf_counter() - t0)
        params = sum(p.numel() for p in first.parameters())
        t32 = statistics.median(runs["fp32"][3])
        for precision, (_, _, _, times) in runs.items():
            t = statistics.median(times)
            row = {"channels": list(channels), "parameters": params, "grid": grid,
                   "batch": len(batch.seeds), "precision": precision,
                   "median_s_per_step": round(t, 4), "steps": len(times)}
            if precision == "bf16":
                row["speedup_vs_fp32"] = round(t32 / t, 2)
                row["cpu_bf16_flags"] = cpu_bf16_support() if dev.type == "cpu" else None
            rows.append(row)
            echo(f"trunk {'-'.join(map(str, channels))} ({params:,} parameters) {precision}: "
                 f"{t:.3f} s per step of {len(batch.seeds)} at {grid}³")
    return rows
