import { spawn } from 'node:child_process'
import { brokerEvent, type Teardown, type TestBroker } from './broker.js'

/**
 * A mosquitto_sub (clean session) for one message, or `count` (`-C`):
 * resolves once the broker has its subscription; `message` resolves with its
 * stdout once it exited 0 with them, and rejects if it exited otherwise.
 */
export async function mosquittoSubOne (t: Teardown, broker: TestBroker, options: { clientId: string, token: string, topic: string, qos: 0 | 1 | 2, count?: number }): Promise<{ message: Promise<string> }> {
  const subscribed = brokerEvent(broker, 'subscribe', options.clientId)
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.ports.mqtt), '-i', options.clientId,
    '-u', 'x', '-P', options.token, '-t', options.topic, '-q', String(options.qos), '-C', String(options.count ?? 1)])
  t.teardown(() => { sub.kill() })
  let stdout = ''
  let stderr = ''
  sub.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  sub.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // 'close', not 'exit': 'exit' may come before the last stdout chunk has been read
  const exited = new Promise<number | null>((resolve) => sub.once('close', (code) => resolve(code)))
  await Promise.race([subscribed, exited.then((code) => { throw new Error(`mosquitto_sub exited (${code}) before subscribing: ${stderr}`) })])
  const message = exited.then((code) => {
    if (code !== 0) throw new Error(`mosquitto_sub exited (${code}): ${stderr}`)
    return stdout
  })
  message.catch(() => undefined)
  return { message }
}
