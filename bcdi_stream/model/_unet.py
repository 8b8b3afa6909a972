"""A 3D UNet predicting the reciprocal-space phase, sized for accuracy per FLOP on a CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["UNet3D", "UNetConfig", "count_flops", "count_parameters"]


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet3D` (stored in every checkpoint).

    Parameters
    ----------
    grid : int
        Input/output grid size N (N³ voxels).
    channels : tuple of int
        Channels per resolution level, from the (possibly downsampled) stem to the bottleneck.
    stem_stride : int
        1 keeps full resolution in the first level; 2 halves it at once (4.5× cheaper).
    blocks : int
        Convolution blocks per level (each: conv3×3×3, norm, activation).
    dilations : tuple of int
        Dilation of the convolutions at the bottleneck level (grows the receptive field).
    out_channels : int
        1: the phase; 2: (cos φ, sin φ) read out with atan2 (or, inside
        :class:`~bcdi_stream.model.PhaseModel`, the real and imaginary parts of the object).
    in_channels : int
        Input feature channels (1: the normalised log-intensity).
    norm : {"instance", "group", "batch"}
        Normalisation layer.
    """

    grid: int = 64
    channels: tuple[int, ...] = (16, 32, 64, 128)
    stem_stride: int = 2
    blocks: int = 2
    dilations: tuple[int, ...] = (1, 2)
    out_channels: int = 1
    norm: str = "instance"
    in_channels: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.dilations = tuple(int(d) for d in self.dilations)
        if len(self.channels) < 2:
            raise ValueError(f"channels must list at least 2 levels, got {self.channels}")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive, got {self.channels}")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        if self.out_channels not in (1, 2):
            raise ValueError(f"out_channels must be 1 or 2, got {self.out_channels}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.norm not in ("instance", "group", "batch"):
            raise ValueError(f"norm must be instance, group or batch, got {self.norm!r}")
        div = self.stem_stride * 2 ** (len(self.channels) - 1)
        if self.grid % div:
            raise ValueError(f"grid must be divisible by {div} for this depth, got {self.grid}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm3d(ch, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    return nn.BatchNorm3d(ch)


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, n: int, norm: str, dilations: tuple[int, ...] = (1,)
                 ) -> None:
        layers: list[nn.Module] = []
        for i in range(n):
            d = dilations[i % len(dilations)]
            layers += [
                nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=d, dilation=d, bias=False),
                _norm(norm, cout),
                nn.LeakyReLU(0.1, inplace=True),
            ]
        super().__init__(*layers)


class UNet3D(nn.Module):
    """3D UNet: ``(B, 1, N, N, N)`` normalised log-intensity → ``(B, 1, N, N, N)`` phase.

    Parameters
    ----------
    config : UNetConfig
        Architecture.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or UNetConfig()
        ch = cfg.channels
        s = cfg.stem_stride
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, ch[0], 3, stride=s, padding=1, bias=False),
            _norm(cfg.norm, ch[0]),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.enc = nn.ModuleList([_Block(ch[0], ch[0], cfg.blocks - 1 or 1, cfg.norm)])
        self.down = nn.ModuleList()
        for i in range(1, len(ch)):
            self.down.append(nn.Conv3d(ch[i - 1], ch[i], 2, stride=2, bias=False))
            last = i == len(ch) - 1
            self.enc.append(_Block(ch[i], ch[i], cfg.blocks, cfg.norm,
                                   cfg.dilations if last else (1,)))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(ch) - 1, 0, -1):
            self.up.append(nn.ConvTranspose3d(ch[i], ch[i - 1], 2, stride=2, bias=False))
            self.dec.append(_Block(2 * ch[i - 1], ch[i - 1], cfg.blocks, cfg.norm))
        if s == 2:
            self.head = nn.Sequential(
                nn.ConvTranspose3d(ch[0], ch[0], 2, stride=2, bias=False),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv3d(ch[0] + cfg.in_channels, cfg.out_channels, 3, padding=1),
            )
        else:
            self.head = nn.Sequential(
                nn.Conv3d(ch[0] + cfg.in_channels, cfg.out_channels, 3, padding=1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the phase (or (cos, sin) channels when ``out_channels == 2``)."""
        inp = x
        h = self.enc[0](self.stem(x))
        skips = [h]
        for down, enc in zip(self.down, self.enc[1:], strict=True):
            h = enc(down(h))
            skips.append(h)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            h = dec(torch.cat([up(h), skip], dim=1))
        if self.config.stem_stride == 2:
            h = self.head[1](self.head[0](h))
            return self.head[2](torch.cat([h, inp], dim=1))
        return self.head[0](torch.cat([h, inp], dim=1))

    def predict_phase(self, x: torch.Tensor) -> torch.Tensor:
        """Phase in radians, ``(B, N, N, N)``."""
        out = self(x)
        if out.shape[1] == 2:
            return torch.atan2(out[:, 1], out[:, 0])
        return out[:, 0]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, grid: int) -> int:
    """Multiply–add FLOPs (×2) of the convolutions for one ``grid³`` pattern."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv3d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.kernel_size[2]
            total += 2 * out.numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.ConvTranspose3d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.kernel_size[2]
            total += 2 * inp[0].numel() * mod.out_channels * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    try:
        with torch.no_grad():
            p = next(model.parameters())
            example = getattr(model, "example_input", None)
            if example is not None:
                model(example(grid).to(device=p.device, dtype=p.dtype))
            else:
                cin = getattr(getattr(model, "config", None), "in_channels", 1)
                model(torch.zeros(1, cin, grid, grid, grid, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
    return total
