"""Blur-aware modulus constraint: a Gaussian point-spread function (PSF) of the intensity.

Detector cross-talk and partial coherence blur the measured pattern: the model intensity is
``Ic = |psi|**2 (*) PSF``, and the modulus projection becomes (PyNX's partial-coherence form)
``psi' = psi * sqrt(I_obs / max(Ic, eps))`` on measured pixels, masked pixels staying free.
Because the PSF includes the pixel itself with weight ``k0 > 0``, ``|psi'|**2 <= I_obs / k0``:
the update is bounded without any regularisation.

The PSF here is a unit-sum Gaussian given by its widths along the axes ``(z, y, x)`` (a width
of 0 leaves that axis alone; the detector blurs ``y`` and ``x``), optionally followed by the
correlation ``r`` of ``y`` and ``x``: ``(z, y, x, r)`` is the Gaussian of covariance
``diag(z**2) (+) [[y**2, r*y*x], [r*y*x, x**2]]``, whose principal directions in the detector
plane need not be the detector's axes (partial coherence short along an oblique direction,
session 22: a product of one Gaussian per axis cannot hold it, and the refinement then drifts
from the true phase to fit it). ``r = 0`` (the three-width form) is the separable kernel.

The convolution is periodic (so the FFT layout of the engine is fine: a periodic kernel
commutes with the shift). The separable kernel is applied in real space, one axis at a time: on
a 2-core CPU at 64**3 a 5-tap pass over two axes costs ~0.7 ms, against ~1.1 ms for a 2D rfft
pair and ~3 ms for a 3D one (an FFT pair of the complex field is ~3.3 ms). A correlated
``y, x`` kernel is applied by a 2D rfft pair over ``(y, x)`` with the Gaussian's exact transfer
function ``exp(-2 pi**2 (y**2 fy**2 + 2 r y x fy fx + x**2 fx**2))``, ``z`` by taps.

The parameters are estimated during a run (:func:`estimate_sigma`) by minimising the Poisson
LLK of the blurred model over a few candidates per parameter (coordinate descent, then a
parabola through the best candidate and its neighbours).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..physics import gaussian_axes_to_yx, gaussian_kernel_yx
from ._kernels import Measured, prepare_measured, squared_modulus

__all__ = [
    "BlurTarget",
    "Psf",
    "blur",
    "blur_fit_of",
    "deconvolve",
    "detector_blur_of",
    "estimate_detector_sigma",
    "estimate_sigma",
    "parse_psf",
]

#: Widths below this (pixels) count as no blur on that axis (the sampled Gaussian's side
#: taps are then below 0.4 %).
SIGMA_OFF = 0.3
#: Largest width the estimation may return (pixels).
SIGMA_MAX = 2.5
#: Kernel half-width in standard deviations.
TRUNCATE = 3.0
#: Floor of the model intensity in the projection (prevents 0/0 only, see the module doc).
EPS = 1e-30
#: Candidates of a first ("wide") estimate, per axis.
WIDE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: A blur along the rocking axis ``z`` (partial coherence across the incident beam, which has a
#: ``z`` component in the detector frame) is a hypothesis of :func:`detector_blur_of` (with
#: ``rocking=True``) when the width fitted along ``z`` lies in this range (pixels): the imperfect
#: predictions of unblurred weak crystals ask for up to ~0.85 px, those of strong crystals far
#: from the truth for the search's cap (docs/MODEL_RESEARCH.md, session 25).
ROCKING_RANGE = (0.9, 2.0)
#: Offsets around the current width of a later ("local") estimate.
LOCAL_STEPS = (-0.3, -0.15, 0.0, 0.15, 0.3)
#: Oblique kernels a first estimate tries against the separable one: the principal direction
#: along the detector's diagonal or anti-diagonal (radians from ``y`` towards ``x``) ...
OBLIQUE_ANGLES = (math.pi / 4, 3 * math.pi / 4)
#: ... and the share of the separable kernel's variance ``s_y**2 + s_x**2`` along it.
OBLIQUE_SHARES = (0.7, 0.85, 1.0)
#: Smallest relative LLK gain of a first oblique estimate over the separable kernel for it to
#: be kept: an imperfect object (a prediction) often fits a slightly oblique
#: kernel better by 0.5-1 % without any oblique blur in the data (weak test crystals), whereas
#: a blur along the detector's diagonal gains 2-36 % from the prediction (session 24).
OBLIQUE_GAIN = 0.02
#: Steps of the principal widths (px) and of the angle (radians) refining an oblique kernel:
#: the sweeps of a first estimate, then the one sweep of a later estimate.
OBLIQUE_STEPS = (((-0.4, -0.2, 0.0, 0.2, 0.4), (-0.1, -0.05, 0.0, 0.05, 0.1)),
                 ((-0.1, 0.0, 0.1),))
ANGLE_STEPS = (((-math.pi / 8, -math.pi / 16, 0.0, math.pi / 16, math.pi / 8),
                (-math.pi / 32, 0.0, math.pi / 32)),
               ((-math.pi / 32, 0.0, math.pi / 32),))
#: Estimated correlations below this (in magnitude) count as none: the separable kernel, which
#: is cheaper and what an estimate on data without an oblique blur should return.
CORR_OFF = 0.15
#: Largest correlation (in magnitude) a PSF may have (1 would be a kernel of rank 1).
CORR_MAX = 0.99
#: Smallest width across an oblique kernel an estimate gives (px): a narrower one, sampled on
#: the grid, is the same line.
ACROSS_MIN = 0.2

#: PSF parameters: widths ``(z, y, x)`` in pixels, or ``(z, y, x, r)`` with ``r`` the
#: correlation of ``y`` and ``x`` (the four-value form only where ``r != 0``).
Sigma = tuple[float, ...]


def psf_params(sigma: Sequence[float]) -> tuple[float, float, float, float]:
    """``(z, y, x, r)`` of PSF parameters given as 3 widths or 3 widths and a correlation."""
    if len(sigma) not in (3, 4):
        raise ValueError(f"psf parameters must be (z, y, x) or (z, y, x, r), got {sigma!r}")
    r = float(sigma[3]) if len(sigma) == 4 else 0.0
    return float(sigma[0]), float(sigma[1]), float(sigma[2]), r


def yx_of_axes(su: float, sv: float, theta: float) -> tuple[float, float, float]:
    """``(s_y, s_x, r)`` of the ``y, x`` Gaussian with widths ``su`` along the direction at
    ``theta`` radians from ``y`` towards ``x`` and ``sv`` across it (``|r|`` capped at
    :data:`CORR_MAX`; :func:`bcdi_stream.physics.gaussian_axes_to_yx`)."""
    sy, sx, r = gaussian_axes_to_yx(su, sv, theta)
    return sy, sx, max(-CORR_MAX, min(CORR_MAX, r))


def axes_of_yx(sy: float, sx: float, r: float) -> tuple[float, float, float]:
    """``(su, sv, theta)``, the inverse of :func:`yx_of_axes` (``su >= sv``)."""
    cyy, cxx, cyx = sy * sy, sx * sx, r * sy * sx
    theta = 0.5 * math.atan2(2.0 * cyx, cyy - cxx)
    mean, half = 0.5 * (cyy + cxx), math.hypot(0.5 * (cyy - cxx), cyx)
    return math.sqrt(mean + half), math.sqrt(max(0.0, mean - half)), theta


def pack_psf(z: float, y: float, x: float, r: float = 0.0) -> Sigma:
    """The parameters' tuple: ``(z, y, x)``, or ``(z, y, x, r)`` where the kernel is correlated."""
    return (z, y, x) if r == 0.0 else (z, y, x, r)


