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
``flatfield`` (counts times a per-pixel gain 1 ± 2 %, seeded).

    python benchmarks/research/intensity_units.py --classes weak=10
    python benchmarks/research/intensity_units.py --classes weak=0 strong=10
"""

from __future__ import annotations

import argparse
import json

import torch
from _probe import add_class_options, class_counts

REPRESENTATIONS = ("counts", "counts/max", "counts/monitor", "clean/max", "clean*1e6",
                   "flatfield")


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
    if name == "flatfield":
        gain = 1 + 0.02 * torch.randn(counts.shape, generator=torch.Generator().manual_seed(seed))
        return counts * gain
    raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    counts = class_counts(ap.parse_args())
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import Settings
    from bcdi_stream.pipeline import finish, reconstruct
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model()
    settings = Settings(device="cpu")
    totals: dict[tuple[str, str], list[int]] = {}
    for cls, seed, c in fixed_set(VAL_SEED0, counts):
        for name in REPRESENTATIONS:
            data = represent(name, c, seed)
            rec = reconstruct(data, c.mask, method="ai", settings=settings, seed=0, model=loaded)
            m = compare(rec.obj, c.obj, c.support, recon_support=rec.support)
            res, _ = phase_ai(data, c.mask, loaded=loaded, seed=0, device="cpu")
            o, s = finish(res.obj, res.support, data, c.mask, settings.phasing)
            m0 = compare(o, c.obj, c.support, recon_support=s)
            t = totals.setdefault((cls, name), [0, 0, 0])
            t[0] += m.success
            t[1] += m0.success
            t[2] += 1
            print(json.dumps({"class": cls, "seed": seed, "data": name,
                              "photon_scale": rec.meta["photon_scale"],
                              "rmse": round(m.phase_rmse, 3), "iou": round(m.support_iou, 3),
                              "ok": m.success, "as_given_rmse": round(m0.phase_rmse, 3),
                              "as_given_iou": round(m0.support_iou, 3),
                              "as_given_ok": m0.success}), flush=True)
    for (cls, name), (ok, ok0, n) in totals.items():
        print(f"{cls} {name}: pipeline {ok}/{n}, as given (session 18) {ok0}/{n}", flush=True)


if __name__ == "__main__":
    main()
