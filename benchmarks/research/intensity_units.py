"""The same patterns in other units: counts, scaled counts, noise-free, flat-field corrected.

Another pipeline may hand over an intensity that is not photon counts: normalised to its maximum
or by a monitor, a noise-free simulation, frames divided by a flat field. The noise filter's
threshold (8 counts) and the Poisson figures assume photons. Each validation crystal
(``VAL_SEED0``) is phased by the shipped ``ai`` method (``bcdi_stream.pipeline.reconstruct``)
in each representation; ``as_given`` phases the same data the way session 18's pipeline did
(no photon scale: the refinement on the data as given, then the noise filter and the crystal's
support as if they were counts). One JSON line per crystal and representation, the successes
per representation.

Representations: ``counts``; ``counts/max`` (normalised to 1); ``counts/monitor`` (divided by
1234.5); ``clean/max`` (noise-free |ψ|², normalised to 1); ``clean*1e6`` (noise-free, peak 1e6);
``flatfield`` (counts times a per-pixel gain 1 ± 2 %, seeded); since session 20
``flatfield/max`` (the same, normalised to 1) and ``frames/monitor`` (each frame of the rocking
curve divided by its own monitor, 1234.5 × (1 ± 3 %), seeded); since session 21
``integrating`` (a charge-integrating detector after its gain and pedestal calibration: counts
plus Gaussian noise of 0.15 photon, seeded, clamped at 0 as the input check asked until then)
and ``integrating/raw`` (the same, not clamped). Each line also gives the
excess misfit the pipeline reported (``auto``'s trigger and the live quality flag: ``good`` at
most ``AISettings().fallback_misfit``), and the summary how often that flag agrees with the
success (a failure flagged ``good`` is a wrong answer the user is not warned of).

    python benchmarks/research/intensity_units.py --classes weak=10
    python benchmarks/research/intensity_units.py --classes weak=0 strong=10
    python benchmarks/research/intensity_units.py --classes weak=0 strong=10 \
        --representations counts clean/max flatfield/max frames/monitor
"""

from __future__ import annotations

import argparse
import json

import torch
from _probe import add_class_options, class_counts

REPRESENTATIONS = ("counts", "counts/max", "counts/monitor", "clean/max", "clean*1e6",
                   "flatfield", "flatfield/max", "frames/monitor", "integrating",
                   "integrating/raw")


def represent(name: str, crystal, seed: int) -> torch.Tensor:
    """``crystal``'s pattern in representation ``name``."""
    from bcdi_stream.physics import fft_centered

    counts = crystal.intensity
    clean = fft_centered(crystal.obj).abs().square()
    if name == "counts":
        return counts
    if name == "counts/max":
        return counts / counts.max()
    if name == "counts/monitor":
        return counts / 1234.5
    if name == "clean/max":
        return clean / clean.max()
    if name == "clean*1e6":
        return clean * (1e6 / clean.max())
    if name in ("flatfield", "flatfield/max"):
        gain = 1 + 0.02 * torch.randn(counts.shape, generator=torch.Generator().manual_seed(seed))
        return counts * gain if name == "flatfield" else counts * gain / (counts * gain).max()
    if name == "frames/monitor":
        monitor = 1234.5 * (1 + 0.03 * torch.randn(counts.shape[0], 1, 1,
                                                    generator=torch.Generator().manual_seed(seed)))
        return counts / monitor
    if name in ("integrating", "integrating/raw"):
        noise = 0.15 * torch.randn(counts.shape, generator=torch.Generator().manual_seed(seed))
        return (counts + noise).clamp_min(0) if name == "integrating" else counts + noise
    raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--representations", nargs="+", default=list(REPRESENTATIONS),
                    choices=REPRESENTATIONS)
    args = ap.parse_args()
    counts = class_counts(args)
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import AISettings, Settings
    from bcdi_stream.pipeline import finish, reconstruct
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model()
    settings = Settings(device="cpu")
    trigger = AISettings().fallback_misfit
    totals: dict[tuple[str, str], list[int]] = {}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        for name in args.representations:
            data = represent(name, c, seed)
            rec = reconstruct(data, c.mask, method="ai", settings=settings, seed=0, model=loaded)
            m = compare(rec.obj, c.obj, c.support, recon_support=rec.support)
            res, _ = phase_ai(data, c.mask, loaded=loaded, seed=0, device="cpu")
            o, s = finish(res.obj, res.support, data, c.mask, settings.phasing)
            m0 = compare(o, c.obj, c.support, recon_support=s)
            misfit = rec.quality["excess_misfit"]
            good = misfit <= trigger
            t = totals.setdefault((cls, name), [0, 0, 0, 0, 0])
            t[0] += m.success
            t[1] += m0.success
            t[2] += 1
            t[3] += good == m.success
            t[4] += good and not m.success
            print(json.dumps({"class": cls, "seed": seed, "data": name,
                              "photon_scale": rec.meta["photon_scale"],
                              "rmse": round(m.phase_rmse, 3), "iou": round(m.support_iou, 3),
                              "ok": m.success, "as_given_rmse": round(m0.phase_rmse, 3),
                              "as_given_iou": round(m0.support_iou, 3),
                              "as_given_ok": m0.success, "misfit": round(misfit, 5),
                              "flag_good": good}), flush=True)
    for (cls, name), (ok, ok0, n, agree, missed) in totals.items():
        print(f"{cls} {name}: pipeline {ok}/{n}, as given (session 18) {ok0}/{n}; the flag "
              f"agrees on {agree}/{n}, failures flagged good {missed}", flush=True)


if __name__ == "__main__":
    main()
