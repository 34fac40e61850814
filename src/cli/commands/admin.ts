import { resolve } from 'node:path'
import { adminConnection, adminRequest, ApiError, connectionOptions, UsageError, type AdminConnection } from '../admin-client.js'
import { formatShortUsage, type CommandSpec, type ParsedArgs } from '../help.js'

/**
 * The operator's commands: each is a call of the broker's admin API
 * (README "Operating Herald"), so what the CLI does a script or the web
 * console can do the same way.
 */

/** Runs an operator command: usage problems exit 2 with the usage line, the broker's refusals exit 1 with its code and message. */
function operatorCommand (spec: Omit<CommandSpec, 'run' | 'options'> & { options?: CommandSpec['options'] }, run: (connection: AdminConnection, args: ParsedArgs, json: boolean) => Promise<string>): CommandSpec {
  const command: CommandSpec = {
    ...spec,
    options: { ...spec.options, ...connectionOptions },
    async run (args) {
      try {
        const connection = adminConnection(args.values)
        process.stdout.write(await run(connection, args, args.values.json === true))
        return 0
      } catch (err) {
        if (err instanceof UsageError) {
          process.stderr.write(`${err.message}\n${formatShortUsage(command)}`)
          return 2
        }
        if (err instanceof ApiError) {
          process.stderr.write(`herald: ${err.message}\n`)
          return 1
        }
        throw err
      }
    },
  }
  return command
}

const asJson = (value: unknown): string => JSON.stringify(value, null, 2) + '\n'

