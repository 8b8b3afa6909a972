"""CXI (HDF5) files, PyNX/cdiutils compatible.

Input file (diffraction data)::

    /cxi_version                                  150
    /entry_1                          NXentry     (default -> data_1)
    /entry_1/instrument_1             NXinstrument
    /entry_1/instrument_1/source_1    NXsource    energy [J]            (if known)
    /entry_1/instrument_1/beam_1      NXbeam      incident_energy [J], incident_wavelength [m]
    /entry_1/instrument_1/detector_1  NXdetector  data (3D intensity), mask (nonzero = bad),
                                                  distance [m], x_pixel_size, y_pixel_size [m]
    /entry_1/data_1                   NXdata      data -> soft link to detector_1/data
    /entry_1/sample_1/name                                              (if known)

Reconstruction file::

    /entry_1/image_1                  NXdata      data (complex64 object, input grid),
                                                  mask (uint8 support), support -> mask,
                                                  data_type, data_space, [image_size],
                                                  [extra arrays: amplitude, phase, strain...]
    /entry_1/image_1/process_1        NXprocess   program, version, meta_json (the whole dict),
                                                  one dataset per scalar/string/list entry,
                                                  a NXcollection group per nested dict

Every read failure raises :class:`bcdi_stream.errors.InputError` with a one-line reason that
names the file; h5py and numpy exceptions never escape. Files are written to a temporary name
and renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bcdi_stream.arrays import to_numpy
from bcdi_stream.errors import InputError
from bcdi_stream.physics import HC_KEV_M

__all__ = [
    "DATA_PATH",
    "DETECTOR_DATA_PATH",
    "IMAGE_PATH",
    "MASK_PATH",
    "CXIData",
    "CXIReconstruction",
    "read_cxi",
    "read_cxi_reconstruction",
    "write_cxi_data",
    "write_cxi_reconstruction",
]

#: The contract paths.
DATA_PATH = "/entry_1/data_1/data"
DETECTOR_DATA_PATH = "/entry_1/instrument_1/detector_1/data"
MASK_PATH = "/entry_1/instrument_1/detector_1/mask"
IMAGE_PATH = "/entry_1/image_1"

CXI_VERSION = 150
_KEV_TO_J = 1.602176634e-16
_RESERVED_IMAGE_KEYS = frozenset(
    {"data", "mask", "support", "process_1", "data_type", "data_space", "image_size"}
)


@dataclass
class CXIData:
    """Diffraction data read from a file.

    Attributes
    ----------
    intensity : numpy.ndarray
        float32, 3D ``(z, y, x)``.
    mask : numpy.ndarray or None
        bool, same shape, True = bad pixel (excluded).
    meta : dict
        What the file says about the measurement: ``energy_kev``, ``wavelength`` (m),
        ``detector_distance`` (m), ``pixel_size`` (m), ``sample_name``, ``cxi_version``,
        ``source`` (the path), ``dtype`` (the stored dtype), plus the JSON dict stored by
        :func:`write_cxi_data` when present.
    """

    intensity: np.ndarray
    mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CXIReconstruction:
    """A reconstruction read from a file.

    Attributes
    ----------
    obj : numpy.ndarray
        complex64 real-space object.
    support : numpy.ndarray
        bool.
    meta : dict
        Process metadata (method, model, timings, LLK...).
    extra : dict of str to numpy.ndarray
        Further arrays of ``/entry_1/image_1`` (amplitude, phase, strain, displacement...).
    """

    obj: np.ndarray
    support: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


def _open_h5(path: Path) -> Any:
    import h5py

    _check_readable(path)
    try:
        if not h5py.is_hdf5(path):
            raise InputError(f"{path}: not an HDF5/CXI file")
        return h5py.File(path, "r")
    except InputError:
        raise
    except Exception as exc:  # h5py raises OSError, ValueError...
        raise InputError(f"{path}: cannot open as HDF5 ({_one_line(exc)})") from exc


def _dataset(f: Any, key: str) -> Any:
    """The dataset at ``key`` or None (broken links and groups count as missing)."""
    import h5py

    try:
        obj = f.get(key)
    except Exception:  # broken external/soft links raise KeyError/OSError
        return None
    return obj if isinstance(obj, h5py.Dataset) else None


def _optional_dataset(f: Any, key: str, path: Path) -> Any:
    """The dataset at ``key``, None when nothing is there; a link that leads nowhere, or to
    something other than a dataset, is an error (an optional input must not vanish silently).
    """
    import h5py

    try:
        link = f.get(key, getlink=True)
    except Exception:  # an intermediate name that is not a group...
        link = None
    if link is None:
        return None
    try:
        obj = f.get(key)
    except Exception as exc:  # broken external/soft links raise KeyError/OSError
        raise InputError(f"{path}: cannot read {key} ({_one_line(exc)})") from exc
    if obj is None:
        target = getattr(link, "path", "")
        where = f" in {link.filename}" if isinstance(link, h5py.ExternalLink) else ""
        raise InputError(f"{path}: {key} is a broken link (to {target}{where})")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{path}: {key} must be a data set, got a {type(obj).__name__.lower()}")
    return obj


def _read(ds: Any, path: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(ds[()])
    except Exception as exc:
        raise InputError(f"{path}: cannot read {what} ({_one_line(exc)})") from exc


def _scalar(f: Any, key: str) -> Any:
    ds = _dataset(f, key)
    if ds is None:
        return None
    try:
        v = ds[()]
    except Exception:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray):
        if v.size != 1:
            return None
        v = v.reshape(()).item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _check_intensity(arr: np.ndarray, path: Path, what: str = "intensity") -> np.ndarray:
    """Shape and dtype checks shared by every loader; returns float32.

    Bool arrays are refused (counts, not flags), and so are finite values beyond float32's
    range, which the conversion would turn into infinities.
    """
    if arr.dtype.kind not in "iuf":
        raise InputError(
            f"{path}: {what} must be a real numeric array (counts), got dtype {arr.dtype}"
        )
    arr = _squeeze_frames(arr)
    if arr.ndim != 3:
        raise InputError(f"{path}: {what} must be a 3D array (z, y, x), got shape {arr.shape}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        f32max = float(np.finfo(np.float32).max)
        too_big = np.greater(np.abs(arr), f32max, where=np.isfinite(arr),
                             out=np.zeros(arr.shape, dtype=bool))
        if too_big.any():
            raise InputError(
                f"{path}: {what} has {int(too_big.sum())} finite values beyond float32's range "
                f"(|I| up to {float(np.abs(arr[too_big]).max()):.3g} > {f32max:.3g}); "
                "rescale the data"
            )
    return arr.astype(np.float32, copy=False)


def _flag_ceiling(raw: np.ndarray, mask: np.ndarray | None, meta: dict[str, Any]
                  ) -> np.ndarray | None:
    """``mask`` with the voxels at the integer dtype's maximum added (saturated, or a
    detector's flag for gaps: :func:`bcdi_stream.validation.integer_ceiling`); their number
    and value go to ``meta`` (``ceiling_voxels``, ``ceiling_value``)."""
    from bcdi_stream.validation import integer_ceiling

    ceiling = integer_ceiling(_squeeze_frames(raw))
    if ceiling is None or not ceiling.any():
        return mask
    meta["ceiling_voxels"] = int(ceiling.sum())
    meta["ceiling_value"] = int(np.iinfo(raw.dtype).max)
    return ceiling if mask is None else (mask | ceiling)


def _squeeze_frames(arr: np.ndarray) -> np.ndarray:
    """Drop the singleton axes of an array of more than 3 axes with 3 others, e.g. (N, 1, H, W)
    frames; anything else unchanged."""
    if arr.ndim > 3 and sum(s != 1 for s in arr.shape) == 3:
        return arr.reshape([s for s in arr.shape if s != 1])
    return arr


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """A 3D mask of the data's shape, or a 2D detector mask broadcast over the frames."""
    if mask.dtype.kind not in "biuf":
        raise InputError(f"{path}: mask must be numeric, got dtype {mask.dtype}")
    mask = _squeeze_frames(mask)  # as the intensity: (N, 1, H, W) -> (N, H, W)
    if mask.shape == shape:
        return mask != 0
    if mask.ndim == 2 and mask.shape == shape[1:]:
        return np.broadcast_to(mask != 0, shape).copy()
    raise InputError(
        f"{path}: mask shape {mask.shape} does not match the intensity shape {shape}"
    )


