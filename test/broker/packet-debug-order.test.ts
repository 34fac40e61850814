// The composition root first, as bin/herald.js loads it: create-broker.ts must get mqtt-packet loaded
// by packet-debug.ts before aedes loads it, whatever else server.ts imports before create-broker.ts
import '../../src/server.js'
import t from 'tap'
import { packetDebug } from '../../src/broker/packet-debug.js'

t.test('loading the server quiets mqtt-packet\'s loggers before aedes loads mqtt-packet', async (t) => {
  t.equal(packetDebug.loadedBefore, false, 'mqtt-packet was not loaded by anything before packet-debug.ts')
  t.same([...packetDebug.quieted].sort(), ['mqtt-packet:parser', 'mqtt-packet:writeToStream'])
})
