"""How much the refined result moves when the model's start moves by as much as bfloat16 moves it.

Session 23 (``inference_precision.py``): with the prediction in bfloat16 the weak test
crystals end with a phase RMSE up to 0.07 rad away from float32's, all still solved. Is that
bfloat16's error, or the refinement's sensitivity to any small change of its start? For each
test crystal named (``--seeds``, of ``--cls``), the benchmark's ``ai_er`` method (the shipped
refinement and the pipeline's finish, ``_run_method``) runs from: the float32 start, the
bfloat16 start, and ``--draws`` float32 starts plus complex white noise with the norm of the
bfloat16 − float32 difference (seeded 0, 1, …). One JSON line per crystal: the relative size
of that difference, and per start the phase RMSE and the refined LLK.

    python benchmarks/research/start_sensitivity.py --seeds 3000000000 3000003000 \\
        3000007000 3000016000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable

import torch


def main() -> None:
    import bcdi_stream.ai_phasing as aip
    from bcdi_stream.benchmarking._model import BENCH_CLASSES, _run_method
    from bcdi_stream.config import Settings
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls", default="weak", choices=BENCH_CLASSES)
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    s = Settings(device="cpu")
    models = {p: aip.cached_model(None, "cpu", p) for p in ("fp32", "bf16")}
    shipped = aip.predict_start
    last = max((sd - TEST_SEED0) % 10_000_000 // 1000 for sd in args.seeds) + 1
    counts = {c: last if c == args.cls else 0 for c in BENCH_CLASSES}

    def refined(c, seed: int, loaded, change: Callable | None = None) -> list:
        def start(*a, **k):
            st = shipped(*a, **k)
            return st if change is None else dataclasses.replace(st, obj=change(st.obj))

        aip.predict_start = start  # phase_ai looks it up in its module
        try:
            row = _run_method("ai_er", c, loaded, s.phasing, s.ai, seed % 100_000,
                              torch.device("cpu"))
        finally:
            aip.predict_start = shipped
        return [row["phase_rmse"], round(row["llk"], 3)]

    for _, seed, c in fixed_set(TEST_SEED0, counts, 64):
        if seed not in args.seeds:
            continue
        a, b = (shipped(models[p], c.intensity, c.mask.bool(), seed=seed % 100_000,
                        settings=s.phasing).obj for p in ("fp32", "bf16"))
        rel = float((a - b).norm() / a.norm())
        row: dict = {"seed": seed, "start_rel_diff": round(rel, 4),
                     "fp32": refined(c, seed, models["fp32"]),
                     "bf16": refined(c, seed, models["bf16"])}
        for k in range(args.draws):
            gen = torch.Generator().manual_seed(k)

            def noisy(obj: torch.Tensor, gen: torch.Generator = gen, rel: float = rel
                      ) -> torch.Tensor:
                n = torch.randn(obj.shape, generator=gen, dtype=torch.complex64)
                return obj + n * (rel * obj.norm() / n.norm())

            row[f"fp32+noise{k}"] = refined(c, seed, models["fp32"], noisy)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
