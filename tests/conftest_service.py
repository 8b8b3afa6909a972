"""Real out-of-process components for the production/reliability tests: a ``tiled serve``
subprocess that can be stopped and restarted on the same port and storage, a bluesky 0MQ proxy,
and a ``bcdi-stream worker`` subprocess. Imported by the test modules (not a conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ManagedProcess", "TiledProcess", "free_port", "nice_env", "wait_for"]


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nice_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: one CPU thread each (a shared 2-core CI box)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll ``predicate()`` until true; ``TimeoutError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise TimeoutError(f"{what} not reached in {timeout} s")


class ManagedProcess:
    """A child process with its output in a log file; killed at :meth:`stop`."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.args = args
        self.log_path = Path(log_path)
        self.env = env or nice_env()
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=fh, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        fh.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send ``sig`` (SIGKILL: a crash) and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class TiledProcess(ManagedProcess):
    """``tiled serve catalog`` (SQLite catalog, file + DuckDB storage) in a subprocess, that
    can be stopped (even killed) and restarted on the same port with the same data."""

    def __init__(self, directory: Path, api_key: str, port: int | None = None,
                 readable: list[str] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.api_key = api_key
        d = self.directory
        args = [sys.executable, "-m", "tiled", "serve", "catalog", str(d / "catalog.db"),
                "-w", str(d / "data"), "-w", f"duckdb:///{d / 'storage.duckdb'}",
                "--api-key", api_key, "--port", str(self.port), "--host", "127.0.0.1"]
        for r in readable or []:
            args += ["-r", r]
        self._base_args = args
        super().__init__(args, d / "tiled.log", env=nice_env(TILED_API_KEY=""))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        return f"{self.base}/api/v1"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 90.0) -> TiledProcess:
        self.args = list(self._base_args)
        if not (self.directory / "catalog.db").exists():
            self.args.append("--init")
        super().start()
        try:
            wait_for(lambda: self.healthy() or not self.alive, timeout, "tiled /healthz")
        except TimeoutError:
            self.stop(signal.SIGKILL)
            raise
        if not self.alive:
            raise RuntimeError(f"tiled serve exited:\n{self.log()[-3000:]}")
        return self

    def client(self) -> Any:
        from tiled.client import from_uri

        return from_uri(self.uri, api_key=self.api_key)
