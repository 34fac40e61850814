import assert from 'node:assert'
import { EventEmitter } from 'node:events'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import MQEmitterRedis from 'mqemitter-redis'
import t, { type Test } from 'tap'
import { openDatabase, type Database, type StorageEngine } from '../../src/store/open-store.js'
import { openRedisConnection, type RedisConnection } from '../../src/store/redis/connection.js'
import { RedisSessionStore } from '../../src/store/redis/session-store.js'
import { SessionStore } from '../../src/store/session-store.js'
import type { SessionStorage } from '../../src/store/session-storage.js'
import { makeTempDir } from '../helpers/broker.js'
import { startRedis } from '../helpers/redis.js'

// aedes-persistence's own abstract suite (abstract.js, v11), which every aedes
// persistence is meant to pass, run against Herald's session store on both
// LevelDB storage engines and against the Redis session store of cluster mode
// (on a redis-server of its own). RedisSessionStore keeps
// aedes-persistence-redis 11.2's key layout, not its class; the library was
// tested with the suite of aedes-persistence 10.3, and v11's differs from it
// only by two cleanIncoming cases, which RedisSessionStore implements (the
// library does not). The suite is written for node:test: it is given a `test`
// function and calls it once per case with a callback that takes a node:test
// context (t.plan, t.assert.*, t.diagnostic). Below, each case becomes a tap
// subtest, and a small context adapter turns every t.assert call into one tap
// assertion; the plan is checked when the case ends, as node:test does.

/** The part of a node:test context the abstract suite uses. */
interface SuiteContext {
  plan (count: number): void
  diagnostic (message: string): void
  assert: Record<string, (...args: unknown[]) => void>
}

interface SuiteOptions {
  test: (name: string, fn: (t: SuiteContext) => Promise<void>) => void
  persistence: () => Promise<SessionStorage>
  /** async persistence: the suite calls `await instance.setup(broker)` itself */
  testAsync: true
  buildEmitter: () => EventEmitter
}

const require = createRequire(import.meta.url)
const abstractPersistence = require('aedes-persistence/abstract.js') as (options: SuiteOptions) => void

/**
 * subscriptionsByTopic answers from OfflineSubscriptions (store/offline-subscriptions.ts):
 * one entry per client, at the highest QoS of its filters that match, holding
 * clientId, topic and qos only. That is all aedes reads from it (enqueueOffline
 * hands it to outgoingEnqueueCombi); the library returns every matching
 * (client, filter) with the whole stored subscription (rh, rap, nl: MQTT 5
 * options, which aedes 1.2 never receives).
 */
const BY_TOPIC = 'subscriptionsByTopic gives one entry per client with clientId, topic and qos only (OfflineSubscriptions)'

/**
 * outgoingClearMessageId (a PUBACK) reads nothing: it returns where the
 * message was in the queue (brokerId, brokerCounter, messageId, topic), not
 * the stored packet with its payload (SessionStore's class comment: "neither
 * an in-flight update nor a PUBACK reads before writing"). aedes only passes
 * it to its 'ack' event, which Herald does not listen to.
 */
const CLEAR_RETURNS_PLACE = 'outgoingClearMessageId returns the message\'s place in the queue, not the stored packet (no read per PUBACK)'

/**
 * The suite's cases Herald does not run on LevelDB, by name, each for a
 * documented difference of SessionStore from the library; nothing else is skipped.
 */
const SKIPPED = new Map<string, string>([
  ['store and look up subscriptions by topic', BY_TOPIC],
  ['QoS 0 subscriptions, restored but not matched', BY_TOPIC],
  ['same topic, different QoS', BY_TOPIC],
  ['replace subscriptions', BY_TOPIC],
  ['add duplicate subs to persistence for qos > 0', BY_TOPIC],
  ['add 2 outgoing packet and clear messageId', CLEAR_RETURNS_PLACE],
  // it also sizes its queue by the readableHighWaterMark of an empty client's
  // outgoingStream, which is an empty array: a CONNECT with nothing queued
  // builds no Readable (SessionStore.outgoingStream)
  ['add many outgoing packets and clear messageIds', `${CLEAR_RETURNS_PLACE}; an empty queue's outgoingStream is an empty array, not a Readable`],
])

/** node:test's t.assert holds node:assert's (loose) functions; the message is the argument after their operands. */
const ASSERTIONS: Record<string, number> = { ok: 1, equal: 2, notEqual: 2, deepEqual: 2, notDeepEqual: 2, strictEqual: 2, notStrictEqual: 2, deepStrictEqual: 2, notDeepStrictEqual: 2 }

