"""What the oblique PSF costs (session 24).

Three figures, interleaved samples on one torch thread, medians:

- one blur-aware ER iteration of the engine at 64³ with no PSF, the separable kernel
  ``(0, 1, 1)`` and the oblique one ``(0, 1, 1, 0.8)`` (a 2D rfft pair over y, x instead of
  taps);
- the blur hypothesis (:func:`bcdi_stream.phasing.detector_blur_of`) with and without its
  oblique trial, on the prediction of the first ``--n`` weak test crystals;
- a wide PSF estimate (:func:`bcdi_stream.phasing._psf.estimate_sigma`) with and without it,
  from the same predictions.

    python benchmarks/research/oblique_psf_cost.py --n 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def _median_ms(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(out)


def main() -> None:
    from bcdi_stream.ai_phasing import _predict_object, cached_model
    from bcdi_stream.phasing import detector_blur_of
    from bcdi_stream.phasing._engine import Engine
    from bcdi_stream.phasing._kernels import Kernels, prepare_measured
    from bcdi_stream.phasing._psf import estimate_sigma
    from bcdi_stream.phasing._quality import _intensity_of
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    loaded = cached_model()
    crystals = [c for _, _, c in fixed_set(TEST_SEED0, {"weak": args.n}, 64)]

    # one ER iteration under each kernel, interleaved
    c = crystals[0]
    meas = prepare_measured(c.intensity.float(), c.mask.bool())
    support = (c.obj.abs() > 0)[None]
    engines = {}
    for name, psf in (("none", None), ("separable", (0.0, 1.0, 1.0)),
                      ("oblique", (0.0, 1.0, 1.0, 0.8))):
        eng = Engine(meas, c.obj[None].clone(), support.clone(), Kernels(c.obj.device, False))
        eng.set_psf(psf)
        eng.iterate("ER", 2)
        engines[name] = eng
    times: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(args.reps):
        for name, eng in engines.items():
            times[name].append(_median_ms(lambda eng=eng: eng.iterate("ER", 1), 3))
    per_iter = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(json.dumps({"er_iteration_ms": per_iter}), flush=True)

    # the hypothesis and a wide estimate, with and without the oblique trial
    rows = []
    for c in crystals:
        x = c.intensity.float()
        bad = c.mask.bool()
        with torch.no_grad():
            _, obj = _predict_object(loaded, x.masked_fill(bad, 0.0), bad)
        obj = obj.detach()
        i0 = _intensity_of(obj.to(torch.complex64))
        m = prepare_measured(x, bad)
        row = {"seed": c.spec.seed}
        for corr in (False, True):
            key = "oblique" if corr else "separable"

            def hyp(corr=corr, obj=obj, x=x, bad=bad):
                return detector_blur_of(obj, x, bad, correlation=corr)

            def est(corr=corr, i0=i0, m=m):
                return estimate_sigma(i0, m, correlation=corr)

            row[f"hypothesis_{key}_ms"] = round(_median_ms(hyp, 3), 1)
            row[f"estimate_{key}_ms"] = round(_median_ms(est, 3), 1)
        row["hypothesis"] = detector_blur_of(obj, x, bad)
        row["estimate"] = estimate_sigma(i0, m)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for what in ("hypothesis", "estimate"):
        a = statistics.median(r[f"{what}_separable_ms"] for r in rows)
        b = statistics.median(r[f"{what}_oblique_ms"] for r in rows)
        print(f"{what}: separable {a:.1f} ms, with the oblique trial {b:.1f} ms (median of "
              f"{len(rows)})", flush=True)


if __name__ == "__main__":
    main()
