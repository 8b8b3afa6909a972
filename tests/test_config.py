"""The settings file: it must exist and hold only known keys; the environment stays lenient."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcdi_stream.config import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch) -> None:
    monkeypatch.delenv("BCDI_CONFIG", raising=False)


@pytest.mark.parametrize("target", ["missing", "directory"])
def test_bcdi_config_that_is_not_a_file_is_an_error(tmp_path: Path, monkeypatch, target) -> None:
    path = tmp_path / "missing.toml" if target == "missing" else tmp_path
    monkeypatch.setenv("BCDI_CONFIG", str(path))
    with pytest.raises(ValueError, match="BCDI_CONFIG") as err:
        load_settings()
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("text", "key", "hint"), [
    ('devise = "cpu"\n', "'devise'", "'device'"),
    ("[phasing]\nrun = 7\n", "'phasing.run'", "'phasing.runs'"),
    ("[ai]\nviews = 2\nn_err = 3\n", "'ai.n_err'", "'ai.n_er'"),
    ("[phasin]\nruns = 7\n", "'phasin'", "'phasing'"),
])
def test_unknown_keys_of_the_file_are_named(tmp_path: Path, monkeypatch, text, key,
                                            hint) -> None:
    cfg = tmp_path / "bcdi.toml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match="unknown key") as err:
        load_settings(cfg)
    msg = str(err.value)
    assert key in msg and hint in msg and str(cfg) in msg and "\n" not in msg
    monkeypatch.setenv("BCDI_CONFIG", str(cfg))  # the same through the environment
    with pytest.raises(ValueError, match="unknown key"):
        load_settings()


def test_known_keys_load_and_unknown_env_vars_are_ignored(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "bcdi.toml"
    cfg.write_text('device = "cpu"\nthreads = 1\nseed = 4\n[phasing]\nruns = 3\npsf = "off"\n'
                   "[ai]\nviews = 2\nfallback_runs = 5\n")
    # other parts of the system read their own BCDI_* variables: they must not break settings
    monkeypatch.setenv("BCDI_LIVE_METHOD", "ai")
    monkeypatch.setenv("BCDI_TILED_URI", "http://localhost:8000")
    monkeypatch.setenv("BCDI_PHASING__NOT_A_KEY", "3")
    s = load_settings(cfg)
    assert (s.device, s.threads, s.seed, s.phasing.runs, s.phasing.psf, s.ai.views,
            s.ai.fallback_runs) == ("cpu", 1, 4, 3, "off", 2, 5)


def test_invalid_toml_and_seed_range(tmp_path: Path) -> None:
    cfg = tmp_path / "bcdi.toml"
    cfg.write_text("[phasing\nruns = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_settings(cfg)
    cfg.write_text(f"seed = {2**63}\n")
    with pytest.raises(ValueError, match="seed"):
        load_settings(cfg)
