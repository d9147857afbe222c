#!/usr/bin/env bash
# Starts Slipway with the embedded defaults (SQLite and blobs in ./data), after installing what
# it needs. Extra arguments go to `slipway serve`, e.g. --listen 0.0.0.0:5000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec ./bin/slipway.js serve --listen "${SLIPWAY_LISTEN:-127.0.0.1:5000}" --data-dir "${SLIPWAY_DATA_DIR:-./data}" "$@"
