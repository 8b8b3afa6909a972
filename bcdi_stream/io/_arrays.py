"""Load and save diffraction intensity by file suffix: CXI/HDF5, ``.npy``, ``.npz``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bcdi_stream.errors import InputError
from bcdi_stream.io._cxi import (
    CXIData,
    _check_intensity,
    _check_mask,
    _check_readable,
    _flag_ceiling,
    _one_line,
    checked_arrays,
    read_cxi,
    write_cxi_data,
)

__all__ = ["HDF5_SUFFIXES", "SUFFIXES", "load_intensity", "save_intensity"]

#: Suffixes read as CXI (HDF5) files.
HDF5_SUFFIXES: tuple[str, ...] = (".cxi", ".h5", ".hdf5")
#: Every suffix :func:`load_intensity` and :func:`save_intensity` understand.
SUFFIXES: tuple[str, ...] = (*HDF5_SUFFIXES, ".npy", ".npz")

#: Keys of the intensity in a ``.npz`` archive, in order of preference.
NPZ_DATA_KEYS: tuple[str, ...] = ("data", "intensity")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {suffix or '(none)'!r}, expected one of "
            f"{', '.join(SUFFIXES)}"
        )
    return suffix


def _load_npy(path: Path) -> CXIData:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled/corrupt), OSError, EOFError...
        raise InputError(f"{path}: not a readable .npy array ({_one_line(exc)})") from exc
    if not isinstance(arr, np.ndarray):  # a .npz archive under a .npy name
        close = getattr(arr, "close", None)
        if close is not None:
            close()
        raise InputError(f"{path}: not a .npy array (a .npz archive?)")
    intensity = _check_intensity(arr, path)
    meta: dict[str, Any] = {"source": str(path), "dtype": str(arr.dtype)}
    return CXIData(intensity=intensity, mask=_flag_ceiling(arr, None, meta), meta=meta)


def _load_npz(path: Path) -> CXIData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise InputError(f"{path}: not a .npz archive")
            key = next((k for k in NPZ_DATA_KEYS if k in archive.files), None)
            if key is None:
                raise InputError(
                    f"{path}: no 'data' or 'intensity' array in the archive "
                    f"(found: {', '.join(archive.files) or 'nothing'})"
                )
            raw = archive[key]
            mask_raw = archive["mask"] if "mask" in archive.files else None
    except InputError:
        raise
    except Exception as exc:  # BadZipFile, ValueError (pickled/corrupt), OSError...
        raise InputError(f"{path}: not a readable .npz archive ({_one_line(exc)})") from exc
    intensity = _check_intensity(raw, path, key)
    mask = None if mask_raw is None else _check_mask(mask_raw, intensity.shape, path)
    meta: dict[str, Any] = {"source": str(path), "dtype": str(raw.dtype)}
    return CXIData(intensity=intensity, mask=_flag_ceiling(raw, mask, meta), meta=meta)


def load_intensity(path: str | os.PathLike[str]) -> CXIData:
    """Load a 3D diffraction intensity, choosing the reader by suffix.

    * ``.cxi``, ``.h5``, ``.hdf5``: CXI layout (:func:`bcdi_stream.io.read_cxi`);
    * ``.npy``: the array itself (no mask);
    * ``.npz``: the array ``data`` (or ``intensity``), optional ``mask`` (nonzero = bad).

    Only shape and dtype are checked here; values (NaN, negative...) are checked by
    :func:`bcdi_stream.validation.validate_intensity`.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    CXIData
        float32 intensity, bool mask or None, metadata.

    Raises
    ------
    InputError
        With a one-line reason naming the file.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix in HDF5_SUFFIXES:
        return read_cxi(path)
    _check_readable(path)
    return _load_npy(path) if suffix == ".npy" else _load_npz(path)


def save_intensity(
    path: str | os.PathLike[str],
    intensity: Any,
    mask: Any = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Save a 3D intensity (and mask) in the format given by the suffix.

    ``.cxi``/``.h5``/``.hdf5`` through :func:`bcdi_stream.io.write_cxi_data` (with ``meta``);
    ``.npy`` stores the array only (a mask or meta is refused rather than lost); ``.npz``
    stores ``data`` and ``mask`` (uint8).

    Parameters
    ----------
    path : path-like
        Output file.
    intensity : array-like
        3D real numeric array; its dtype is kept.
    mask : array-like, optional
        Same shape, nonzero = bad pixel.
    meta : dict, optional
        JSON-able metadata (CXI only).

    Raises
    ------
    InputError
        Bad arrays, an unsupported suffix or a file that cannot be written.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix in HDF5_SUFFIXES:
        write_cxi_data(path, intensity, mask, meta)
        return
    arr, m = checked_arrays(intensity, mask)
    if suffix == ".npy" and (m is not None or meta):
        raise InputError(f"{path}: .npy holds one array: use .npz or .cxi to keep a mask/meta")
    if suffix == ".npz" and meta:
        raise InputError(f"{path}: .npz does not store metadata: use .cxi")
    if not path.parent.exists():
        raise InputError(f"{path}: directory {path.parent} does not exist")
    try:
        with open(path, "wb") as fh:
            if suffix == ".npy":
                np.save(fh, arr)
            else:
                np.savez_compressed(fh, data=arr, **({} if m is None else {"mask": m}))
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({_one_line(exc)})") from exc
