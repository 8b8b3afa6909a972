"""Shared pieces of the research probes (imported by the scripts beside it, not by the package).

- :func:`finetune_arguments`, :func:`shipped_model_to_finetune`: the fine-tune probes start
  from the shipped weights with the same options (one thread, seeded, AdamW).
- :func:`report`: one JSON line per phased crystal against its ground truth.
- :func:`score_into`, :func:`print_totals`: the per-method columns ``[rmse, ok, llk]`` of the
  probes that compare refinements crystal by crystal, and their closing line.
- :func:`refine_from_phase`: one refinement run started from a given φ(q) with the measured
  modulus (the ceiling probes start from the true phase).
- :func:`timed_finetune`: the fine-tune loop (fresh crystals, a validation line every 100
  steps) shared by the fine-tune probes.
- :func:`add_class_options`, :func:`class_counts`: ``--classes class=count … --threads`` of
  the probes that walk the validation classes in ``fixed_set``'s order.
- :func:`scored_row`, :func:`print_rule_summaries`: one JSON line per crystal and rule of the
  probes that compare rules through the pipeline (the blur probes), and their closing lines.
- :func:`shipped_ai`: the shipped ``ai`` method (``phase_ai`` with the settings' options, some
  overridden, then ``pipeline.finish``) on one crystal, timed and scored.
- :func:`summary_line`: the closing line per variant of the probes that reconstruct through the
  pipeline (successes, median RMSE, median seconds).
- :func:`ai_calls`, :func:`blur_hypothesis_rule`: a function of ``bcdi_stream.ai_phasing``
  (the blur hypothesis: session 22's PSF probes) recorded, or replaced by another rule, for the
  length of a ``with`` block.
- :func:`benchmark_crystals`: the benchmark's fixed test crystals of the classes asked for;
  :func:`bench_class_arguments`: ``--cls --n`` of the probes that walk one of its classes.
- :func:`modulus`: the plain-torch modulus projection of the algorithm probes (the package's
  ``modulus_projection`` differs in its zero handling by float rounding, and HIO amplifies
  that: the probes keep their own so that their logged figures reproduce).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def finetune_arguments(doc: str, *, minutes: float, first_sample: int) -> argparse.ArgumentParser:
    """The options every fine-tune probe takes (``--minutes --strong-share --lr --first-sample
    --out``); the caller adds its own and parses."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=minutes)
    ap.add_argument("--strong-share", type=float, default=0.75)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--first-sample", type=int, default=first_sample,
                    help="training crystals start here (after those earlier runs saw)")
    ap.add_argument("--out", required=True)
    return ap


def add_class_options(ap: argparse.ArgumentParser) -> None:
    """``--classes class=count …`` (validation classes; a class may end in ``+disl``; a count of
    0 keeps a class's place in the seed order) and ``--threads``."""
    ap.add_argument("--classes", nargs="+", default=["weak=10", "strong=10"],
                    help="class=count (a class may end in +disl)")
    ap.add_argument("--threads", type=int, default=1)


def class_counts(args: argparse.Namespace) -> dict[str, int]:
    """Seed torch (0), set the threads, and return ``{class: count}`` from ``args.classes``."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    return {k: int(v) for k, v in (c.split("=") for c in args.classes)}


def bench_class_arguments(doc: str, default_cls: str) -> argparse.Namespace:
    """``--cls`` (the benchmark's ``weak`` or ``strong`` test class, ``default_cls`` by default)
    and ``--n`` (25), parsed; seeds torch (0) and runs it on one thread."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--cls", default=default_cls, choices=("weak", "strong"))
    ap.add_argument("--n", type=int, default=25)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return args


