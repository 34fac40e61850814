/**
 * Bare aedes, the reference Herald is built on: the same aedes version, its
 * defaults (in-memory persistence, mqemitter with concurrency 100), no auth,
 * a plain net server as in aedes' README.
 *
 * usage: node aedes-bare.js <port> <host>   (prints one JSON line once listening)
 */
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2] ?? 1883)
const host = process.argv[3] ?? '127.0.0.1'

const broker = await Aedes.createBroker()
const server = createServer(broker.handle)
server.listen(port, host, () => {
  const address = server.address()
  process.stdout.write(JSON.stringify({ msg: 'aedes listening', port: typeof address === 'object' && address !== null ? address.port : port }) + '\n')
})

function stop (): void {
  server.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
