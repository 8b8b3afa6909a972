"""Feedback to the person at the beamline: a one-line summary per scan and a live figure.

The summary line (:meth:`ScanResult.line`) goes to the ``bcdi_stream.live`` logger and, by
default, to the console. :class:`LiveStrainFigure` is a result listener that shows the central
slices (amplitude, phase, strain) of each new reconstruction; switch it on in a profile with
``bcdi_callback.add_listener(LiveStrainFigure())`` (``BCDI_LIVE_FIGURE=1`` in the shipped
profile).
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Any

from bcdi_stream.tiled_io import ScanResult, draw_slices

__all__ = ["LiveStrainFigure", "summary_line"]

log = logging.getLogger("bcdi_stream.live")

_NON_GUI_BACKENDS = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template", "module://matplotlib_inline.backend_inline"}


def summary_line(result: ScanResult) -> str:
    """The one-line summary of a scan: strain range and rms, quality flag, latency, stages."""
    return result.line()


class LiveStrainFigure:
    """A live figure of the latest reconstruction (result listener).

    Jobs finish on worker threads; GUI toolkits must be drawn from their own thread. With an
    interactive matplotlib backend the figure is redrawn by a GUI timer that picks up the latest
    result; with a non-interactive one (Agg, headless) it is drawn at once (object-oriented API,
    no pyplot state) and, with ``save_dir``, saved as ``<save_dir>/<uid>.png``.

    Parameters
    ----------
    save_dir : str or Path, optional
        Also save each drawn figure there.
    interactive : bool, optional
        Force the GUI (True) or headless (False) mode; default from the matplotlib backend.
    interval_ms : int
        GUI timer period.
    """

    def __init__(self, *, save_dir: str | Path | None = None, interactive: bool | None = None,
                 interval_ms: int = 500) -> None:
        import matplotlib

        if interval_ms < 10:
            raise ValueError(f"interval_ms must be >= 10, got {interval_ms}")
        backend = matplotlib.get_backend().lower()
        if interactive is None:
            interactive = backend not in _NON_GUI_BACKENDS
        self.interactive = bool(interactive)
        self.save_dir = Path(save_dir) if save_dir is not None else None
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        self._pending: collections.deque[ScanResult] = collections.deque(maxlen=1)
        self._lock = threading.Lock()
        self.drawn: list[str] = []
        self._timer: Any = None
        if self.interactive:
            import matplotlib.pyplot as plt

            self.fig = plt.figure("bcdi-stream live", figsize=(7.5, 7.0))
            self._timer = self.fig.canvas.new_timer(interval=interval_ms)
            self._timer.add_callback(self._drain)
            self._timer.start()
        else:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            self.fig = Figure(figsize=(7.5, 7.0), dpi=80)
            FigureCanvasAgg(self.fig)

    def __call__(self, result: ScanResult) -> None:
        """Show a finished scan (results without arrays are ignored)."""
        if result.arrays is None:
            return
        if self.interactive:
            self._pending.append(result)
        else:
            self._draw(result)

    def _drain(self) -> None:
        try:
            result = self._pending.popleft()
        except IndexError:
            return
        self._draw(result)
        self.fig.canvas.draw_idle()

    def _draw(self, result: ScanResult) -> None:
        a = result.arrays or {}
        with self._lock:
            try:
                draw_slices(self.fig, a["amplitude"], a["phase"], a["strain"], a["support"],
                            voxel_size=result.summary.get("voxel_size_m"),
                            title=result.line()[:110])
                if self.save_dir is not None:
                    self.fig.savefig(self.save_dir / f"{result.raw_uid}.png")
                else:
                    self.fig.canvas.draw()
                self.drawn.append(result.raw_uid)
            except Exception:
                log.exception("live figure: could not draw scan %s", result.raw_uid)

    def close(self) -> None:
        """Stop the GUI timer."""
        if self._timer is not None:
            self._timer.stop()
