#!/usr/bin/env bash
# Create .venv (if missing) and install the exact versions in requirements.lock, then clnas
# itself (editable, no dependency resolution: the lock is the whole environment). torch is
# installed first and pinned to the CPU build 2.13.0: a looser requirement resolved from scratch
# pulls CUDA wheels. Refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -m pip check
