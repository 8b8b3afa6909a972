"""Post-processing of reconstructions and quality metrics against the ground truth.

Torch, device-agnostic; arrays have their spatial axes ``(z, y, x)`` last. Conventions (units,
NaN outside the support, strain sign) are in :mod:`bcdi_stream.analysis._postprocess`.
"""

from bcdi_stream.analysis._crystal_support import crystal_support
from bcdi_stream.analysis._metrics import (
    Metrics,
    align_to_truth,
    compare,
    phase_rmse,
    strain_rmse,
    support_iou,
    truth_phase_rms,
)
from bcdi_stream.analysis._postprocess import (
    PostProcessed,
    center_object,
    choose_twin,
    displacement,
    estimate_phase_ramp,
    mirror,
    phase_gradient,
    postprocess,
    remove_phase_offset,
    remove_phase_ramp,
    strain,
    support_from_amplitude,
    unwrap_phase,
)

__all__ = [
    "Metrics",
    "PostProcessed",
    "align_to_truth",
    "center_object",
    "choose_twin",
    "compare",
    "crystal_support",
    "displacement",
    "estimate_phase_ramp",
    "mirror",
    "phase_gradient",
    "phase_rmse",
    "postprocess",
    "remove_phase_offset",
    "remove_phase_ramp",
    "strain",
    "strain_rmse",
    "support_from_amplitude",
    "support_iou",
    "truth_phase_rms",
    "unwrap_phase",
]
