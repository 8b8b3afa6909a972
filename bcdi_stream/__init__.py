"""bcdi-stream: in-experiment phase retrieval for Bragg coherent diffraction imaging."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bcdi-stream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
