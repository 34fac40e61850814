import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startProviderFakes } from '../helpers/providers.js'
import { heraldBin, logLine, readUntil, root, spawnProcess, startEnv, writeJson } from './cli-helpers.js'

const hasScript = spawnSync('script', ['-V'], { stdio: 'ignore' }).status === 0
const shellQuote = (arg: string): string => `'${arg.replace(/'/g, "'\\''")}'`

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('JSON by default when stdout is not a terminal; the start-up line lists listeners and providers', { timeout: 60000 }, async (t) => {
    const env = await startEnv(t)
    const { child, exited } = spawnProcess(t, process.execPath, [heraldBin, 'start'], { env, cwd: env.HERALD_DATA_DIR as string })
    const line = await logLine(child.stdout, 'herald listening') as { ports: { mqtt: number, http: number }, listeners: string[], providers: string[] }
    const { mqtt, http } = line.ports
    t.same(line.listeners, [`mqtt://127.0.0.1:${mqtt}`, `http://127.0.0.1:${http}`, `ws://127.0.0.1:${http}/mqtt`])
    t.same(line.providers, [], 'no relay provider configured')
    child.kill('SIGTERM')
    t.same(await exited, { code: 0, signal: null })
  })

  t.test('the start-up line names FCM and APNs when they are configured', { timeout: 60000 }, async (t) => {
    const fakes = await startProviderFakes(t)
    const env = await startEnv(t, { HERALD_CONFIG: await writeJson(t, { push: fakes.push }) })
    const { child, exited } = spawnProcess(t, process.execPath, [heraldBin, 'start'], { env, cwd: env.HERALD_DATA_DIR as string })
    const line = await logLine(child.stdout, 'herald listening') as { providers: string[] }
    t.same(line.providers, ['fcm', 'apns'])
    child.kill('SIGTERM')
    t.same(await exited, { code: 0, signal: null })
  })

  t.test('log.format pretty: pino-pretty lines, uncoloured on a pipe', { timeout: 60000 }, async (t) => {
    const env = await startEnv(t, { HERALD_LOG_FORMAT: 'pretty' })
    const { child, exited, closed } = spawnProcess(t, process.execPath, [heraldBin, 'start'], { env, cwd: env.HERALD_DATA_DIR as string })
    let stdout = ''
    child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    const started = await readUntil(child.stdout, /herald listening[\s\S]*providers/)
    t.match(started, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: herald listening$/m)
    t.match(started, /^ {4}listeners: \[$/m)
    t.notMatch(started, /^\{"level"/m, 'no JSON line')
    t.notOk(started.includes('\u001b['), 'no colour codes on a pipe')
    child.kill('SIGTERM')
    t.same(await exited, { code: 0, signal: null })
    await closed
    t.match(stdout, /INFO: herald stopped$/m, 'the last line is written before exit')
  })

  t.test('log.format auto on a terminal: pretty', { skip: hasScript ? false : 'needs script(1) (util-linux) for a pseudo-terminal', timeout: 60000 }, async (t) => {
    const env = await startEnv(t)
    const command = [process.execPath, heraldBin, 'start'].map(shellQuote).join(' ')
    const { child, exited } = spawnProcess(t, 'script', ['-qec', command, '/dev/null'], { env, cwd: env.HERALD_DATA_DIR as string })
    const text = await readUntil(child.stdout, /herald listening/)
    t.match(text, /INFO.*herald listening/)
    t.notMatch(text, /\{"level":30/, 'no JSON line')
    child.kill('SIGTERM')
    await exited
  })
}
