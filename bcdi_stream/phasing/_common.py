"""Argument checks and conversions shared by the phasing modules (eager ``ValueError``s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..arrays import as_tensor
from ..config import PhasingSettings

#: Smallest grid edge the phasing code accepts.
MIN_EDGE = 4

ProgressCallback = Callable[[int, int], Any]


def to_tensor(x: Any, name: str, device: torch.device) -> torch.Tensor:
    """Convert ``x`` to a tensor on ``device``; conversion errors name the argument."""
    try:
        return as_tensor(x, device=device)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{name}: {exc}") from exc


def check_intensity(intensity: Any, device: torch.device) -> torch.Tensor:
    """Measured intensity as a finite float32 3D tensor on ``device``.

    Negative values are kept: they are treated as masked (PyNX convention) by the callers.
    """
    if intensity is None:
        raise ValueError("intensity must be given, got None")
    t = to_tensor(intensity, "intensity", device)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"intensity must be a real numeric array, got dtype {t.dtype}")
    if t.ndim != 3:
        raise ValueError(f"intensity must be a 3D array (z, y, x), got shape {tuple(t.shape)}")
    if min(t.shape) < MIN_EDGE:
        raise ValueError(
            f"intensity must be at least {MIN_EDGE} voxels per axis, got {tuple(t.shape)}"
        )
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("intensity contains NaN or infinite values")
    if not bool((t > 0).any()):
        raise ValueError("intensity has no positive value")
    return t.contiguous()


def check_mask(mask: Any, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """Bad-pixel mask as a bool tensor (True = masked) or None."""
    if mask is None:
        return None
    m = to_tensor(mask, "mask", device)
    if tuple(m.shape) != tuple(shape):
        raise ValueError(
            f"mask must have the intensity's shape {tuple(shape)}, got {tuple(m.shape)}"
        )
    if m.is_complex():
        raise ValueError("mask must be boolean or integer (nonzero = bad pixel), got complex")
    return (m != 0).contiguous()


def check_support(
    support: Any, shape: tuple[int, ...], device: torch.device, name: str = "support"
) -> torch.Tensor:
    """Support as a bool tensor of shape ``shape`` or ``(B, *shape)``."""
    s = to_tensor(support, name, device)
    if s.is_complex():
        raise ValueError(f"{name} must be boolean or real (nonzero = inside), got complex")
    if tuple(s.shape[-3:]) != tuple(shape) or s.ndim not in (3, 4):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} or (runs, *{tuple(shape)}), "
            f"got {tuple(s.shape)}"
        )
    s = (s != 0).contiguous()
    if not bool(s.flatten(-3).any(-1).all()):
        raise ValueError(f"{name} must contain at least one voxel (per run)")
    return s


def check_object(
    obj: Any, shape: tuple[int, ...], device: torch.device, name: str = "obj_init"
) -> torch.Tensor:
    """Complex object as a complex64 tensor of shape ``(B, *shape)``."""
    if obj is None:
        raise ValueError(f"{name} must be given, got None")
    o = to_tensor(obj, name, device)
    if o.dtype == torch.bool:
        raise ValueError(f"{name} must be numeric, got bool")
    if tuple(o.shape[-3:]) != tuple(shape) or o.ndim not in (3, 4):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} or (runs, *{tuple(shape)}), "
            f"got {tuple(o.shape)}"
        )
    o = o.to(torch.complex64)
    if not bool(torch.isfinite(torch.view_as_real(o)).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if o.ndim == 3:
        o = o.unsqueeze(0)
    return o.contiguous()


def check_settings(settings: Any) -> PhasingSettings:
    """``settings`` or the defaults."""
    if settings is None:
        return PhasingSettings()
    if not isinstance(settings, PhasingSettings):
        raise ValueError(f"settings must be a PhasingSettings, got {type(settings).__name__}")
    return settings


def check_int(value: Any, name: str, minimum: int = 0) -> int:
    """An integer (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_fraction(value: Any, name: str) -> float:
    """A float in the open interval (0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from exc
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return v


def check_progress(progress: Any) -> ProgressCallback | None:
    """``progress`` if callable or None."""
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a callable(done, total) or None, got {progress!r}")
    return progress


def run_seed(seed: int, run: int) -> int:
    """Seed of run ``run`` of a recipe seeded with ``seed`` (independent of batching)."""
    state = np.random.SeedSequence([int(seed), int(run)]).generate_state(1, dtype=np.uint64)[0]
    return int(state) % (2**63)