/** Rows as aligned columns, the header first. */
function table (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: readonly string[]): string => cells.map((cell, i) => i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

function positiveInteger (value: string | boolean | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name}: a whole number of at least 1, not ${String(value)}`)
  return n
}

function onePositional (positionals: readonly string[], name: string): string {
  if (positionals.length !== 1 || positionals[0] === '') throw new UsageError(`one <${name}> is needed`)
  return positionals[0] as string
}

const enc = encodeURIComponent

/** Every page of a paged admin list (`next` → `after`), or the first `limit` items. */
async function pages<T> (connection: AdminConnection, path: string, key: string, limit: number | undefined, filter: Record<string, string> = {}): Promise<{ items: T[], total: number }> {
  const items: T[] = []
  let after: string | null = null
  for (;;) {
    const query = new URLSearchParams({ ...filter, limit: String(Math.min(1000, limit ?? 1000)) })
    if (after !== null) query.set('after', after)
    const page: Record<string, unknown> & { total: number, next: string | null } = await adminRequest(connection, 'GET', `${path}?${query.toString()}`)
    items.push(...page[key] as T[])
    if (limit !== undefined && items.length >= limit) return { items: items.slice(0, limit), total: page.total }
    if (page.next === null) return { items, total: page.total }
    after = page.next
  }
}

interface ConnectionView { clientId: string, user: string | null, node: string | null, connectedAt: string | null, address: string | null, transport: string | null }

export const clientsCommand = operatorCommand({
  name: 'clients',
  summary: 'list the connected MQTT clients (every node\'s in a cluster)',
  usage: '[--user <user>] [options]',
  description: 'List open MQTT connections, in client id order: GET /v1/admin/clients. In a cluster any node lists every node\'s connections; address, transport and since are known for the answering node\'s own.',
  options: {
    user: { type: 'string', value: 'user', help: 'only this user\'s connections (the token\'s sub)' },
    limit: { type: 'string', value: 'n', help: 'at most this many (default: all)' },
  },
}, async (connection, { values }, json) => {
  const { items: shown, total } = await pages<ConnectionView>(connection, '/v1/admin/clients', 'clients', positiveInteger(values.limit, 'limit'), values.user === undefined ? {} : { user: values.user as string })
  if (json) return asJson({ clients: shown, total })
  const rows = shown.map((c) => [c.clientId, c.user ?? '(anonymous)', c.node ?? '-', c.transport ?? '-', c.address ?? '-', c.connectedAt ?? '-'])
  return table(['CLIENT ID', 'USER', 'NODE', 'TRANSPORT', 'ADDRESS', 'CONNECTED AT'], rows) + `${shown.length} of ${total} connected\n`
})

export const disconnectCommand = operatorCommand({
  name: 'disconnect',
  summary: 'close a client\'s MQTT connection (its session stays)',
  usage: '<clientId> [options]',
  description: 'Close the connection of a client id on whichever node holds it: DELETE /v1/admin/clients/{clientId}/connection. Its persistent session (subscriptions, queue) stays and its will is published; the device may reconnect at once: delete its installation or stop trusting its token to keep it out. Exits 1 when it is not connected.',
  positionals: [{ name: 'clientId', help: 'the MQTT client id' }],
}, async (connection, { positionals }, json) => {
  const clientId = onePositional(positionals, 'clientId')
  await adminRequest(connection, 'DELETE', `/v1/admin/clients/${enc(clientId)}/connection`)
  return json ? asJson({ disconnected: clientId }) : `disconnected ${clientId}\n`
})

export const queueCommand = operatorCommand({
  name: 'queue',
  summary: 'show a client id\'s session: queued messages, subscriptions, connection',
  usage: '<clientId> [options]',
  description: 'Show what is stored for a client id: GET /v1/admin/clients/{clientId}. Queued messages are QoS 1/2 messages stored for its persistent session and not acknowledged yet. Exits 1 when nothing is known of it.',
  positionals: [{ name: 'clientId', help: 'the MQTT client id (an installation id, for installations)' }],
}, async (connection, { positionals }, json) => {
  const clientId = onePositional(positionals, 'clientId')
  const client = await adminRequest(connection, 'GET', `/v1/admin/clients/${enc(clientId)}`)
  if (json) return asJson(client)
  const where = client.connection === null
    ? 'offline'
    : `connected${client.connection.node !== null ? ` to ${client.connection.node as string}` : ''}${client.connection.address !== null ? ` from ${client.connection.address as string}` : ''}${client.connection.connectedAt !== null ? ` since ${client.connection.connectedAt as string}` : ''}`
  const subscriptions = client.session.subscriptions as Array<{ topic: string, qos: number }>
  return [
    `${client.clientId as string}: ${client.session.queuedMessages as number} queued message(s); ${where}`,
    `owner: ${client.owner ?? '(none)'}${client.installation === true ? ' (installation)' : ''}; will: ${client.session.will === true ? 'yes' : 'no'}`,
    `subscriptions (${subscriptions.length}):${subscriptions.map((s) => `\n  ${s.topic} (QoS ${s.qos})`).join('')}`,
  ].join('\n') + '\n'
})

interface DeadLetterView { id: string, installationId: string, reason: string, attempts: number, createdAt: string, deadAt: string, topic: string, messageId: string }

export const deadLettersCommand = operatorCommand({
  name: 'dead-letters',
  summary: 'list, show, replay or purge relay jobs that ran out of attempts',
  usage: 'list | show <id> | replay <id>|--all | purge <id>|--all [options]',
  description: 'Relay jobs given up after push.maxAttempts (every node\'s): /v1/admin/dead-letters.\n' +
    'list: one line each, in job id order. show: one in full, with what it would send. replay: back into the relay outbox with no attempts made and its ttl counted from now, sent to the installation\'s push token of that moment. purge: delete without sending.',
  options: {
    all: { type: 'boolean', help: 'replay or purge every dead letter' },
    limit: { type: 'string', value: 'n', help: 'list at most this many (default: all)' },
  },
  positionals: [{ name: 'action', help: 'list, show, replay or purge' }, { name: 'id', help: 'a dead letter\'s job id (from list)' }],
}, async (connection, { positionals, values }, json) => {
  const [action, id, ...extra] = positionals
  if (extra.length > 0) throw new UsageError(`unexpected ${extra.join(' ')}`)
  const all = values.all === true
  switch (action) {
    case 'list': {
      if (id !== undefined || all) throw new UsageError('list takes no <id> and no --all')
      const { items: shown, total } = await pages<DeadLetterView>(connection, '/v1/admin/dead-letters', 'deadLetters', positiveInteger(values.limit, 'limit'))
      if (json) return asJson({ deadLetters: shown, total })
      const rows = shown.map((l) => [l.id, l.installationId, l.deadAt, String(l.attempts), l.topic, l.reason])
      return table(['ID', 'INSTALLATION', 'DEAD AT', 'ATTEMPTS', 'TOPIC', 'REASON'], rows) + `${shown.length} of ${total} dead letters\n`
    }
    case 'show': {
      if (id === undefined || all) throw new UsageError('show takes one <id>')
      return asJson(await adminRequest(connection, 'GET', `/v1/admin/dead-letters/${enc(id)}`))
    }
    case 'replay':
    case 'purge': {
      if ((id === undefined) === !all) throw new UsageError(`${action} takes one <id> or --all`)
      let answer: { replayed?: number, purged?: number }
      if (action === 'replay') answer = await adminRequest(connection, 'POST', all ? '/v1/admin/dead-letters/replay' : `/v1/admin/dead-letters/${enc(id as string)}/replay`)
      else answer = all ? await adminRequest(connection, 'DELETE', '/v1/admin/dead-letters') : (await adminRequest(connection, 'DELETE', `/v1/admin/dead-letters/${enc(id as string)}`), { purged: 1 })
      if (json) return asJson(answer)
      return action === 'replay' ? `replayed ${answer.replayed ?? 0} dead letter(s)\n` : `purged ${answer.purged ?? 0} dead letter(s)\n`
    }
    case undefined: throw new UsageError('an action is needed: list, show, replay or purge')
    default: throw new UsageError(`unknown action ${action}: list, show, replay or purge`)
  }
})

export const pushCommand = operatorCommand({
  name: 'push',
  summary: 'send a test push to a topic, a user or an installation',
  usage: '--topic <t> | --user <u> | --installation <id> [--title <t>] [--body <b>] [--data <json>] [options]',
  description: 'Send a push as POST /v1/push does for a backend (that endpoint is the test push: this command calls it with the admin token): over MQTT to connected devices and through FCM/APNs to offline installations with a push token. Prints the message id the device sees in the envelope and in the FCM/APNs payload.',
  options: {
    topic: { type: 'string', value: 'topic', help: 'everyone subscribed to this topic (e.g. app/news)' },
    user: { type: 'string', value: 'user', help: 'every installation of this user (users/<user>/inbox)' },
    installation: { type: 'string', value: 'id', help: 'one installation' },
    title: { type: 'string', value: 'text', help: 'the notification title (default: "Herald test push" without --data)' },
    body: { type: 'string', value: 'text', help: 'the notification body' },
    data: { type: 'string', value: 'json', help: 'a JSON object of string values, e.g. \'{"orderId":"42"}\'' },
    ttl: { type: 'string', value: 'seconds', help: 'how long the message stays worth delivering' },
  },
}, async (connection, { values }, json) => {
  const targets = (['topic', 'user', 'installation'] as const).filter((key) => values[key] !== undefined)
  if (targets.length !== 1) throw new UsageError('exactly one of --topic, --user or --installation')
  const target = targets[0] as 'topic' | 'user' | 'installation'
  let data: unknown
  if (values.data !== undefined) {
    try {
      data = JSON.parse(values.data as string)
    } catch {
      throw new UsageError('--data: not JSON')
    }
  }
  const title = values.title as string | undefined
  const body = values.body as string | undefined
  const notification = title !== undefined || body !== undefined || data === undefined
    ? { title: title ?? 'Herald test push', ...(body !== undefined && { body }) }
    : undefined
  const ttl = positiveInteger(values.ttl, 'ttl')
  const request = {
    to: { [target]: values[target] as string },
    ...(notification !== undefined && { notification }),
    ...(data !== undefined && { data }),
    ...(ttl !== undefined && { ttl }),
  }
  const answer: { id: string } = await adminRequest(connection, 'POST', '/v1/push', request)
  return json ? asJson(answer) : `pushed ${answer.id} to ${target} ${values[target] as string}\n`
})

export const backupCommand = operatorCommand({
  name: 'backup',
  summary: 'back up the running broker\'s store into a new directory on its machine',
  usage: '<dir> [options]',
  description: 'Copy a consistent snapshot of the store while the broker runs: POST /v1/admin/backup. <dir> is a new or empty directory on the broker\'s machine (a relative path is made absolute here, for a broker on this machine); it becomes a data directory of its own: `herald restore <dir> <dataDir>`. Cluster mode refuses (back up Redis instead).',
  positionals: [{ name: 'dir', help: 'where the backup goes' }],
}, async (connection, { positionals }, json) => {
  const dir = resolve(onePositional(positionals, 'dir'))
  const result = await adminRequest(connection, 'POST', '/v1/admin/backup', { dir })
  return json ? asJson(result) : `backed up ${result.entries as number} entries (${result.bytes as number} bytes) into ${result.dir as string} in ${result.durationMs as number} ms\n`
})

/** Every operator command over the admin API, for src/cli/index.ts. */
export const adminCommands: CommandSpec[] = [clientsCommand, disconnectCommand, queueCommand, deadLettersCommand, pushCommand, backupCommand]
