"""Where the live jobs run: a thread pool with one worker per GPU (one on a CPU machine).

Each worker thread owns a device and keeps what it loaded once (the phase-prediction model) for
every later job: :class:`WorkerPool` hands each job its :class:`WorkerState`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["WorkerPool", "WorkerState", "default_devices"]

log = logging.getLogger("bcdi_stream.live")


def _noop() -> None:
    return None


def devices_for(device: str) -> list[str]:
    """The worker devices a job setting asks for: :func:`default_devices` for ``"auto"``,
    else that one device (``"cpu"`` keeps a GPU machine's jobs on the CPU)."""
    return default_devices() if device == "auto" else [device]


def default_devices() -> list[str]:
    """One entry per visible GPU (``cuda:0``, ``cuda:1``...), else ``["cpu"]``."""
    try:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # torch without CUDA support
        n = 0
    return [f"cuda:{i}" for i in range(n)] or ["cpu"]


class WorkerState:
    """What one worker thread keeps between jobs.

    Attributes
    ----------
    device : str
        The worker's compute device.
    """

    def __init__(self, device: str, load_model: Callable[[str], Any] | None = None) -> None:
        self.device = device
        self._load_model = load_model
        self._model: Any = None
        self._model_loaded = False
        self.jobs = 0

    def model(self) -> Any:
        """The worker's phase-prediction model, loaded on first use (``None`` when there is no
        loader or no weights)."""
        if not self._model_loaded:
            self._model_loaded = True
            if self._load_model is not None:
                self._model = self._load_model(self.device)
                log.info("worker on %s loaded model %s", self.device,
                         getattr(self._model, "name", type(self._model).__name__))
        return self._model


class WorkerPool:
    """A thread pool whose workers each own a device and a :class:`WorkerState`.

    Parameters
    ----------
    devices : sequence of str, optional
        One worker per entry (default :func:`default_devices`: one per GPU, else one CPU worker).
    load_model : callable(device) -> model, optional
        Loads the phase-prediction model on a device, once per worker, on first use.
    threads : int
        torch CPU threads for the whole process (0: leave torch's default).
    """

    def __init__(
        self,
        devices: Sequence[str] | None = None,
        *,
        load_model: Callable[[str], Any] | None = None,
        threads: int = 0,
    ) -> None:
        devices = list(devices) if devices is not None else default_devices()
        if not devices:
            raise ValueError("devices must name at least one device")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.devices = devices
        self._threads = threads
        self._load_model = load_model
        self._next = itertools.count()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(
            max_workers=len(devices), thread_name_prefix="bcdi-worker",
            initializer=self._init_worker,
        )
        for _ in devices:  # start the threads now, not at the first scan's stop
            self._pool.submit(_noop)

    def _init_worker(self) -> None:
        device = self.devices[next(self._next) % len(self.devices)]
        self._local.state = WorkerState(device, self._load_model)
        if self._threads:
            import torch

            torch.set_num_threads(self._threads)

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        state: WorkerState = self._local.state
        state.jobs += 1
        return fn(*args, worker=state, **kwargs)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, worker=<WorkerState>, **kwargs)`` on a worker."""
        return self._pool.submit(self._run, fn, args, kwargs)

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        """Stop the workers.

        Parameters
        ----------
        wait : bool
            Block until the running (and, unless ``cancel``, the queued) jobs are done.
        cancel : bool
            Drop the jobs that have not started yet.
        """
        self._pool.shutdown(wait=wait, cancel_futures=cancel)
