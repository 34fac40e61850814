import type { Client } from 'aedes'
import { remoteAddress, transportOf } from './aedes-internals.js'
import { userOwnerKey } from '../auth/index.js'
import type { ClusterPresence } from '../cluster/presence.js'
import type { ConnectedClient } from './broker-port.js'
import type { ConnectionRegistry } from './connection-registry.js'

/** The user id of an owner key (auth/principal.ts ownerKey); null for anonymous connections. */
function userOfOwner (owner: string): string | null {
  return owner.startsWith('user:') ? owner.slice('user:'.length) : null
}

/**
 * The open connections as the admin API lists them: this node's from the
 * registry, in full; in a cluster every node's from the presence, another
 * node's described by what the presence knows.
 */
export function createConnectedClients (
  registry: ConnectionRegistry<Client>,
  live: (clientId: string) => Client | undefined,
  presence: ClusterPresence | undefined,
  /** this node's id in a cluster */
  node: string | undefined
): { list: (filter?: { readonly user?: string }) => ConnectedClient[], get: (clientId: string) => ConnectedClient | undefined } {
  /** A connection of this node as the admin API shows it; `node` is this node's id in a cluster. */
  const describe = (client: Client, owner: string): ConnectedClient => {
    const since = registry.connectedAt(client)
    return {
      clientId: client.id,
      user: userOfOwner(owner),
      node: node ?? null,
      connectedAt: since ?? null,
      address: remoteAddress(client) ?? null,
      transport: transportOf(client) ?? null,
    }
  }

  /** One entry of the cluster's presence: a connection here is described in full, another node's by what the presence knows. */
  const describeEntry = (entry: { clientId: string, node: string, owner: string }): ConnectedClient => {
    const client = live(entry.clientId)
    const session = client === undefined ? undefined : registry.get(client)
    if (client !== undefined && session !== undefined) return describe(client, session.owner)
    return { clientId: entry.clientId, user: userOfOwner(entry.owner), node: entry.node, connectedAt: null, address: null, transport: null }
  }

  return {
    list (filter = {}) {
      const owner = filter.user === undefined ? undefined : userOwnerKey(filter.user)
      // in a cluster the presence knows every node's connections; alone, the registry is all there is
      if (presence !== undefined) return presence.list(owner).map(describeEntry)
      const found: ConnectedClient[] = []
      for (const [client, session] of registry.connections(owner)) if (!client.closed) found.push(describe(client, session.owner))
      return found
    },

    get (clientId) {
      const client = live(clientId)
      const session = client === undefined ? undefined : registry.get(client)
      if (client !== undefined && session !== undefined) return describe(client, session.owner)
      const nodeOf = presence?.nodeOf(clientId)
      const owner = presence?.ownerOf(clientId)
      return nodeOf === undefined || owner === undefined ? undefined : describeEntry({ clientId, node: nodeOf, owner })
    },
  }
}
