"""A journal of the scans being processed, so that a killed worker loses none.

Before a job starts, :meth:`Journal.begin` writes ``<directory>/<uid>.json`` (the scan and how
many times it was started); when the job has finished, whatever its outcome,
:meth:`Journal.end` removes it. Entries left after a crash are the scans that were running or
queued: :meth:`Journal.leftover` lists them for the next start to re-run, and an entry started
``max_attempts`` times already (a scan that kills its worker) is given a failure record instead.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from bcdi_stream.tiled_io._spool import _atomic_write_text, check_uid

__all__ = ["Journal"]

log = logging.getLogger("bcdi_stream.live")


class Journal:
    """Scans started and not yet finished, one JSON file each.

    Parameters
    ----------
    directory : str or Path
        Created when missing.
    """

    def __init__(self, directory: str | Path) -> None:
        if directory is None or str(directory) == "":
            raise ValueError("directory must name a directory")
        self.directory = Path(directory).expanduser().resolve()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"directory {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, raw_uid: str) -> Path:
        return self.directory / f"{check_uid(raw_uid)}.json"

    def begin(self, raw_uid: str, **info: Any) -> int:
        """Record that a scan is queued/running; returns how many times it has been started
        (1 the first time, more after crashes)."""
        path = self._path(raw_uid)
        attempts = 0
        if path.exists():
            try:
                attempts = int(json.loads(path.read_text()).get("attempts", 0))
            except (ValueError, OSError):
                attempts = 0
        doc = {"raw_uid": raw_uid, "attempts": attempts + 1, "since": time.time(), **info}
        _atomic_write_text(path, json.dumps(doc, default=str))
        return attempts + 1

    def end(self, raw_uid: str) -> None:
        """The scan is finished (result, record or spool entry written)."""
        self._path(raw_uid).unlink(missing_ok=True)

    def leftover(self) -> list[dict[str, Any]]:
        """Entries left by a previous process, oldest first.

        An unreadable entry (truncated, not JSON) is re-run all the same: its uid is its file
        name. A ``since`` that is not a number is replaced by the file's modification time.
        Only a file whose name is not a valid uid is removed.
        """
        out = []
        for path in self.directory.glob("*.json"):
            try:
                doc = json.loads(path.read_text())
                if not isinstance(doc, dict):
                    raise ValueError(f"not a JSON object: {type(doc).__name__}")
                check_uid(doc["raw_uid"])
            except Exception as exc:
                try:
                    doc = {"raw_uid": check_uid(path.stem)}
                except ValueError:
                    log.error("unreadable journal entry %s (%s): removed", path, exc)
                    path.unlink(missing_ok=True)
                    continue
                log.error("unreadable journal entry %s (%s): re-running scan %s (its file "
                          "name)", path, exc, path.stem)
            try:
                since = float(doc.get("since") or 0)
            except (TypeError, ValueError):
                try:
                    since = path.stat().st_mtime
                except OSError:
                    since = 0.0
            doc["since"] = since
            out.append(doc)
        return sorted(out, key=lambda d: d["since"])

    def __len__(self) -> int:
        return len(list(self.directory.glob("*.json")))
