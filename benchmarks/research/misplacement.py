"""Where the model puts the crystal: agreement before and after the best shift (research probe).

For crystals ``FIRST … LAST − 1`` of a validation class (``VAL_SEED0`` order, as
``model_side_by_side.py``) the shipped model's start phase (``predict_start``, view 0) is
compared with the true φ(q) per |q| shell (``shell_agreement``, twin-aware, weights
min–max log(1 + I)) as predicted (``base``) and after moving the truth by the sub-voxel shift,
within ``--max-shift`` voxels per axis, that best matches the prediction (``registered``,
:func:`registered_finetune.best_shift`); ``shift`` is that shift (voxels, z y x, the
twin's sign folded in). Phasing does not see a global shift, the losses do. One JSON line per
crystal, the class means last.

    python benchmarks/research/misplacement.py --cls strong --last 30 \\
        --models bcdi_stream/model/weights/bcdi-phase-v3.pt

Results: docs/MODEL_RESEARCH.md, session 15.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from registered_finetune import best_shift, move_targets

EDGES = (0, 4, 8, 12, 16, 24, 32, 64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cls", default="strong")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=30)
    ap.add_argument("--max-shift", type=float, default=2.0)
    ap.add_argument("--models", nargs="+", default=[])
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    from bcdi_stream.ai_phasing import predict_start
    from bcdi_stream.model import default_weights_path, load_model, shell_agreement
    from bcdi_stream.model._loss import log_minmax, wca_phasor
    from bcdi_stream.training import VAL_SEED0, fixed_set

    models = {m: load_model(m) for m in (args.models or [default_weights_path()])}
    sums: dict[str, list] = {}
    n = 0
    # the class order fixes each class's seed range (as model_side_by_side.py's)
    counts = {"weak": 0, args.cls: args.last} if args.cls != "weak" else {"weak": args.last}
    for k, (_, seed, c) in enumerate(fixed_set(VAL_SEED0, counts)):
        if k < args.first:
            continue
        row: dict = {"seed": seed}
        mask = None if c.mask is None else torch.as_tensor(c.mask).bool()
        for path, loaded in models.items():
            st = predict_start(loaded, c.intensity.float(), mask)
            phi_t = c.phase_q.float()[None]
            u = torch.polar(torch.ones_like(st.phase_q), st.phase_q)[None]
            w = log_minmax(c.intensity.float()[None])
            d = best_shift(phi_t, u, w, args.max_shift)
            phi_r, _ = move_targets(phi_t, None, d)
            label = Path(path).stem
            base = shell_agreement(phi_t, st.phase_q[None], w, EDGES)
            reg = shell_agreement(phi_r, st.phase_q[None], w, EDGES)
            rec = {"shift": [round(float(v), 2) for v in d[0]],
                   "wca": round(float(wca_phasor(phi_t, u, w)[0]), 3),
                   "wca_registered": round(float(wca_phasor(phi_r, u, w)[0]), 3),
                   "base": [round(v, 2) for v in base], "registered": [round(v, 2) for v in reg]}
            row[label] = rec
            s = sums.setdefault(label, [0.0, 0.0, [0.0] * len(base), [0.0] * len(reg)])
            s[0] += rec["wca"]
            s[1] += rec["wca_registered"]
            s[2] = [a + b for a, b in zip(s[2], base, strict=True)]
            s[3] = [a + b for a, b in zip(s[3], reg, strict=True)]
        n += 1
        print(json.dumps(row), flush=True)
    for label, s in sums.items():
        print(f"{label} ({args.cls}, {n} crystals, shells {list(EDGES)}): WCA {s[0] / n:.3f}, "
              f"registered {s[1] / n:.3f}; per shell {[round(v / n, 3) for v in s[2]]}, "
              f"registered {[round(v / n, 3) for v in s[3]]}", flush=True)


if __name__ == "__main__":
    main()
