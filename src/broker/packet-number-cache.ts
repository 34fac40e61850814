import { createRequire } from 'node:module'
import { aedesPacketMain } from './packet-debug.js'

/**
 * mqtt-packet, aedes' codec, fills a cache of 65,536 two-byte buffers (every
 * 16-bit number, big-endian) the first time it writes a packet
 * (writeToStream.js `generateCache`): 17–32 ms of main thread and about
 * 8 MB of heap on this project's 2-core machine. Left to itself, that
 * happens in the first CONNACK after a start, while the reconnect storm that
 * follows a restart is at its densest, and every CONNECT of the storm waits
 * behind it. Writing one packet when the broker is created fills it then;
 * the memory is the same, spent earlier.
 *
 * Returns whether it did: false when mqtt-packet is not where aedes finds
 * it, or not the one this was written against (the cache then fills at the
 * first packet, as before).
 */
export function fillPacketNumberCache (): boolean {
  try {
    const packetMain = aedesPacketMain()
    const { generate } = createRequire(packetMain)(packetMain) as { generate?: (packet: { cmd: string }) => Buffer }
    if (typeof generate !== 'function') return false
    generate({ cmd: 'pingresp' })
    return true
  } catch {
    return false
  }
}
