import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { ListeningPorts } from '../../src/server.js'
import type { Teardown } from './broker.js'

/** The compiled CLI; `npm test` builds dist/ before running tap. */
export const heraldBin = fileURLToPath(new URL('../../bin/herald.js', import.meta.url))

export interface ChildBroker {
  readonly child: ChildProcess
  readonly ports: ListeningPorts
  readonly mqttUrl: string
  /** Resolves with the exit code (or signal name) once the process is gone. */
  readonly exited: Promise<number | string>
  /** Every JSON log line the broker wrote on stdout so far. */
  readonly logs: Array<Record<string, unknown>>
  /** Resolves with the first log line, past or future, that `match` accepts. */
  nextLog (match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
}

export interface SpawnOptions {
  /** A command that runs the broker, e.g. `['prlimit', '--nofile=256:256', '--']`: node and its arguments follow it. */
  readonly wrapper?: readonly string[]
}

/**
 * Runs `herald start` as a child process on free loopback ports, for tests
 * that kill or signal the broker. Resolves once it logs its ports.
 */
export async function spawnBroker (t: Teardown, env: Record<string, string>, options: SpawnOptions = {}): Promise<ChildBroker> {
  const [command, ...args] = [...(options.wrapper ?? []), process.execPath, heraldBin, 'start']
  const child = spawn(command as string, args, {
    env: {
      PATH: process.env.PATH ?? '',
      HERALD_LISTEN_HOST: '127.0.0.1',
      HERALD_MQTT_PORT: '0',
      HERALD_HTTP_PORT: '0',
      HERALD_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })

  const logs: Array<Record<string, unknown>> = []
  const watchers = new Set<(line: Record<string, unknown>) => void>()
  const nextLog = async (match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
    const found = logs.find(match)
    if (found !== undefined) return found
    return await new Promise((resolve) => {
      const watcher = (line: Record<string, unknown>): void => {
        if (!match(line)) return
        watchers.delete(watcher)
        resolve(line)
      }
      watchers.add(watcher)
    })
  }
  const ports = await new Promise<ListeningPorts>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', (line) => {
      let entry: Record<string, unknown> & { msg?: string, ports?: ListeningPorts }
      try {
        entry = JSON.parse(line) as typeof entry
      } catch {
        return // not a log line
      }
      logs.push(entry)
      for (const watcher of [...watchers]) watcher(entry)
      if (entry.msg === 'herald listening' && entry.ports !== undefined) resolve(entry.ports)
    })
    void exited.then((code) => reject(new Error(`broker exited (${String(code)}) before listening: ${stderr}`)))
  })
  return { child, ports, mqttUrl: `mqtt://127.0.0.1:${ports.mqtt}`, exited, logs, nextLog }
}
