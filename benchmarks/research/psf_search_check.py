"""The PSF width searches of session 23 against the ones before, on the same inputs.

Session 23 made the searches (``bcdi_stream.phasing._psf``: ``estimate_sigma``,
``estimate_detector_sigma``, ``detector_blur_of``) compute the data's LLK terms once and blur
the axes they do not vary once per line. This loads the module as it was at ``--before`` (a
git revision, by default the commit before the change) beside the current one and runs both on
the same inputs: the bfloat16 prediction of each test crystal (in its shrink-wrap support)
against its pattern, as measured or, on every other crystal, blurred by σ (0, 0.9, 1.4) px;
per crystal the blur hypothesis, a wide estimate and a local one from it. One line per
crystal (whether every width agrees to the 4 decimals the searches round to), then the
seconds each version took.

    python benchmarks/research/psf_search_check.py --n 4
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def module_at(revision: str) -> object:
    """``bcdi_stream.phasing._psf`` as it was at ``revision``, imported beside the current one."""
    src = subprocess.run(["git", "show", f"{revision}:bcdi_stream/phasing/_psf.py"],
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "_psf_before.py"
    path.write_text(src)
    name = "bcdi_stream.phasing._psf_before"  # its relative imports resolve in the package
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    import bcdi_stream.phasing._psf as now
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.phasing._kernels import prepare_measured
    from bcdi_stream.phasing._quality import _intensity_of
    from bcdi_stream.training import TEST_SEED0, fixed_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4, help="crystals per class (weak, strong)")
    ap.add_argument("--before", default="23a80d8")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    versions = {"before": module_at(args.before), "now": now}
    loaded = cached_model(None, "cpu", "bf16")
    counts = {c: args.n if c in ("weak", "strong") else 0 for c in BENCH_CLASSES}
    spent = {k: 0.0 for k in versions}
    for k, (cls, seed, c) in enumerate(fixed_set(TEST_SEED0, counts, 64)):
        st = predict_start(loaded, c.intensity, c.mask.bool(), seed=0)
        obj = st.obj * st.support
        data = now.blur(c.intensity, (0.0, 0.9, 1.4)) if k % 2 == 0 else c.intensity
        mask = c.mask.bool()
        i0 = _intensity_of(torch.fft.ifftshift(obj))
        meas = prepare_measured(data, mask)
        out = {}
        for name, mod in versions.items():
            t0 = time.perf_counter()
            hyp = mod.detector_blur_of(obj, data, mask)
            wide = mod.estimate_sigma(i0, meas)
            local = mod.estimate_sigma(i0, meas, wide, wide=False)
            spent[name] += time.perf_counter() - t0
            out[name] = (hyp, wide, local)
        print(f"{cls} {seed} blurred={k % 2 == 0}: same={out['before'] == out['now']} "
              f"{out['now']}", flush=True)
    print("seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in spent.items())
          + f" (x{spent['before'] / spent['now']:.2f})", flush=True)


if __name__ == "__main__":
    main()
