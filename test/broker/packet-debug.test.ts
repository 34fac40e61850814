// first, as in create-broker.ts: mqtt-packet is loaded by packet-debug.ts before anything else loads it
import { packetDebug, quietDebugFactory } from '../../src/broker/packet-debug.js'
import { Session } from 'node:inspector/promises'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import { format } from 'node:util'
import t from 'tap'

interface MqttPacket {
  parser (): { parse (buf: Buffer): number, on (event: 'packet', listener: () => void): void }
  generate (packet: object): Buffer
}
interface CreateDebug {
  (namespace: string): { (...args: unknown[]): void, readonly enabled: boolean, log: (...args: unknown[]) => void }
  enable (namespaces: string): void
  disable (): string
}

// mqtt-packet and debug as aedes resolves them
const requireAsAedes = createRequire(import.meta.resolve('aedes'))
const packetMain = requireAsAedes.resolve('mqtt-packet')
const requireAsPacket = createRequire(packetMain)
const createDebug = requireAsPacket('debug') as CreateDebug

/** Bytes allocated while `work` runs in functions of debug's common.js (a sampling heap profile, every allocation counted, collected or not). */
async function allocatedInDebug (work: () => void): Promise<number> {
  const session = new Session()
  session.connect()
  try {
    await session.post('HeapProfiler.enable')
    await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true })
    work()
    const { profile } = await session.post('HeapProfiler.stopSampling')
    let bytes = 0
    const visit = (node: typeof profile.head): void => {
      if (node.callFrame.url.endsWith('/debug/src/common.js')) bytes += node.selfSize
      node.children.forEach(visit)
    }
    visit(profile.head)
    return bytes
  } finally {
    session.disconnect()
  }
}

/** What aedes does with mqtt-packet for each QoS 1 message: parse a PUBLISH and a PUBACK, write a PUBLISH and a PUBACK. */
function parseAndWrite (mqtt: MqttPacket, messages: number): number {
  const parser = mqtt.parser()
  let parsed = 0
  parser.on('packet', () => { parsed++ })
  for (let i = 0; i < messages; i++) {
    const messageId = (i % 65535) + 1
    parser.parse(mqtt.generate({ cmd: 'publish', topic: 'users/alice/inbox', payload: Buffer.from('hello'), qos: 1, messageId }))
    parser.parse(mqtt.generate({ cmd: 'puback', messageId }))
  }
  return parsed
}

/** A second copy of mqtt-packet loaded with debug as it is (what aedes gets without packet-debug.ts); the module cache is left as it was. */
function plainMqttPacket (): MqttPacket {
  const dir = dirname(packetMain)
  const cache = requireAsPacket.cache
  const ours = Object.keys(cache).filter((file) => file.startsWith(`${dir}/`))
  const kept = ours.map((file) => [file, cache[file]] as const)
  for (const file of ours) delete cache[file]
  try {
    return requireAsPacket(packetMain) as MqttPacket
  } finally {
    for (const file of Object.keys(cache)) if (file.startsWith(`${dir}/`)) delete cache[file]
    for (const [file, entry] of kept) cache[file] = entry
  }
}

t.test('mqtt-packet is loaded with its loggers quieted, before aedes loads it', async (t) => {
  t.equal(packetDebug.loadedBefore, false)
  t.same([...packetDebug.quieted].sort(), ['mqtt-packet:parser', 'mqtt-packet:writeToStream'])
  const { Aedes } = await import('aedes')
  t.type(Aedes, 'function', 'aedes loads on top of it')
})

t.test('parsing and writing packets allocates nothing in debug once quieted; the same code with debug as it is does', async (t) => {
  const quiet = requireAsPacket(packetMain) as MqttPacket
  const plain = plainMqttPacket()
  t.not(plain, quiet, 'a separate copy of mqtt-packet')
  // warm both up first: what is measured is the steady state, optimised code included
  t.equal(parseAndWrite(quiet, 20_000), 40_000)
  t.equal(parseAndWrite(plain, 20_000), 40_000)

  const plainBytes = await allocatedInDebug(() => parseAndWrite(plain, 20_000))
  const quietBytes = await allocatedInDebug(() => parseAndWrite(quiet, 20_000))
  t.comment(`allocated in debug for 20,000 messages: ${plainBytes} bytes with debug as it is, ${quietBytes} quieted`)
  t.ok(plainBytes > 100_000, 'the probe sees what debug allocates (the rest arguments of each call)')
  t.equal(quietBytes, 0, 'nothing once quieted')
})

t.test('a namespace DEBUG enables keeps its logger; one it does not gets a function that does nothing', async (t) => {
  const before = createDebug.disable()
  t.teardown(() => { createDebug.enable(before) })
  createDebug.enable('herald-test:on')
  const quieted: string[] = []
  const factory = quietDebugFactory(createDebug, quieted)

  const on = factory('herald-test:on')
  t.equal(on.enabled, true)
  const lines: unknown[][] = []
  ;(on as ReturnType<CreateDebug>).log = (...args: unknown[]) => { lines.push(args) }
  on('parse: %s', 'PUBLISH')
  t.equal(lines.length, 1, 'an enabled namespace logs')
  t.match(format(...(lines[0] ?? [])), /herald-test:on.*parse: PUBLISH/)

  const off = factory('herald-test:off')
  t.equal(off(), undefined)
  t.not(off, createDebug('herald-test:off'), 'not debug\'s logger')
  t.same(quieted, ['herald-test:off'])
})
