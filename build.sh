#!/usr/bin/env bash
# Builds perch.
#   ./build.sh                      install dependencies, lint, typecheck, compile to dist/, test
#   ./build.sh --no-test            the same without the test suite
#   ./build.sh dist [TARGET]...     release tarballs dist/perch-<version>-linux-<target>.tar.xz,
#                                   TARGET x64, arm64, armhf or all (the default); see scripts/dist.sh
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n== %s\n' "$*"; }

if [ "${1:-}" = dist ]; then
  shift
  exec bash scripts/dist.sh "$@"
fi
case ${1:-} in
  "" | --no-test) ;;
  *) echo "usage: ./build.sh [--no-test] | ./build.sh dist [x64|arm64|armhf|all]..." >&2; exit 2 ;;
esac

step "install (npm ci)"
npm ci --no-audit --no-fund
step "lint (biome)"
npm run lint
step "typecheck (tsc --noEmit)"
npm run typecheck
step "build (tsc -> dist/)"
find dist -mindepth 1 -maxdepth 1 ! -name '*.tar.xz' ! -name '*.sha256' -exec rm -rf {} + 2>/dev/null || true
npm run build
if [ "${1:-}" != "--no-test" ]; then
  step "test (node-tap)"
  npx tap
fi
step "done"
