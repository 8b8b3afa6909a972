"""Run the live job on a Dask cluster (``dask.distributed``): scale-out over processes/hosts.

A Tiled client does not travel between processes, so a Dask task gets the server's URI and opens
its own client, once per worker process; the API key comes from the worker's environment
(``TILED_API_KEY``), never from the task (task arguments show up in dashboards and logs). GPU
hosts: start workers with a resource (``dask-cuda-worker ... --resources GPU=1``) and give
:class:`~callbacks.BCDICallback` ``dask_resources={"GPU": 1}``: one scan per GPU at a time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from bcdi_stream.tiled_io import JobSettings, ScanResult, Spool, is_unreachable, process_run
from bcdi_stream.tiled_io._frames import _short

__all__ = ["is_dask_client", "tiled_job"]

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_threads_set = False


def is_dask_client(obj: Any) -> bool:
    """Whether ``obj`` is a ``distributed.Client`` (checked without importing distributed)."""
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "submit")


def _client(uri: str) -> Any:
    with _lock:
        client = _clients.get(uri)
        if client is None:
            from tiled.client import from_uri

            client = from_uri(uri, api_key=os.environ.get("TILED_API_KEY") or None)
            _clients[uri] = client
        return client


def tiled_job(
    uri: str,
    raw_uid: str,
    settings_json: str,
    image_field: str | None,
    stream: str,
    expected_frames: int | None,
    stop_time: float | None,
    spool_dir: str | None,
    threads: int = 1,
) -> ScanResult:
    """The live job as a Dask task: :func:`bcdi_stream.tiled_io.process_run` in the worker.

    Parameters
    ----------
    uri : str
        Tiled server URI (``http://host:port/api/v1``), without the key.
    raw_uid : str
        The raw run's uid.
    settings_json : str
        :class:`JobSettings` as JSON.
    image_field, stream, expected_frames, stop_time
        As :func:`process_run`.
    spool_dir : str, optional
        Spool directory (local to the worker host; share it, or replay it there).
    threads : int
        torch CPU threads of the worker process (0: leave the default).

    Returns
    -------
    ScanResult
        Without arrays (only the summary travels back).
    """
    global _threads_set
    if threads and not _threads_set:
        import torch

        torch.set_num_threads(threads)
        _threads_set = True
    settings = JobSettings.model_validate_json(settings_json)
    try:
        client = _client(uri)
    except Exception as exc:
        if is_unreachable(exc):  # a plain, picklable error the callback spools as "re-run"
            raise ConnectionError(f"Tiled unreachable from the Dask worker: {_short(exc)}"
                                  ) from None
        raise
    return process_run(
        client, raw_uid, settings=settings, image_field=image_field, stream=stream,
        expected_frames=expected_frames, stop_time=stop_time, keep_arrays=False,
        spool=Spool(spool_dir) if spool_dir else None,
    )
