#!/usr/bin/env bash
# Install what edgelite needs on a fresh Debian 12 machine (run as root, or with sudo on
# PATH): the build and test packages, and the npm packages of tests/client (pinned by
# its lockfile). Idempotent and quick when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libsqlite3-dev sqlite3 libuv1-dev libhttp-parser-dev libwslay-dev libjansson-dev libyaml-dev
      libzstd-dev libsodium-dev libcmocka-dev libedit-dev
      nginx-light redis-server curl ca-certificates)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if ! command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then missing+=(npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # nginx and redis are benchmark baselines only; keep their services from starting.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Packages never run as services here; benchmarks start their own instances.
if [ -n "${NPM_SKIP:-}" ]; then exit 0; fi
if [ -f tests/client/package-lock.json ]; then
  if [ ! -d tests/client/node_modules/@libsql/client ] || \
     [ tests/client/package-lock.json -nt tests/client/node_modules/.package-lock.json ]; then
    echo "bootstrap: npm ci in tests/client"
    (cd tests/client && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
