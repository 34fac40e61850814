/**
 * The README's shell examples, run as a reader runs them: every ```sh block,
 * top to bottom, in one bash shell (variables set by one block are there for
 * the next), from the repository root, against a broker started as
 * `npm start` starts it (bin/herald.js start on the built dist/, no
 * configured key: the secret is generated in the data directory, so
 * `node bin/herald.js token` signs with it).
 *
 * The rules a README example follows:
 * - A block that is not meant to run here says so on the line before its
 *   fence: `<!-- not run: why -->` (the quick start, which would start a
 *   second broker; the cluster, which starts Redis and brokers on fixed ports).
 * - The examples name the quick-start addresses, `localhost:8080` and
 *   `mosquitto_* -h localhost`; this test points them at the broker's free
 *   ports (`127.0.0.1:<http port>`, `-h 127.0.0.1 -p <mqtt port>`), and sets
 *   HERALD_URL for the operator commands and TMPDIR to a directory removed
 *   afterwards.
 * - The shell runs with `set -euo pipefail`: a command that fails, or a
 *   variable never set (`$ID`), fails the test.
 * - Every curl call must answer 2xx, or the status its example documents: a
 *   comment `# → 412 …` on the lines right after the call, or a trailing
 *   `# 204` / `# → 204` on its last line, is the status it must answer.
 * - Processes an example leaves in the background (`mosquitto_sub … &`) are
 *   killed at the end.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { makeTempDir } from '../helpers/broker.js'
import { spawnBroker } from '../helpers/child-broker.js'

const root = fileURLToPath(new URL('../../', import.meta.url))

interface Block { readonly line: number, readonly text: string }

/** The ```sh blocks of a Markdown text that are meant to run, with the line each starts on. */
export function runnableBlocks (markdown: string): { run: Block[], skipped: Block[] } {
  const lines = markdown.split('\n')
  const run: Block[] = []
  const skipped: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]?.trim() !== '```sh') continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && lines[i]?.trim() !== '```'; i++) body.push(lines[i] as string)
    const marker = /^<!--\s*not run:/.test(lines[start - 1]?.trim() ?? '')
    ;(marker ? skipped : run).push({ line: start + 1, text: body.join('\n') })
  }
  return { run, skipped }
}

/** One block as the shell runs it: documented statuses set around their curl calls, addresses pointed at the test broker. */
export function prepare (block: Block, ports: { http: number, mqtt: number }): string {
  const lines = block.text.split('\n')
  const out: string[] = [`echo "### README.md line ${block.line}" >&2`]
  for (let i = 0; i < lines.length; i++) {
    // a command and its continuation lines
    const command = [lines[i] as string]
    while ((command[command.length - 1] as string).endsWith('\\') && i + 1 < lines.length) command.push(lines[++i] as string)
    const last = command[command.length - 1] as string
    const trailing = /#\s*(?:→\s*)?([1-5]\d\d)\b/.exec(last.slice(commentStart(last)))
    const following = /^\s*#\s*→\s*([1-5]\d\d)\b/.exec(lines[i + 1] ?? '')
    const status = (trailing ?? following)?.[1]
    const isCurl = command.some((line) => /\bcurl\b/.test(line.split('#')[0] ?? ''))
    const text = command.join('\n')
      .replaceAll('localhost:8080', `127.0.0.1:${ports.http}`)
      .replace(/(mosquitto_(?:sub|pub)\b[^\n]*?)-h localhost\b/g, `$1-h 127.0.0.1 -p ${ports.mqtt}`)
    if (isCurl && status !== undefined) out.push(`EXPECT_STATUS=${status}`, text, 'unset EXPECT_STATUS')
    else out.push(text)
  }
  return out.join('\n')
}

/** Where a line's comment starts (a `#` outside quotes, after a space), or its length. */
function commentStart (line: string): number {
  let quote: string | null = null
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote !== null) {
      if (c === quote) quote = null
    } else if (c === '"' || c === '\'') {
      quote = c
    } else if (c === '#' && (i === 0 || /\s/.test(line[i - 1] ?? ''))) {
      return i
    }
  }
  return line.length
}

