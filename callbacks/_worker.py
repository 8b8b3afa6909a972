"""``bcdi-stream worker``: the live job outside the RunEngine's process.

The RunEngine publishes its documents to a bluesky 0MQ proxy (``bluesky-0MQ-proxy``) with
:func:`make_publisher`; the worker subscribes to the proxy's output with a
``bluesky.callbacks.zmq.RemoteDispatcher`` and feeds a :class:`~callbacks.BCDICallback` that
runs the same job as in-process (frames read from Tiled, ``processed/<uid>`` written back), on
its own workers or a Dask cluster.

Documents travel as JSON (:func:`json_serializer`; array payloads of events are replaced by
their shape: the worker reads frames from Tiled), not pickle: a pickle from the network runs
code in the worker. 0MQ PUB/SUB does not keep messages for an absent subscriber: scans that end
while no worker runs are caught up at start (``catch_up`` hours: runs with ``bcdi`` metadata and
no ``processed/<uid>``), and scans a killed worker was processing are re-run from its journal.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bcdi_stream.errors import BCDIError
from bcdi_stream.tiled_io import stale_writing, try_lock_file
from callbacks._callback import BCDICallback

__all__ = ["WorkerLockedError", "find_unprocessed", "json_deserializer", "json_serializer",
           "make_publisher", "run_worker"]

log = logging.getLogger("bcdi_stream.live")


def _default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        if obj.size <= 16:
            return obj.tolist()
        return {"__ndarray__": {"shape": list(obj.shape), "dtype": str(obj.dtype)}}
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


def json_serializer(doc: Any) -> bytes:
    """A bluesky document as JSON bytes (large arrays replaced by their shape and dtype)."""
    return json.dumps(doc, default=_default).encode()


def json_deserializer(data: bytes) -> Any:
    """Inverse of :func:`json_serializer`."""
    return json.loads(data)


def make_publisher(address: str | tuple[str, int], *, prefix: bytes = b"",
                   linger_ms: int = 2000) -> Any:
    """A ``bluesky.callbacks.zmq.Publisher`` to the proxy's input, speaking JSON.

    Subscribe it *after* ``TiledWriter`` (``RE.subscribe(make_publisher("proxy:5577"))``): the raw
    run is then in Tiled when the worker receives ``stop``.

    Parameters
    ----------
    address : str or (host, port)
        The proxy's input address.
    prefix : bytes
        bluesky's topic prefix (no spaces).
    linger_ms : int
        How long ``close()`` may wait for queued documents to leave (0MQ ``LINGER``; the 0MQ
        default, infinite, would hang process exit when the proxy is gone).

    Returns
    -------
    bluesky.callbacks.zmq.Publisher
        Call ``close()`` when done with it.
    """
    import zmq
    from bluesky.callbacks.zmq import Publisher

    if linger_ms < 0:
        raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
    publisher = Publisher(address, prefix=prefix, serializer=json_serializer)
    # 0MQ's default linger is infinite: documents still queued for a proxy that has gone away
    # would block ``close()`` -- and the garbage collection of an unclosed publisher -- forever,
    # hanging the RunEngine's process at exit. Bound it.
    socket = getattr(publisher, "_socket", None)
    if socket is not None:
        socket.setsockopt(zmq.LINGER, int(linger_ms))
    return publisher


def find_unprocessed(client: Any, since_hours: float, *, processed_key: str = "processed",
                     limit: int = 1000) -> list[str]:
    """uids of finished runs with ``bcdi`` metadata from the last ``since_hours`` hours that
    have no ``processed/<uid>`` yet, oldest first.

    Parameters
    ----------
    client : tiled container client
        Catalog root.
    since_hours : float
        How far back to look (> 0).
    processed_key : str
        Key of the container of results.
    limit : int
        Most runs examined.
    """
    if not since_hours > 0:
        raise ValueError(f"since_hours must be > 0, got {since_hours}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    from tiled.queries import Key

    since = time.time() - 3600.0 * since_hours
    try:
        done = set(client[processed_key]) if processed_key in client else set()
        done -= set(stale_writing(client, processed_key))  # their writer died mid-write
    except KeyError:
        done = set()
    found = []
    runs = client.search(Key("start.time") >= since)
    for n, (uid, node) in enumerate(runs.items()):
        if n >= limit:
            break
        if uid == processed_key or uid in done:
            continue
        md = node.metadata
        if isinstance(md.get("start"), dict) and isinstance(md["start"].get("bcdi"), dict) \
                and md.get("stop"):
            found.append((md["start"].get("time") or 0.0, uid))
    return [u for _, u in sorted(found)]


class WorkerLockedError(BCDIError):
    """Another worker holds the state directory (one worker per state directory and proxy)."""


LOCK_NAME = "worker.lock"


def lock_state_dir(state_dir: str | Path) -> int:
    """Take the exclusive lock of a worker's state directory (``<state_dir>/worker.lock``,
    ``flock``, non-blocking); returns its file descriptor (closing it releases the lock; so does
    the process's exit, a crash included).

    Raises
    ------
    WorkerLockedError
        Another process holds it.
    """
    root = Path(state_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    try:
        fd = try_lock_file(path)
    except OSError:  # flock refused outright (a filesystem without locks): taken as held
        fd = None
    if fd is None:
        try:
            holder = path.read_text(errors="replace")[:32].strip()
        except OSError:
            holder = ""
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise WorkerLockedError(
            f"another worker{who} is running on state directory {root}: run one worker per "
            f"0MQ proxy (scale out with Dask)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def run_worker(
    address: str | tuple[str, int],
    client: Any,
    *,
    prefix: bytes = b"",
    deserializer: Callable[[bytes], Any] = json_deserializer,
    drain_timeout: float = 60.0,
    catch_up: float = 0.0,
    echo: Callable[[str], Any] | None = print,
    **callback_kwargs: Any,
) -> BCDICallback:
    """Receive documents from a 0MQ proxy and reconstruct every finished rocking curve, until
    SIGTERM/SIGINT; then drain (at most ``drain_timeout`` s) and return the callback.

    Parameters
    ----------
    address : str or (host, port)
        The proxy's *output* address (``host:5578``).
    client : tiled container client
        Catalog the RunEngine's ``TiledWriter`` writes to (a key with write access).
    prefix : bytes
        Only documents published with this prefix.
    deserializer : callable
        Inverse of the publisher's serializer (default JSON; ``pickle.loads`` only on a trusted
        network).
    drain_timeout : float
        Seconds to let queued jobs finish at shutdown (the journal re-runs the rest next time).
    catch_up : float
        At start, also reconstruct finished BCDI runs of the last ``catch_up`` hours that have
        no result (0: off).
    echo : callable(str), optional
        Where the per-scan lines go.
    **callback_kwargs
        Passed to :class:`~callbacks.BCDICallback` (``settings``, ``executor``, ``state_dir``,
        ``max_pending``...).

    With a ``state_dir``, the worker holds its exclusive lock (:func:`lock_state_dir`) and
    raises :class:`WorkerLockedError` when another worker has it. Jobs still running when the
    drain ends keep their journal entries (re-run at the next start) and their threads: the
    caller decides whether to wait for them (``cb.pending``); ``bcdi-stream worker`` exits at
    once.
    """
    if drain_timeout < 0:
        raise ValueError(f"drain_timeout must be >= 0, got {drain_timeout}")
    if catch_up < 0:
        raise ValueError(f"catch_up must be >= 0, got {catch_up}")
    state = callback_kwargs.get("state_dir")
    # two workers on one proxy would both reconstruct every scan and race on processed/<uid>;
    # on one state directory they would also re-run each other's journal
    lock = lock_state_dir(state) if state is not None else None
    try:
        return _run(address, client, prefix, deserializer, drain_timeout, catch_up, echo,
                    callback_kwargs)
    finally:
        if lock is not None:
            os.close(lock)


def _run(address: str | tuple[str, int], client: Any, prefix: bytes,
         deserializer: Callable[[bytes], Any], drain_timeout: float, catch_up: float,
         echo: Callable[[str], Any] | None, callback_kwargs: dict[str, Any]) -> BCDICallback:
    from bluesky.callbacks.zmq import RemoteDispatcher

    cb = BCDICallback(client, echo=echo, **callback_kwargs)
    if catch_up:
        try:
            missing = [u for u in find_unprocessed(
                client, catch_up, processed_key=cb.settings.processed_key)
                if u not in cb._futures]
        except Exception:
            log.exception("catch-up: could not list the unprocessed scans")
            missing = []
        for uid in missing:
            cb.submit(uid)
        if echo is not None:
            echo(f"catch-up: {len(missing)} finished scans without a result resubmitted")
    dispatcher = RemoteDispatcher(address, prefix=prefix, deserializer=deserializer)
    dispatcher.subscribe(cb)
    received: list[str] = []
    loop = dispatcher.loop  # created now: a signal before start() is handled at its start

    def _cancel() -> None:  # on the dispatcher's loop
        task = getattr(dispatcher, "_task", None)
        if task is not None:
            task.cancel()
        else:
            loop.stop()

    def _stop(signum: int, frame: Any) -> None:
        # Never raise here: the signal lands anywhere in the main thread -- in the callback's
        # stop() (whose exceptions bluesky's make_class_safe swallows), mid-journal... Flag the
        # callback (a stop waiting for a slot journals its scan and returns) and end the
        # dispatcher's loop from inside it.
        received.append(signal.Signals(signum).name)
        cb.request_shutdown()
        loop.call_soon_threadsafe(_cancel)

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
    state = callback_kwargs.get("state_dir")
    try:
        if echo is not None:
            echo(f"worker listening on {where}; state in {Path(state) if state else 'memory'}")
        dispatcher.start()
    except BaseException:
        if not received:
            raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if received:
            log.info("worker: %s received, draining (at most %g s)", received[0],
                     drain_timeout)
        if not dispatcher.closed:
            dispatcher.stop()
        cb.request_shutdown()
        drained = cb.wait(drain_timeout)
        if not drained:
            log.warning("worker: %d jobs unfinished after the %g s drain: left in the journal "
                        "(re-run at the next start)", cb.pending, drain_timeout)
        cb.close(wait=drained, cancel=not drained)
    if echo is not None:
        echo(f"worker stopped: {len(cb.results)} results")
    return cb
