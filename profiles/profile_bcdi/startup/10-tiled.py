# Part 1: Tiled, and the TiledWriter that stores every run (subscribed FIRST).
#   TILED_URI      e.g. http://tiled.example:8000/api/v1 (unset: an embedded local server)
#   TILED_API_KEY  the writer's API key (read by the Tiled client from the environment)
import os

from bluesky_tiled_plugins import TiledWriter
from tiled.client import from_uri

tiled_server = None
if os.environ.get("TILED_URI"):
    tiled_client = from_uri(os.environ["TILED_URI"])
else:
    from tiled.server import SimpleTiledServer

    tiled_server = SimpleTiledServer(directory=os.environ.get("BCDI_TILED_DIR") or None)
    tiled_client = from_uri(tiled_server.uri)
    # Its thread is not a daemon: close it before exit joins it (plain atexit runs too late).
    import threading

    getattr(threading, "_register_atexit", __import__("atexit").register)(tiled_server.close)
    print(f"embedded Tiled server: {tiled_server.web_ui_link}")

tiled_writer = TiledWriter(tiled_client)
tiled_writer_token = RE.subscribe(tiled_writer)  # noqa: F821 - RE comes from 00-base.py