def _jsonable(v: Any) -> Any:
    """Plain JSON types from numpy/torch scalars and arrays, tuples, paths; ``str(v)`` for
    anything else; non-finite floats become None."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x) for x in v]
    if isinstance(v, bool | int | str) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, np.ndarray) or hasattr(v, "detach"):
        return _jsonable(to_numpy(v).tolist())
    return str(v)  # anything else (enums, dates, devices...) as its text


def _meta_json(meta: Mapping[str, Any] | None, name: str) -> tuple[dict[str, Any], str]:
    if meta is None:
        return {}, "{}"
    if not isinstance(meta, Mapping):
        raise InputError(f"{name} must be a mapping, got {type(meta).__name__}")
    try:
        clean = _jsonable(meta)
        return clean, json.dumps(clean)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be JSON-able: {exc}") from exc


def _write_atomic(path: Path, writer: Any) -> None:
    """Run ``writer(h5file)`` on a temporary file next to ``path``, then rename it."""
    import h5py

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, cannot write a file there")
    if not path.parent.exists():
        raise InputError(f"{path}: directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            writer(f)
        os.replace(tmp, path)
    except InputError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({_one_line(exc)})") from exc


def _root_attrs(f: Any, path: Path, default: str) -> None:
    import h5py

    from bcdi_stream import __version__

    f.attrs["file_name"] = str(path)
    f.attrs["file_time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    f.attrs["creator"] = "bcdi-stream"
    f.attrs["HDF5_Version"] = h5py.version.hdf5_version
    f.attrs["h5py_version"] = h5py.version.version
    f.attrs["default"] = "entry_1"
    f.create_dataset("cxi_version", data=CXI_VERSION)
    entry = f.create_group("entry_1")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = default
    entry.create_dataset("program_name", data=f"bcdi-stream {__version__}")
    entry.create_dataset("start_time", data=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _compressed(group: Any, name: str, data: np.ndarray) -> Any:
    return group.create_dataset(name, data=data, chunks=True, shuffle=True, compression="gzip")


# --------------------------------------------------------------------------------------------
# input data
# --------------------------------------------------------------------------------------------

def checked_arrays(intensity: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Host arrays for writing: a real 3D intensity and a uint8 mask (1 = bad) of its shape.

    Raises
    ------
    InputError
        A non-numeric (bool included) or non-3D intensity, or a mask of another shape.
    """
    arr = to_numpy(intensity)
    if arr.dtype.kind not in "iuf":
        raise InputError(
            f"intensity must be a real numeric array (counts), got dtype {arr.dtype}"
        )
    if arr.ndim != 3:
        raise InputError(f"intensity must be a 3D array (z, y, x), got shape {arr.shape}")
    m = None
    if mask is not None:
        m = to_numpy(mask)
        if m.shape != arr.shape:
            raise InputError(
                f"mask shape {m.shape} does not match the intensity shape {arr.shape}"
            )
        m = (m != 0).astype(np.uint8)
    return arr, m

