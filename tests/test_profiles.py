"""The IPython beamline profile: its startup files, executed in order in one namespace (as
IPython does, without IPython), give a RunEngine that writes to Tiled and reconstructs a scan;
the Tiled client profile file is valid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_live import one_torch_thread, shared_server

STARTUP = Path(__file__).resolve().parents[1] / "profiles" / "profile_bcdi" / "startup"
TILED_PROFILES = Path(__file__).resolve().parents[1] / "profiles" / "tiled"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


def _load_startup(ns: dict) -> list[str]:
    files = sorted(STARTUP.glob("[0-9][0-9]-*.py"))
    for path in files:
        code = compile(path.read_text(), str(path), "exec")
        exec(code, ns)
    return [p.name for p in files]


def _run_file(name: str, ns: dict) -> dict:
    path = STARTUP / name
    exec(compile(path.read_text(), str(path), "exec"), ns)
    return ns


@pytest.mark.timeout(300)
def test_startup_files_run_a_scan_into_tiled(monkeypatch, capsys, caplog) -> None:
    server = shared_server()
    monkeypatch.setenv("TILED_URI", server.uri)
    monkeypatch.setenv("BCDI_LIVE_SHAPE", "32")
    monkeypatch.setenv("BCDI_LIVE_METHOD", "conventional")
    monkeypatch.setenv("BCDI_DEVICE", "cpu")
    monkeypatch.delenv("BCDI_LIVE_FIGURE", raising=False)
    ns: dict = {"__name__": "__main__"}
    names = _load_startup(ns)
    assert names == sorted(names) and names[0].startswith("00-")
    try:
        RE, cb = ns["RE"], ns["bcdi_callback"]
        assert ns["tiled_server"] is None  # TILED_URI given: no embedded server
        # TiledWriter is subscribed before the BCDI callback (tokens grow in order)
        assert ns["tiled_writer_token"] < ns["bcdi_callback_token"]
        ns["load_crystal"](2, "weak", n=32)
        (uid,) = RE(ns["rc"]())
        assert cb.wait(120)
        res = cb.result(uid)
        assert res.status == "ok", res.error
        from tiled.client import from_uri

        node = from_uri(server.uri)["processed"][uid]
        assert node.metadata["status"] == "ok"
        assert node.metadata["scan"]["plan_name"] == "rocking_curve"
        # the summary line reaches the session once (the bcdi_stream.live logger, set up by
        # 00-base.py), not a second time through print
        line = res.line()
        logged = [r for r in caplog.records
                  if r.name == "bcdi_stream.live" and r.getMessage() == line]
        printed = capsys.readouterr()
        assert len(logged) + (printed.out + printed.err).count(line) == 1, printed
        assert len(logged) == 1 and logged[0].levelname == "INFO"
    finally:
        ns["bcdi_callback"].close()


def test_rc_checks_its_arguments_when_called() -> None:
    """`RE(rc(num=1))` raises at once, before the RunEngine opens a run."""
    from bluesky import RunEngine

    from bcdi_stream.beamline import make_beamline

    bl = make_beamline(detector_shape=(64, 80), seed=1)
    ns = _run_file("40-plans.py", {"det": bl.detector, "eta": bl.motor})
    with pytest.raises(ValueError, match="num"):
        ns["rc"](num=1)
    RE = RunEngine({})
    docs: list = []
    RE.subscribe(lambda name, doc: docs.append(name))
    with pytest.raises(ValueError, match="num"):
        RE(ns["rc"](num=1))
    assert docs == []


@pytest.mark.parametrize(("value", "level"), [("debug", 10), ("Info", 20), ("", 30), ("40", 40)])
def test_log_level_from_the_environment(value: str, level: int) -> None:
    """BCDI_LOG_LEVEL in any case (or a number) works; logging alone refuses "debug"."""
    import os
    import subprocess
    import sys

    code = ("import logging; exec(open(r'%s').read()); "
            "print(logging.getLogger().level)") % (STARTUP / "00-base.py")
    env = {**os.environ, "BCDI_LOG_LEVEL": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(level)


@pytest.mark.parametrize(
    ("file", "var", "value"),
    [("00-base.py", "BCDI_LOG_LEVEL", "loud"), ("20-devices.py", "BCDI_SIM_SEED", "x"),
     ("20-devices.py", "BCDI_SIM_EXPOSURE", "fast"), ("30-bcdi.py", "BCDI_LIVE_SHAPE", "abc")],
)
def test_bad_environment_settings_name_the_variable(monkeypatch, file, var, value) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var) as err:  # raised before anything is set up
        _run_file(file, {"__name__": "__main__"})
    assert value in str(err.value) and "\n" not in str(err.value)


def test_tiled_client_profiles_are_valid(monkeypatch) -> None:
    from tiled.profiles import gather_profiles

    monkeypatch.setenv("BCDI_TILED_URI", "http://tiled.example:8000/api/v1")
    (level,) = gather_profiles([TILED_PROFILES], strict=True)  # schema-validated
    (content,) = level.values()
    assert set(content) == {"bcdi-local", "bcdi-beamline"}
    assert content["bcdi-beamline"]["uri"] == "http://tiled.example:8000/api/v1"
    assert "api_key" not in str(content)  # secrets come from TILED_API_KEY only


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", ["refused", "silent"])
def test_unreachable_tiled_server_gives_one_line_and_a_usable_session(tmp_path, server) -> None:
    """A real ``ipython --profile-dir`` session with TILED_URI where nothing answers (the port is
    closed, or open but silent): 10-tiled.py says so in one line within seconds, instead of the
    Tiled client's ~45 s of "Retrying…" and a traceback that stopped the later startup files;
    the beamline and the plans still work, without Tiled, and 30-bcdi.py subscribes no
    callback (it raised "tiled_client is required", which stopped 40-plans.py)."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    profile = tmp_path / "profile_bcdi"
    (profile / "startup").mkdir(parents=True)
    for name in ("00-base.py", "10-tiled.py", "20-devices.py", "30-bcdi.py", "40-plans.py"):
        shutil.copy(STARTUP / name, profile / "startup" / name)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if server == "refused":
        listener.close()
    else:
        listener.listen(8)  # connections complete in the kernel's backlog, nothing answers
    code = ("load_crystal(1, 'weak', n=16); (uid,) = RE(rc()); "
            "print('SESSION', tiled_client is None, tiled_writer is None, "
            "tiled_writer_token is None, bcdi_callback is None, len(uid))")
    env = {**os.environ, "TILED_URI": f"http://127.0.0.1:{port}/api/v1",
           "IPYTHONDIR": str(tmp_path / "ipython"), "OMP_NUM_THREADS": "1"}
    try:
        out = subprocess.run([sys.executable, "-m", "IPython", f"--profile-dir={profile}",
                              "--no-banner", "-c", code], env=env, capture_output=True,
                             text=True, timeout=200, cwd=tmp_path)
    finally:
        listener.close()
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Traceback" not in text and "Retrying" not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("10-tiled.py:")]
    assert len(lines) == 1, text
    assert f"http://127.0.0.1:{port}" in lines[0] and "live phasing is off" in lines[0]
    assert ("ConnectError" if server == "refused" else "Timeout") in lines[0]
    assert "SESSION True True True True 36" in text, text
    assert "30-bcdi.py: live phasing is off" in text