function suiteContext (t: Test): { context: SuiteContext, checkPlan: () => void } {
  let planned: number | undefined
  let count = 0
  const assertions: SuiteContext['assert'] = {}
  for (const [name, operands] of Object.entries(ASSERTIONS)) {
    const check = (assert as unknown as Record<string, (...args: unknown[]) => void>)[name]
    if (check === undefined) throw new Error(`node:assert has no ${name}`)
    assertions[name] = (...args) => {
      count++
      const message = typeof args[operands] === 'string' ? args[operands] : name
      try {
        check(...args)
        t.pass(message)
      } catch (err) {
        if (!(err instanceof assert.AssertionError)) throw err
        t.fail(message, { found: err.actual, wanted: err.expected, compare: err.operator })
      }
    }
  }
  const context: SuiteContext = {
    plan: (n) => { planned = n },
    diagnostic: (message) => t.comment(message),
    assert: assertions,
  }
  const checkPlan = (): void => {
    if (planned !== undefined) t.equal(count, planned, `${planned} assertions, as planned`)
  }
  return { context, checkPlan }
}

/**
 * A session store as the broker builds it (createBroker: a sublevel of the
 * one database). Its destroy() is what closing the broker and then the
 * database does: flush() lands the writes held back, then all closes.
 */
class ContractStore extends SessionStore {
  readonly #root: Database

  constructor (root: Database) {
    super(root.sublevel('sessions', { valueEncoding: 'buffer' }))
    this.#root = root
  }

  override async destroy (): Promise<void> {
    await this.flush()
    await super.destroy()
    await this.#root.close()
  }
}

/**
 * subscriptionsByTopic of the Redis store gives one entry per client, at the
 * highest QoS of its filters that match, as SessionStore does (a message is
 * queued once per client: [MQTT-3.3.5-1]); aedes-persistence gives one per
 * (client, filter). Unlike SessionStore it keeps the whole stored
 * subscription (rh, rap, nl), so only the case with two matching filters of
 * one client differs.
 */
const REDIS_BY_TOPIC = 'subscriptionsByTopic gives one entry per client, at the highest QoS of its matching filters (RedisSessionStore)'

/** The cases not run against the Redis store; nothing else is skipped. */
const REDIS_SKIPPED = new Map<string, string>([
  ['store and look up subscriptions by topic', REDIS_BY_TOPIC],
])

/** Runs the suite, each case a tap subtest; checks that every skipped name is a case of it. */
function runSuite (t: Test, skipped: ReadonlyMap<string, string>, options: Omit<SuiteOptions, 'test' | 'testAsync'>): void {
  const seen = new Set<string>()
  abstractPersistence({
    ...options,
    test: (name, fn) => {
      seen.add(name)
      const skip = skipped.get(name)
      void t.test(name, skip === undefined ? {} : { skip }, async (t) => {
        const { context, checkPlan } = suiteContext(t)
        await fn(context)
        checkPlan()
      })
    },
    testAsync: true,
  })
  t.test('every skipped name is a case of the suite', async (t) => {
    t.same([...skipped.keys()].filter((name) => !seen.has(name)), [])
  })
}

for (const engine of ['leveldb', 'memory'] satisfies StorageEngine[]) {
  t.test(`aedes-persistence abstract suite, ${engine} engine`, async (t) => {
    const dir = await makeTempDir(t)
    const opened: Database[] = []
    // a case that fails before its cleanup leaves its database open
    t.teardown(async () => { for (const db of opened) if (db.status === 'open') await db.close() })
    runSuite(t, SKIPPED, {
      persistence: async () => {
        const db = await openDatabase(join(dir, String(opened.length)), engine)
        opened.push(db)
        return new ContractStore(db)
      },
      // the suite's fake broker wants an mqemitter; the store never touches it
      buildEmitter: () => new EventEmitter(),
    })
  })
}

/** The mq the suite builds for its fake broker: mqemitter-redis, the bus of cluster mode (the store itself does not use it). */
type Bus = ReturnType<typeof MQEmitterRedis>

/**
 * A Redis session store as a cluster node has it. Its destroy() is what
 * closing a node does: the store, then the broker's mq, then the connection.
 */
class ContractRedisStore extends RedisSessionStore {
  readonly #conn: RedisConnection

  constructor (conn: RedisConnection) {
    super(conn)
    this.#conn = conn
  }

  override async destroy (): Promise<void> {
    await super.destroy()
    const { mq } = this.broker as { mq: Bus }
    await new Promise<void>((resolve) => mq.close(resolve))
    await this.#conn.close()
  }
}

t.test('aedes-persistence abstract suite, Redis', async (t) => {
  const redis = await startRedis(t)
  const conns: RedisConnection[] = []
  const buses: Bus[] = []
  // a case that fails before its cleanup leaves its connections open
  t.teardown(async () => {
    await Promise.all(buses.map(async (bus) => await new Promise<void>((resolve) => bus.close(resolve))))
    await Promise.all(conns.map(async (conn) => await conn.close()))
  })
  runSuite(t, REDIS_SKIPPED, {
    persistence: async () => {
      // a key prefix per case: each starts with an empty store, as the library's suite gets by FLUSHALL
      const conn = await openRedisConnection({ url: redis.url, keyPrefix: `case${conns.length}:` })
      conns.push(conn)
      return new ContractRedisStore(conn)
    },
    buildEmitter: () => {
      const bus = MQEmitterRedis({ port: redis.port, host: '127.0.0.1' })
      buses.push(bus)
      return bus as unknown as EventEmitter
    },
  })
})