def parse_psf(option: Any) -> tuple[str, Sigma]:
    """Normalise a ``psf`` option to ``(mode, sigma)``.

    ``"auto"`` (estimate, starting from no blur), ``"off"``/``None``/``False``/0 (no PSF), a
    number ``s`` (fixed width ``s`` on the detector axes ``y, x``), or a sequence of 2 ``(y, x)``
    or 3 ``(z, y, x)`` fixed widths in pixels, or 4 ``(z, y, x, r)``: the widths and the
    correlation ``r`` of ``y`` and ``x`` (``|r| <=`` :data:`CORR_MAX`).
    """
    if option is None or option is False or (isinstance(option, str) and option == "off"):
        return "off", (0.0, 0.0, 0.0)
    if isinstance(option, str):
        if option == "auto":
            return "auto", (0.0, 0.0, 0.0)
        try:
            option = float(option)
        except ValueError as exc:
            raise ValueError(
                f"psf must be 'auto', 'off', a width or (z, y, x) widths, got {option!r}"
            ) from exc
    if isinstance(option, bool):
        raise ValueError(f"psf must be 'auto', 'off', a width or widths, got {option!r}")
    if isinstance(option, int | float):
        vals: list[float] = [0.0, float(option), float(option)]
    elif isinstance(option, Sequence) and len(option) in (2, 3, 4):
        vals = [float(v) for v in option]
        if len(vals) == 2:
            vals = [0.0, *vals]
    else:
        raise ValueError(
            f"psf must be 'auto', 'off', a width, (z, y, x) widths or (z, y, x, r), got {option!r}"
        )
    if not all(math.isfinite(v) and 0.0 <= v <= SIGMA_MAX * 4 for v in vals[:3]):
        raise ValueError(f"psf widths must be finite, >= 0 and <= {SIGMA_MAX * 4}, got {option!r}")
    r = vals[3] if len(vals) == 4 else 0.0
    if not (math.isfinite(r) and abs(r) <= CORR_MAX):
        raise ValueError(f"psf correlation r must be finite and |r| <= {CORR_MAX}, got {option!r}")
    if max(vals[:3]) < SIGMA_OFF:
        return "off", (0.0, 0.0, 0.0)
    return "fixed", pack_psf(vals[0], vals[1], vals[2], r)


