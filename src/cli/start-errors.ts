import { resolve } from 'node:path'
import type { HeraldConfig } from '../config/index.js'

interface SystemError extends Error {
  code?: string
  syscall?: string
  address?: string
  port?: number
  path?: string
  cause?: unknown
}

/**
 * One line for an operator: what failed at start, named by the config key
 * (and the port or path) to change, instead of Node's message or stack. An
 * error this does not recognise keeps its own message.
 */
export function describeStartError (err: unknown, config: HeraldConfig): string {
  const error = err as SystemError
  if (error === null || typeof error !== 'object') return String(err)
  if (error.syscall === 'listen' || error.syscall === 'bind') return describeListenError(error, config)
  if (error.code === 'LEVEL_DATABASE_NOT_OPEN') return describeDatabaseError(error, config)
  if (typeof error.path === 'string' && error.code !== undefined) return describePathError(error, config)
  return error.message
}

function describeListenError (error: SystemError, config: HeraldConfig): string {
  const port = error.port ?? 0
  const address = error.address ?? config.listen.host
  const keys = portKeys(config).filter(([, p]) => p === port).map(([key]) => key)
  const key = keys.length > 0 ? keys.join(', ') : 'listen'
  switch (error.code) {
    case 'EADDRINUSE':
      return `${key}: port ${port} on ${address} is already in use (another Herald or broker?)`
    case 'EACCES':
      return `${key}: no permission to listen on port ${port} on ${address} (ports below 1024 need CAP_NET_BIND_SERVICE)`
    case 'EADDRNOTAVAIL':
      return `listen.host: ${address} is not an address of this machine`
    default:
      return `${key}: cannot listen on port ${port} on ${address} (${error.code ?? error.message})`
  }
}

function describeDatabaseError (error: SystemError, config: HeraldConfig): string {
  const cause = error.cause as SystemError | undefined
  if (cause?.code === 'LEVEL_LOCKED') return `dataDir: the database in ${config.dataDir} is in use by another process (another Herald on the same data directory?)`
  if (cause !== undefined && typeof cause.path === 'string' && cause.code !== undefined) return describePathError(cause, config)
  return `dataDir: cannot open the database in ${config.dataDir}: ${cause?.message ?? error.message}`
}

/** A file system error: the key whose path it is (dataDir for anything under it). */
function describePathError (error: SystemError, config: HeraldConfig): string {
  const path = error.path as string
  const key = pathKey(config, path) ?? path
  const what = error.code === 'ENOENT'
    ? 'no such file or directory'
    : error.code === 'EACCES' || error.code === 'EPERM'
      ? 'permission denied'
      : error.code === 'ENOTDIR'
        ? 'a part of the path is not a directory'
        : error.code === 'EROFS' ? 'read-only file system' : (error.code as string)
  return `${key}: ${path}: ${what}${error.syscall !== undefined ? ` (${error.syscall})` : ''}`
}

function portKeys (config: HeraldConfig): Array<[string, number]> {
  const ports: Array<[string, number]> = [['mqtt.port', config.mqtt.port], ['http.port', config.http.port]]
  if (config.tls.certFile !== null) ports.push(['tls.mqttPort', config.tls.mqttPort], ['tls.httpsPort', config.tls.httpsPort])
  return ports
}

/** The config key holding `path` exactly, else dataDir when the path lies inside it. */
function pathKey (config: HeraldConfig, path: string): string | undefined {
  const found = findValue(config, path, '')
  if (found !== undefined) return found
  // LevelDB and mkdir name the path as they were given it: compare absolute paths
  const dir = resolve(config.dataDir)
  const full = resolve(path)
  if (full === dir || full.startsWith(`${dir}/`) || dir.startsWith(`${full}/`)) return 'dataDir'
  return undefined
}

function findValue (node: unknown, wanted: string, at: string): string | undefined {
  if (node === wanted) return at
  if (node === null || typeof node !== 'object') return undefined
  for (const [key, value] of Object.entries(node)) {
    const path = Array.isArray(node) ? `${at}[${key}]` : at === '' ? key : `${at}.${key}`
    const found = findValue(value, wanted, path)
    if (found !== undefined) return found
  }
  return undefined
}
