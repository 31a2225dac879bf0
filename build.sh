#!/usr/bin/env bash
# Builds perch: install dependencies, lint, typecheck, compile to dist/, run the tests.
# Usage: ./build.sh            (everything)
#        ./build.sh --no-test  (skip the test suite)
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n== %s\n' "$*"; }

step "install (npm ci)"
npm ci --no-audit --no-fund
step "lint (biome)"
npm run lint
step "typecheck (tsc --noEmit)"
npm run typecheck
step "build (tsc -> dist/)"
rm -rf dist
npm run build
if [ "${1:-}" != "--no-test" ]; then
  step "test (node-tap)"
  npx tap
fi
step "done"
