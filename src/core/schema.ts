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

function describe(e: ErrorObject): string {
  const at = e.instancePath === '' ? '(root)' : e.instancePath.slice(1).replaceAll('/', '.')
  const params = e.params as Record<string, unknown>
  if (e.keyword === 'additionalProperties') return `${at}: unknown key "${String(params.additionalProperty)}"`
  if (e.keyword === 'enum') return `${at}: must be one of ${JSON.stringify(params.allowedValues)}`
  return `${at}: ${e.message ?? 'is invalid'}`
}