/** curl that fails on an unexpected HTTP status (2xx, or EXPECT_STATUS), printing the body either way. */
/* eslint-disable no-template-curly-in-string -- bash parameter expansions, not JavaScript templates */
const PRELUDE = [
  'set -euo pipefail',
  'trap \'kill $(jobs -p) 2>/dev/null || true\' EXIT',
  'curl () {',
  '  local expect="${EXPECT_STATUS:-2xx}" out status body',
  '  out=$(command curl -sS -w \'\\n%{http_code}\' "$@")',
  '  status="${out##*$\'\\n\'}"',
  '  body="${out%$\'\\n\'*}"',
  '  printf \'%s\\n\' "$body"',
  '  if [ "$expect" = 2xx ]; then',
  '    [[ "$status" == 2* ]] || { echo "README example answered HTTP $status, not 2xx: curl $*" >&2; return 1; }',
  '  else',
  '    [ "$status" = "$expect" ] || { echo "README example answered HTTP $status, not the documented $expect: curl $*" >&2; return 1; }',
  '  fi',
  '}',
].join('\n')
/* eslint-enable no-template-curly-in-string */

t.test('the README examples run top to bottom against the quick-start broker', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const { run, skipped } = runnableBlocks(readme)
  t.ok(run.length >= 10, `${run.length} blocks run`)
  t.ok(skipped.length <= 3, `${skipped.length} marked not run`)

  const dataDir = await makeTempDir(t, 'herald-readme-')
  const tmp = await makeTempDir(t, 'herald-readme-tmp-')
  const broker = await spawnBroker(t, { HERALD_DATA_DIR: dataDir })
  const ports = { http: broker.ports.http, mqtt: broker.ports.mqtt }
  const script = [PRELUDE, ...run.map((block) => prepare(block, ports))].join('\n')

  const shell = spawn('bash', ['-c', script], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmp, HERALD_DATA_DIR: dataDir, HERALD_URL: `http://127.0.0.1:${ports.http}`, TMPDIR: tmp },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  shell.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  shell.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => shell.once('close', (exit) => resolve(exit)))
  const lastBlock = [...stderr.matchAll(/### (README\.md line \d+)/g)].pop()?.[1] ?? 'the start'
  t.equal(code, 0, `every example ran (the last block started: ${lastBlock})`, { stderr: stderr.slice(-3000), stdout: stdout.slice(-2000) })
  t.match(stdout, /"installationId"|installations/, 'the API answered')
  t.match(stdout, /pushed \S+ to user alice/, 'the operator commands ran')
})

t.test('the rules: documented statuses, addresses, skipped blocks', async (t) => {
  const markdown = [
    '<!-- not run: starts a second broker -->', '```sh', 'npm start', '```',
    '```sh',
    'curl -s -XPUT localhost:8080/v1/x -H "If-Match: 1" \\', '  -d \'{"a": "#1"}\'',
    '# → 412 {"error": …}',
    'curl -s localhost:8080/v1/y   # 204: gone',
    'curl -s localhost:8080/v1/z   # mine',
    'mosquitto_sub -h localhost -t a &',
    '```',
  ].join('\n')
  const { run, skipped } = runnableBlocks(markdown)
  t.same(skipped.map((b) => b.text), ['npm start'])
  t.equal(run.length, 1)
  const prepared = prepare(run[0] as Block, { http: 1234, mqtt: 5678 })
  t.match(prepared, /EXPECT_STATUS=412\ncurl -s -XPUT 127\.0\.0\.1:1234\/v1\/x -H "If-Match: 1" \\\n {2}-d '\{"a": "#1"\}'\nunset EXPECT_STATUS/)
  t.match(prepared, /EXPECT_STATUS=204\ncurl -s 127\.0\.0\.1:1234\/v1\/y/)
  t.match(prepared, /\ncurl -s 127\.0\.0\.1:1234\/v1\/z {3}# mine\n/, 'no status: 2xx')
  t.match(prepared, /mosquitto_sub -h 127\.0\.0\.1 -p 5678 -t a &/)
})
