"""Keep results when Tiled is unreachable, and write them once it is back.

A :class:`Spool` is a local directory. When a result is ready but Tiled does not answer
(connection refused, timeout, 5xx from a proxy), the live job stores it there instead:

- ``<uid>.cxi``: HDF5 in the CXI layout (``/entry_1/image_1/data`` = complex64 object
  ``amplitude·e^{i·phase}``, ``/entry_1/image_1/mask`` = support) plus the exact result arrays
  under ``/bcdi_stream/arrays`` and the figures under ``/bcdi_stream/figures``;
- ``<uid>.json``: the metadata, the target ``processed_key``, why it was spooled. Written last and
  atomically (temporary file + rename): an entry without its JSON is incomplete and ignored.

:meth:`Spool.replay` writes every complete entry to Tiled (the writes replace any partial
``processed/<uid>``: idempotent) and deletes it once written. A failure record is spooled as JSON
only; one marked ``rerun`` (the frames could not be read because Tiled was down) is handed to a
``rerun`` callable on replay instead, so the scan is reconstructed rather than recorded as failed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bcdi_stream.tiled_io._frames import TiledRefused, _short
from bcdi_stream.tiled_io._results import (
    DEFAULT_PROCESSED_KEY,
    RESULT_ARRAYS,
    check_uid,
    holds_ok_result,
    jsonable,
    write_failure,
    write_result,
)

__all__ = ["ReplayReport", "Spool", "SpoolEntry", "check_uid", "is_unreachable",
           "try_lock_file"]

log = logging.getLogger("bcdi_stream.live")

def is_unreachable(exc: BaseException | None) -> bool:
    """Whether an exception means "Tiled is not answering" (worth keeping and retrying).

    Connection errors, timeouts and protocol errors of httpx, OS-level socket errors, and
    502/503/504 answers (a proxy in front of a stopped server) count; refusals (4xx) and
    everything else do not. Follows ``__cause__`` chains (a read ``TimeoutError`` raised from
    a connection error counts).
    """
    seen = 0
    while exc is not None and seen < 8:
        seen += 1
        try:
            import httpx

            if isinstance(exc, httpx.TransportError):
                return True
        except ImportError:  # pragma: no cover - httpx is a dependency
            pass
        if isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, TimeoutError):
            return True
        code = getattr(getattr(exc, "response", None), "status_code", None)
        if code in (502, 503, 504):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass
class SpoolEntry:
    """One spooled result or failure record.

    Attributes
    ----------
    raw_uid : str
    kind : {"result", "failure"}
    processed_key : str
    metadata : dict
    error : str or None
        The failure's reason (failure records).
    rerun : bool
        Re-run the job on replay instead of writing the failure record.
    reason : str
        Why it was spooled.
    spooled_at : float
        Epoch seconds.
    path : Path
        The JSON file.
    """

    raw_uid: str
    kind: str
    processed_key: str
    metadata: dict[str, Any]
    error: str | None
    rerun: bool
    reason: str
    spooled_at: float
    path: Path

    @property
    def data_path(self) -> Path:
        """The HDF5 file of a spooled result."""
        return self.path.with_suffix(".cxi")


@dataclass
class ReplayReport:
    """What one :meth:`Spool.replay` did.

    Attributes
    ----------
    written : list of str
        uids whose result or record is now in Tiled.
    rerun : list of str
        uids handed back to be reconstructed.
    remaining : int
        Entries still in the spool.
    refused : dict
        uid -> reason for entries Tiled refused (kept in the spool).
    unreachable : str or None
        Set when Tiled still did not answer (replay stopped there).
    busy : bool
        Another replay of the same spool directory (a thread of this process or another
        process) was running: this one did nothing (``remaining`` is the current count).
    """

    written: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    remaining: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    unreachable: str | None = None
    busy: bool = False


def _unique_tmp(path: Path) -> Path:
    """A new empty temporary file next to ``path`` (same filesystem: ``os.replace`` is
    atomic), unique per call, so concurrent writers of one entry never share it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = _unique_tmp(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Spool:
    """A directory of results waiting for Tiled.

    Parameters
    ----------
    directory : str or Path
        Created when missing (mode 0700: results may be unpublished data).
    """

    def __init__(self, directory: str | Path) -> None:
        if directory is None or str(directory) == "":
            raise ValueError("directory must name a directory")
        self.directory = Path(directory).expanduser().resolve()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"directory {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # one replay at a time: per instance (threads) and per directory (processes, e.g. the
        # worker's replay thread and a manual ``bcdi-stream replay``)
        self._replay_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Spool {self.directory} ({len(self)} entries)>"

    def __len__(self) -> int:
        return len(list(self.directory.glob("*.json")))

    def _json(self, raw_uid: str) -> Path:
        return self.directory / f"{check_uid(raw_uid)}.json"

    # ------------------------------------------------------------------ put
    def put_result(
        self,
        raw_uid: str,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
        *,
        figures: Mapping[str, np.ndarray] | None = None,
        processed_key: str = DEFAULT_PROCESSED_KEY,
        reason: str = "",
    ) -> Path:
        """Keep a reconstruction (CXI/HDF5 + JSON); returns the JSON path.

        Raises
        ------
        ValueError
            Bad uid, or arrays missing / not 3D of one shape.
        """
        jpath = self._json(raw_uid)
        missing = [k for k in RESULT_ARRAYS if k not in arrays]
        if missing:
            raise ValueError(f"arrays is missing {', '.join(missing)}")
        shapes = {tuple(np.shape(arrays[k])) for k in RESULT_ARRAYS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise ValueError(f"arrays must be 3D of one shape, got {sorted(shapes)}")
        data = jpath.with_suffix(".cxi")
        amp = np.asarray(arrays["amplitude"], dtype=np.float32)
        phase = np.nan_to_num(np.asarray(arrays["phase"], dtype=np.float32))
        tmp = _unique_tmp(data)
        try:
            self._write_cxi(tmp, amp, phase, arrays, figures)
            os.replace(tmp, data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._put_json(jpath, raw_uid, "result", metadata, processed_key, reason)
        return jpath

    @staticmethod
    def _write_cxi(tmp: Path, amp: np.ndarray, phase: np.ndarray,
                   arrays: Mapping[str, np.ndarray],
                   figures: Mapping[str, np.ndarray] | None) -> None:
        import h5py

        with h5py.File(tmp, "w") as f:
            f.attrs["creator"] = "bcdi-stream spool"
            f.create_dataset("cxi_version", data=150)
            img = f.create_group("entry_1/image_1")
            img.create_dataset("data", data=(amp * np.exp(1j * phase)).astype(np.complex64),
                               compression="gzip", compression_opts=1)
            img.create_dataset("mask", data=np.asarray(arrays["support"], dtype=np.uint8),
                               compression="gzip", compression_opts=1)
            grp = f.create_group("bcdi_stream/arrays")
            for key in RESULT_ARRAYS:
                grp.create_dataset(key, data=np.asarray(arrays[key]), compression="gzip",
                                   compression_opts=1)
            fgrp = f.create_group("bcdi_stream/figures")
            for name, rgb in (figures or {}).items():
                fgrp.create_dataset(str(name), data=np.asarray(rgb, dtype=np.uint8))

    def put_failure(
        self,
        raw_uid: str,
        error: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        processed_key: str = DEFAULT_PROCESSED_KEY,
        reason: str = "",
        rerun: bool = False,
    ) -> Path:
        """Keep a failure record (JSON only); ``rerun`` asks replay to re-run the scan."""
        jpath = self._json(raw_uid)
        stale = jpath.with_suffix(".cxi")
        if stale.exists():  # a newer outcome replaces an older spooled result
            stale.unlink()
        self._put_json(jpath, raw_uid, "failure", metadata or {}, processed_key, reason,
                       error=error, rerun=rerun)
        return jpath

    def _put_json(self, jpath: Path, raw_uid: str, kind: str, metadata: Mapping[str, Any],
                  processed_key: str, reason: str, *, error: str | None = None,
                  rerun: bool = False) -> None:
        doc = {
            "raw_uid": raw_uid, "kind": kind, "processed_key": processed_key,
            "metadata": jsonable(dict(metadata)), "error": error, "rerun": bool(rerun),
            "reason": reason, "spooled_at": time.time(),
        }
        _atomic_write_text(jpath, json.dumps(doc))
        log.warning("scan %s: Tiled unreachable (%s); %s kept in %s", raw_uid, reason,
                    kind, jpath)

    # ------------------------------------------------------------------ read
    def entries(self) -> list[SpoolEntry]:
        """Complete entries, oldest first (unreadable files are logged and skipped)."""
        out = []
        for jpath in self.directory.glob("*.json"):
            try:
                doc = json.loads(jpath.read_text(encoding="utf-8"))
                out.append(SpoolEntry(
                    raw_uid=check_uid(doc["raw_uid"]), kind=doc["kind"],
                    processed_key=doc.get("processed_key") or DEFAULT_PROCESSED_KEY,
                    metadata=dict(doc.get("metadata") or {}), error=doc.get("error"),
                    rerun=bool(doc.get("rerun")), reason=str(doc.get("reason") or ""),
                    spooled_at=float(doc.get("spooled_at") or 0.0), path=jpath,
                ))
            except Exception as exc:
                log.error("unreadable spool entry %s: %s", jpath, _short(exc))
        return sorted(out, key=lambda e: e.spooled_at)

    def load_arrays(self, entry: SpoolEntry) -> tuple[dict[str, np.ndarray],
                                                       dict[str, np.ndarray]]:
        """The arrays and figures of a spooled result."""
        import h5py

        with h5py.File(entry.data_path, "r") as f:
            arrays = {k: f["bcdi_stream/arrays"][k][()] for k in RESULT_ARRAYS}
            figs = {k: v[()] for k, v in f["bcdi_stream/figures"].items()}
        return arrays, figs

    def remove(self, entry: SpoolEntry) -> None:
        """Delete an entry (its JSON first, so a crash leaves no half entry)."""
        entry.path.unlink(missing_ok=True)
        entry.data_path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ replay
    def replay(self, client: Any, *, rerun: Callable[[SpoolEntry], Any] | None = None
               ) -> ReplayReport:
        """Write every spooled entry to Tiled, oldest first; stop at the first sign that
        Tiled is still unreachable.

        Parameters
        ----------
        client : tiled container client
            Catalog root.
        rerun : callable(SpoolEntry), optional
            Called for entries marked ``rerun`` (e.g. resubmit the scan); without it their
            failure record is written.

        Returns
        -------
        ReplayReport
            With ``busy`` set, and nothing done, when another replay of this directory is
            running (it is not waited for: the next replay takes what is left).
        """
        if not self._replay_lock.acquire(blocking=False):
            return self._busy()
        try:
            fd = try_lock_file(self.directory / ".replay.lock")
            if fd is None:
                return self._busy()
            try:
                return self._replay(client, rerun)
            finally:
                os.close(fd)  # releases the lock
        finally:
            self._replay_lock.release()

    def _busy(self) -> ReplayReport:
        log.info("spool %s: another replay is running; this one skipped", self.directory)
        return ReplayReport(remaining=len(self), busy=True)

    def _replay(self, client: Any, rerun: Callable[[SpoolEntry], Any] | None
                ) -> ReplayReport:
        report = ReplayReport()
        for entry in self.entries():
            try:
                if entry.kind == "failure" and entry.rerun and rerun is not None:
                    self.remove(entry)  # the re-run spools again if Tiled is still down
                    try:
                        rerun(entry)
                    except Exception:
                        self.put_failure(entry.raw_uid, entry.error or "failed",
                                         entry.metadata, processed_key=entry.processed_key,
                                         reason=entry.reason, rerun=True)
                        raise
                    report.rerun.append(entry.raw_uid)
                    continue
                md = dict(entry.metadata)
                md["spooled"] = {"at": entry.spooled_at, "reason": entry.reason,
                                 "replayed_at": time.time()}
                if entry.kind == "result":
                    arrays, figs = self.load_arrays(entry)
                    write_result(client, entry.raw_uid, arrays, md, figures=figs,
                                 processed_key=entry.processed_key)
                elif _replaces_ok(client, entry):
                    log.warning("spooled %s record of %s dropped: an ok result is there now",
                                entry.kind, entry.raw_uid)
                else:
                    write_failure(client, entry.raw_uid, entry.error or "failed", md,
                                  processed_key=entry.processed_key)
            except TiledRefused as exc:
                report.refused[entry.raw_uid] = str(exc)
                log.error("spooled %s refused by Tiled (kept): %s", entry.raw_uid, exc)
                continue
            except Exception as exc:
                if is_unreachable(exc):
                    report.unreachable = _short(exc)
                    break
                report.refused[entry.raw_uid] = _short(exc)
                log.exception("could not replay spooled %s (kept)", entry.raw_uid)
                continue
            self.remove(entry)
            report.written.append(entry.raw_uid)
            log.info("replayed spooled %s %s to Tiled", entry.kind, entry.raw_uid)
        report.remaining = len(self)
        return report


def try_lock_file(path: Path) -> int | None:
    """Take a non-blocking exclusive ``flock`` on ``path`` (created, mode 0600).

    Returns its file descriptor, or None when another holder (a thread's descriptor or
    another process) has the lock. Closing the descriptor releases it, and so does the
    process's exit, a crash included. Other ``flock`` errors are raised.
    """
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


#: Metadata keys of records made without a reconstruction (a skipped scan, a worker that
#: stopped on it, a full queue): such a record never replaces an ``ok`` result.
_BOOKKEEPING_KEYS = ("skipped", "crashes", "overflow")


def _replaces_ok(client: Any, entry: SpoolEntry) -> bool:
    """Whether writing this spooled record would replace an ``ok`` result with a record
    made without a reconstruction (the live callback's rule, kept on replay)."""
    return (any(entry.metadata.get(k) for k in _BOOKKEEPING_KEYS)
            and holds_ok_result(client, entry.raw_uid, entry.processed_key))
