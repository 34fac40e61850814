import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { makeTempDir } from '../helpers/broker.js'

/** The CLI as the package runs it: bin/herald.js over the built dist/ (`npm run build` first). */
export const root = fileURLToPath(new URL('../../', import.meta.url))
export const heraldBin = join(root, 'bin', 'herald.js')
export const fixture = (name: string): string => join(root, 'test', 'fixtures', name)
export const SECRET = 'a-cli-test-secret-that-is-at-least-32-bytes'

export interface Finished { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }
export interface Exit { code: number | null, signal: NodeJS.Signals | null }

/** Only what the test sets (and PATH, HOME): the runner's HERALD_* and STATE_DIRECTORY cannot leak in. */
export function cleanEnv (env: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }
}

/** A child process killed at teardown if still running; `closed` once stdout and stderr have ended too. */
export function spawnProcess (t: Test, file: string, args: string[], options: { env?: Record<string, string>, cwd: string }): { child: ChildProcess, exited: Promise<Exit>, closed: Promise<Exit> } {
  const child = spawn(file, args, { cwd: options.cwd, env: cleanEnv(options.env ?? {}), stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const closed = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  closed.catch(() => {})
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await closed.catch(() => {})
  })
  return { child, exited, closed }
}

/** Runs a command to its end and collects its output. */
export async function runProcess (t: Test, file: string, args: string[], options: { env?: Record<string, string>, cwd?: string } = {}): Promise<Finished> {
  const cwd = options.cwd ?? await makeTempDir(t, 'herald-cli-')
  const { child, closed } = spawnProcess(t, file, args, { cwd, ...(options.env !== undefined && { env: options.env }) })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  return { ...await closed, stdout, stderr }
}

/** `herald <args>` from the repository's bin/herald.js. */
export async function runHerald (t: Test, args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return await runProcess(t, process.execPath, [heraldBin, ...args], { env })
}

export async function writeJson (t: Test, value: unknown): Promise<string> {
  const file = join(await makeTempDir(t, 'herald-cli-config-'), 'herald.json')
  await writeFile(file, JSON.stringify(value))
  return file
}

/** A TCP port taken on 127.0.0.1 until the test ends: what another process holding Herald's port looks like. */
export async function occupiedPort (t: Test): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  t.teardown(async () => await new Promise<void>((resolve) => server.close(() => resolve())))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** Resolves with the first pino JSON line of `stream` whose msg is `msg`. */
export async function logLine (stream: NodeJS.ReadableStream | null, msg: string): Promise<Record<string, unknown>> {
  return await new Promise((resolve) => {
    if (stream === null) return
    createInterface({ input: stream }).on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>
        if (entry.msg === msg) resolve(entry)
      } catch {
        // not a JSON line
      }
    })
  })
}

/** The environment of a `herald start` on free loopback ports, a temp data dir and the test secret, with `extra` over it. */
export async function startEnv (t: Test, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    HERALD_DATA_DIR: await makeTempDir(t, 'herald-cli-data-'),
    HERALD_LISTEN_HOST: '127.0.0.1',
    HERALD_MQTT_PORT: '0',
    HERALD_HTTP_PORT: '0',
    HERALD_JWT_SECRET: SECRET,
    ...extra,
  }
}

/** Resolves with everything `stream` wrote once `done` matches it. */
export async function readUntil (stream: NodeJS.ReadableStream | null, done: RegExp): Promise<string> {
  return await new Promise((resolve) => {
    let text = ''
    stream?.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      if (done.test(text)) resolve(text)
    })
  })
}
