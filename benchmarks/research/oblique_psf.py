"""What an oblique partial-coherence blur needs from the PSF model (session 22).

The ``diagblur`` crystals of ``unseen_models.py`` (blurred by σ 1.2–1.8 px along the detector's
diagonal (y + x)/√2) are refined from the TRUE φ(q) with the measured modulus, in the true
support dilated by one voxel (fixed: the support is not what is tested), by ER with a
blur-aware modulus projection ψ ← ψ·√(I / K⊗|ψ|²) (measured pixels only), where the PSF K is:

- ``none``: no PSF (the plain projection);
- ``separable``: the best a product of one Gaussian per axis can do with the truth known — the
  kernel's projections, σ/√2 on y and on x (and the crystal's own detector blur);
- ``oblique``: the true kernel (a Gaussian along the diagonal, applied by FFT, and the
  crystal's own detector blur).

The phase RMSE and support IoU after the refinement (``compare``), one JSON line per crystal, a
summary per PSF. Plain torch, no shrink-wrap, so the figures size what the engine's PSF model
costs, not what the shipped refinement scores.

    python benchmarks/research/oblique_psf.py --variants diagblur diagblur_medium --n 10
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from unseen_models import SEED0, change, yx_transfer

PSFS = ("none", "separable", "oblique")


def refine(intensity, mask, phase_q, support, transfer, n_iter: int):
    """ER from the true phase with the blur-aware modulus projection (``transfer`` on y, x)."""
    from bcdi_stream.physics import fft_centered, ifft_centered

    meas = intensity.double()
    good = ~mask
    psi = torch.polar(meas.sqrt(), phase_q.double())
    rho = ifft_centered(psi.to(torch.complex128)) * support
    for _ in range(n_iter):
        psi = fft_centered(rho)
        i0 = psi.abs().square()
        ic = i0 if transfer is None else torch.fft.ifftn(
            torch.fft.fftn(i0, dim=(1, 2)) * transfer, dim=(1, 2)).real
        ratio = torch.where(good, (meas / ic.clamp_min(1e-12)).sqrt(), torch.ones_like(meas))
        rho = ifft_centered(psi * ratio) * support
    return rho.to(torch.complex64)


def main() -> None:
    from scipy import ndimage

    from bcdi_stream.analysis import compare

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["diagblur", "diagblur_medium"])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for variant in args.variants:
        rows: dict[str, list] = {p: [] for p in PSFS}
        for k in range(args.n):
            seed = SEED0 + 1000 * k
            c = change(variant, seed)
            n = c.intensity.shape[-1]
            s_diag, s_det = c.oblique, c.detector_sigma
            support = torch.from_numpy(ndimage.binary_dilation(c.support.numpy()))
            transfers = {
                "none": None,
                "separable": yx_transfer(n, c.psf[1], c.psf[2]),
                "oblique": yx_transfer(n, s_det, s_det, s_diag),
            }
            for name, transfer in transfers.items():
                rho = refine(c.intensity, c.mask, c.phase_q, support, transfer, args.iters)
                m = compare(rho, c.obj, c.support, recon_support=support)
                row = {"variant": variant, "seed": seed, "psf": name,
                       "sigma_diag": round(s_diag, 2), "sigma_det": round(s_det, 2),
                       "rmse": round(m.phase_rmse, 3), "ok_phase": m.phase_rmse < 0.3}
                rows[name].append(row)
                print(json.dumps(row), flush=True)
        for name, rs in rows.items():
            print(f"{variant} {name}: phase RMSE < 0.3 on {sum(r['ok_phase'] for r in rs)}/"
                  f"{len(rs)}, median {statistics.median(r['rmse'] for r in rs):.3f} rad",
                  flush=True)


if __name__ == "__main__":
    main()
