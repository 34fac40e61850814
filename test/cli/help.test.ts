import { existsSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { root, runHerald } from './cli-helpers.js'

// every command and the options its help must show (what parseArgs accepts: test/cli/cli.test.ts uses them)
const commands: Record<string, string[]> = {
  start: ['--config <file>'],
  token: ['--sub <user>', '--role <role>', '--groups <a,b>', '--ttl <duration>', '--kid <id>', '--config <file>'],
  'check-config': ['--config <file>', '<file>'],
  version: [],
  help: ['<command>'],
}

if (!existsSync(join(root, 'dist', 'src', 'cli', 'index.js'))) {
  t.fail('dist/ is missing: run `npm run build` before the CLI tests')
} else {
  t.test('herald help, --help and -h list every command, exit 0', async (t) => {
    const help = await runHerald(t, ['help'])
    t.equal(help.code, 0)
    t.equal(help.stderr, '')
    t.match(help.stdout, /^Usage: herald <command> \[options\]\n/)
    for (const name of Object.keys(commands)) t.match(help.stdout, new RegExp(`^  ${name} +\\S`, 'm'), `lists ${name}`)
    for (const flag of ['--help', '-h']) {
      const other = await runHerald(t, [flag])
      t.equal(other.code, 0, flag)
      t.equal(other.stdout, help.stdout, `${flag} prints the same`)
    }
  })

  for (const [name, options] of Object.entries(commands)) {
    t.test(`herald ${name}: help in three spellings, every option shown, exit 0`, async (t) => {
      const viaHelp = await runHerald(t, ['help', name])
      t.equal(viaHelp.code, 0, viaHelp.stderr)
      t.equal(viaHelp.stderr, '')
      t.match(viaHelp.stdout, new RegExp(`^Usage: herald ${name}\\b`))
      for (const option of [...options, '-h, --help']) t.ok(viaHelp.stdout.includes(option), `shows ${option}`)
      for (const flag of ['--help', '-h']) {
        const viaFlag = await runHerald(t, [name, flag])
        t.equal(viaFlag.code, 0, `${name} ${flag}`)
        t.equal(viaFlag.stdout, viaHelp.stdout, `${name} ${flag} prints the same help`)
      }
    })
  }

  t.test('--help wins over a missing required option', async (t) => {
    const result = await runHerald(t, ['token', '--help'])
    t.equal(result.code, 0)
    t.match(result.stdout, /^Usage: herald token --sub <user>/)
  })

  t.test('usage errors exit 2 with the usage on stderr', async (t) => {
    const none = await runHerald(t, [])
    t.equal(none.code, 2, 'no command')
    t.equal(none.stdout, '')
    t.match(none.stderr, /^Usage: herald <command>/)

    const unknownOption = await runHerald(t, ['start', '--bogus'])
    t.equal(unknownOption.code, 2, 'unknown option')
    t.equal(unknownOption.stdout, '')
    t.match(unknownOption.stderr, /^Unknown option '--bogus'.*\nUsage: herald start \[--config file\]\nRun `herald start --help` for its options\.\n$/)

    const unknownCommand = await runHerald(t, ['strat'])
    t.equal(unknownCommand.code, 2, 'unknown command')
    t.match(unknownCommand.stderr, /^unknown command: strat\n\nUsage: herald <command>/)

    const helpUnknown = await runHerald(t, ['help', 'strat'])
    t.equal(helpUnknown.code, 2, 'help for an unknown command')
    t.match(helpUnknown.stderr, /^unknown command: strat\n/)

    const missing = await runHerald(t, ['token'])
    t.equal(missing.code, 2, 'token without --sub')
    t.match(missing.stderr, /^--sub is required\nUsage: herald token/)

    const positional = await runHerald(t, ['start', 'extra'])
    t.equal(positional.code, 2, 'start takes no positional argument')
    t.match(positional.stderr, /Unexpected argument 'extra'/)
  })

  t.test('-v and version print the version', async (t) => {
    const short = await runHerald(t, ['-v'])
    const long = await runHerald(t, ['version'])
    t.equal(short.code, 0)
    t.match(short.stdout, /^\d+\.\d+\.\d+/)
    t.equal(long.stdout, short.stdout)
  })
}