def _taps(sigma: float, n: int) -> list[float] | None:
    if sigma < SIGMA_OFF:
        return None
    half = max(1, min(math.ceil(TRUNCATE * sigma), (n - 1) // 2))
    k = [math.exp(-0.5 * (t / sigma) ** 2) for t in range(-half, half + 1)]
    s = sum(k)
    return [v / s for v in k]


def _conv_axis(x: torch.Tensor, dim: int, taps: list[float], out: torch.Tensor) -> None:
    """``out <- periodic convolution of x with the symmetric taps along dim`` (out != x)."""
    h = len(taps) // 2
    n = x.shape[dim]
    torch.mul(x, taps[h], out=out)
    for s in range(1, h + 1):
        w = taps[h + s]
        # out[i] += w * (x[i - s] + x[i + s]), periodically
        out.narrow(dim, s, n - s).add_(x.narrow(dim, 0, n - s), alpha=w)
        out.narrow(dim, 0, s).add_(x.narrow(dim, n - s, s), alpha=w)
        out.narrow(dim, 0, n - s).add_(x.narrow(dim, s, n - s), alpha=w)
        out.narrow(dim, n - s, s).add_(x.narrow(dim, 0, s), alpha=w)


class Psf:
    """A periodic Gaussian PSF on a grid: widths ``(z, y, x)`` pixels, or ``(z, y, x, r)`` with
    ``r`` the correlation of ``y`` and ``x`` (see the module doc).

    :meth:`apply` convolves a real array ``(..., z, y, x)`` (any layout: the kernel is
    point-symmetric and periodic) into preallocated buffers.
    """

    def __init__(self, sigma: Sequence[float], shape: Sequence[int]) -> None:
        z, y, x, r = psf_params(sigma)
        if y < SIGMA_OFF or x < SIGMA_OFF:
            r = 0.0  # a correlation needs both axes blurred
        self.sigma: Sigma = pack_psf(z, y, x, r)
        self.shape = tuple(int(n) for n in shape[-3:])
        #: the correlated ``y, x`` kernel, applied by FFT (``None``: separable, by taps)
        self.yx: tuple[float, float, float] | None = (y, x, r) if r != 0.0 else None
        widths = (z, 0.0, 0.0) if self.yx is not None else (z, y, x)
        self.axes = [
            (dim, t)
            for dim, s, n in zip((-3, -2, -1), widths, self.shape, strict=True)
            if (t := _taps(s, n)) is not None
        ]
        self._buf: tuple[torch.Tensor, torch.Tensor] | None = None
        #: the correlated kernel's transfer function (rfft layout) and centre weight
        self._transfer: tuple[torch.Tensor, float] | None = None

    @property
    def active(self) -> bool:
        """Whether any axis is blurred."""
        return bool(self.axes) or self.yx is not None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Blurred copy of the real array ``x`` (a reused buffer: copy it to keep it)."""
        if not self.active:
            return x
        buf = self._buf
        if buf is None or buf[0].shape != x.shape or buf[0].dtype != x.dtype:
            buf = (torch.empty_like(x), torch.empty_like(x))
            self._buf = buf
        src = x
        for k, (dim, taps) in enumerate(self.axes):
            dst = buf[k % 2]
            _conv_axis(src, dim, taps, dst)
            src = dst
        if self.yx is not None:
            ny, nx = self.shape[1], self.shape[2]
            if self._transfer is None or self._transfer[0].device != x.device:
                k = gaussian_kernel_yx(*self.yx, ny, nx)
                h = torch.fft.rfft2(k).real.to(device=x.device, dtype=torch.float32)
                self._transfer = (h, float(k[0, 0]))
            h, k0 = self._transfer
            spec = torch.fft.rfft2(src, dim=(-2, -1))
            spec.mul_(h)
            dst = buf[len(self.axes) % 2]
            dst.copy_(torch.fft.irfft2(spec, s=(ny, nx), dim=(-2, -1)))
            # the kernel is positive, so each value is at least k0 times its own: the bound
            # the blur-aware projection relies on, which FFT rounding alone would not keep
            torch.maximum(dst, src * k0, out=dst)
            src = dst
        return src


def blur(x: torch.Tensor, sigma: Sequence[float]) -> torch.Tensor:
    """Periodic Gaussian blur of a real array ``(..., z, y, x)`` (a new tensor); ``sigma`` as
    :class:`Psf`'s."""
    return Psf(sigma, tuple(x.shape[-3:])).apply(x.to(torch.float32)).clone()


class BlurTarget:
    """What the blur-aware projection divides by, prepared once per data set.

    ``iobs_n2`` is the measured intensity (0 on free pixels) divided by the scale squared wanted
    on the output (``N**2`` in the engine, 1 for a plain projection). Zero pixels are held as
    ``1`` in :attr:`num` and zeroed again by :attr:`nonzero` after the square root: torch's
    float32 ``sqrt`` on a CPU takes a slow path on exact zeros (an array half zeros, as a
    pattern's outer shells are, costs ~30x an array without: 1.33 ms against 0.04 ms at 64³
    on a CPU thread, docs/BENCHMARKS.md), and every other value's square root is bit for bit
    what it was.
    """

    def __init__(self, iobs_n2: torch.Tensor) -> None:
        pos = iobs_n2 > 0
        all_pos = bool(pos.all())
        #: ``iobs_n2`` with its zeros replaced by 1
        self.num = iobs_n2.contiguous() if all_pos else torch.where(pos, iobs_n2, 1.0)
        #: 1.0 where ``iobs_n2 > 0``, 0.0 elsewhere; None when no pixel is 0
        self.nonzero = None if all_pos else pos.to(torch.float32)


def project_blurred(
    psi: torch.Tensor, psf: Psf, target: BlurTarget, free_n: torch.Tensor | None
) -> None:
    """In place: ``psi <- psi * sqrt(iobs_n2 / max(Ic, EPS)) (+ free_n on free pixels)``.

    ``Ic = psf(|psi|**2)``; ``iobs_n2`` is the one ``target`` was made from
    (:class:`BlurTarget`).
    """
    f = psf.apply(squared_modulus(psi)).clamp_(min=EPS)
    torch.div(target.num, f, out=f).sqrt_()
    if target.nonzero is None:
        if free_n is not None:
            f.add_(free_n)
    elif free_n is not None:
        torch.addcmul(free_n, f, target.nonzero, out=f)
    else:
        f.mul_(target.nonzero)
    psi.mul_(f)


def llk_fast(ic: torch.Tensor, meas: Measured) -> float:
    """Normalised Poisson LLK (PyNX form, model scaled to the data) in float32, for searches."""
    return _Search(ic, meas).llk(ic)


class _Search:
    """The Poisson LLK of blurs of one model intensity ``i0`` against the data, for the width
    searches: the data's terms (``log I``, the total, the valid pixels as floats) are computed
    once, the buffers reused, and a line search along some axes blurs the other axes once
    (:meth:`along`). The LLK is :func:`llk_fast`'s, term for term, in about half the passes
    over the array."""

    def __init__(self, i0: torch.Tensor, meas: Measured) -> None:
        io = meas.iobs
        self.i0 = i0.to(torch.float32)
        self.shape = tuple(i0.shape[-3:])
        self.meas = meas
        self.io_sum = float(io.sum())
        self.log_io = torch.where(io > 0, io, 1.0).log_()  # io * log_io: 0 where io = 0
        self.valid = None if meas.valid is None else meas.valid.to(torch.float32)
        self._buf = (torch.empty_like(self.i0), torch.empty_like(self.i0))
        self._blur_buf: tuple[torch.Tensor, torch.Tensor] | None = None

    def llk(self, ic: torch.Tensor) -> float:
        """``2 / n_valid * sum(ic' - I + I log(I / floor(ic')))`` with ``ic'`` the model
        scaled to the data's total on the valid pixels (0 elsewhere)."""
        from ._quality import IMODEL_MIN

        t, lg = self._buf
        if self.valid is not None:
            torch.mul(ic, self.valid, out=t)
        else:
            t.copy_(ic)
        total = float(t.sum())
        if not total > 0:
            return float("inf")
        t.mul_(self.io_sum / total)
        floor = torch.where(t < IMODEL_MIN, t + IMODEL_MIN, t)
        torch.log(floor, out=lg)
        torch.sub(self.log_io, lg, out=lg).mul_(self.meas.iobs)
        lg.add_(t).sub_(self.meas.iobs)
        return 2.0 * float(lg.sum()) / self.meas.n_valid

    def _blur(self, sigma: Sequence[float], x: torch.Tensor) -> torch.Tensor:
        psf = Psf(sigma, self.shape)
        if self._blur_buf is None:
            self._blur_buf = (torch.empty_like(self.i0), torch.empty_like(self.i0))
        psf._buf = self._blur_buf  # one pair of buffers for every width searched
        return psf.apply(x)

    def along(self, sigma: Sequence[float], axes: Sequence[int]) -> Callable[[float], float]:
        """``f(c)``: the LLK with width ``c`` on ``axes`` and ``sigma`` (3 widths, or 3 widths
        and the ``y, x`` correlation) elsewhere. The axes not searched are blurred here, once,
        where the kernel lets them be (a correlated ``y, x`` kernel is blurred whole each
        time)."""
        z, y, x, r = psf_params(sigma)
        widths = (z, y, x)
        corr = r != 0.0 and (1 in axes or 2 in axes)
        pre = [0.0 if a in axes or (corr and a > 0) else widths[a] for a in range(3)]
        if r != 0.0 and not corr:
            pre = [pre[0], y, x, r]  # z searched: the correlated y, x kernel is fixed
        base = self._blur(pre, self.i0).clone() if max(pre[:3]) >= SIGMA_OFF else self.i0

        def f(c: float) -> float:
            trial = [c if a in axes else (widths[a] if corr and a > 0 else 0.0)
                     for a in range(3)]
            return self.llk(self._blur([*trial, r] if corr else trial, base))

        return f

    def yx(self, z: float) -> Callable[[float, float, float], float]:
        """``f(s_y, s_x, r)``: the LLK of the kernel ``(z, s_y, s_x, r)`` (``z`` blurred here,
        once)."""
        base = self._blur([z, 0.0, 0.0], self.i0).clone() if z >= SIGMA_OFF else self.i0

        def f(sy: float, sx: float, r: float) -> float:
            return self.llk(self._blur([0.0, sy, sx, r], base))

        return f


def _best_on_line(cands: Sequence[float], f: Callable[[float], float]) -> float:
    """The candidate minimising ``f``, refined by the vertex of the parabola through it and its
    neighbours when that vertex lies between them and is no worse."""
    vals = [f(c) for c in cands]
    k = min(range(len(cands)), key=lambda j: vals[j])
    best = cands[k]
    if 0 < k < len(cands) - 1:
        x0, x1, x2 = cands[k - 1], cands[k], cands[k + 1]
        y0, y1, y2 = vals[k - 1], vals[k], vals[k + 1]
        den = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
        b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den
        if a > 0 and x0 <= -b / (2 * a) <= x2 and f(-b / (2 * a)) <= vals[k]:
            best = -b / (2 * a)
    return best


def _oblique(search: _Search, sigma: Sequence[float], wide: bool) -> Sigma:
    """The ``y, x`` part of the kernel ``sigma`` as an oblique (correlated) Gaussian where that
    fits the data better.

    Searched by its principal widths and direction (``su`` along, ``sv`` across, the angle):
    a blur along a line that is not a detector axis is a narrow valley in ``(s_y, s_x, r)``,
    where coordinate descent crawls. A first (``wide``) estimate from a separable kernel tries
    :data:`OBLIQUE_ANGLES` x :data:`OBLIQUE_SHARES` at its total variance and goes on only when
    one beats it, and keeps the result only when it beats it by :data:`OBLIQUE_GAIN` of its
    LLK; an oblique kernel is refined by line searches over ``su``, ``sv`` and the angle
    (:data:`OBLIQUE_STEPS`, :data:`ANGLE_STEPS`: two sweeps wide, one later; ``sv`` not below
    :data:`ACROSS_MIN`). Correlations below :data:`CORR_OFF` end separable.
    """
    z, y, x, r = psf_params(sigma)
    if min(y, x) < SIGMA_OFF:
        return pack_psf(z, y, x)
    f = search.yx(z)
    cache: dict[tuple[float, float, float], float] = {}

    def llk(su: float, sv: float, th: float) -> float:
        key = (round(su, 4), round(sv, 4), round(th % math.pi, 4))
        if key not in cache:
            cache[key] = f(*yx_of_axes(key[0], key[1], key[2]))
        return cache[key]

    if r == 0.0:
        if not wide:
            return pack_psf(z, y, x)
        total = y * y + x * x
        ref = f(y, x, 0.0)
        tried = [(llk(math.sqrt(total * a), max(ACROSS_MIN, math.sqrt(total * (1.0 - a))), th),
                  a, th) for th in OBLIQUE_ANGLES for a in OBLIQUE_SHARES]
        best, a, th = min(tried)
        if not best < ref:
            return pack_psf(z, y, x)
        su, sv = math.sqrt(total * a), max(ACROSS_MIN, math.sqrt(total * (1.0 - a)))
    else:
        su, sv, th = axes_of_yx(y, x, r)
    cur = [su, sv, th]

    def at(i: int, c: float) -> float:
        trial = list(cur)
        trial[i] = c
        return llk(*trial)

    sweeps = zip(OBLIQUE_STEPS[0 if wide else 1], ANGLE_STEPS[0 if wide else 1], strict=True)
    for steps, angles in sweeps:
        cands = sorted({round(min(SIGMA_MAX * 1.5, max(SIGMA_OFF, cur[0] + d)), 4)
                        for d in steps})
        cur[0] = max(SIGMA_OFF, _best_on_line(cands, lambda c: at(0, c)))
        cands = sorted({round(max(ACROSS_MIN, cur[1] + d), 4) for d in steps})
        cur[1] = max(ACROSS_MIN, _best_on_line(cands, lambda c: at(1, c)))
        cur[2] = _best_on_line([cur[2] + d for d in angles], lambda c: at(2, c))
    su, sv, th = cur
    if r == 0.0 and not llk(su, sv, th) < (1.0 - OBLIQUE_GAIN) * ref:
        return pack_psf(z, y, x)
    y, x, r = yx_of_axes(su, sv, th)
    y, x = round(min(SIGMA_MAX, y), 4), round(min(SIGMA_MAX, x), 4)
    return pack_psf(z, y, x, 0.0 if abs(r) < CORR_OFF else round(r, 4))


def estimate_sigma(
    i0: torch.Tensor,
    meas: Measured,
    start: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    wide: bool = True,
    axes: Sequence[int] = (0, 1, 2),
    sweeps: int = 1,
    correlation: bool = True,
) -> Sigma:
    """PSF parameters minimising the Poisson LLK of ``psf(i0)`` against the data.

    Parameters
    ----------
    i0 : torch.Tensor
        Unblurred model intensity ``|fftn(rho)|**2``, in the layout of ``meas`` (FFT layout).
    meas : Measured
        The measured data.
    start : sequence of 3 or 4 floats
        Current parameters: widths ``(z, y, x)``, optionally the ``y, x`` correlation.
    wide : bool
        Search :data:`WIDE_GRID` (and try oblique kernels) in a first sweep, before the
        local ones.
    axes : sequence of int
        Axes (0 = z, 1 = y, 2 = x) to estimate; the others keep ``start``.
    sweeps : int
        Coordinate-descent sweeps over ``axes`` with :data:`LOCAL_STEPS` around the current
        values (after the wide sweep, if any).
    correlation : bool
        After the widths of each sweep, when ``y`` and ``x`` are both estimated and blurred,
        make the ``y, x`` kernel oblique where that fits better (:func:`_oblique`: tried in
        the wide sweep, refined in every sweep once oblique). ``False`` keeps the start's
        correlation.

    Returns
    -------
    tuple of 3 or 4 floats
        ``(z, y, x)``, or ``(z, y, x, r)`` where the estimated kernel is correlated.
    """
    z0, y0, x0, r0 = psf_params(start)
    sigma = [max(0.0, v) for v in (z0, y0, x0)]
    corr = r0
    search = _Search(i0, meas)
    cache: dict[tuple[float, float, float, float], float] = {}

    def key_of(trial: Sequence[float], r: float) -> tuple[float, float, float, float]:
        return (round(trial[0], 4), round(trial[1], 4), round(trial[2], 4), round(r, 4))

    # A wide first sweep visits the detector axes first (a z blur can partly mimic theirs),
    # then the local sweeps refine every axis.
    order = [ax for ax in (1, 2, 0) if ax in axes]
    for sweep in range(max(1, sweeps) + (1 if wide else 0)):
        first = wide and sweep == 0
        for ax in order:
            cur = sigma[ax]
            if first:
                cands = sorted(set(WIDE_GRID) | {round(cur, 4)})
            else:
                cands = sorted({round(min(SIGMA_MAX, max(0.0, cur + d)), 4) for d in LOCAL_STEPS})
            live = corr if min(sigma[1], sigma[2]) >= SIGMA_OFF else 0.0
            line = search.along([*(round(v, 4) for v in sigma), live], (ax,))

            def along(c: float, ax: int = ax, line: Callable[[float], float] = line,
                      live: float = live) -> float:
                trial = list(sigma)
                trial[ax] = c
                key = key_of(trial, live if min(trial[1], trial[2]) >= SIGMA_OFF else 0.0)
                if key not in cache:
                    cache[key] = line(key[ax])
                return cache[key]

            best = _best_on_line(cands, along)
            sigma[ax] = min(SIGMA_MAX, max(0.0, best))
        if not (correlation and 1 in axes and 2 in axes):
            continue
        _, y, x, corr = psf_params(_oblique(search, [*sigma, corr], first))
        sigma[1], sigma[2] = y, x
    z, y, x = (0.0 if v < SIGMA_OFF else round(v, 4) for v in sigma)
    return pack_psf(z, y, x, corr if min(y, x) >= SIGMA_OFF else 0.0)


def estimate_detector_sigma(
    i0: torch.Tensor, meas: Measured, candidates: Sequence[float] = WIDE_GRID,
    axes: Sequence[int] = (1, 2),
    others: Sequence[float] = (0.0, 0.0, 0.0),
) -> Sigma:
    """One PSF width shared by ``axes`` (the detector's ``y, x``) minimising the Poisson LLK.

    A fast first guess for :func:`estimate_sigma`: the candidates, then a parabola through the
    best one and its neighbours (about ten blurs of ``i0``); the other axes keep ``others``.

    Parameters
    ----------
    i0 : torch.Tensor
        Unblurred model intensity ``|fftn(rho)|**2``, in the layout of ``meas`` (FFT layout).
    meas : Measured
        The measured data.
    candidates : sequence of float
        Widths tried (pixels).
    axes : sequence of int
        Axes sharing the width (0 = z, 1 = y, 2 = x).
    others : sequence of 3 floats
        Widths kept on the other axes (``(z, y, x)``; the entries of ``axes`` are ignored).

    Returns
    -------
    tuple of 3 floats
        ``s`` on ``axes`` (0 below :data:`SIGMA_OFF`), ``others`` elsewhere.
    """
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"axes must be a non-empty subset of (0, 1, 2), got {axes!r}")
    cands = sorted({float(c) for c in candidates})
    if not cands or cands[0] < 0 or cands[-1] > SIGMA_MAX:
        raise ValueError(f"candidates must lie in [0, {SIGMA_MAX}], got {candidates!r}")
    return _shared_width(_Search(i0, meas), cands, axes, others)


def _shared_width(search: _Search, cands: Sequence[float], axes: Sequence[int],
                  others: Sequence[float]) -> Sigma:
    """:func:`estimate_detector_sigma` on a prepared search (checked arguments); ``others``
    may carry the ``y, x`` correlation of a kernel not searched on ``y`` or ``x``."""
    base = [float(v) for v in others]
    r = psf_params(base)[3]

    def widths(s: float) -> Sigma:
        return pack_psf(s if 0 in axes else base[0], s if 1 in axes else base[1],
                        s if 2 in axes else base[2], r)

    best = _best_on_line(cands, search.along(base, axes))
    return widths(0.0 if best < SIGMA_OFF else round(best, 4))


def detector_blur_of(
    obj: torch.Tensor,
    intensity: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    floor: float = 0.5,
    margin: float = 0.2,
    per_axis: bool = True,
    correlation: bool = True,
    rocking: bool = False,
) -> Sigma | None:
    """A detector-blur hypothesis ``(0, s_y, s_x[, r])`` from an object predicted before any
    refinement.

    An object fitted to blurred data without a PSF learns to mimic the blur (softer edges),
    after which an LLK search from it finds little blur; a prediction made from the intensity
    alone has no such bias, but it is imperfect, and the LLK then asks for some blur on every
    axis. A detector PSF blurs the detector axes ``y, x`` only, not the rocking axis ``z``: the
    hypothesis is made when the ``y, x`` widths (a shared width :func:`estimate_detector_sigma`,
    then, with ``per_axis``, each axis on its own from there: partial coherence is seldom the
    same along both) reach ``floor`` and exceed by ``margin`` the ``z`` width estimated next to
    them. It is a hypothesis for a second refinement to test by LLK, not a measurement.

    Parameters
    ----------
    obj : torch.Tensor
        Centred complex object ``(z, y, x)``.
    intensity : torch.Tensor
        Centred measured intensity, same shape.
    mask : torch.Tensor, optional
        Bad pixels (True = bad), excluded from the LLK.
    floor, margin : float
        Smallest width, and smallest excess over the ``z`` width (pixels), of the wider axis.
    per_axis : bool
        Estimate ``y`` and ``x`` each on its own after the shared width (``False``: ``(0, s, s)``).
    correlation : bool
        Then try an oblique ``y, x`` kernel (:func:`_oblique`), before the ``z`` width is
        compared.
    rocking : bool
        When there is no detector hypothesis, make one along the rocking axis ``z``
        ``(s_z, s_y, s_x[, r])`` where the ``z`` width lies in :data:`ROCKING_RANGE` and exceeds
        the wider detector axis by ``margin`` (partial coherence; separable ``y, x`` widths are
        fitted again beside it, since fitted first they hold part of it).

    Returns
    -------
    tuple of 3 or 4 floats, or None
        ``(0, s_y, s_x)``, or ``(0, s_y, s_x, r)`` for a correlated kernel, or with
        ``rocking`` ``(s_z, s_y, s_x[, r])``.
    """
    # one search for the four line searches: the data's LLK terms are computed once
    search = _Search(*_model_and_data(obj, intensity, mask))
    cands = sorted(WIDE_GRID)
    s_yx = _shared_width(search, cands, (1, 2), (0.0, 0.0, 0.0))[1]
    s_y = s_x = s_yx
    if per_axis:
        s_y = _shared_width(search, cands, (1,), (0.0, s_yx, s_yx))[1]
        s_x = _shared_width(search, cands, (2,), (0.0, s_y, s_yx))[2]
    detector = max(s_y, s_x) >= floor
    if not (detector or rocking):
        return None
    r = 0.0
    if correlation and detector:
        _, s_y, s_x, r = psf_params(_oblique(search, (0.0, s_y, s_x), True))
    s_z = _shared_width(search, cands, (0,), (0.0, s_y, s_x, r))[0]
    if detector and max(s_y, s_x) - s_z >= margin:
        return pack_psf(0.0, s_y, s_x, r)
    lo, hi = ROCKING_RANGE
    if not (rocking and lo <= s_z <= hi and s_z - max(s_y, s_x) >= margin):
        return None
    if r == 0.0:
        # the detector widths were fitted without the z blur, part of which they then hold
        s_y = _shared_width(search, cands, (1,), (s_z, s_y, s_x))[1]
        s_x = _shared_width(search, cands, (2,), (s_z, s_y, s_x))[2]
    return pack_psf(s_z, s_y, s_x, r)


def blur_fit_of(obj: torch.Tensor, intensity: torch.Tensor,
                mask: torch.Tensor | None = None) -> Sigma:
    """The PSF ``(z, y, x[, r])`` under which ``obj``'s pattern best explains ``intensity``
    (Poisson LLK, the wide search of :func:`estimate_sigma`: every axis, oblique ``y, x``
    kernels tried). ``obj``, ``intensity`` and ``mask`` as :func:`detector_blur_of`'s.
    """
    return estimate_sigma(*_model_and_data(obj, intensity, mask), wide=True)


def _model_and_data(obj: torch.Tensor, intensity: torch.Tensor, mask: torch.Tensor | None
                    ) -> tuple[torch.Tensor, Measured]:
    """``|FFT obj|²`` and the measured data, both in the searches' (FFT) layout, for the fits
    of a centred object to a centred intensity (checked: 3D, one shape)."""
    if obj.ndim != 3 or tuple(obj.shape) != tuple(intensity.shape):
        raise ValueError(
            f"obj and intensity must be 3D of the same shape, got {tuple(obj.shape)} and "
            f"{tuple(intensity.shape)}"
        )
    from ._quality import _intensity_of

    meas = prepare_measured(intensity.to(torch.float32), None if mask is None else mask.bool())
    return _intensity_of(obj.to(torch.complex64)), meas


def deconvolve(intensity: torch.Tensor, sigma: Sequence[float],
               mask: torch.Tensor | None = None, n_iter: int = 20) -> torch.Tensor:
    """Richardson-Lucy deconvolution of a centred intensity by the PSF ``sigma``.

    ``u <- u * psf(w * I / psf(u)) / psf(w)`` from ``u = psf(w * I)``, with ``w`` 0 on bad
    pixels (they keep their value) and 1 elsewhere: for Poisson counts the iteration raises
    the likelihood of ``I`` under ``psf(u)`` and keeps ``u >= 0``.

    Parameters
    ----------
    intensity : torch.Tensor
        Real 3D intensity (negative values count as 0).
    sigma : sequence of 3 or 4 floats
        The PSF (:class:`Psf`'s form).
    mask : torch.Tensor, optional
        Bad pixels (True = bad).
    n_iter : int
        Iterations (each two blurs).

    Returns
    -------
    torch.Tensor
        The deconvolved intensity, float32, same shape.
    """
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be 3D, got shape {tuple(intensity.shape)}")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    data = intensity.to(torch.float32).clamp_min(0)
    w = (torch.ones_like(data) if mask is None
         else (~mask.to(data.device, torch.bool)).to(torch.float32))
    psf = Psf(sigma, tuple(data.shape))
    if not psf.active:
        return data.clone()
    norm = psf.apply(w).clamp_min(1e-6).clone()
    u = psf.apply(data * w).clamp_min(1e-3)
    for _ in range(n_iter):
        ratio = w * data / psf.apply(u).clamp_min(1e-6)
        u = u * psf.apply(ratio) / norm
    return torch.where(w > 0, u, data)
