"""Training speed: the network's optimiser step (float32 vs bfloat16 autocast) and the stream
of simulated batches that feeds it (in the training process vs worker processes, with and
without reuse under symmetries)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bcdi_stream.arrays import cpu_bf16_support, resolve_device

#: UNet channels per level timed: the shipped model's and the wider trunk of the GPU recipe.
TRUNKS: tuple[tuple[int, ...], ...] = ((16, 32, 64, 128), (32, 64, 128, 256))


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
    return rows + bench_stream(quick=quick, device=device, echo=echo)


def bench_stream(*, quick: bool = False, device: str | None = None,
                 echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Seconds per batch of :func:`~bcdi_stream.training.training_batches`, four ways.

    In the training process (on ``device``) and from ``cpu_count − 1`` worker processes, each
    with ``reuse`` 1 and 4 (each simulated batch shown under 4 symmetries), on the same
    crystals (batches of 32 at 64³; the first batch of each stream, which starts the workers,
    is not timed). A GPU run needs the stream to keep up with the network's step.

    Returns
    -------
    list of dict
        One row per stream: ``workers``, ``reuse``, seconds per batch and crystals shown per
        second.
    """
    from bcdi_stream.training import training_batches

    dev = resolve_device(device)
    grid, batch, batches = (32, 2, 2) if quick else (64, 32, 8)
    workers = max(1, (os.cpu_count() or 2) - 1)
    rows = []
    for n_workers in (0, workers):
        for reuse in (1, 4):
            stream = training_batches(50_000, batch, 10**6, 0.0, grid, device=dev,
                                      dislocation_probability=0.4, workers=n_workers,
                                      reuse=reuse)
            next(stream)
            t0 = time.perf_counter()
            for _ in range(batches):
                next(stream)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = (time.perf_counter() - t0) / batches
            stream.close()  # stops the workers
            rows.append({"stream": "training_batches", "device": dev.type, "grid": grid,
                         "batch": batch, "workers": n_workers, "reuse": reuse,
                         "batches": batches, "s_per_batch": round(t, 4),
                         "crystals_shown_per_s": round(batch / t, 1)})
            echo(f"stream: {n_workers} workers, reuse {reuse}: {t:.3f} s per batch of {batch} "
                 f"at {grid}³ ({batch / t:.0f} crystals shown per s)")
    return rows
