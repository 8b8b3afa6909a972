"""CXI and .npy/.npz adapters: round trips, the contract paths, one-line InputErrors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bcdi_stream.errors import InputError
from bcdi_stream.io import (
    DATA_PATH,
    DETECTOR_DATA_PATH,
    IMAGE_PATH,
    MASK_PATH,
    CXIData,
    load_intensity,
    read_cxi,
    read_cxi_reconstruction,
    save_intensity,
    write_cxi_data,
    write_cxi_reconstruction,
)

SHAPE = (8, 10, 12)


def _intensity(dtype: str = "uint32") -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.poisson(50.0, SHAPE).astype(dtype)


def _mask() -> np.ndarray:
    m = np.zeros(SHAPE, dtype=np.uint8)
    m[:, 3, 4:6] = 1
    return m


@pytest.mark.parametrize("dtype", ["uint32", "uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_cxi_round_trip(tmp_path, dtype, with_mask):
    data = _intensity(dtype)
    mask = _mask() if with_mask else None
    path = tmp_path / "scan.cxi"
    write_cxi_data(path, data, mask)
    out = read_cxi(path)
    assert isinstance(out, CXIData)
    assert out.intensity.dtype == np.float32 and out.intensity.shape == SHAPE
    np.testing.assert_array_equal(out.intensity, data.astype(np.float32))
    if with_mask:
        assert out.mask is not None and out.mask.dtype == bool
        np.testing.assert_array_equal(out.mask, mask != 0)
    else:
        assert out.mask is None
    assert out.meta["dtype"] == dtype
    with h5py.File(path, "r") as f:
        assert f[DATA_PATH].dtype == np.dtype(dtype)  # counts stay counts on disk


def test_cxi_contract_paths(tmp_path):
    path = tmp_path / "scan.cxi"
    write_cxi_data(path, _intensity(), torch.from_numpy(_mask()))
    with h5py.File(path, "r") as f:
        assert int(f["cxi_version"][()]) >= 140
        assert f.attrs["default"] == "entry_1"
        assert f["entry_1"].attrs["NX_class"] == "NXentry"
        assert f["entry_1/instrument_1"].attrs["NX_class"] == "NXinstrument"
        assert f["entry_1/instrument_1/detector_1"].attrs["NX_class"] == "NXdetector"
        assert f["entry_1/data_1"].attrs["NX_class"] == "NXdata"
        assert f["entry_1/data_1"].attrs["signal"] == "data"
        link = f["entry_1/data_1"].get("data", getlink=True)
        assert isinstance(link, h5py.SoftLink) and link.path == DETECTOR_DATA_PATH
        assert f[DATA_PATH].shape == SHAPE and f[DETECTOR_DATA_PATH].shape == SHAPE
        assert f[MASK_PATH].dtype == np.uint8 and int(f[MASK_PATH][()].sum()) == 16


def test_cxi_geometry_metadata(tmp_path):
    path = tmp_path / "scan.cxi"
    meta = {"energy_kev": 9.0, "detector_distance": 0.83, "pixel_size": 55e-6,
            "sample_name": "Pt particle", "angular_step_deg": 0.01, "scan": {"id": 42}}
    write_cxi_data(path, _intensity(), meta=meta)
    out = read_cxi(path).meta
    for key, value in meta.items():
        assert out[key] == (pytest.approx(value) if isinstance(value, float) else value)
    assert out["wavelength"] == pytest.approx(1.239841984e-9 / 9.0)
    with h5py.File(path, "r") as f:
        assert f["entry_1/instrument_1/source_1/energy"].attrs["units"] == "J"
        assert f["entry_1/instrument_1/detector_1/distance"][()] == pytest.approx(0.83)
        assert f["entry_1/instrument_1/detector_1/x_pixel_size"][()] == pytest.approx(55e-6)


def test_reads_a_pynx_style_file(tmp_path):
    """Data only under detector_1 (no data_1), a 2D detector mask, energy in joules."""
    path = tmp_path / "pynx.cxi"
    data = _intensity()
    mask2d = np.zeros(SHAPE[1:], dtype=np.int32)
    mask2d[0, 0] = 7
    with h5py.File(path, "w") as f:
        f.create_dataset("cxi_version", data=140)
        det = f.create_group("entry_1/instrument_1/detector_1")
        det.create_dataset("data", data=data)
        det.create_dataset("mask", data=mask2d)
        f.create_dataset("entry_1/instrument_1/source_1/energy", data=8.0 * 1.602176634e-16)
    out = read_cxi(path)
    np.testing.assert_array_equal(out.intensity, data)
    assert out.mask.shape == SHAPE and out.mask[:, 0, 0].all() and out.mask.sum() == SHAPE[0]
    assert out.meta["energy_kev"] == pytest.approx(8.0)
    assert out.meta["cxi_version"] == 140


def test_frames_with_singleton_axis_are_squeezed(tmp_path):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA_PATH, data=_intensity().reshape(8, 1, 10, 12))
    assert read_cxi(path).intensity.shape == SHAPE


def test_mask_with_singleton_axis_is_squeezed_as_the_frames(tmp_path):
    """A (N, 1, H, W) mask beside (N, 1, H, W) frames: both squeezed the same way."""
    path = tmp_path / "frames_mask.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA_PATH, data=_intensity().reshape(8, 1, 10, 12))
        f.create_dataset(MASK_PATH, data=_mask().reshape(8, 1, 10, 12))
    data = read_cxi(path)
    assert data.mask is not None and data.mask.shape == SHAPE
    np.testing.assert_array_equal(data.mask, _mask() != 0)


def test_reconstruction_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    obj = (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)).astype(np.complex128)
    support = np.abs(obj) > 1
    meta = {
        "method": "ai",
        "model": {"name": "unet-small", "hash": "abc123"},
        "timings": {"unet": 0.12, "er": 1.5},
        "llk": 1.02,
        "llk_history": [1.5, 1.1, 1.02],
        "flags": [True, False],
        "mixed": [1, "a"],
        "voxel_size": np.array([5e-9, 5e-9, 6e-9]),
        "nothing": None,
    }
    strain = rng.normal(size=SHAPE).astype(np.float64)
    strain[~support] = np.nan
    path = tmp_path / "recon.cxi"
    write_cxi_reconstruction(
        path, torch.from_numpy(obj), support, meta,
        extra={"strain": strain, "support": support, "flag": support},
        voxel_size=(5e-9, 5e-9, 6e-9),
    )
    with h5py.File(path, "r") as f:
        img = f[IMAGE_PATH]
        assert img["data"].dtype == np.complex64 and img["data"].shape == SHAPE
        assert img["mask"].dtype == np.uint8
        assert img.attrs["NX_class"] == "NXdata"
        assert img["strain"].dtype == np.float32
        proc = img["process_1"]
        assert proc.attrs["NX_class"] == "NXprocess"
        assert proc["method"][()].decode() == "ai"
        assert proc["model/name"][()].decode() == "unet-small"
        assert proc["timings/er"][()] == pytest.approx(1.5)
        np.testing.assert_allclose(proc["llk_history"][()], [1.5, 1.1, 1.02])
        stored = json.loads(proc["meta_json"][()])
        assert stored["model"] == meta["model"] and stored["voxel_size"] == [5e-9, 5e-9, 6e-9]
        np.testing.assert_allclose(img["image_size"][()], np.array([8, 10, 12]) * [5e-9, 5e-9,
                                                                                   6e-9])
    rec = read_cxi_reconstruction(path)
    np.testing.assert_array_equal(rec.obj, obj.astype(np.complex64))
    np.testing.assert_array_equal(rec.support, support)
    assert rec.meta["llk"] == 1.02 and rec.meta["model"]["hash"] == "abc123"
    np.testing.assert_array_equal(rec.extra["strain"], strain.astype(np.float32))
    assert set(rec.extra) == {"strain", "flag"}


def test_metadata_that_is_not_json_is_stored_as_text(tmp_path):
    path = tmp_path / "r.cxi"
    meta = {"device": torch.device("cpu"), "path": tmp_path, "nan": float("nan"),
            "t": torch.tensor([1.0, 2.0])}
    write_cxi_reconstruction(path, np.ones(SHAPE), np.ones(SHAPE), meta)
    out = read_cxi_reconstruction(path).meta
    assert out == {"device": "cpu", "path": str(tmp_path), "nan": None, "t": [1.0, 2.0]}


def test_reconstruction_from_postprocess(tmp_path):
    from bcdi_stream.analysis import postprocess

    n = 16
    r = torch.arange(n) - n // 2
    z, y, x = torch.meshgrid(r, r, r, indexing="ij")
    amp = ((z**2 + y**2 + x**2) <= 16).double()
    obj = torch.polar(amp, 0.1 * y.double()).to(torch.complex64)
    pp = postprocess(obj)
    path = tmp_path / "pp.cxi"
    write_cxi_reconstruction(path, pp.obj, pp.support, pp.meta, extra=pp.to_numpy())
    rec = read_cxi_reconstruction(path)
    assert set(rec.extra) == {"amplitude", "phase", "displacement", "strain"}
    assert rec.meta["units"]["strain"] == "rad/voxel"


@pytest.mark.parametrize("suffix", [".cxi", ".h5", ".hdf5", ".npy", ".npz"])
def test_load_save_by_suffix(tmp_path, suffix):
    data = _intensity("uint32")
    mask = None if suffix == ".npy" else _mask()
    path = tmp_path / f"scan{suffix}"
    save_intensity(path, data, mask)
    out = load_intensity(path)
    np.testing.assert_array_equal(out.intensity, data.astype(np.float32))
    if mask is None:
        assert out.mask is None
    else:
        np.testing.assert_array_equal(out.mask, mask != 0)


def test_npz_with_intensity_key(tmp_path):
    path = tmp_path / "scan.npz"
    np.savez(path, intensity=_intensity(), other=np.zeros(3))
    assert load_intensity(path).intensity.shape == SHAPE


# -------------------------------------------------------------------------------------------
# every bad input: InputError, one line, naming the file
# -------------------------------------------------------------------------------------------
def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("entry_1/data_1")
        for key, value in datasets.items():
            f.create_dataset(key.replace("__", "/"), data=value)
    return path


def _bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _broken_link(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("entry_1/data_1")
        f["entry_1/data_1/data"] = h5py.SoftLink("/nowhere")
    return path


def _with_mask(path: Path, mask: str) -> Path:
    """Data plus a mask path that exists but is no readable data set."""
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA_PATH, data=np.ones(SHAPE))
        if mask == "external":
            f[MASK_PATH] = h5py.ExternalLink("missing_mask.h5", "/mask")
        elif mask == "soft":
            f[MASK_PATH] = h5py.SoftLink("/nowhere")
        else:
            f.create_group(MASK_PATH)
    return path


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _npy(path: Path, arr: np.ndarray, allow_pickle: bool = False) -> Path:
    np.save(path, arr, allow_pickle=allow_pickle)
    return path


BAD_FILES = {
    "missing": (lambda d: d / "missing.cxi", "not found"),
    "directory": (lambda d: (d / "dir.cxi").mkdir() or d / "dir.cxi", "directory"),
    "text as cxi": (lambda d: _bytes(d / "t.cxi", b"hello\n"), "not an HDF5"),
    "empty h5": (lambda d: _bytes(d / "e.h5", b""), "not an HDF5"),
    "no data": (lambda d: _h5(d / "n.cxi"), "/entry_1/data_1/data"),
    "broken link": (lambda d: _broken_link(d / "b.cxi"), "/entry_1/data_1/data"),
    "2D data": (lambda d: _h5(d / "2d.cxi", entry_1__data_1__data=np.ones((4, 4))), "3D"),
    "complex data": (
        lambda d: _h5(d / "c.cxi", entry_1__data_1__data=np.ones(SHAPE, np.complex64)),
        "real numeric",
    ),
    "string data": (lambda d: _h5(d / "s.cxi", entry_1__data_1__data="abc"), "real numeric"),
    "bad mask": (
        lambda d: _h5(
            d / "m.cxi",
            entry_1__data_1__data=np.ones(SHAPE),
            entry_1__instrument_1__detector_1__mask=np.ones((3, 3, 3)),
        ),
        "mask shape",
    ),
    "mask broken external link": (lambda d: _with_mask(d / "me.cxi", "external"),
                                  "mask is a broken link"),
    "mask broken soft link": (lambda d: _with_mask(d / "ms.cxi", "soft"), "mask is a broken link"),
    "mask is a group": (lambda d: _with_mask(d / "mg.cxi", "group"), "must be a data set"),
    "bool data": (
        lambda d: _h5(d / "b.cxi", entry_1__data_1__data=np.ones(SHAPE, bool)), "dtype bool"
    ),
    "npy bool": (lambda d: _npy(d / "b.npy", np.ones(SHAPE, bool)), "dtype bool"),
    "float64 beyond float32": (
        lambda d: _h5(d / "big.cxi", entry_1__data_1__data=np.full(SHAPE, 1e40)),
        "beyond float32's range",
    ),
    "unknown suffix": (lambda d: _bytes(d / "scan.tif", b"II*\x00"), "unsupported file type"),
    "npz without data": (lambda d: _npz(d / "k.npz", frames=np.ones(SHAPE)), "'data'"),
    "npz bad mask": (
        lambda d: _npz(d / "bm.npz", data=np.ones(SHAPE), mask=np.ones((2, 2))),
        "mask shape",
    ),
    "npy 2D": (lambda d: _npy(d / "2d.npy", np.ones((4, 4))), "3D"),
    "npy 4D": (lambda d: _npy(d / "4d.npy", np.ones((2, 3, 4, 5))), "3D"),
    "npy pickled": (
        lambda d: _npy(d / "p.npy", np.array([{"a": 1}], dtype=object), True),
        "not a readable .npy",
    ),
    "npy garbage": (lambda d: _bytes(d / "g.npy", b"\x00" * 64), "not a readable .npy"),
    "npz garbage": (lambda d: _bytes(d / "g.npz", b"PK\x03\x04garbage"), "not a readable .npz"),
    "npz as npy": (lambda d: _npz(d / "z.npz", data=np.ones(SHAPE)).rename(d / "z.npy")
                   or d / "z.npy", "not a .npy array"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_one_line_input_error(tmp_path, name):
    make, reason = BAD_FILES[name]
    path = make(tmp_path)
    with warnings.catch_warnings(), pytest.raises(InputError) as err:
        warnings.simplefilter("error")  # e.g. numpy's overflow warning on a float32 cast
        load_intensity(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert path.name in msg
    assert reason in msg


BAD_RECONSTRUCTIONS = {
    "missing": (lambda d: d / "missing.cxi", "not found"),
    "text": (lambda d: _bytes(d / "t.cxi", b"x"), "not an HDF5"),
    "input file": (
        lambda d: (write_cxi_data(d / "in.cxi", _intensity()), d / "in.cxi")[1],
        "/entry_1/image_1/data",
    ),
    "2D image": (lambda d: _h5(d / "i.cxi", entry_1__image_1__data=np.ones((3, 3))), "3D"),
}


@pytest.mark.parametrize("name", list(BAD_RECONSTRUCTIONS))
def test_bad_reconstruction_files(tmp_path, name):
    make, reason = BAD_RECONSTRUCTIONS[name]
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        read_cxi_reconstruction(path)
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg and reason in msg


BAD_WRITES = {
    "2D intensity": (lambda d: save_intensity(d / "a.cxi", np.ones((4, 4))), "3D"),
    "complex intensity": (
        lambda d: save_intensity(d / "a.npz", np.ones(SHAPE, np.complex64)), "real numeric"
    ),
    "mask shape": (lambda d: write_cxi_data(d / "a.cxi", _intensity(), np.ones((2, 2))),
                   "mask shape"),
    "bool intensity": (lambda d: write_cxi_data(d / "a.cxi", np.ones(SHAPE, bool)),
                       "dtype bool"),
    "npy with mask": (lambda d: save_intensity(d / "a.npy", _intensity(), _mask()), ".npz"),
    "no directory": (lambda d: save_intensity(d / "no" / "a.npz", _intensity()), "does not exist"),
    "cxi no directory": (lambda d: write_cxi_data(d / "no" / "a.cxi", _intensity()),
                         "does not exist"),
    "bad energy": (lambda d: write_cxi_data(d / "a.cxi", _intensity(), meta={"energy_kev": -1}),
                   "energy_kev"),
    "meta not a mapping": (lambda d: write_cxi_data(d / "a.cxi", _intensity(), meta=[1, 2]),
                           "mapping"),
    "support shape": (
        lambda d: write_cxi_reconstruction(d / "r.cxi", np.ones(SHAPE), np.ones((2, 2, 2))),
        "support shape",
    ),
    "reserved extra": (
        lambda d: write_cxi_reconstruction(d / "r.cxi", np.ones(SHAPE), np.ones(SHAPE),
                                           extra={"data": np.ones(SHAPE)}),
        "reserved",
    ),
    "unknown suffix": (lambda d: save_intensity(d / "a.tif", _intensity()), "unsupported"),
}


@pytest.mark.parametrize("name", list(BAD_WRITES))
def test_bad_writes_raise_one_line_input_error(tmp_path, name):
    call, reason = BAD_WRITES[name]
    with pytest.raises(InputError) as err:
        call(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and reason in msg
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_values_at_the_integer_maximum_join_the_mask(tmp_path) -> None:
    """Saturated (or flagged) voxels of integer data are bad pixels, in every format."""
    from bcdi_stream.io import load_intensity, write_cxi_data

    data = np.full((8, 8, 8), 3, np.uint8)
    data[4, 4, 3:5] = 255
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[0, 0, 0] = 1
    np.save(tmp_path / "d.npy", data)
    np.savez(tmp_path / "d.npz", data=data, mask=mask)
    write_cxi_data(tmp_path / "d.cxi", data, mask)
    for name, extra in (("d.npy", 0), ("d.npz", 1), ("d.cxi", 1)):
        loaded = load_intensity(tmp_path / name)
        assert loaded.meta["ceiling_voxels"] == 2 and loaded.meta["ceiling_value"] == 255
        assert loaded.mask[4, 4, 3] and loaded.mask[4, 4, 4]
        assert int(loaded.mask.sum()) == 2 + extra
    np.save(tmp_path / "f.npy", data.astype(np.float32))  # floats carry no ceiling
    loaded = load_intensity(tmp_path / "f.npy")
    assert loaded.mask is None and "ceiling_voxels" not in loaded.meta

