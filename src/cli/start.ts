import { signToken } from '../auth/index.js'
import { loadConfig, type HeraldConfig } from '../config/index.js'
import { buildServer, type ListeningPorts } from '../server.js'
import { ensureLocalSecret, localKeyOverrides } from './local-secret.js'

/**
 * `herald start`: load and validate the config, listen, and stop cleanly on
 * SIGTERM/SIGINT. Without configured keys it uses (and on first start creates)
 * a secret in the data directory and prints an admin token, so the quick start
 * is one command.
 */
export async function startCommand (configFile: string | undefined): Promise<number> {
  let config = loadConfig({ file: configFile })
  const localMode = config.auth.jwt.keys.length === 0
  if (localMode) {
    const { file } = await ensureLocalSecret(config.dataDir)
    config = loadConfig({ file: configFile, overrides: localKeyOverrides(file) })
  }

  const server = buildServer(config)
  const ports = await server.start()
  if (localMode) printQuickStart(config, ports)

  await new Promise<void>((resolve) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`${signal} again: exiting without a clean shutdown\n`)
        process.exit(1)
      }
      stopping = true
      server.stop().then(resolve, (err: unknown) => {
        process.stderr.write(`shutdown failed: ${String(err)}\n`)
        process.exit(1)
      })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
  return 0
}

/** Printed to stderr, not logged: the token is for the person at the terminal. */
function printQuickStart (config: HeraldConfig, ports: ListeningPorts): void {
  const key = config.auth.jwt.keys[0]
  if (key === undefined) return
  const token = signToken(key, { sub: 'admin', role: 'admin', ttl: '24h' })
  const host = config.listen.host === '0.0.0.0' ? 'localhost' : config.listen.host
  process.stderr.write([
    '',
    'Herald is ready.',
    `  MQTT       mqtt://${host}:${ports.mqtt}`,
    `  WebSocket  ws://${host}:${ports.http}${config.http.wsPath}`,
    `  HTTP       http://${host}:${ports.http}`,
    ...(ports.mqtts !== null ? [`  MQTT/TLS   mqtts://${host}:${ports.mqtts}`] : []),
    '',
    'Admin token (24 h; more with `herald token --sub <user> --role admin`):',
    `  ${token}`,
    '',
    `Try: mosquitto_sub -h ${host} -p ${ports.mqtt} -t '$SYS/#' -u admin -P <token>`,
    '',
  ].join('\n') + '\n')
}
