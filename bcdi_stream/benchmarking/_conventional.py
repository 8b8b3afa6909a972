"""Wall time of the conventional recipe per 64³ scan: the baseline of every speed claim."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bcdi_stream.arrays import resolve_device
from bcdi_stream.config import PhasingSettings

#: Seeds of the benchmark crystals (disjoint from tests and, later, training).
BENCH_SEEDS: tuple[int, ...] = (900_001, 900_002, 900_003)


def bench_conventional(
    *, quick: bool = False, device: str | None = None, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the PyNX-style recipe (20 runs, RAAR 600 + ER 200) on weak 64³ crystals.

    Returns
    -------
    dict
        Settings, per-crystal wall time, LLK and phase RMSE vs ground truth, and the mean time
        per scan.
    """
    from bcdi_stream.analysis import compare
    from bcdi_stream.phasing import run_conventional
    from bcdi_stream.simulation import simulate_crystal

    dev = resolve_device(device)
    settings = PhasingSettings()
    seeds = BENCH_SEEDS
    if quick:
        settings = settings.model_copy(update={"runs": 4, "n_raar": 100, "n_er": 50})
        seeds = seeds[:1]
    rows = []
    for seed in seeds:
        c = simulate_crystal(seed, n=64, strain="weak", device=dev)
        t0 = time.perf_counter()
        res = run_conventional(c.intensity, c.mask, settings=settings, seed=seed, device=dev)
        if dev.type == "cuda":
            import torch

            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t0
        m = compare(res.obj.cpu(), c.obj.cpu(), c.support.cpu(), recon_support=res.support.cpu())
        rows.append({"seed": seed, "seconds": round(dt, 2), "llk": round(float(res.llk), 4),
                     "phase_rmse": round(float(m.phase_rmse), 4),
                     "support_iou": round(float(m.support_iou), 3), "success": bool(m.success)})
        echo(f"seed {seed}: {dt:.1f} s, LLK {float(res.llk):.3f}, "
             f"phase RMSE {float(m.phase_rmse):.3f} rad")
    mean = sum(r["seconds"] for r in rows) / len(rows)
    return {"settings": settings.model_dump(), "device": str(dev), "crystals": rows,
            "seconds_per_scan": round(mean, 2)}
