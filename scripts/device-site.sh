#!/usr/bin/env bash
# Packs, for a GPU machine that cannot reach a package registry, the locked packages its own
# image lacks (docs/hardware.md#device-check): binary wheels for that machine's Python,
# at the versions in requirements.lock, unpacked into one site folder and archived.
# scripts/device-check.sh unpacks the archive there (CLNAS_DEVICE_SITE=ARCHIVE) and runs on
# the image's own torch and these packages, instead of building .venv from the registry.
#
#   scripts/device-site.sh [ARCHIVE] [PYTHON_VERSION]     (defaults: .devsite/site.tar.gz, 3.12)
#
# The archive leaves out what the check never imports and would not fit a 64 MiB transfer:
# Ray's Java jar, RLlib, Ray LLM, Ray's dashboard source maps.
set -euo pipefail
cd "$(dirname "$0")/.."
archive="${1:-.devsite/site.tar.gz}"
pyver="${2:-3.12}"
# What the device image (PyTorch, numpy, pandas, pyarrow, aiohttp, click, requests, ... ) lacks
# of clnas's run-time dependencies and their own; every version comes from requirements.lock.
names=(ray optuna SQLAlchemy alembic Mako colorlog fastapi starlette pydantic pydantic_core
  typing-inspection annotated-types annotated-doc opentelemetry-api typing_extensions uvicorn
  tensorboardX jsonschema jsonschema-specifications referencing rpds-py)

pins=()
for n in "${names[@]}"; do
  pin=$(grep -iE "^${n//[-_]/[-_]}==" requirements.lock || true)
  [ -n "$pin" ] || { echo "device-site: $n is not in requirements.lock" >&2; exit 1; }
  pins+=("$pin")
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$tmp/wheels" "${pins[@]}"
mkdir -p "$tmp/site"
# unzip keeping each member's mode (Ray's gcs_server and raylet are executables)
python3 - "$tmp/site" "$tmp"/wheels/*.whl <<'PY'
import os, sys, zipfile
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = z.extract(info, sys.argv[1])
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
PY
rm -rf "$tmp/site/ray/jars" "$tmp/site/ray/rllib" "$tmp/site/ray/llm"
# source maps only weigh; a Ray without the dashboard client is no error
if [ -d "$tmp/site/ray/dashboard/client" ]; then
  find "$tmp/site/ray/dashboard/client" -name '*.map' -delete
fi
mkdir -p "$(dirname "$archive")"
tar -C "$tmp/site" -czf "$archive" .
echo "device-site: $(du -h "$archive" | cut -f1) $archive (${#pins[@]} packages for Python $pyver)"
