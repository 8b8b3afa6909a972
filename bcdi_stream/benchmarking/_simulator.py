"""Simulator throughput: samples per second at 64³, one at a time and batched, and the
training draws with and without the vertex cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bcdi_stream.arrays import resolve_device


def bench_simulator(
    *, quick: bool = False, device: str | None = None, echo: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Time :func:`simulate_crystal` and :func:`simulate_batch` at 64³ for both strain classes,
    and the training draws (``draw_batch``, one crystal at a time, the four validation
    classes, the same seeds) with the polytope-vertex cache off and on, alternating.

    Returns
    -------
    list of dict
        One row per (mode, strain): samples, seconds, samples per second.
    """
    from bcdi_stream.simulation import simulate_batch, simulate_crystal
    from bcdi_stream.simulation._shapes import set_vertex_cache
    from bcdi_stream.training._datasets import draw_batch

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
    classes = ("weak", "strong", "weak+disl", "medium+disl")
    per_class = 1 if quick else 6
    times = {0: 0.0, 64: 0.0}
    bound = set_vertex_cache(0)
    try:
        for rep in range(1 if quick else 3):
            for size in times:  # alternating, so that both see the same machine
                set_vertex_cache(size)
                t0 = time.perf_counter()
                for cls in classes:
                    for k in range(per_class):
                        draw_batch([(30_000_000 + 10_000 * rep + 100 * k, cls)], 64, dev)
                times[size] += time.perf_counter() - t0
    finally:
        set_vertex_cache(bound)
    samples = len(classes) * per_class * (1 if quick else 3)
    for size, dt in times.items():
        mode = "draws, vertex cache " + ("on" if size else "off")
        rows.append({"mode": mode, "strain": "+".join(classes), "n": 64, "samples": samples,
                     "seconds": round(dt, 3), "samples_per_s": round(samples / dt, 2)})
        echo(f"draw_batch one at a time, {mode}: {samples / dt:.1f} samples/s")
    echo(f"vertex cache: {times[0] / times[64]:.2f}x")
    return rows
