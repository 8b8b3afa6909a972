"""File adapters: CXI (HDF5, PyNX/cdiutils compatible) and ``.npy``/``.npz``.

Every read failure raises :class:`bcdi_stream.errors.InputError` with a one-line reason naming
the file.
"""

from bcdi_stream.io._arrays import HDF5_SUFFIXES, SUFFIXES, load_intensity, save_intensity
from bcdi_stream.io._cxi import (
    DATA_PATH,
    DETECTOR_DATA_PATH,
    IMAGE_PATH,
    MASK_PATH,
    CXIData,
    CXIReconstruction,
    read_cxi,
    read_cxi_reconstruction,
    write_cxi_data,
    write_cxi_reconstruction,
)

__all__ = [
    "DATA_PATH",
    "DETECTOR_DATA_PATH",
    "HDF5_SUFFIXES",
    "IMAGE_PATH",
    "MASK_PATH",
    "SUFFIXES",
    "CXIData",
    "CXIReconstruction",
    "load_intensity",
    "read_cxi",
    "read_cxi_reconstruction",
    "save_intensity",
    "write_cxi_data",
    "write_cxi_reconstruction",
]
