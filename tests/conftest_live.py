"""Shared real components for the live-service tests (imported by tests/test_*live*, callback,
profiles): one embedded Tiled server per test session, small crystals, a fast phasing preset.

Not a ``conftest.py`` on purpose: test modules import what they need from it, and the server is a
process-wide singleton (started on first use, closed at exit), so every module shares it.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["API_KEY", "TINY_PHASING", "one_torch_thread", "shared_server", "tiny_settings",
           "toy_source", "two_image_detector"]

#: The API key of every Tiled server a test starts in this process. Tiled 0.2.20 keeps server
#: auth settings in one process-wide cached object that each app mutates
#: (``tiled.server.settings.get_settings``): with two keys the last server's key wins on both.
API_KEY = "bcdistreamtests"

_lock = threading.Lock()
_server: Any = None


def shared_server() -> Any:
    """The session's ``SimpleTiledServer`` (started once, ~7 s)."""
    global _server
    with _lock:
        if _server is None:
            from tiled.server import SimpleTiledServer

            _server = SimpleTiledServer(api_key=API_KEY)
            # The server thread is not a daemon: interpreter exit joins it *before* atexit
            # handlers run, so close it from threading's own exit hook (as concurrent.futures
            # does), else the test process never exits.
            register = getattr(threading, "_register_atexit", atexit.register)
            register(_server.close)
        return _server


def one_torch_thread() -> Iterator[None]:
    """Pin torch to one CPU thread for a test (and the live workers it starts), then restore.

    Use as ``yield from one_torch_thread()`` in an autouse fixture.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def toy_source(n: int = 32, seed: int = 0, peak: float = 2e5) -> Any:
    """A placeholder crystal: the diffraction volume of a strained box, expected counts,
    Bragg peak at the grid centre (no simulator needed)."""
    from bcdi_stream.beamline import DiffractionSource

    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2,) * 3, indexing="ij")
    half = n // 6 + rng.integers(0, 2, size=3)
    box = (abs(z) <= half[0]) & (abs(y) <= half[1]) & (abs(x) <= half[2])
    phase = 0.6 * np.sin(2 * np.pi * y / n) * box
    rho = box * np.exp(1j * phase)
    psi = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(rho)))
    intensity = np.abs(psi) ** 2
    intensity *= peak / intensity.max()
    return DiffractionSource(intensity.astype(np.float32), name=f"toy-{seed}",
                             meta={"seed": seed, "kind": "toy box"})


def tiny_settings(n: int = 32, **kwargs: Any) -> Any:
    """Job settings for tests: an ``n``³ crop and a very short conventional run."""
    from bcdi_stream.config import PhasingSettings
    from bcdi_stream.tiled_io import JobSettings

    phasing = PhasingSettings(runs=1, n_raar=30, n_hio=0, n_er=10, shrinkwrap_every=10)
    return JobSettings(shape=(n, n, n), phasing=phasing, method="conventional",
                       device="cpu", **kwargs)


TINY_PHASING = {"runs": 1, "n_raar": 30, "n_er": 10}


def start_and_drain(client: Any, state_dir: Any, timeout: float) -> Any:
    """A callback started on ``state_dir`` (its journal's leftovers re-run), drained, closed."""
    from callbacks import BCDICallback

    cb = BCDICallback(client, settings=tiny_settings(32), echo=None, state_dir=state_dir,
                      replay_interval=0)
    try:
        assert cb.wait(timeout)
    finally:
        cb.close()
    return cb


def two_image_detector(motor: Any, name: str) -> Any:
    """A simulated detector with a second 2D field (``<name>_image2``) beside its image
    (``<name>_image``), loaded with :func:`toy_source`: which image to phase is ambiguous."""
    from ophyd import Component as Cpt

    from bcdi_stream.beamline import ImageSignal, SimBCDIDetector

    class TwoCams(SimBCDIDetector):
        image2 = Cpt(ImageSignal, value=np.zeros((8, 8), np.uint32), kind="normal")

    cams = TwoCams(motor, name=name, shape=(64, 80))
    cams.load(toy_source(32))
    return cams

