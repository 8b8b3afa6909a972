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
    _tiled_uri = os.environ["TILED_URI"]
    _tiled_base = _tiled_uri.split("?", 1)[0].rstrip("/")
    _tiled_base = _tiled_base[: -len("/api/v1")] if _tiled_base.endswith("/api/v1") else _tiled_base
    _tiled_problem = None
    try:  # a quick probe first, as `bcdi-stream demo` does
        import httpx

        _reply = httpx.get(f"{_tiled_base}/api/v1/", timeout=5.0)
        if _reply.status_code >= 500:  # e.g. a proxy whose Tiled server is down
            _tiled_problem = f"HTTP {_reply.status_code} {_reply.reason_phrase}"
    except Exception as _exc:  # refused, timed out, bad URL, name not resolved...
        _tiled_problem = f"{type(_exc).__name__}: {' '.join(str(_exc).split())[:200]}"
    if _tiled_problem is None:
        try:
            tiled_client = from_uri(_tiled_uri)
        except Exception as _exc:  # refused API key, not a Tiled server...
            _tiled_problem = f"{type(_exc).__name__}: {' '.join(str(_exc).split())[:200]}"
    if _tiled_problem is not None:
        tiled_client = None
        print(f"10-tiled.py: cannot use the Tiled server at {_tiled_base} ({_tiled_problem}); "
              "runs are NOT stored and live phasing is off. Fix TILED_URI (or unset it for an "
              "embedded server) and restart IPython.", file=sys.stderr)
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
