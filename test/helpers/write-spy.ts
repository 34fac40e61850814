import type { Database } from '../../src/store/open-store.js'
import type { WriteImplementation } from '../../src/store/storage-guard.js'

/** One write that reached classic-level's native binding. */
export interface ObservedWrite {
  readonly method: '_put' | '_del' | '_batch' | 'chained' | '_clear'
  readonly sync: boolean
  /** the keys it wrote (root keys, sublevel prefixes included; none for a native clear) */
  readonly keys: string[]
  /** set once LevelDB has answered */
  done: boolean
}

/**
 * Counts every write of a LevelDB database at the last step before the
 * native binding: installed on the database before Herald's storage guard,
 * it sees the options the guard adds (`sync`).
 */
export function spyOnWrites (db: Database): ObservedWrite[] {
  const writes: ObservedWrite[] = []
  const implementation = db as unknown as WriteImplementation
  const put = implementation._put.bind(db)
  const del = implementation._del.bind(db)
  const batch = implementation._batch.bind(db)
  const clear = implementation._clear.bind(db)
  const chainedBatch = implementation._chainedBatch.bind(db)
  const observe = async (method: ObservedWrite['method'], options: Record<string, unknown>, keys: unknown[], write: () => Promise<void>): Promise<void> => {
    const entry: ObservedWrite = { method, sync: options['sync'] === true, keys: keys.map(String), done: false }
    writes.push(entry)
    await write()
    entry.done = true
  }
  implementation._put = async (key, value, options) => { await observe('_put', options, [key], async () => { await put(key, value, options) }) }
  implementation._del = async (key, options) => { await observe('_del', options, [key], async () => { await del(key, options) }) }
  implementation._batch = async (operations, options) => {
    await observe('_batch', options, operations.map((op) => (op as { key: unknown }).key), async () => { await batch(operations, options) })
  }
  implementation._clear = async (options) => { await observe('_clear', options, [], async () => { await clear(options) }) }
  implementation._chainedBatch = () => {
    const chained = chainedBatch() as ReturnType<WriteImplementation['_chainedBatch']> & { _put (key: unknown, value: unknown, options: object): void, _del (key: unknown, options: object): void }
    const keys: unknown[] = []
    const addPut = chained._put.bind(chained)
    const addDel = chained._del.bind(chained)
    chained._put = (key, value, options) => { keys.push(key); addPut(key, value, options) }
    chained._del = (key, options) => { keys.push(key); addDel(key, options) }
    const write = chained._write.bind(chained)
    chained._write = async (options) => { await observe('chained', options, keys, async () => { await write(options) }) }
    return chained
  }
  return writes
}
