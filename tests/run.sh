#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine (this is what CI runs).
# Installs into the active Python environment (activate a venv first if you want one).
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU wheel of torch 2.13.0 first: an open `torch` requirement would pull a multi-GB CUDA build.
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
ruff check .
lint-imports
python -m pytest -q "$@"
