import { createRequire } from 'node:module'
import { pino, type Logger } from 'pino'
import type { PrettyOptions } from 'pino-pretty'
import type { HeraldConfig } from './config/index.js'

interface Output { write (text: string): unknown, readonly isTTY?: boolean }

/** Whether `log.format` asks for pino-pretty on this output. */
export function prettyLogs (format: HeraldConfig['log']['format'], output: Output = process.stdout): boolean {
  return format === 'pretty' || (format === 'auto' && output.isTTY === true)
}

/**
 * The process's logger: pino JSON lines on stdout (for journald, container
 * runtimes and log shippers), or pino-pretty's lines for a person at a
 * terminal (`log.format`). Pretty lines are formatted synchronously in this
 * thread (no transport worker), so nothing logged before an exit is lost, and
 * pino-pretty is only loaded when asked for.
 */
export function createLogger (config: Pick<HeraldConfig, 'log'>, base: Record<string, unknown>, output: Output = process.stdout): Logger {
  const options = { level: config.log.level, base }
  if (!prettyLogs(config.log.format, output)) return pino(options)
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as { prettyFactory: (options: PrettyOptions) => (line: string) => string }
  const prettify = prettyFactory({
    colorize: output.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'name',
  })
  return pino(options, { write: (line: string) => output.write(prettify(line)) })
}

interface Ports { readonly mqtt: number, readonly http: number, readonly mqtts: number | null, readonly https: number | null }

/** What the start-up line lists: every listener as a URL, as bound. */
export function listenerUrls (host: string, wsPath: string, ports: Ports): string[] {
  const at = host.includes(':') ? `[${host}]` : host
  return [
    `mqtt://${at}:${ports.mqtt}`,
    `http://${at}:${ports.http}`,
    `ws://${at}:${ports.http}${wsPath}`,
    ...(ports.mqtts !== null ? [`mqtts://${at}:${ports.mqtts}`] : []),
    ...(ports.https !== null ? [`https://${at}:${ports.https}`, `wss://${at}:${ports.https}${wsPath}`] : []),
  ]
}

/** The relay providers configured (`push.fcm`, `push.apns`); none: devices are reached over MQTT only. */
export function enabledProviders (push: HeraldConfig['push']): string[] {
  return [...(push.fcm !== undefined ? ['fcm'] : []), ...(push.apns !== undefined ? ['apns'] : [])]
}
