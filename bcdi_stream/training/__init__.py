"""Training the phase-prediction model on crystals simulated on the fly (``bcdi-stream train``)."""

from ._config import PRECISIONS, TrainConfig
from ._datasets import (
    DISLOCATED,
    FAULTED,
    MAX_MEAN_GRADIENT,
    N_SYMMETRIES,
    STRAIN_CLASSES,
    TEST_SEED0,
    TRAIN_SAMPLES,
    TRAIN_SEED0,
    VAL_SEED0,
    Batch,
    apply_symmetry,
    class_arguments,
    draw_batch,
    draw_crystal,
    fixed_set,
    training_batches,
)
from ._loop import TrainResult, batch_losses, load_checkpoint, train, validate

__all__ = [
    "DISLOCATED",
    "FAULTED",
    "MAX_MEAN_GRADIENT",
    "N_SYMMETRIES",
    "PRECISIONS",
    "STRAIN_CLASSES",
    "TEST_SEED0",
    "TRAIN_SAMPLES",
    "TRAIN_SEED0",
    "VAL_SEED0",
    "Batch",
    "TrainConfig",
    "TrainResult",
    "apply_symmetry",
    "batch_losses",
    "class_arguments",
    "draw_batch",
    "draw_crystal",
    "fixed_set",
    "load_checkpoint",
    "train",
    "training_batches",
    "validate",
]
