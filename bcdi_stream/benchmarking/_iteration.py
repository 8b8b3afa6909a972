"""Cost of one phasing iteration against the FFT pair it cannot avoid.

One ER iteration is ``fftn -> modulus projection -> ifftn -> support projection``; the FFT
pair (``torch.fft.fftn`` + ``torch.fft.ifftn`` of the same grid on the same device) is its
floor. This benchmark measures, interleaved and side by side in one process:

* the FFT pair, an ER iteration (fused compiled kernels and eager), a RAAR iteration, and the
  ratios to the FFT pair;
* the time per run of a batch of ``B`` runs iterated together vs the same runs one after
  another (sequential).

Each sample runs one untimed iteration (warm caches, as in a real run where iterations follow
each other) and then times ``iters`` iterations; the cases are interleaved round-robin and the
headline figure is the minimum over ``repeats`` samples (robust to other processes sharing the
CPU); medians are reported too.

Run ``bcdi-stream benchmark iteration`` or ``python benchmarks/bench_iteration.py --help``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from bcdi_stream.arrays import resolve_device
from bcdi_stream.phasing._engine import Engine
from bcdi_stream.phasing._kernels import Kernels, prepare_measured
from bcdi_stream.physics import SPATIAL_DIMS, fft_centered

__all__ = ["run"]


def _problem(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A crystal-like test problem: ellipsoid of ~N/2 with a smooth phase, and its intensity."""
    ax = torch.arange(n, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    r = n / 4.4
    shape = (z / r) ** 2 + (y / (0.85 * r)) ** 2 + (x / (0.95 * r)) ** 2 <= 1.0
    phase = 1.5 * torch.sin(2 * torch.pi * x / n) + 0.7 * (z / r) ** 2
    obj = torch.polar(shape.float(), phase * shape)
    intensity = fft_centered(obj).abs() ** 2
    intensity *= 1e9 / intensity.sum()
    gen = torch.Generator().manual_seed(seed)
    intensity = torch.poisson(intensity, generator=gen)
    support = torch.nn.functional.max_pool3d(
        shape.float()[None, None], kernel_size=3, stride=1, padding=1
    )[0, 0].bool()
    return intensity.to(device), support.to(device)


def _engine(
    intensity: torch.Tensor, support: torch.Tensor, runs: int, compiled: bool, seed: int = 0
) -> Engine:
    meas = prepare_measured(intensity, None)
    gen = torch.Generator().manual_seed(seed)
    shape = (runs, *intensity.shape)
    rho = torch.polar(
        torch.rand(shape, generator=gen), 2 * torch.pi * torch.rand(shape, generator=gen)
    ).to(intensity.device)
    sup = support.expand(shape).contiguous()
    rho *= sup
    return Engine(meas, rho, sup, Kernels(intensity.device, compiled))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(fn: Callable[[int], object], iters: int, device: torch.device) -> float:
    fn(1)  # warm-up iteration, untimed
    _sync(device)
    t0 = time.perf_counter()
    fn(iters)
    _sync(device)
    return time.perf_counter() - t0


def _interleaved(
    cases: dict[str, Callable[[int], object]], repeats: int, iters: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """(min, median) seconds of ``iters`` iterations of each case, measured round-robin."""
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in cases.items():
            samples[k].append(_timer(fn, iters, device))
    return {k: (min(v), statistics.median(v)) for k, v in samples.items()}


def run(
    sizes: Sequence[int] = (64, 128),
    batch: Sequence[int] = (1, 4, 20),
    repeats: int = 25,
    iters: int = 3,
    device: str | torch.device | None = "cpu",
    compile: bool = True,
    threads: int | None = None,
) -> list[dict]:
    """Measure iteration costs; returns one dict per measurement.

    Parameters
    ----------
    sizes : sequence of int
        Cubic grid edges.
    batch : sequence of int
        Batch sizes for the batched-vs-sequential comparison.
    repeats : int
        Interleaved samples per case (the minimum is the headline figure); the batch
        comparison uses a third of them (at least 3).
    iters : int
        Iterations per sample.
    device : str or torch.device, optional
        Compute device (``None``: auto).
    compile : bool
        Use the fused compiled kernels for the headline ER/RAAR and batch figures.
    threads : int, optional
        torch CPU threads for the measurement (restored afterwards); default: unchanged.

    Returns
    -------
    list of dict
        ``kind="iteration"`` rows: ``size``, ``fft_pair_ms``, ``er_ms``, ``er_ratio``,
        ``er_eager_ms``, ``er_eager_ratio``, ``raar_ms``, ``raar_ratio`` (+ medians);
        ``kind="batch"`` rows: ``size``, ``batch``, ``batched_per_run_ms``,
        ``sequential_per_run_ms``, ``speedup``.
    """
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with torch.no_grad():
            return _run(sizes, batch, repeats, iters, resolve_device(device), compile)
    finally:
        torch.set_num_threads(old_threads)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return float("nan")


def _run(
    sizes: Sequence[int],
    batch: Sequence[int],
    repeats: int,
    iters: int,
    dev: torch.device,
    compile: bool,
) -> list[dict]:
    rows: list[dict] = []
    for n in sizes:
        intensity, support = _problem(int(n), dev)
        x = torch.randn(intensity.shape, dtype=torch.complex64, device=dev)

        def pair(k: int, x: torch.Tensor = x) -> None:
            for _ in range(k):
                torch.fft.ifftn(torch.fft.fftn(x, dim=SPATIAL_DIMS), dim=SPATIAL_DIMS)

        e_c = _engine(intensity, support, 1, compile)
        e_e = _engine(intensity, support, 1, False)
        r_c = _engine(intensity, support, 1, compile)
        cases = {
            "pair": pair,
            "er": lambda k, e=e_c: e.iterate("ER", k),
            "er_eager": lambda k, e=e_e: e.iterate("ER", k),
            "raar": lambda k, e=r_c: e.iterate("RAAR", k),
        }
        t = _interleaved(cases, repeats, iters, dev)
        ms = {k: (v[0] / iters * 1e3, v[1] / iters * 1e3) for k, v in t.items()}
        rows.append(
            {
                "kind": "iteration",
                "size": int(n),
                "device": str(dev),
                "threads": torch.get_num_threads(),
                "compiled": e_c.kernels.compiled,
                "fft_pair_ms": ms["pair"][0],
                "er_ms": ms["er"][0],
                "er_ratio": ms["er"][0] / ms["pair"][0],
                "er_eager_ms": ms["er_eager"][0],
                "er_eager_ratio": ms["er_eager"][0] / ms["pair"][0],
                "raar_ms": ms["raar"][0],
                "raar_ratio": ms["raar"][0] / ms["pair"][0],
                "fft_pair_ms_median": ms["pair"][1],
                "er_ms_median": ms["er"][1],
                "er_ratio_median": ms["er"][1] / ms["pair"][1],
                "load_average": _load(),
            }
        )
        del e_c, e_e, r_c
        for b in batch:
            b = int(b)
            batched = _engine(intensity, support, b, compile)
            singles = [_engine(intensity, support, 1, compile, seed=i) for i in range(b)]

            def sequential(k: int, engines: list[Engine] = singles) -> None:
                for e in engines:
                    e.iterate("ER", k)

            t = _interleaved(
                {"batched": lambda k, e=batched: e.iterate("ER", k), "sequential": sequential},
                max(3, repeats // 3),
                iters,
                dev,
            )
            per_b = t["batched"][0] / (b * iters) * 1e3
            per_s = t["sequential"][0] / (b * iters) * 1e3
            rows.append(
                {
                    "kind": "batch",
                    "size": int(n),
                    "batch": b,
                    "block": batched.blocks[0][1] - batched.blocks[0][0],
                    "batched_per_run_ms": per_b,
                    "sequential_per_run_ms": per_s,
                    "speedup": per_s / per_b,
                    "load_average": _load(),
                }
            )
            del batched, singles
    return rows


def bench_iteration(
    *, quick: bool = False, device: str | None = None, echo: Callable[[str], None] = print
) -> list[dict]:
    """``bcdi-stream benchmark iteration``: :func:`run` with the recorded settings.

    ``quick`` uses 64³ only, batch (1, 4) and 5 repeats (a smoke run, not for the record).
    """
    if quick:
        rows = run(sizes=(64,), batch=(1, 4), repeats=5, device=device or "cpu")
    else:
        rows = run(sizes=(32, 64, 128), device=device or "cpu")
    _print(rows, echo)
    return rows


def _print(rows: list[dict], echo: Callable[[str], None] = print) -> None:
    for r in rows:
        if r["kind"] == "iteration":
            echo(
                f"{r['size']:>4}^3 {r['device']} threads={r['threads']} compiled={r['compiled']}: "
                f"FFT pair {r['fft_pair_ms']:.3f} ms | ER {r['er_ms']:.3f} ms "
                f"(x{r['er_ratio']:.3f}; median x{r['er_ratio_median']:.3f}) | "
                f"ER eager {r['er_eager_ms']:.3f} ms (x{r['er_eager_ratio']:.3f}) | "
                f"RAAR {r['raar_ms']:.3f} ms (x{r['raar_ratio']:.3f}) "
                f"[load {r['load_average']:.2f}]"
            )
        else:
            echo(
                f"{r['size']:>4}^3 batch {r['batch']:>3} (block {r['block']}): "
                f"batched {r['batched_per_run_ms']:.3f} ms/run-iteration, "
                f"sequential {r['sequential_per_run_ms']:.3f} -> speedup x{r['speedup']:.3f} "
                f"[load {r['load_average']:.2f}]"
            )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 20])
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eager", action="store_true", help="headline figures without compile")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    _print(
        run(
            sizes=args.sizes,
            batch=args.batch,
            repeats=args.repeats,
            iters=args.iters,
            device=args.device,
            compile=not args.eager,
            threads=args.threads,
        )
    )


if __name__ == "__main__":
    main()
