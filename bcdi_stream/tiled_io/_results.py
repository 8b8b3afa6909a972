"""Write and read reconstructions in Tiled: ``processed/<raw_uid>``.

The contract (``shared/DESIGN.md``): a container ``processed/<raw_uid>`` with spec
``BCDIReconstruction``, arrays ``amplitude``, ``phase``, ``support``, ``displacement``,
``strain`` (float32; support uint8; dims ``z, y, x``), and metadata ``raw_uid``, ``status``
(``ok`` | ``failed``), ``error`` (on failure), ``method``, ``model`` (name, hash), per-stage
``timings``, ``quality``, ``voxel_size_m``, ``software``. Rendered figures (RGB ``uint8``,
exportable as PNG) go in the sub-container ``figures``.

While the arrays are being written the status reads ``writing``; it turns ``ok`` (or ``failed``)
only once everything is in place, so a reader that sees ``ok`` finds all the arrays.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bcdi_stream.tiled_io._frames import TiledRefused, _permanent, _short

__all__ = [
    "DEFAULT_PROCESSED_KEY",
    "RESULT_ARRAYS",
    "RESULT_SPEC",
    "check_uid",
    "holds_ok_result",
    "jsonable",
    "processed_container",
    "read_result",
    "stale_writing",
    "write_failure",
    "write_result",
]

log = logging.getLogger(__name__)

#: Spec of a reconstruction container.
RESULT_SPEC = "BCDIReconstruction"
#: Arrays every ``ok`` reconstruction holds (dims ``z, y, x``).
RESULT_ARRAYS: tuple[str, ...] = ("amplitude", "phase", "support", "displacement", "strain")
#: Default key of the container of reconstructions.
DEFAULT_PROCESSED_KEY = "processed"

_DIMS = ("z", "y", "x")
#: Seconds after which a record still ``writing`` is taken for one whose writer died
#: (:func:`stale_writing`); a 64³ result is written in about a second.
STALE_WRITING_S = 600.0


_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _clip(value: Any, n: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def check_uid(raw_uid: str, name: str = "raw_uid") -> str:
    """Validate a run uid used as a file name or a Tiled key (the writers and readers of
    ``processed/<uid>`` check it: the Tiled client accepts a key like ``../../x`` and its
    URL then climbs out of the container).

    Parameters
    ----------
    raw_uid : str
        The uid.
    name : str
        Argument name for the error message.

    Raises
    ------
    ValueError
        Empty, too long, or with characters other than letters, digits, ``.``, ``_``, ``-``
        (no path separators, no leading dot).
    """
    if not isinstance(raw_uid, str) or not _UID.match(raw_uid):
        raise ValueError(
            f"{name} must be 1-200 letters, digits, '.', '_' or '-' (not starting with '.' "
            f"or '-'), got {_clip(raw_uid)}"
        )
    return raw_uid


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        if _permanent(exc):
            raise TiledRefused(f"Tiled refused to {what}: {_short(exc)}") from exc
        raise


def processed_container(client: Any, key: str = DEFAULT_PROCESSED_KEY) -> Any:
    """The container of reconstructions, created when missing.

    Parameters
    ----------
    client : tiled container client
        Catalog root.
    key : str
        Its key (default ``processed``).
    """
    if not key or "/" in key:
        raise ValueError(f"key must be a non-empty name without '/', got {key!r}")
    try:
        return client[key]
    except KeyError:
        pass
    try:
        return _call(
            f"create the '{key}' container",
            lambda: client.create_container(
                key,
                metadata={"description": "bcdi-stream reconstructions, one per raw run uid"},
            ),
        )
    except TiledRefused as exc:
        if "409" in str(exc):  # created meanwhile by another worker
            return client[key]
        raise


def _remove_previous(parent: Any, raw_uid: str) -> None:
    try:
        old = parent[raw_uid]
    except KeyError:
        return
    specs = [getattr(s, "name", s) for s in getattr(old, "specs", [])]
    if RESULT_SPEC not in specs:
        return  # not ours: leave it, the create below is refused
    _call(f"replace processed/{raw_uid}",
          lambda: old.delete(recursive=True, external_only=False))


def write_result(
    client: Any,
    raw_uid: str,
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any],
    *,
    figures: Mapping[str, np.ndarray] | None = None,
    processed_key: str = DEFAULT_PROCESSED_KEY,
    finalize: Callable[[float], Mapping[str, Any]] | None = None,
) -> Any:
    """Write one reconstruction to ``<processed_key>/<raw_uid>`` (a previous one is replaced).

    Parameters
    ----------
    client : tiled container client
        Catalog root.
    raw_uid : str
        The raw run's uid (the key of the result).
    arrays : mapping
        ``amplitude``, ``phase``, ``support``, ``displacement``, ``strain`` (3D, one shape).
    metadata : mapping
        Result metadata (JSON-able after :func:`jsonable`); ``status`` defaults to ``ok``.
    figures : mapping, optional
        Name -> RGB ``uint8`` image, written under ``figures``.
    processed_key : str
        Key of the container of results.
    finalize : callable(write_seconds) -> mapping, optional
        Extra metadata merged in the final update (e.g. the write time and the latency).

    Returns
    -------
    tiled container client
        The result node.

    Raises
    ------
    TiledRefused
        Tiled refused a write (read-only key, a foreign node at that key...).
    ValueError
        Missing or inconsistent arrays.
    """
    t0 = time.perf_counter()
    missing = [k for k in RESULT_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"arrays is missing {', '.join(missing)}")
    shapes = {k: tuple(np.shape(arrays[k])) for k in RESULT_ARRAYS}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 3:
        raise ValueError(f"arrays must be 3D of one shape, got {shapes}")
    check_uid(raw_uid)
    md = jsonable(dict(metadata))
    final_status = md.get("status") or "ok"
    md.update(raw_uid=raw_uid, status="writing", writing_since=round(time.time(), 3))
    parent = processed_container(client, processed_key)
    _remove_previous(parent, raw_uid)
    node = _call(f"create {processed_key}/{raw_uid}",
                 lambda: parent.create_container(raw_uid, metadata=md, specs=[RESULT_SPEC]))
    units = (md.get("postprocess") or {}).get("units") or {}
    for key in RESULT_ARRAYS:
        arr = np.asarray(arrays[key])
        arr = arr.astype(np.uint8) if key == "support" else arr.astype(np.float32, copy=False)
        amd = {"units": units.get(key, "1" if key == "strain" else "")}
        if key != "support" and key != "amplitude":
            amd["outside_support"] = "nan"
        _call(f"write {processed_key}/{raw_uid}/{key}",
              lambda a=arr, k=key, m=amd: node.write_array(a, key=k, dims=_DIMS, metadata=m))
    if figures:
        fnode = _call("create the figures container",
                      lambda: node.create_container("figures", metadata={
                          "description": "rendered figures; export any as PNG",
                      }))
        for name, rgb in figures.items():
            img = np.asarray(rgb)
            if img.dtype != np.uint8 or img.ndim != 3:
                raise ValueError(f"figure {name!r} must be (rows, cols, 3) uint8")
            _call(f"write figure {name}",
                  lambda i=img, n=name: fnode.write_array(
                      i, key=n, dims=("row", "col", "rgb"),
                      metadata={"kind": "rgb image", "export": "image/png"}))
    extra = dict(finalize(time.perf_counter() - t0)) if finalize is not None else {}
    update = jsonable({**extra, "status": final_status})
    _call(f"finalise {processed_key}/{raw_uid}", lambda: node.update_metadata(update))
    return node


def write_failure(
    client: Any,
    raw_uid: str,
    error: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    processed_key: str = DEFAULT_PROCESSED_KEY,
) -> Any:
    """Record a failed (or skipped) scan at ``<processed_key>/<raw_uid>``: no arrays,
    ``status: failed`` and the one-line ``error``.

    Parameters
    ----------
    client : tiled container client
        Catalog root.
    raw_uid : str
        The raw run's uid.
    error : str
        One-line reason.
    metadata : mapping, optional
        Further metadata (timings, method, ``skipped``...).
    processed_key : str
        Key of the container of results.

    Raises
    ------
    TiledRefused
        Tiled refused the write.
    """
    check_uid(raw_uid)
    md = jsonable(dict(metadata or {}))
    md.update(raw_uid=raw_uid, status="failed", error=" ".join(str(error).split()) or "failed")
    parent = processed_container(client, processed_key)
    _remove_previous(parent, raw_uid)
    return _call(f"record the failure of {raw_uid}",
                 lambda: parent.create_container(raw_uid, metadata=md, specs=[RESULT_SPEC]))


def read_result(client: Any, raw_uid: str, *, processed_key: str = DEFAULT_PROCESSED_KEY,
                arrays: bool = True) -> dict[str, Any]:
    """Read a reconstruction back: ``{"metadata": ..., "arrays": {...}, "figures": [...]}``.

    Parameters
    ----------
    client : tiled container client
        Catalog root.
    raw_uid : str
        The raw run's uid.
    processed_key : str
        Key of the container of results.
    arrays : bool
        Also read the arrays (else only the metadata and the list of keys).

    Raises
    ------
    KeyError
        No result for that uid.
    """
    check_uid(raw_uid)
    node = client[processed_key][raw_uid]
    out: dict[str, Any] = {"metadata": dict(node.metadata), "keys": list(node),
                           "specs": [getattr(s, "name", s) for s in node.specs]}
    if arrays:
        out["arrays"] = {k: node[k].read() for k in RESULT_ARRAYS if k in node}
    out["figures"] = list(node["figures"]) if "figures" in node else []
    return out


def stale_writing(client: Any, processed_key: str = DEFAULT_PROCESSED_KEY,
                  older_than: float = STALE_WRITING_S) -> list[str]:
    """Raw uids whose record has read ``writing`` for more than ``older_than`` seconds: its
    writer died mid-write (the previous result is already gone), so the scan needs a re-run.

    Records written before ``writing_since`` was recorded count as stale.
    """
    from tiled.queries import Key

    if processed_key not in client:
        return []
    limit = time.time() - older_than
    return [uid for uid, node in client[processed_key].search(Key("status") == "writing").items()
            if float(node.metadata.get("writing_since") or 0.0) < limit]


def holds_ok_result(client: Any, raw_uid: str,
                    processed_key: str = DEFAULT_PROCESSED_KEY) -> bool:
    """Whether ``<processed_key>/<raw_uid>`` holds an ``ok`` result (False when there is no
    record; an unreachable Tiled raises). A record made without a reconstruction (a skip,
    a worker's crash, a full queue) must never replace one."""
    check_uid(raw_uid)
    try:
        md = client[processed_key][raw_uid].metadata
    except KeyError:
        return False
    return isinstance(md, Mapping) and md.get("status") == "ok"

