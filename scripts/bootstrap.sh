#!/usr/bin/env bash
# Install what edgelite needs on a fresh Debian 12 machine (run as root, or with sudo on
# PATH): the build and test packages, and the npm packages of tests/client (pinned by
# its lockfile). Idempotent and quick when everything is present. One line per step.
#
# nginx-light and redis-server are benchmark baselines only: bench/run.sh and
# bench/crdt_http.sh start their own instances on private ports. Their system services
# must never run (Debian starts and enables them at install: nginx would take port 80 and
# redis 6379, at install and on every boot). So while apt-get installs, a policy-rc.d that
# answers 101 ("action forbidden") keeps every package's service from starting, and right
# after, the services of the packages this run installed are disabled: `systemctl disable
# --now` on a running systemd, an offline `systemctl disable` elsewhere (a container).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "bootstrap: $*"; }

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libsqlite3-dev sqlite3 libuv1-dev libhttp-parser-dev libwslay-dev libjansson-dev libyaml-dev
      libzstd-dev libsodium-dev libssl-dev openssl libcmocka-dev libedit-dev libprotobuf-c-dev protobuf-c-compiler
      nginx-light redis-server curl ca-certificates)
# Package -> the system service it brings, which bootstrap keeps off.
declare -A SERVICE_OF=([nginx-light]=nginx.service [redis-server]=redis-server.service)

POLICY=/usr/sbin/policy-rc.d
POLICY_SAVED=$POLICY.edgelite-bootstrap-saved
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs npm); fi
if ! command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then missing+=(npm); fi

# Put back whatever policy-rc.d was there before (Docker images ship one).
restore_policy() {
  if [ -e "$POLICY_SAVED" ]; then
    $SUDO mv -f "$POLICY_SAVED" "$POLICY"
  else
    $SUDO rm -f "$POLICY"
  fi
}

did=0
if [ ${#missing[@]} -gt 0 ]; then
  did=1
  export DEBIAN_FRONTEND=noninteractive
  say "apt-get update"
  $SUDO apt-get update -qq
  say "installing ${missing[*]}"
  if [ -e "$POLICY" ]; then $SUDO mv -f "$POLICY" "$POLICY_SAVED"; fi
  trap restore_policy EXIT
  printf '#!/bin/sh\n# scripts/bootstrap.sh: no service starts while it installs packages.\nexit 101\n' |
    $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  restore_policy
  trap - EXIT

  units=()
  for p in "${missing[@]}"; do
    if [ -n "${SERVICE_OF[$p]:-}" ]; then units+=("${SERVICE_OF[$p]}"); fi
  done
  if [ ${#units[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
      say "disabling ${units[*]} (benchmarks start their own instances)"
      $SUDO systemctl disable --now --quiet "${units[@]}" ||
        say "warning: could not disable ${units[*]}; stop them with 'systemctl disable --now'"
    else
      # No running systemd: only remove the boot links, should this system ever boot with it.
      say "disabling ${units[*]} at boot (no running systemd; nothing was started)"
      $SUDO systemctl disable --quiet "${units[@]}" >/dev/null 2>&1 ||
        say "warning: could not disable ${units[*]} at boot"
    fi
  fi
fi

# True when tests/client/node_modules holds every package of the lockfile at its pinned
# version (optional, platform-specific ones may be absent). By content, not by file dates:
# a fresh checkout makes the lockfile look newer than an install that matches it.
npm_in_sync() {
  (cd tests/client && node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    for (const [k, v] of Object.entries(lock.packages || {})) {
      if (!k.startsWith("node_modules/")) continue;
      let have = null;
      try { have = JSON.parse(fs.readFileSync(k + "/package.json", "utf8")).version; } catch { /* absent */ }
      if (have === null ? !v.optional : have !== v.version) process.exit(1);
    }' 2>/dev/null)
}

if [ -z "${NPM_SKIP:-}" ] && [ -f tests/client/package-lock.json ]; then
  if ! npm_in_sync; then
    did=1
    say "npm ci in tests/client"
    (cd tests/client && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

if [ $did = 0 ]; then say "nothing to install"; fi
