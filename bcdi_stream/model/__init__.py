"""Reciprocal-space phase prediction (Masto et al.): the 3D UNet, the WCA loss, the predictor."""

from ._loss import (
    log_minmax,
    object_loss,
    shell_agreement,
    shell_index,
    twin_object,
    wca,
    wca_loss,
    wca_loss_phasor,
    wca_phasor,
)
from ._phase_model import MODEL_KINDS, ModelConfig, PhaseModel, patterson_features
from ._unet import UNet3D, UNetConfig, count_flops, count_parameters
from ._weights import (
    PRECISIONS,
    WEIGHTS_FORMAT,
    LoadedModel,
    default_weights_path,
    export_weights,
    load_model,
    model_available,
    read_torch_file,
)
from ._widen import widen_model

__all__ = [
    "MODEL_KINDS",
    "PRECISIONS",
    "WEIGHTS_FORMAT",
    "LoadedModel",
    "ModelConfig",
    "PhaseModel",
    "UNet3D",
    "UNetConfig",
    "count_flops",
    "count_parameters",
    "default_weights_path",
    "export_weights",
    "load_model",
    "log_minmax",
    "model_available",
    "object_loss",
    "patterson_features",
    "read_torch_file",
    "shell_agreement",
    "shell_index",
    "twin_object",
    "wca",
    "wca_loss",
    "wca_loss_phasor",
    "wca_phasor",
    "widen_model",
]
