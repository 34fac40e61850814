import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

/** Debian's redis-server (package `redis-server`); REDIS_SERVER overrides the path. */
export const REDIS_SERVER = process.env['REDIS_SERVER'] ?? 'redis-server'

/** `redis-server --version`'s version, or undefined when it cannot run here. */
export function redisVersion (): string | undefined {
  const out = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' })
  if (out.status !== 0) return undefined
  return /v=(\S+)/.exec(out.stdout)?.[1] ?? 'unknown'
}

/** A redis-server the bench started for one broker run, and a client of its own for what the phases ask it. */
export interface BenchRedis {
  readonly pid: number
  readonly port: number
  readonly url: string
  readonly client: Redis
  readonly exited: boolean
  stop (): Promise<void>
}

/**
 * Starts a private redis-server on `port` (127.0.0.1, a temp dir, no
 * persistence: `--save '' --appendonly no`, as the tests run theirs), for one
 * cluster broker run; stopped with it. Nothing else may use it, so its CPU is
 * the cluster's alone.
 */
export async function startRedisServer (port: number, kill: Set<ChildProcess>): Promise<BenchRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-bench-'))
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
    { stdio: ['ignore', 'pipe', 'pipe'] })
  kill.add(child)
  let tail = ''
  const keep = (chunk: Buffer): void => { tail = (tail + chunk.toString('utf8')).slice(-2000) }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let exited = false
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; kill.delete(child); resolve() }))
  if (child.pid === undefined) throw new Error(`could not start ${REDIS_SERVER}`)
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  // refused while redis-server starts; later failures reject the command that met them
  client.on('error', () => {})
  const deadline = Date.now() + 10_000
  for (;;) {
    if (exited) throw new Error(`redis-server exited during start: ${tail}`)
    try {
      await client.connect()
      if (await client.ping() === 'PONG') break
    } catch {
      client.disconnect()
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`redis-server not ready after 10 s: ${tail}`)
    }
    await sleep(50)
  }
  return {
    pid: child.pid,
    port,
    url: `redis://127.0.0.1:${port}`,
    client,
    get exited () { return exited },
    async stop () {
      client.disconnect()
      if (!exited) {
        child.kill('SIGTERM')
        if (!await Promise.race([exit.then(() => true), sleep(5000).then(() => false)])) {
          child.kill('SIGKILL')
          await exit
        }
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
