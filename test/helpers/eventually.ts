import { within } from './within.js'

/**
 * Resolves once `check` holds, asked every `everyMs`; rejects naming `what`
 * after `ms`. For state that has no event to wait on (another process's,
 * Redis', a mirror that follows Redis). The asking stops when the wait fails:
 * a loop left polling would keep the test process alive until tap's timeout.
 * A check that never settles is bounded too.
 */
export async function eventually (what: string, check: () => boolean | Promise<boolean>, ms = 10_000, everyMs = 20): Promise<void> {
  const done = new AbortController()
  try {
    await within(ms, what, (async () => {
      while (!done.signal.aborted && !await check()) await new Promise((resolve) => setTimeout(resolve, everyMs))
    })())
  } finally {
    done.abort()
  }
}
