"""The shipped AI refinement on crystals outside the training distribution.

Variants of the simulator's weak class (seeds 4_100_000_000 + 1000 k, disjoint from training,
validation and the test set): photon-starved or very bright, high background, the largest
crystals, one shape only, other grid sizes, a medium strain span, 1–2 dislocations in every
crystal (weak or medium smooth strain), a planar defect in every crystal (a stacking fault or
twin lamella, weak or medium), a dislocation loop in every crystal (weak or medium); and the
validation crystals with the pattern centred on its brightest pixel instead of its centre of
mass (what another pipeline may hand us); since session 29 shapes the simulator did not draw
(a regular tetrahedron, a needle of aspect 5, a plate 0.1 thick; weak or medium) beside its
own rods and platelets at medium strain. Each crystal is phased by AI + the shipped
refinement (``phase_ai``: RAAR 100 + ER 100 until session 5, HIO 100 + ER 100 since) and, with
``--random``, by RAAR 100 + ER 100 from random phases;
with ``--truth``, by RAAR 100 + ER 100 from the TRUE φ(q) with the measured modulus (the
ceiling of any prediction). Since session 18 every result is scored after the pipeline's noise
filter (``PhasingSettings().noise_filter``, :func:`bcdi_stream.phasing.denoise`), and since
session 19 with the crystal's support (``PhasingSettings().crystal_support``), as
``bcdi-stream reconstruct`` returns it (:func:`bcdi_stream.pipeline.finish`), and the AI result
also as refined, with shrink-wrap's support (``refined_rmse``, ``refined_ok``).
Prints one JSON line per crystal (with the AI result's LLK and
excess misfit, the ``auto`` trigger) and a summary per variant.

    python benchmarks/research/generalisation.py --variants photons2e3 bg3 medium --n 10 --random
    python benchmarks/research/generalisation.py --variants max_centred --cls strong --n 20
    python benchmarks/research/generalisation.py --variants photons2e3 medium --n 20 --truth
    python benchmarks/research/generalisation.py --variants bg3 photons2e3 medium --n 10
    python benchmarks/research/generalisation.py --variants weak_disl medium_disl --n 10 \\
        --truth --random
    python benchmarks/research/generalisation.py --variants tetra_medium needle_medium \\
        thinplate_medium --n 10 --truth --random
    python benchmarks/research/generalisation.py --variants needle_medium rod_medium --n 30
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from _probe import refine_from_phase

_TETRA = {"normals": [[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]],
          "offsets": [1.0, 1.0, 1.0, 1.0]}
_NEEDLE = {"sides": 6, "aspect": 5.0, "stretch": [1.0, 1.0, 1.0]}
_THIN = {"thickness": 0.1, "side_ratio": 0.8, "stretch": [1.0, 1.0, 1.0]}
VARIANTS: dict[str, dict] = {
    "base": {"n": 64, "strain": "weak"},
    "photons2e3": {"n": 64, "strain": "weak", "peak_counts": 2e3},
    "bg3": {"n": 64, "strain": "weak", "background": 3.0},
    "largest": {"n": 64, "strain": "weak", "oversampling": (2.0, 2.2)},
    "grid48": {"n": 48, "strain": "weak"},
    "grid128": {"n": 128, "strain": "weak", "oversampling": (4.0, 4.4)},
    "medium": {"n": 64, "strain": (1.0 * math.pi, 2.5 * math.pi)},
    "photons1e8": {"n": 64, "strain": "weak", "peak_counts": 1e8},
    "photons1e9": {"n": 64, "strain": "weak", "peak_counts": 1e9},
    "sphere": {"n": 64, "strain": "weak", "shapes": ("sphere",)},
    "rod": {"n": 64, "strain": "weak", "shapes": ("rod",)},
    "platelet": {"n": 64, "strain": "weak", "shapes": ("platelet",)},
    "weak_disl": {"n": 64, "strain": "weak", "dislocation_probability": 1.0},
    "medium_disl": {"n": 64, "strain": "medium", "dislocation_probability": 1.0},
    "weak_fault": {"n": 64, "strain": "weak", "fault_probability": 1.0},
    "medium_fault": {"n": 64, "strain": "medium", "fault_probability": 1.0},
    "weak_loop": {"n": 64, "strain": "weak", "loop_probability": 1.0},
    "medium_loop": {"n": 64, "strain": "medium", "loop_probability": 1.0},
    "os5": {"n": 64, "strain": "weak", "oversampling": (4.5, 6.0)},
    "os8": {"n": 64, "strain": "weak", "oversampling": (6.0, 9.0)},
    "os5_medium": {"n": 64, "strain": "medium", "oversampling": (4.5, 6.0)},
    "blur12": {"n": 64, "strain": "weak", "blur_sigma": 1.2},
    "blur15": {"n": 64, "strain": "weak", "blur_sigma": 1.5},
    "blur12_medium": {"n": 64, "strain": "medium", "blur_sigma": 1.2},
    # session 20: rougher smooth strain than training's (correlation length 0.3-0.7 of the
    # crystal): 0.1-0.2, the same spans; and the scattering vector along other axes
    "rough": {"n": 64, "strain": "weak", "strain_models": ("smooth",),
              "smooth_length": (0.1, 0.2)},
    "rough_medium": {"n": 64, "strain": "medium", "strain_models": ("smooth",),
                     "smooth_length": (0.1, 0.2)},
    "smooth_medium": {"n": 64, "strain": "medium", "strain_models": ("smooth",)},
    "rough2_medium": {"n": 64, "strain": "medium", "strain_models": ("smooth",),
                      "smooth_length": (0.2, 0.3)},
    "g_z_medium_disl": {"n": 64, "strain": "medium", "dislocation_probability": 1.0,
                        "g_hat": (1.0, 0.0, 0.0)},
    "g_oblique_medium_disl": {"n": 64, "strain": "medium", "dislocation_probability": 1.0,
                              "g_hat": (0.577, 0.577, 0.577)},
    # session 29: shapes the simulator does not draw (its random polyhedra are compact,
    # circumradius / inradius <= 2.2; its rods 1.6-3 and its platelets 0.2-0.5 thick): a regular
    # tetrahedron (3), a six-sided needle of aspect 5, a hexagonal plate 0.1 thick
    "tetra": {"n": 64, "strain": "weak", "shape": "polyhedron", "shape_params": _TETRA},
    "tetra_medium": {"n": 64, "strain": "medium", "shape": "polyhedron",
                     "shape_params": _TETRA},
    "needle": {"n": 64, "strain": "weak", "shape": "rod", "shape_params": _NEEDLE},
    "needle_medium": {"n": 64, "strain": "medium", "shape": "rod", "shape_params": _NEEDLE},
    "thinplate": {"n": 64, "strain": "weak", "shape": "platelet", "shape_params": _THIN},
    "thinplate_medium": {"n": 64, "strain": "medium", "shape": "platelet",
                         "shape_params": _THIN},
    # ... and each of the simulator's own shapes alone at the same strain (the controls, below:
    # "rod_medium", "platelet_medium", ...)
}
for _shape in ("octahedron", "truncated_octahedron", "cuboctahedron", "cube", "sphere",
               "platelet", "rod", "polyhedron"):
    VARIANTS[f"{_shape}_medium"] = {"n": 64, "strain": "medium", "shapes": (_shape,)}


def crystals(variant: str, n: int, cls: str):
    """``(label, crystal, shift)``: the pattern is rolled by ``shift`` before phasing."""
    from bcdi_stream.simulation import simulate_crystal
    from bcdi_stream.training._datasets import fixed_set

    if variant in ("com_centred", "max_centred"):
        for _, seed, c in fixed_set(2_300_000_000, {cls: n}):
            shift = (0, 0, 0)
            if variant == "max_centred":
                peak = torch.unravel_index(c.intensity.argmax(), c.intensity.shape)
                shift = tuple(s // 2 - int(p) for s, p in zip(c.intensity.shape, peak,
                                                              strict=True))
            yield seed, c, shift
        return
    for k in range(n):
        seed = 4_100_000_000 + 1000 * k
        yield seed, simulate_crystal(_spec(variant, seed), device="cpu"), (0, 0, 0)


def _spec(variant: str, seed: int):
    """The variant's spec of crystal ``seed``: :meth:`CrystalSpec.random` with the variant's
    arguments, then its ``smooth_length`` range (drawn from the seed) on every smooth model."""
    import dataclasses

    import numpy as np

    from bcdi_stream.simulation import CrystalSpec

    kw = dict(VARIANTS[variant])
    length = kw.pop("smooth_length", None)
    fields = {f.name for f in dataclasses.fields(CrystalSpec)}
    overrides = {k: kw.pop(k) for k in list(kw) if k in fields and k != "strain_models"}
    spec = CrystalSpec.random(seed, **kw)
    if length is not None:
        rng = np.random.default_rng(seed)
        models = tuple({**m, "length": float(rng.uniform(*length))} if m["kind"] == "smooth"
                       else m for m in spec.strain_models)
        overrides["strain_models"] = models
    return dataclasses.replace(spec, **overrides) if overrides else spec


def probe_arguments(doc: str, variants: list[str], default: list[str], *,
                    centred_class: bool = False,
                    extra: list[tuple[str, dict]] = ()) -> argparse.Namespace:
    """``--variants --n --random --truth --auto --threads`` (``--cls`` with ``centred_class``,
    and each ``(flag, add_argument keywords)`` of ``extra``); seeds torch (0) and sets the
    threads."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    ap.add_argument("--variants", nargs="+", default=default, choices=variants)
    if centred_class:
        ap.add_argument("--cls", default="weak", help="class of the *_centred variants")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--random", action="store_true", help="also refine from random phases")
    ap.add_argument("--truth", action="store_true",
                    help="also refine from the true phase (the ceiling of a prediction)")
    ap.add_argument("--auto", action="store_true",
                    help="also score the auto method (bcdi_stream.pipeline.reconstruct): the AI "
                    "result where its misfit is under the trigger, else auto's own run")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    return args


