#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine (this is what CI runs).
# Installs into the active Python environment (activate a venv first if you want one).
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU wheel of torch 2.13.0 first: an open `torch` requirement would pull a multi-GB CUDA build.
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# The production system tests (tests/test_deploy.py: `tiled serve config` from deploy/ on
# PostgreSQL + Redis) run against the local servers every project machine and CI have; set
# BCDI_TEST_POSTGRESQL_URI= (empty) to skip them where there is no PostgreSQL.
export BCDI_TEST_POSTGRESQL_URI="${BCDI_TEST_POSTGRESQL_URI-postgresql://postgres@127.0.0.1:5432/test}"
export BCDI_TEST_REDIS_URI="${BCDI_TEST_REDIS_URI-redis://127.0.0.1:6379}"
ruff check .
lint-imports
python -m pytest -q "$@"
