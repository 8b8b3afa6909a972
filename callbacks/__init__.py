"""The Bluesky-facing layer of bcdi-stream: live callback, executors and feedback.

Only this package (and the simulated beamline) knows Bluesky; it drives the engine in
:mod:`bcdi_stream` through :func:`bcdi_stream.tiled_io.process_run` (which calls
:func:`bcdi_stream.pipeline.reconstruct`).

>>> from callbacks import BCDICallback                      # doctest: +SKIP
>>> RE.subscribe(TiledWriter(client))                       # doctest: +SKIP
>>> bcdi_callback = BCDICallback(client)                    # doctest: +SKIP
>>> RE.subscribe(bcdi_callback)                             # doctest: +SKIP
>>> bcdi_callback.wait(60)                                  # doctest: +SKIP
"""

from bcdi_stream.tiled_io import JobSettings, ScanResult, live_phasing
from callbacks._callback import BCDICallback
from callbacks._executors import WorkerPool, WorkerState, default_devices
from callbacks._feedback import LiveStrainFigure, summary_line
from callbacks._publish import analysis_documents, publish_analysis_run
from callbacks._worker import (
    find_unprocessed,
    json_deserializer,
    json_serializer,
    make_publisher,
    run_worker,
)

__all__ = [
    "BCDICallback",
    "JobSettings",
    "LiveStrainFigure",
    "ScanResult",
    "WorkerPool",
    "WorkerState",
    "analysis_documents",
    "default_devices",
    "find_unprocessed",
    "json_deserializer",
    "json_serializer",
    "live_phasing",
    "make_publisher",
    "publish_analysis_run",
    "run_worker",
    "summary_line",
]
