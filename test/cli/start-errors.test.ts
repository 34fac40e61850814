import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { makeTempDir } from '../helpers/broker.js'
import { heraldBin, logLine, occupiedPort, root, runHerald, spawnProcess, startEnv, type Finished } from './cli-helpers.js'

/** What an operator sees on stderr: everything but the JSON log lines on stdout. */
function assertOneLine (t: Test, result: Finished, line: RegExp): void {
  t.equal(result.code, 1, 'exit 1')
  t.match(result.stderr, line)
  t.equal(result.stderr.split('\n').filter(Boolean).length, 1, `one line: ${result.stderr}`)
  t.notMatch(result.stderr, /^\s+at /m, 'no stack trace')
}

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('a busy MQTT port: one line naming mqtt.port and the port, exit 1', async (t) => {
    const port = await occupiedPort(t)
    const result = await runHerald(t, ['start'], await startEnv(t, { HERALD_MQTT_PORT: String(port) }))
    assertOneLine(t, result, new RegExp(`^herald: could not start: mqtt\\.port: port ${port} on 127\\.0\\.0\\.1 is already in use`))
  })

  t.test('a busy HTTP port: one line naming http.port', async (t) => {
    const port = await occupiedPort(t)
    const result = await runHerald(t, ['start'], await startEnv(t, { HERALD_HTTP_PORT: String(port) }))
    assertOneLine(t, result, new RegExp(`^herald: could not start: http\\.port: port ${port} on 127\\.0\\.0\\.1 is already in use`))
  })

  t.test('two listeners on one port are a config problem, found before anything starts', async (t) => {
    const result = await runHerald(t, ['start'], await startEnv(t, { HERALD_MQTT_PORT: '18830', HERALD_HTTP_PORT: '18830' }))
    assertOneLine(t, result, /^herald: invalid configuration: http\.port: port 18830 is already mqtt\.port$/m)
  })

  t.test('a data directory that cannot be created: one line naming dataDir', async (t) => {
    const dir = await makeTempDir(t, 'herald-cli-file-')
    const file = join(dir, 'a-file')
    await writeFile(file, '')
    // without keys, the local secret is written first; with keys, LevelDB opens first: both name dataDir
    const local = await runHerald(t, ['start'], { ...await startEnv(t, { HERALD_DATA_DIR: join(file, 'data') }), HERALD_JWT_SECRET: '' })
    assertOneLine(t, local, new RegExp(`^herald: could not start: dataDir: ${file}/data: a part of the path is not a directory`))
    const keyed = await runHerald(t, ['start'], await startEnv(t, { HERALD_DATA_DIR: join(file, 'data') }))
    assertOneLine(t, keyed, new RegExp(`^herald: could not start: dataDir: ${file}/data.*: a part of the path is not a directory`))
  })

  t.test('a second Herald on the same data directory: one line, the first keeps running', { timeout: 60000 }, async (t) => {
    const shared = await startEnv(t)
    const first = spawnProcess(t, process.execPath, [heraldBin, 'start'], { env: shared, cwd: shared.HERALD_DATA_DIR as string })
    const died = first.exited.then(() => { throw new Error('the first herald exited') })
    died.catch(() => {})
    await Promise.race([logLine(first.child.stdout, 'herald listening'), died])
    const second = await runHerald(t, ['start'], shared)
    assertOneLine(t, second, /^herald: could not start: dataDir: the database in .* is in use by another process/)
    t.equal(first.child.exitCode, null, 'the first is still running')
    first.child.kill('SIGTERM')
    t.same(await first.exited, { code: 0, signal: null })
  })
}
