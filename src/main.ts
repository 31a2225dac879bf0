import { runCli } from './app/cli.js'

/** Process entry: argv and env in, exit code out. */
export async function main(): Promise<void> {
  const code = await runCli(process.argv.slice(2), {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    env: process.env,
  })
  process.exitCode = code
}
