// Each WASM memory makes V8 reserve ~10 GB of address space for its trap handler; Raspberry Pi
// kernels with 4 KB pages give a process 512 GB, so about 51 account modules fit (notes/quickjs.md
// §2). With --disable-wasm-trap-handler a memory reserves only its maximum (32 MB by default) and
// thousands fit, for 6-13 % less throughput. V8 accepts the flag only for the whole process (a
// worker's execArgv rejects it), so the launcher passes it to node; the app can warn without it.

const FLAG = '--disable-wasm-trap-handler'

/** True when this process runs without V8's WASM trap handler (flag on the command line or in NODE_OPTIONS). */
export function wasmTrapHandlerDisabled(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): boolean {
  return execArgv.includes(FLAG) || nodeOptions.split(/\s+/).includes(FLAG)
}

/** Account modules that fit in a 39-bit address space with the trap handler on (measured: the 52nd failed). */
export const MODULES_WITH_TRAP_HANDLER = 50
