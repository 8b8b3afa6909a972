"""Shipped weights: export from a training checkpoint, load, and identify (name + hash)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ._phase_model import ModelConfig, PhaseModel

__all__ = [
    "PRECISIONS",
    "WEIGHTS_FORMAT",
    "LoadedModel",
    "default_weights_path",
    "export_weights",
    "load_model",
    "model_available",
    "read_torch_file",
]

#: Format tag of a weights file.
WEIGHTS_FORMAT = "bcdi-stream-weights/1"
_DEFAULT_NAME = "bcdi-phase-v3.pt"
#: Inference precisions of :func:`load_model`: ``"auto"`` is ``"bf16"`` for weights trained
#: under bfloat16 autocast on a device where bfloat16 is native, ``"fp32"`` otherwise.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def default_weights_path() -> Path:
    """The weights shipped in the package (``BCDI_MODEL`` in the environment overrides it)."""
    env = os.environ.get("BCDI_MODEL")
    if env:
        return Path(env)
    return Path(__file__).with_name("weights") / _DEFAULT_NAME


def model_available(path: str | Path | None = None) -> bool:
    """Whether a weights file exists at ``path`` (default: :func:`default_weights_path`)."""
    return Path(path or default_weights_path()).is_file()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_torch_file(path: str | Path, what: str = "file") -> Any:
    """Read a ``torch.save`` file without running code from it (``weights_only=True``).

    Weights files and training checkpoints hold tensors and plain data only, so they are read
    by torch's restricted unpickler: a file from someone else (``BCDI_MODEL``, ``--model``,
    a collaborator's checkpoint) cannot execute Python while it is loaded.

    Parameters
    ----------
    path : str or Path
        The file.
    what : str
        What it should be, for the error message (``"model weights"``, ``"checkpoint"``).

    Returns
    -------
    Any
        The loaded object, its tensors on the CPU.

    Raises
    ------
    ValueError
        The file is missing, unreadable, or holds Python objects other than tensors and plain
        data (the one-line reason names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; the line that says what it met starts after
        # "WeightsUnpickler error:" ("Unsupported global: GLOBAL builtins.open ...").
        text = str(exc).split("WeightsUnpickler error:", 1)[-1].strip()
        reason = text.splitlines()[0].split(". Please")[0].strip() if text else type(exc).__name__
        if "Unsupported global" in reason:
            raise ValueError(f"{what} {path} holds Python objects other than tensors and "
                             f"plain data, which are not loaded (a torch file can run code): "
                             f"{reason}") from exc
        raise ValueError(f"{what} {path} cannot be read: {reason}") from exc
    except Exception as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc}") from exc


def export_weights(checkpoint: str | Path | dict[str, Any], out: str | Path, *,
                   name: str | None = None, meta: dict[str, Any] | None = None,
                   half: bool = True) -> Path:
    """Write a weights file (model config + state dict + provenance) from a checkpoint.

    Parameters
    ----------
    checkpoint : str, Path or dict
        A training checkpoint (``last.pt`` of :func:`bcdi_stream.training.train`) or its dict.
    out : str or Path
        Destination ``.pt`` file.
    name : str, optional
        Model name recorded in the file (default: the file stem).
    meta : dict, optional
        Extra provenance (command, wall time, hardware, validation figures).
    half : bool
        Store float tensors as float16 (halves the size; loaded back as float32).

    Returns
    -------
    Path
    """
    if not isinstance(checkpoint, dict):
        checkpoint = read_torch_file(checkpoint, "checkpoint")
    if "state_dict" not in checkpoint or "model_config" not in checkpoint:
        raise ValueError("checkpoint must hold 'state_dict' and 'model_config'")
    out = Path(out)
    if out.suffix != ".pt":
        raise ValueError(f"out must end in .pt, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous()
        for k, v in checkpoint["state_dict"].items()
    }
    info = {
        "step": checkpoint.get("step"),
        "samples": checkpoint.get("samples"),
        "wall_s": checkpoint.get("wall_s"),
        "val": checkpoint.get("val"),
        "train_config": checkpoint.get("train_config"),
        **(meta or {}),
    }
    tmp = out.with_suffix(".pt.tmp")
    torch.save({"format": WEIGHTS_FORMAT, "name": name or out.stem,
                "model_config": checkpoint["model_config"], "state_dict": sd, "meta": info}, tmp)
    os.replace(tmp, out)
    return out


