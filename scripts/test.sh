#!/usr/bin/env bash
# The README test command: installs everything the tests need on a bare machine, then runs the
# linters and the whole suite (slow tier included; docs/development.md). Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
# The dashboard's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download is not used); install it on a bare machine.
if ! command -v chromium >/dev/null 2>&1; then
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo"; fi
  $as_root apt-get update -q
  $as_root apt-get install -y -q chromium
fi
.venv/bin/ruff check .
.venv/bin/mypy
# Every tier (pyproject's addopts deselect the slow one for a plain `pytest`); a -m given here
# comes later and wins.
.venv/bin/python -m pytest -m "slow or not slow" "$@"
