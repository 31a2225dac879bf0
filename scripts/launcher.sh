#!/bin/sh
# bin/perch of a release: runs perch on the Node bundled with it, whatever Node the machine has.
# --disable-wasm-trap-handler: with V8's WASM trap handler every rule sandbox reserves ~10 GB of
# address space, and a Raspberry Pi kernel gives a process 512 GB, so only ~50 accounts could
# run rules. 32-bit Node has no trap handler (and Node 20.11 not the flag): scripts/dist.sh
# drops it for armhf.
# --max-semi-space-size=2: V8 otherwise grows the young generation to 2 x 16 MB during start-up
# and keeps it; capped, an idle gateway holds ~10 MB less, at no measurable cost in throughput
# (bench/RESULTS.md).
NODE_FLAGS="--disable-wasm-trap-handler --max-semi-space-size=2"
# glibc raises its mmap threshold once a large block is freed, after which the 16 MB of every
# scrypt (a password login) stay in the heap for good: with a fixed threshold they go back to
# the system (86 -> 63 MB idle after one login, bench/RESULTS.md).
: "${MALLOC_MMAP_THRESHOLD_:=131072}"
export MALLOC_MMAP_THRESHOLD_
here=$(dirname "$(readlink -f "$0")")
# shellcheck disable=SC2086 # NODE_FLAGS is a list of flags
exec "$here/../node/bin/node" $NODE_FLAGS "$here/../app/bin/perch.js" "$@"
