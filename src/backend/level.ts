import type { Logger } from 'pino'
import { openBucketStore } from '../buckets/level-store.js'
import type { HeraldConfig } from '../config/index.js'
import { openAppTopicStore } from '../store/app-topics.js'
import { backupStore } from '../store/backup.js'
import { groupCommitTarget } from '../store/batch-target.js'
import { openClientOwnerStore } from '../store/client-owners.js'
import { openInstallationStore } from '../store/installations.js'
import { GroupCommit } from '../store/group-commit.js'
import { keepsInstallationOwners, openPrincipalDirectory } from '../store/known-principals.js'
import { openDatabase } from '../store/open-store.js'
import { levelQueueInspector } from '../store/queue-inspector.js'
import { createRelayOutbox } from '../store/relay-outbox.js'
import { levelSessionActivity } from '../store/session-activity.js'
import { createSessionPolicy, SessionStore } from '../store/session-store.js'
import { guardStorage } from '../store/storage-guard.js'
import { writeProbe } from '../store/write-probe.js'
import type { BackendOptions, StorageBackend } from './backend.js'

/** The least time between two batches of client-id claims and known principals, ms. */
const DIRECTORY_BATCH_SPACING_MS = 5
/**
 * How many of those batches may be on their way to LevelDB at once. At the
 * start of a connect storm each batch took 10–26 ms from leaving to its
 * callback, mostly waiting for the busy event loop, and with one at a time
 * the claims gathered meanwhile waited for all of it (issue 17). Four: the
 * libuv thread pool's size, which runs LevelDB's writes.
 */
const DIRECTORY_BATCHES_WRITING = 4

/** One process on the embedded LevelDB in `dataDir` (or in memory: `storage.engine`). */
export async function openLevelBackend (config: HeraldConfig, logger: Logger, options: BackendOptions = {}): Promise<StorageBackend> {
  const db = await openDatabase(config.dataDir, config.storage.engine)
  options.onDatabaseOpen?.(db)
  // before any store writes: every write honours storage.fsync, and a full disk stops writes until it heals
  const guard = guardStorage(db, { fsync: config.storage.fsync, logger })
  if (config.storage.engine === 'memory') logger.warn('storage.engine is memory: sessions, installations and queued messages are lost when the broker stops')
  const sessions = new SessionStore(db.sublevel('sessions', { valueEncoding: 'buffer' }), {
    // filled in by installHooks (guard, presence) and server.ts (routing), which are built after the store
    policy: createSessionPolicy(),
    ackWaitMs: config.storage.ackWaitMs,
    onWriteBehindError: (err) => logger.error({ err }, 'writing an in-flight or acknowledged QoS 1 message to the session store failed'),
  })
  // the probe key is the one a healed store proves it writes with (storage-guard.ts): it stays absent
  const probeWrite = writeProbe(async () => { await db.del('herald:storage-probe') })
  // a CONNECT writes its client-id claim and its user's principal: one batch (and one sync) for both.
  // Batches at most every 5 ms (group-commit.ts `spacingMs`): a connect storm's claims share a sync
  // instead of one each; a CONNECT waits for its claim at most that much longer (issue 17)
  const directoryWrites = new GroupCommit(groupCommitTarget(db), { spacingMs: DIRECTORY_BATCH_SPACING_MS, maxWriting: DIRECTORY_BATCHES_WRITING })
  const clientIds = await openClientOwnerStore(db, directoryWrites)
  const principals = await openPrincipalDirectory(db, logger, { commit: directoryWrites, keeps: keepsInstallationOwners(clientIds) })
  const buckets = await openBucketStore(db, config.buckets)
  return {
    location: { dataDir: config.dataDir },
    sessions,
    appTopics: await openAppTopicStore(db),
    installations: await openInstallationStore(db),
    clientIds,
    principals,
    buckets,
    relayOutbox: createRelayOutbox(db),
    sessionActivity: levelSessionActivity(db),
    problem: () => guard.problem(),
    probeWrite,
    queues: levelQueueInspector(db.sublevel<string, Buffer>('sessions', { valueEncoding: 'buffer' })),
    backup: async (dir) => await backupStore({ db, dataDir: config.dataDir, flush: async () => await sessions.flush() }, dir),
    async close () {
      await buckets.stop()
      await principals.idle()
      guard.close()
      await db.close()
    },
  }
}
