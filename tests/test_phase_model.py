"""The phase model (patterson/direct), its losses, weights files and the AI phasing path."""

from __future__ import annotations

import pytest
import torch

from bcdi_stream import physics
from bcdi_stream.model import (
    ModelConfig,
    PhaseModel,
    UNetConfig,
    count_flops,
    count_parameters,
    export_weights,
    load_model,
    object_loss,
    patterson_features,
    twin_object,
    wca,
    wca_phasor,
    widen_model,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _object(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    obj = torch.zeros(n, n, n, dtype=torch.complex64)
    q = n // 4
    amp = torch.rand(2 * q - 1, 2 * q, 2 * q - 2, generator=g) + 0.5
    ph = torch.rand(amp.shape, generator=g) * 3
    obj[q:3 * q - 1, q:3 * q, q:3 * q - 2] = torch.polar(amp, ph)
    return obj


def _tiny(kind: str = "patterson", grid: int = 16) -> PhaseModel:
    return PhaseModel(ModelConfig(kind=kind, grid=grid, unet=UNetConfig(channels=(4, 8))))


@pytest.mark.parametrize("kind", ["patterson", "direct"])
def test_phase_model_shapes_and_unit_phasor(kind: str) -> None:
    m = _tiny(kind)
    i = physics.fft_centered(_object()).abs()[None] ** 2
    u = m(i)
    assert u.shape == (1, 16, 16, 16) and u.dtype == torch.complex64
    assert torch.allclose(u.abs(), torch.ones(()), atol=1e-3)
    assert m.predict_phase(i).shape == (1, 16, 16, 16)
    assert count_parameters(m) > 0 and count_flops(m, 16) > 0


def test_patterson_object_confined_to_central_box() -> None:
    m = _tiny()
    i = physics.fft_centered(_object()).abs()[None] ** 2
    obj = m.forward_object(i)[0]
    box = torch.zeros(16, 16, 16, dtype=torch.bool)
    box[4:12, 4:12, 4:12] = True
    assert obj[~box].abs().max() == 0 and obj[box].abs().max() > 0


def test_patterson_features_see_the_object_support_at_half_scale() -> None:
    # a centrosymmetric box: A(2r) is non-zero exactly where the object is
    n = 32
    obj = torch.zeros(n, n, n, dtype=torch.complex64)
    obj[12:21, 12:21, 12:21] = 1  # 9 voxels centred on 16
    f = patterson_features(physics.fft_centered(obj).abs()[None] ** 2)[0]
    far = f[2]  # sqrt|A(2r)| on the 16³ box (offsets -8..7, centre at 8)
    inside = far[8 - 4:8 + 5, 8 - 4:8 + 5, 8 - 4:8 + 5]
    # corner r = (4, 4, 4): one voxel of overlap in 729, sqrt -> 0.037
    assert inside.min() > 0.03
    assert far[13].max() < 1e-3 and far[3].max() < 1e-3  # |r_z| = 5: no overlap


def test_model_config_roundtrip_and_errors() -> None:
    cfg = ModelConfig(kind="patterson", grid=32, unet=UNetConfig(channels=(4, 8, 16)))
    assert cfg.unet.grid == 16 and cfg.unet.in_channels == 6 and cfg.unet.out_channels == 2
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="kind"):
        ModelConfig(kind="vit")
    with pytest.raises(ValueError, match="grid"):
        ModelConfig(grid=30)
    with pytest.raises(ValueError, match="intensity"):
        _tiny()(torch.ones(1, 8, 8, 8))


def test_wca_phasor_equals_wca() -> None:
    obj = _object()
    psi = physics.fft_centered(obj)
    phi = torch.angle(psi)[None]
    w = torch.rand(1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    pred = phi + 0.7 * torch.rand(phi.shape, generator=torch.Generator().manual_seed(2))
    a = wca_phasor(phi, torch.polar(torch.ones_like(pred), pred), w)
    assert torch.allclose(a, wca(phi, pred, w), atol=1e-5)


def test_object_loss_invariances_and_sensitivity() -> None:
    t = _object()[None]
    assert float(object_loss(t * (0.3 * torch.exp(torch.tensor(2.0j))), t)) < 1e-5
    assert float(object_loss(twin_object(t), t)) < 1e-5
    assert float(object_loss(torch.roll(t, 1, -1), t)) > 0.1
    with pytest.raises(ValueError, match="shape"):
        object_loss(t, t[..., :-1])


def test_twin_object_has_same_intensity() -> None:
    t = _object()
    i1 = physics.fft_centered(t).abs()
    i2 = physics.fft_centered(twin_object(t)).abs()
    assert torch.allclose(i1, i2, atol=1e-3)


def test_export_and_load_weights(tmp_path) -> None:
    m = _tiny()
    ck = {"model_config": m.config.to_dict(), "state_dict": m.state_dict(), "step": 3}
    path = export_weights(ck, tmp_path / "w.pt", meta={"note": "test"})
    loaded = load_model(path)
    assert loaded.name == "w" and len(loaded.sha256) == 64 and loaded.meta["step"] == 3
    i = physics.fft_centered(_object()).abs()[None] ** 2
    # float16 storage: predictions agree to half precision
    assert torch.allclose(loaded.model(i), m.eval()(i), atol=5e-2)
    with pytest.raises(ValueError, match="do not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot be read"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match=r"\.pt"):
        export_weights(ck, tmp_path / "w.bin")


class _RunsCodeWhenUnpickled:
    """An object whose unpickling would create a file: what a booby-trapped .pt can do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_and_checkpoints_are_read_without_running_code(tmp_path) -> None:
    """A weights file or checkpoint from someone else is read by torch's restricted
    unpickler: one holding a Python object is refused in one line, and its code never runs;
    a weights file whose arrays do not fit its config is a ValueError, not a torch error."""
    from bcdi_stream.model import read_torch_file
    from bcdi_stream.training import load_checkpoint

    m = _tiny()
    marker = tmp_path / "ran"
    trap = {"format": "bcdi-stream-weights/1", "name": "trap", "model_config":
            m.config.to_dict(), "state_dict": m.state_dict(), "meta": {},
            "extra": _RunsCodeWhenUnpickled(str(marker))}
    torch.save(trap, tmp_path / "trap.pt")
    torch.save({**trap, "train_config": {}}, tmp_path / "trap-ck.pt")
    for load in (load_model, load_checkpoint, lambda p: export_weights(p, tmp_path / "o.pt")):
        with pytest.raises(ValueError, match="other than tensors and plain data") as err:
            load(tmp_path / ("trap-ck.pt" if load is not load_model else "trap.pt"))
        assert "\n" not in str(err.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"checkpoint .* does not exist"):
        read_torch_file(tmp_path / "none.pt", "checkpoint")
    wrong = {"format": "bcdi-stream-weights/1", "name": "w", "meta": {},
             "model_config": m.config.to_dict(),
             "state_dict": {k: v[..., :1] if v.ndim else v for k, v in m.state_dict().items()}}
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="do not fit their model config"):
        load_model(tmp_path / "wrong.pt")
    torch.save({"format": "bcdi-stream-weights/1", "name": "w"}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="not a bcdi-stream weights file"):
        load_model(tmp_path / "bare.pt")


def test_inference_precision_follows_the_training_precision(tmp_path) -> None:
    """``auto`` runs the trunk in bfloat16 only for weights trained under bfloat16 autocast on a
    device with native bfloat16; ``bf16`` always does, and its prediction is the fp32 one to
    bfloat16 rounding; an unknown precision is refused by name."""
    from bcdi_stream.ai_phasing import cached_model, predict_start
    from bcdi_stream.arrays import fast_bf16

    m = _tiny()
    ck = {"model_config": m.config.to_dict(), "state_dict": m.state_dict()}
    fp32_file = export_weights(ck, tmp_path / "fp32.pt")
    bf16_file = export_weights({**ck, "train_config": {"precision": "bf16"}}, tmp_path / "bf16.pt")
    assert load_model(fp32_file).precision == "fp32"
    assert load_model(bf16_file).precision == ("bf16" if fast_bf16("cpu") else "fp32")
    assert load_model(bf16_file, precision="fp32").precision == "fp32"
    forced = load_model(fp32_file, precision="bf16")
    assert forced.precision == "bf16"
    seen: list[torch.dtype] = []
    hook = forced.model.unet.stem[0].register_forward_hook(
        lambda mod, inp, out: seen.append(out.dtype))
    i = physics.fft_centered(_object()).abs() ** 2 * 1e4
    got = predict_start(forced, i, seed=0)
    hook.remove()
    ref = predict_start(load_model(fp32_file), i, seed=0)
    assert seen == [torch.bfloat16]  # the trunk ran in bfloat16, the start is complex64
    assert got.obj.dtype == ref.obj.dtype == torch.complex64
    # the same start to bfloat16 rounding (8 bits of mantissa)
    assert float((got.obj - ref.obj).abs().max() / ref.obj.abs().max()) < 0.05
    # the shipped v3 was trained under bfloat16 autocast: it predicts in bf16 where that is fast
    assert cached_model().meta["train_config"]["precision"] == "bf16"
    assert cached_model().precision == ("bf16" if fast_bf16("cpu") else "fp32")
    assert cached_model(precision="fp32").precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        load_model(fp32_file, precision="fp16")
    with pytest.raises(ValueError, match="precision"):
        cached_model(fp32_file, precision="half")


def test_patterson_features_offset_undoes_a_pattern_shift() -> None:
    i = physics.fft_centered(_object()).abs()[None] ** 2
    moved = torch.roll(i, (1, -2, 0), (1, 2, 3))
    plain = patterson_features(i)
    assert not torch.allclose(patterson_features(moved), plain, atol=1e-3)
    back = patterson_features(moved, torch.tensor([[1.0, -2.0, 0.0]]))
    assert torch.allclose(back, plain, atol=1e-4)
    with pytest.raises(ValueError, match="offset"):
        patterson_features(i, torch.zeros(3))


@pytest.mark.parametrize(("kind", "stride"), [("patterson", 1), ("direct", 2)])
def test_widen_model_keeps_the_function(kind: str, stride: int) -> None:
    """Net2Net widening: same output (in float64, to the rounding of the float32 shares), the
    parameter count of a fresh model of the wider trunk, copies that can train apart."""
    cfg = ModelConfig(kind=kind, grid=16, unet=UNetConfig(grid=16, channels=(4, 8, 16),
                                                          stem_stride=stride))
    m = PhaseModel(cfg).eval()
    wide = widen_model(m, (6, 16, 20), seed=1).eval()
    assert wide.config.unet.channels == (6, 16, 20) and m.config.unet.channels == (4, 8, 16)
    assert count_parameters(wide) == count_parameters(PhaseModel(wide.config))
    x = torch.rand(2, m.unet.config.in_channels, 16, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        a, b = m.double().unet(x), wide.double().unet(x)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-6
    # channel 0 of level 1 has two copies (0 and 8): the next layer reads them with
    # different shares that sum to the old weight
    w_old = m.unet.enc[1][0].weight[:, 0]
    w0, w8 = wide.unet.enc[1][0].weight[:8, 0], wide.unet.enc[1][0].weight[:8, 8]
    assert not torch.allclose(w0, w8)
    assert torch.allclose(w0 + w8, w_old, atol=1e-6)


def test_widen_model_errors() -> None:
    m = _tiny()
    with pytest.raises(ValueError, match="levels"):
        widen_model(m, (8,))
    with pytest.raises(ValueError, match="at least"):
        widen_model(m, (2, 8))
    with pytest.raises(ValueError, match="eps"):
        widen_model(m, (4, 8), eps=-1)
    grouped = PhaseModel(ModelConfig(grid=16, unet=UNetConfig(channels=(8, 16), norm="group")))
    with pytest.raises(ValueError, match="group"):
        widen_model(grouped, (16, 16))


def test_shipped_weights_fit_the_size_limit() -> None:
    """The issue's limit on shipped weights files (25 MB) holds for every file in weights/."""
    from bcdi_stream.model import default_weights_path

    files = sorted(default_weights_path().parent.glob("*.pt"))
    assert default_weights_path() in files
    for f in files:
        assert f.stat().st_size <= 25e6, f.name
