#!/bin/sh
# perch installer for Debian and Raspberry Pi OS (bookworm or newer).
#
#   install.sh [--root DIR] [--no-start] [--no-selftest] [--force] [TARBALL | RELEASE_DIR]
#   install.sh [--root DIR] [--no-start] --rollback
#   install.sh [--root DIR] [--no-start] --uninstall [--purge]
#
# Without TARBALL it installs the release it sits in (after `tar xf perch-*.tar.xz`).
# Releases live in /opt/perch/releases/<version>; /opt/perch/current points at the running one
# and /opt/perch/previous at the one before, for --rollback. Config (/etc/perch) and state
# (/var/lib/perch) are never touched by an upgrade or a rollback; --uninstall keeps them
# unless --purge. --root DIR prefixes every path with DIR (for packaging tests and images)
# and implies --no-start.
set -eu

ROOT=
MODE=install
SOURCE=
START=1
SELFTEST=1
FORCE=0
PURGE=0
KEEP_RELEASES=3

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "perch: $*"; }
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$(cd "$2" 2>/dev/null && pwd) || die "--root: $2 is not a directory"; shift ;;
    --root=*) ROOT=$(cd "${1#--root=}" 2>/dev/null && pwd) || die "--root: ${1#--root=} is not a directory" ;;
    --rollback) MODE=rollback ;;
    --uninstall) MODE=uninstall ;;
    --purge) PURGE=1 ;;
    --no-start) START=0 ;;
    --no-selftest) SELFTEST=0 ;;
    --force) FORCE=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$SOURCE" ] || die "one tarball at a time"; SOURCE=$1 ;;
  esac
  shift
done
[ "$ROOT" = / ] && ROOT=
[ -n "$ROOT" ] && START=0
[ "$PURGE" = 1 ] && [ "$MODE" != uninstall ] && die "--purge goes with --uninstall"
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo $0 ...)"; fi

OPT=$ROOT/opt/perch
UNIT=$ROOT/etc/systemd/system/perch.service
SYSUSERS=$ROOT/usr/lib/sysusers.d/perch.conf
LINK=$ROOT/usr/local/bin/perch
ETC=$ROOT/etc/perch
STATE=$ROOT/var/lib/perch
# systemd is only asked to act on the running system, and only when it runs.
have_systemd() { [ "$START" = 1 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# The Debian architecture names the userland, which is what the binaries must match: a 32-bit
# Raspberry Pi OS often runs a 64-bit kernel, where `uname -m` says aarch64.
check_machine() {
  want=$1
  command -v dpkg >/dev/null || die "dpkg not found: perch releases are for Debian and Raspberry Pi OS"
  arch=$(dpkg --print-architecture)
  case $arch in amd64) have=x64 ;; arm64) have=arm64 ;; armhf) have=armhf ;; *) have=$arch ;; esac
  [ "$have" = "$want" ] || die "this release is for linux-$want, but this system is $arch (dpkg --print-architecture); download perch-*-linux-$( [ "$arch" = amd64 ] && echo x64 || echo "$arch" ).tar.xz"
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  [ -n "$glibc" ] || glibc=$(ldd --version 2>/dev/null | awk 'NR == 1 {print $NF}')
  [ -n "$glibc" ] || die "cannot tell the glibc version (getconf GNU_LIBC_VERSION); perch needs glibc 2.34 or newer"
  major=${glibc%%.*}; minor=${glibc#*.}; minor=${minor%%.*}
  if [ "$major" -lt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -lt 34 ]; }; then
    die "glibc $glibc is too old: perch needs 2.34 or newer (Debian 12 bookworm / Raspberry Pi OS 12 or later)"
  fi
}

release_field() { sed -n "s/^$2=//p" "$1/RELEASE"; }

switch_to() { # switch_to VERSION: current -> releases/VERSION, previous -> what current was
  old=$(readlink "$OPT/current" 2>/dev/null || true)
  ln -sfn "releases/$1" "$OPT/current.new" && mv -T "$OPT/current.new" "$OPT/current"
  if [ -n "$old" ] && [ "$old" != "releases/$1" ]; then
    ln -sfn "$old" "$OPT/previous.new" && mv -T "$OPT/previous.new" "$OPT/previous"
  fi
}

restart_service() {
  have_systemd || return 0
  systemctl daemon-reload
  systemctl enable --quiet perch.service
  say "restarting perch.service"
  systemctl restart perch.service
}

