"""Elementwise kernels of the phasing loop: eager torch, and fused ones built with torch.compile.

Why fused kernels, and why the ``int64`` view
---------------------------------------------
One iteration is ``fftn -> modulus projection -> ifftn -> support projection``; the FFT pair is
the floor, so the elementwise work must cost well under a third of it. In eager torch the
modulus projection takes 4-5 passes over the array (no fast complex ``abs``, complex x real
products promote) and costs 35-45 % of an FFT pair on a 2-core CPU. A single fused pass costs
~10 %. ``torch.compile`` (inductor) generates that pass, but on a ``view_as_real`` view it
loops over the size-2 inner axis with scalar code (slower than eager). Viewing each complex64
element as one ``int64`` and splitting it into its two float32 halves with bit operations gives
contiguous, fully vectorised code. The formula is symmetric in (re, im), so the byte order does
not matter.

The engine runs the inverse FFT unnormalised (``norm="forward"``) and folds the ``1/N``
normalisation into the modulus projection factor, which saves MKL's scaling (~6 % of an
inverse FFT on CPU) at no cost: the kernels see ``amp / N`` and, on free pixels, ``1 / N``.

The eager kernels are the reference and the fallback: they need nothing but torch and run on
any device. Compiled kernels are built once per process and device type, checked against the
eager ones on a small array, and dropped (with a warning) if compilation fails, e.g. when no C++
compiler is installed.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass

import torch

#: Added to |psi|**2 before the reciprocal square root (a normal float32), so psi = 0 maps to 0.
TINY = 1e-30

_LOCK = threading.Lock()
_COMPILED: dict[str, tuple] = {}
_FAILED: dict[str, str] = {}


# --------------------------------------------------------------------------- measured data
@dataclass(frozen=True)
class Measured:
    """The measured data in FFT (``ifftshift``) layout, prepared once per reconstruction.

    Attributes
    ----------
    shape : tuple of int
        Spatial grid shape ``(z, y, x)``.
    amp0 : torch.Tensor
        float32 amplitude ``sqrt(I)`` with 0 on free (masked) pixels; shape ``shape``.
    amp_enc : torch.Tensor
        Kernel input: ``amp0 / N`` on measured pixels, ``-1 / N`` on free ones (``N`` voxels:
        the inverse FFT's normalisation, folded in).
    amp0_n : torch.Tensor
        Eager kernel input: ``amp0 / N``.
    free_n : torch.Tensor or None
        Eager kernel input: ``1 / N`` on free pixels, 0 elsewhere; None when no pixel is free.
    iobs : torch.Tensor
        float32 intensity with 0 on free pixels.
    valid : torch.Tensor or None
        bool, True on measured pixels; None when every pixel is measured.
    n_valid : int
        Number of measured pixels.
    """

    shape: tuple[int, int, int]
    amp0: torch.Tensor
    amp_enc: torch.Tensor
    amp0_n: torch.Tensor
    free_n: torch.Tensor | None
    iobs: torch.Tensor
    valid: torch.Tensor | None
    n_valid: int

    @property
    def voxels(self) -> int:
        """Number of voxels of the grid."""
        return int(self.amp_enc.numel())


def prepare_measured(intensity: torch.Tensor, mask: torch.Tensor | None) -> Measured:
    """Build :class:`Measured` from a centred intensity and bad-pixel mask.

    Negative intensities are treated as masked (PyNX convention).
    """
    dims = (-3, -2, -1)
    free = intensity < 0
    if mask is not None:
        free = free | mask
    iobs = torch.fft.ifftshift(intensity.clamp(min=0), dim=dims).contiguous()
    free_u = torch.fft.ifftshift(free, dim=dims).contiguous()
    amp0 = torch.sqrt(iobs)
    inv_n = 1.0 / iobs.numel()
    any_free = bool(free_u.any())
    if any_free:
        iobs = torch.where(free_u, 0.0, iobs)
        amp0 = torch.where(free_u, 0.0, amp0)
        amp0_n = amp0 * inv_n
        amp_enc = torch.where(free_u, -inv_n, amp0_n)
        free_n = free_u.to(torch.float32) * inv_n
        valid = ~free_u
        n_valid = int(valid.sum())
    else:
        amp0_n = amp0 * inv_n
        amp_enc, free_n, valid, n_valid = amp0_n, None, None, int(iobs.numel())
    if n_valid == 0:
        raise ValueError("mask must leave at least one measured pixel")
    return Measured(
        shape=tuple(intensity.shape),  # type: ignore[arg-type]
        amp0=amp0.contiguous(),
        amp_enc=amp_enc.contiguous(),
        amp0_n=amp0_n.contiguous(),
        free_n=free_n,
        iobs=iobs,
        valid=valid,
        n_valid=n_valid,
    )


# --------------------------------------------------------------------------- eager kernels
def squared_modulus(psi: torch.Tensor) -> torch.Tensor:
    """``re**2 + im**2`` of a complex64 array, as a new float32 array of its shape.

    Bit for bit ``re * re`` then ``+ im * im`` (fused, as ``addcmul`` computes it), read one of
    two ways that give the same bits (:func:`_squared_halves`): the strided ``view_as_real``
    halves, or, for a contiguous array, its ``int64`` view (each element's two float32 halves
    split by bit operations, see the module doc). Which is faster depends on the CPU (at 64³ on
    a CPU thread: 0.25 against 0.48 ms for the ``int64`` view on an AMD EPYC, 0.44 against 0.28
    ms on an Intel Xeon with AVX-512), so a CPU process times both once
    (:func:`int64_halves_faster`); other devices use the ``int64`` view. Every blur-aware
    iteration and every eager modulus projection pays this.
    """
    int64_view = (
        psi.dtype == torch.complex64
        and psi.is_contiguous()
        and (psi.device.type != "cpu" or int64_halves_faster())
    )
    return _squared_halves(psi, int64_view)


def _squared_halves(psi: torch.Tensor, int64_view: bool) -> torch.Tensor:
    """:func:`squared_modulus` read through the ``int64`` view (a contiguous complex64 array
    only) or through the strided ``view_as_real`` halves."""
    if int64_view:
        bits = psi.view(torch.int64)
        # the int32 cast keeps the low half (two's complement): no mask pass needed here
        re = bits.to(torch.int32).view(torch.float32)
        im = (bits >> 32).to(torch.int32).view(torch.float32)
    else:
        r = torch.view_as_real(psi)
        re, im = r[..., 0], r[..., 1]
    s = torch.mul(re, re)
    return s.addcmul_(im, im)


#: Whether :func:`squared_modulus` reads a CPU array through its ``int64`` view (None: not
#: timed yet in this process).
_INT64_HALVES: bool | None = None


def int64_halves_faster() -> bool:
    """Whether, on this CPU, :func:`squared_modulus` is faster through the ``int64`` view than
    through the strided halves: timed once per process (the best of 5 calls each on a 64³
    array, a few milliseconds) and remembered. Both give the same bits, so the choice moves
    only the time."""
    global _INT64_HALVES
    if _INT64_HALVES is None:
        gen = torch.Generator().manual_seed(0)
        psi = torch.randn((64, 64, 64), generator=gen, dtype=torch.complex64)

        def best(view: bool) -> float:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                _squared_halves(psi, view)
                times.append(time.perf_counter() - t0)
            return min(times)

        best(True), best(False)  # warm both paths up
        _INT64_HALVES = best(True) < best(False)
    return _INT64_HALVES


def modulus_eager(psi: torch.Tensor, amp0: torch.Tensor, free: torch.Tensor | None) -> None:
    """In place: ``psi <- psi * amp0/|psi|`` where ``free`` is 0, ``psi * free`` elsewhere.

    ``amp0`` must be 0 where ``free`` is not (with ``free = 1`` there: psi unchanged).
    """
    s = squared_modulus(psi)
    s.add_(TINY).rsqrt_()
    if free is None:
        s.mul_(amp0)
    else:
        torch.addcmul(free, amp0, s, out=s)  # `free` on free pixels (amp0 = 0 there)
    psi.mul_(s)


def update_eager(
    rho: torch.Tensor,
    p: torch.Tensor,
    w: torch.Tensor,
    keep: torch.Tensor,
    a: float,
    b: float,
    box: tuple[slice, ...] | None = None,
) -> None:
    """In place: ``rho <- p`` inside the support, ``a*rho + b*p`` outside.

    ``box``: the support's bounding box (slices of the last three axes), when known: the
    selection is then made inside the box only (outside it every voxel is outside the
    support), the same bits in about a fifth of the time at an oversampling of 2.
    """
    if a == 0.0 and b == 0.0:
        torch.mul(p, w, out=rho)
        return
    if a != 1.0:  # HIO's a is 1: skip a pass that changes no bit
        rho.mul_(a)
    rho.add_(p, alpha=b)
    if box is None:
        torch.where(keep, p, rho, out=rho)
        return
    idx = (Ellipsis, *box)
    inner = rho[idx]
    torch.where(keep[idx], p[idx], inner, out=inner)


# --------------------------------------------------------------------------- fused kernels
def _split(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lo = (z & 0xFFFFFFFF).to(torch.int32).view(torch.float32)
    hi = (z >> 32).to(torch.int32).view(torch.float32)
    return lo, hi


def _join(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    hi_bits = hi.view(torch.int32).to(torch.int64) << 32
    lo_bits = lo.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return hi_bits | lo_bits


def _modulus_bits(z: torch.Tensor, amp: torch.Tensor) -> None:
    """``z``: int64 view of complex64 psi (1D); ``amp``: float32, ``-c`` on free pixels.

    ``psi <- psi * amp / |psi|`` where ``amp >= 0``, ``psi * c`` where ``amp = -c < 0``.
    """
    lo, hi = _split(z)
    f = torch.where(amp < 0, -amp, amp * torch.rsqrt(lo * lo + hi * hi + TINY))
    z.copy_(_join(lo * f, hi * f))


def _update_bits(
    zx: torch.Tensor, zp: torch.Tensor, w: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> None:
    """``zx``, ``zp``: int64 views of rho and p (1D); ``w``: float32 support (1 inside)."""
    xl, xh = _split(zx)
    pl, ph = _split(zp)
    inside = w > 0
    lo = torch.where(inside, pl, a * xl + b * pl)
    hi = torch.where(inside, ph, a * xh + b * ph)
    zx.copy_(_join(lo, hi))


def _flat64(x: torch.Tensor) -> torch.Tensor:
    return x.view(torch.int64).view(-1)


def _build_compiled(device: torch.device) -> tuple:
    mod = torch.compile(_modulus_bits, dynamic=True, fullgraph=True)
    upd = torch.compile(_update_bits, dynamic=True, fullgraph=True)
    # Warm up on a small odd-sized array (dynamic shapes: later sizes reuse the code) and check
    # the result against the eager kernels.
    gen = torch.Generator().manual_seed(0)
    n = 4099
    psi = torch.randn(n, generator=gen, dtype=torch.complex64).to(device)
    amp = torch.rand(n, generator=gen).to(device)
    amp[::7] = -0.5
    ref = psi.clone()
    modulus_eager(ref, amp.clamp(min=0), (amp < 0).to(torch.float32) * 0.5)
    got = psi.clone()
    mod(_flat64(got), amp)
    rho = torch.randn(n, generator=gen, dtype=torch.complex64).to(device)
    keep = (torch.rand(n, generator=gen) > 0.5).to(device)
    w = keep.to(torch.float32)
    ref_u = rho.clone()
    update_eager(ref_u, psi, w, keep, 0.9, -0.8)
    got_u = rho.clone()
    upd(_flat64(got_u), _flat64(psi), w, *_scalars(0.9, -0.8, device))
    if not (
        torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
        and torch.allclose(got_u, ref_u, rtol=1e-5, atol=1e-6)
    ):
        raise RuntimeError("compiled kernels disagree with the eager reference")
    return mod, upd


def _scalars(a: float, b: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(a, dtype=torch.float32, device=device),
        torch.tensor(b, dtype=torch.float32, device=device),
    )


def compiled_for(device: torch.device) -> tuple | None:
    """The compiled (modulus, update) kernels for ``device``'s type, building them once.

    Returns None (after one warning) when they cannot be built on this machine.
    """
    key = device.type
    if key in _COMPILED:
        return _COMPILED[key]
    if key in _FAILED:
        return None
    with _LOCK:
        if key in _COMPILED:
            return _COMPILED[key]
        if key in _FAILED:
            return None
        try:
            with torch.no_grad():  # the engine runs under no_grad: warm up in the same mode
                kernels = _build_compiled(device)
        except Exception as exc:  # any backend failure means: use eager
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _FAILED[key] = reason
            warnings.warn(
                f"bcdi_stream.phasing: torch.compile kernels unavailable on {key} ({reason}); "
                "using the eager kernels",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        _COMPILED[key] = kernels
        return kernels


class Kernels:
    """The elementwise kernels used by the engine, compiled or eager.

    Parameters
    ----------
    device : torch.device
        Where the data live.
    compiled : bool
        Try the fused, compiled kernels (falls back to eager when they cannot be built).
    """

    def __init__(self, device: torch.device, compiled: bool) -> None:
        self.device = device
        fused = compiled_for(device) if compiled else None
        self.compiled = fused is not None
        self._mod, self._upd = fused if fused is not None else (None, None)
        self._scalar_cache: dict[tuple[float, float], tuple[torch.Tensor, torch.Tensor]] = {}
        self._amp_entry: tuple[Measured, int, torch.Tensor] | None = None

    def _amp(self, meas: Measured, copies: int) -> torch.Tensor:
        """Flat encoded amplitude, repeated ``copies`` times for a block of runs (cached)."""
        entry = self._amp_entry
        if entry is not None and entry[0] is meas and entry[1] == copies:
            return entry[2]
        flat = meas.amp_enc.view(-1)
        amp = flat if copies == 1 else flat.repeat(copies)
        self._amp_entry = (meas, copies, amp)
        return amp

    def modulus(self, psi: torch.Tensor, meas: Measured) -> None:
        """In-place modulus projection of ``psi`` (``(z,y,x)`` or ``(b,z,y,x)``, FFT layout).

        The result carries the ``1/N`` of the inverse FFT: follow with an unnormalised
        ``ifftn(..., norm="forward")``.
        """
        if self._mod is not None:
            copies = 1 if psi.ndim == 3 else psi.shape[0]
            self._mod(_flat64(psi), self._amp(meas, copies))
        else:
            modulus_eager(psi, meas.amp0_n, meas.free_n)

    def update(
        self,
        rho: torch.Tensor,
        p: torch.Tensor,
        w: torch.Tensor,
        keep: torch.Tensor,
        a: float,
        b: float,
        box: tuple[slice, ...] | None = None,
    ) -> None:
        """In place: ``rho <- p`` inside the support, ``a*rho + b*p`` outside (``box``: the
        support's bounding box, used by the eager kernel, see :func:`update_eager`)."""
        if self._upd is not None:
            key = (a, b)
            sc = self._scalar_cache.get(key)
            if sc is None:
                sc = self._scalar_cache[key] = _scalars(a, b, self.device)
            self._upd(_flat64(rho), _flat64(p), w.view(-1), *sc)
        else:
            update_eager(rho, p, w, keep, a, b, box)
