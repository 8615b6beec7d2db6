#!/usr/bin/env bash
# The README run command: installs clnas into .venv and starts the service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
exec .venv/bin/clnas serve "$@"
