import { makeTempDir, TEST_SECRET, type Teardown } from './broker.js'
import { spawnBroker, type ChildBroker } from './child-broker.js'
import { startRedis, type TestRedis } from './redis.js'
import { eventually } from './eventually.js'

export interface TestCluster {
  readonly redis: TestRedis
  readonly nodes: ChildBroker[]
  /** Starts one more node on the same Redis (e.g. after a kill). */
  addNode (): Promise<ChildBroker>
}

export interface ClusterOptions {
  readonly nodes: number
  /** cluster.nodeTimeoutMs: how soon a killed node's connections, jobs and wills are taken over */
  readonly nodeTimeoutMs?: number
  /** more HERALD_* variables for every node */
  readonly env?: Record<string, string>
  /** more HERALD_* variables for one node (0 for the first, counting nodes added later), e.g. its own HERALD_CONFIG */
  readonly nodeEnv?: (index: number) => Record<string, string>
}

/**
 * A cluster of `herald start` processes on this machine, each on its own
 * free ports and data dir, sharing one redis-server the test started.
 */
export async function startCluster (t: Teardown, options: ClusterOptions): Promise<TestCluster> {
  const redis = await startRedis(t)
  let count = 0
  const addNode = async (): Promise<ChildBroker> => {
    const index = count++
    return await spawnBroker(t, {
      HERALD_DATA_DIR: await makeTempDir(t),
      HERALD_JWT_SECRET: TEST_SECRET,
      HERALD_CLUSTER_REDIS_URL: redis.url,
      HERALD_CLUSTER_KEY_PREFIX: 'e2e:',
      HERALD_CLUSTER_NODE_ID: `node-${index + 1}`,
      HERALD_CLUSTER_NODE_TIMEOUT_MS: String(options.nodeTimeoutMs ?? 10_000),
      ...options.env,
      ...options.nodeEnv?.(index),
    })
  }
  const nodes = await Promise.all(Array.from({ length: options.nodes }, addNode))
  return { redis, nodes, addNode }
}

/** What a node's `/readyz` answers: its status and, when not ready, the error code. */
export async function readyz (node: ChildBroker, signal?: AbortSignal): Promise<{ status: number, code: string | undefined }> {
  const response = await fetch(`http://127.0.0.1:${node.ports.http}/readyz`, { ...(signal !== undefined && { signal }) })
  const body = await response.json() as { error?: { code?: string } }
  return { status: response.status, code: body.error?.code }
}

/**
 * Asks `/readyz` of a node until it answers `status` (every 20 ms: nothing
 * announces it), at most `ms`; resolves the time it did (Date.now()). A
 * request not answered within 500 ms counts as not yet (`/readyz` may wait
 * for a probe write), so the time is when a new request gets the answer.
 */
export async function untilReadyz (node: ChildBroker, status: 200 | 503, ms: number): Promise<number> {
  let answeredAt = 0
  await eventually(`/readyz ${status} on port ${node.ports.http}`, async () => {
    const answer = await readyz(node, AbortSignal.timeout(500)).catch((err: Error) => {
      if (err.name === 'TimeoutError') return undefined
      throw err
    })
    if (answer?.status !== status) return false
    answeredAt = Date.now()
    return true
  }, ms)
  return answeredAt
}
