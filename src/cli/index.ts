import { parseArgs } from 'node:util'
import { ConfigError } from '../config/index.js'
import { heraldVersion } from '../version.js'
import { loadCheckedConfig } from './checked-config.js'
import { findConfigFile } from './config-file.js'
import { configOption, formatCommandHelp, formatShortUsage, formatUsage, helpOption, type CommandSpec, type OptionSpec } from './help.js'
import { startCommand } from './start.js'
import { tokenCommand } from './token.js'
import { adminCommands } from './commands/admin.js'
import { restoreCommand } from './commands/restore.js'

const start: CommandSpec = {
  name: 'start',
  summary: 'run the broker (MQTT, HTTP API, WebSocket; TLS when configured)',
  usage: '[--config file]',
  description: 'Run the broker in the foreground until SIGTERM or SIGINT. Logs go to stdout (log.format), messages for a person to stderr.\n' +
    'Without configured keys (auth.jwt.keys, HERALD_JWT_SECRET) it creates a secret in dataDir on the first start and prints an admin token.\n' +
    'A failure to start prints one line naming the config key or port and exits 1.',
  options: { config: configOption },
  run: async ({ values }) => await startCommand(findConfigFile(values.config as string | undefined)),
}

const token: CommandSpec = {
  name: 'token',
  summary: 'print a token (JWT) for a user, signed with a configured key or the local secret',
  usage: '--sub <user> [options]',
  description: 'Print a JWT signed with the first key of auth.jwt.keys (or the one --kid names; RS256/ES256 need its privateKeyFile), or with the secret `herald start` created in dataDir. A token the broker would refuse (auth.jwt.requireExp, auth.jwt.maxTtlSec) is not printed.',
  options: {
    sub: { type: 'string', value: 'user', help: 'user id, the token\'s sub claim (required)' },
    role: { type: 'string', value: 'role', default: 'device', help: 'device, service or admin' },
    groups: { type: 'string', value: 'a,b', help: 'groups the user belongs to, comma-separated (default: none)' },
    ttl: { type: 'string', value: 'duration', default: '1h', help: 'lifetime: 90s, 15m, 1h, 7d, or never (no exp claim)' },
    kid: { type: 'string', value: 'id', help: 'sign with the key of this kid (default: the first key)' },
    config: configOption,
  },
  run: ({ values }) => {
    if (values.sub === undefined) {
      process.stderr.write(`--sub is required\n${formatShortUsage(token)}`)
      return 2
    }
    const ttl = values.ttl as string
    return tokenCommand({
      configFile: findConfigFile(values.config as string | undefined),
      sub: values.sub as string,
      role: values.role as string,
      groups: ((values.groups as string | undefined) ?? '').split(',').filter(Boolean),
      ttl: ttl === 'never' ? null : ttl,
      kid: values.kid as string | undefined,
    })
  },
}

const checkConfig: CommandSpec = {
  name: 'check-config',
  summary: 'validate the configuration and every file it names, then exit',
  usage: '[file] [--config file]',
  description: 'Run the checks of `herald start` without starting: the config file and HERALD_* variables against the schema, every PEM public key, certificate and private key it names (auth.jwt.keys, tls, push.fcm, push.apns, their caFiles), and every ACL filter (acl.rules, auth.anonymous.acl). Prints each problem on its own line, named by its key, and exits 1; prints `configuration is valid` and exits 0 otherwise.',
  options: { config: configOption },
  positionals: [{ name: 'file', help: 'the config file (as --config)' }],
  run: ({ positionals, values }) => {
    if (positionals.length > 1) {
      process.stderr.write(`one config file at most\n${formatShortUsage(checkConfig)}`)
      return 2
    }
    const file = findConfigFile(positionals[0] ?? values.config as string | undefined)
    loadCheckedConfig({ file })
    process.stdout.write(`configuration is valid${file !== undefined ? ` (${file})` : ' (no config file: defaults and HERALD_* variables)'}\n`)
    return 0
  },
}

const version: CommandSpec = {
  name: 'version',
  summary: 'print the version (also --version, -v)',
  usage: '',
  options: {},
  run: () => {
    process.stdout.write(heraldVersion() + '\n')
    return 0
  },
}

const help: CommandSpec = {
  name: 'help',
  summary: 'show the commands, or one command\'s options',
  usage: '[command]',
  options: {},
  positionals: [{ name: 'command', help: 'the command to explain' }],
  run: ({ positionals }) => {
    const name = positionals[0]
    if (name === undefined) {
      process.stdout.write(formatUsage(commands))
      return 0
    }
    const command = commands.find((c) => c.name === name)
    if (command === undefined) return unknownCommand(name)
    process.stdout.write(formatCommandHelp(command))
    return 0
  },
}

/**
 * Every command, in the order `herald help` lists them. A new command is a
 * CommandSpec added here: its options are what it accepts and what its help
 * shows, and --help/-h come with it.
 */
const commands: CommandSpec[] = [start, token, checkConfig, ...adminCommands, restoreCommand, version, help]

/** Runs one CLI command and resolves its exit code. */
export async function runCli (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined) {
    process.stderr.write(formatUsage(commands))
    return 2
  }
  if (name === '--help' || name === '-h') return await runCli(['help', ...rest])
  if (name === '--version' || name === '-v') return await runCli(['version', ...rest])
  const command = commands.find((c) => c.name === name)
  if (command === undefined) return unknownCommand(name)
  try {
    return await runCommand(command, rest)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(configErrorText(err))
      return 1
    }
    // an operational failure (a file, the network) is one line; a bug keeps its stack trace
    if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string') {
      process.stderr.write(`herald: ${err.message}\n`)
      return 1
    }
    throw err
  }
}

async function runCommand (command: CommandSpec, args: string[]): Promise<number> {
  const options: Record<string, OptionSpec> = { ...command.options, help: helpOption }
  let parsed
  try {
    parsed = parseArgs({
      args,
      options: Object.fromEntries(Object.entries(options).map(([key, o]) => [key, {
        type: o.type,
        ...(o.short !== undefined && { short: o.short }),
        ...(o.default !== undefined && { default: o.default }),
      }])),
      allowPositionals: command.positionals !== undefined,
      strict: true,
    })
  } catch (err) {
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${err.message}\n${formatShortUsage(command)}`)
      return 2
    }
    throw err
  }
  if (parsed.values.help === true) {
    process.stdout.write(formatCommandHelp(command))
    return 0
  }
  return await command.run({ values: parsed.values, positionals: parsed.positionals })
}

function unknownCommand (name: string): number {
  process.stderr.write(`unknown command: ${name}\n\n${formatUsage(commands)}`)
  return 2
}

/** One line when there is one problem, so a start-up failure reads as one line; one line per problem otherwise. */
function configErrorText (err: ConfigError): string {
  if (err.problems.length === 1) return `herald: invalid configuration: ${err.problems[0] as string}\n`
  return `herald: invalid configuration:\n  ${err.problems.join('\n  ')}\n`
}
