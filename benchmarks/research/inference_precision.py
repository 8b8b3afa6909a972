"""The prediction in bfloat16 against float32, side by side on the test set (session 23).

v3 was trained under bfloat16 autocast (its ``train_config.precision``); on a CPU with AMX or
AVX-512 BF16 its trunk runs ~3× faster in bfloat16. Each test crystal (``bcdi-stream
benchmark model``'s fixed set, ``--classes class=count``) is phased by the benchmark's
``ai_er`` method (the shipped refinement and the pipeline's finish, timed as the benchmark
times it) twice in a row, with the model loaded in ``fp32`` and in ``bf16``, in alternating
order. One JSON line per crystal (seconds, phase RMSE and success of each, and the
prediction's own seconds), then per class the successes and the median seconds of each and
their ratio.

    python benchmarks/research/inference_precision.py --classes weak=25 strong=25
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.benchmarking._model import BENCH_CLASSES, _run_method
    from bcdi_stream.config import Settings
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", nargs="+", default=["weak=25", "strong=25"],
                    help="test class=count (classes of bcdi-stream benchmark model)")
    args = ap.parse_args()
    want = {k: int(v) for k, v in (c.split("=") for c in args.classes)}
    bad = sorted(set(want) - set(BENCH_CLASSES))
    if bad:
        raise SystemExit(f"unknown classes {bad}; choose from {BENCH_CLASSES}")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    settings = Settings(device="cpu")
    dev = torch.device("cpu")
    models = {p: cached_model(None, dev, p) for p in ("fp32", "bf16")}
    print(json.dumps({"precision": {p: m.precision for p, m in models.items()},
                      "model": models["fp32"].name}), flush=True)
    counts = {c: want.get(c, 0) for c in BENCH_CLASSES}
    rows: dict[str, list[dict]] = {}
    for k, (cls, seed, c) in enumerate(fixed_set(TEST_SEED0, counts, 64)):
        row: dict = {"class": cls, "seed": seed}
        for p in (("fp32", "bf16") if k % 2 == 0 else ("bf16", "fp32")):
            r = _run_method("ai_er", c, models[p], settings.phasing, settings.ai,
                            seed % 100_000, dev)
            t0 = time.perf_counter()
            predict_start(models[p], c.intensity, c.mask.bool(), seed=seed % 100_000,
                          settings=settings.phasing)
            row[p] = {"s": r["seconds"], "rmse": r["phase_rmse"], "ok": r["success"],
                      "predict_s": round(time.perf_counter() - t0, 3)}
        rows.setdefault(cls, []).append(row)
        print(json.dumps(row), flush=True)
    for cls, rs in rows.items():
        med = {p: statistics.median(r[p]["s"] for r in rs) for p in ("fp32", "bf16")}
        pred = {p: statistics.median(r[p]["predict_s"] for r in rs) for p in ("fp32", "bf16")}
        same = sum(r["fp32"]["ok"] == r["bf16"]["ok"] for r in rs)
        print(f"{cls}: fp32 {sum(r['fp32']['ok'] for r in rs)}/{len(rs)}, "
              f"bf16 {sum(r['bf16']['ok'] for r in rs)}/{len(rs)} ({same} crystals alike); "
              f"median s fp32 {med['fp32']:.3f}, bf16 {med['bf16']:.3f} "
              f"(x{med['fp32'] / med['bf16']:.3f}); prediction alone fp32 {pred['fp32']:.3f}, "
              f"bf16 {pred['bf16']:.3f} s", flush=True)


if __name__ == "__main__":
    main()
