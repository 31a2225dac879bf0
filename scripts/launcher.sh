#!/bin/sh
# bin/perch of a release: runs perch on the Node bundled with it, whatever Node the machine has.
# --disable-wasm-trap-handler: with V8's WASM trap handler every rule sandbox reserves ~10 GB of
# address space, and a Raspberry Pi kernel gives a process 512 GB, so only ~50 accounts could
# run rules.
here=$(dirname "$(readlink -f "$0")")
exec "$here/../node/bin/node" --disable-wasm-trap-handler "$here/../app/bin/perch.js" "$@"
