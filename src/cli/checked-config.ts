import { assertTopicFilter, type TopicLimits } from '../acl/topic-validation.js'
import { ConfigError, loadConfig, type HeraldConfig, type LoadOptions } from '../config/index.js'
import { HeraldError } from '../errors/index.js'

/**
 * loadConfig, plus what only Herald's own rules can check (src/config imports
 * none of them): every ACL filter of the config, put through the broker's
 * filter rules (src/acl/topic-validation.ts) with the configured topic
 * limits. A filter the broker could never match (`telemetry/#/bad`) is a
 * mistake, not a grant. What every command of the CLI loads.
 */
export function loadCheckedConfig (options: LoadOptions): HeraldConfig {
  const config = loadConfig(options)
  const problems = aclFilterProblems(config)
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}

/** One line per bad filter of acl.rules and auth.anonymous.acl, named by its key. */
export function aclFilterProblems (config: HeraldConfig): string[] {
  const problems: string[] = []
  const limits: TopicLimits = config.limits
  config.acl.rules.forEach((rule, i) => {
    checkFilterList(rule.pub, `acl.rules[${i}].pub`, limits, problems)
    checkFilterList(rule.sub, `acl.rules[${i}].sub`, limits, problems)
  })
  checkFilterList(config.auth.anonymous.acl.pub, 'auth.anonymous.acl.pub', limits, problems)
  checkFilterList(config.auth.anonymous.acl.sub, 'auth.anonymous.acl.sub', limits, problems)
  return problems
}

/** `!` (deny) and `%u` (the user id, within a level) are the config's own syntax on top of a filter. */
function checkFilterList (entries: readonly string[], at: string, limits: TopicLimits, problems: string[]): void {
  entries.forEach((entry, i) => {
    const filter = (entry.startsWith('!') ? entry.slice(1) : entry).replaceAll('%u', 'u')
    try {
      assertTopicFilter(filter, limits)
    } catch (err) {
      if (!(err instanceof HeraldError)) throw err
      problems.push(`${at}[${i}]: ${JSON.stringify(entry)} is not a valid filter: ${err.message}`)
    }
  })
}