def score_variant(variant: str, items, args: argparse.Namespace) -> None:
    """Phase each ``(seed, data, mask, phase_q, truth_obj, truth_support, extra)`` of
    ``items`` by the shipped AI method (and, as ``args`` asks, from random phases and from
    the true phase ``phase_q``), print a JSON line per crystal (``extra`` first) and the
    variant's summary."""
    from bcdi_stream.ai_phasing import cached_model, phase_ai
    from bcdi_stream.analysis import compare
    from bcdi_stream.config import AISettings, PhasingSettings, Settings
    from bcdi_stream.phasing import excess_misfit, run_conventional
    from bcdi_stream.pipeline import finish, reconstruct

    loaded = cached_model()
    # the refinement of the random-start and true-phase comparisons (the AI method's until
    # session 5)
    raar = PhasingSettings(runs=1, n_raar=100, n_hio=0, n_er=100)
    shipped = PhasingSettings()
    on_cpu = Settings(device="cpu")  # the auto method as shipped (--auto)
    trigger = AISettings().fallback_misfit

    def scored(r, data, mask, obj, support):
        """``compare`` of a result as the pipeline returns it (after its noise filter and, since
        session 19, with the crystal's support)."""
        o, s = finish(r.obj, r.support, data, mask, shipped)
        return compare(o, obj, support, recon_support=s)

    rows = []
    for seed, data, mask, phase_q, obj, support, extra in items:
        t0 = time.perf_counter()
        res, start = phase_ai(data, mask, loaded=loaded, seed=0, device="cpu")
        dt = time.perf_counter() - t0
        m = scored(res, data, mask, obj, support)
        m0 = compare(res.obj, obj, support, recon_support=res.support)
        row = {"variant": variant, "seed": seed, **extra,
               "offset": [round(v, 2) for v in start.offset or ()],
               "rmse": round(m.phase_rmse, 3), "iou": round(m.support_iou, 2),
               "ok": bool(m.success), "refined_rmse": round(m0.phase_rmse, 3),
               "refined_ok": bool(m0.success), "s": round(dt, 2), "llk": round(res.llk, 3),
               "misfit": round(float(excess_misfit(res.obj, data, mask,
                                                   psf_sigma=res.psf_sigma)), 5)}
        if args.random:
            r2 = run_conventional(data, mask, settings=raar, seed=0, device="cpu")
            m2 = scored(r2, data, mask, obj, support)
            row.update(random_rmse=round(m2.phase_rmse, 3), random_ok=bool(m2.success))
        if args.truth:
            r3 = refine_from_phase(data, mask, phase_q, raar)
            m3 = scored(r3, data, mask, obj, support)
            row.update(truth_rmse=round(m3.phase_rmse, 3), truth_ok=bool(m3.success))
        if getattr(args, "auto", False):
            if row["misfit"] <= trigger:  # auto keeps the AI result: no fallback
                row.update(auto_rmse=row["rmse"], auto_ok=row["ok"], auto_used="ai")
            else:
                rec = reconstruct(data, mask, method="auto", seed=0, model=loaded,
                                  settings=on_cpu)
                m4 = compare(rec.obj, obj, support, recon_support=rec.support)
                row.update(auto_rmse=round(m4.phase_rmse, 3), auto_ok=bool(m4.success),
                           auto_used=rec.method)
        rows.append(row)
        print(json.dumps(row), flush=True)
    line = (f"{variant}: AI+refinement {sum(r['ok'] for r in rows)}/{len(rows)} "
            f"(as refined, before the noise filter and the crystal support, "
            f"{sum(r['refined_ok'] for r in rows)}), "
            f"median {statistics.median(r['rmse'] for r in rows):.3f} rad, "
            f"{statistics.median(r['s'] for r in rows):.2f} s")
    ok = [r for r in rows if r["ok"]]
    line += (f"; excess misfit > {trigger:g} (auto falls back) on "
             f"{sum(r['misfit'] > trigger for r in ok)}/{len(ok)} successes and "
             f"{sum(r['misfit'] > trigger for r in rows if not r['ok'])}/"
             f"{len(rows) - len(ok)} failures")
    if args.random:
        line += f"; random start {sum(r['random_ok'] for r in rows)}/{len(rows)}"
    if args.truth:
        line += f"; true phase {sum(r['truth_ok'] for r in rows)}/{len(rows)}"
    if getattr(args, "auto", False):
        line += f"; auto {sum(r['auto_ok'] for r in rows)}/{len(rows)}"
    print(line, flush=True)


def _rolled(x: torch.Tensor, shift: tuple[int, int, int]) -> torch.Tensor:
    return torch.roll(x, shift, (0, 1, 2))


def main() -> None:
    args = probe_arguments(__doc__, [*VARIANTS, "com_centred", "max_centred"], ["base"],
                           centred_class=True)
    for variant in args.variants:
        score_variant(variant, (
            (seed, _rolled(c.intensity, shift), _rolled(c.mask, shift),
             _rolled(c.phase_q, shift), c.obj, c.support, {"shift": list(shift)})
            for seed, c, shift in crystals(variant, args.n, args.cls)), args)


if __name__ == "__main__":
    main()
