"""The phase-prediction model: intensity in, reciprocal-space phase out.

Two kinds share the :class:`UNet3D` trunk:

- ``"direct"`` (the paper's formulation): the UNet maps the min–max normalised ``log(1 + I)``
  to the phase φ(q) voxel by voxel.
- ``"patterson"``: the UNet works in real space, on the ``(N/2)³`` central box where the
  object must lie (oversampling ≥ 2). Its input is the autocorrelation of the object (the
  Patterson function ``A = IFFT(I)``, a fixed function of the measured intensity) read two ways
  on that box: ``A(2r)`` — whose support is the object's own support for a centrosymmetric
  convex crystal, so every voxel sees the evidence for the object at the same place — and
  ``A(r)`` (local structure). Its output is the complex object on the box; a fixed FFT layer
  turns it into φ(q) = arg FFT(ρ) on the full N³ grid. The phase at every |q| then comes from
  one coherent object, so the fringe signs at high |q| follow from the predicted shape.

Both are trained with the WCA loss on φ(q) (:func:`~bcdi_stream.model.wca_loss`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .. import physics
from ._loss import log_minmax
from ._unet import UNet3D, UNetConfig

__all__ = ["MODEL_KINDS", "ModelConfig", "PhaseModel", "patterson_features"]

#: Model kinds (see the module docstring).
MODEL_KINDS: tuple[str, ...] = ("direct", "patterson")


@dataclass
class ModelConfig:
    """Configuration of :class:`PhaseModel` (stored in every checkpoint).

    Parameters
    ----------
    kind : {"direct", "patterson"}
        Reciprocal-space UNet on the log-intensity, or real-space UNet on the autocorrelation
        with an FFT read-out.
    grid : int
        Side N of the intensity grid (64 for the paper's inputs).
    unet : UNetConfig
        The trunk (its ``grid``, ``in_channels``, ``out_channels`` and, for ``"patterson"``,
        ``stem_stride`` are set from ``kind`` and ``grid``).
    """

    kind: str = "patterson"
    grid: int = 64
    unet: UNetConfig = field(default_factory=lambda: UNetConfig(grid=32, stem_stride=1,
                                                                channels=(16, 32, 64)))

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig.from_dict(self.unet)
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.grid < 8 or self.grid % 4:
            raise ValueError(f"grid must be a multiple of 4 >= 8, got {self.grid}")
        d = self.unet.to_dict()
        if self.kind == "direct":
            d.update(grid=self.grid, in_channels=1, out_channels=1)
        else:
            d.update(grid=self.grid // 2, in_channels=6, out_channels=2, stem_stride=1)
        if d != self.unet.to_dict():
            self.unet = UNetConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["unet"] = self.unet.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["unet"] = UNetConfig.from_dict(d["unet"])
        return cls(**d)


def patterson_features(intensity: torch.Tensor, offset: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """Autocorrelation features on the central box, ``(B, 6, N/2, N/2, N/2)``.

    With ``A = IFFT(I) / A(0)`` (centred, so ``A(0)`` sits at ``N // 2``): Re, Im and √|·| of
    ``A(2r)`` (every other voxel of the whole grid) and of ``A(r)`` (the central box), for the
    box offsets ``r = -N/4 … N/4 - 1``.

    Parameters
    ----------
    intensity : torch.Tensor
        ``(B, N, N, N)`` centred intensities (counts, ≥ 0), N a multiple of 4.
    offset : torch.Tensor, optional
        ``(B, 3)`` centre of mass of each pattern in pixels from ``N // 2``
        (:func:`bcdi_stream.preprocess.bragg_offset`): the autocorrelation is demodulated by
        :func:`bcdi_stream.physics.shift_ramp` so that the features are those of the pattern
        centred exactly, as in training.
    """
    n = intensity.shape[-1]
    i = intensity.clamp_min(0).to(torch.float32)
    i = i / i.flatten(1).sum(-1).clamp_min(1e-12)[:, None, None, None]
    a = physics.ifft_centered(i.to(torch.complex64))
    if offset is not None:
        if tuple(offset.shape) != (a.shape[0], 3):
            raise ValueError(f"offset must have shape ({a.shape[0]}, 3), got {tuple(offset.shape)}")
        a = a * torch.stack([physics.shift_ramp(a.shape, o, a.device) for o in offset]).conj()
    c = n // 2
    a = a / a[:, c, c, c].abs().clamp_min(1e-12)[:, None, None, None]
    far = a[:, 0::2, 0::2, 0::2]
    q = n // 4
    near = a[:, c - q:c + q, c - q:c + q, c - q:c + q]
    return torch.stack([far.real, far.imag, far.abs().sqrt(),
                        near.real, near.imag, near.abs().sqrt()], dim=1)


class PhaseModel(nn.Module):
    """Reciprocal-space phase predictor: ``(B, N, N, N)`` intensity → ``(B, N, N, N)`` φ(q).

    Parameters
    ----------
    config : ModelConfig, optional
        Architecture (default: the ``"patterson"`` kind on 64³).

    Notes
    -----
    The intensity must be centred on its centre of mass (the simulator and
    :func:`bcdi_stream.preprocess.prepare_frames` both do it). :meth:`forward` returns the
    unit phasor ``e^{iφ}`` as a complex tensor (well defined where |ψ| vanishes, which is what
    the loss needs); :meth:`predict_phase` returns φ in radians.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ModelConfig()
        self.unet = UNet3D(cfg.unet)

    def example_input(self, grid: int) -> torch.Tensor:
        """A dummy input of the right shape (used by :func:`count_flops`)."""
        return torch.ones(1, grid, grid, grid)

    def _check(self, intensity: torch.Tensor) -> torch.Tensor:
        if intensity.ndim == 5 and intensity.shape[1] == 1:
            intensity = intensity[:, 0]
        n = self.config.grid
        if intensity.ndim != 4 or tuple(intensity.shape[1:]) != (n, n, n):
            raise ValueError(
                f"intensity must be (B, {n}, {n}, {n}), got {tuple(intensity.shape)}"
            )
        return intensity

    def forward_object(self, intensity: torch.Tensor, offset: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """``"patterson"`` kind: the predicted complex object ``(B, N, N, N)``.

        With ``offset`` (``(B, 3)`` pixels, see :func:`patterson_features`) the object is
        that of the exactly centred pattern: multiply it by
        :func:`bcdi_stream.physics.shift_ramp` to match the given one.
        """
        if self.config.kind != "patterson":
            raise ValueError("forward_object needs kind='patterson'")
        intensity = self._check(intensity)
        # float32 whatever the trunk computed in (bfloat16 under autocast in training)
        out = self.unet(patterson_features(intensity, offset)).float()
        n, q = self.config.grid, self.config.grid // 4
        obj = torch.zeros((out.shape[0], n, n, n), dtype=torch.complex64, device=out.device)
        c = n // 2
        obj[:, c - q:c + q, c - q:c + q, c - q:c + q] = torch.complex(out[:, 0], out[:, 1])
        return obj

    def forward(self, intensity: torch.Tensor) -> torch.Tensor:
        """Unit phasor ``e^{iφ(q)}`` ``(B, N, N, N)``, complex64."""
        intensity = self._check(intensity)
        if self.config.kind == "direct":
            phi = self.unet(log_minmax(intensity)[:, None])[:, 0].float()
            return torch.polar(torch.ones_like(phi), phi)
        return self.phasor_of(self.forward_object(intensity))

    @staticmethod
    def phasor_of(obj: torch.Tensor) -> torch.Tensor:
        """Unit phasor ``e^{i arg FFT(ρ)}`` of centred objects ``(B, N, N, N)``."""
        psi = physics.fft_centered(obj)
        mag = psi.abs()
        eps = 1e-6 * mag.flatten(1).mean(-1).clamp_min(1e-30)[:, None, None, None]
        return psi / (mag + eps)

    @torch.no_grad()
    def predict_phase(self, intensity: torch.Tensor) -> torch.Tensor:
        """φ(q) in radians, ``(B, N, N, N)`` (no gradient)."""
        return torch.angle(self(intensity))
