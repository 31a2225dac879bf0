#!/usr/bin/env -S node --disable-wasm-trap-handler --max-semi-space-size=2
// The flag: with V8's WASM trap handler every rule sandbox reserves ~10 GB of address space,
// and a Raspberry Pi kernel gives a process 512 GB, so only ~50 accounts could run rules.
// --max-semi-space-size=2: see scripts/launcher.sh, the release's launcher.
import { main } from '../dist/main.js'

await main()
