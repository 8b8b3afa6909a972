# bcdi-stream beamline profile, part 0: logging and the RunEngine.
# Loaded in order by IPython (`ipython --profile-dir=profiles/profile_bcdi`); every file runs in
# one namespace. Secrets come from the environment, never from these files.
import logging
import os

from bluesky import RunEngine

_level = os.environ.get("BCDI_LOG_LEVEL", "").strip().upper() or "WARNING"
if _level.isdigit():
    _level = int(_level)
elif not isinstance(logging.getLevelName(_level), int):  # logging would raise "Unknown level"
    raise ValueError(f"BCDI_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
                     f"got {os.environ['BCDI_LOG_LEVEL']!r}")
logging.basicConfig(level=_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
# The per-scan summary line (and failures, at WARNING) reach the session through this logger.
logging.getLogger("bcdi_stream.live").setLevel(logging.INFO)

RE = RunEngine({})
RE.md["beamline_id"] = os.environ.get("BCDI_BEAMLINE_ID", "bcdi-sim")
