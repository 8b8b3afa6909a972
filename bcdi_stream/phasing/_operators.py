"""Public functional operators: projections and ER / HIO / RAAR iterations."""

from __future__ import annotations

from typing import Any

import torch

from ..arrays import resolve_device
from ._common import check_int, check_intensity, check_mask, check_object, check_support, to_tensor
from ._engine import Engine
from ._kernels import Kernels, modulus_eager, prepare_measured
from ._psf import BlurTarget, Psf, parse_psf, project_blurred

__all__ = ["er", "hio", "modulus_projection", "raar", "support_projection"]


def modulus_projection(
    psi: Any, amplitude: Any, mask: Any = None, *, psf_sigma: Any = None
) -> torch.Tensor:
    """Modulus projection: give ``psi`` the measured amplitude, keep its phase.

    Elementwise, so any layout works as long as ``psi``, ``amplitude`` and ``mask`` share it.
    With ``psf_sigma``, the blur-aware form ``psi * sqrt(I / Ic)``, ``Ic = |psi|**2 (*) PSF``
    (periodic Gaussian PSF of widths ``psf_sigma``, see :func:`~bcdi_stream.phasing._psf.parse_psf`;
    layout-independent too, the kernel being symmetric and periodic).

    Parameters
    ----------
    psi : array-like
        Complex field ``(..., z, y, x)`` (a leading batch is allowed).
    amplitude : array-like
        Non-negative measured amplitude ``sqrt(I)``, broadcastable to ``psi``.
    mask : array-like, optional
        Free pixels (nonzero = masked): left unchanged.
    psf_sigma : float or sequence, optional
        Gaussian PSF widths in pixels: a number for the detector axes ``(y, x)``, or ``(z, y, x)``.

    Returns
    -------
    torch.Tensor
        complex64 ``psi * amplitude / |psi|`` on measured pixels (0 where ``psi`` is 0), ``psi``
        on masked ones.
    """
    p = to_tensor(psi, "psi", resolve_device(psi.device if isinstance(psi, torch.Tensor) else None))
    if not p.is_complex():
        raise ValueError(f"psi must be complex, got dtype {p.dtype}")
    out = p.to(torch.complex64).clone()
    amp = to_tensor(amplitude, "amplitude", out.device)
    if amp.is_complex():
        raise ValueError("amplitude must be real")
    amp = amp.to(torch.float32)
    if not bool(((amp >= 0) & (amp < torch.inf)).all()):  # NaN or inf made NaN silently
        raise ValueError("amplitude must be non-negative and finite")
    try:
        amp = amp.expand(out.shape)
    except RuntimeError as exc:
        raise ValueError(
            f"amplitude shape {tuple(amp.shape)} does not broadcast to psi {tuple(out.shape)}"
        ) from exc
    free = None
    if mask is not None:
        m = to_tensor(mask, "mask", out.device)
        try:
            m = (m != 0).expand(out.shape)
        except RuntimeError as exc:
            raise ValueError(
                f"mask shape {tuple(m.shape)} does not broadcast to psi {tuple(out.shape)}"
            ) from exc
        free = m.to(torch.float32)
        amp = torch.where(m, 0.0, amp)
    mode, sigma = parse_psf(psf_sigma)
    if mode == "auto":
        raise ValueError("psf_sigma must be widths or None, not 'auto'")
    if mode == "fixed":
        target = BlurTarget(amp.square())
        project_blurred(out, Psf(sigma, tuple(out.shape)), target, free)
    else:
        modulus_eager(out, amp.contiguous(), free)
    return out


