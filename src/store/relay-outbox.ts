import type { RelayJob, RelayStore } from '../../plugins/push-core/index.js'
import type { Database } from './open-store.js'

/** The relay's durable outbox: jobs until settled, and dead letters kept for inspection. */
export function createRelayOutbox (db: Database): RelayStore {
  const jobs = db.sublevel<string, RelayJob>('relay-outbox', { valueEncoding: 'json' })
  const dead = db.sublevel<string, RelayJob & { reason: string, deadAt: number }>('relay-dead', { valueEncoding: 'json' })
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
  }
}
