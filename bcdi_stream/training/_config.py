"""Training configuration (stored in every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..model import ModelConfig
from ._datasets import TRAIN_SAMPLES, class_arguments

__all__ = ["PRECISIONS", "TrainConfig"]

#: Training arithmetic (:attr:`TrainConfig.precision`).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """What ``bcdi-stream train`` does.

    Parameters
    ----------
    model : ModelConfig
        Architecture of the model trained.
    steps : int
        Optimiser steps (the learning-rate schedule spans them).
    batch_size : int
        Crystals per step (each simulated fresh).
    lr : float
        Peak learning rate (AdamW, linear warm-up then cosine decay to ``lr / 20``).
    weight_decay : float
        AdamW weight decay.
    warmup : int
        Warm-up steps.
    curriculum : float
        Fraction of the run over which the strong-strain share ramps from 10 % to
        ``strong_share``.
    strong_share : float
        Share of strongly strained crystals once the curriculum is over (the rest: weak and
        medium, half each).
    dislocation_probability : float or None
        Odds that a training crystal carries 1–2 dislocations, in every strain class (None:
        the simulator's odds: weak 0, medium 15 %, strong 35 %).
    fault_probability : float or None
        Odds that a training crystal carries a planar defect (a stacking fault or a twin
        lamella), in every strain class (None: none).
    loop_probability : float or None
        Odds that a training crystal carries a dislocation loop, in every strain class (None:
        none).
    field_probability : float or None
        Odds that a training crystal's smooth strain is the Gaussian random field alone, in
        every strain class (None: the simulator's mixture, which draws it alone in about one
        crystal in six).
    network_probability : float or None
        Odds that a training crystal carries a dislocation network (3–4 straight
        dislocations), in every strain class (None: none).
    coherence_probability : float or None
        Odds that a training pattern has partial coherence beyond the detector blur (along a
        random direction in the detector plane or along the rocking axis), in every strain
        class (None: none).
    habit_probability : float or None
        Odds that a training crystal is a needle or a thin plate (habits beyond the simulator's
        default ranges), in every strain class (None: none).
    polynomial_probability : float or None
        Odds that a training crystal's smooth strain is a low-order polynomial field alone (a
        bending, a torsion or a random quadratic and cubic field), in every strain class
        (None: none).
    val_every : int
        Steps between validations (and log lines with per-shell agreement).
    checkpoint_every : int
        Steps between checkpoints (``last.pt``, written atomically).
    val_counts : dict
        Validation crystals per strain class (seeds disjoint from training and test); a class
        name may carry the suffix ``"+disl"`` (every crystal with dislocations), then
        ``"+fault"`` (every crystal with a planar defect), then ``"+loop"`` (every crystal with
        a dislocation loop), then ``"+net"`` (every crystal with a dislocation network), then
        ``"+coh"`` (every pattern with partial coherence), then ``"+habit"`` (every crystal a
        needle or a thin plate).
    object_weight : float
        ``"patterson"`` models: weight of the real-space :func:`~bcdi_stream.model.object_loss`
        added to the WCA loss (dense, smooth supervision that makes CPU training feasible).
    threads : int
        torch CPU threads (0: torch's default).
    workers : int
        Processes simulating the training crystals on the CPU (0: the training process
        simulates them on ``device``); the same crystals either way. A GPU run needs them:
        simulation, not the network, sets its pace.
    reuse : int
        Steps per simulated batch: after its first step each crystal comes back under other
        grid symmetries that keep the rocking axis (reflections, swap of the detector axes;
        ``training_batches``), ``reuse`` samples per simulated crystal. 1: every step draws
        new crystals.
    device : str
        Where the model trains and the crystals are simulated: ``"auto"`` (CUDA when present,
        else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; what is learned does not depend
        on it beyond float rounding.
    seed : int
        Seed of the weight initialisation.
    init_from : str
        Fine-tune: start from the weights of this weights file or training checkpoint (its
        model configuration replaces ``model``); empty for a random initialisation.
    first_sample : int
        Index of the first training crystal (sample ``k`` uses seeds from
        ``TRAIN_SEED0 + 100 k``): a fine-tune starts after the crystals its parent run saw.
    precision : {"fp32", "bf16"}
        Arithmetic of the network's convolutions during training: ``"bf16"`` runs them under
        bfloat16 autocast (the features, the FFT read-out, the loss, the weights and the
        optimiser stay float32) — faster on CPUs with AMX/AVX-512 BF16 and on GPUs; the
        shipped weights are float32 either way and validation runs in float32.
    widen : tuple of int
        With ``init_from``: widen the parent's trunk to these channels per level before
        training, without changing what it computes (:func:`bcdi_stream.model.widen_model`),
        so that a wider model starts from the parent's skill; empty (default) keeps the
        parent's trunk.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 4000
    batch_size: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    curriculum: float = 0.3
    strong_share: float = 0.5
    dislocation_probability: float | None = None
    fault_probability: float | None = None
    loop_probability: float | None = None
    field_probability: float | None = None
    network_probability: float | None = None
    coherence_probability: float | None = None
    habit_probability: float | None = None
    polynomial_probability: float | None = None
    val_every: int = 100
    checkpoint_every: int = 50
    val_counts: dict[str, int] = field(default_factory=lambda: {"weak": 6, "strong": 6})
    object_weight: float = 1.0
    threads: int = 0
    workers: int = 0
    reuse: int = 1
    device: str = "auto"
    seed: int = 0
    init_from: str = ""
    first_sample: int = 0
    precision: str = "fp32"
    widen: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        for name in ("steps", "batch_size", "val_every", "checkpoint_every", "reuse"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if not 0 <= self.curriculum <= 1:
            raise ValueError(f"curriculum must be in [0, 1], got {self.curriculum}")
        if not 0 <= self.strong_share <= 1:
            raise ValueError(f"strong_share must be in [0, 1], got {self.strong_share}")
        # the training stream's odds: the same check as every class's simulator arguments
        class_arguments("weak", self.dislocation_probability, self.fault_probability,
                        self.loop_probability, self.field_probability,
                        self.network_probability, self.coherence_probability,
                        self.habit_probability, self.polynomial_probability)
        if not self.val_counts:
            raise ValueError("val_counts must name at least one strain class")
        for name, count in self.val_counts.items():
            class_arguments(name)
            if int(count) < 1:
                raise ValueError(f"val_counts[{name!r}] must be >= 1, got {count}")
        if self.object_weight < 0:
            raise ValueError(f"object_weight must be >= 0, got {self.object_weight}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not 0 <= self.first_sample < TRAIN_SAMPLES:
            raise ValueError(f"first_sample must be in [0, {TRAIN_SAMPLES:,}) (beyond, the "
                             f"seeds are validation seeds), got {self.first_sample}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.widen = tuple(int(c) for c in self.widen)
        if self.widen and not self.init_from:
            raise ValueError("widen needs init_from (the model to widen)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["widen"] = list(self.widen)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (checkpoints written before ``widen`` existed too)."""
        return cls(**d)
