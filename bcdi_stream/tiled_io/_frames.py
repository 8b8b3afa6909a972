"""Read a rocking curve's frames from Tiled, as ``TiledWriter`` stored it.

A run written by ``bluesky_tiled_plugins.TiledWriter`` lives at ``<uid>`` (spec ``BlueskyRun``)
with its start/stop documents in the metadata and each event stream as a container
``<uid>/<stream>`` whose metadata holds the descriptor's ``data_keys``; the detector image is the
array ``<uid>/<stream>/<data_key>``, shaped ``(n_frames, rows, cols)`` (or with a singleton axis).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bcdi_stream.errors import InputError
from bcdi_stream.geometry import Geometry

__all__ = ["RawScan", "TiledRefused", "find_image_field", "is_image_key", "read_scan"]

log = logging.getLogger(__name__)


class TiledRefused(RuntimeError):
    """Tiled answered with a permanent refusal (401, 403, 409, 413, 422...)."""


def _status_code(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def _permanent(exc: BaseException) -> bool:
    code = _status_code(exc)
    return code is not None and 400 <= code < 500 and code not in (404, 408, 425, 429)


def is_image_key(data_key: Mapping[str, Any]) -> bool:
    """Whether a descriptor data key is one 2D image per event.

    Parameters
    ----------
    data_key : mapping
        An event-descriptor data key (``dtype``, ``shape``...).
    """
    shape = list(data_key.get("shape") or [])
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    return len(shape) == 2 and all(isinstance(s, int) and s > 1 for s in shape)


def find_image_field(data_keys: Mapping[str, Mapping[str, Any]]) -> str:
    """The detector image field of a stream: its one 2D-per-event array.

    Parameters
    ----------
    data_keys : mapping
        The descriptor's ``data_keys``.

    Returns
    -------
    str

    Raises
    ------
    InputError
        No 2D field, or several (then the field must be configured).
    """
    if not isinstance(data_keys, Mapping):
        raise ValueError(f"data_keys must be a mapping, got {type(data_keys).__name__}")
    images = sorted(
        k for k, dk in data_keys.items() if isinstance(dk, Mapping) and is_image_key(dk)
    )
    if not images:
        fields = ", ".join(sorted(data_keys)) or "none"
        raise InputError(f"no 2D detector image among the stream's fields ({fields})")
    if len(images) > 1:
        raise InputError(
            f"several 2D detector images ({', '.join(images)}): configure image_field"
        )
    return images[0]


@dataclass
class RawScan:
    """A rocking curve read back from Tiled.

    Attributes
    ----------
    uid : str
        Run uid.
    frames : numpy.ndarray
        ``(n_frames, rows, cols)`` counts, dtype as stored.
    field : str
        Data key of the detector image.
    start, stop : dict
        The run's start and stop documents (``stop`` may be empty if not yet written).
    geometry : Geometry or None
        From the start document's ``bcdi`` metadata.
    seconds : float
        Wall time of the read, retries included.
    attempts : int
        Number of read attempts.
    """

    uid: str
    frames: np.ndarray
    field: str
    start: dict[str, Any]
    stop: dict[str, Any] = field(default_factory=dict)
    geometry: Geometry | None = None
    seconds: float = 0.0
    attempts: int = 1


def _geometry(start: Mapping[str, Any]) -> Geometry | None:
    md = start.get("bcdi")
    if not isinstance(md, Mapping):
        return None
    try:
        return Geometry.from_dict(md)
    except (ValueError, TypeError) as exc:
        raise InputError(f"invalid bcdi geometry in the start document: {exc}") from None


#: Largest detector array :func:`read_scan` reads (bytes): 4 GiB, e.g. 1,000 frames of
#: 1024×1024 uint32; anything larger is refused before a byte is allocated.
DEFAULT_MAX_BYTES = 4 * 2**30


def _check_size(arr_node: Any, max_bytes: int) -> None:
    """Refuse an array whose declared shape × itemsize exceeds ``max_bytes`` (before reading)."""
    shape = tuple(int(v) for v in getattr(arr_node, "shape", ()) or ())
    dtype = getattr(arr_node, "dtype", None)
    itemsize = int(getattr(dtype, "itemsize", 8) or 8)
    nbytes = int(np.prod(shape, dtype=np.float64)) * itemsize if shape else 0
    if nbytes > max_bytes:
        raise InputError(
            f"detector array {shape} ({nbytes / 2**20:.0f} MiB) is larger than the "
            f"{max_bytes / 2**20:.0f} MiB this job reads (max_bytes)"
        )


def _read_once(client: Any, uid: str, field_name: str | None, stream: str,
               expected: int | None, max_bytes: int = DEFAULT_MAX_BYTES
               ) -> tuple[np.ndarray, str, dict, dict]:
    run = client[uid]
    md = dict(run.metadata)
    start = dict(md.get("start") or {})
    stop = dict(md.get("stop") or {})
    if stream not in run:
        if stop:
            raise InputError(f"run has no '{stream}' stream (no detector data)")
        raise KeyError(stream)
    node = run[stream]
    if field_name is None:
        data_keys = dict(node.metadata.get("data_keys") or {})
        bcdi = start.get("bcdi")
        named = bcdi.get("image_field") if isinstance(bcdi, Mapping) else None
        if isinstance(named, str) and named in data_keys:  # the plan named its image
            field_name = named
        else:
            field_name = find_image_field(data_keys)
    if field_name in node:
        arr_node = node[field_name]
    elif "data" in node and field_name in node["data"]:  # older (v2) layout
        arr_node = node["data"][field_name]
    else:
        if stop:
            raise InputError(f"stream '{stream}' has no field '{field_name}'")
        raise KeyError(field_name)
    _check_size(arr_node, max_bytes)
    frames = np.asarray(arr_node.read())
    if frames.ndim == 4 and frames.shape[1] == 1:
        frames = frames[:, 0]
    if expected is not None and frames.shape[0] < expected:
        raise _Incomplete(f"{frames.shape[0]} of {expected} frames in Tiled")
    return frames, field_name, start, stop


class _Incomplete(RuntimeError):
    pass


def read_scan(
    client: Any,
    uid: str,
    *,
    field: str | None = None,
    stream: str = "primary",
    expected_frames: int | None = None,
    timeout: float = 30.0,
    poll: float = 0.2,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> RawScan:
    """Read a rocking curve's frames from Tiled, retrying while they are not readable yet.

    The run, its stream or its detector array may not be there yet (a writer behind the
    RunEngine) or not readable yet (a detector file still open at ``stop``): every such failure is
    retried with growing pauses until ``timeout``. Permanent answers (no such stream in a finished
    run, 401/403...) end the read at once.

    Parameters
    ----------
    client : tiled container client
        The root of the catalog holding the run.
    uid : str
        Run uid.
    field : str, optional
        Detector image data key; default the start document's ``bcdi.image_field`` when the
        stream has it, else the stream's one 2D field (:func:`find_image_field`).
    stream : str
        Event stream name.
    expected_frames : int, optional
        Frames the stop document counted; fewer in Tiled means "not written yet".
    timeout : float
        Seconds to keep retrying.
    poll : float
        First pause between attempts (doubles up to 2 s).
    max_bytes : int
        Largest detector array read (its declared shape and dtype are checked first):
        a larger one is an :class:`InputError`, nothing is allocated.

    Returns
    -------
    RawScan

    Raises
    ------
    InputError
        A run that cannot give frames (no stream, no 2D field, bad geometry).
    TiledRefused
        Tiled refused access.
    TimeoutError
        Still unreadable after ``timeout`` seconds (the last reason in the message).
    """
    if not uid or not isinstance(uid, str):
        raise ValueError(f"uid must be a non-empty string, got {uid!r}")
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")
    if not poll > 0:
        raise ValueError(f"poll must be > 0, got {poll}")
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    t0 = time.perf_counter()
    deadline = t0 + timeout
    pause = poll
    attempts = 0
    while True:
        attempts += 1
        try:
            frames, field_name, start, stop = _read_once(client, uid, field, stream,
                                                         expected_frames, max_bytes)
            break
        except InputError:
            raise
        except Exception as exc:
            if _permanent(exc):
                raise TiledRefused(f"Tiled refused to read run {uid}: {_short(exc)}") from exc
            if time.perf_counter() + pause > deadline:
                raise TimeoutError(
                    f"run {uid} not readable from Tiled after {attempts} attempts in "
                    f"{time.perf_counter() - t0:.1f} s: {_short(exc)}"
                ) from exc
            log.debug("read of %s not ready (%s); retrying in %.2f s", uid, _short(exc), pause)
            time.sleep(pause)
            pause = min(2 * pause, 2.0)
    return RawScan(
        uid=uid,
        frames=frames,
        field=field_name,
        start=start,
        stop=stop,
        geometry=_geometry(start),
        seconds=time.perf_counter() - t0,
        attempts=attempts,
    )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError):
        text = f"{exc.args[0]!r} not found" if exc.args else "not found"
    return f"{type(exc).__name__}: {text}"[:300]
