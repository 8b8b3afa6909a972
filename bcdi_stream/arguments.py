"""Checks of plain argument values (numbers given by a person, a profile or a plan).

No torch, no numpy: the simulated beamline, its plans and the demo check their arguments
with these before anything starts.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_finite_real", "is_integral"]


def is_finite_real(value: Any) -> bool:
    """Whether ``value`` is a finite real number: an int, a float, a numpy scalar (not a
    bool, not a string, not NaN or ±inf).

    Parameters
    ----------
    value : Any
        The value to check.

    Returns
    -------
    bool
    """
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def is_integral(value: Any) -> bool:
    """Whether ``value`` is an integer number: an int or a numpy integer (not a bool), or a
    float with an integer value (``3.0``).

    Parameters
    ----------
    value : Any
        The value to check.

    Returns
    -------
    bool
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, float) and value.is_integer()
