#!/usr/bin/env bash
# The upgrade check we run before users do: a separate virtualenv (.venv-latest) with the
# newest versions pyproject.toml's ranges allow (no lock), then the test suite against them.
# Prints the versions it resolved. Extra arguments go to pytest (default: the quick tier, every
# test but the slow, browser and gpu ones; docs/development.md).
#
# torch stays at the CPU build (TORCH_VERSION, default 2.13.0): a newer torch from PyPI is a
# multi-gigabyte CUDA build. Set TORCH_VERSION to check a newer release where one is at hand.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
venv=.venv-latest
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
# the constraint keeps torch where it is while everything else moves to its newest release
echo "torch==${TORCH_VERSION:-2.13.0}" > "$venv/torch-constraint.txt"
"$venv/bin/python" -m pip install -q --upgrade --upgrade-strategy eager \
  -c "$venv/torch-constraint.txt" -e ".[test,check,export]"
"$venv/bin/python" -m pip check
echo "== resolved (newest allowed):"
"$venv/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(torch|optuna|optuna-dashboard|ray|sqlalchemy|alembic|fastapi|starlette|pydantic|onnx|onnxruntime|onnxscript|numpy|uvicorn|schemathesis|playwright)==' \
  | tee "$venv/resolved.txt"
if [ "$#" -eq 0 ]; then set -- -m "not slow and not browser and not gpu"; fi
"$venv/bin/python" -m pytest "$@"
