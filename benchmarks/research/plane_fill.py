"""Detector gaps filled for the model's input, as lost frames are: the crystals it changes.

Session 30 made ``preprocess.fill_lost_planes`` fill bands of rows and columns bad in every
frame (detector gaps) as well as lost frames, for the model's input when they hide at least
``ai_phasing.FILL_SHARE`` of the intensity (gaps 2–6 px wide within 10 px of the peak hid up
to 44 %). The simulator's own gaps (1–3 px wide, 4 px or more from the peak, in a quarter of
the crystals) were never filled before; this probe finds the crystals of the fixed sets whose
gaps now reach the share (the fill needs no model: the estimate alone decides) and phases
each with the benchmark's ``ai_er`` method twice, alternating: with the fill of frames only
(as before) and with the fill of every plane (and, with ``--one-pass``, the latter without
``phase_ai``'s other passes: the refill and, since it was added later in session 30, the
pattern left unfilled). One JSON line per crystal and rule, totals.

    python benchmarks/research/plane_fill.py --set test --classes weak=25 strong=25 \\
        weak+disl=10 ...
"""

from __future__ import annotations

import argparse
import json

import torch


def frames_only(intensity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The fill before session 30: frames (axis 0) bad throughout, linearly between the frames
    around them; other bad pixels 0."""
    from bcdi_stream.validation import interior_runs

    bad = mask.to(intensity.device, torch.bool)
    out = torch.where(bad, 0.0, intensity.clamp_min(0).to(torch.float32))
    for k, end in interior_runs(bad.flatten(1).all(dim=1).tolist()):
        lo, hi = out[k - 1], out[end]
        both = ~bad[k - 1] & ~bad[end]
        for j in range(k, end):
            t = (j - k + 1) / (end - k + 1)
            out[j] = torch.where(both, (1 - t) * lo + t * hi, 0.0)
    return out


def filled_share(intensity: torch.Tensor, mask: torch.Tensor, fill: object) -> float:
    """The share ``predict_start`` compares with ``FILL_SHARE`` (a 64³ pattern: the model's
    grid is the data's)."""
    from bcdi_stream.preprocess import fill_peak_holes

    holes = mask.bool()
    if not bool(holes.any()):
        return 0.0
    x = intensity.float().masked_fill(holes, 0.0)
    est, _ = fill_peak_holes(x, holes)
    est = torch.where(est > 0, est, fill(est, holes & (est <= 0)))
    done = holes & (est > 0)
    return float(est[done].sum() / est.sum().clamp_min(1e-30))


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.ai_phasing import FILL_SHARE, cached_model
    from bcdi_stream.benchmarking._model import BENCH_CLASSES, _run_method
    from bcdi_stream.config import AISettings, PhasingSettings
    from bcdi_stream.preprocess import fill_lost_planes
    from bcdi_stream.training import TEST_SEED0, VAL_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("test", "val"), default="test")
    ap.add_argument("--classes", nargs="+", default=["weak=25", "strong=25"],
                    help="class=count; the test set's classes keep their benchmark order, the "
                         "validation classes take the order given")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one-pass", action="store_true",
                    help="also the planes rule without phase_ai's other passes (peak_refill and, "
                         "since it exists, peak_unfilled off)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    counts = {c.split("=")[0]: int(c.split("=")[1]) for c in args.classes}
    if args.set == "test":  # as bcdi-stream benchmark model draws them
        counts = {c: counts.get(c, 0) for c in BENCH_CLASSES}
    phasing, ai = PhasingSettings(), AISettings()
    loaded = cached_model()
    dev = torch.device("cpu")
    rules = [("frames", frames_only, True), ("planes", fill_lost_planes, True)]
    if args.one_pass:
        rules.append(("planes-one-pass", fill_lost_planes, False))
    totals = {rule: 0 for rule, _, _ in rules}
    n = 0
    seed0 = TEST_SEED0 if args.set == "test" else VAL_SEED0
    for cls, seed, c in fixed_set(seed0, counts, 64):
        old = filled_share(c.intensity, c.mask, frames_only)
        new = filled_share(c.intensity, c.mask, fill_lost_planes)
        if (old >= FILL_SHARE) == (new >= FILL_SHARE):
            continue  # the same input either way
        n += 1
        for rule, fill, refill in rules:
            aip.fill_lost_planes = fill
            try:
                passes = {} if refill else {"peak_refill": False, "peak_unfilled": 0.0}
                row = _run_method("ai_er", c, loaded, phasing, ai.model_copy(update=passes),
                                  seed % 100_000, dev)
            finally:
                aip.fill_lost_planes = fill_lost_planes
            totals[rule] += row["success"]
            print(json.dumps({"class": cls, "seed": seed, "gaps": [list(g) for g in c.spec.gaps],
                              "share": round(new, 4), "rule": rule, **row}), flush=True)
    print(f"{n} crystals filled only by the planes rule: "
          + ", ".join(f"{rule} {ok}/{n}" for rule, ok in totals.items()), flush=True)


if __name__ == "__main__":
    main()
