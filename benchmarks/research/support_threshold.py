"""Which reported support matches the crystal: shrink-wrap's, or a cut of the amplitude?

The pipeline reports the support of its last shrink-wrap (the filtered amplitude smoothed by
σ = 0.5 and cut at 0.2 of its maximum). The simulator's true support is ``amplitude > 0.5``,
the half-height of the crystal's edge, so shrink-wrap's is about a voxel too wide all round:
on crystals of 30 voxels that costs little (IoU ≈ 0.85), on crystals of 6–10 voxels
(oversampling 6–9 on a 64³ grid) it sinks the IoU to 0.55–0.7 even from the true phase
(``generalisation.py --variants os8``). This probe phases each crystal once with the shipped
AI method and noise filter and scores candidate supports drawn from the same filtered object:

- ``sw``: shrink-wrap's (0.2 of the maximum), reported until session 19;
- ``aT``: amplitude > T × the reference amplitude, the reference being the ``--pct``
  percentile of the amplitude inside ``sw`` (robust to a few hot voxels), within one voxel of
  ``sw`` (``bcdi_stream.analysis._crystal_support.amplitude_cut``);
- ``aT_c``: the same closed by one voxel (6-connected), which fills the amplitude dips along
  a dislocation core or a fault plane but not a void: the shipped
  ``bcdi_stream.analysis.crystal_support`` at threshold T (0.4 ships).

Classes are validation crystals (``VAL_SEED0``); ``os5``/``os8`` are the small-crystal
variants of ``generalisation.py``. One JSON line per crystal (the IoU of each candidate, the
phase RMSE, which no support changes), the mean IoU and the successes per candidate.

    python benchmarks/research/support_threshold.py --classes weak=20 strong=20 \\
        --variants os5 os8
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from _probe import add_class_options, class_counts

THRESHOLDS = (0.3, 0.4, 0.5)


def candidates(obj: torch.Tensor, sw: torch.Tensor, pct: float) -> dict[str, torch.Tensor]:
    """The candidate supports of one filtered object: the shipped function's cut at each
    threshold (``aT``) and the shipped function itself (``aT_c``)."""
    from bcdi_stream.analysis import crystal_support
    from bcdi_stream.analysis._crystal_support import amplitude_cut

    out = {"sw": sw}
    for t in THRESHOLDS:
        out[f"a{t:g}"] = amplitude_cut(obj, sw, t, pct)[1]
        out[f"a{t:g}_c"] = crystal_support(obj, sw, t, pct)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_class_options(ap)
    ap.add_argument("--variants", nargs="*", default=[], help="generalisation.py variants")
    ap.add_argument("--n", type=int, default=10, help="crystals per variant")
    ap.add_argument("--pct", type=float, default=90.0)
    args = ap.parse_args()
    counts = class_counts(args)
    from generalisation import crystals

    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.phasing import apply_noise_filter
    from bcdi_stream.training import VAL_SEED0, fixed_set

    loaded = cached_model()
    shipped = PhasingSettings()

    def items():
        for cls, seed, c in fixed_set(VAL_SEED0, counts):
            yield cls, seed, c
        for v in args.variants:
            for seed, c, _ in crystals(v, args.n, "weak"):
                yield v, seed, c

    rows: dict[str, list[dict]] = {}
    for group, seed, c in items():
        res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, seed=0, device="cpu")
        o, s = apply_noise_filter(res.obj, res.support, c.intensity, c.mask, shipped)
        row: dict = {"group": group, "seed": seed, "true_voxels": int(c.support.sum())}
        for name, sup in candidates(o, s, args.pct).items():
            m = compare(o, c.obj, c.support, recon_support=sup)
            row[name] = [round(m.support_iou, 3), bool(m.success)]
            row["rmse"] = round(m.phase_rmse, 3)
        rows.setdefault(group, []).append(row)
        print(json.dumps(row), flush=True)
    for group, rs in rows.items():
        names = [k for k in rs[0] if isinstance(rs[0][k], list)]
        print(group + ": " + "; ".join(
            f"{k} IoU {statistics.mean(r[k][0] for r in rs):.3f} "
            f"min {min(r[k][0] for r in rs):.2f} ok {sum(r[k][1] for r in rs)}/{len(rs)}"
            for k in names), flush=True)


if __name__ == "__main__":
    main()
