// A stand-in for PID 1's notify socket, so that a real systemd-notify (and perch through it) can
// be heard outside systemd: python3 binds an AF_UNIX datagram socket and prints each message.
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { until } from './clients.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

// Prints every datagram as a JSON line and closes the fds passed with it (systemd-notify waits
// on that BARRIER=1 fd).
const FAKE_PID1 = `
import json, os, socket, sys, array
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print(json.dumps({"bound": True}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64) + socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i"); fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds: os.close(fd)
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = int.from_bytes(payload[0:4], sys.byteorder)
    print(json.dumps({"pid": pid, "text": data.decode()}), flush=True)
`

export interface NotifyMessage {
  /** The sender's pid from its credentials (systemd-notify's own unless run as root with --pid). */
  readonly pid: number | null
  readonly text: string
}

export interface FakeNotifySocket {
  readonly path: string
  /** Every message received so far, in order. */
  messages(): readonly NotifyMessage[]
  /** Waits until at least `n` messages arrived; false after `ms`. */
  waitFor(n: number, ms: number): Promise<boolean>
}

/** Binds a fake notify socket at `path`, killed at teardown; a string says why it could not start. */
export async function fakeNotifySocket(t: Teardown, path: string): Promise<FakeNotifySocket | string> {
  let server: ChildProcess
  try {
    server = spawn('python3', ['-c', FAKE_PID1, path], { stdio: ['ignore', 'pipe', 'inherit'] })
  } catch (e) {
    return `python3 cannot run: ${String(e)}`
  }
  t.teardown(() => {
    server.kill('SIGKILL')
  })
  let bound = false
  let failed: string | undefined
  const messages: NotifyMessage[] = []
  server.on('error', (e) => {
    failed = e.message
  })
  const stdout = server.stdout
  if (stdout === null) return 'no stdout'
  createInterface({ input: stdout }).on('line', (line) => {
    const parsed = JSON.parse(line) as { bound?: boolean; pid?: number | null; text?: string }
    if (parsed.bound === true) bound = true
    else messages.push({ pid: parsed.pid ?? null, text: parsed.text ?? '' })
  })
  try {
    await until(() => bound || failed !== undefined, 10_000, 'the fake notify socket')
  } catch {
    return 'the fake notify socket did not start: timeout'
  }
  if (failed !== undefined) return `the fake notify socket did not start: ${failed}`
  return {
    path,
    messages: () => messages,
    async waitFor(n, ms) {
      try {
        await until(() => messages.length >= n, ms, `${n} notify messages`)
        return true
      } catch {
        return false
      }
    },
  }
}
