#!/usr/bin/env bash
# Create .venv (if missing) and install clnas with the given extras. torch is installed first and
# pinned to the CPU build 2.13.0: a looser requirement resolved from scratch pulls CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
