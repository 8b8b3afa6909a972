"""The batched iteration engine: ER / HIO / RAAR on a batch of independent runs.

Layout: the object ``rho`` is kept centred in real space and the measured modulus in FFT
(``ifftshift``) layout, so an iteration is ``fftn -> modulus projection -> ifftn -> support
projection`` with no shift (``|fftn(rho)| == |fft_centered(rho)|``).

Scheduling: runs are independent, so the engine may process them in any order. On a GPU a
whole chunk of runs goes through batched FFTs. On a CPU, batched MKL transforms pay off only
for small grids: for 64**3 and up they are slower per run than one at a time (the batch leaves
the cache; outputs above glibc's 32 MB mmap threshold page-fault on every call). So the runs are
split into *blocks* (:func:`default_block`) and each block runs all the iterations of a segment
before the next block starts. Every run sees the same arithmetic whatever the blocking, so a
batch reproduces sequential runs bit for bit.

The inverse FFT runs unnormalised (``norm="forward"``): its ``1/N`` is folded into the modulus
projection (:class:`~bcdi_stream.phasing._kernels.Measured`).

ER keeps ``rho`` zero outside the support's bounding box and writes only inside the box
(``rho[box] = p[box] & support[box]`` on the ``int64`` view: one pass over at most (N/2)**3
voxels when the oversampling is >= 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..physics import SPATIAL_DIMS
from ._kernels import Kernels, Measured
from ._psf import BlurTarget, Psf, Sigma, estimate_sigma, project_blurred
from ._quality import _intensity_of, llk_chi2
from ._support import bounding_box

#: CPU blocking, measured on a 2-core CPU (MKL, ER, time per run-iteration vs block size):
#: 16**3 best with >= 16 runs (5x faster than 1), 32**3 and 48**3 with 4 (1.5x and 1.15x),
#: 64**3 with 1 (2 runs: 1.2x slower). Runs of at most SMALL_RUN_BYTES are blocked up to
#: SMALL_BLOCK_BYTES in all; runs of at most MEDIUM_RUN_BYTES by MEDIUM_BLOCK; larger, one by one.
SMALL_RUN_BYTES = 64 * 1024
SMALL_BLOCK_BYTES = 2 * 1024**2
MEDIUM_RUN_BYTES = 1024**2
MEDIUM_BLOCK = 4

ALGORITHMS = ("ER", "HIO", "RAAR")


def coefficients(algo: str, beta: float) -> tuple[float, float]:
    """``(a, b)`` of the outside-support update ``a*rho + b*P_M(rho)``.

    ER: 0; HIO: ``rho - beta P_M rho``; RAAR (Luke 2005): ``beta rho + (1 - 2 beta) P_M rho``
    (inside the support all three take ``P_M rho``).
    """
    if algo == "ER":
        return 0.0, 0.0
    if algo == "HIO":
        return 1.0, -beta
    if algo == "RAAR":
        return beta, 1.0 - 2.0 * beta
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algo!r}")


def default_block(device: torch.device, voxels: int, batch: int) -> int:
    """Runs per block: the whole batch on a GPU; on a CPU, see :data:`SMALL_RUN_BYTES`."""
    if device.type != "cpu":
        return batch
    run_bytes = 8 * voxels
    if run_bytes <= SMALL_RUN_BYTES:
        return max(1, min(batch, SMALL_BLOCK_BYTES // run_bytes))
    if run_bytes <= MEDIUM_RUN_BYTES:
        return max(1, min(batch, MEDIUM_BLOCK))
    return 1


def random_start(
    meas: Measured, support: torch.Tensor, seeds: list[int]
) -> torch.Tensor:
    """Initial objects: measured modulus with uniform random phases, back-transformed, x support.

    Parameters
    ----------
    meas : Measured
        The measured data.
    support : torch.Tensor
        bool ``(B, z, y, x)`` centred supports.
    seeds : list of int
        One seed per run; draws are made on the CPU so that they do not depend on the device.

    Returns
    -------
    torch.Tensor
        complex64 ``(B, z, y, x)``.
    """
    device = meas.amp0.device
    rho = torch.empty(support.shape, dtype=torch.complex64, device=device)
    for i, seed in enumerate(seeds):
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        phase = torch.rand(meas.shape, generator=gen, dtype=torch.float32).to(device)
        psi = torch.polar(meas.amp0, phase * (2 * math.pi))
        rho[i] = torch.fft.ifftn(psi, dim=SPATIAL_DIMS) * support[i]
    return rho


class Engine:
    """State and iterations of a batch of independent phasing runs.

    Parameters
    ----------
    meas : Measured
        The measured data (FFT layout).
    rho : torch.Tensor
        complex64 ``(B, z, y, x)`` centred objects; owned and updated in place.
    support : torch.Tensor
        bool ``(B, z, y, x)`` centred supports.
    kernels : Kernels
        Elementwise kernels (compiled or eager).
    block : int, optional
        Runs iterated together (default: :func:`default_block`).
    """

    def __init__(
        self,
        meas: Measured,
        rho: torch.Tensor,
        support: torch.Tensor,
        kernels: Kernels,
        block: int | None = None,
    ) -> None:
        if rho.ndim != 4 or tuple(rho.shape[1:]) != tuple(meas.shape):
            raise ValueError(f"rho must have shape (B, *{meas.shape}), got {tuple(rho.shape)}")
        self.meas = meas
        self.rho = rho.to(torch.complex64).contiguous()
        self.kernels = kernels
        self.batch = int(rho.shape[0])
        blk = block if block is not None else default_block(rho.device, meas.voxels, self.batch)
        self.blocks = [(s, min(s + blk, self.batch)) for s in range(0, self.batch, blk)]
        self.set_support(support)
        self.psfs: list[Psf | None] = [None] * self.batch
        self._target: BlurTarget | None = None

    # ------------------------------------------------------------------ PSF
    @property
    def psf_sigma(self) -> list[Sigma]:
        """Per-run PSF widths ``(z, y, x)`` in pixels (zeros: no PSF)."""
        return [p.sigma if p is not None else (0.0, 0.0, 0.0) for p in self.psfs]

    def set_psf(self, sigma: Sigma | list[Sigma] | None) -> None:
        """Set the PSF widths of every run (one triple, or one per run; None = off)."""
        sigmas = sigma if isinstance(sigma, list) else [sigma] * self.batch
        if len(sigmas) != self.batch:
            raise ValueError(f"need {self.batch} PSF widths, got {len(sigmas)}")
        for i, s in enumerate(sigmas):
            p = Psf(s, self.meas.shape) if s is not None else None
            self.psfs[i] = p if p is not None and p.active else None
        if any(p is not None for p in self.psfs) and self._target is None:
            n = float(self.meas.voxels)
            self._target = BlurTarget(self.meas.iobs / (n * n))

    def estimate_psf(self, wide: bool, axes: tuple[int, ...] = (0, 1, 2)) -> None:
        """Re-estimate each run's PSF widths from its support-projected object (LLK search)."""
        new: list[Sigma] = []
        with torch.no_grad():
            for i in range(self.batch):
                i0 = _intensity_of(self.rho[i] * self.w[i])
                new.append(estimate_sigma(i0, self.meas, self.psf_sigma[i], wide=wide, axes=axes))
        self.set_psf(new)

    def model_intensity(self, i: int) -> torch.Tensor:
        """Model intensity of run ``i`` (FFT layout), blurred by its PSF when one is set."""
        i0 = _intensity_of(self.rho[i])
        p = self.psfs[i]
        return i0 if p is None else p.apply(i0)

    # ------------------------------------------------------------------ support
    def set_support(self, support: torch.Tensor) -> None:
        """Replace the supports (bool ``(B, z, y, x)``)."""
        if tuple(support.shape) != tuple(self.rho.shape):
            raise ValueError(
                f"support must have shape {tuple(self.rho.shape)}, got {tuple(support.shape)}"
            )
        self.keep = support.to(device=self.rho.device, dtype=torch.bool).contiguous()
        self.w = self.keep.to(torch.float32)
        self._er: list[tuple[tuple[slice, slice, slice], torch.Tensor]] | None = None
        #: bounding boxes of the supports of runs ``s:e``, by ``(s, e)`` (:meth:`_box`)
        self._boxes: dict[tuple[int, int], tuple[slice, slice, slice]] = {}

    @property
    def support(self) -> torch.Tensor:
        """Current supports, bool ``(B, z, y, x)``."""
        return self.keep

    def _box(self, s: int, e: int) -> tuple[slice, slice, slice]:
        """Bounding box of the supports of runs ``s:e`` (cached until the supports change; a
        block of one run and that run share the entry)."""
        box = self._boxes.get((s, e))
        if box is None:
            box = self._boxes[(s, e)] = bounding_box(self.keep[s:e])
        return box

    def _prepare_er(self) -> None:
        """Zero rho outside the support and cache each block's bounding box and bit mask."""
        self.rho.mul_(self.w)
        self._er = []
        for s, e in self.blocks:
            box = self._box(s, e)
            # all bits set inside the support
            bits = self.keep[s:e][(slice(None), *box)].to(torch.int64).neg_()
            self._er.append((box, bits[0] if e - s == 1 else bits))

    # ------------------------------------------------------------------ iterations
    def iterate(
        self,
        algo: str,
        n: int,
        beta: float = 0.9,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Run ``n`` iterations of ``algo`` (``"ER"``, ``"HIO"``, ``"RAAR"``) on every run.

        ``on_progress(k)`` is called after each block with the number of run-iterations done.
        """
        a, b = coefficients(algo, beta)
        if n <= 0:
            return
        er = algo == "ER"
        if er and self._er is None:
            self._prepare_er()
        elif not er:
            self._er = None  # HIO/RAAR write outside the support
        with torch.no_grad():
            for k, (s, e) in enumerate(self.blocks):
                if any(p is not None for p in self.psfs[s:e]):
                    self._iterate_psf(k, s, e, er, n, a, b)
                    if on_progress is not None:
                        on_progress(n * (e - s))
                    continue
                one = e - s == 1
                r = self.rho[s] if one else self.rho[s:e]
                if er:
                    box, bits = self._er[k]  # type: ignore[index]
                    idx = (Ellipsis, *box)
                    r_box = r.view(torch.int64)[idx]
                    for _ in range(n):
                        psi = torch.fft.fftn(r, dim=SPATIAL_DIMS)
                        self.kernels.modulus(psi, self.meas)
                        p = torch.fft.ifftn(psi, dim=SPATIAL_DIMS, norm="forward")
                        torch.bitwise_and(p.view(torch.int64)[idx], bits, out=r_box)
                else:
                    w = self.w[s] if one else self.w[s:e]
                    keep = self.keep[s] if one else self.keep[s:e]
                    box = self._box(s, e)
                    for _ in range(n):
                        psi = torch.fft.fftn(r, dim=SPATIAL_DIMS)
                        self.kernels.modulus(psi, self.meas)
                        p = torch.fft.ifftn(psi, dim=SPATIAL_DIMS, norm="forward")
                        self.kernels.update(r, p, w, keep, a, b, box)
                if on_progress is not None:
                    on_progress(n * (e - s))

    def _iterate_psf(self, k: int, s: int, e: int, er: bool, n: int, a: float, b: float) -> None:
        """The blur-aware branch: runs of the block one at a time (PSFs may differ)."""
        free_n = self.meas.free_n
        target = self._target
        assert target is not None
        for i in range(s, e):
            r = self.rho[i]
            psf = self.psfs[i]
            if er:
                box, bits = self._er[k]  # type: ignore[index]
                bits_i = bits if bits.ndim == 3 else bits[i - s]
                idx = (Ellipsis, *box)
                r_box = r.view(torch.int64)[idx]
            else:
                run_box = self._box(i, i + 1)
            for _ in range(n):
                psi = torch.fft.fftn(r, dim=SPATIAL_DIMS)
                if psf is None:
                    self.kernels.modulus(psi, self.meas)
                else:
                    project_blurred(psi, psf, target, free_n)
                p = torch.fft.ifftn(psi, dim=SPATIAL_DIMS, norm="forward")
                if er:
                    torch.bitwise_and(p.view(torch.int64)[idx], bits_i, out=r_box)
                else:
                    self.kernels.update(r, p, self.w[i], self.keep[i], a, b, run_box)

    # ------------------------------------------------------------------ quality
    def quality(self) -> tuple[list[float], list[float]]:
        """Per-run normalised Poisson LLK and chi-square of the current objects.

        With a PSF set, the model intensity is the blurred one.
        """
        llks, chis = [], []
        with torch.no_grad():
            for i in range(self.batch):
                llk, chi = llk_chi2(self.model_intensity(i), self.meas)
                llks.append(llk)
                chis.append(chi)
        return llks, chis