@dataclass
class LoadedModel:
    """A model ready for inference and its identity (recorded with every result).

    ``precision`` (``"fp32"`` or ``"bf16"``) is the arithmetic of the network's trunk at
    inference (:meth:`autocast`); the weights are float32 either way.
    """

    model: PhaseModel
    name: str
    sha256: str
    path: Path
    meta: dict[str, Any]
    precision: str = "fp32"

    def identity(self) -> dict[str, str]:
        """``{"name", "hash"}`` (SHA-256 of the file) for result metadata (the Tiled contract)."""
        return {"name": self.name, "hash": self.sha256}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The context the prediction runs in: bfloat16 autocast when ``precision`` is
        ``"bf16"``, nothing otherwise (an autocast already entered by the caller is left on)."""
        if self.precision != "bf16":
            yield
            return
        dev = next(self.model.parameters()).device
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            yield


def _trained_precision(meta: dict[str, Any]) -> str:
    """The precision the weights were trained in (``"fp32"`` when the file does not say)."""
    cfg = meta.get("train_config") if isinstance(meta, dict) else None
    return str(cfg.get("precision") or "fp32") if isinstance(cfg, dict) else "fp32"


def _resolve_precision(precision: str, meta: dict[str, Any], device: str | torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for a :data:`PRECISIONS` option (see :func:`load_model`)."""
    if precision != "auto":
        return precision
    from bcdi_stream.arrays import fast_bf16

    return "bf16" if _trained_precision(meta) == "bf16" and fast_bf16(device) else "fp32"


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu",
               precision: str = "auto") -> LoadedModel:
    """Load a weights file (default: the shipped one) in eval mode on ``device``.

    Parameters
    ----------
    path : str or Path, optional
        Weights file (default :func:`default_weights_path`).
    device : str or torch.device
        Where the model runs.
    precision : {"auto", "fp32", "bf16"}
        The trunk's arithmetic at inference (:meth:`LoadedModel.autocast`). ``"auto"``:
        bfloat16 when the weights were trained under bfloat16 autocast (their
        ``train_config.precision``) and the device computes it natively
        (:func:`bcdi_stream.arrays.fast_bf16`), float32 otherwise. The shipped v3 in bf16 on
        the Intel CI CPU: the prediction 0.20 → 0.08 s, the test set's successes as in fp32
        to the crystals at the 0.3 rad line (docs/MODEL_RESEARCH.md, session 23).

    Raises
    ------
    ValueError
        The file is missing or not a bcdi-stream weights file, or ``precision`` is unknown.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = Path(path or default_weights_path())
    if not path.is_file():
        raise ValueError(f"model weights {path} do not exist")
    blob = read_torch_file(path, "model weights")
    if not isinstance(blob, dict):
        raise ValueError(f"{path} is not a bcdi-stream weights file")
    if "state_dict" not in blob or "model_config" not in blob:
        raise ValueError(f"{path} is not a bcdi-stream weights file")
    cfg, sd = blob["model_config"], blob["state_dict"]
    if blob.get("format") == WEIGHTS_FORMAT:
        name, meta = str(blob.get("name") or path.stem), blob.get("meta") or {}
    else:  # a training checkpoint
        name, meta = path.stem, {}
    if not isinstance(cfg, dict) or not isinstance(sd, dict) or not isinstance(meta, dict):
        raise ValueError(f"{path} is not a bcdi-stream weights file")
    try:
        model = PhaseModel(ModelConfig.from_dict(cfg))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in sd.items()})
    except (TypeError, KeyError, RuntimeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model weights {path} do not fit their model config: {first}"
                         ) from exc
    model.eval().to(device)
    return LoadedModel(model, name, _sha256(path), path, meta,
                       _resolve_precision(precision, meta, device))
