"""Timings of the eager iteration's elementwise passes at 64³ on one CPU thread (session 27).

Prints, in milliseconds (best of ``--repeats`` calls after a warm-up):

- torch's float32 ``sqrt`` on an array without zeros and on one whose values are half zeros (a
  pattern's outer shells; torch takes a slow path on exact zeros, which the blur-aware
  projection now keeps out of it, :class:`bcdi_stream.phasing._psf.BlurTarget`), and numpy's
  (correctly rounded) for comparison;
- :func:`bcdi_stream.phasing._kernels.squared_modulus` read through the ``int64`` view and
  through the strided halves (the same bits; which is faster depends on the CPU) and the one
  this process chose;
- HIO's eager update with the selection over the whole grid and inside the support's bounding
  box (:func:`bcdi_stream.phasing._kernels.update_eager`);
- the blur-aware projection (:func:`bcdi_stream.phasing._psf.project_blurred`) with a
  separable kernel, on a half-zero intensity, beside the FFT pair.

    python eager_passes.py --repeats 50
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch


def best_ms(f: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``f`` over ``repeats`` calls, after one warm-up call (ms)."""
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def main() -> None:
    import bcdi_stream.phasing._kernels as kernels
    from bcdi_stream.phasing._engine import coefficients
    from bcdi_stream.phasing._psf import BlurTarget, Psf, project_blurred
    from bcdi_stream.phasing._support import bounding_box

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, r = 64, args.repeats
    gen = torch.Generator().manual_seed(0)
    dense = torch.rand((n, n, n), generator=gen) + 0.5
    half0 = torch.where(torch.rand((n, n, n), generator=gen) < 0.5, 0.0, dense)
    out = torch.empty_like(dense)
    print(f"sqrt, no zeros      {best_ms(lambda: torch.sqrt(dense, out=out), r):.3f}")
    print(f"sqrt, half zeros    {best_ms(lambda: torch.sqrt(half0, out=out), r):.3f}")
    h, o = half0.numpy(), out.numpy()
    print(f"numpy sqrt, half 0  {best_ms(lambda: np.sqrt(h, out=o), r):.3f}")

    psi = torch.randn((n, n, n), generator=gen, dtype=torch.complex64)
    for forced in (True, False):
        kernels._INT64_HALVES = forced
        label = "int64 view" if forced else "strided halves"
        ms = best_ms(lambda: kernels.squared_modulus(psi), r)
        print(f"squared_modulus, {label:15s} {ms:.3f}")
    kernels._INT64_HALVES = None
    print(f"this CPU's choice: {'int64 view' if kernels.int64_halves_faster() else 'strided'}")

    keep = torch.zeros((n, n, n), dtype=torch.bool)
    keep[16:48, 16:48, 16:48] = torch.rand((32, 32, 32), generator=gen) < 0.6
    w = keep.to(torch.float32)
    box = bounding_box(keep)
    a, b = coefficients("HIO", 0.9)
    rho = torch.randn((n, n, n), generator=gen, dtype=torch.complex64)
    p = torch.randn((n, n, n), generator=gen, dtype=torch.complex64)
    full = best_ms(lambda: kernels.update_eager(rho, p, w, keep, a, b), r)
    print(f"HIO update, full    {full:.3f}")
    print(f"HIO update, box     "
          f"{best_ms(lambda: kernels.update_eager(rho, p, w, keep, a, b, box), r):.3f}")

    psf = Psf((0.0, 0.9, 0.9), (n, n, n))
    target = BlurTarget(half0 * 1e-6)
    field = torch.randn((n, n, n), generator=gen, dtype=torch.complex64)

    def project() -> None:
        x = field.clone()
        project_blurred(x, psf, target, None)

    print(f"project_blurred     {best_ms(project, r):.3f} (includes a 64³ complex copy)")
    print(f"fftn + ifftn        "
          f"{best_ms(lambda: torch.fft.ifftn(torch.fft.fftn(field), norm='forward'), r):.3f}")


if __name__ == "__main__":
    main()
