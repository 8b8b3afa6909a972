"""Array interop and device selection: numpy, torch and cupy in, torch out.

GPU arrays (cupy, CUDA torch tensors) cross via DLPack without a host copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_tensor", "cpu_bf16_support", "fast_bf16", "resolve_device", "to_numpy"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the compute device.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` gives ``cuda`` when a GPU is present, else ``cpu``; anything
        else is passed to :class:`torch.device` and must be usable here.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        A name torch does not parse, a CUDA device without a GPU (or beyond the GPUs
        present), ``meta``, or another device type this torch build cannot use (``mps`` on
        Linux...).
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a valid torch device") from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only "
                             f"{torch.cuda.device_count()} CUDA GPU(s) are available")
        return dev
    if dev.type == "meta":
        raise ValueError(f"device {device!r} holds no data: use cpu or cuda")
    try:  # mps, xpu...: torch parses the name whether or not this build can use it
        torch.empty(1, device=dev)
    except Exception as exc:  # RuntimeError, AssertionError ("not compiled with ...")
        reason = " ".join(str(exc).split()).split(". ")[0][:120] or type(exc).__name__
        raise ValueError(f"device {device!r} is not available here ({reason})") from None
    return dev


def cpu_bf16_support() -> list[str]:
    """The CPU flags that make bfloat16 convolutions fast (AMX, AVX-512 BF16), if any."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in flags if f in ("amx_bf16", "avx512_bf16"))


def fast_bf16(device: str | torch.device) -> bool:
    """Whether bfloat16 convolutions run natively on ``device`` (faster than float32).

    CUDA: a GPU that supports bfloat16 (Ampere and later); CPU: AMX or AVX-512 BF16
    (:func:`cpu_bf16_support`; elsewhere oneDNN emulates bfloat16, which is no faster).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        return bool(cpu_bf16_support())
    return False


def as_tensor(
    x: Any,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Convert a numpy array, torch tensor or cupy array to a torch tensor.

    Parameters
    ----------
    x : array-like
        numpy ``ndarray``, ``torch.Tensor``, or any object exporting ``__dlpack__``
        (cupy, jax...). GPU arrays are taken by DLPack, without a host copy.
    device : str, torch.device or None
        Target device; ``None`` keeps the array where it is.
    dtype : torch.dtype or None
        Target dtype; ``None`` keeps the array's.

    Returns
    -------
    torch.Tensor
    """
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        if x.dtype.byteorder not in ("=", "|") or not x.flags.writeable:
            x = np.array(x, dtype=x.dtype.newbyteorder("="))
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif hasattr(x, "__dlpack__"):
        t = torch.from_dlpack(x)
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot convert an object of type {type(x).__name__} to an array"
            ) from exc
    if device is not None:
        t = t.to(resolve_device(device))
    if dtype is not None:
        t = t.to(dtype)
    return t


def to_numpy(x: Any) -> np.ndarray:
    """Host numpy copy (or view, for CPU tensors) of a torch tensor or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "get"):  # cupy
        return x.get()
    return np.asarray(x)
