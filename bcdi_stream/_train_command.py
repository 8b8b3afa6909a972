"""``bcdi-stream train``: the command-line front of :func:`bcdi_stream.training.train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["train_command"]


def _fail(reason: object) -> None:
    typer.echo(f"bcdi-stream: error: {' '.join(str(reason).split())}", err=True)
    raise typer.Exit(2)


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        _fail(f"{name} must be comma-separated integers, got {text!r}")
    if not vals:
        _fail(f"{name} must list at least one integer, got {text!r}")
    return vals


def _counts(text: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not (key and sep and value.isdigit()):
            _fail(f"{name} must be class=count pairs separated by commas, got {text!r}")
        out[key] = int(value)
    return out


def train_command(
    out_dir: Annotated[Path, typer.Argument(help="Run directory: last.pt, log.jsonl.")],
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 2400,
    batch_size: Annotated[int, typer.Option(min=1, help="Crystals per step.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine).")] = 2e-3,
    kind: Annotated[str, typer.Option(help="Model kind: patterson or direct.")] = "patterson",
    channels: Annotated[str, typer.Option(help="UNet channels per level.")] = "16,32,64,128",
    blocks: Annotated[int, typer.Option(min=1, help="Conv blocks per level.")] = 2,
    curriculum: Annotated[float, typer.Option(help="Fraction of the run ramping strain up.")
                          ] = 0.3,
    strong_share: Annotated[float, typer.Option(
        help="Share of strongly strained crystals after the curriculum (rest: weak and "
        "medium, half each).")] = 0.5,
    dislocations: Annotated[float | None, typer.Option(
        help="Odds of 1-2 dislocations in a training crystal, in every "
        "strain class (default: the simulator's: weak 0, medium 0.15, strong 0.35).")] = None,
    faults: Annotated[float | None, typer.Option(
        help="Odds of a planar defect (stacking fault or twin lamella) in a training crystal, "
        "in every strain class (default: none).")] = None,
    loops: Annotated[float | None, typer.Option(
        help="Odds of a dislocation loop in a training crystal, in every strain class "
        "(default: none).")] = None,
    fields: Annotated[float | None, typer.Option(
        help="Odds that a training crystal's smooth strain is the Gaussian random field alone, "
        "in every strain class (default: the simulator's mixture, about 1 in 6).")] = None,
    networks: Annotated[float | None, typer.Option(
        help="Odds of a dislocation network (3-4 straight dislocations) in a training crystal, "
        "in every strain class (default: none).")] = None,
    coherence: Annotated[float | None, typer.Option(
        help="Odds of partial coherence beyond the detector blur in a training pattern (along "
        "a random direction in the detector plane or along the rocking axis), in every strain "
        "class (default: none).")] = None,
    habits: Annotated[float | None, typer.Option(
        help="Odds that a training crystal is a needle (a rod of aspect 3-5) or a thin plate (a "
        "platelet 0.1-0.2 thick), habits beyond the simulator's default ranges, in every strain "
        "class (default: none).")] = None,
    polynomials: Annotated[float | None, typer.Option(
        help="Odds that a training crystal's smooth strain is a low-order polynomial field "
        "alone (a bending, a torsion or a random quadratic and cubic field), in every strain "
        "class (default: none).")] = None,
    val: Annotated[str, typer.Option(
        help="Validation crystals per class, e.g. weak=6,strong=6,weak+disl=6 (+field, first: "
        "the smooth strain is the random field alone; +poly, after it: a low-order polynomial "
        "field alone; a +disl class: every crystal with "
        "dislocations; +fault, also after +disl: every crystal with a planar defect; +loop: "
        "every crystal with a dislocation loop; +net: every crystal with a dislocation "
        "network; +coh: every pattern with partial coherence; +habit, last: every crystal a "
        "needle or a thin plate).")
    ] = "weak=6,strong=6",
    object_weight: Annotated[float, typer.Option(help="Weight of the real-space loss.")] = 1.0,
    val_every: Annotated[int, typer.Option(min=1, help="Steps between validations.")] = 100,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")
                                ] = 50,
    seed: Annotated[int, typer.Option(help="Weight-initialisation seed.")] = 0,
    threads: Annotated[int, typer.Option(
        min=0, help="CPU threads (0: default; on a busy 2-core machine use 1).")] = 0,
    workers: Annotated[int | None, typer.Option(
        min=0, help="Processes simulating the crystals on the CPU (0: the training process, on "
        "--device); a GPU run needs them, simulation sets its pace. Default: 0, or on "
        "--resume the checkpoint's.", show_default=False)] = None,
    reuse: Annotated[int, typer.Option(
        min=1, help="Steps per simulated batch: its crystals come back under other grid "
        "symmetries (reflections, y/x swap) for reuse - 1 more steps.")] = 1,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop (after a checkpoint) after this many minutes; continue with --resume.")
    ] = None,
    until_step: Annotated[int | None, typer.Option(
        min=1, help="Stop at this step (the schedule still spans --steps); --export then "
        "exports that checkpoint.")] = None,
    device: Annotated[str, typer.Option(
        help="auto (CUDA when present), cpu, cuda, cuda:1...: where the model trains and the "
        "crystals are simulated (overrides the checkpoint's on --resume).")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from OUT_DIR/last.pt.")] = False,
    init_from: Annotated[Path | None, typer.Option(
        help="Fine-tune: start from these weights (.pt weights file or checkpoint); the model "
        "architecture is taken from it (--kind/--channels/--blocks ignored).")] = None,
    widen: Annotated[str, typer.Option(
        help="With --init-from: widen its trunk to these channels per level (e.g. "
        "40,80,160,320) without changing what it computes, then train.")] = "",
    first_sample: Annotated[int, typer.Option(
        min=0, help="Index of the first training crystal (a fine-tune starts after its "
        "parent's crystals).")] = 0,
    precision: Annotated[str, typer.Option(
        help="fp32, or bf16: the convolutions under bfloat16 autocast (faster on CPUs with "
        "AMX/AVX-512 BF16 and on GPUs; weights, loss and optimiser stay float32).")] = "fp32",
    export: Annotated[Path | None, typer.Option(
        help="When the run is complete, write the weights file here (.pt).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train the phase-prediction model on crystals simulated on the fly (resumable)."""
    import torch

    from bcdi_stream.model import ModelConfig, UNetConfig, export_weights, read_torch_file
    from bcdi_stream.training import TrainConfig, train

    try:
        cfg = TrainConfig(
            model=ModelConfig(kind=kind, unet=UNetConfig(channels=_ints(channels, "--channels"),
                                                         blocks=blocks)),
            steps=steps, batch_size=batch_size, lr=lr, curriculum=curriculum,
            strong_share=strong_share, dislocation_probability=dislocations,
            fault_probability=faults, loop_probability=loops, field_probability=fields,
            network_probability=networks, coherence_probability=coherence,
            habit_probability=habits, polynomial_probability=polynomials,
            val_counts=_counts(val, "--val"),
            object_weight=object_weight, val_every=val_every,
            checkpoint_every=checkpoint_every, seed=seed, threads=threads,
            init_from=str(init_from) if init_from is not None else "", device=device,
            first_sample=first_sample, precision=precision, workers=workers or 0,
            reuse=reuse, widen=_ints(widen, "--widen") if widen else (),
        )
    except ValueError as exc:
        _fail(exc)
    from bcdi_stream.arrays import resolve_device

    try:
        resolve_device(device)
    except ValueError as exc:
        _fail(f"--device: {exc}")
    if init_from is not None and not resume and not init_from.is_file():
        _fail(f"--init-from {init_from} does not exist")
    if export is not None and export.suffix != ".pt":
        _fail(f"--export must end in .pt, got {export.name}")
    if threads:
        torch.set_num_threads(threads)

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                   TimeRemainingColumn(), disable=not progress)
    with bar:
        task = bar.add_task("train", total=cfg.steps, loss=float("nan"))

        def tick(step: int, total: int, info: dict) -> None:
            bar.update(task, completed=step, total=total, loss=info["loss"])
            wca = {k.removeprefix("wca_"): v for k, v in info.items() if k.startswith("wca_")}
            if wca:
                bar.console.log(f"step {step}: WCA "
                                + ", ".join(f"{k} {v:.3f}" for k, v in wca.items()))

        try:
            res = train(cfg, out_dir, resume=resume, progress=tick, max_minutes=max_minutes,
                        threads=threads or None, until_step=until_step, device=device,
                        workers=workers)
        except ValueError as exc:
            _fail(exc)
    typer.echo(json.dumps({"checkpoint": str(res.checkpoint), "step": res.step,
                           "samples": res.samples, "wall_s": round(res.wall_s, 1),
                           "val": res.val}))
    ck = read_torch_file(res.checkpoint, "checkpoint")
    done = res.step >= ck["train_config"]["steps"] or (
        until_step is not None and res.step >= until_step)
    if export is not None and done:
        path = export_weights(ck, export)
        typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    elif export is not None:
        typer.echo(f"run stopped at step {res.step}: resume with --resume before exporting",
                   err=True)


if __name__ == "__main__":  # python -m bcdi_stream._train_command
    typer.run(train_command)
