#!/usr/bin/env -S node --disable-wasm-trap-handler
// The flag: with V8's WASM trap handler every rule sandbox reserves ~10 GB of address space,
// and a Raspberry Pi kernel gives a process 512 GB, so only ~50 accounts could run rules.
import { main } from '../dist/main.js'

await main()
