"""``BCDICallback``: reconstruct every rocking curve live, off the RunEngine's thread.

Subscribe it *after* ``TiledWriter``: callbacks run in subscription order in the RunEngine
thread, so the raw run is in Tiled when this callback sees ``stop``. A run is a rocking curve
when its start document carries ``bcdi`` metadata (the :meth:`Geometry.to_dict` layout); the
detector image is the one 2D-per-event field of the ``primary`` stream's descriptor unless
configured (``image_field=`` or ``start["bcdi"]["image_field"]``).

At ``stop`` the callback only enqueues the job and returns (microseconds); nothing happens per
event. Jobs run on a :class:`WorkerPool` (one worker per GPU, one on a CPU) or on a Dask cluster
(a ``distributed.Client`` as ``executor``). Every exception is caught and logged
(``make_class_safe``): the callback never raises into the RunEngine. Aborted or failed scans,
and rocking curves without detector data, are recorded as skipped.

Reliability (``state_dir``): results that cannot reach Tiled are spooled there and replayed
every ``replay_interval`` seconds; every queued/running scan is journalled, and a new callback
on the same ``state_dir`` re-runs what a killed process left (a scan that killed its worker
``max_attempts`` times gets a failure record). The queue is bounded (``max_pending``): beyond
it, ``overflow="record"`` (default) writes a failure record ``queue full`` for the scan (re-run
it later with ``bcdi-stream reprocess``), ``overflow="block"`` holds ``stop`` until a slot
frees (the RunEngine waits). Nothing is dropped silently.

After :meth:`BCDICallback.close` the callback reconstructs nothing more (it stays subscribed to
the RunEngine, but is as good as unsubscribed): a rocking curve that ends then gets a
``skipped`` record "the bcdi-stream callback was closed ..." (written by a small daemon thread,
never in ``stop``), a warning in the log and, with a ``state_dir``, a journal entry, so that the
next callback on that directory reconstructs it. Malformed documents (a start whose uid is not a
valid Tiled key, a descriptor or stop with fields of the wrong type) are logged in one line and
never lose a scan that can be recorded.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky.callbacks.core import make_class_safe
from event_model import DocumentRouter

from bcdi_stream.errors import InputError
from bcdi_stream.tiled_io import (
    JobSettings,
    Journal,
    ReplayReport,
    ScanResult,
    Spool,
    check_uid,
    find_image_field,
    holds_ok_result,
    is_unreachable,
    partial_run_reason,
    process_run,
)
from bcdi_stream.tiled_io._frames import _short
from bcdi_stream.tiled_io._job import record_skipped
from callbacks._dask import is_dask_client, tiled_job
from callbacks._executors import WorkerPool, WorkerState, devices_for

__all__ = ["BCDICallback"]

log = logging.getLogger("bcdi_stream.live")

Listener = Callable[[ScanResult], None]


class _ClosedError(RuntimeError):
    """A job submitted once :meth:`BCDICallback.close` had begun (``journalled``: its journal
    entry was written already)."""

    journalled = False


@dataclass
class _Run:
    start: Mapping[str, Any]
    descriptors: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    field: str | None = None
    field_error: str | None = None


@make_class_safe(logger=log)
class BCDICallback(DocumentRouter):
    """Live BCDI reconstruction of rocking curves written to Tiled.

    Parameters
    ----------
    tiled_client : tiled container client
        The catalog ``TiledWriter`` writes to (read frames from, write ``processed/<uid>`` to).
    image_field : str, optional
        Detector image data key; default ``start["bcdi"]["image_field"]`` or the stream's one 2D
        field.
    stream_name : str
        Event stream holding the frames.
    settings : JobSettings, optional
        Job settings (crop shape, method, phasing preset, read timeout...).
    executor : WorkerPool or concurrent.futures.Executor, optional
        Where jobs run (default a :class:`WorkerPool`: one worker per GPU, else one).
    echo : callable(str), optional
        Console output of the per-scan summary line (default ``print``; ``None`` to log only).
    listeners : iterable of callable(ScanResult)
        Called with each finished result (e.g. :class:`LiveStrainFigure`).
    keep_arrays : int
        Keep the arrays of the last ``keep_arrays`` results in memory.
    publish_analysis : bool
        Also write each result as a Bluesky analysis run (linked by ``raw_uid``).
    record_skipped : bool
        Write a record for aborted scans and scans without detector data.
    state_dir : str or Path, optional
        Reliability state: ``spool/`` (results kept while Tiled is unreachable) and
        ``inflight/`` (journal of queued/running scans). Leftovers of a previous process are
        re-run at once (``recover=True``).
    replay_interval : float
        Seconds between replays of the spool (0: only on :meth:`replay`).
    max_pending : int
        Most scans queued or running at once (0: unbounded).
    overflow : {"record", "block"}
        Beyond ``max_pending``: write a ``queue full`` failure record for the scan, or make
        ``stop`` wait for a free slot.
    max_attempts : int
        Starts of one scan (crashes included) before it gets a failure record instead.
    recover : bool
        Re-run the journal's leftovers when the callback is created.
    dask_resources : dict, optional
        Resources each Dask task needs (``{"GPU": 1}``), with a ``distributed.Client``.

    Examples
    --------
    >>> RE.subscribe(TiledWriter(client))              # doctest: +SKIP
    >>> bcdi_callback = BCDICallback(client)             # doctest: +SKIP
    >>> RE.subscribe(bcdi_callback)                      # doctest: +SKIP
    >>> RE(rocking_curve(det, eta))                      # doctest: +SKIP
    >>> bcdi_callback.wait(60)                           # doctest: +SKIP
    >>> bcdi_callback.results[-1].line()                 # doctest: +SKIP
    """

    def __init__(
        self,
        tiled_client: Any,
        *,
        image_field: str | None = None,
        stream_name: str = "primary",
        settings: JobSettings | None = None,
        executor: Any | None = None,
        echo: Callable[[str], Any] | None = print,
        listeners: Iterable[Listener] = (),
        keep_arrays: int = 3,
        publish_analysis: bool = False,
        record_skipped: bool = True,
        state_dir: str | Path | None = None,
        replay_interval: float = 30.0,
        max_pending: int = 64,
        overflow: str = "record",
        max_attempts: int = 2,
        recover: bool = True,
        dask_resources: Mapping[str, float] | None = None,
    ) -> None:
        if tiled_client is None:
            raise ValueError("tiled_client is required")
        if not stream_name:
            raise ValueError("stream_name must be a non-empty string")
        if keep_arrays < 0:
            raise ValueError(f"keep_arrays must be >= 0, got {keep_arrays}")
        if executor is not None and not callable(getattr(executor, "submit", None)):
            raise ValueError("executor must have a submit() method")
        if replay_interval < 0:
            raise ValueError(f"replay_interval must be >= 0, got {replay_interval}")
        if max_pending < 0:
            raise ValueError(f"max_pending must be >= 0, got {max_pending}")
        if overflow not in ("record", "block"):
            raise ValueError(f"overflow must be 'record' or 'block', got {overflow!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        super().__init__()
        self.client = tiled_client
        self.image_field = image_field
        self.stream_name = stream_name
        self.settings = settings or JobSettings()
        self._own_executor = executor is None
        # the pool's devices follow settings.device (a worker's device overrides it per job)
        self.executor = (executor if executor is not None
                         else WorkerPool(devices=devices_for(self.settings.device)))
        self.echo = echo
        self.listeners: list[Listener] = list(listeners)
        self.keep_arrays = keep_arrays
        self.publish_analysis = publish_analysis
        self.record_skipped = record_skipped
        self._runs: dict[str, _Run] = {}
        self._desc_run: dict[str, str] = {}
        self._results: collections.OrderedDict[str, ScanResult] = collections.OrderedDict()
        self._futures: dict[str, Future] = {}
        #: uids whose job is being journalled and queued (its future not registered yet)
        self._starting: set[str] = set()
        self._pending = 0
        self._cond = threading.Condition()
        #: Seconds spent in each ``stop`` call (the time this callback adds to the RunEngine),
        #: the latest 10,000.
        self.stop_overheads: collections.deque[float] = collections.deque(maxlen=10_000)
        self.max_pending = max_pending
        self.overflow = overflow
        self.max_attempts = max_attempts
        self.dask_resources = dict(dask_resources) if dask_resources else None
        self._dask = is_dask_client(self.executor)
        self._queued = 0
        self._side: ThreadPoolExecutor | None = None
        self.spool: Spool | None = None
        self.journal: Journal | None = None
        self.replay_interval = replay_interval
        self._closing = threading.Event()
        #: set at the start of close(): no job is started after it
        self._closed = False
        self._late_jobs: queue.SimpleQueue[tuple[Future, Callable[..., ScanResult], tuple]] = (
            queue.SimpleQueue())
        self._late_thread: threading.Thread | None = None
        # set by request_shutdown() (from a signal handler: a plain flag, no lock)
        self._shutdown_requested = False
        self._replayer: threading.Thread | None = None
        if state_dir is not None:
            root = Path(state_dir).expanduser()
            self.spool = Spool(root / "spool")
            self.journal = Journal(root / "inflight")
            if recover:
                self.recover()
            if replay_interval > 0:
                self._replayer = threading.Thread(target=self._replay_loop, daemon=True,
                                                  name="bcdi-spool-replay")
                self._replayer.start()

    # ---------------------------------------------------------------- documents
    def start(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        if not isinstance(doc.get("bcdi"), Mapping):
            return doc
        uid = doc.get("uid")
        try:
            check_uid(uid, "the start document's uid")
        except ValueError as exc:  # nothing can be recorded under it (not a Tiled key)
            log.warning("bcdi run ignored: %s", _short(exc))
            return doc
        self._runs[uid] = _Run(start=doc)
        return doc

    def descriptor(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        run_start = doc.get("run_start")
        run = self._runs.get(run_start) if isinstance(run_start, str) else None
        if run is None:
            return doc
        desc_uid = doc.get("uid")
        if isinstance(desc_uid, str):
            self._desc_run[desc_uid] = run_start
        if doc.get("name") != self.stream_name:
            return doc
        run.descriptors[str(desc_uid)] = doc
        try:
            data_keys = doc.get("data_keys") or {}
            if not isinstance(data_keys, Mapping):
                raise InputError(f"data_keys must be a mapping, got {type(data_keys).__name__}")
            wanted = self.image_field or run.start["bcdi"].get("image_field")
            if wanted:
                if isinstance(wanted, str) and wanted in data_keys:
                    run.field = wanted
                else:
                    run.field_error = f"no field '{wanted}' in the '{self.stream_name}' stream"
            else:
                run.field = find_image_field(data_keys)
        except Exception as exc:  # a malformed descriptor: the scan is recorded with why
            run.field = None
            run.field_error = (str(exc) if isinstance(exc, InputError)
                               else f"malformed '{self.stream_name}' descriptor: {_short(exc)}")
            if not isinstance(exc, InputError):
                log.warning("scan %s: %s", run_start, run.field_error)
        return doc

    def event(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        return doc  # nothing per event: the frames are read from Tiled after stop

    def event_page(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        return doc

    def stop(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        t0 = time.perf_counter()
        uid = doc.get("run_start")
        if not isinstance(uid, str):
            return doc  # no run of ours (those have a valid uid, checked at start)
        run = self._runs.pop(uid, None)
        for d in [d for d, r in self._desc_run.items() if r == uid]:
            del self._desc_run[d]
        if run is None:
            return doc
        try:
            stop_time, n_events, skip = self._examine_stop(run, doc)
        except Exception as exc:  # a malformed stop document: still a record, never a loss
            stop_time, n_events = time.time(), None
            skip = f"malformed stop document: {_short(exc)}"
            log.warning("scan %s: %s", uid, skip)
        if self._closed:
            self._after_close(uid, run, skip, n_events, stop_time)
        else:
            try:
                if skip is not None:
                    self._submit(uid, self._skip_job, uid, skip, run.start, stop_time,
                                 self.spool)
                else:
                    self._submit_job(uid, run.field, n_events, stop_time)
            except _ClosedError as exc:  # close() began meanwhile
                self._after_close(uid, run, skip, n_events, stop_time,
                                  journalled=exc.journalled)
        self.stop_overheads.append(time.perf_counter() - t0)
        return doc

    def _examine_stop(self, run: _Run, doc: Mapping[str, Any]
                      ) -> tuple[float, int | None, str | None]:
        """``(stop_time, n_events, skip reason or None)`` of a stop document; fields of the
        wrong type are taken as absent (a stop from the network may be malformed)."""
        stop_time = doc.get("time")
        if isinstance(stop_time, bool) or not isinstance(stop_time, (int, float)) \
                or not stop_time > 0:
            stop_time = time.time()
        status = doc.get("exit_status", "success")
        num_events = doc.get("num_events")
        n_events = (num_events.get(self.stream_name)
                    if isinstance(num_events, Mapping) else None)
        if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 0:
            n_events = None
        # aborted, or stopped before its planned frames (the rule reprocessing applies too),
        # unless the settings ask for partial curves
        partial = (None if self.settings.partial_runs
                   else partial_run_reason(run.start, doc, self.stream_name))
        skip = None
        if status != "success" and partial is not None:
            skip = partial
        elif not run.descriptors:
            skip = f"no '{self.stream_name}' stream (no detector data)"
        elif run.field is None:
            skip = run.field_error or "no detector image field"
        elif n_events == 0:
            skip = "no frames recorded"
        elif partial is not None:
            skip = partial
        return float(stop_time), n_events, skip

    def _after_close(self, uid: str, run: _Run, skip: str | None, n_events: int | None,
                     stop_time: float, *, journalled: bool = False) -> None:
        """A rocking curve that ended after :meth:`close`: not reconstructed (the callback
        is closed), never silently lost. Its record (the skip reason, or "the callback was
        closed") is written by a daemon thread; a scan to reconstruct is journalled first
        (the next start on the state directory re-runs it) and logged."""
        if skip is None:
            if self.journal is not None and not journalled:
                try:
                    self.journal.begin(uid, image_field=run.field, stream=self.stream_name,
                                       n_events=n_events, stop_time=stop_time)
                    journalled = True
                except OSError as exc:
                    log.error("journal: could not record scan %s (%s)", uid, _short(exc))
            then = (f"journalled in {self.journal.directory.parent}, re-run when bcdi-stream "
                    f"starts again on that state directory" if journalled
                    else f"run `bcdi-stream reprocess {uid}`")
            skip = (f"the bcdi-stream callback was closed before this scan ended; not "
                    f"reconstructed, {then}")
            log.warning("scan %s: %s", uid, skip)
            # the journal re-runs it: a spooled record could be replayed over its result
            spool = None
        else:
            spool = self.spool
        self._late(uid, self._skip_job, uid, skip, run.start, stop_time, spool)

    def _late(self, uid: str, fn: Callable[..., ScanResult], *args: Any) -> Future:
        """Run a record job after close() on a daemon thread (the pools are shut down; a
        daemon never holds up the process's exit)."""
        fut: Future = Future()
        with self._cond:
            self._pending += 1
        fut.add_done_callback(lambda f, u=uid: self._done(u, f))
        self._late_jobs.put((fut, fn, args))
        with self._cond:
            if self._late_thread is None:
                self._late_thread = threading.Thread(target=self._late_loop, daemon=True,
                                                     name="bcdi-late-records")
                self._late_thread.start()
        return fut

    def _late_loop(self) -> None:
        while True:
            fut, fn, args = self._late_jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, worker=None))
            except BaseException as exc:  # _done logs it and records the failure
                fut.set_exception(exc)

    # ---------------------------------------------------------------- jobs
    def submit(self, raw_uid: str, *, image_field: str | None = None) -> Future:
        """Reconstruct a run that is already in Tiled (re-processing, or a missed scan).

        A scan whose job is already queued or running is not started a second time: the
        submission joins it (the job's future is returned, nothing new is journalled)."""
        check_uid(raw_uid)
        if self._closed:
            raise RuntimeError(f"the BCDICallback is closed: scan {raw_uid} not submitted")
        return self._submit_job(raw_uid, image_field or self.image_field, None, None)

    def _submit_job(self, uid: str, image_field: str | None, n_events: int | None,
                    stop_time: float | None) -> Future:
        with self._cond:
            warned = False
            while True:
                if self._closed:
                    raise _ClosedError("the callback is closed")
                # one job per scan at a time: two would race on processed/<uid> and share
                # one journal entry; a re-submit (reprocess, spool re-run, a repeated stop)
                # of a scan in progress joins it
                if uid in self._starting:  # another thread is journalling/queueing it
                    self._cond.wait(0.05)
                    continue
                running = self._futures.get(uid)
                if running is not None and not running.done():
                    log.info("scan %s is already queued or running: this submission joins "
                             "it", uid)
                    return running
                if (not self.max_pending or self._queued < self.max_pending
                        or self._shutdown_requested):
                    # shutting down: the scan is journalled and queued all the same (one
                    # beyond max_pending); unfinished after the drain, re-run at next start
                    break
                if self.overflow == "record":
                    waiting = self._queued
                    return self._submit(uid, self._overflow_job, uid, waiting, stop_time,
                                        side=True)
                if not warned:
                    log.warning("queue full (%d scans): stop of %s waits", self._queued, uid)
                    warned = True
                # short waits: request_shutdown() (a signal handler) cannot notify safely
                self._cond.wait(0.2)
            # counted as queued and pending from here (wait() must not see a gap), and
            # reserved against a second job for the uid until its future is registered
            self._queued += 1
            self._pending += 1
            self._starting.add(uid)
        attempts = 0
        try:
            if self.journal is not None:
                try:
                    attempts = self.journal.begin(uid, image_field=image_field,
                                                  stream=self.stream_name, n_events=n_events,
                                                  stop_time=stop_time)
                except OSError as exc:  # a full or read-only disk: reconstruct all the same
                    log.error("journal: could not record scan %s (%s); processing it "
                              "unjournalled (a crash now would not re-run it)", uid,
                              _short(exc))
            if attempts > self.max_attempts:
                return self._submit(uid, self._crashed_job, uid, attempts - 1, stop_time,
                                    side=True, counted=True, reserved=True)
            if self._dask:
                return self._submit_dask(uid, image_field, n_events, stop_time)
            return self._submit(uid, self._job, uid, image_field, n_events, stop_time,
                                counted=True, reserved=True)
        except BaseException as exc:
            if isinstance(exc, _ClosedError):
                exc.journalled = attempts > 0
            with self._cond:
                self._queued -= 1
                self._pending -= 1
                self._cond.notify_all()
            raise
        finally:
            with self._cond:
                self._starting.discard(uid)
                self._cond.notify_all()

    def _submit_dask(self, uid: str, image_field: str | None, n_events: int | None,
                     stop_time: float | None) -> Future:
        """Called by :meth:`_submit_job`, which counted the job as pending (and undoes it
        when this raises)."""
        uri = str(self.client.context.api_uri).rstrip("/")
        spool_dir = str(self.spool.directory) if self.spool is not None else None
        fut = self.executor.submit(
            tiled_job, uri, uid, self.settings.model_dump_json(), image_field,
            self.stream_name, n_events, stop_time, spool_dir, pure=False,
            key=f"bcdi-{uid}-{time.time_ns()}", resources=self.dask_resources,
        )
        with self._cond:
            self._futures[uid] = fut
        fut.add_done_callback(lambda f, u=uid: self._done(u, f, counted=True))
        return fut

    def _submit(self, uid: str, fn: Callable[..., ScanResult], *args: Any,
                side: bool = False, counted: bool = False, reserved: bool = False) -> Future:
        """``reserved``: the caller already counted the job as pending (and undoes that if
        this raises)."""
        if not reserved:
            with self._cond:
                self._pending += 1
        try:
            if side or self._dask:  # records only: a small local thread
                if self._side is None:
                    self._side = ThreadPoolExecutor(1, thread_name_prefix="bcdi-records")
                fut = self._side.submit(fn, *args, worker=None)
            elif isinstance(self.executor, WorkerPool):
                fut = self.executor.submit(fn, *args)
            else:
                fut = self.executor.submit(fn, *args, worker=None)
        except Exception as exc:
            if not reserved:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()
            if self._closed and isinstance(exc, RuntimeError):  # the pool is shut down
                raise _ClosedError("the callback is closed") from None
            raise
        with self._cond:
            self._futures[uid] = fut
        fut.add_done_callback(lambda f, u=uid, c=counted: self._done(u, f, counted=c))
        return fut

    def _job(self, uid: str, image_field: str | None, n_events: int | None,
             stop_time: float | None, *, worker: WorkerState | None = None) -> ScanResult:
        model = None
        if worker is not None and self.settings.method != "conventional":
            from bcdi_stream.tiled_io._job import resolve_method

            if resolve_method(self.settings.method) != "conventional":
                try:
                    model = worker.model()
                except Exception as exc:  # a broken model install: a failure record, not a crash
                    log.exception("scan %s: the phase model could not be loaded", uid)
                    result = self._internal_failure(
                        uid, f"model: could not load the phase model: {_short(exc)}", exc,
                        stop_time)
                    self._publish(result)
                    return result
        result = process_run(
            self.client, uid, settings=self.settings, image_field=image_field,
            stream=self.stream_name, expected_frames=n_events, stop_time=stop_time,
            device=worker.device if worker is not None else None, model=model,
            keep_arrays=self.keep_arrays > 0, spool=self.spool,
        )
        self._publish(result)
        return result

    def _has_ok_result(self, uid: str) -> bool:
        """True when ``processed/<uid>`` already holds an ``ok`` result: a crash, skip or
        overflow record must never replace it (a stale journal entry, a repeated or forged
        document)."""
        try:
            return holds_ok_result(self.client, uid, self.settings.processed_key)
        except Exception:  # Tiled unreachable: the record is then spooled
            return False

    def _kept_ok(self, uid: str, what: str) -> ScanResult:
        path = f"{self.settings.processed_key}/{uid}"
        log.warning("scan %s: %s; not recorded: %s already holds an ok result", uid, what, path)
        return ScanResult(raw_uid=uid, status="skipped", path=path,
                          error=f"{what}; kept the ok result already there")

    def _overflow_job(self, uid: str, waiting: int, stop_time: float | None,
                      *, worker: WorkerState | None = None) -> ScanResult:
        error = (f"queue full: {waiting} scans waiting (max_pending={self.max_pending}); not "
                 f"reconstructed, run `bcdi-stream reprocess {uid}`")
        if self._has_ok_result(uid):
            return self._kept_ok(uid, "queue full")
        return self._record_failure(uid, error, {"overflow": True}, stop_time)

    def _crashed_job(self, uid: str, crashes: int, stop_time: float | None,
                     *, worker: WorkerState | None = None) -> ScanResult:
        error = (f"internal: the worker stopped {crashes} times while processing this scan; "
                 f"not retried again (run `bcdi-stream reprocess {uid}`)")
        if self._has_ok_result(uid):  # its result was written after all: a stale journal entry
            return self._kept_ok(uid, f"journal: {crashes} earlier starts")
        return self._record_failure(uid, error, {"crashes": crashes}, None)

    def _internal_failure(self, uid: str, error: str, exc: BaseException | None,
                          stop_time: float | None) -> ScanResult:
        """A failure record for a job that ended outside :func:`process_run`'s guard (spooled,
        as "re-run on replay" when Tiled was unreachable)."""
        return self._record_failure(uid, error, {"internal": True}, stop_time,
                                    rerun=is_unreachable(exc))

    def _record_failure(self, uid: str, error: str, flags: dict[str, Any],
                        stop_time: float | None, *, rerun: bool = False) -> ScanResult:
        """A failure record made without a reconstruction (``flags`` say why), written or
        spooled; with ``stop_time``, the result carries the scan's latency."""
        from bcdi_stream.tiled_io._job import _failure

        result = ScanResult(raw_uid=uid, status="failed")
        md = {**flags, "method": None, "model": {"name": None, "hash": None}}
        _failure(self.client, uid, error, md, self.settings.processed_key, result, self.spool,
                 rerun)
        if stop_time is not None:
            result.timings["latency"] = round(time.time() - stop_time, 4)
        return result

    def _skip_job(self, uid: str, reason: str, start: Mapping[str, Any], stop_time: float,
                  spool: Spool | None, *, worker: WorkerState | None = None) -> ScanResult:
        """``spool``: where a record that cannot reach Tiled goes (None: nowhere)."""
        if self.record_skipped and self._has_ok_result(uid):
            return self._kept_ok(uid, f"skipped: {reason}")
        if self.record_skipped:
            result = record_skipped(self.client, uid, reason, start=start, stop_time=stop_time,
                                    processed_key=self.settings.processed_key,
                                    spool=spool)
        else:
            result = ScanResult(raw_uid=uid, status="skipped", error=reason)
        self._publish(result)
        return result

    def _publish(self, result: ScanResult) -> None:
        if not self.publish_analysis:
            return
        try:
            from callbacks._publish import publish_analysis_run

            result.summary["analysis_uid"] = publish_analysis_run(self.client, result)
        except Exception:
            log.exception("could not publish the analysis run of %s", result.raw_uid)

    def _done(self, uid: str, fut: Future, counted: bool = False) -> None:
        # a cancelled job (close(cancel=True)) or one whose failure could not be recorded
        # keeps its journal entry: the next start re-runs it
        keep_journal = False
        try:
            try:
                if fut.cancelled():
                    raise CancelledError
                result = fut.result()
                if self._dask and counted:
                    self._publish(result)
            except CancelledError:
                keep_journal = True
                again = " (re-run at the next start)" if self.journal is not None else ""
                result = ScanResult(raw_uid=uid, status="failed",
                                    error="cancelled: the service shut down before this scan"
                                          + again)
            except Exception as exc:  # the job raised (a bug, Tiled down at a Dask task's start)
                if is_unreachable(exc):
                    log.warning("job for scan %s: Tiled unreachable (%s)", uid, _short(exc))
                else:
                    log.exception("job for scan %s crashed", uid)
                error = f"internal: {_short(exc)}"
                if counted:  # a scan's job: its failure is recorded (or spooled) like any other
                    result = self._internal_failure(uid, error, exc, None)
                    keep_journal = result.path is None
                else:
                    result = ScanResult(raw_uid=uid, status="failed", error=error)
            with self._cond:
                self._results[uid] = result
                self._results.move_to_end(uid)
                kept = [r for r in self._results.values() if r.arrays is not None]
                for old in kept[: max(len(kept) - self.keep_arrays, 0)]:
                    old.arrays = None
                    old.figure = None
            line = result.line()
            (log.info if result.ok else log.warning)(line)
            if self.echo is not None:
                try:
                    self.echo(line)
                except Exception:
                    log.exception("echo failed")
            for listener in list(self.listeners):
                try:
                    listener(result)
                except Exception:
                    log.exception("listener %r failed on scan %s", listener, uid)
        finally:
            # the journal holds the scans whose result is NOT written: a job that ends after
            # close() (a shutdown's drain) is ended all the same, else it would re-run
            # a newer job of the same scan (started once this one was done, its listeners
            # still running) owns the entry now: checked and ended under the lock, so such a
            # job is either seen here or journals after the removal
            with self._cond:
                newer = (self._futures.get(uid) not in (None, fut)
                         or uid in self._starting)
                if counted and not keep_journal and self.journal is not None and not newer:
                    try:
                        self.journal.end(uid)
                    except Exception:
                        log.exception("journal: could not end %s", uid)
                self._pending -= 1
                if counted:
                    self._queued -= 1
                if self._futures.get(uid) is fut:  # not a newer job of the same scan
                    del self._futures[uid]
                self._cond.notify_all()

    # ---------------------------------------------------------------- reliability
    def recover(self) -> list[str]:
        """Re-run the scans a previous process left queued or running (its journal).

        Returns
        -------
        list of str
            The uids resubmitted (a scan over ``max_attempts`` gets a failure record).
        """
        if self.journal is None:
            return []
        uids = []
        for doc in self.journal.leftover():
            uid = doc["raw_uid"]
            log.warning("scan %s was left unfinished by a previous worker (start %s): "
                        "re-running", uid, doc.get("attempts"))
            self._submit_job(uid, doc.get("image_field"), doc.get("n_events"),
                             doc.get("stop_time"))
            uids.append(uid)
        return uids

    def replay(self) -> ReplayReport | None:
        """Write the spooled results to Tiled now (re-run scans whose frames could not be
        read); ``None`` without a ``state_dir``."""
        if self.spool is None:
            return None
        report = self.spool.replay(self.client, rerun=lambda e: self.submit(e.raw_uid))
        if report.written or report.rerun:
            msg = (f"spool: {len(report.written)} written to Tiled, {len(report.rerun)} "
                   f"re-run, {report.remaining} left")
            log.info(msg)
            if self.echo is not None:
                try:
                    self.echo(msg)
                except Exception:
                    log.exception("echo failed")
        return report

    def _replay_loop(self) -> None:
        while not self._closing.wait(self.replay_interval):
            if self._closed:  # close() is draining: a re-run could not be submitted now
                break
            if self.spool is not None and len(self.spool):
                try:
                    self.replay()
                except Exception:
                    log.exception("spool replay failed")

    # ---------------------------------------------------------------- inspection
    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished (results recorded, feedback given).

        Parameters
        ----------
        timeout : float, optional
            Seconds; ``None`` waits for ever.

        Returns
        -------
        bool
            True when nothing is pending any more, False on timeout.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished."""
        with self._cond:
            return self._pending

    @property
    def results(self) -> list[ScanResult]:
        """Finished results, oldest first."""
        with self._cond:
            return list(self._results.values())

    def result(self, raw_uid: str) -> ScanResult:
        """The finished result of one scan (``KeyError`` if none yet)."""
        with self._cond:
            return self._results[raw_uid]

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(result)`` for every finished scan (from a worker thread)."""
        if not callable(listener):
            raise ValueError("listener must be callable")
        self.listeners.append(listener)

    def request_shutdown(self) -> None:
        """Ask a ``stop`` waiting for a free slot (``overflow="block"``) to stop waiting: its
        scan is journalled and queued beyond ``max_pending`` (re-run at the next start if the
        drain does not finish it). Safe in a signal handler (only sets a flag)."""
        self._shutdown_requested = True

    def close(self, wait: bool = True, *, cancel: bool = False) -> None:
        """Shut the workers down (the callback's own pool only).

        Parameters
        ----------
        wait : bool
            Block until the running (and, unless ``cancel``, the queued) jobs are done.
        cancel : bool
            Drop the queued jobs (they end as ``failed``, "cancelled").

        Called from one of the pools' own threads (a listener), it cannot wait for that
        thread: the pools are then shut down without waiting.

        Once closed, the callback starts no job (still subscribed, it is as good as
        unsubscribed): a rocking curve that ends afterwards is logged, journalled when there is
        a ``state_dir`` (re-run by the next callback on it) and recorded as ``skipped`` ("the
        bcdi-stream callback was closed ..."); :meth:`submit` raises ``RuntimeError``.
        """
        # from here no job starts: a scan ending now gets a record instead (see stop)
        self._closed = True
        with self._cond:
            self._cond.notify_all()  # a stop waiting for a slot (overflow="block")
        shutdowns = []
        if self._own_executor:
            shutdowns.append(lambda w: self.executor.shutdown(wait=w, cancel=cancel))
        if self._side is not None:
            side = self._side
            shutdowns.append(lambda w: side.shutdown(wait=w, cancel_futures=cancel))
        try:
            for shutdown in shutdowns:
                try:
                    shutdown(wait)
                except RuntimeError:  # "cannot join current thread": a listener closed us
                    shutdown(False)
        finally:
            self._closing.set()

    def __repr__(self) -> str:
        return (f"<BCDICallback {len(self._results)} results, {self.pending} pending, "
                f"stream {self.stream_name!r}>")
