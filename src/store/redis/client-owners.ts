import type { ClientIdClaim, ClientOwnerStore } from '../client-owners.js'
import { InstallationOwners } from '../installation-owners.js'
import type { RedisConnection } from './connection.js'
import { openMirroredHash } from './mirrored-hash.js'
import type { RedisMirror } from './mirror.js'

/** The Redis store, with what a node needs beyond the interface. */
export interface RedisClientOwnerStore extends ClientOwnerStore {
  readonly mirror: RedisMirror<ClientIdClaim>
  /** Stops following other nodes' changes (the connection stays open). */
  close (): Promise<void>
}

export interface RedisStoreOptions {
  /** a reload of the mirror failed (it is retried), or another node published something unreadable */
  readonly onError?: (err: unknown) => void
}

/** One encoding for every node, so a value read back compares equal byte for byte (`release`). */
const encode = (claim: ClientIdClaim): string => JSON.stringify({ owner: claim.owner, installation: claim.installation })

function decode (raw: string): ClientIdClaim {
  const parsed = JSON.parse(raw) as Partial<ClientIdClaim>
  if (typeof parsed.owner !== 'string' || typeof parsed.installation !== 'boolean') throw new Error('client-owners: an unreadable claim')
  return { owner: parsed.owner, installation: parsed.installation }
}

/**
 * Client-id claims of a cluster: one Redis hash (`client-owners`, field =
 * client id), mirrored on every node (store/redis/mirror.ts) so that `get`
 * stays synchronous on the CONNECT path. `claim` is HGET-then-HSET in one
 * Lua script: of any number of nodes racing for a free id, one stores its
 * claim and every other one gets that claim back. A claim is in the
 * claiming node's mirror when `claim` resolves, and in the others' once
 * they have its change message (pub/sub, normally well under a millisecond
 * later; after a subscriber reconnect, once the mirror has reloaded).
 */
export async function openRedisClientOwnerStore (conn: RedisConnection, options: RedisStoreOptions = {}): Promise<RedisClientOwnerStore> {
  const installationOwners = new InstallationOwners()
  const hash = await openMirroredHash<ClientIdClaim>(conn, {
    index: installationOwners,
    hash: 'client-owners',
    seqKey: 'client-owners:seq',
    channel: 'client-owners-changes',
    decode,
    ...(options.onError !== undefined && { onError: options.onError }),
  })
  const { mirror } = hash
  return {
    mirror,
    get: (clientId) => mirror.get(clientId),
    async claim (clientId, claim) {
      const { value } = await hash.put(clientId, encode(claim), true)
      return decode(value)
    },
    async set (clientId, claim) {
      await hash.put(clientId, encode(claim), false)
    },
    async delete (clientId) {
      await hash.delete(clientId)
    },
    async release (clientId, claim) {
      // compared in Redis, not in the mirror: another node may have changed it a moment ago
      return await hash.delete(clientId, encode(claim))
    },
    entries: () => mirror.entries(),
    ownsInstallation: (owner) => installationOwners.has(owner),
    close: async () => await mirror.close(),
  }
}
