"""Tiled adapters: read rocking curves written by ``TiledWriter``, write reconstructions.

- :func:`read_scan`: frames + start/stop documents + geometry of a raw run, with retries.
- :func:`write_result`, :func:`write_failure`, :func:`read_result`: the ``processed/<raw_uid>``
  contract (spec ``BCDIReconstruction``).
- :func:`render_slices`: the PNG-exportable figure of central slices.
- :func:`process_run`: the whole live job (read, preprocess, reconstruct, write).
- :class:`Spool`: results kept locally while Tiled is unreachable, replayed when it returns;
  :class:`Journal`: scans in progress, re-run after a crash.

This package imports the Tiled client lazily (it receives client objects); it never imports
bluesky or ophyd.
"""

from bcdi_stream.tiled_io._connect import connect, server_base
from bcdi_stream.tiled_io._figures import draw_slices, png_bytes, render_slices
from bcdi_stream.tiled_io._frames import (
    RawScan,
    TiledRefused,
    find_image_field,
    is_image_key,
    read_scan,
)
from bcdi_stream.tiled_io._job import (
    JobSettings,
    ScanResult,
    live_phasing,
    misfit_limit,
    partial_run_reason,
    process_run,
    quality_flag,
)
from bcdi_stream.tiled_io._journal import Journal
from bcdi_stream.tiled_io._results import (
    DEFAULT_PROCESSED_KEY,
    RESULT_ARRAYS,
    RESULT_SPEC,
    holds_ok_result,
    jsonable,
    processed_container,
    read_result,
    stale_writing,
    write_failure,
    write_result,
)
from bcdi_stream.tiled_io._spool import (
    ReplayReport,
    Spool,
    SpoolEntry,
    check_uid,
    is_unreachable,
    try_lock_file,
)

__all__ = [
    "DEFAULT_PROCESSED_KEY",
    "RESULT_ARRAYS",
    "RESULT_SPEC",
    "JobSettings",
    "Journal",
    "RawScan",
    "ReplayReport",
    "ScanResult",
    "Spool",
    "SpoolEntry",
    "TiledRefused",
    "check_uid",
    "connect",
    "draw_slices",
    "find_image_field",
    "holds_ok_result",
    "is_image_key",
    "is_unreachable",
    "jsonable",
    "live_phasing",
    "misfit_limit",
    "partial_run_reason",
    "png_bytes",
    "process_run",
    "processed_container",
    "quality_flag",
    "read_result",
    "read_scan",
    "render_slices",
    "server_base",
    "stale_writing",
    "try_lock_file",
    "write_failure",
    "write_result",
]
