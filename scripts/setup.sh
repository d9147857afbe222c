#!/usr/bin/env bash
# Installs everything Slipway and its tests need on a fresh Debian 12 machine with Node.js:
# Debian packages (registry clients, container tools, PostgreSQL, the benchmark peer), npm
# packages, and the compiled TypeScript. Idempotent: a second run only rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql buildah skopeo runc umoci podman busybox-static docker-registry wrk apache2-utils nginx curl git iproute2 ca-certificates chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts a registry with htpasswd auth on :5000; the benchmark
# runs its own, so keep the packaged one from holding the port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# Without systemd the package's init script may have started it: stop only that one (its
# config path), never a registry the benchmark started.
pkill -f '^/usr/bin/docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true
# Debian's nginx package starts a server on :80 when installed; the benchmark runs its own
# nginx from a temp prefix, so stop the packaged one.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi
pkill -f '^nginx: master process /usr/sbin/nginx' 2>/dev/null || true

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
rm -rf dist  # a clean compile: a moved or deleted source leaves no stale output for the lint or the tests
npx --no-install tsc -p tsconfig.json
# The dashboard (web/dist, served at /): rebuilt every time, like the TypeScript.
npx --no-install tsc -p web/tsconfig.json
npx --no-install vite build --config web/vite.config.ts --logLevel warn
