import { readdirSync, readFileSync } from 'node:fs'
import type { Server } from 'node:net'
import type { Logger } from 'pino'
import { HeraldError } from '../errors/index.js'
import { ThrottledWarning } from './throttled-warning.js'

/** Which listener a connection came to: HTTP ones get a few descriptors beyond MQTT's budget. */
export type ListenerKind = 'mqtt' | 'http'

/**
 * Descriptors kept out of the connection budget, beyond those open at start and the relay's sockets, for
 * what opens later (LevelDB's table files as the database grows, DNS, files read later): a tenth of the
 * limit, at least 32 and at most 256 (a LevelDB of ~500 MB in 2 MB tables; a larger one needs a higher
 * limit, which the start-up warning asks for).
 */
const MIN_HEADROOM = 32
const MAX_HEADROOM = 256
const HEADROOM_SHARE = 0.1
/** HTTP listeners accept this many connections beyond the budget, so /readyz and /metrics still answer when MQTT is refused. */
const HTTP_EXTRA = 8
/** What the configuration implies beyond the descriptors open at start: LevelDB's table cache (classic-level's maxOpenFiles)… */
const LEVELDB_TABLE_FILES = 1000
/** …and room for at least this many connections. */
const MIN_CONNECTIONS = 1024

export interface ConnectionBudgetOptions {
  readonly logger: Logger
  /** relay deliveries in flight at once, each of which may hold a socket (0 when no provider is configured) */
  readonly relayConcurrency: number
  /** counts each refused connection (the metric) */
  readonly onRefused?: (kind: ListenerKind) => void
  /** for tests: the limit and the descriptors open, instead of /proc/self */
  readonly openFiles?: () => { readonly limit: number | null, readonly open: number | null }
}

/**
 * Keeps client connections within the process's open-files limit, and says so.
 *
 * A process out of file descriptors refuses connections silently: libuv
 * answers EMFILE on accept() by accepting and closing the connection with a
 * descriptor it keeps in reserve (`uv__emfile_trick`), and Node hears
 * nothing, so nothing is logged or counted and `/readyz` stays 200. And the
 * rest of the process fails at the same time: LevelDB cannot open a table
 * file (a failed compaction stops its writes), the relay cannot reach
 * FCM/APNs.
 *
 * So every listener's connections count against one budget: the limit, less
 * the descriptors open once the listeners are bound, less the relay's sockets
 * (`push.concurrency` when a provider is configured), less a headroom for
 * what opens later (a tenth of the limit, 32 to 256). At the budget, each
 * listener's `maxConnections` makes Node close a new connection as it is
 * accepted and emit 'drop': counted, logged at warn at most every 10 s with
 * the number refused, and `/readyz` answers 503 while the budget is full.
 * HTTP listeners take a few more (8), so `/readyz` and `/metrics` can answer.
 */
export class ConnectionBudget {
  readonly #logger: Logger
  readonly #relayConcurrency: number
  readonly #onRefused: (kind: ListenerKind) => void
  readonly #openFiles: () => { readonly limit: number | null, readonly open: number | null }
  readonly #listeners: Array<{ readonly server: Server, readonly extra: number, open: number }> = []
  /** connections open on every listener together */
  #open = 0
  #budget = Infinity
  #limit: number | null = null
  /** refused since the last log line */
  readonly #warning: ThrottledWarning

  constructor ({ logger, relayConcurrency, onRefused = () => {}, openFiles = readOpenFiles }: ConnectionBudgetOptions) {
    this.#logger = logger
    this.#relayConcurrency = relayConcurrency
    this.#onRefused = onRefused
    this.#openFiles = openFiles
    this.#warning = new ThrottledWarning(logger, 'connections refused: the open-files limit is reached (raise it: systemd LimitNOFILE=, ulimit -n)',
      () => ({ openConnections: this.#open, connectionBudget: this.#budget, openFilesLimit: this.#limit }))
  }

  /** Counts the connections of `server` from now on (before it listens). */
  watch (server: Server, kind: ListenerKind): void {
    const listener = { server, extra: kind === 'http' ? HTTP_EXTRA : 0, open: 0 }
    this.#listeners.push(listener)
    // `connection` is the raw TCP socket (before any TLS handshake), for net, tls and http servers alike
    server.on('connection', (socket: { once (event: 'close', listener: () => void): unknown }) => {
      listener.open++
      this.#open++
      socket.once('close', () => {
        listener.open--
        this.#open--
        this.#apply()
      })
      this.#apply()
    })
    server.on('drop', () => this.#refused(kind))
    this.#apply()
  }

  /** Reads the limit and the descriptors open now (once every listener is bound), sets the budget and logs both. */
  start (): void {
    const { limit, open } = this.#openFiles()
    this.#limit = limit
    if (limit === null) {
      this.#logger.info('open-files limit unknown (no /proc/self/limits): connections are not budgeted')
      return
    }
    const inUse = open ?? 64
    const headroom = Math.min(MAX_HEADROOM, Math.max(MIN_HEADROOM, Math.ceil(limit * HEADROOM_SHARE))) + this.#relayConcurrency
    this.#budget = Math.max(0, limit - inUse - headroom)
    const implied = inUse + LEVELDB_TABLE_FILES + this.#relayConcurrency + MIN_CONNECTIONS
    const figures = { openFilesLimit: limit, openFiles: inUse, connectionBudget: this.#budget, implied }
    if (limit < implied) {
      this.#logger.warn(figures, `the open-files limit (${limit}) is below what this configuration may need (${implied}: ` +
        `LevelDB up to ${LEVELDB_TABLE_FILES} table files, the relay up to ${this.#relayConcurrency} sockets, ${MIN_CONNECTIONS} connections); ` +
        'raise it (systemd LimitNOFILE=, ulimit -n)')
    } else {
      this.#logger.info(figures, 'open-files limit')
    }
    this.#apply()
  }

  /** Why new MQTT connections are refused now, or null. */
  problem (): HeraldError | null {
    if (this.#open < this.#budget) return null
    return new HeraldError('SERVER_UNAVAILABLE', `the open-files limit (${String(this.#limit)}) is reached: ${this.#open} connections are open, the most it leaves room for; new ones are refused`)
  }

  close (): void {
    this.#warning.close()
  }

  /** Each listener may take what the budget has left (Node compares maxConnections with its own count). */
  #apply (): void {
    if (this.#budget === Infinity) return
    for (const listener of this.#listeners) {
      listener.server.maxConnections = Math.max(0, listener.open + this.#budget + listener.extra - this.#open)
    }
  }

  #refused (kind: ListenerKind): void {
    this.#onRefused(kind)
    this.#warning.count()
  }
}

/** The soft open-files limit (Node raises it to the hard one at start) and the descriptors open, from /proc/self; null where unknown. */
export function readOpenFiles (): { limit: number | null, open: number | null } {
  let limit: number | null = null
  try {
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    if (match?.[1] !== undefined && match[1] !== 'unlimited') limit = Number(match[1])
  } catch {}
  let open: number | null = null
  try {
    // less the descriptor of the directory being read
    open = readdirSync('/proc/self/fd').length - 1
  } catch {}
  return { limit, open }
}
