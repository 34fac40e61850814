import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { findConfigFile, SYSTEM_CONFIG_FILE } from '../../src/cli/config-file.js'
import { loadConfig } from '../../src/config/index.js'
import { makeTempDir } from '../helpers/broker.js'
import { root, runHerald, writeJson } from './cli-helpers.js'

t.test('the config file: --config, else $HERALD_CONFIG, else the system file when it exists', async (t) => {
  const dir = await makeTempDir(t, 'herald-etc-')
  const system = join(dir, 'herald.json')
  t.equal(SYSTEM_CONFIG_FILE, '/etc/herald/herald.json')
  t.equal(findConfigFile(undefined, {}, system), undefined, 'none: the built-in defaults')
  await writeFile(system, '{}')
  t.equal(findConfigFile(undefined, {}, system), system, 'the system file once it exists')
  t.equal(findConfigFile(undefined, { HERALD_CONFIG: '/srv/h.json' }, system), '/srv/h.json', '$HERALD_CONFIG before it')
  t.equal(findConfigFile(undefined, { HERALD_CONFIG: '' }, system), system, 'an empty $HERALD_CONFIG is unset')
  t.equal(findConfigFile('/opt/h.json', { HERALD_CONFIG: '/srv/h.json' }, system), '/opt/h.json', '--config before both')
})

t.test('dataDir: systemd\'s $STATE_DIRECTORY when nothing else sets it', async (t) => {
  t.equal(loadConfig({ env: {} }).dataDir, './data', 'the quick start: ./data')
  t.equal(loadConfig({ env: { STATE_DIRECTORY: '/var/lib/herald' } }).dataDir, '/var/lib/herald')
  t.equal(loadConfig({ env: { STATE_DIRECTORY: '/var/lib/herald:/var/lib/other' } }).dataDir, '/var/lib/herald', 'the first of several')
  t.equal(loadConfig({ env: { STATE_DIRECTORY: '/var/lib/herald', HERALD_DATA_DIR: '/srv/herald' } }).dataDir, '/srv/herald', 'HERALD_DATA_DIR first')
  const file = await writeJson(t, { dataDir: '/data/herald' })
  t.equal(loadConfig({ file, env: { STATE_DIRECTORY: '/var/lib/herald' } }).dataDir, '/data/herald', 'the config file first')
})

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('the CLI reads $HERALD_CONFIG and says which file it checked', async (t) => {
    const file = await writeJson(t, { storage: { engine: 'memory' } })
    const result = await runHerald(t, ['check-config'], { HERALD_CONFIG: file })
    t.equal(result.code, 0, result.stderr)
    t.equal(result.stdout, `configuration is valid (${file})\n`)
    const bad = await writeJson(t, { storage: { engine: 'nope' } })
    const refused = await runHerald(t, ['check-config'], { HERALD_CONFIG: bad })
    t.equal(refused.code, 1)
    t.match(refused.stderr, /storage\.engine: must be one of leveldb, memory/)
    const explicit = await runHerald(t, ['check-config', '--config', file], { HERALD_CONFIG: bad })
    t.equal(explicit.code, 0, '--config wins over $HERALD_CONFIG')
  })
}
