"""Connect to a Tiled server in seconds or say in one line why not.

The Tiled client alone retries an unreachable server for ~45 s, printing "Retrying…", and then
raises a traceback; the demo and the beamline profile both check the server first with this.
"""

from __future__ import annotations

from typing import Any

from bcdi_stream.errors import InputError

__all__ = ["connect", "server_base"]


def server_base(uri: str) -> str:
    """The server's base URL: ``uri`` without its query and its ``/api/v1`` path.

    Parameters
    ----------
    uri : str
        A Tiled URI (``http://host:8000/api/v1?api_key=...``).

    Returns
    -------
    str
    """
    base = uri.split("?", 1)[0].rstrip("/")
    return base[: -len("/api/v1")] if base.endswith("/api/v1") else base


def connect(uri: str, *, api_key: str | None = None, timeout: float = 5.0) -> Any:
    """A Tiled client for ``uri``, after a quick probe of the server.

    Parameters
    ----------
    uri : str
        The Tiled URI.
    api_key : str, optional
        API key (default: the client's, e.g. ``TILED_API_KEY`` or one in ``uri``).
    timeout : float
        Seconds the probe waits for an answer.

    Returns
    -------
    tiled.client container
        The client.

    Raises
    ------
    InputError
        One line, "cannot use the Tiled server at <base>: <why>": nothing answers (refused,
        timed out, name not resolved, a malformed URL), the server answers with an HTTP 5xx
        (a proxy whose Tiled server is down), or the client refuses it (a bad API key, not a
        Tiled server).
    """
    import httpx
    from tiled.client import from_uri

    base = server_base(uri)

    def fail(why: str) -> InputError:
        return InputError(f"cannot use the Tiled server at {base}: {why}")

    try:
        reply = httpx.get(f"{base}/api/v1/", timeout=timeout)
    except Exception as exc:  # refused, timed out, name not resolved, not a URL...
        raise fail(_one_line(exc)) from None
    if reply.status_code >= 500:
        raise fail(f"HTTP {reply.status_code} {reply.reason_phrase}")
    try:
        return from_uri(uri, api_key=api_key)
    except Exception as exc:  # a refused key, not a Tiled server...
        raise fail(_one_line(exc)) from None


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