def write_cxi_data(
    path: str | os.PathLike[str],
    intensity: Any,
    mask: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write diffraction data as a CXI input file (PyNX/cdiutils layout, module docstring).

    Parameters
    ----------
    path : path-like
        Output file (``.cxi``); replaced atomically.
    intensity : array-like
        3D intensity, any real numeric dtype but bool (kept as is: counts stay integers).
    mask : array-like, optional
        Same shape, nonzero = bad pixel; stored as uint8.
    meta : mapping, optional
        JSON-able. Known keys go to their CXI places: ``energy_kev``, ``wavelength`` (m),
        ``detector_distance`` (m), ``pixel_size`` (m), ``sample_name``; the whole dict is also
        stored as JSON (attribute ``bcdi_stream_meta`` of ``/entry_1/data_1``).

    Raises
    ------
    InputError
        Bad arrays (a ``ValueError``) or a file that cannot be written.
    """
    path = Path(path)
    arr, m = checked_arrays(intensity, mask)
    clean, text = _meta_json(meta, "meta")
    for key in ("energy_kev", "wavelength", "detector_distance", "pixel_size"):
        v = clean.get(key)
        if v is not None and not (
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0
        ):
            raise InputError(f"meta[{key!r}] must be a positive number, got {v!r}")

    def writer(f: Any) -> None:
        import h5py

        _root_attrs(f, path, "data_1")
        entry = f["entry_1"]
        instrument = entry.create_group("instrument_1")
        instrument.attrs["NX_class"] = "NXinstrument"
        energy_kev = clean.get("energy_kev")
        wavelength = clean.get("wavelength")
        if wavelength is None and energy_kev:
            wavelength = HC_KEV_M / float(energy_kev)
        if energy_kev is None and wavelength:
            energy_kev = HC_KEV_M / float(wavelength)
        if energy_kev:
            source = instrument.create_group("source_1")
            source.attrs["NX_class"] = "NXsource"
            source.create_dataset("energy", data=float(energy_kev) * _KEV_TO_J)
            source["energy"].attrs["units"] = "J"
            beam = instrument.create_group("beam_1")
            beam.attrs["NX_class"] = "NXbeam"
            beam.create_dataset("incident_energy", data=float(energy_kev) * _KEV_TO_J)
            beam["incident_energy"].attrs["units"] = "J"
            beam.create_dataset("incident_wavelength", data=float(wavelength))
            beam["incident_wavelength"].attrs["units"] = "m"
        detector = instrument.create_group("detector_1")
        detector.attrs["NX_class"] = "NXdetector"
        _compressed(detector, "data", arr)
        if m is not None:
            _compressed(detector, "mask", m)
        if clean.get("detector_distance"):
            detector.create_dataset("distance", data=float(clean["detector_distance"]))
            detector["distance"].attrs["units"] = "m"
        if clean.get("pixel_size"):
            for key in ("x_pixel_size", "y_pixel_size"):
                detector.create_dataset(key, data=float(clean["pixel_size"]))
                detector[key].attrs["units"] = "m"
        if clean.get("sample_name"):
            sample = entry.create_group("sample_1")
            sample.attrs["NX_class"] = "NXsample"
            sample.create_dataset("name", data=str(clean["sample_name"]))
        data_1 = entry.create_group("data_1")
        data_1.attrs["NX_class"] = "NXdata"
        data_1.attrs["signal"] = "data"
        data_1.attrs["interpretation"] = "scaler"  # as PyNX does for 3D data
        data_1.attrs["bcdi_stream_meta"] = text
        data_1["data"] = h5py.SoftLink(DETECTOR_DATA_PATH)

    _write_atomic(path, writer)


def read_cxi(path: str | os.PathLike[str]) -> CXIData:
    """Read diffraction data from a CXI file.

    The intensity is ``/entry_1/data_1/data`` (``/entry_1/instrument_1/detector_1/data`` is
    accepted when the former is missing); the optional mask is
    ``/entry_1/instrument_1/detector_1/mask`` (nonzero = bad pixel), 3D or a 2D detector mask
    applied to every frame; a mask path that exists but is no readable data set (a broken
    link, a group) is an error, not a missing mask. Singleton axes of a 4D array (frames
    ``(N, 1, H, W)``), the intensity's and the mask's, are dropped.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    CXIData

    Raises
    ------
    InputError
        Missing file, not HDF5, missing data set, not 3D, not numeric (bool included), finite
        values beyond float32's range, bad or unreadable mask, unreadable.
    """
    path = Path(path)
    f = _open_h5(path)
    try:
        return _read_cxi(f, path)
    except InputError:
        raise
    except Exception as exc:  # anything h5py/numpy may raise on a damaged file
        raise InputError(f"{path}: cannot read ({_one_line(exc)})") from exc
    finally:
        try:
            f.close()
        except Exception:  # pragma: no cover - closing a read-only file
            pass


def _read_cxi(f: Any, path: Path) -> CXIData:
    ds = _dataset(f, DATA_PATH)
    if ds is None:
        ds = _dataset(f, DETECTOR_DATA_PATH)
    if ds is None:
        raise InputError(f"{path}: no intensity data set {DATA_PATH}")
    if ds.dtype.kind not in "iuf":
        raise InputError(
            f"{path}: {DATA_PATH} must be a real numeric array (counts), got dtype {ds.dtype}"
        )
    raw = _read(ds, path, DATA_PATH)
    intensity = _check_intensity(raw, path, DATA_PATH)
    mask = None
    mds = _optional_dataset(f, MASK_PATH, path)
    if mds is not None:
        mask = _check_mask(_read(mds, path, MASK_PATH), intensity.shape, path)
    meta = _read_meta(f, path)
    meta["dtype"] = str(raw.dtype)
    mask = _flag_ceiling(raw, mask, meta)
    return CXIData(intensity=intensity, mask=mask, meta=meta)


def _read_meta(f: Any, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    try:
        text = f["entry_1/data_1"].attrs.get("bcdi_stream_meta")
        if isinstance(text, bytes):
            text = text.decode()
        if text:
            loaded = json.loads(text)
            if isinstance(loaded, dict):
                meta.update(loaded)
    except Exception:  # metadata are best effort; the data were checked already
        pass
    version = _scalar(f, "cxi_version")
    if version is not None:
        meta["cxi_version"] = version
    energy_j = _scalar(f, "entry_1/instrument_1/source_1/energy")
    if isinstance(energy_j, int | float) and energy_j > 0:
        meta.setdefault("energy_kev", float(energy_j) / _KEV_TO_J)
    wavelength = _scalar(f, "entry_1/instrument_1/beam_1/incident_wavelength")
    if isinstance(wavelength, int | float) and wavelength > 0:
        meta.setdefault("wavelength", float(wavelength))
    elif "energy_kev" in meta:
        meta.setdefault("wavelength", HC_KEV_M / float(meta["energy_kev"]))
    for key, name in (
        ("entry_1/instrument_1/detector_1/distance", "detector_distance"),
        ("entry_1/instrument_1/detector_1/x_pixel_size", "pixel_size"),
    ):
        v = _scalar(f, key)
        if isinstance(v, int | float) and v > 0:
            meta.setdefault(name, float(v))
    name = _scalar(f, "entry_1/sample_1/name")
    if isinstance(name, str):
        meta.setdefault("sample_name", name)
    meta["source"] = str(path)
    return meta


# --------------------------------------------------------------------------------------------
# reconstructions
# --------------------------------------------------------------------------------------------
def _write_process(group: Any, meta: Mapping[str, Any]) -> None:
    """One dataset per JSON-able scalar/string/homogeneous list, a group per nested dict."""
    for key, value in meta.items():
        name = str(key).replace("/", "_") or "_"
        if name in group:
            continue
        if isinstance(value, Mapping):
            sub = group.create_group(name)
            sub.attrs["NX_class"] = "NXcollection"
            _write_process(sub, value)
        elif value is None:
            continue
        elif isinstance(value, bool | int | float | str):
            group.create_dataset(name, data=value)
        else:  # a list
            try:
                arr = np.asarray(value)
                if arr.dtype.kind not in "biuf":
                    raise TypeError
                group.create_dataset(name, data=arr)
            except (TypeError, ValueError):
                group.create_dataset(name, data=json.dumps(value))


def write_cxi_reconstruction(
    path: str | os.PathLike[str],
    obj: Any,
    support: Any,
    meta: Mapping[str, Any] | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
    voxel_size: Any = None,
) -> None:
    """Write a reconstruction as a CXI file (PyNX layout, module docstring).

    Parameters
    ----------
    path : path-like
        Output file; replaced atomically.
    obj : array-like
        Complex 3D real-space object on the grid of the input data (stored complex64).
    support : array-like
        Support, same shape (stored uint8 at ``image_1/mask``, linked as ``image_1/support``).
    meta : mapping, optional
        JSON-able process metadata (method, model, timings, LLK...): written under
        ``/entry_1/image_1/process_1`` as datasets/groups and as one JSON string ``meta_json``.
    extra : mapping of str to array-like, optional
        Further arrays of the same shape (``amplitude``, ``phase``, ``displacement``,
        ``strain``...) stored under ``/entry_1/image_1/<name>``: float arrays as float32, bool
        as uint8, integers as given. :meth:`bcdi_stream.analysis.PostProcessed.to_numpy` fits
        (its ``support``, equal to ``support``, is not stored twice).
    voxel_size : sequence of 3 floats, optional
        Metres ``(z, y, x)``: stored as ``image_1/voxel_size`` and ``image_1/image_size``.

    Raises
    ------
    InputError
        Bad arrays or metadata (a ``ValueError``) or a file that cannot be written.
    """
    path = Path(path)
    o = to_numpy(obj)
    if o.ndim != 3:
        raise InputError(f"obj must be a 3D array (z, y, x), got shape {o.shape}")
    if o.dtype.kind not in "biufc":
        raise InputError(f"obj must be numeric, got dtype {o.dtype}")
    o = o.astype(np.complex64, copy=False)
    s = to_numpy(support)
    if s.shape != o.shape:
        raise InputError(f"support shape {s.shape} does not match the object shape {o.shape}")
    s = (s != 0).astype(np.uint8)
    clean, text = _meta_json(meta, "meta")
    arrays: dict[str, np.ndarray] = {}
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not name or "/" in name:
            raise InputError(f"extra: invalid array name {name!r}")
        a = to_numpy(value)
        if a.shape != o.shape:
            raise InputError(
                f"extra[{name!r}] shape {a.shape} does not match the object shape {o.shape}"
            )
        if name == "support" and np.array_equal(a != 0, s != 0):
            continue  # e.g. PostProcessed.to_numpy(): already stored as image_1/mask
        if name in _RESERVED_IMAGE_KEYS or name == "voxel_size":
            raise InputError(f"extra: {name!r} is a reserved name under {IMAGE_PATH}")
        if a.dtype.kind == "f":
            a = a.astype(np.float32, copy=False)
        elif a.dtype.kind == "b":
            a = a.astype(np.uint8)
        elif a.dtype.kind == "c":
            a = a.astype(np.complex64, copy=False)
        elif a.dtype.kind not in "iu":
            raise InputError(f"extra[{name!r}] must be numeric, got dtype {a.dtype}")
        arrays[name] = a
    vs = None
    if voxel_size is not None:
        vs = np.asarray(to_numpy(voxel_size), dtype=np.float64).ravel()
        if vs.shape != (3,) or not np.all(vs > 0):
            raise InputError(f"voxel_size must be 3 positive numbers, got {voxel_size!r}")

    def writer(f: Any) -> None:
        import h5py

        from bcdi_stream import __version__

        _root_attrs(f, path, "image_1")
        image = f["entry_1"].create_group("image_1")
        image.attrs["NX_class"] = "NXdata"
        image.attrs["signal"] = "data"
        image.attrs["interpretation"] = "scaler"
        _compressed(image, "data", o)
        _compressed(image, "mask", s)
        image["support"] = h5py.SoftLink(f"{IMAGE_PATH}/mask")
        image.create_dataset("data_type", data="electron density")
        image.create_dataset("data_space", data="real")
        if vs is not None:
            image.create_dataset("voxel_size", data=vs)
            image["voxel_size"].attrs["units"] = "m"
            image.create_dataset("image_size", data=vs * np.asarray(o.shape))
            image["image_size"].attrs["units"] = "m"
        for name, a in arrays.items():
            _compressed(image, name, a)
        process = image.create_group("process_1")
        process.attrs["NX_class"] = "NXprocess"
        process.create_dataset("program", data="bcdi-stream")
        process.create_dataset("version", data=str(__version__))
        process.create_dataset("meta_json", data=text)
        _write_process(process, clean)

    _write_atomic(path, writer)


def read_cxi_reconstruction(path: str | os.PathLike[str]) -> CXIReconstruction:
    """Read a reconstruction written by :func:`write_cxi_reconstruction` (or PyNX).

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    CXIReconstruction
        ``meta`` comes from ``process_1/meta_json`` when present, else from the scalar
        datasets of ``process_1``; the support defaults to ``|obj| > 0`` when no mask is stored.

    Raises
    ------
    InputError
        Missing file, not HDF5, no ``/entry_1/image_1/data``, not a 3D array, unreadable.
    """
    path = Path(path)
    f = _open_h5(path)
    try:
        return _read_reconstruction(f, path)
    except InputError:
        raise
    except Exception as exc:  # anything h5py/numpy may raise on a damaged file
        raise InputError(f"{path}: cannot read ({_one_line(exc)})") from exc
    finally:
        try:
            f.close()
        except Exception:  # pragma: no cover
            pass


def _read_reconstruction(f: Any, path: Path) -> CXIReconstruction:
    ds = _dataset(f, f"{IMAGE_PATH}/data")
    if ds is None:
        raise InputError(f"{path}: no reconstruction data set {IMAGE_PATH}/data")
    obj = _read(ds, path, f"{IMAGE_PATH}/data")
    if obj.dtype.kind not in "biufc":
        raise InputError(f"{path}: {IMAGE_PATH}/data must be numeric, got dtype {obj.dtype}")
    if obj.ndim != 3:
        raise InputError(
            f"{path}: {IMAGE_PATH}/data must be a 3D array, got shape {obj.shape}"
        )
    obj = obj.astype(np.complex64, copy=False)
    mds = _dataset(f, f"{IMAGE_PATH}/mask")
    if mds is None:
        support = np.abs(obj) > 0
    else:
        raw = _read(mds, path, f"{IMAGE_PATH}/mask")
        if raw.shape != obj.shape:
            raise InputError(
                f"{path}: support shape {raw.shape} does not match the object {obj.shape}"
            )
        support = raw != 0
    extra: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    image = f[IMAGE_PATH]
    for name in image:
        if name in _RESERVED_IMAGE_KEYS or name == "voxel_size":
            continue
        eds = _dataset(image, name)
        if eds is not None and eds.shape == obj.shape:
            extra[name] = _read(eds, path, f"{IMAGE_PATH}/{name}")
    vds = _dataset(image, "voxel_size")
    if vds is not None:
        meta_vs = _read(vds, path, f"{IMAGE_PATH}/voxel_size")
        meta["voxel_size"] = [float(v) for v in np.ravel(meta_vs)]
    text = _scalar(f, f"{IMAGE_PATH}/process_1/meta_json")
    if isinstance(text, str):
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            meta.update(loaded)
    elif "process_1" in image:
        for name in image["process_1"]:
            v = _scalar(image["process_1"], name)
            if v is not None:
                meta[name] = v
    return CXIReconstruction(obj=obj, support=support, meta=meta, extra=extra)