install_system_files() {
  rel=$1
  mkdir -p "$(dirname "$SYSUSERS")" "$(dirname "$UNIT")" "$(dirname "$LINK")"
  install -m 0644 "$rel/systemd/perch.sysusers.conf" "$SYSUSERS"
  if [ -n "$ROOT" ]; then systemd-sysusers --root="$ROOT" "$SYSUSERS"; else systemd-sysusers "$SYSUSERS"; fi
  install -m 0644 "$rel/systemd/perch.service" "$UNIT"
  ln -sfn /opt/perch/current/bin/perch "$LINK"
  if [ ! -d "$ETC" ]; then
    mkdir -p "$ETC" && chmod 0750 "$ETC"
    chgrp "$(group_id)" "$ETC" 2>/dev/null || true
  fi
  if [ ! -e "$ETC/perch.json" ]; then
    # The state directory must be the one systemd gives the service, whatever the defaults say.
    STATE_DIRECTORY=/var/lib/perch "$rel/bin/perch" config init "$ETC/perch.json" >/dev/null 2>&1 &&
      chmod 0640 "$ETC/perch.json" && { chgrp "$(group_id)" "$ETC/perch.json" 2>/dev/null || true; } &&
      say "wrote the default config to /etc/perch/perch.json" ||
      say "no /etc/perch/perch.json: perch runs on its embedded defaults"
  fi
  if [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" enable --quiet perch.service 2>/dev/null ||
      { mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants" && ln -sfn /etc/systemd/system/perch.service "$ROOT/etc/systemd/system/multi-user.target.wants/perch.service"; }
  fi
}

group_id() { awk -F: '$1 == "perch" {print $3}' "$ROOT/etc/group" 2>/dev/null; }

prune_releases() {
  cur=$(readlink "$OPT/current" 2>/dev/null || true); prev=$(readlink "$OPT/previous" 2>/dev/null || true)
  # Newest first by install time; the current and previous releases always stay.
  ls -1t "$OPT/releases" | tail -n +$((KEEP_RELEASES + 1)) | while read -r old; do
    [ "releases/$old" = "$cur" ] || [ "releases/$old" = "$prev" ] || { rm -rf "${OPT:?}/releases/$old"; say "removed old release $old"; }
  done
}

do_install() {
  tmp=
  trap 'rm -rf "$tmp"' EXIT
  if [ -z "$SOURCE" ]; then
    src=$(cd "$(dirname "$0")" && pwd)
  elif [ -d "$SOURCE" ]; then
    src=$(cd "$SOURCE" && pwd)
  elif [ -f "$SOURCE" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/perch-install.XXXXXX")
    tar -xJf "$SOURCE" -C "$tmp" || die "cannot unpack $SOURCE (is it a perch-*.tar.xz?)"
    src=$tmp/perch
  else
    die "$SOURCE: no such file"
  fi
  [ -f "$src/RELEASE" ] && [ -x "$src/bin/perch" ] || die "$src is not a perch release (no RELEASE or bin/perch)"
  version=$(release_field "$src" version); target=$(release_field "$src" target)
  check_machine "${target#linux-}"
  dest=$OPT/releases/$version
  if [ "$(readlink "$OPT/current" 2>/dev/null)" = "releases/$version" ] && [ "$FORCE" = 0 ]; then
    say "$version is already the current release (--force reinstalls it)"
    exit 0
  fi
  mkdir -p "$OPT/releases"
  rm -rf "$dest.new" && cp -a "$src" "$dest.new"
  if [ "$SELFTEST" = 1 ]; then
    say "checking release $version (perch selftest)"
    "$dest.new/bin/perch" selftest || { rm -rf "$dest.new"; die "release $version failed its selftest on this machine; nothing was changed"; }
  fi
  rm -rf "$dest" && mv "$dest.new" "$dest" && touch "$dest"
  was=$(readlink "$OPT/current" 2>/dev/null || true)
  switch_to "$version"
  install_system_files "$dest"
  if ! restart_service; then
    if [ -n "$was" ]; then
      say "perch $version did not start; going back to ${was#releases/}"
      switch_to "${was#releases/}"
      restart_service || true
      die "upgrade to $version failed (journalctl -u perch); ${was#releases/} is running again"
    fi
    die "perch $version did not start (journalctl -u perch -e)"
  fi
  prune_releases
  say "installed $version (linux-${target#linux-}) in /opt/perch/releases/$version${was:+, previous: ${was#releases/}}"
  have_systemd || say "start it with: systemctl enable --now perch"
}

do_rollback() {
  prev=$(readlink "$OPT/previous" 2>/dev/null || true)
  [ -n "$prev" ] && [ -d "$OPT/$prev" ] || die "no previous release to roll back to"
  cur=$(readlink "$OPT/current" 2>/dev/null || true)
  switch_to "${prev#releases/}"
  install -m 0644 "$OPT/$prev/systemd/perch.service" "$UNIT"
  restart_service || die "perch ${prev#releases/} did not start after the rollback (journalctl -u perch -e)"
  say "rolled back from ${cur#releases/} to ${prev#releases/}"
}

do_uninstall() {
  if have_systemd; then
    systemctl disable --now --quiet perch.service 2>/dev/null || true
  elif [ -n "$ROOT" ]; then
    systemctl --root="$ROOT" disable --quiet perch.service 2>/dev/null || true
    rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/perch.service"
  fi
  rm -f "$UNIT" "$SYSUSERS" "$LINK"
  if have_systemd; then systemctl daemon-reload; fi
  rm -rf "$OPT"
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ETC" "$STATE"
    say "removed perch, its config (/etc/perch) and its state (/var/lib/perch); the perch user stays"
  else
    say "removed perch; kept its config in /etc/perch and its state in /var/lib/perch (--purge removes them)"
  fi
}

case $MODE in
  install) do_install ;;
  rollback) do_rollback ;;
  uninstall) do_uninstall ;;
esac
