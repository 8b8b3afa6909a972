"""``bcdi-stream worker``, ``reprocess`` and ``replay``: the production service commands.

Every option has an environment variable (``BCDI_*``; the API key only ever from
``TILED_API_KEY`` or a prompt-free option, never printed): systemd units and containers set
them in an environment file (``deploy/``). Options on the command line override them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register_service_commands", "replay_command", "reprocess_command",
           "worker_command"]

log = logging.getLogger("bcdi_stream.live")

TiledUri = Annotated[str, typer.Option(
    "--tiled-uri", envvar="BCDI_TILED_URI", show_envvar=True,
    help="Tiled server, http://host:8000/api/v1.")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", envvar="TILED_API_KEY", show_envvar=True, show_default=False,
    help="Tiled API key with write scopes (prefer the environment variable).")]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", envvar="BCDI_STATE_DIR", show_envvar=True,
    help="Spool (results kept while Tiled is down) and journal (scans in progress).")]
SettingsFile = Annotated[Path | None, typer.Option(
    "--settings", envvar="BCDI_JOB_SETTINGS", show_envvar=True,
    help="JobSettings as a JSON file (shape, method, phasing, read_timeout...).")]
Method = Annotated[str | None, typer.Option(
    envvar="BCDI_METHOD", show_envvar=True, help="auto, conventional or ai.")]
Device = Annotated[str | None, typer.Option(
    envvar="BCDI_DEVICE", show_envvar=True, help="auto, cpu, cuda, cuda:1...")]
Threads = Annotated[int, typer.Option(
    min=0, envvar="BCDI_THREADS", show_envvar=True, help="torch CPU threads (0: default).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")]


def _fail(reason: object, code: int = 2) -> None:
    typer.echo(f"bcdi-stream: error: {' '.join(str(reason).split())}", err=True)
    raise typer.Exit(code)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _settings(path: Path | None, method: str | None, device: str | None) -> Any:
    from pydantic import ValidationError

    from bcdi_stream.tiled_io import JobSettings

    try:
        data: dict[str, Any] = {}
        if path is not None:
            if not path.is_file():
                _fail(f"--settings: no such file {path}")
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                _fail(f"--settings: {path} must hold a JSON object")
        if method is not None:
            data["method"] = method
        if device is not None:
            data["device"] = device
        return JobSettings.model_validate(data)
    except json.JSONDecodeError as exc:
        _fail(f"--settings: {path} is not JSON: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"settings: {'.'.join(map(str, first['loc']))}: {first['msg']}")


def _client(uri: str, api_key: str | None) -> Any:
    from tiled.client import from_uri

    if not uri.startswith(("http://", "https://")):
        _fail(f"--tiled-uri must start with http:// or https://, got {uri!r}")
    if "api_key=" in uri:
        _fail("--tiled-uri must not carry the API key; use TILED_API_KEY")
    try:
        return from_uri(uri, api_key=api_key or None)
    except Exception as exc:
        code = getattr(getattr(exc, "response", None), "status_code", None)
        reason = f"HTTP {code}" if code else type(exc).__name__
        _fail(f"cannot open Tiled at {uri} ({reason})")


def _threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def worker_command(
    zmq: Annotated[str, typer.Option(
        "--zmq", envvar="BCDI_ZMQ_ADDRESS", show_envvar=True,
        help="The 0MQ proxy's output, host:port (bluesky-0MQ-proxy --out-address).")],
    tiled_uri: TiledUri,
    api_key: ApiKey = None,
    state_dir: StateDir = None,
    settings: SettingsFile = None,
    method: Method = None,
    device: Device = None,
    threads: Threads = 0,
    dask_scheduler: Annotated[str | None, typer.Option(
        envvar="BCDI_DASK_SCHEDULER", show_envvar=True,
        help="Run the jobs on this Dask cluster (tcp://host:8786) instead of local workers.")
    ] = None,
    dask_gpu: Annotated[bool, typer.Option(
        envvar="BCDI_DASK_GPU", help="Each Dask task needs one 'GPU' resource.")] = False,
    max_pending: Annotated[int, typer.Option(
        min=0, envvar="BCDI_MAX_PENDING", show_envvar=True,
        help="Most scans queued or running (0: unbounded).")] = 64,
    overflow: Annotated[str, typer.Option(
        envvar="BCDI_OVERFLOW", show_envvar=True,
        help="Beyond --max-pending: 'record' (failure record 'queue full') or 'block'.")
    ] = "record",
    catch_up: Annotated[float, typer.Option(
        min=0, envvar="BCDI_CATCH_UP_HOURS", show_envvar=True,
        help="At start, reconstruct finished scans of the last N hours with no result.")
    ] = 0.0,
    replay_interval: Annotated[float, typer.Option(
        min=0, envvar="BCDI_REPLAY_INTERVAL", help="Seconds between spool replays.")] = 30.0,
    drain_timeout: Annotated[float, typer.Option(
        min=0, envvar="BCDI_DRAIN_TIMEOUT", show_envvar=True,
        help="At SIGTERM, seconds queued and running jobs may take; then exit, what is left "
             "stays in the journal (re-run at the next start).")] = 60.0,
    prefix: Annotated[str, typer.Option(help="0MQ topic prefix.")] = "",
    pickle: Annotated[bool, typer.Option(
        "--pickle", help="Documents are pickled (bluesky's default Publisher); only on a "
        "trusted network.")] = False,
    verbose: Verbose = False,
) -> None:
    """Reconstruct every finished rocking curve published to a 0MQ proxy (until SIGTERM)."""
    _logging(verbose)
    from callbacks._worker import json_deserializer, run_worker

    if overflow not in ("record", "block"):
        _fail(f"--overflow must be 'record' or 'block', got {overflow!r}")
    host, _, port = zmq.rpartition(":")
    if not host or not port.isdigit():
        _fail(f"--zmq must be host:port, got {zmq!r}")
    job = _settings(settings, method, device)
    _threads(threads)
    client = _client(tiled_uri, api_key)
    executor = None
    if dask_scheduler:
        from distributed import Client

        executor = Client(dask_scheduler)
    import pickle as _pickle

    cb = run_worker(
        (host, int(port)), client, prefix=prefix.encode(),
        deserializer=_pickle.loads if pickle else json_deserializer,
        catch_up=catch_up, drain_timeout=drain_timeout, settings=job, executor=executor,
        state_dir=state_dir, max_pending=max_pending, overflow=overflow,
        replay_interval=replay_interval, dask_resources={"GPU": 1} if dask_gpu else None,
        echo=lambda s: typer.echo(s),
    )
    if cb.pending:
        # the drain is over: a running job cannot be stopped, and the interpreter would wait
        # for its thread (past systemd's TimeoutStopSec: a SIGKILL mid-write). Its journal
        # entry re-runs it at the next start; exit now.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)


def reprocess_command(
    uids: Annotated[list[str] | None, typer.Argument(
        metavar="UID...", help="Raw run uids to reconstruct again.", show_default=False)
    ] = None,
    tiled_uri: TiledUri = "",
    api_key: ApiKey = None,
    failed: Annotated[bool, typer.Option(
        "--failed", help="Also every scan whose result is a failure record, or a record left "
        "'writing' for over 10 minutes (its writer died mid-write).")] = False,
    missing: Annotated[float, typer.Option(
        min=0, help="Also finished scans of the last N hours that have no result.")] = 0.0,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Reconstruct aborted or incomplete rocking curves too (else they "
        "are recorded as skipped again, as the live service does).")] = False,
    settings: SettingsFile = None,
    method: Method = None,
    device: Device = None,
    threads: Threads = 0,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for all.")] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")
                       ] = False,
    verbose: Verbose = False,
) -> None:
    """Re-run past scans from Tiled; each result replaces ``processed/<uid>``.

    Exit code 1 when any scan failed, 2 on bad input.
    """
    _logging(verbose)
    from bcdi_stream.tiled_io import check_uid
    from callbacks import BCDICallback, WorkerPool
    from callbacks._executors import devices_for
    from callbacks._worker import find_unprocessed

    if not tiled_uri:
        _fail("--tiled-uri (or BCDI_TILED_URI) is required")
    todo = list(dict.fromkeys(uids or []))
    for uid in todo:
        try:
            check_uid(uid, "UID")
        except ValueError as exc:
            _fail(exc)
    job = _settings(settings, method, device)
    if partial:
        job = job.model_copy(update={"partial_runs": True})
    client = _client(tiled_uri, api_key)
    explicit = list(todo)
    if failed:
        from tiled.queries import Key

        from bcdi_stream.tiled_io import stale_writing

        pkey = job.processed_key
        if pkey in client:
            todo += [u for u in client[pkey].search(Key("status") == "failed")
                     if u not in todo]
            todo += [u for u in stale_writing(client, pkey) if u not in todo]
    if missing:
        todo += [u for u in find_unprocessed(client, missing, processed_key=job.processed_key)
                 if u not in todo]
    if not todo:
        _fail("nothing to reprocess: give UIDs, --failed or --missing")
    for uid in explicit:
        if uid not in client:
            _fail(f"no run {uid} in Tiled at {tiled_uri}")
    gone = [u for u in todo if u not in explicit and u not in client]
    for uid in gone:  # a failure record whose raw run was deleted: nothing to re-run
        typer.echo(f"bcdi-stream: skipping {uid}: its raw run is no longer in Tiled", err=True)
    todo = [u for u in todo if u not in gone]
    if not todo:
        _fail("nothing to reprocess: the failed/missing scans have no raw run in Tiled")
    cb = BCDICallback(client, settings=job,
                      executor=WorkerPool(devices=devices_for(job.device), threads=threads),
                      echo=None if as_json else (lambda s: typer.echo(s)), max_pending=0)
    for uid in todo:
        cb.submit(uid)
    done = cb.wait(timeout)
    cb.close(wait=done, cancel=not done)
    rows = [cb.result(u).to_dict() for u in todo if u in {r.raw_uid for r in cb.results}]
    if as_json:
        typer.echo(json.dumps(rows, default=str))
    bad = [r for r in rows if r["status"] != "ok"]
    if not done or bad:
        typer.echo(f"bcdi-stream: {len(bad) + len(todo) - len(rows)} of {len(todo)} scans "
                   "not reconstructed", err=True)
        raise typer.Exit(1)


def replay_command(
    state_dir: Annotated[Path, typer.Option(
        "--state-dir", envvar="BCDI_STATE_DIR", show_envvar=True,
        help="The worker's state directory (its spool/ is replayed).")],
    tiled_uri: TiledUri,
    api_key: ApiKey = None,
    settings: SettingsFile = None,
    verbose: Verbose = False,
) -> None:
    """Write the results spooled while Tiled was unreachable (re-run scans that could not be
    read). Exit code 1 when entries remain."""
    _logging(verbose)
    from callbacks import BCDICallback

    if not (state_dir / "spool").is_dir():
        _fail(f"--state-dir: no spool in {state_dir}")
    client = _client(tiled_uri, api_key)
    cb = BCDICallback(client, settings=_settings(settings, None, None), state_dir=state_dir,
                      replay_interval=0, recover=False, echo=lambda s: typer.echo(s))
    report = cb.replay()
    cb.wait()
    cb.close()
    assert report is not None
    if report.busy:
        typer.echo("another replay of this spool is running (the worker's replay thread or "
                   "another `bcdi-stream replay`): nothing done here", err=True)
    typer.echo(f"replayed {len(report.written)}, re-ran {len(report.rerun)}, "
               f"refused {len(report.refused)}, left {report.remaining}"
               + (f" (Tiled unreachable: {report.unreachable})" if report.unreachable else ""))
    if report.remaining:
        raise typer.Exit(1)


def register_service_commands(app: typer.Typer) -> None:
    """Add ``worker``, ``reprocess`` and ``replay`` to the ``bcdi-stream`` app."""
    app.command("worker")(worker_command)
    app.command("reprocess")(reprocess_command)
    app.command("replay")(replay_command)
