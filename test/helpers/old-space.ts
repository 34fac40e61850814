import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Bytes in use in V8's old space: what only a full collection frees. */
function oldSpaceUsed (): number {
  const space = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')
  if (space === undefined) throw new Error('no old_space in the heap statistics')
  return space.space_used_size
}

/**
 * Old-space growth while `work` runs, after two full collections have moved
 * everything alive (what `work` uses included) to the old generation, as a
 * long-running broker's structures are.
 */
export function oldSpaceGrowth (work: () => void): number {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  gc()
  gc()
  const before = oldSpaceUsed()
  work()
  return oldSpaceUsed() - before
}
