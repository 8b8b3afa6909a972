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


@pytest.mark.timeout(300)
def test_startup_files_run_a_scan_into_tiled(monkeypatch) -> None:
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
    finally:
        ns["bcdi_callback"].close()


def test_tiled_client_profiles_are_valid(monkeypatch) -> None:
    from tiled.profiles import gather_profiles

    monkeypatch.setenv("BCDI_TILED_URI", "http://tiled.example:8000/api/v1")
    (level,) = gather_profiles([TILED_PROFILES], strict=True)  # schema-validated
    (content,) = level.values()
    assert set(content) == {"bcdi-local", "bcdi-beamline"}
    assert content["bcdi-beamline"]["uri"] == "http://tiled.example:8000/api/v1"
    assert "api_key" not in str(content)  # secrets come from TILED_API_KEY only
