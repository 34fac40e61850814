import type { Aedes, Client } from 'aedes'
import { newPacket, publishToClient, unsubscribeClient } from './aedes-internals.js'
import type { ClusterPresence } from '../cluster/presence.js'
import type { RemoteClients, RemoteOp } from '../cluster/remote-clients.js'

/** How many nodes one operation follows a connection through when it moves while asked (takeover). */
const MAX_HOPS = 3

/**
 * Acting on a client id's live connection wherever it is: on this node, or
 * (in a cluster) through the node that holds it. Also answers the other
 * nodes' requests for the connections of this one.
 */
export function createConnectionActions (
  aedes: Aedes,
  live: (clientId: string) => Client | undefined,
  presence: ClusterPresence | undefined,
  remote: RemoteClients | undefined
): (clientId: string, op: RemoteOp) => Promise<boolean> {
  /** What each operation does to a live connection on this node, whichever node asked. */
  async function perform (client: Client, { op, args }: RemoteOp): Promise<void> {
    switch (op) {
      // aedes' Client#publish queues the packet first when the session is persistent
      case 'deliverTo': return await publishToClient(client, newPacket(aedes, args))
      case 'subscribe': return await new Promise<void>((resolve, reject) => client.subscribe({ topic: args.topic, qos: args.qos }, (err) => err ? reject(err) : resolve()))
      case 'unsubscribe': return await unsubscribeClient(client, args.topic)
      case 'deleteSession':
      case 'disconnect': return await new Promise<void>((resolve) => client.close(() => resolve()))
    }
  }

  /**
   * Performs `op` on the client id's live connection, here or on the node the
   * presence names: false when no node holds one (the caller then acts on the
   * stored session, as for an offline client). A node that finds the
   * connection gone answers so; if the presence names another node by then
   * (the device moved), that one is asked.
   */
  async function onConnection (clientId: string, op: RemoteOp): Promise<boolean> {
    const client = live(clientId)
    if (client !== undefined) {
      await perform(client, op)
      return true
    }
    if (presence === undefined || remote === undefined) return false
    let asked: string | undefined
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      const node = presence.nodeOf(clientId)
      if (node === undefined || node === remote.node || node === asked) return false
      if (await remote.request(node, clientId, op)) return true
      asked = node
    }
    return false
  }

  remote?.serve(async (clientId, op) => {
    const client = live(clientId)
    if (client === undefined) return false
    await perform(client, op)
    return true
  })

  return onConnection
}
