import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { makeTempDir } from '../helpers/broker.js'
import { logLine, root, runProcess, SECRET, spawnProcess, writeJson } from './cli-helpers.js'

/**
 * Installs like a server (issue 18): `npm pack`, then `npm install -g` of the
 * tarball into a private prefix, then the installed `herald start` from a
 * folder that has nothing of the repository. The package runs from its
 * compiled dist/ with production dependencies only: no TypeScript, no tap.
 *
 * Packs what `npm run build` left in dist/ (`npm test` builds first): packing
 * with its build script here would rewrite dist/ under the CLI tests running
 * beside this one. `npm pack` alone runs the build (`prepare`).
 */

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string, version: string }
// what a loaded 2-core CI machine is allowed; the figure itself is printed (issue 18 asks for under 2 s)
const READY_BOUND_MS = 5000
const hasSystemdAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('npm pack, npm install -g, herald start from the installed package', { timeout: 300_000 }, async (t) => {
    const work = await makeTempDir(t, 'herald-install-')
    const env = { HOME: process.env.HOME ?? '/root' }

    const packed = await runProcess(t, 'npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { env, cwd: root })
    t.equal(packed.code, 0, packed.stderr)
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
    const files = info?.files.map((f) => f.path) ?? []
    t.ok(files.includes('dist/src/cli/index.js'), 'the tarball holds the compiled CLI')
    t.ok(files.includes('bin/herald.js') && files.includes('LICENSE') && files.includes('config/default.json'))
    t.ok(files.includes('deploy/herald.service'), 'and the systemd unit')
    t.ok(files.includes('scripts/patch-aedes.mjs'), 'and the postinstall script that patches aedes')
    t.ok(['index.html', 'app.js', 'app.css'].every((f) => files.includes(`dist/console/${f}`)), 'and the admin console, built')
    t.same(files.filter((f) => f.endsWith('.ts') || f.startsWith('src/') || f.startsWith('test/') || f.startsWith('dist/test/') || f.startsWith('dist/bench/')), [], 'no TypeScript, tests or benchmarks')

    const prefix = join(work, 'prefix')
    const started = Date.now()
    // --prefix moves npm's global config (<prefix>/etc/npmrc) too: the machine's stays in force (its registry,
    // its CA file), or a package missing from npm's cache is fetched without them (and retried until the timeout)
    const globalConfig = spawnSync('npm', ['config', 'get', 'globalconfig'], { encoding: 'utf8' }).stdout.trim()
    const installed = await runProcess(t, 'npm', ['install', '-g', '--prefix', prefix, '--globalconfig', globalConfig, '--prefer-offline', '--no-audit', '--no-fund', join(work, info?.filename ?? 'missing.tgz')], { env, cwd: work })
    t.equal(installed.code, 0, installed.stderr)
    t.comment(`npm install -g took ${Date.now() - started} ms`)
    const modules = join(prefix, 'lib', 'node_modules', pkg.name, 'node_modules')
    // devDependencies that nothing in production needs (others, like @types/node, come with production dependencies)
    for (const dev of ['typescript', 'tap', 'eslint', 'neostandard']) t.notOk(readdirSync(modules).includes(dev), `no ${dev} at run time`)
    // the package's postinstall ran (scripts/patch-aedes.mjs)
    t.match(readFileSync(join(modules, 'aedes', 'lib', 'handlers', 'connect.js'), 'utf8'), "Herald's patch (scripts/patch-aedes.mjs)", 'the installed aedes carries Herald\'s patch')

    const herald = join(prefix, 'bin', 'herald')
    const version = await runProcess(t, herald, ['--version'], { env: { PATH: process.env.PATH ?? '' }, cwd: work })
    t.equal(version.stdout, `${pkg.version}\n`)

    // a folder that has nothing of the repository, a config with its own key and free ports
    const cwd = await makeTempDir(t, 'herald-installed-run-')
    const config = await writeJson(t, {
      dataDir: join(cwd, 'data'),
      listen: { host: '127.0.0.1' },
      mqtt: { port: 0 },
      http: { port: 0 },
      auth: { jwt: { keys: [{ alg: 'HS256', secret: SECRET }] } },
    })
    const check = await runProcess(t, herald, ['check-config', config], { cwd })
    t.equal(check.code, 0, check.stderr)

    const spawnedAt = performance.now()
    const { child, exited } = spawnProcess(t, herald, ['start', '--config', config], { cwd })
    const died = exited.then(({ code, signal }) => { throw new Error(`herald start exited (${code ?? signal ?? '?'}) early`) })
    died.catch(() => {})
    const line = await Promise.race([logLine(child.stdout, 'herald listening'), died]) as { ports: { http: number } }
    const readyMs = Math.round(performance.now() - spawnedAt)
    t.comment(`installed herald start: ready in ${readyMs} ms`)
    t.ok(readyMs < READY_BOUND_MS, `ready in ${readyMs} ms (bound ${READY_BOUND_MS} ms)`)

    const ready = await fetch(`http://127.0.0.1:${line.ports.http}/readyz`)
    t.equal(ready.status, 200, '/readyz')
    for (const path of ['/admin', '/admin/app.js', '/admin/app.css']) {
      const served = await fetch(`http://127.0.0.1:${line.ports.http}${path}`)
      t.equal(served.status, 200, `the installed package serves ${path}`)
      t.match(served.headers.get('content-security-policy'), /default-src 'self'/)
    }
    child.kill('SIGTERM')
    t.same(await exited, { code: 0, signal: null }, 'SIGTERM stops it with exit 0')
    t.ok(existsSync(join(cwd, 'data', 'db')), 'the store is in the configured dataDir')

    // deploy/herald.service as installed, its ExecStart pointed at this prefix instead of /usr/local
    await t.test('systemd-analyze verify accepts the unit', { skip: hasSystemdAnalyze ? false : 'systemd-analyze is not installed' }, async (t) => {
      const installedUnit = join(prefix, 'lib', 'node_modules', pkg.name, 'deploy', 'herald.service')
      const unit = readFileSync(installedUnit, 'utf8')
      t.match(unit, /^ExecStart=\/usr\/local\/bin\/herald start$/m)
      const local = join(work, 'herald.service')
      await writeFile(local, unit.replaceAll('/usr/local/bin/herald', herald).replaceAll('/usr/local/lib/node_modules/herald', join(prefix, 'lib', 'node_modules', pkg.name)))
      const verified = await runProcess(t, 'systemd-analyze', ['verify', local], { cwd: work })
      t.equal(verified.code, 0, verified.stderr)
      t.equal(verified.stderr, '', 'no warning')
    })
  })
}
