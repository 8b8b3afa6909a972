"""The training loop: fresh simulated crystals, WCA loss, checkpoints, resume, logs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..arrays import resolve_device
from ..model import (
    PhaseModel,
    log_minmax,
    object_loss,
    read_torch_file,
    shell_agreement,
    wca_loss_phasor,
    wca_phasor,
)
from ._config import TrainConfig
from ._datasets import VAL_SEED0, Batch, fixed_set, training_batches

__all__ = ["TrainResult", "batch_losses", "load_checkpoint", "train", "validate"]

#: |q| shell edges (pixels) of the logged per-shell agreement.
SHELLS = (0, 2, 4, 8, 16, 24, 32, 64)


@dataclass
class TrainResult:
    """Outcome of :func:`train`: where things are and the last figures."""

    checkpoint: Path
    step: int
    samples: int
    wall_s: float
    val: dict[str, Any]


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    lo = cfg.lr / 20
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * min(1.0, t)))


def _save(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _to(c: Any, dev: torch.device) -> Any:
    """A simulated crystal with the tensors the validation uses on ``dev``."""
    if dev.type == "cpu":
        return c
    return dataclasses.replace(c, intensity=c.intensity.to(dev), phase_q=c.phase_q.to(dev))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``last.pt``) written by :func:`train`."""
    path = Path(path)
    ck = read_torch_file(path, "checkpoint")
    if not isinstance(ck, dict) or "train_config" not in ck or "state_dict" not in ck:
        raise ValueError(f"{path} is not a bcdi-stream training checkpoint")
    return ck


