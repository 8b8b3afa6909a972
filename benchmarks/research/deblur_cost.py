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

import torch
from _probe import shipped_ai


def main() -> None:
    from bcdi_stream.ai_phasing import DEBLUR, cached_model
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.config import Settings
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
            res, m, dt = shipped_ai(c, seed, loaded, ai, phasing, deblur=deblur)
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
