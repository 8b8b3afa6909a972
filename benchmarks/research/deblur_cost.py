"""What the deblurred blur hypothesis costs and changes on the headline test classes.

For the first ``--n`` crystals of each test class, the shipped ``ai`` refinement
(:func:`bcdi_stream.ai_phasing.phase_ai` with the settings' iterations) with ``deblur`` as
shipped and with ``deblur=0`` (sessions 22-24's hypothesis), alternating crystal by crystal in
one process on one thread, so that both see the same machine. One JSON line per crystal: the
seconds and phase RMSE of each, whether the second hypothesis run was made; a summary per class.

    python deblur_cost.py --classes weak strong --n 25
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    from bcdi_stream.ai_phasing import DEBLUR, cached_model, phase_ai, phase_ai_options
    from bcdi_stream.analysis import compare
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.config import Settings
    from bcdi_stream.pipeline import finish
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="+", default=["weak", "strong"])
    ap.add_argument("--n", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    ai, phasing = settings.ai, settings.phasing
    loaded = cached_model()
    counts = {c: args.n if c in args.classes else 0 for c in BENCH_CLASSES}
    rows: dict[str, list] = {c: [] for c in args.classes}
    for cls, seed, c in fixed_set(TEST_SEED0, counts, 64):
        row = {"class": cls, "seed": seed}
        for name, deblur in (("shipped", DEBLUR), ("off", 0)):
            t0 = time.perf_counter()
            res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, settings=phasing,
                              seed=seed % 100_000, device="cpu",
                              **{**phase_ai_options(ai), "deblur": deblur})
            obj, sup = finish(res.obj, res.support, c.intensity, c.mask, phasing)
            dt = time.perf_counter() - t0
            m = compare(obj, c.obj, c.support, recon_support=sup)
            row[name] = {"s": round(dt, 3), "rmse": round(m.phase_rmse, 3),
                         "ok": bool(m.success), "runs": len(res.llk_runs),
                         "best_run": res.best_run}
        rows[cls].append(row)
        print(json.dumps(row), flush=True)
    for cls, rs in rows.items():
        for name in ("shipped", "off"):
            print(f"{cls} {name}: {sum(r[name]['ok'] for r in rs)}/{len(rs)}, mean "
                  f"{statistics.mean(r[name]['s'] for r in rs):.3f} s, median "
                  f"{statistics.median(r[name]['s'] for r in rs):.3f} s", flush=True)
        made = sum(r["shipped"]["runs"] == 3 for r in rs)
        print(f"{cls}: a deblurred run made for {made}/{len(rs)}", flush=True)


if __name__ == "__main__":
    main()