def batch_losses(model: PhaseModel, batch: Batch, config: TrainConfig
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training loss of one batch: ``(total, WCA loss, object loss)``.

    The network runs under bfloat16 autocast when ``config.precision`` is ``"bf16"``; its
    output, the FFT read-out and the losses are float32 either way.

    Parameters
    ----------
    model : PhaseModel
        The model, in training mode.
    batch : Batch
        Intensities, true phases and objects, on the model's device.
    config : TrainConfig
        ``object_weight`` and ``precision``.
    """
    dev = batch.intensity.device
    use_obj = config.model.kind == "patterson" and config.object_weight > 0
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        if use_obj:
            obj = model.forward_object(batch.intensity)
        else:
            u = model(batch.intensity)
    if use_obj:
        u = model.phasor_of(obj)
        l_obj = object_loss(obj, batch.obj)
    else:
        l_obj = torch.zeros((), device=dev)
    l_wca = wca_loss_phasor(batch.phase_q, u, log_minmax(batch.intensity))
    return l_wca + config.object_weight * l_obj, l_wca, l_obj


@torch.no_grad()
def validate(model: PhaseModel, val: list[tuple[str, int, Any]]) -> dict[str, Any]:
    """Mean WCA per strain class and per-|q|-shell agreement on a fixed validation set."""
    was = model.training
    model.eval()
    by_class: dict[str, list[float]] = {}
    shells: dict[str, list[list[float]]] = {}
    for name, _seed, c in val:
        i = c.intensity[None]
        with torch.no_grad():
            u = model(i)
        w = log_minmax(i)
        by_class.setdefault(name, []).append(float(wca_phasor(c.phase_q[None], u, w)[0]))
        shells.setdefault(name, []).append(
            shell_agreement(c.phase_q[None], torch.angle(u), w, SHELLS)
        )
    model.train(was)
    out: dict[str, Any] = {}
    for name, vals in by_class.items():
        out[f"wca_{name}"] = round(sum(vals) / len(vals), 4)
        cols = list(zip(*shells[name], strict=True))
        out[f"shells_{name}"] = [round(sum(c) / len(c), 3) for c in cols]
    out["shell_edges"] = list(SHELLS)
    return out


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
          progress: Callable[[int, int, dict[str, Any]], None] | None = None,
          max_minutes: float | None = None, threads: int | None = None,
          until_step: int | None = None, device: str | None = None,
          workers: int | None = None) -> TrainResult:
    """Train a :class:`~bcdi_stream.model.PhaseModel` on crystals simulated on the fly.

    Parameters
    ----------
    config : TrainConfig
        What to train and how (ignored on ``resume``: the checkpoint's config is used).
    out_dir : str or Path
        Receives ``last.pt`` (checkpoint, every ``config.checkpoint_every`` steps and at the
        end) and ``log.jsonl`` (one JSON line per validation and per checkpoint).
    resume : bool
        Continue from ``out_dir/last.pt`` (model, optimiser, step, sample counter, RNG).
    progress : callable, optional
        ``progress(step, steps, info)`` after each step.
    max_minutes : float, optional
        Stop (after a validation and a checkpoint) once this much wall time has passed in
        this call; resume later with ``resume=True``.
    until_step : int, optional
        Stop (after a checkpoint) at this step, before the end of the schedule (the
        learning-rate schedule still spans ``config.steps``); resume later to go on.
    threads : int, optional
        torch CPU threads for this call (overrides ``config.threads``, also on resume; the
        thread count does not change what is learned, only the speed).
    device : str, optional
        Overrides ``config.device`` (also on resume, e.g. to continue a CPU run on a GPU).
    workers : int, optional
        Overrides ``config.workers`` (also on resume; like ``threads``, only the speed).

    Returns
    -------
    TrainResult
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "last.pt"
    log_path = out / "log.jsonl"
    if resume:
        ck = load_checkpoint(ck_path)
        config = TrainConfig.from_dict(ck["train_config"])
    elif ck_path.exists():
        raise ValueError(f"{ck_path} exists: pass resume=True (--resume) or another out_dir")
    if until_step is not None and until_step < 1:
        raise ValueError(f"until_step must be >= 1, got {until_step}")
    if max_minutes is not None and max_minutes <= 0:
        raise ValueError(f"max_minutes must be > 0, got {max_minutes}")
    if threads is not None and threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    dev = resolve_device(config.device if device is None else device)
    n_threads = config.threads if threads is None else threads
    if n_threads:
        torch.set_num_threads(n_threads)
    torch.manual_seed(config.seed)
    parent = None
    if config.init_from and not resume:
        from ..model import load_model, widen_model

        parent = load_model(config.init_from, "cpu").model
        if config.widen:
            parent = widen_model(parent, config.widen, seed=config.seed)
        config = dataclasses.replace(config, model=parent.config)  # not the caller's
    model = PhaseModel(config.model)
    if parent is not None:
        model.load_state_dict(parent.state_dict())
        del parent
    model = model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    step = 0
    samples = config.first_sample
    wall_before = 0.0
    if resume:
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        step, samples, wall_before = ck["step"], ck["samples"], ck["wall_s"]
        torch.set_rng_state(ck["torch_rng"])
    model = model.to(memory_format=torch.channels_last_3d)
    model.train()
    val = [(name, seed, _to(c, dev))
           for name, seed, c in fixed_set(VAL_SEED0, config.val_counts, config.model.grid)]
    t0 = time.perf_counter()

    def checkpoint(extra: dict[str, Any]) -> None:
        wall = wall_before + time.perf_counter() - t0
        _save(ck_path, {
            "train_config": config.to_dict(),
            "model_config": config.model.to_dict(),
            "state_dict": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "samples": samples,
            "wall_s": wall,
            "torch_rng": torch.get_rng_state(),
            "val": extra.get("val"),
        })

    def log(rec: dict[str, Any]) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    last_val: dict[str, Any] = {}
    running: list[float] = []
    running_obj: list[float] = []
    # ``samples`` counts the distinct crystals drawn; with reuse a resumed run re-draws the
    # crystals of the group it stopped in
    group_first = samples - config.batch_size if step % config.reuse else samples
    batches = training_batches(group_first, config.batch_size, config.steps,
                               config.curriculum, config.model.grid, start_step=step, device=dev,
                               reuse=config.reuse,
                               strong_share=config.strong_share,
                               dislocation_probability=config.dislocation_probability,
                               fault_probability=config.fault_probability,
                               loop_probability=config.loop_probability,
                               field_probability=config.field_probability,
                               network_probability=config.network_probability,
                               coherence_probability=config.coherence_probability,
                               habit_probability=config.habit_probability,
                               polynomial_probability=config.polynomial_probability,
                               workers=config.workers if workers is None else workers)
    while step < config.steps and (until_step is None or step < until_step):
        batch = next(batches)
        for g in opt.param_groups:
            g["lr"] = _lr(config, step)
        loss, l_wca, l_obj = batch_losses(model, batch, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % config.reuse == 0:
            samples += len(batch.seeds)
        step += 1
        running.append(float(l_wca.detach()))
        running_obj.append(float(l_obj.detach()))
        wall = wall_before + time.perf_counter() - t0
        info = {"loss": running[-1], "lr": opt.param_groups[0]["lr"], "wall_s": wall}
        at_stop = until_step is not None and step >= until_step
        time_up = max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes
        if step % config.val_every == 0 or step == config.steps or at_stop or time_up:
            last_val = validate(model, val)
            rec = {"step": step, "samples": samples, "wall_s": round(wall, 1),
                   "loss": round(sum(running) / len(running), 4),
                   "object_loss": round(sum(running_obj) / len(running_obj), 4),
                   "lr": round(info["lr"], 6), **last_val}
            running, running_obj = [], []
            log(rec)
            info.update(last_val)
        stop_now = at_stop or time_up
        if step % config.checkpoint_every == 0 or step == config.steps or stop_now:
            checkpoint({"val": last_val})
        if progress is not None:
            progress(step, config.steps, info)
        if stop_now:
            break
    batches.close()  # stops the simulation workers, if any
    return TrainResult(ck_path, step, samples, wall_before + time.perf_counter() - t0, last_val)
