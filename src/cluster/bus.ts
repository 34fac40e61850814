import MQEmitterRedis from 'mqemitter-redis'
import type { RedisConnection } from '../store/redis/connection.js'

/** The aedes `mq` of a cluster node, and how to close it. */
export interface ClusterBus {
  /** Given to aedes as `mq`. */
  readonly mq: unknown
  close (): Promise<void>
}

/**
 * aedes' message bus over Redis pub/sub (mqemitter-redis): a message
 * published on any node reaches the subscribers of every node, and aedes'
 * own cluster messages ride on it too ($SYS heartbeats, which tell each node
 * which others are alive for wills; `new/clients`, which closes a client's
 * old connection on another node when it connects again: takeover).
 *
 * Every channel carries `cluster.keyPrefix`, so two deployments on one Redis
 * never hear each other: mqemitter-redis names its channels after the MQTT
 * topics (wildcards as Redis patterns) and finds the topic of a message in
 * the message itself, so prefixing the channel names where it subscribes
 * and publishes is all it takes.
 */
export function createClusterBus (conn: RedisConnection, onError: (err: Error) => void): ClusterBus {
  const subConn = conn.subscriber()
  const pubConn = conn.subscriber()
  const prefix = conn.channel('mqtt:')
  const publish = pubConn.publish.bind(pubConn)
  pubConn.publish = (async (channel: string, message: Buffer) => await publish(`${prefix}${channel}`, message)) as typeof pubConn.publish
  const bus = MQEmitterRedis({ subConn, pubConn }) as MQEmitterRedis.MQEmitterRedis & { _subTopic (topic: string): string, state: NodeJS.EventEmitter }
  // an EventEmitter 'error' without a listener would throw: a lost Redis must not crash the node
  bus.state.on('error', onError)
  const subTopic = bus._subTopic.bind(bus)
  bus._subTopic = (topic) => `${prefix}${subTopic(topic)}`
  return {
    mq: bus,
    close: async () => await new Promise<void>((resolve) => bus.close(() => resolve())),
  }
}
