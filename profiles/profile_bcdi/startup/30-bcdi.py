# Part 3: live BCDI reconstruction, subscribed AFTER the TiledWriter.
#   BCDI_LIVE_SHAPE   crop edge (default 64)     BCDI_LIVE_FIGURE=1  live figure on
#   BCDI_LIVE_METHOD  auto|conventional|ai       BCDI_DEVICE         auto|cpu|cuda...
import os

from callbacks import BCDICallback, JobSettings, LiveStrainFigure

try:
    _edge = int(os.environ.get("BCDI_LIVE_SHAPE", "64"))
except ValueError:
    raise ValueError("BCDI_LIVE_SHAPE must be an integer crop edge, got "
                     f"{os.environ['BCDI_LIVE_SHAPE']!r}") from None
bcdi_settings = JobSettings(
    shape=(_edge, _edge, _edge),
    method=os.environ.get("BCDI_LIVE_METHOD", "auto"),
    device=os.environ.get("BCDI_DEVICE", "auto"),
)
# echo=None: the summary line reaches the session once, through the bcdi_stream.live logger
# (00-base.py), not a second time through print.
# No usable Tiled server (10-tiled.py said why and left tiled_client None): no callback, and
# the session goes on (the scans are not stored, so there is nothing to phase).
bcdi_callback = bcdi_callback_token = None
if tiled_client is None:  # noqa: F821
    print("30-bcdi.py: live phasing is off (no Tiled server); bcdi_callback is None.")
else:
    bcdi_callback = BCDICallback(tiled_client, settings=bcdi_settings, echo=None)  # noqa: F821
    bcdi_callback_token = RE.subscribe(bcdi_callback)  # noqa: F821
    if os.environ.get("BCDI_LIVE_FIGURE", "").lower() in ("1", "true", "yes", "on"):
        bcdi_callback.add_listener(LiveStrainFigure())
