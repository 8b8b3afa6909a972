"""Prepared GPU training run for a session lent a device machine (see docs/MODEL_CARD.md).

Runs :func:`bcdi_stream.training.train` on the device for a fixed wall-time budget, then puts
what must come back in ``--out`` (the device tool returns at most 8 files of 16 MiB): the
exported weights (float16; cut into ``.partK`` files when larger, :func:`split_for_return`),
the validation log, the console log and a JSON summary. The full
checkpoint (model + optimiser) stays behind when it is larger than 16 MiB, so the schedule must
finish inside ``--minutes`` (then the weights are final): ``--steps 0`` sizes it from a probe of
the step time on the device.

Needs only torch, numpy and scipy (what the device image has): run it from the repository root
with ``PYTHONPATH=.``; ``benchmarks/training/device_session.sh`` is the prepared call, e.g.::

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/training/device_train.py \\
        --out $OUT --minutes 8.5 --steps 0 --batch-size 32 --workers 15 --reuse 4 \\
        --channels 32,64,128,256 --dislocations 0.4 --precision bf16

and on a CPU, as a smoke test::

    PYTHONPATH=. python benchmarks/training/device_train.py --out /tmp/dev --device cpu \\
        --steps 2 --batch-size 1 --channels 4,8 --val 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

RETURN_LIMIT = 16 * 2**20  # bytes per file the device tool brings back
SCHEDULE_SHARE = 0.88  # of the time left after the probe: the rest covers validation and export


def split_for_return(path: Path, limit: int = RETURN_LIMIT) -> list[Path]:
    """Cut ``path`` into ``NAME.part0``, ``NAME.part1``, … of at most ``limit`` bytes when it is
    larger (the device tool brings back files of at most 16 MiB; v3 widened to 40-80-160-320
    has 22 MB of weights) and remove it; ``cat NAME.part* > NAME`` joins them (fewer than ten
    parts, so the shell's order is theirs). Returns the files that now hold it.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    size = path.stat().st_size
    if size <= limit:
        return [path]
    count = -(-size // limit)
    if count > 9:
        raise ValueError(f"{path} ({size} bytes) would need {count} parts of {limit} bytes")
    parts = []
    with path.open("rb") as f:
        for k in range(count):
            part = path.with_name(f"{path.name}.part{k}")
            part.write_bytes(f.read(limit))
            parts.append(part)
    path.unlink()
    return parts


def probe_window(steps: int, workers: int, reuse: int) -> tuple[int, int]:
    """Steps to run and steps to leave untimed in the probe of a run with ``workers`` and ``reuse``.

    With worker processes the first round of batches (one per worker, simulated together)
    arrives in a burst whose spread, not the workers' throughput, sets the pace of the first
    ``workers * reuse`` steps: session 12's probe timed 40 steps inside that burst on an H200
    (15 workers, reuse 4) and read 0.158 s/step against the 0.045 the run then kept, so the
    schedule filled a quarter of its budget. The probe therefore runs at least four rounds and
    times the last three (and, without workers, leaves the first quarter, allocator and
    autotuning, untimed).
    """
    if steps < 8:
        raise ValueError(f"--probe-steps must be >= 8, got {steps}")
    rounds = max(workers, 1) * max(reuse, 1)
    total = max(steps, 4 * rounds) if workers else steps
    skip = max(total // 4, rounds if workers else 0)
    return total, skip


def probe_step_time(cfg: Any, run_dir: Path, steps: int) -> float:
    """Seconds per training step of ``cfg`` on its device, from a throw-away run.

    Runs :func:`probe_window` ``(steps, cfg.workers, cfg.reuse)`` steps and times the
    steady part. The probe draws the class mix of the schedule's end (no curriculum: the most
    strong crystals, the dearest to simulate), so that a run whose simulation sets the pace
    fits its budget.
    """
    from bcdi_stream.training import train

    total, skip = probe_window(steps, cfg.workers, cfg.reuse)
    stamps: list[float] = []
    probe = dataclasses.replace(cfg, steps=10**6, val_every=10**6, checkpoint_every=10**6,
                                val_counts={"weak": 1}, curriculum=0.0)
    train(probe, run_dir, progress=lambda *_: stamps.append(time.perf_counter()),
          until_step=total)
    shutil.rmtree(run_dir)
    return (stamps[-1] - stamps[skip - 1]) / (total - skip)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder of what comes back ($OUT)")
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/bcdi-train"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-time budget of training")
    ap.add_argument("--steps", type=int, default=3000,
                    help="schedule length; 0: sized to --minutes from a probe of --probe-steps "
                    "steps on this device (the cosine schedule then ends inside the budget)")
    ap.add_argument("--probe-steps", type=int, default=40)
    ap.add_argument("--until-step", type=int, default=None,
                    help="stop at this step of the schedule (to replay a run stopped by time)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--channels", default="32,64,128,256")
    ap.add_argument("--strong-share", type=float, default=0.5)
    ap.add_argument("--curriculum", type=float, default=0.3)
    ap.add_argument("--dislocations", type=float, default=None,
                    help="odds of dislocations in every strain class (default: the "
                    "simulator's, weak 0, medium 0.15, strong 0.35)")
    ap.add_argument("--faults", type=float, default=None,
                    help="odds of a planar defect (stacking fault, twin lamella) in every "
                    "strain class (default: none); the validation then adds medium+fault")
    ap.add_argument("--loops", type=float, default=None,
                    help="odds of a dislocation loop in every strain class (default: none); "
                    "the validation then adds medium+loop")
    ap.add_argument("--fields", type=float, default=None,
                    help="odds that the smooth strain is the random field alone, in every "
                    "strain class (default: the mixture, ~1 in 6); the validation then adds "
                    "strong+field")
    ap.add_argument("--networks", type=float, default=None,
                    help="odds of a dislocation network (3-4 straight dislocations) in every "
                    "strain class (default: none); the validation then adds medium+net")
    ap.add_argument("--coherence", type=float, default=None,
                    help="odds of partial coherence beyond the detector blur (along a random "
                    "direction in the detector plane or along the rocking axis) in every strain "
                    "class (default: none); the validation then adds medium+coh")
    ap.add_argument("--habits", type=float, default=None,
                    help="odds of a needle (a rod of aspect 3-5) or a thin plate (a platelet "
                    "0.1-0.2 thick) in every strain class (default: none); the validation then "
                    "adds medium+habit")
    ap.add_argument("--polynomials", type=float, default=None,
                    help="odds that the smooth strain is a low-order polynomial field alone (a "
                    "bending, a torsion or a random quadratic and cubic field) in every strain "
                    "class (default: none); the validation then adds strong+poly")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: convolutions under bfloat16 autocast (TrainConfig.precision)")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes simulating the crystals on the CPU (TrainConfig.workers)")
    ap.add_argument("--reuse", type=int, default=1,
                    help="steps per simulated batch, under other symmetries (TrainConfig.reuse)")
    ap.add_argument("--init-from", default="", help="weights/checkpoint to fine-tune")
    ap.add_argument("--widen", default="",
                    help="with --init-from: widen its trunk to these channels (TrainConfig.widen)")
    ap.add_argument("--first-sample", type=int, default=0)
    ap.add_argument("--val", type=int, default=6,
                    help="validation crystals per class (weak, strong, weak+disl, medium+disl; "
                    "with --faults also medium+fault, with --loops medium+loop, with --fields "
                    "strong+field, with --networks medium+net, with --coherence medium+coh, "
                    "with --habits medium+habit, with --polynomials strong+poly)")
    ap.add_argument("--val-every", type=int, default=250)
    args = ap.parse_args()

    import torch

    from bcdi_stream.model import ModelConfig, UNetConfig, export_weights, read_torch_file
    from bcdi_stream.training import TrainConfig, train

    if args.init_from and Path(args.init_from).resolve().is_relative_to(args.run_dir.resolve()):
        raise SystemExit(f"--init-from {args.init_from} lies in --run-dir {args.run_dir}, which "
                         "a run empties first: give this run another --run-dir")
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    channels = tuple(int(c) for c in args.channels.split(","))
    cfg = TrainConfig(
        model=ModelConfig(unet=UNetConfig(channels=channels)), steps=args.steps or 1,
        batch_size=args.batch_size, lr=args.lr, curriculum=args.curriculum,
        strong_share=args.strong_share, val_every=args.val_every,
        checkpoint_every=max(50, args.val_every),
        val_counts=dict.fromkeys(("weak", "strong", "weak+disl", "medium+disl")
                                 + (("medium+fault",) if args.faults else ())
                                 + (("medium+loop",) if args.loops else ())
                                 + (("strong+field",) if args.fields else ())
                                 + (("medium+net",) if args.networks else ())
                                 + (("medium+coh",) if args.coherence else ())
                                 + (("medium+habit",) if args.habits else ())
                                 + (("strong+poly",) if args.polynomials else ()), args.val),
        dislocation_probability=args.dislocations, fault_probability=args.faults,
        loop_probability=args.loops, field_probability=args.fields,
        network_probability=args.networks, coherence_probability=args.coherence,
        habit_probability=args.habits, polynomial_probability=args.polynomials,
        device=args.device, init_from=args.init_from,
        first_sample=args.first_sample,
        precision=args.precision, workers=args.workers,
        reuse=args.reuse, widen=tuple(int(c) for c in args.widen.split(",") if c.strip()),
    )
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    console_path = args.out / "train.out"
    probe_dir = args.run_dir.with_name(args.run_dir.name + "-probe")
    per_step = None
    if args.steps == 0:
        try:
            per_step = probe_step_time(cfg, probe_dir, args.probe_steps)
        except Exception:  # an untried precision on this device: say so, go on in fp32
            if cfg.precision == "fp32":
                raise
            print(f"{cfg.precision} failed on this device; training in fp32:\n"
                  + traceback.format_exc(), flush=True)
            cfg = dataclasses.replace(cfg, precision="fp32")
            shutil.rmtree(probe_dir, ignore_errors=True)
            per_step = probe_step_time(cfg, probe_dir, args.probe_steps)
        left = 60 * args.minutes - (time.perf_counter() - t0)
        if left <= 0:
            raise SystemExit(f"the probe took the whole budget (--minutes {args.minutes}): "
                             f"{per_step:.3f} s/step")
        cfg = dataclasses.replace(cfg, steps=max(1, int(SCHEDULE_SHARE * left / per_step)))
        line = (f"probe: {per_step:.4f} s/step ({cfg.precision}, batch {cfg.batch_size}); "
                f"{cfg.steps} steps in the {left:.0f} s left")
        print(line, flush=True)
        console_path.write_text(line + "\n")

    def tick(step: int, total: int, info: dict) -> None:
        wca = {k.removeprefix("wca_"): v for k, v in info.items() if k.startswith("wca_")}
        if wca or step == 1:
            line = (f"{time.strftime('%H:%M:%S')} step {step}/{total} loss {info['loss']:.4f} "
                    + ("WCA " + ", ".join(f"{k} {v:.3f}" for k, v in wca.items()) + " "
                       if wca else "")
                    + f"{time.perf_counter() - t0:.0f} s")
            print(f"[{args.out.name}] {line}", flush=True)
            with console_path.open("a") as console:
                console.write(line + "\n")

    res = train(cfg, args.run_dir, progress=tick, until_step=args.until_step,
                max_minutes=max(args.minutes - (time.perf_counter() - t0) / 60, 0.01))
    ck = args.run_dir / "last.pt"
    checkpoint = read_torch_file(ck, "checkpoint")
    weights = export_weights(checkpoint, args.out / f"weights-step{res.step}.pt")
    weights_mb = round(weights.stat().st_size / 1e6, 2)
    parts = split_for_return(weights)
    shutil.copy(args.run_dir / "log.jsonl", args.out / "log.jsonl")
    if ck.stat().st_size <= RETURN_LIMIT:
        shutil.copy(ck, args.out / "last.pt")
    summary = {"step": res.step, "steps": cfg.steps, "complete": res.step >= cfg.steps,
               "samples": res.samples, "wall_s": round(res.wall_s, 1), "val": res.val,
               "device": str(torch.cuda.get_device_name(0)) if torch.cuda.is_available()
               else "cpu", "weights": weights.name,
               "weights_mb": weights_mb,
               "weights_parts": [p.name for p in parts] if parts != [weights] else [],
               "probe_s_per_step": per_step,
               "run_s_per_step": round(res.wall_s / max(res.step, 1), 4),
               # the checkpoint's: with --init-from the model is the parent's (widened or not)
               "train_config": checkpoint["train_config"]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("step", "complete", "samples", "wall_s", "val")}))


if __name__ == "__main__":
    main()
