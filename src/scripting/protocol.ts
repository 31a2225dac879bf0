// Messages between SandboxHost (main thread) and the sandbox worker. Requests travel in arrays:
// everything the host queued in one tick goes in one postMessage, and the worker answers in
// arrays too (a round trip per invocation would cost more than the invocation).

import { INPUT_EVENT, INPUT_MESSAGE, INPUT_TIMER } from './guest.js'
import type { ResolvedSpec } from './limits.js'
import type { QuickJSVariantName } from './quickjs.js'
import type { DisposeReport, InvokeResult, LoadError, RuleInput } from './types.js'

export interface WorkerOptions {
  readonly variant: QuickJSVariantName
  /**
   * One Int32 shared with the host: the id of the request the worker is executing, 0 between
   * requests. When the watchdog kills a stuck worker it reads it to know which request hung:
   * that one fails, the others are sent again to the new worker.
   */
  readonly running: SharedArrayBuffer
}

/** Input kinds in a batch, as a bit mask: the worker answers `no-handler` without entering the guest. */
export const KIND_MESSAGE = 1
export const KIND_TIMER = 2
export const KIND_EVENT = 4

export type Request =
  | {
      readonly t: 'load'
      readonly id: number
      readonly spec: ResolvedSpec
      readonly now: number
      /** The account's KV store, sent with the first load of an account in this worker. */
      readonly kv?: Readonly<Record<string, string>>
    }
  | { readonly t: 'unload'; readonly id: number; readonly account: string; readonly name: string }
  | {
      readonly t: 'invoke'
      readonly id: number
      readonly account: string
      readonly name: string
      /** `{ n: now, i: [...] }`, see guest.ts */
      readonly batch: string
      /** The batch's `now`, also used if a rule has to be rebuilt during the call. */
      readonly now: number
      readonly inputs: number
      readonly kinds: number
      /** Upper bound for the batch's wall budget (a quarter of the heartbeat). */
      readonly capMs: number
    }
  | { readonly t: 'kv'; readonly account: string; readonly changes: readonly (readonly [string, string | null])[] }
  | { readonly t: 'close'; readonly id: number }

export type Reply =
  | { readonly id: number; readonly t: 'load'; readonly result: { ok: true } | { ok: false; error: LoadError } }
  | { readonly id: number; readonly t: 'unload' }
  | { readonly id: number; readonly t: 'invoke'; readonly result: InvokeResult }
  | { readonly id: number; readonly t: 'close'; readonly report: DisposeReport }

export type WorkerMessage =
  | { readonly ready: true }
  | {
      readonly replies: readonly Reply[]
      /** Account modules rebuilt since the previous message. */
      readonly recycled: number
      /** Rule sandboxes whose dispose failed since the previous message. */
      readonly disposeFailures: number
    }

/** The guest's batch JSON (guest.ts) and the kinds of input in it. Throws on an event JSON cannot carry. */
export function encodeBatch(now: number, inputs: readonly RuleInput[]): { batch: string; kinds: number } {
  let kinds = 0
  const tuples: unknown[] = []
  for (const input of inputs) {
    if (input.kind === 'message') {
      kinds |= KIND_MESSAGE
      tuples.push([INPUT_MESSAGE, input.topic, input.payload])
    } else if (input.kind === 'timer') {
      kinds |= KIND_TIMER
      tuples.push([INPUT_TIMER, input.at])
    } else {
      kinds |= KIND_EVENT
      tuples.push([INPUT_EVENT, input.event ?? null])
    }
  }
  return { batch: JSON.stringify({ n: now, i: tuples }), kinds }
}
