import { Ajv, type ErrorObject } from 'ajv'
import { err, ok, type Result } from './result.js'

export type JsonSchema = Record<string, unknown>

export type Validator<T> = (data: unknown) => Result<T, string[]>

/** The one importer of ajv: compiles a JSON schema into a validator with readable errors. */
export function compileSchema<T>(schema: JsonSchema): Validator<T> {
  const ajv = new Ajv({ allErrors: true, useDefaults: false, strict: true })
  const validate = ajv.compile(schema)
  return (data) => (validate(data) ? ok(data as T) : err((validate.errors ?? []).map(describe)))
}

/**
 * A validator that compiles its schema on the first call. Each compile costs a few MB of
 * resident memory that stays with the process, so a schema for a rare path (a rule manifest,
 * one device kind) is compiled only once something needs it. The memo is a pure function of
 * `schema`: every caller sees the same answers whenever the compile happens.
 */
export function deferredSchema<T>(schema: JsonSchema | (() => JsonSchema)): Validator<T> {
  let compiled: Validator<T> | undefined
  return (data) => {
    compiled ??= compileSchema<T>(typeof schema === 'function' ? schema() : schema)
    return compiled(data)
  }
}

function describe(e: ErrorObject): string {
  const at = e.instancePath === '' ? '(root)' : e.instancePath.slice(1).replaceAll('/', '.')
  const params = e.params as Record<string, unknown>
  if (e.keyword === 'additionalProperties') return `${at}: unknown key "${String(params.additionalProperty)}"`
  if (e.keyword === 'enum') return `${at}: must be one of ${JSON.stringify(params.allowedValues)}`
  return `${at}: ${e.message ?? 'is invalid'}`
}
