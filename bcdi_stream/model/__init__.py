"""Reciprocal-space phase prediction (Masto et al.): the 3D UNet and the WCA loss.

Work in progress for the model issue: the network and the loss are here and tested; training,
shipped weights and ``--method ai`` are not yet wired (see docs/MODEL_RESEARCH.md).
"""

from ._loss import log_minmax, shell_agreement, shell_index, wca, wca_loss
from ._unet import UNet3D, UNetConfig, count_flops, count_parameters

__all__ = [
    "UNet3D",
    "UNetConfig",
    "count_flops",
    "count_parameters",
    "log_minmax",
    "shell_agreement",
    "shell_index",
    "wca",
    "wca_loss",
]
