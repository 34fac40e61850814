export { ConfigSchema, type HeraldConfig, type JwtKeyConfig, type GrantsConfig, type AclRuleConfig } from './schema.js'
export { loadConfig, ConfigError, type LoadOptions } from './load.js'
export { redactConfig } from './redact.js'
