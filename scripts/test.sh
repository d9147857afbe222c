#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what it needs, starts a throw-away
# PostgreSQL (db-facing tests run against SQLite and PostgreSQL), runs Node's test runner.
# Extra arguments are test files to run instead of all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Import boundaries (.dependency-cruiser.cjs) on the compiled tree; a violation fails the run.
npx --no-install depcruise dist/src --config .dependency-cruiser.cjs

pg_dir=$(mktemp -d /tmp/slipway-pg.XXXXXX)
pg_port=$((20000 + RANDOM % 20000))
cleanup() { bash scripts/postgres.sh stop "$pg_dir"; }
trap cleanup EXIT
SLIPWAY_TEST_POSTGRES_URL=$(bash scripts/postgres.sh start "$pg_dir" "$pg_port")
export SLIPWAY_TEST_POSTGRES_URL

if [ "$#" -gt 0 ]; then files=("$@"); else files=(dist/test/*.test.js); fi
node --test --test-concurrency=2 --test-timeout=600000 "${files[@]}"
