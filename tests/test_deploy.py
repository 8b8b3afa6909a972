"""System test of ``deploy/``: ``tiled serve config deploy/tiled/config.yml`` against a real
PostgreSQL (catalog, authentication database, table storage) and Redis (streaming cache), the
service identities from ``deploy/provision_keys.py``, a scan through RunEngine + TiledWriter +
BCDICallback with the writer key, and the read-only key refused on every write.

Runs only when ``BCDI_TEST_POSTGRESQL_URI`` names a server where this user may create databases
(e.g. ``postgresql://postgres@127.0.0.1:5432/test``); Redis from ``BCDI_TEST_REDIS_URI``
(default ``redis://127.0.0.1:6379``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest_live import one_torch_thread, tiny_settings, toy_source
from conftest_service import ManagedProcess, free_port, nice_env, wait_for

PG = os.environ.get("BCDI_TEST_POSTGRESQL_URI")
REDIS = os.environ.get("BCDI_TEST_REDIS_URI", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(not PG, reason="set BCDI_TEST_POSTGRESQL_URI to run the deploy test"),
    pytest.mark.timeout(300),
]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


def _pg(db: str) -> str:
    base = PG.rsplit("/", 1)[0]
    return f"{base}/{db}"


async def _databases(names: list[str], create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        for name in names:
            if create:
                await conn.execute(f'CREATE DATABASE "{name}"')
            else:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("deploy")
    tag = secrets.token_hex(4)
    dbs = {k: f"bcdi_test_{tag}_{k}" for k in ("catalog", "authn", "tables")}
    asyncio.run(_databases(list(dbs.values()), create=True))
    port = free_port()
    password = secrets.token_urlsafe(16)
    env = nice_env(
        TILED_SECRET_KEY=secrets.token_hex(32), BCDI_ADMIN_PASSWORD=password,
        TILED_AUTHN_DATABASE_URI=_pg(dbs["authn"]), TILED_CATALOG_URI=_pg(dbs["catalog"]),
        TILED_TABLE_STORAGE_URI=_pg(dbs["tables"]), TILED_DATA_DIR=str(tmp / "data"),
        BCDI_DETECTOR_DIR=str(tmp / "detector"), TILED_REDIS_URI=REDIS,
    )
    (tmp / "data").mkdir()
    (tmp / "detector").mkdir()
    proc = ManagedProcess(
        [sys.executable, "-m", "tiled", "serve", "config", str(ROOT / "deploy/tiled/config.yml"),
         "--host", "127.0.0.1", "--port", str(port)], tmp / "tiled.log", env=env).start()
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: healthy() or not proc.alive, 120, "tiled serve config")
        assert proc.alive, proc.log()[-3000:]
        keys = tmp / "keys"
        out = subprocess.run(
            [sys.executable, str(ROOT / "deploy/provision_keys.py"), "--tiled", base,
             "--out-dir", str(keys)], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        yield {
            "base": base, "uri": f"{base}/api/v1", "summary": summary, "stdout": out.stdout,
            "writer": (keys / "writer.key").read_text().strip(),
            "reader": (keys / "reader.key").read_text().strip(), "proc": proc, "dbs": dbs,
            "keys": keys,
        }
    finally:
        proc.stop()
        asyncio.run(_databases(list(dbs.values()), create=False))


def test_provisioned_keys_are_scoped_and_not_printed(server) -> None:
    assert server["writer"] not in server["stdout"]
    assert server["reader"] not in server["stdout"]
    for name in ("writer", "reader"):
        assert (server["keys"] / f"{name}.key").stat().st_mode & 0o777 == 0o600
    assert set(server["summary"]["reader"]["scopes"]) == {"read:metadata", "read:data"}
    assert "admin:apikeys" not in server["summary"]["writer"]["scopes"]


def test_scan_through_the_production_server(server) -> None:
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri

    from bcdi_stream.beamline import make_beamline
    from bcdi_stream.tiled_io import RESULT_ARRAYS, read_result
    from callbacks import BCDICallback

    writer = from_uri(server["uri"], api_key=server["writer"])
    RE = RunEngine({})
    RE.subscribe(TiledWriter(writer))
    cb = BCDICallback(writer, settings=tiny_settings(32), echo=None)
    RE.subscribe(cb)
    bl = make_beamline(detector_shape=(64, 80), seed=1)
    bl.load(toy_source(32, seed=7))
    (uid,) = RE(bl.rocking_curve())
    assert cb.wait(180)
    cb.close()
    assert cb.result(uid).status == "ok", cb.result(uid).line()
    reader = from_uri(server["uri"], api_key=server["reader"])
    back = read_result(reader, uid)
    assert back["metadata"]["status"] == "ok"
    assert set(back["arrays"]) == set(RESULT_ARRAYS)
    assert reader[uid]["primary"].metadata  # the raw run, readable
    # no secret in Tiled metadata
    text = json.dumps(back["metadata"]) + json.dumps(dict(reader[uid].metadata))
    assert server["writer"] not in text and server["reader"] not in text
    # the event table went to PostgreSQL table storage
    import asyncpg

    async def n_tables() -> int:
        conn = await asyncpg.connect(_pg(server["dbs"]["tables"]))
        try:
            return int(await conn.fetchval(
                "select count(*) from information_schema.tables where table_schema='public'"))
        finally:
            await conn.close()

    assert asyncio.run(n_tables()) >= 1


def test_read_only_and_missing_keys_are_refused(server) -> None:
    from tiled.client import from_uri

    from bcdi_stream.tiled_io import TiledRefused, write_failure

    api = server["uri"]
    body = {"data": {"type": "node", "attributes": {
        "structure_family": "container", "metadata": {}, "specs": []}, "id": "intruder"}}
    refused = {}
    for who, headers in (("reader", {"Authorization": f"Apikey {server['reader']}"}),
                         ("no key", {}),
                         ("bad key", {"Authorization": "Apikey not-a-key"})):
        r = httpx.post(f"{api}/metadata/", json=body, headers=headers, timeout=10)
        refused[who] = r.status_code
    assert refused["reader"] in (401, 403), refused
    assert refused["no key"] == 401 and refused["bad key"] == 401, refused
    r = httpx.get(f"{api}/metadata/", timeout=10)
    assert r.status_code == 401  # no anonymous reading either
    reader = from_uri(api, api_key=server["reader"])
    with pytest.raises(TiledRefused, match=r"40[13]"):
        write_failure(reader, "intruder-uid", "should not be written")
    assert "intruder" not in from_uri(api, api_key=server["writer"])
