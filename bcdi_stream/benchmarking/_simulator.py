"""Simulator throughput: samples per second at 64³, one at a time and batched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bcdi_stream.arrays import resolve_device


def bench_simulator(
    *, quick: bool = False, device: str | None = None, echo: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Time :func:`simulate_crystal` and :func:`simulate_batch` at 64³ for both strain classes.

    Returns
    -------
    list of dict
        One row per (mode, strain): samples, seconds, samples per second.
    """
    from bcdi_stream.simulation import simulate_batch, simulate_crystal

    dev = resolve_device(device)
    n_single = 4 if quick else 20
    batch = 4 if quick else 16
    rows = []
    for strain in ("weak", "strong"):
        simulate_crystal(0, n=64, strain=strain, device=dev)  # warm-up
        t0 = time.perf_counter()
        for s in range(n_single):
            simulate_crystal(10_000 + s, n=64, strain=strain, device=dev)
        dt = time.perf_counter() - t0
        rows.append({"mode": "single", "strain": strain, "n": 64, "samples": n_single,
                     "seconds": round(dt, 3), "samples_per_s": round(n_single / dt, 2)})
        echo(f"simulate_crystal 64³ {strain}: {n_single / dt:.1f} samples/s")
        t0 = time.perf_counter()
        simulate_batch(list(range(20_000, 20_000 + batch)), n=64, strain=strain, device=dev)
        dt = time.perf_counter() - t0
        rows.append({"mode": f"batch{batch}", "strain": strain, "n": 64, "samples": batch,
                     "seconds": round(dt, 3), "samples_per_s": round(batch / dt, 2)})
        echo(f"simulate_batch({batch}) 64³ {strain}: {batch / dt:.1f} samples/s")
    return rows