def shipped_model_to_finetune(lr: float) -> tuple[Any, torch.optim.Optimizer]:
    """A trainable copy of the shipped model (channels-last, train mode) and its optimiser;
    one torch thread, seed 0."""
    from bcdi_stream.ai_phasing import cached_model
    from bcdi_stream.model import PhaseModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    src = cached_model().model
    model = PhaseModel(src.config)
    model.load_state_dict(src.state_dict())
    model = model.to(memory_format=torch.channels_last_3d)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def modulus(rho: torch.Tensor, amp: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``P_M ρ`` of a centred object: the measured modulus on valid pixels, the current one
    elsewhere."""
    from bcdi_stream import physics

    psi = physics.fft_centered(rho)
    return physics.ifft_centered(torch.where(valid, psi * (amp / (psi.abs() + 1e-12)), psi))


def refine_from_phase(data: torch.Tensor, mask: torch.Tensor | None, phase_q: torch.Tensor,
                      settings: Any) -> Any:
    """One run of ``settings`` (a ``PhasingSettings``) from ``IFFT(√I·e^{iφ})`` and its
    shrink-wrap support (σ 2, threshold 0.2), no detwinning, seed 0, on the CPU."""
    from bcdi_stream import physics
    from bcdi_stream.phasing import run_conventional, shrinkwrap_support

    start = physics.ifft_centered(torch.polar(data.clamp_min(0).sqrt(), phase_q)
                                  ).to(torch.complex64)
    return run_conventional(data, mask, settings=settings, seed=0, device="cpu",
                            obj_init=start, support=shrinkwrap_support(start, 2.0, 0.2),
                            detwin=False)


def report(seed: int, obj: torch.Tensor, support: torch.Tensor, crystal: Any, t0: float) -> bool:
    """Score ``obj`` against the crystal's truth, print one JSON line, return the success."""
    from bcdi_stream.analysis import compare

    m = compare(obj, crystal.obj, crystal.support, recon_support=support)
    print(json.dumps({"seed": seed, "rmse": round(m.phase_rmse, 3),
                      "iou": round(m.support_iou, 2), "ok": bool(m.success),
                      "s": round(time.perf_counter() - t0, 1)}), flush=True)
    return bool(m.success)


def optimiser_step(model: Any, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward, clip the gradient norm to 1, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def log_line(f: Any, record: dict[str, Any]) -> None:
    """One JSON line, flushed (the logs are read while the probe runs)."""
    f.write(json.dumps(record) + "\n")
    f.flush()


def shipped_model_if(start: str) -> Any:
    """The shipped model when the probe starts from it (``start == "ai"``), else None;
    one torch thread either way."""
    torch.set_num_threads(1)
    if start != "ai":
        return None
    from bcdi_stream.ai_phasing import cached_model

    return cached_model()


def timed_finetune(model: Any, opt: torch.optim.Optimizer, args: argparse.Namespace,
                   loss_of: Any, f: Any, *, log_start: bool = False) -> int:
    """Fine-tune for ``args.minutes`` on fresh crystals (batches of 4 from
    ``args.first_sample``, strong share ``args.strong_share``); every 100 steps one line
    with the validation agreement (6 weak + 6 strong crystals) is written to ``f``.

    ``loss_of(model, batch)`` returns the loss. Returns the number of steps made.
    """
    from bcdi_stream.training._datasets import VAL_SEED0, fixed_set, training_batches
    from bcdi_stream.training._loop import validate

    val = list(fixed_set(VAL_SEED0, {"weak": 6, "strong": 6}))
    batches = training_batches(args.first_sample, 4, 1_000_000, 0.0, 64,
                               strong_share=args.strong_share)
    if log_start:
        log_line(f, {"step": 0, "wall_s": 0, **validate(model, val)})
    t0 = time.perf_counter()
    step = 0
    while time.perf_counter() - t0 < 60 * args.minutes:
        optimiser_step(model, opt, loss_of(model, next(batches)))
        step += 1
        if step % 100 == 0:
            rec = validate(model, val)  # restores the training mode
            log_line(f, {"step": step, "wall_s": round(time.perf_counter() - t0), **rec})
    return step


def score_into(row: dict[str, Any], totals: dict[str, int], name: str, result: Any,
               crystal: Any) -> None:
    """``row[name] = [phase RMSE, success, LLK]`` of ``result`` against the crystal's truth;
    ``totals[name]`` counts the successes."""
    from bcdi_stream.analysis import compare

    m = compare(result.obj, crystal.obj, crystal.support, recon_support=result.support)
    row[name] = [round(m.phase_rmse, 3), bool(m.success), round(result.llk, 2)]
    totals[name] += bool(m.success)


def print_totals(label: str, totals: dict[str, int], n: int) -> None:
    """The closing line: successes per method out of ``n``."""
    print(f"{label}: " + ", ".join(f"{k} {v}/{n}" for k, v in totals.items()), flush=True)


def scored_row(rows: list[dict[str, Any]], rec: Any, crystal: Any, seconds: float,
               **head: Any) -> None:
    """Score the reconstruction ``rec`` against ``crystal``'s truth, append ``{**head, rmse,
    iou, ok, s}`` to ``rows`` and print it as one JSON line."""
    from bcdi_stream.analysis import compare

    m = compare(rec.obj, crystal.obj, crystal.support, recon_support=rec.support)
    row = {**head, "rmse": round(m.phase_rmse, 3), "iou": round(m.support_iou, 2),
           "ok": bool(m.success), "s": round(seconds, 2)}
    rows.append(row)
    print(json.dumps(row), flush=True)


def print_rule_summaries(variant: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    """The closing :func:`summary_line` of each rule's rows for ``variant``."""
    for rule, rs in rows.items():
        print(summary_line(f"{variant} {rule}:", rs), flush=True)


def shipped_ai(crystal: Any, seed: int, loaded: Any, ai: Any, phasing: Any,
               **options: Any) -> tuple[Any, Any, float]:
    """The ``ai`` method as shipped on one crystal, one run on the CPU: ``phase_ai`` with
    ``phase_ai_options(ai)`` updated by ``options`` and ``phasing``'s settings (seed ``seed %
    100_000``), then :func:`bcdi_stream.pipeline.finish`. Returns the refinement's result, the
    finished object's metrics against the truth and the seconds of both steps."""
    from bcdi_stream.ai_phasing import phase_ai, phase_ai_options
    from bcdi_stream.analysis import compare
    from bcdi_stream.pipeline import finish

    c = crystal
    t0 = time.perf_counter()
    res, _ = phase_ai(c.intensity, c.mask, loaded=loaded, settings=phasing, seed=seed % 100_000,
                      device="cpu", **{**phase_ai_options(ai), **options})
    obj, sup = finish(res.obj, res.support, c.intensity, c.mask, phasing)
    dt = time.perf_counter() - t0
    return res, compare(obj, c.obj, c.support, recon_support=sup), dt


def summary_line(label: str, rows: list[dict[str, Any]]) -> str:
    """``label ok/n, median R rad, S s`` of rows holding ``ok``, ``rmse`` and ``s``."""
    return (f"{label} {sum(r['ok'] for r in rows)}/{len(rows)}, median "
            f"{statistics.median(r['rmse'] for r in rows):.3f} rad, "
            f"{statistics.median(r['s'] for r in rows):.2f} s")


@contextlib.contextmanager
def ai_calls(name: str, rule: Callable[..., Any] | None = None) -> Iterator[list[Any]]:
    """Inside the block, every call ``bcdi_stream.ai_phasing`` makes to its module-level
    function ``name`` goes to ``rule`` (default: the function itself) and what it returns is
    recorded; yields that list, and puts the shipped function back on the way out, even on an
    error."""
    import bcdi_stream.ai_phasing as aip

    shipped = getattr(aip, name)
    call = rule or shipped
    made: list[Any] = []

    def recorded(*args: Any, **kwargs: Any) -> Any:
        out = call(*args, **kwargs)
        made.append(out)
        return out

    setattr(aip, name, recorded)
    try:
        yield made
    finally:
        setattr(aip, name, shipped)


def blur_hypothesis_rule(rule: Callable[..., Any]) -> contextlib.AbstractContextManager[list[Any]]:
    """Inside the block, the ``ai`` method makes its blur hypothesis with ``rule`` (called as
    :func:`bcdi_stream.phasing.detector_blur_of` is); yields the list of what it returned
    (:func:`ai_calls`)."""
    return ai_calls("detector_blur_of", rule)


def benchmark_crystals(counts: dict[str, int]) -> Iterator[tuple[str, int, Any]]:
    """``(class, seed, crystal)`` of ``bcdi-stream benchmark model``'s fixed test set, ``counts``
    crystals of each named class (64³; every class keeps its seed range, as in the
    benchmark)."""
    from bcdi_stream.benchmarking._model import BENCH_CLASSES
    from bcdi_stream.training import TEST_SEED0, fixed_set

    unknown = set(counts) - set(BENCH_CLASSES)
    if unknown:
        raise ValueError(f"counts: classes must be among {BENCH_CLASSES}, got {sorted(unknown)}")
    return fixed_set(TEST_SEED0, {c: int(counts.get(c, 0)) for c in BENCH_CLASSES}, 64)
