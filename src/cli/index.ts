import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../config/index.js'
import { startCommand } from './start.js'
import { tokenCommand } from './token.js'
import { heraldVersion } from '../version.js'

const usage = `Usage:
  herald start [--config file]            run the broker
  herald token --sub <user> [--role device|service|admin] [--groups a,b] [--ttl 1h] [--kid id] [--config file]
  herald check-config [file]              validate a config file (and HERALD_* variables)
  herald --version
`

/** Runs one CLI command and resolves its exit code. */
export async function runCli (argv: string[]): Promise<number> {
  try {
    return await dispatch(argv)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n')
      return 1
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${err.message}\n\n${usage}`)
      return 2
    }
    throw err
  }
}

async function dispatch (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'start': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string' } } })
      return await startCommand(values.config)
    }
    case 'token': {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string' },
          sub: { type: 'string' },
          role: { type: 'string', default: 'device' },
          groups: { type: 'string', default: '' },
          ttl: { type: 'string', default: '1h' },
          kid: { type: 'string' },
        },
      })
      if (values.sub === undefined) {
        process.stderr.write(`--sub is required\n\n${usage}`)
        return 2
      }
      return tokenCommand({
        configFile: values.config,
        sub: values.sub,
        role: values.role,
        groups: values.groups.split(',').filter(Boolean),
        ttl: values.ttl === 'never' ? null : values.ttl,
        kid: values.kid,
      })
    }
    case 'check-config': {
      const { positionals, values } = parseArgs({ args: rest, allowPositionals: true, options: { config: { type: 'string' } } })
      loadConfig({ file: positionals[0] ?? values.config })
      process.stdout.write('configuration is valid\n')
      return 0
    }
    case '--version':
    case 'version':
      process.stdout.write(heraldVersion() + '\n')
      return 0
    case undefined:
    case '--help':
    case 'help':
      process.stdout.write(usage)
      return command === undefined ? 2 : 0
    default:
      process.stderr.write(`unknown command: ${command}\n\n${usage}`)
      return 2
  }
}
