"""The fallback trigger and the quality flag with and without the background read outside
the crop (``prepare_frames``' ``meta["background"]``, ``reconstruct(background=)``).

Live-like scans: a 64³ crystal (``simulate_crystal``, expected counts, no background of its
own) on the simulated detector (``SimBCDIDetector``, 128×160 pixels, Poisson noise on a flat
background, 3 hot pixels), 64 frames, ``prepare_frames`` (64³ crop, background estimate),
then the ``ai`` method twice: without the background (before) and with the estimate (after).
The ``auto`` method falls back exactly when the ``ai`` result's excess misfit exceeds
``ai.fallback_misfit``, and the live flag is ``quality_flag`` of the same figure, so both are
read from these two runs (the fallback itself is not run: ~190 s each). Success: phase RMSE
< 0.3 rad and support IoU > 0.6 against the true object (``analysis.compare``).

    OMP_NUM_THREADS=1 python benchmarks/research/background_trigger.py \
        --strains weak medium --seeds 8 --out weak_medium.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bcdi_stream.analysis import compare
from bcdi_stream.beamline import SimBCDIDetector
from bcdi_stream.beamline._devices import make_rocking_motor
from bcdi_stream.beamline._source import DiffractionSource
from bcdi_stream.config import Settings
from bcdi_stream.pipeline import reconstruct
from bcdi_stream.preprocess import prepare_frames
from bcdi_stream.simulation import simulate_crystal
from bcdi_stream.tiled_io import JobSettings, live_phasing, quality_flag


def scan(seed: int, strain: str, peak: float, bg: float) -> tuple[np.ndarray, object]:
    c = simulate_crystal(seed, n=64, strain=strain, peak_counts=peak, poisson=False, gaps=(),
                         background=0.0, device="cpu")
    motor = make_rocking_motor()
    det = SimBCDIDetector(motor, name="det", shape=(128, 160), background=bg, seed=seed + 100)
    det.load(DiffractionSource.from_crystal(c))
    step = det.geometry.angular_step_deg
    frames = np.stack([det.render(det.rocking_center_deg + (i - 32) * step) for i in range(64)])
    return frames, c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--strains", nargs="+", default=["weak", "medium"])
    ap.add_argument("--peaks", nargs="+", type=float, default=[1e4, 1e5])
    ap.add_argument("--bgs", nargs="+", type=float, default=[0.0, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = Settings()
    limit = settings.ai.fallback_misfit
    job = JobSettings()
    rows = []
    for strain in args.strains:
        for peak in args.peaks:
            for bg in args.bgs:
                for seed in range(args.seeds):
                    frames, c = scan(seed, strain, peak, bg)
                    prep = prepare_frames(frames, shape=(64, 64, 64))
                    est = prep.meta["background"]
                    out = {"strain": strain, "peak": peak, "bg": bg, "seed": seed, "est": est}
                    objs = []
                    for tag, b in (("before", None), ("after", est or None)):
                        t0 = time.perf_counter()
                        rec = reconstruct(prep.intensity, prep.mask, method="ai",
                                          settings=settings, phasing=live_phasing(), seed=0,
                                          device="cpu", background=b)
                        sec = time.perf_counter() - t0
                        q = rec.quality
                        out[f"misfit_{tag}"] = q["excess_misfit"]
                        out[f"flag_{tag}"] = quality_flag(q["excess_misfit"], q["llk"], job,
                                                          q["support_fraction"])
                        out[f"fallback_{tag}"] = q["excess_misfit"] > limit
                        out[f"s_{tag}"] = round(sec, 2)
                        objs.append(rec)
                    out["same_obj"] = bool(torch.equal(objs[0].obj, objs[1].obj))
                    m = compare(objs[0].obj, c.obj, c.support, recon_support=objs[0].support)
                    out["phase_rmse"] = float(m.phase_rmse)
                    out["iou"] = float(m.support_iou)
                    out["success"] = bool(m.phase_rmse < 0.3 and m.support_iou > 0.6)
                    rows.append(out)
                    print(json.dumps(out), flush=True)
                    if args.out:
                        with open(args.out, "w") as fh:
                            json.dump(rows, fh)


if __name__ == "__main__":
    main()
