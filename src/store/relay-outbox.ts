import { createLocalRelayStore, type DeadLetter, type OutboxStorage, type RelayJob, type RelayStore } from '../../plugins/push-core/index.js'
import type { Database } from './open-store.js'

/**
 * The relay's durable outbox of a single process: jobs until settled, and dead
 * letters kept for inspection. One process owns every job, so the jobs waiting
 * to be sent are handed to its worker from memory (createLocalRelayStore).
 */
export function createRelayOutbox (db: Database): RelayStore {
  return createLocalRelayStore(levelOutboxStorage(db))
}

/** The two sublevels behind the outbox; exported for tests that look at what is stored. */
export function levelOutboxStorage (db: Database): OutboxStorage {
  const jobs = db.sublevel<string, RelayJob>('relay-outbox', { valueEncoding: 'json' })
  const dead = db.sublevel<string, DeadLetter>('relay-dead', { valueEncoding: 'json' })
  return {
    putMany: async (list) => { await jobs.batch(list.map((job) => ({ type: 'put' as const, key: job.id, value: job }))) },
    put: async (job) => { await jobs.put(job.id, job) },
    deleteMany: async (ids) => { await jobs.batch(ids.map((id) => ({ type: 'del' as const, key: id }))) },
    async deadLetter (job, reason) {
      await db.batch()
        .put(job.id, { ...job, reason, deadAt: Date.now() }, { sublevel: dead })
        .del(job.id, { sublevel: jobs })
        .write()
    },
    loadAll: () => jobs.values(),
    deadLetters: () => dead.values(),
    deadLettersAfter: (after, limit) => dead.values({ ...(after !== undefined && { gt: after }), limit }),
    getDeadLetter: async (id) => await dead.get(id),
    async revive (job) {
      await db.batch()
        .put(job.id, job, { sublevel: jobs })
        .del(job.id, { sublevel: dead })
        .write()
    },
    deleteDeadLetters: async (ids) => { await dead.batch(ids.map((id) => ({ type: 'del' as const, key: id }))) },
    deadLetterIds: () => dead.keys(),
  }
}
