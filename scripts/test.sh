#!/usr/bin/env bash
# The README test command: installs everything the tests need on a bare machine, then runs the
# linters and the whole suite (slow tier included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh test
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