def support_projection(rho: Any, support: Any) -> torch.Tensor:
    """Support projection: zero the object outside the support.

    Parameters
    ----------
    rho : array-like
        Complex object ``(..., z, y, x)``.
    support : array-like
        Support (nonzero = inside), broadcastable to ``rho``.

    Returns
    -------
    torch.Tensor
        complex64 ``rho * support``.
    """
    r = to_tensor(rho, "rho", resolve_device(rho.device if isinstance(rho, torch.Tensor) else None))
    s = to_tensor(support, "support", r.device)
    try:
        return r.to(torch.complex64) * (s != 0)
    except RuntimeError as exc:
        raise ValueError(
            f"support shape {tuple(s.shape)} does not broadcast to rho {tuple(r.shape)}"
        ) from exc


def _iterate(
    algo: str,
    rho: Any,
    intensity: Any,
    support: Any,
    mask: Any,
    n_iter: int,
    beta: float,
    compile: bool,
) -> torch.Tensor:
    n_iter = check_int(n_iter, "n_iter", 0)
    if not 0.0 < float(beta) < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta!r}")
    dev = rho.device if isinstance(rho, torch.Tensor) else resolve_device(None)
    i_t = check_intensity(intensity, dev)
    shape = tuple(i_t.shape)
    single = getattr(rho, "ndim", 4) == 3
    r = check_object(rho, shape, dev, name="rho").clone()
    s = check_support(support, shape, dev)
    s = s.expand(r.shape) if s.ndim == 3 else s
    if s.shape[0] != r.shape[0]:
        raise ValueError(f"support has {s.shape[0]} runs but rho has {r.shape[0]}")
    meas = prepare_measured(i_t, check_mask(mask, shape, dev))
    eng = Engine(meas, r, s.contiguous(), Kernels(dev, compiled=bool(compile)))
    eng.iterate(algo, n_iter, float(beta))
    return eng.rho[0] if single else eng.rho


def er(
    rho: Any,
    intensity: Any,
    support: Any,
    mask: Any = None,
    n_iter: int = 1,
    *,
    compile: bool = False,
) -> torch.Tensor:
    """Error reduction: ``rho <- support * ifftn(P_M fftn(support * rho))``, ``n_iter`` times.

    The object is zeroed outside the support before the first projection, so an input
    with content outside it starts from ``support * rho`` (after one step of RAAR or HIO
    the two agree: their iterate inside the support is already a projection).

    Parameters
    ----------
    rho : array-like
        Centred complex object ``(z, y, x)`` or batch ``(B, z, y, x)``; not modified.
    intensity : array-like
        Centred measured intensity ``(z, y, x)``.
    support : array-like
        Centred support ``(z, y, x)`` or ``(B, z, y, x)`` (nonzero = inside).
    mask : array-like, optional
        Bad pixels (nonzero = masked), left free by the modulus projection.
    n_iter : int
        Number of iterations (>= 0).
    compile : bool
        Use the fused torch.compile kernels (falls back to eager if unavailable).

    Returns
    -------
    torch.Tensor
        The new complex64 object(s), same shape as ``rho``.
    """
    return _iterate("ER", rho, intensity, support, mask, n_iter, 0.5, compile)


def hio(
    rho: Any,
    intensity: Any,
    support: Any,
    mask: Any = None,
    n_iter: int = 1,
    beta: float = 0.9,
    *,
    compile: bool = False,
) -> torch.Tensor:
    """Hybrid input-output (Fienup): ``P_M rho`` inside, ``rho - beta P_M rho`` outside.

    Arguments as :func:`er`, plus ``beta`` in (0, 1).
    """
    return _iterate("HIO", rho, intensity, support, mask, n_iter, beta, compile)


def raar(
    rho: Any,
    intensity: Any,
    support: Any,
    mask: Any = None,
    n_iter: int = 1,
    beta: float = 0.9,
    *,
    compile: bool = False,
) -> torch.Tensor:
    """RAAR (Luke 2005): ``P_M rho`` inside, ``beta rho + (1 - 2 beta) P_M rho`` outside.

    Arguments as :func:`er`, plus ``beta`` in (0, 1).
    """
    return _iterate("RAAR", rho, intensity, support, mask, n_iter, beta, compile)
