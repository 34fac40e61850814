import { createRequire, type Module } from 'node:module'

/**
 * mqtt-packet, which parses and writes every MQTT packet for aedes, calls its
 * `debug` logger 5 to 20 times per packet (parser.js, writeToStream.js). With
 * logging off, each call still builds the rest-arguments array of debug's
 * `function debug (...args)` before it returns: in the latency bench that was
 * 26 of the 188 MB Herald allocated in 10 s (2.6 kB per QoS 1 message), the
 * largest single source of garbage, and the calls themselves were CPU time on
 * every packet of every phase.
 *
 * So mqtt-packet is loaded here, before aedes loads it, with `debug` handing
 * it a function that does nothing for each namespace DEBUG does not enable,
 * and debug's own logger for one it does: `DEBUG=mqtt-packet:*` logs as
 * before. What no longer reaches mqtt-packet is `debug.enable()` called later
 * at run time (Herald never calls it). Nothing else that uses debug changes:
 * its module is swapped only while mqtt-packet's files load.
 *
 * create-broker.ts imports this module first, for its effect: aedes'
 * lib/client.js and lib/write.js import mqtt-packet as they load. Should
 * mqtt-packet be loaded already (another module got there first), or not be
 * laid out as this module expects, it is left as it is and
 * `packetDebug.quieted` stays empty.
 */

/** The part of debug's API this module uses. */
interface Debugger {
  (...args: unknown[]): void
  readonly enabled: boolean
}
type CreateDebug = (namespace: string) => Debugger

export interface PacketDebugState {
  /** the namespaces of mqtt-packet given a function that does nothing */
  readonly quieted: readonly string[]
  /** whether mqtt-packet was loaded before this module ran (then nothing was changed) */
  readonly loadedBefore: boolean
}

/** The one function every quieted namespace gets: a call to it allocates nothing. */
function ignore (): void {}

/**
 * debug's factory, except that a namespace not enabled when it is created gets
 * `ignore`; `quieted` collects those namespaces.
 */
export function quietDebugFactory (createDebug: CreateDebug, quieted: string[]): CreateDebug {
  return (namespace) => {
    const logger = createDebug(namespace)
    if (logger.enabled) return logger
    quieted.push(namespace)
    return ignore as Debugger
  }
}

/** The main file of the mqtt-packet aedes loads (npm may nest a copy under aedes); throws if there is none. */
export function aedesPacketMain (): string {
  return createRequire(import.meta.resolve('aedes')).resolve('mqtt-packet')
}

/** Where mqtt-packet and its debug are, as aedes resolves them; undefined for a layout this module does not know. */
function locate (): { packetMain: string, requireAsPacket: NodeJS.Require, files: string[], debugModule: Module, createDebug: CreateDebug } | undefined {
  try {
    const packetMain = aedesPacketMain()
    const requireAsPacket = createRequire(packetMain)
    const files = [packetMain, requireAsPacket.resolve('./parser.js'), requireAsPacket.resolve('./writeToStream.js')]
    const createDebug = requireAsPacket('debug') as CreateDebug
    const debugModule = requireAsPacket.cache[requireAsPacket.resolve('debug')]
    if (typeof createDebug !== 'function' || debugModule?.exports !== createDebug) return undefined
    return { packetMain, requireAsPacket, files, debugModule, createDebug }
  } catch {
    // another mqtt-packet or debug than this was written against: they load as they are
    return undefined
  }
}

function loadQuietly (): PacketDebugState {
  const found = locate()
  if (found === undefined) return { quieted: [], loadedBefore: false }
  const { packetMain, requireAsPacket, files, debugModule, createDebug } = found
  // an entry not `loaded` is there for the ESM loader, which reads a CommonJS module's exports before
  // running it (aedes imports mqtt-packet); the first require runs it, once
  if (files.some((file) => requireAsPacket.cache[file]?.loaded === true)) return { quieted: [], loadedBefore: true }

  const quieted: string[] = []
  debugModule.exports = quietDebugFactory(createDebug, quieted)
  try {
    requireAsPacket(packetMain)
  } finally {
    debugModule.exports = createDebug
  }
  return { quieted, loadedBefore: false }
}

export const packetDebug: PacketDebugState = loadQuietly()
