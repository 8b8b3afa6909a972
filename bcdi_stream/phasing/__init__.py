"""Phase retrieval engine: ER / HIO / RAAR, shrink-wrap, LLK / chi2, the conventional recipe.

Everything is torch and device-agnostic (CPU, or CUDA when present) and batched over a leading
dimension of independent runs. Arrays follow :mod:`bcdi_stream.physics`: the object and the
intensity are *centred*; internally the object stays centred and the measured modulus is kept
in FFT (``ifftshift``) layout, so an iteration needs no shift.

Main entry points
-----------------
:func:`run_conventional`
    PyNX-style recipe: N random starts (a batch), RAAR/HIO/ER + shrink-wrap + detwin, best LLK.
:func:`refine_er`
    Error reduction from an initial guess (used by the AI method).
:func:`denoise`
    The noise filter of a finished reconstruction (a Wiener gain from the measured counts).
"""

from ._denoise import apply_noise_filter, denoise, wiener_filter
from ._engine import ALGORITHMS
from ._operators import er, hio, modulus_projection, raar, support_projection
from ._psf import blur_fit_of, deconvolve, detector_blur_of, psf_params
from ._quality import (
    MISFIT_FLOOR,
    SUPPORT_FRACTION_MAX,
    chi2,
    excess_misfit,
    fourier_error,
    poisson_amplitude_floor,
    poisson_llk,
)
from ._recipe import PhasingResult, refine_er, resolve_compile, run_conventional, warmup
from ._support import autocorrelation_support, gaussian_smooth, shrinkwrap_support

__all__ = [
    "ALGORITHMS",
    "MISFIT_FLOOR",
    "SUPPORT_FRACTION_MAX",
    "PhasingResult",
    "apply_noise_filter",
    "autocorrelation_support",
    "blur_fit_of",
    "chi2",
    "deconvolve",
    "denoise",
    "detector_blur_of",
    "er",
    "excess_misfit",
    "fourier_error",
    "gaussian_smooth",
    "hio",
    "modulus_projection",
    "poisson_amplitude_floor",
    "poisson_llk",
    "psf_params",
    "raar",
    "refine_er",
    "resolve_compile",
    "run_conventional",
    "shrinkwrap_support",
    "support_projection",
    "warmup",
    "wiener_filter",
]
