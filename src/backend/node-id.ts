import { hostname } from 'node:os'
import type { HeraldConfig } from '../config/index.js'

/** `cluster.nodeId`, or host name and process id: unique per process, so every worker and restart is a node of its own. */
export function clusterNodeId (config: HeraldConfig, worker?: number): string {
  const base = config.cluster.nodeId ?? `${hostname()}-${process.pid}`
  return config.cluster.nodeId !== null && worker !== undefined ? `${base}-${worker}` : base
}
