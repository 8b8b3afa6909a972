"""Speed benchmarks behind ``bcdi-stream benchmark`` (numbers for docs/BENCHMARKS.md).

Each benchmark returns JSON-able dicts; comparisons are measured side by side in one process
(ratios), because shared machines are noisy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bcdi_stream.benchmarking._machine import machine_info

__all__ = ["BENCHMARKS", "machine_info", "run"]

#: Names accepted by :func:`run`.
BENCHMARKS: tuple[str, ...] = ("iteration", "simulator", "conventional", "training", "model")


def run(
    name: str,
    *,
    quick: bool = False,
    device: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """Run one benchmark by name.

    Parameters
    ----------
    name : {"iteration", "simulator", "conventional", "training", "model"}
        Which benchmark.
    quick : bool
        Smaller settings for a smoke run (figures not for the record).
    device : str, optional
        Compute device (default: auto).
    echo : callable, optional
        Receives human-readable progress lines.
    """
    echo = echo or (lambda s: None)
    if name == "iteration":
        from bcdi_stream.benchmarking._iteration import bench_iteration

        return bench_iteration(quick=quick, device=device, echo=echo)
    if name == "simulator":
        from bcdi_stream.benchmarking._simulator import bench_simulator

        return bench_simulator(quick=quick, device=device, echo=echo)
    if name == "conventional":
        from bcdi_stream.benchmarking._conventional import bench_conventional

        return bench_conventional(quick=quick, device=device, echo=echo)
    if name == "training":
        from bcdi_stream.benchmarking._training import bench_training

        return bench_training(quick=quick, device=device, echo=echo)
    if name == "model":
        from bcdi_stream.benchmarking._model import bench_model

        return bench_model(quick=quick, device=device, echo=echo)
    raise ValueError(f"name must be one of {', '.join(BENCHMARKS)}, got {name!r}")
