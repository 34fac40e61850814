import type { Server } from 'node:net'

/** Starts listening and resolves the bound port (the chosen one when `port` is 0). */
export async function listen (server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('listener has no TCP address')
  return address.port
}

/** Stops accepting and resolves once every connection of `server` is gone. */
export async function closeServer (server: Server): Promise<void> {
  if (!server.listening) return
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
