import cluster from 'node:cluster'
import { signToken } from '../auth/index.js'
import { runPrimary, workerCount } from '../cluster/workers.js'
import type { HeraldConfig } from '../config/index.js'
import { buildServer, type ListeningPorts } from '../server.js'
import { loadCheckedConfig } from './checked-config.js'
import { ensureLocalSecret, localKeyOverrides } from './local-secret.js'
import { describeStartError } from './start-errors.js'

/**
 * `herald start`: load and validate the config, listen, and stop cleanly on
 * SIGTERM/SIGINT. Without configured keys it uses (and on first start creates)
 * a secret in the data directory and prints an admin token, so the quick start
 * is one command.
 */
export async function startCommand (configFile: string | undefined): Promise<number> {
  let config = loadCheckedConfig({ file: configFile })
  const localMode = config.auth.jwt.keys.length === 0
  if (localMode && config.cluster.redis.url !== null) {
    // every node must verify every token: a secret generated in one node's data directory cannot be that
    process.stderr.write('herald: cluster mode (cluster.redis.url) needs configured keys (auth.jwt.keys or HERALD_JWT_SECRET): the generated local secret cannot be shared between nodes\n')
    return 1
  }
  const workers = workerCount(config.cluster.workers)
  if (cluster.isPrimary && workers > 1) return await runPrimary({ workers, report: (line) => process.stderr.write(line + '\n') })
  let secretCreated = false
  if (localMode) {
    let secret: Awaited<ReturnType<typeof ensureLocalSecret>>
    try {
      secret = await ensureLocalSecret(config.dataDir)
    } catch (err) {
      process.stderr.write(`herald: could not start: ${describeStartError(err, config)}\n`)
      return 1
    }
    secretCreated = secret.created
    config = loadCheckedConfig({ file: configFile, overrides: localKeyOverrides(secret.file) })
  }

  const server = buildServer(config)
  let ports: ListeningPorts
  try {
    ports = await server.start()
  } catch (err) {
    // one line naming what is wrong (the Redis url, a port in use and its key), not a stack trace
    process.stderr.write(`herald: could not start: ${describeStartError(err, config)}\n`)
    await server.stop().catch(() => {})
    return 1
  }
  // stderr ends up in journald and container logs, which keep a token for as long
  // as they keep anything: print one only for a person at a terminal, or on the
  // first start, when nobody can have minted one yet
  if (localMode) printQuickStart(config, ports, { withToken: secretCreated || process.stderr.isTTY === true, configFile })

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
  // a worker's channel to the primary would keep it alive: it exits once the channel is gone
  cluster.worker?.disconnect()
  return 0
}

/** Printed to stderr, not logged: the token is for the person at the terminal. */
function printQuickStart (config: HeraldConfig, ports: ListeningPorts, options: { withToken: boolean, configFile: string | undefined }): void {
  const key = config.auth.jwt.keys[0]
  if (key === undefined) return
  const host = config.listen.host === '0.0.0.0' ? 'localhost' : config.listen.host
  const mint = `herald token --sub admin --role admin${options.configFile === undefined ? '' : ` --config ${options.configFile}`}`
  const token = options.withToken
    ? [
        'Admin token (24 h; more with `herald token --sub <user> --role admin`):',
        `  ${signToken(key, { sub: 'admin', role: 'admin', ttl: '24h' })}`,
      ]
    : [`Admin token not printed (stderr is not a terminal): mint one with \`${mint}\``]
  process.stderr.write([
    '',
    'Herald is ready.',
    `  MQTT       mqtt://${host}:${ports.mqtt}`,
    `  WebSocket  ws://${host}:${ports.http}${config.http.wsPath}`,
    `  HTTP       http://${host}:${ports.http}`,
    ...(ports.mqtts !== null ? [`  MQTT/TLS   mqtts://${host}:${ports.mqtts}`] : []),
    '',
    ...token,
    '',
    `Try: mosquitto_sub -h ${host} -p ${ports.mqtt} -t '$SYS/#' -u admin -P <token>`,
    '',
  ].join('\n') + '\n')
}
