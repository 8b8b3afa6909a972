"""``deploy/`` files, checked without PostgreSQL (the full system test is test_deploy.py): the
Tiled config validates against tiled's own schema with the documented variables, holds no
secret, and every variable it uses is listed in ``bcdi.env.example``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "tiled" / "config.yml"
ENV = ROOT / "deploy" / "bcdi.env.example"


def _example_env() -> dict[str, str]:
    out = {}
    for line in ENV.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def test_config_validates_with_tiled_schema(monkeypatch, tmp_path) -> None:
    from tiled.config import parse_configs

    env = _example_env()
    env.update(TILED_DATA_DIR=str(tmp_path / "data"), BCDI_DETECTOR_DIR=str(tmp_path / "det"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    config = parse_configs(CONFIG)
    (tree,) = config.trees  # tiled turns the `catalog:` section into one tree
    assert str(tree.args["uri"]).startswith("postgresql://")
    assert str(tree.args["writable_storage"][1]).startswith("postgresql://")
    assert tree.args["readable_storage"] == [str(tmp_path / "det")]
    assert config.streaming_cache.uri.startswith("redis://")
    assert config.authentication.allow_anonymous_access is False
    assert config.database.uri.startswith("postgresql://")


def test_every_variable_is_documented_and_no_secret_in_files() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", CONFIG.read_text()))
    documented = set(_example_env())
    assert used <= documented, used - documented
    for path in (ROOT / "deploy").rglob("*"):
        if path.is_file() and path.suffix in (".yml", ".service", ".py", ".sh", ""):
            text = path.read_text()
            assert not re.search(r"(?i)(password|secret|api_key)\s*[:=]\s*['\"]?[A-Za-z0-9]{12,}",
                                 text), path


def test_proxy_output_is_local_and_worker_stop_outlasts_its_drain() -> None:
    """The proxy's output (every document) binds localhost where the worker runs on the proxy
    host; only the RunEngine's input port is published. systemd/compose wait longer than the
    worker's drain (it then exits by itself), so they never SIGKILL it mid-write."""
    units = ROOT / "deploy" / "systemd"
    proxy = (units / "bcdi-0mq-proxy.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", proxy, re.M)
    assert "--out-address 127.0.0.1:5578" in exec_start
    assert _example_env()["BCDI_ZMQ_ADDRESS"] == "127.0.0.1:5578"
    compose = (ROOT / "deploy" / "compose.yml").read_text()
    assert "5578:" not in compose and '"5577:5577"' in compose
    drain = float(_example_env().get("BCDI_DRAIN_TIMEOUT", 60))
    (stop_s,) = re.findall(r"^TimeoutStopSec=(\d+)$", (units / "bcdi-worker.service").read_text(),
                           re.M)
    assert float(stop_s) >= drain + 10
    (grace,) = re.findall(r"stop_grace_period: (\d+)s", compose)
    assert float(grace) >= drain + 10
    ops = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert "One worker per proxy" in ops and "not authenticated" in ops


def test_secrets_stay_out_of_git_and_the_image() -> None:
    """``deploy/.env`` and the provisioned keys are neither committed nor copied into the image
    (the Dockerfile copies ``deploy/`` with the repository root as its context)."""
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert "/deploy/.env" in gitignore and "/deploy/keys/" in gitignore
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert "**/.env" in dockerignore and "deploy/keys" in dockerignore
    assert "POSTGRES_PASSWORD" in _example_env()  # compose refuses to start without it
