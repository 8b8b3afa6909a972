"""Describe the machine a benchmark ran on."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from typing import Any

import torch

from bcdi_stream.arrays import cpu_bf16_support, resolve_device


def machine_info(device: str | None = None) -> dict[str, Any]:
    """CPU model, its bfloat16 flags (what the ``auto`` inference precision goes by), cores,
    torch threads, GPU name (if used), versions and the date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = resolve_device(device)
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_bf16_flags": cpu_bf16_support(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(dev),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info
