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
