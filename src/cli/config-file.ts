import { existsSync } from 'node:fs'

/** Where a server install keeps its config (deploy/herald.service, docs/install.md). */
export const SYSTEM_CONFIG_FILE = '/etc/herald/herald.json'

/**
 * The config file a command reads: `--config`, else `$HERALD_CONFIG`, else
 * /etc/herald/herald.json when it exists, else none (the built-in defaults and
 * HERALD_* variables: the quick start). Only the CLI looks in /etc: a library
 * user or a test calling loadConfig never picks up the machine's config.
 */
export function findConfigFile (explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, systemFile: string = SYSTEM_CONFIG_FILE): string | undefined {
  if (explicit !== undefined && explicit !== '') return explicit
  const fromEnv = env.HERALD_CONFIG
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv
  return existsSync(systemFile) ? systemFile : undefined
}
