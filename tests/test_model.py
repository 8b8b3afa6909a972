"""WCA loss invariances and UNet shapes (tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch

from bcdi_stream import physics
from bcdi_stream.model import (
    UNet3D,
    UNetConfig,
    count_flops,
    count_parameters,
    log_minmax,
    shell_agreement,
    wca_loss,
)


def _sample(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obj = torch.zeros(n, n, n, dtype=torch.complex64)
    q = n // 4
    amp = torch.rand(q * 2, q * 2 - 1, q * 2 - 2, generator=g) + 0.5
    ph = torch.rand(amp.shape, generator=g) * 2
    obj[q:3 * q, q:3 * q - 1, q:3 * q - 2] = torch.polar(amp, ph)
    psi = physics.fft_centered(obj)
    intensity = psi.abs() ** 2
    return obj, torch.angle(psi)[None], log_minmax(intensity[None])


def test_log_minmax_range() -> None:
    x = log_minmax(torch.rand(2, 4, 4, 4) * 100)
    assert torch.allclose(x.flatten(1).amin(1), torch.zeros(2))
    assert torch.allclose(x.flatten(1).amax(1), torch.ones(2))


def test_wca_invariances() -> None:
    obj, phi, w = _sample()
    assert wca_loss(phi, phi, w) < 1e-5
    assert wca_loss(phi, phi + 1.234, w) < 1e-5  # global offset
    gen = torch.Generator().manual_seed(1)
    wraps = 2 * math.pi * torch.randint(-3, 4, phi.shape, generator=gen)
    assert wca_loss(phi, phi + wraps, w) < 1e-4  # 2π wraps
    phi_twin = torch.angle(physics.fft_centered(physics.twin(obj)))[None]
    assert wca_loss(phi, phi_twin, w) < 1e-4  # twin
    rand = torch.rand(phi.shape, generator=torch.Generator().manual_seed(2)) * 2 * math.pi
    assert wca_loss(phi, rand, w) > 0.5


def test_wca_sensitive_to_shift() -> None:
    obj, phi, w = _sample()
    shifted = torch.angle(physics.fft_centered(torch.roll(obj, 1, dims=-1)))[None]
    assert wca_loss(phi, shifted, w) > 0.05


def test_wca_shape_check() -> None:
    with pytest.raises(ValueError, match="one shape"):
        wca_loss(torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, 5), torch.ones(1, 4, 4, 4))


def test_shell_agreement_perfect_and_random() -> None:
    _, phi, w = _sample()
    good = shell_agreement(phi, phi + 0.5, w, edges=(0, 2, 4, 8, 16))
    assert all(abs(a - 1) < 1e-4 for a in good)
    rand = torch.rand(phi.shape, generator=torch.Generator().manual_seed(3)) * 2 * math.pi
    bad = shell_agreement(phi, rand, w, edges=(0, 4, 8, 16))
    assert max(bad[1:]) < 0.5


@pytest.mark.parametrize(
    ("grid", "channels", "stride", "out"),
    [(16, (4, 8), 1, 1), (16, (4, 8), 2, 1), (32, (4, 8, 16), 2, 2), (16, (4, 8, 16), 1, 2)],
)
def test_unet_shapes(grid, channels, stride, out) -> None:
    torch.manual_seed(0)
    cfg = UNetConfig(grid=grid, channels=channels, stem_stride=stride, out_channels=out, blocks=1)
    m = UNet3D(cfg)
    x = torch.rand(2, 1, grid, grid, grid)
    assert m(x).shape == (2, out, grid, grid, grid)
    assert m.predict_phase(x).shape == (2, grid, grid, grid)
    assert count_parameters(m) > 0 and count_flops(m, grid) > 0
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"channels": (4,)}, "channels"), ({"stem_stride": 3}, "stem_stride"),
     ({"grid": 30}, "grid"), ({"out_channels": 3}, "out_channels"), ({"norm": "x"}, "norm"),
     ({"blocks": 0}, "blocks")],
)
def test_unet_config_errors(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        UNetConfig(**kwargs)
