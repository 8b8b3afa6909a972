"""Figures of merit: PyNX-style Poisson log-likelihood, chi-square, Fourier error, and the
excess amplitude misfit (the count-independent one)."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from ..arrays import resolve_device
from ..physics import SPATIAL_DIMS
from ._common import check_intensity, check_mask, check_object
from ._kernels import Measured, prepare_measured

__all__ = ["MISFIT_FLOOR", "SUPPORT_FRACTION_MAX", "chi2", "excess_misfit", "fourier_error",
           "poisson_amplitude_floor", "poisson_llk"]

#: Floor of the model intensity inside the logarithm (PyNX's ``imodel_min``).
IMODEL_MIN = 0.1


def _intensity_of(obj: torch.Tensor) -> torch.Tensor:
    """|fftn(obj)|**2 in FFT layout (the object is centred; the modulus ignores the shift).

    ``re² + im²`` as two roundings, in the object's precision (complex128 gives float64).
    Not :func:`~bcdi_stream.phasing._kernels.squared_modulus`, which the iterations use:
    that one's ``addcmul`` fuses the product and the sum on CPUs with FMA (one rounding) and
    differs by one ulp on ~16 % of the voxels of a 64³ pattern (AMD EPYC, AVX-512), which
    would move every LLK, the PSF estimates made from it and so the ``ai`` results; the two
    are kept apart on purpose (``test_quality_intensity_is_the_unfused_squared_modulus``).
    """
    psi = torch.fft.fftn(obj, dim=SPATIAL_DIMS)
    r = torch.view_as_real(psi)
    return r[..., 0].square() + r[..., 1].square()


def llk_chi2(icalc: torch.Tensor, meas: Measured) -> tuple[float, float]:
    """Normalised Poisson LLK and chi-square of one model intensity (FFT layout).

    The model is scaled to the data's total over measured pixels first.
    """
    ic = icalc.to(torch.float64)
    io = meas.iobs.to(torch.float64)
    if meas.valid is not None:
        ic = ic[meas.valid]
        io = io[meas.valid]
    total = float(ic.sum())
    if not total > 0:
        return float("inf"), float("inf")
    ic = ic * (float(io.sum()) / total)
    pos = io > 0
    ic_floor = torch.where(ic < IMODEL_MIN, ic + IMODEL_MIN, ic)
    log_ratio = torch.log(torch.where(pos, io, 1.0) / ic_floor)
    term = torch.where(pos, ic - io + io * log_ratio, ic)
    llk = 2.0 * float(term.sum()) / meas.n_valid
    chi = float(((ic - io) ** 2 / (io + 1.0)).sum()) / meas.n_valid
    return llk, chi


def _model(obj: torch.Tensor, psf_sigma: Any) -> torch.Tensor:
    """Model intensity of one object, blurred when ``psf_sigma`` gives a PSF."""
    from ._psf import Psf, parse_psf

    i0 = _intensity_of(obj)
    mode, sigma = parse_psf(psf_sigma)
    if mode == "auto":
        raise ValueError("psf_sigma must be widths or None, not 'auto'")
    return Psf(sigma, tuple(i0.shape)).apply(i0) if mode == "fixed" else i0


def _prepare(
    obj: Any, intensity: Any, mask: Any, device: str | torch.device | None
) -> tuple[torch.Tensor, Measured, bool]:
    if device is not None:
        dev = resolve_device(device)
    elif isinstance(obj, torch.Tensor):
        dev = obj.device
    else:
        dev = resolve_device(None)
    i_t = check_intensity(intensity, dev)
    m = check_mask(mask, tuple(i_t.shape), dev)
    single = getattr(obj, "ndim", 4) == 3
    o = check_object(obj, tuple(i_t.shape), dev, name="obj")
    return o, prepare_measured(i_t, m), single


def _per_run(values: list[float], single: bool, device: torch.device) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    return t[0] if single else t


def poisson_llk(
    obj: Any,
    intensity: Any,
    mask: Any = None,
    device: str | torch.device | None = None,
    *,
    psf_sigma: Any = None,
) -> torch.Tensor:
    """PyNX-style normalised Poisson log-likelihood of an object against the data.

    ``LLK = 2/N_obs * [sum_{I>0} (Ic - I + I ln(I/Ic)) + sum_{I=0} Ic]`` over the measured
    (unmasked, non-negative) pixels, with the model intensity ``Ic = |fftn(obj)|**2`` scaled to
    the data's total. Its expectation is ~1 per pixel for a correct model and Poisson noise with
    counts >~ 10 (lower for very low counts), and larger for a wrong model.

    Parameters
    ----------
    obj : array-like
        Centred complex object ``(z, y, x)`` or a batch ``(B, z, y, x)``.
    intensity : array-like
        Centred measured intensity ``(z, y, x)``.
    mask : array-like, optional
        Bad pixels (nonzero = masked), excluded from the sum.
    device : str or torch.device, optional
        Compute device.
    psf_sigma : float or sequence, optional
        Gaussian PSF widths (pixels; a number for ``(y, x)``, or ``(z, y, x)``): the model is
        then ``|fftn(obj)|**2`` blurred by that PSF.

    Returns
    -------
    torch.Tensor
        float64 scalar, or shape ``(B,)`` for a batch.
    """
    o, meas, single = _prepare(obj, intensity, mask, device)
    vals = [llk_chi2(_model(o[i], psf_sigma), meas)[0] for i in range(o.shape[0])]
    return _per_run(vals, single, o.device)


def chi2(
    obj: Any,
    intensity: Any,
    mask: Any = None,
    device: str | torch.device | None = None,
    *,
    psf_sigma: Any = None,
) -> torch.Tensor:
    """Normalised chi-square ``1/N_obs * sum (Ic - I)**2 / (I + 1)`` (scaled model).

    ~1 for a correct model with Poisson noise. Arguments (``psf_sigma`` too) as
    :func:`poisson_llk`.

    Returns
    -------
    torch.Tensor
        float64 scalar, or shape ``(B,)`` for a batch.
    """
    o, meas, single = _prepare(obj, intensity, mask, device)
    vals = [llk_chi2(_model(o[i], psf_sigma), meas)[1] for i in range(o.shape[0])]
    return _per_run(vals, single, o.device)


def fourier_error(
    obj: Any, intensity: Any, mask: Any = None, device: str | torch.device | None = None
) -> torch.Tensor:
    """Relative distance to the modulus constraint, ``sum (|fftn(obj)| - sqrt(I))**2 / sum I``.

    Unscaled, over measured pixels: the quantity error reduction never increases. Arguments as
    :func:`poisson_llk`.

    Returns
    -------
    torch.Tensor
        float64 scalar, or shape ``(B,)`` for a batch.
    """
    o, meas, single = _prepare(obj, intensity, mask, device)
    vals = []
    for i in range(o.shape[0]):
        mod = _intensity_of(o[i]).to(torch.float64).sqrt()
        diff = (mod - meas.amp0.to(torch.float64)) ** 2
        if meas.valid is not None:
            diff = diff[meas.valid]
        vals.append(float(diff.sum()) / float(meas.iobs.to(torch.float64).sum()))
    return _per_run(vals, single, o.device)


#: Range of the tabulated Poisson amplitude floor (decades of the rate λ); beyond the top the
#: floor is its limit 1/4, below the bottom it is 2λ to better than 1 %.
_FLOOR_DECADES = (-4, 3)
_FLOOR_PER_DECADE = 40


@lru_cache(maxsize=1)
def _floor_table() -> torch.Tensor:
    lo, hi = _FLOOR_DECADES
    vals = []
    for lam in torch.logspace(lo, hi, (hi - lo) * _FLOOR_PER_DECADE + 1,
                              dtype=torch.float64).tolist():
        half = 12.0 * math.sqrt(lam) + 30.0
        k = torch.arange(max(0, int(lam - half)), int(lam + half) + 1, dtype=torch.float64)
        p = torch.exp(k * math.log(lam) - lam - torch.lgamma(k + 1))
        vals.append(float((p * (k.sqrt() - math.sqrt(lam)) ** 2).sum()))
    return torch.tensor(vals, dtype=torch.float64)


def poisson_amplitude_floor(rate: torch.Tensor) -> torch.Tensor:
    """Expected squared amplitude error ``E[(√k − √λ)²]`` of Poisson counts ``k ~ P(λ)``.

    It is 1/4 for λ ≳ 10 (the variance-stabilising property of the square root), peaks at
    ≈ 0.45 near λ = 1 and falls as 2λ for λ → 0: the misfit a *correct* model leaves on each
    pixel. Tabulated on first use (λ from 1e-4 to 1e3, 40 points per decade, linear
    interpolation in log λ).

    Parameters
    ----------
    rate : torch.Tensor
        Expected counts λ ≥ 0 per pixel (any shape).

    Returns
    -------
    torch.Tensor
        float64, the shape of ``rate``.
    """
    table = _floor_table().to(rate.device)
    lam = rate.to(torch.float64).clamp_min(0)
    lo, hi = _FLOOR_DECADES
    x = (lam.clamp(10.0 ** lo, 10.0 ** hi).log10() - lo) * _FLOOR_PER_DECADE
    i0 = x.floor().long().clamp(0, table.numel() - 2)
    f = x - i0
    inside = table[i0] * (1 - f) + table[i0 + 1] * f
    return torch.where(lam > 10.0 ** hi, 0.25, torch.where(lam < 10.0 ** lo, 2 * lam, inside))


#: Excess misfit below which a fit explains more than the signal: noise fitted, e.g. frames
#: without a Bragg peak (flagged ``poor`` by the live job, warned of by the CLI). Measured:
#: live-preset fits of simulated crystals (weak/medium/strong, peak 2e3-1e5 counts,
#: background 0-3 photons/pixel) -0.016 .. +0.021; fits of background-only frames -0.061
#: (5 photons/pixel), -0.23 (0.5), flat frames -0.12.
MISFIT_FLOOR = -0.03

#: Largest share of the grid a reconstructed support may cover: beyond it the pattern is
#: sampled less than twice the object's Nyquist rate (oversampling ratio grid/support < 2) and
#: its phase is not determined (Miao, Sayre & Chapman 1998), whatever the fit. Measured: the
#: crystal supports of simulated weak and strong crystals cover 0.010-0.029 of a 64³ grid;
#: a bright voxel on a flat background "phased" into a support of 0.85.
SUPPORT_FRACTION_MAX = 0.5


def excess_misfit(
    obj: Any,
    intensity: Any,
    mask: Any = None,
    device: str | torch.device | None = None,
    *,
    psf_sigma: Any = None,
    counts: bool = True,
    background: float = 0.0,
) -> torch.Tensor:
    """Share of the measured intensity the model leaves unexplained beyond Poisson noise.

    ``(Σ (√Ic − √I)² − Σ E[(√k − √Ic)²]) / Σ I`` over the measured pixels, with the model
    intensity ``Ic`` (blurred when ``psf_sigma`` is given) scaled to the data's total and the
    noise term from :func:`poisson_amplitude_floor`. About 0 for a correct model whatever the
    counts (the LLK of a correct model grows with them), so one threshold tells a failed
    reconstruction at any flux: a relative amplitude error ε costs ≈ ε². It is unbiased; its
    statistical spread falls with the total counts (≈ 0.005 for 10³ photons in the pattern,
    2e-4 for 4×10⁵). A flat detector background, which phasing does not model, adds to it
    (≈ 0.01 for 0.4 photons per pixel under 4×10⁶ photons); fitting one beside the model
    lets a wrong model hide misfit in it at low counts (``benchmarks/research/
    fallback_trigger.py``), so none is fitted; a background known from elsewhere (a detector
    pedestal, dark frames) can be given (``background``). Measured on the true objects of
    three simulated weak 64³ crystals: within ±5e-5 of 0 without background at 1e4-1e6 peak
    counts; with 0.1 / 0.5 / 1 photon per pixel, 0.002-0.010 / 0.010-0.050 / 0.022-0.099 at
    1e4 peak counts, up to 0.0006 / 0.0031 / 0.0070 at 1e5 (the ``auto`` threshold is
    0.0025), up to 0.0003 at 1e6; with ``background`` given, within ±2.5e-4 of 0 in all of
    them (also at 3 photons per pixel), while a model with a smooth 0.8 rad phase error keeps
    0.012-0.047 (0.015-0.047 without background). The background is not
    estimated from the data: a strongly strained crystal spreads its signal over the whole
    grid (mean 180-450 photons per pixel beyond the inscribed ellipsoid at 1e4 peak counts),
    leaving no dark region to read it from.

    Parameters
    ----------
    obj, intensity, mask, device, psf_sigma
        As :func:`poisson_llk`.
    counts : bool
        The intensity is photon counts (:func:`bcdi_stream.validation.photon_scale` is 1).
        False: its noise is unknown, so no noise term is subtracted — the share of the
        intensity left unexplained (exact for noise-free data; any noise counts as misfit).
        The Poisson term of an intensity in other units is meaningless: for a pattern
        normalised to 1 it exceeds the intensity itself, and every model would score ≈ −1.
    background : float
        Known flat background in the data (per pixel, the intensity's units, >= 0 and below
        its mean over the measured pixels): the model is then ``s·Ic + background``, ``s``
        scaling it to the data's total less the background's, and the noise term is that of
        the sum. 0 (default): no background is modelled (a background counts as misfit).

    Returns
    -------
    torch.Tensor
        float64 scalar, or shape ``(B,)`` for a batch.
    """
    o, meas, single = _prepare(obj, intensity, mask, device)
    io = meas.iobs.to(torch.float64)
    if meas.valid is not None:
        io = io[meas.valid]
    total = float(io.sum())
    if not total > 0:
        raise ValueError("intensity must have counts on the measured pixels")
    try:
        bg = float(background)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"background must be a number, got {background!r}") from exc
    if not 0.0 <= bg < total / meas.n_valid:
        raise ValueError(
            f"background must be >= 0 and below the mean intensity of the measured pixels "
            f"({total / meas.n_valid:.4g}), got {background!r}"
        )
    signal = total - bg * meas.n_valid  # the model's share of the total
    vals = []
    for i in range(o.shape[0]):
        ic = _model(o[i], psf_sigma).to(torch.float64)
        if meas.valid is not None:
            ic = ic[meas.valid]
        if not float(ic.sum()) > 0:
            vals.append(float("inf"))
            continue
        ic = ic * (signal / float(ic.sum()))
        if bg > 0:
            ic = ic + bg
        miss = float((ic.sqrt() - io.sqrt()).square().sum())
        floor = float(poisson_amplitude_floor(ic).sum()) if counts else 0.0
        vals.append((miss - floor) / total)
    return _per_run(vals, single, o.device)
