import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { benchDistDir } from './paths.js'

/** One idle client a generator child connects: CONNECT (clean = false) and, with `topic`, SUBSCRIBE QoS 1. */
export interface IdleClientSpec {
  readonly clientId: string
  readonly localAddress: string
  readonly username?: string | undefined
  readonly password?: string | undefined
  readonly topic?: string | undefined
}

/** parent → child */
export type ToIdleChild =
  | { readonly type: 'start', readonly host: string, readonly port: number, readonly keepalive: number, readonly concurrency: number, readonly deadlineMs: number, readonly clients: readonly IdleClientSpec[] }
  | { readonly type: 'count' }

/** child → parent */
export type FromIdleChild =
  | { readonly type: 'connected', readonly connected: number, readonly failed: number, readonly firstError: string | undefined }
  | { readonly type: 'count', readonly held: number }

/**
 * Idle connections held by several load generator processes: one process
 * cannot hold more sockets than its open-files limit (20,000 here), and a
 * cluster of 3 workers can hold more than that. Each child connects its share
 * (`clients`), keeps it alive with PINGREQ every half keepalive, and says how
 * many are still open when asked. The children die with this process (their
 * IPC channel closes) or when `kill()`ed, after the broker has stopped so
 * the TIME_WAIT sockets are the broker's.
 */
export class IdleGenerators {
  readonly #children: ChildProcess[] = []

  get pids (): number[] { return this.#children.map((c) => c.pid).filter((p): p is number => p !== undefined) }

  /** Forks one child per share and connects every share; resolves when every child is done connecting. */
  async connect (shares: ReadonlyArray<readonly IdleClientSpec[]>, options: { host: string, port: number, keepalive: number, concurrency: number, deadlineMs: number }): Promise<{ connected: number, failed: number, firstError: string | undefined }> {
    const results = await Promise.all(shares.map(async (clients) => {
      // no --cpu-prof or other flags of this process: the children are load, not what is measured
      const child = fork(join(benchDistDir, 'lib', 'idle-generator-child.js'), [], { execArgv: [], stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'advanced' })
      this.#children.push(child)
      const done = this.#reply(child, 'connected')
      child.send({ type: 'start', ...options, clients } satisfies ToIdleChild)
      return await done
    }))
    let firstError: string | undefined
    for (const r of results) if (r.type === 'connected') firstError ??= r.firstError
    return {
      connected: results.reduce((a, r) => a + (r.type === 'connected' ? r.connected : 0), 0),
      failed: results.reduce((a, r) => a + (r.type === 'connected' ? r.failed : 0), 0),
      firstError,
    }
  }

  /** Connections still open in all children. */
  async held (): Promise<number> {
    const counts = await Promise.all(this.#children.map(async (child) => {
      const reply = this.#reply(child, 'count')
      child.send({ type: 'count' } satisfies ToIdleChild)
      const r = await reply
      return r.type === 'count' ? r.held : 0
    }))
    return counts.reduce((a, b) => a + b, 0)
  }

  kill (): void {
    for (const child of this.#children) child.kill('SIGKILL')
  }

  async #reply (child: ChildProcess, type: FromIdleChild['type']): Promise<FromIdleChild> {
    return await new Promise<FromIdleChild>((resolve, reject) => {
      const onMessage = (message: FromIdleChild): void => {
        if (message.type !== type) return
        cleanup()
        resolve(message)
      }
      const onExit = (code: number | null, signal: string | null): void => {
        cleanup()
        reject(new Error(`idle generator ${child.pid ?? '?'} exited (${signal ?? code ?? '?'})`))
      }
      const cleanup = (): void => {
        child.off('message', onMessage)
        child.off('exit', onExit)
      }
      child.on('message', onMessage)
      child.once('exit', onExit)
    })
  }
}
