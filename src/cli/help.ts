/**
 * How a CLI command describes itself: its options are both what parseArgs
 * accepts and what `herald help <command>` prints, so the two cannot drift.
 */

export interface OptionSpec {
  readonly type: 'string' | 'boolean'
  readonly short?: string
  /** Placeholder of a string option's value in the help: `--sub <user>`. */
  readonly value?: string
  /** Shown as `(default: …)`; also parseArgs' default. */
  readonly default?: string
  readonly help: string
}

export interface PositionalSpec {
  readonly name: string
  readonly help: string
}

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | boolean | undefined>>
  readonly positionals: readonly string[]
}

export interface CommandSpec {
  readonly name: string
  /** One line for `herald help`. */
  readonly summary: string
  /** After `herald <name> `: `--sub <user> [options]`. */
  readonly usage: string
  /** Paragraphs after the usage line. */
  readonly description?: string
  readonly options: Readonly<Record<string, OptionSpec>>
  /** Positional arguments; none allowed when absent. */
  readonly positionals?: readonly PositionalSpec[]
  /** Resolves the exit code: 0 done, 1 failed, 2 bad usage. */
  readonly run: (args: ParsedArgs) => Promise<number> | number
}

/** Every command takes these. */
export const helpOption: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help and exit' }

/** The option most commands take, with where the file is looked for when it is not given. */
export const configOption: OptionSpec = {
  type: 'string',
  value: 'file',
  help: 'JSON config file (default: $HERALD_CONFIG, else /etc/herald/herald.json if it exists, else none: built-in defaults); HERALD_* variables override it',
}

const WIDTH = 80

/** `herald help`: every command in one line each. */
export function formatUsage (commands: readonly CommandSpec[]): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2
  return [
    'Usage: herald <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => hang(`  ${c.name.padEnd(width)}`, c.summary)),
    '',
    'Options:',
    '  -h, --help     show help (also `herald <command> --help`, `herald help <command>`)',
    '  -v, --version  print the version',
    '',
    'Exit codes: 0 done, 1 failed (a message names the config key or port), 2 bad usage.',
    'Run `herald help <command>` for its options.',
    '',
  ].join('\n')
}

/** After a usage error: the usage line and where the rest is. */
export function formatShortUsage (command: CommandSpec): string {
  return `Usage: herald ${command.name} ${command.usage}`.trimEnd() + `\nRun \`herald ${command.name} --help\` for its options.\n`
}

/** `herald help <command>`, `herald <command> --help`. */
export function formatCommandHelp (command: CommandSpec): string {
  const rows: Array<[string, string]> = []
  for (const positional of command.positionals ?? []) rows.push([`<${positional.name}>`, positional.help])
  for (const [name, option] of Object.entries({ ...command.options, help: helpOption })) {
    const flag = `${option.short !== undefined ? `-${option.short}, ` : '    '}--${name}${option.value !== undefined ? ` <${option.value}>` : ''}`
    rows.push([flag, option.default !== undefined ? `${option.help} (default: ${option.default})` : option.help])
  }
  const width = Math.min(Math.max(...rows.map(([flag]) => flag.length)) + 2, 28)
  return [
    `Usage: herald ${command.name} ${command.usage}`.trimEnd(),
    '',
    ...(command.description !== undefined ? [...wrap(command.description, WIDTH), ''] : [command.summary, '']),
    command.positionals !== undefined && command.positionals.length > 0 ? 'Arguments and options:' : 'Options:',
    ...rows.map(([flag, help]) => flag.length + 2 > width ? `  ${flag}\n${hang(' '.repeat(width + 2), help)}` : hang(`  ${flag.padEnd(width)}`, help)),
    '',
  ].join('\n')
}

/** `lead` then `text` wrapped, continuation lines indented to the lead's width. */
function hang (lead: string, text: string): string {
  const lines = wrap(text, WIDTH - lead.length)
  return lines.map((line, i) => (i === 0 ? lead : ' '.repeat(lead.length)) + line).join('\n')
}

function wrap (text: string, width: number): string[] {
  const out: string[] = []
  for (const paragraph of text.split('\n')) {
    let line = ''
    for (const word of paragraph.split(' ')) {
      if (line !== '' && line.length + 1 + word.length > width) {
        out.push(line)
        line = word
      } else {
        line = line === '' ? word : `${line} ${word}`
      }
    }
    out.push(line)
  }
  return out
}
