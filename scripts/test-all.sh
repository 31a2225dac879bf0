#!/usr/bin/env bash
# Installs the test prerequisites (Debian packages, npm packages), builds, lints and runs
# every test; the last line is "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v mariadbd >/dev/null 2>&1 || need_apt+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need_apt+=(mariadb-client)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++ make)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null || {
    echo "apt-get install failed"; echo "0 passed, 1 failed"; exit 1; }
fi

npm ci --no-audit --no-fund || { echo "npm ci failed"; echo "0 passed, 1 failed"; exit 1; }

failed_steps=0
npm run build || failed_steps=$((failed_steps + 1))
npm run typecheck || failed_steps=$((failed_steps + 1))
npm run lint || failed_steps=$((failed_steps + 1))

# The release tarballs the tests in test/release inspect and install: x64 (this machine's), arm64
# and armhf, each written only after its selftest passed (under qemu for the ARM targets).
bash scripts/dist.sh x64 arm64 armhf || { echo "scripts/dist.sh failed"; failed_steps=$((failed_steps + 1)); }

out=$(mktemp)
npx tap --reporter=tap 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
# node-tap's TAP stream: count the named tests (one level inside each file); a file that
# failed without reporting a failing test (it did not load, or crashed) counts as one failure.
passed=$(grep -cE '^    ok [0-9]+' "$out" || true)
failed=$(grep -cE '^    not ok [0-9]+' "$out" || true)
file_failures=$(grep -cE '^not ok [0-9]+' "$out" || true)
if [ "$failed" -eq 0 ] && [ "$file_failures" -gt 0 ]; then failed=$file_failures; fi
rm -f "$out"
failed=$((failed + failed_steps))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
