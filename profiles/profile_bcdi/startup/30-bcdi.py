# Part 3: live BCDI reconstruction, subscribed AFTER the TiledWriter.
#   BCDI_LIVE_SHAPE   crop edge (default 64)     BCDI_LIVE_FIGURE=1  live figure on
#   BCDI_LIVE_METHOD  auto|conventional|ai       BCDI_DEVICE         auto|cpu|cuda...
import os

from callbacks import BCDICallback, JobSettings, LiveStrainFigure

_edge = int(os.environ.get("BCDI_LIVE_SHAPE", "64"))
bcdi_settings = JobSettings(
    shape=(_edge, _edge, _edge),
    method=os.environ.get("BCDI_LIVE_METHOD", "auto"),
    device=os.environ.get("BCDI_DEVICE", "auto"),
)
bcdi_callback = BCDICallback(tiled_client, settings=bcdi_settings)  # noqa: F821
bcdi_callback_token = RE.subscribe(bcdi_callback)  # noqa: F821
if os.environ.get("BCDI_LIVE_FIGURE", "").lower() in ("1", "true", "yes", "on"):
    bcdi_callback.add_listener(LiveStrainFigure())
