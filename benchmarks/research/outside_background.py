"""Bias of the flat background read outside the crop (``preprocess.outside_background``).

Crystals are simulated on 128³ grids (``simulate_crystal(n=128)``, same oversampling range as
64³ ones, so their fringes extend twice as far in pixels as a 64³ crop holds), no background
of their own, expected counts; the central 64 rocking planes are put on a simulated detector
(``SimBCDIDetector``: Poisson noise on a known flat background, 3 hot pixels) of 256×256 or
128×160 pixels, at a random peak offset; ``prepare_frames`` crops 64³ and estimates the
background. Prints one line per scan and a summary (estimate minus truth) per strain, flux,
detector and variant.

    OMP_NUM_THREADS=1 python benchmarks/research/outside_background.py [--seeds 6]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bcdi_stream.beamline import SimBCDIDetector
from bcdi_stream.beamline._devices import make_rocking_motor
from bcdi_stream.beamline._source import DiffractionSource
from bcdi_stream.preprocess import outside_background, prepare_frames
from bcdi_stream.simulation import simulate_crystal

#: Margins of the variant beside the default (the lower of the medians of all far tiles and
#: of the farthest quarter, margin 1.25): the median of every far tile.
VARIANTS = {"all-1.25": 1.25, "all-1.5": 1.5}


def frames_of(seed: int, strain: str, peak: float, bg: float, det_shape: tuple[int, int],
              n_frames: int = 64) -> tuple[np.ndarray, np.ndarray]:
    c = simulate_crystal(seed, n=128, strain=strain, peak_counts=peak, poisson=False, gaps=(),
                         background=0.0, device="cpu")
    src = DiffractionSource.from_crystal(c)
    motor = make_rocking_motor()
    det = SimBCDIDetector(motor, name="det", shape=det_shape, background=bg, seed=seed + 100)
    det.load(src)
    step = det.geometry.angular_step_deg
    idx = np.arange(n_frames) + 64 - n_frames // 2
    frames = np.stack([det.render(det.rocking_center_deg + (i - 64) * step) for i in idx])
    return frames, det.hot_pixels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for det_shape in ((256, 256), (128, 160)):
        for strain in ("weak", "medium", "strong"):
            for peak in (1e4, 1e5):
                for bg in (0.0, 0.5, 1.0):
                    for seed in range(args.seeds):
                        t0 = time.perf_counter()
                        frames, hot = frames_of(seed, strain, peak, bg, det_shape)
                        prep = prepare_frames(frames, shape=(64, 64, 64))
                        est = prep.meta["background"]
                        clean = torch.from_numpy(frames.astype(np.float32))
                        bad = torch.zeros_like(clean, dtype=torch.bool)
                        bad[:, hot[:, 0], hot[:, 1]] = True
                        clean[bad] = 0
                        by_margin = {"default": est}
                        for name, m in VARIANTS.items():
                            by_margin[name], _ = outside_background(
                                clean, bad, prep.origin, (64,) * 3, margin=m, farthest=1.0)
                        row = {"det": list(det_shape), "strain": strain, "peak": peak, "bg": bg,
                               "seed": seed, "est": est, "tiles": prep.meta["background_tiles"],
                               "by_margin": by_margin,
                               "s": round(time.perf_counter() - t0, 2)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    print("\nsummary: estimate - truth (photons/pixel/frame): mean, min, max over seeds")
    for det_shape in ((256, 256), (128, 160)):
        for strain in ("weak", "medium", "strong"):
            for peak in (1e4, 1e5):
                for bg in (0.0, 0.5, 1.0):
                    sel = [r for r in rows if r["det"] == list(det_shape)
                           and r["strain"] == strain and r["peak"] == peak and r["bg"] == bg]
                    parts = []
                    for m in ("default", *VARIANTS):
                        d = [r["by_margin"][m] - bg for r in sel if r["by_margin"][m] is not None]
                        parts.append(f"m{m}: {np.mean(d):+.4f} [{min(d):+.4f}, {max(d):+.4f}]"
                                     if d else f"m{m}: none")
                    print(f"{det_shape} {strain:6s} {peak:.0e} bg {bg}: " + "; ".join(parts))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh)


if __name__ == "__main__":
    main()
