import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { makeTempDir } from '../helpers/broker.js'

const script = fileURLToPath(new URL('../../scripts/patch-aedes.mjs', import.meta.url))
const installed = fileURLToPath(new URL('./lib/handlers/connect.js', import.meta.resolve('aedes')))
const MARK = "Herald's patch (scripts/patch-aedes.mjs)"

/** Runs the postinstall script on one file, as npm runs it on aedes'. */
async function patch (file: string): Promise<{ stderr: string }> {
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [script, file], (err, _stdout, stderr) => err !== null ? reject(err) : resolve({ stderr }))
  })
}

/** aedes 1.2's connect handler as published: the installed one with the patch taken out again. */
function publishedHandler (): string {
  const source = readFileSync(installed, 'utf8')
  const start = source.indexOf(`  // ${MARK}`)
  if (start === -1) return source
  const end = source.indexOf('  pipeline(', start)
  return source.slice(0, start) + source.slice(end)
}

t.test('npm install ran the postinstall script: the aedes Herald runs on skips the queue pipeline when nothing is queued', async (t) => {
  const source = readFileSync(installed, 'utf8')
  t.equal(source.split(MARK).length - 1, 1, 'one patched spot')
  t.match(source, /if \(Array\.isArray\(outgoing\) && outgoing\.length === 0\) \{\n\s+done\(\)\n\s+return\n\s+\}\n\n\s+pipeline\(/)
})

t.test('the script patches the published handler once, and only at emptyQueue', async (t) => {
  const dir = await makeTempDir(t)
  const file = join(dir, 'connect.js')
  const published = publishedHandler()
  t.notOk(published.includes(MARK), 'the copy is unpatched')
  writeFileSync(file, published)

  t.equal((await patch(file)).stderr, '')
  const patched = readFileSync(file, 'utf8')
  t.equal(patched.split(MARK).length - 1, 1)
  const emptyQueue = patched.slice(patched.indexOf('function emptyQueue'))
  t.ok(emptyQueue.indexOf('Array.isArray(outgoing)') < emptyQueue.indexOf('pipeline('), 'the check comes before the pipeline')
  // everything else is as published
  t.equal(patched.replace(/ {2}\/\/ Herald's patch[\s\S]*?\n {2}\}\n\n/, ''), published)

  t.equal((await patch(file)).stderr, '', 'a second run changes nothing')
  t.equal(readFileSync(file, 'utf8'), patched)
})

t.test('code the patch does not know is left alone, with one line saying so, and the install goes on', async (t) => {
  const dir = await makeTempDir(t)
  const file = join(dir, 'connect.js')
  const other = publishedHandler().replace('client.resume()', 'client.resume(true)')
  writeFileSync(file, other)
  const { stderr } = await patch(file)
  t.match(stderr, /is not the code scripts\/patch-aedes\.mjs knows; left unpatched/)
  t.equal(stderr.trim().split('\n').length, 1)
  t.equal(readFileSync(file, 'utf8'), other)

  const missing = await patch(join(dir, 'absent.js'))
  t.match(missing.stderr, /aedes left unpatched: ENOENT/)
})
