"""``bcdi-stream reprocess`` and ``replay`` as a user runs them (subprocesses, a real Tiled
server): a scan is reconstructed again and replaces its result; failed scans are found with
``--failed``; bad input gives exit code 2 and one line; a spool is replayed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from conftest_live import API_KEY, shared_server, tiny_settings, toy_source
from conftest_service import nice_env
from tiled.client import from_uri

from bcdi_stream.beamline import make_beamline
from bcdi_stream.tiled_io import RESULT_ARRAYS, Spool, read_result, write_failure

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def uri() -> str:
    return shared_server().uri.split("?")[0]


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "job.json"
    path.write_text(tiny_settings(32).model_dump_json())
    return path


@pytest.fixture(scope="module")
def scan_uid() -> Iterator[str]:
    client = from_uri(shared_server().uri)
    RE = RunEngine({})
    RE.subscribe(TiledWriter(client))
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    bl.load(toy_source(32, seed=60))
    (uid,) = RE(bl.rocking_curve())
    yield uid


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bcdi_stream.cli", *args], text=True,
                          capture_output=True, timeout=240,
                          env=nice_env(TILED_API_KEY=API_KEY))


@pytest.mark.slow
def test_reprocess_replaces_a_failed_record(uri, settings_file, scan_uid) -> None:
    client = from_uri(shared_server().uri)
    write_failure(client, scan_uid, "an earlier failure")
    out = _cli("reprocess", "--failed", "--tiled-uri", uri, "--settings", str(settings_file),
               "--threads", "1")
    # the shared server also holds other tests' deliberate failures (NaN frames, no detector
    # stream...): they fail again (exit 1, counted on stderr); ours must now be reconstructed
    assert out.returncode in (0, 1), out.stderr
    if out.returncode == 1:
        assert "not reconstructed" in out.stderr
    assert scan_uid[:8] in out.stdout and "strain" in out.stdout
    back = read_result(from_uri(shared_server().uri), scan_uid, arrays=False)
    assert back["metadata"]["status"] == "ok" and "error" not in back["metadata"]
    assert list(from_uri(shared_server().uri)["processed"]).count(scan_uid) == 1


@pytest.mark.parametrize("args, message", [
    (["reprocess", "../../etc"], "UID must be"),
    (["reprocess", "no-such-run-uid"], "no run no-such-run-uid"),
    (["reprocess"], "nothing to reprocess"),
    (["reprocess", "x", "--tiled-uri", "ftp://host"], "must start with http"),
    (["reprocess", "x", "--tiled-uri", "http://h/api/v1?api_key=k"], "must not carry the API"),
    (["reprocess", "x", "--settings", "/no/such.json"], "no such file"),
    (["reprocess", "x", "--method", "magic"], "method"),
    (["worker", "--zmq", "nohostport"], "--zmq must be host:port"),
    (["worker", "--zmq", "h:1", "--overflow", "drop"], "--overflow must be"),
    (["replay", "--state-dir", "/no/such/dir"], "no spool"),
])
def test_bad_input_one_line_exit_2(uri, args, message, monkeypatch, capsys) -> None:
    from bcdi_stream.cli import main

    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    if "--tiled-uri" not in args:
        args = [*args, "--tiled-uri", uri]
    code = main(args)
    out = capsys.readouterr()
    assert code == 2, (out.out, out.err)
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.err
    assert API_KEY not in out.err + out.out


def test_replay_command_writes_the_spool(uri, tmp_path) -> None:
    spool = Spool(tmp_path / "spool")
    arrays = {k: np.ones((8, 8, 8), np.float32) for k in RESULT_ARRAYS}
    spool.put_result("spooled-by-cli-test", arrays, {"method": "conventional"},
                     reason="test")
    out = _cli("replay", "--state-dir", str(tmp_path), "--tiled-uri", uri)
    assert out.returncode == 0, out.stderr
    assert "replayed 1" in out.stdout and "left 0" in out.stdout
    back = read_result(from_uri(shared_server().uri), "spooled-by-cli-test")
    assert back["metadata"]["status"] == "ok" and back["metadata"]["spooled"]["reason"]
