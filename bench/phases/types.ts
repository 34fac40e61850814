import type { AddressPool } from '../lib/addresses.js'
import type { BrokerDefinition, RunningBroker } from '../lib/brokers.js'
import type { LeanClient } from '../lib/lean-client.js'
import type { CpuShare } from '../lib/proc.js'
import type { TokenSigner } from '../lib/tokens.js'

/** Phase sizes; every one is a flag of `npm run bench` (see run.ts). */
export interface BenchOptions {
  readonly payloadBytes: number
  /**
   * Seconds of load before the fan-out, fan-in and latency phases start measuring: a node
   * broker's first seconds are JIT warm-up (bench/RESULTS.md, "Warm-up"). Not the connect
   * storm: a storm after a restart meets a cold broker.
   */
  readonly warmupSeconds: number
  readonly connectClients: number
  readonly connectConcurrency: number
  readonly fanoutSubscribers: number
  readonly fanoutSeconds: number
  /** messages the fan-out publisher may be ahead of the slowest subscriber */
  readonly fanoutWindow: number
  readonly faninPublishers: number
  readonly faninSeconds: number
  /** messages each fan-in publisher may be ahead of the subscriber */
  readonly faninWindow: number
  readonly latencyRate: number
  readonly latencySeconds: number
  readonly httpSeconds: number
  readonly httpConcurrency: number
  /** push-only APNs installations every relay push fans out to */
  readonly relayInstallations: number
  /** push-only FCM installations for the relay's FCM part (0: APNs only) */
  readonly relayFcmInstallations: number
  /** measured seconds per provider, after a warm-up */
  readonly relaySeconds: number
  /** notifications the relay pusher may be ahead of what the fake provider received */
  readonly relayBacklog: number
  readonly scaleConnections: number
  readonly scaleConcurrency: number
  readonly scaleHoldSeconds: number
  /** load generator processes of the scale phase: 0 = this process while K fits its open-files limit, else as few children as fit */
  readonly scaleGenerators: number
  readonly scaleSubscribe: boolean
  readonly keepaliveSec: number
  /** upper bound on messages per publisher in any phase (sizes the duplicate bitmaps) */
  readonly maxMessages: number
}

export interface ClientInit {
  readonly clientId: string
  readonly clean: boolean
  /** the n of the bench user whose credentials the client uses */
  readonly user: number
  readonly localAddress?: string | undefined
  readonly keepalive?: number
}

export interface PhaseContext {
  readonly broker: RunningBroker
  readonly definition: BrokerDefinition
  readonly options: BenchOptions
  readonly tokens: TokenSigner
  readonly addresses: AddressPool
  /** unique per phase run: prefix for client ids and topics (`bench/<tag>/…`) */
  readonly tag: string
  /** A client for this broker with the user's credentials; the runner destroys it once the broker has stopped (phases leave clients open). */
  client (init: ClientInit): LeanClient
  /** Runs `fn` once the broker has stopped (after the phase, failed or not): what the phase started besides its clients. */
  defer (fn: () => void | Promise<void>): void
  log (message: string): void
}

export type Better = 'higher' | 'lower' | 'none'

export interface MetricSpec {
  readonly key: string
  readonly label: string
  readonly unit: string
  readonly better: Better
  /** decimals in the table */
  readonly digits?: number
  /** part of the headline table (others stay in the JSON document) */
  readonly headline?: boolean
  /** in the headline table to explain the others, but no target is checked against it (work per CPU-second) */
  readonly diagnostic?: boolean
}

export interface PhaseOutcome {
  readonly metrics: Record<string, number | null>
  readonly cpu: CpuShare
  readonly notes?: readonly string[]
}

/** What a phase may set up before the broker starts (fake servers, Herald config keys). */
export interface PhasePreparation {
  /** merged into Herald's config file for this phase run */
  readonly heraldConfig?: Record<string, unknown>
  cleanup? (): Promise<void>
}

export interface Phase {
  /** id for --phases and the JSON document */
  readonly name: string
  readonly title: string
  readonly metrics: readonly MetricSpec[]
  /** run by default (without --phases) */
  readonly defaultOn: boolean
  /** whether this phase applies to a broker (the HTTP bridge exists in Herald only) */
  applies (broker: BrokerDefinition): boolean
  prepare? (options: BenchOptions, tokens: TokenSigner): Promise<PhasePreparation>
  run (ctx: PhaseContext): Promise<PhaseOutcome>
}
