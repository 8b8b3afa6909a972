"""The Bluesky-facing layer of bcdi-stream: live callback, executors and feedback.

Only this package (and the simulated beamline) knows Bluesky; it drives the engine in
:mod:`bcdi_stream` through :func:`bcdi_stream.pipeline.reconstruct`.
"""

__all__: list[str] = []
