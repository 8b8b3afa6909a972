# Part 1: Tiled, and the TiledWriter that stores every run (subscribed FIRST).
#   TILED_URI      e.g. http://tiled.example:8000/api/v1 (unset: an embedded local server)
#   TILED_API_KEY  the writer's API key (read by the Tiled client from the environment)
# When nothing usable answers at TILED_URI within a few seconds, one line says so and the session
# goes on without Tiled: tiled_client, tiled_writer and tiled_writer_token are None, runs are not
# stored and live phasing is off (the Tiled client alone would retry for ~45 s, then raise).
import os
import sys

from bluesky_tiled_plugins import TiledWriter
from tiled.client import from_uri

tiled_server = None
tiled_client = None
tiled_writer = None
tiled_writer_token = None
if os.environ.get("TILED_URI"):
    from bcdi_stream.tiled_io import connect

    try:  # a quick probe first, as `bcdi-stream demo` does
        tiled_client = connect(os.environ["TILED_URI"])
    except ValueError as _exc:  # one line: unreachable, HTTP 5xx, refused key, not Tiled...
        print(f"10-tiled.py: {_exc}; runs are NOT stored and live phasing is off. Fix "
              "TILED_URI (or unset it for an embedded server) and restart IPython.",
              file=sys.stderr)
else:
    from tiled.server import SimpleTiledServer

    tiled_server = SimpleTiledServer(directory=os.environ.get("BCDI_TILED_DIR") or None)
    tiled_client = from_uri(tiled_server.uri)
    # Its thread is not a daemon: close it before exit joins it (plain atexit runs too late).
    import threading

    getattr(threading, "_register_atexit", __import__("atexit").register)(tiled_server.close)
    print(f"embedded Tiled server: {tiled_server.web_ui_link}")

if tiled_client is not None:
    tiled_writer = TiledWriter(tiled_client)
    tiled_writer_token = RE.subscribe(tiled_writer)  # noqa: F821 - RE comes from 00-base.py
