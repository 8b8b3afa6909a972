# bcdi-stream beamline profile, part 0: logging and the RunEngine.
# Loaded in order by IPython (`ipython --profile-dir=profiles/profile_bcdi`); every file runs in
# one namespace. Secrets come from the environment, never from these files.
import logging
import os

from bluesky import RunEngine

logging.basicConfig(
    level=os.environ.get("BCDI_LOG_LEVEL", "WARNING"),
    format="%(asctime)s %(name)s %(levelname)s: %(message)s",
)
logging.getLogger("bcdi_stream.live").setLevel(logging.INFO)

RE = RunEngine({})
RE.md["beamline_id"] = os.environ.get("BCDI_BEAMLINE_ID", "bcdi-sim")
