import type { PerchConfig } from './config.js'

type Section = keyof PerchConfig

/**
 * What each top-level key is for, in the order the file lists them; a Record, so that a new
 * section cannot go unexplained.
 */
const NOTES: Record<Section, string> = {
  dataDir: `Where perch keeps its database, accounts, rules and status files: $STATE_DIRECTORY
(systemd), else $PERCH_DATA_DIR, else ./perch-data, as they were when this file was written.
--data-dir overrides it.`,
  log: `Logs are JSON lines on stdout, one event per line, at this level or above: debug, info,
warn or error. --log-level overrides it.`,
  listeners: `Where clients connect. kind: tcp; tls (needs "cert" and "key", PEM files; "ca" with
"requireClientCert": true asks clients for a certificate); ws (WebSocket on "path", /mqtt
for example). --host and --port change the first tcp listener. Beyond 127.0.0.1, listen on
"0.0.0.0" or an address of this machine.`,
  http: `Prometheus /metrics, /healthz and the device registration API (/devices) over plain
HTTP, off unless set (or --http-port). /metrics has no authentication and /devices takes
passwords in the clear: it stays on 127.0.0.1 unless "host" says otherwise.`,
  auth: `Who may connect and what they may do. mode: accounts (clients log in with the accounts
of perch account); open (anonymous clients, no access control; "allowAnonymous": true to
serve them beyond 127.0.0.1); static ("rules" in order, the first match decides, else
"defaultAction"); mysql-users (logins are checked on a MySQL server: add "mysqlUsers" with
its "url"). A "jwt" object lets clients log in with a token (see the README). rateLimit: too
many failed logins within "window" seconds refuse an address or an account for "block"
seconds. reloadInterval: seconds between checks for accounts changed outside perch.`,
  sync: `The central MySQL database this gateway takes its accounts, grants and rules from; off
unless set. "url" (or "urlFile", a file holding it, as the URL carries a password) is what
perch central gateway add prints. Intervals and timeouts are in seconds.`,
  limits: `Sizes in bytes, times in seconds; the README's "Limits and drop policy" says what
happens at each. maxQueued*: messages held for one session, the *Total ones for all sessions
together, before the newest is dropped. slowConsumerPolicy: for a client with more than
maxWriteBuffer bytes unread, drop (QoS 0 dropped, QoS 1/2 queued) or disconnect.`,
  sys: `Seconds between $SYS topic updates and the status file perch status reads; 0 turns both
off.`,
  persistence: `Sessions, queued messages and retained messages. mode: sqlite (they survive a
restart) or memory. file: relative to dataDir unless absolute. synchronous: full (every
commit survives power loss) or normal (faster; the last commits may not). A commit happens
commitIntervalMs after the first write, or after commitMaxWrites writes. onCorrupt: fail
(refuse to start) or move-aside (rename the damaged file and start empty).`,
  rules: `Account rules (JavaScript run in a sandbox). dir: where /A/runfile/NAME finds NAME.js
(the bundled rules when unset). A rule failing failureLimit times in a row is suspended
for coolOff seconds. reloadInterval: seconds between checks for rules pushed with perch
rule. watchdog: seconds the sandbox worker may make no progress before it is replaced
(raise it on very slow boards; a restart applies it).`,
  devices: `Sensor bridges: one JSON file per device in "dir" (<dataDir>/devices when unset);
"board" names a board profile (detected from /proc/device-tree/model when unset). perch
devices check validates the files.`,
  graphs: `Registered devices and their graphs (the IoTtalk model): devices register with PUT
/devices/{id} on the http port or on /<account>/devices/put/{id}, and /<account>/graph/NAME links
their features through functions run in the rules sandbox (which needs rules.enabled).`,
}

/** Off by default, so shown commented out: uncommenting the line turns the section on. */
const EXAMPLES: Partial<Record<Section, string>> = {
  http: '"http": { "port": 9464 },',
  sync: '"sync": { "url": "mysql://perch_gw_NAME:PASSWORD@HOST:3306/central", "gateway": "NAME" },',
}

// The examples sit between real sections, so that an uncommented one comes with its comma.
const ORDER: readonly Section[] = Object.keys(NOTES).filter((key): key is Section => Object.hasOwn(NOTES, key))

/** `config` as a commented config file that `loadConfigFile` reads back to the same values. */
export function commentedConfig(config: PerchConfig): string {
  const present = ORDER.filter((key) => config[key] !== undefined)
  const last = present.at(-1)
  const blocks = ORDER.flatMap((key) => {
    const value = config[key]
    const example = EXAMPLES[key]
    if (value === undefined && example === undefined) return []
    const entry = value === undefined ? `// ${example}` : `${JSON.stringify(key)}: ${JSON.stringify(value, null, 2)}${key === last ? '' : ','}`
    return [`${comment(NOTES[key])}\n${entry}`]
  })
  const header = comment(`perch configuration. Every key is optional: one left out takes its default (perch config
defaults). Comments and trailing commas are allowed. Check with: perch config check FILE`)
  return `${header}\n{\n${indent(blocks.join('\n\n'))}\n}\n`
}

const WIDTH = 92

/** `text` reflowed into // lines of at most WIDTH characters (a longer word gets a line of its own). */
function comment(text: string): string {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > WIDTH) {
      lines.push(line)
      line = ''
    }
    line = line === '' ? word : `${line} ${word}`
  }
  if (line !== '') lines.push(line)
  return lines.map((l) => `// ${l}`).join('\n')
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? '' : `  ${line}`))
    .join('\n')
}
