// The only module that imports QuickJS (ARCHITECTURE.md: one owner per third-party package).
// Everything else in scripting/ sees the types re-exported here and the factory below.

import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import RELEASE_SYNC from '@jitl/quickjs-wasmfile-release-sync'
import {
  type CustomizeVariantOptions,
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSSyncVariant,
  type QuickJSWASMModule,
} from 'quickjs-emscripten-core'

export type { QuickJSContext, QuickJSHandle, QuickJSRuntime, QuickJSWASMModule } from 'quickjs-emscripten-core'

/**
 * `release` for production. `debug` is the same engine built with assertions and LeakSanitizer
 * (a devDependency, for leak tests only): about 10x slower to start, and LeakSanitizer needs far
 * more linear memory, so its modules get a larger cap.
 */
export type QuickJSVariantName = 'release' | 'debug'

// The compiler's lib has no WebAssembly types (they live in lib.dom); this is the part used here.
export interface WasmMemory {
  readonly buffer: ArrayBuffer
}
interface WasmModule {
  readonly __wasmModule?: never
}
interface WasmApi {
  readonly Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory
  readonly RuntimeError: new () => Error
  compile(bytes: Uint8Array): Promise<WasmModule>
}

function wasm(): WasmApi {
  return (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly
}

/** A WebAssembly trap or an Emscripten abort (`Aborted(...)`): the module is poisoned. */
export function isWasmTrap(e: unknown): boolean {
  return e instanceof wasm().RuntimeError
}

function isSyncVariant(v: unknown): v is QuickJSSyncVariant {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'sync' && typeof (v as { importFFI?: unknown }).importFFI === 'function'
}

/**
 * The variant packages' ESM entries default-export the variant; their typings are CommonJS, so
 * TypeScript sees a namespace. Unwrap at run time (as the library's own `smartUnwrap` does) and check.
 */
function toVariant(imported: unknown): QuickJSSyncVariant {
  if (isSyncVariant(imported)) return imported
  const inner: unknown = (imported as { default?: unknown } | undefined)?.default
  if (isSyncVariant(inner)) return inner
  const innermost: unknown = (inner as { default?: unknown } | undefined)?.default
  if (isSyncVariant(innermost)) return innermost
  throw new Error('unexpected shape of a QuickJS variant package')
}

/** 64 KiB WASM pages. The prebuilt image needs 16 MiB (256 pages) to start. */
const PAGE = 65536
export const MIN_INITIAL_BYTES = 256 * PAGE
const DEBUG_MIN_CAP_MB = 512

export interface AccountModule {
  readonly qjs: QuickJSWASMModule
  /** The module's linear memory: it only grows, up to `capBytes`, and is the hard memory cap. */
  readonly memory: WasmMemory
  readonly capBytes: number
  /** LeakSanitizer over the whole module (debug variant); always false on release. */
  leaked(): boolean
  /**
   * How much slower than release this build runs QuickJS: the host's budget for its own bootstrap
   * code scales with it (rules' budgets do not).
   */
  readonly slowdown: number
}

/**
 * Builds account modules. One per worker: it compiles the WASM image once and instantiates it
 * per account (2-3 ms instead of 7 ms, and the compiled code is shared).
 */
export class QuickJSFactory {
  readonly variant: QuickJSVariantName
  readonly #onBuild: (building: boolean) => void
  #compiled: Promise<{ base: QuickJSSyncVariant; module: WasmModule }> | undefined

  /** `onBuild` is told when a module build starts and ends: it cannot be interrupted. */
  constructor(variant: QuickJSVariantName, onBuild: (building: boolean) => void = () => {}) {
    this.variant = variant
    this.#onBuild = onBuild
  }

  /**
   * A new QuickJS module with its own fixed-maximum `WebAssembly.Memory`. Throws a RangeError
   * when the process cannot reserve another memory (address space: see notes/quickjs.md §2).
   */
  async newAccountModule(capMb: number): Promise<AccountModule> {
    this.#onBuild(true)
    try {
      return await this.#newAccountModule(capMb)
    } finally {
      this.#onBuild(false)
    }
  }

  async #newAccountModule(capMb: number): Promise<AccountModule> {
    const { base, module } = await this.#compile()
    const cap = this.variant === 'debug' ? Math.max(capMb, DEBUG_MIN_CAP_MB) : capMb
    const memory = new (wasm().Memory)({ initial: MIN_INITIAL_BYTES / PAGE, maximum: (cap * 1024 * 1024) / PAGE })
    // Emscripten prints aborts and failed heap growth to stderr; the host reports them as typed
    // results instead, so the worker's stderr stays quiet. (print/printErr are Emscripten options
    // the typings leave out; the object's properties are passed through verbatim.)
    const emscriptenModule: NonNullable<CustomizeVariantOptions['emscriptenModule']> = {}
    Object.assign(emscriptenModule, { print: () => {}, printErr: () => {} })
    const qjs = await newQuickJSWASMModuleFromVariant(newVariant(base, { wasmMemory: memory, wasmModule: module, emscriptenModule }))
    const ffi = qjs.getFFI()
    const debug = this.variant === 'debug'
    return { qjs, memory, capBytes: cap * 1024 * 1024, leaked: () => debug && ffi.QTS_RecoverableLeakCheck() !== 0, slowdown: debug ? 20 : 1 }
  }

  #compile(): Promise<{ base: QuickJSSyncVariant; module: WasmModule }> {
    const compiled =
      this.#compiled ??
      (async () => {
        const base = toVariant(this.variant === 'debug' ? await import('@jitl/quickjs-wasmfile-debug-sync') : RELEASE_SYNC)
      const wasmUrl =
        this.variant === 'debug'
          ? import.meta.resolve('@jitl/quickjs-wasmfile-debug-sync/wasm')
          : import.meta.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')
        const module = await wasm().compile(await readFile(fileURLToPath(wasmUrl)))
        return { base, module }
      })()
    this.#compiled = compiled
    return compiled
  }
}
