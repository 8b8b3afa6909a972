"""Exceptions with one-line, user-facing reasons."""

from __future__ import annotations

__all__ = ["BCDIError", "InputError"]


class BCDIError(Exception):
    """Base class of bcdi-stream errors; ``str(err)`` is a one-line reason for a user."""


class InputError(BCDIError, ValueError):
    """Input data or arguments that cannot be processed (bad shape, NaN, missing data set...)."""
