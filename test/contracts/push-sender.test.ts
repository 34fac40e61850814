/**
 * The PushSender contract, run against every sender: the real firebase-admin against
 * the fake FCM, the real @parse/node-apn against the fake APNs (test/fakes). A new
 * provider's sender joins by adding an entry to `implementations`.
 */
import { pino } from 'pino'
import t, { type Test } from 'tap'
import type { Delivery, DeliveryResult, PushProvider, PushSender } from '../../plugins/push-core/types.js'
import { createApnsSender } from '../../plugins/push-apns/sender.js'
import { createFcmSender } from '../../plugins/push-fcm/sender.js'
import { apnsDeviceToken, fcmDeviceToken, startProviderFakes } from '../helpers/providers.js'

/** One sender implementation, with the hooks the contract needs into its fake provider. */
interface Subject {
  /** A new sender, closed when the (sub)test `t` ends, before the fakes close. */
  sender (t: Test): PushSender
  /** A token this provider accepts. */
  token (): string
  /** Makes the fake provider answer this token as no longer registered. */
  unregister (token: string): void
  /** Requests the fake provider answered so far. */
  answered (): number
}

interface Implementation {
  readonly provider: PushProvider
  start (t: Test): Promise<Subject>
}

const tokenOf: Record<PushProvider, () => string> = { fcm: fcmDeviceToken, apns: apnsDeviceToken }

const implementations: Implementation[] = [
  {
    provider: 'fcm',
    async start (t) {
      const { fcm, push } = await startProviderFakes(t)
      const config = push.fcm as { serviceAccountFile: string, endpoint: string, caFile: string }
      return {
        sender: (t) => closedAtTeardown(t, createFcmSender({ ...config, projectId: null }, pino({ level: 'silent' }))),
        token: fcmDeviceToken,
        unregister: (token) => { fcm.script(token, 'UNREGISTERED', 'always') },
        answered: () => fcm.answered,
      }
    },
  },
  {
    provider: 'apns',
    async start (t) {
      const { apns, push } = await startProviderFakes(t)
      const config = push.apns as { keyFile: string, keyId: string, teamId: string, topic: string, host: string, port: number, caFile: string }
      return {
        sender: (t) => closedAtTeardown(t, createApnsSender({ ...config, production: true }, pino({ level: 'silent' }))),
        token: apnsDeviceToken,
        unregister: (token) => { apns.respond(token, { status: 410, reason: 'Unregistered' }) },
        answered: () => apns.answered,
      }
    },
  },
]

function closedAtTeardown (t: Test, sender: PushSender): PushSender {
  t.teardown(async () => await sender.close())
  return sender
}

let jobs = 0
function delivery (provider: PushProvider, token: string): Delivery {
  const n = ++jobs
  return {
    jobId: `job-${n}`,
    token: { provider, token, environment: null, apnsTopic: null },
    content: { kind: 'push', messageId: `msg-${n}`, topic: 'users/alice/inbox', notification: { title: 'Hi' }, data: { n: String(n) } },
    expiresAt: Date.now() + 3_600_000,
  }
}

const outcomes = (results: readonly DeliveryResult[]): string[] => results.map((r) => r.outcome)
const jobIds = (items: ReadonlyArray<{ jobId: string }>): string[] => items.map((i) => i.jobId)

for (const implementation of implementations) {
  const { provider } = implementation
  const other: PushProvider = provider === 'fcm' ? 'apns' : 'fcm'

  t.test(`${provider} sender`, async (t) => {
    const subject = await implementation.start(t)

    t.test('names its provider, takes batches, answers an empty one with nothing', async (t) => {
      const sender = subject.sender(t)
      t.equal(sender.provider, provider)
      t.ok(Number.isInteger(sender.maxBatch) && sender.maxBatch >= 1)
      t.strictSame(await sender.send([]), [])
    })

    t.test('one result per delivery, in order', async (t) => {
      const sender = subject.sender(t)
      const batch = [subject.token(), subject.token(), subject.token()].map((token) => delivery(provider, token))
      const results = await sender.send(batch)
      t.strictSame(jobIds(results), jobIds(batch))
      t.strictSame(outcomes(results), ['sent', 'sent', 'sent'])
    })

    t.test(`a token of another provider (${other}) is dropped, never sent, and the rest of the batch goes on`, async (t) => {
      const sender = subject.sender(t)
      const foreignToken = tokenOf[other]()
      const foreign = delivery(other, foreignToken)
      const before = subject.answered()
      const alone = await sender.send([foreign])
      t.strictSame(outcomes(alone), ['drop'], 'dropped: the token is not dead, so it is not pruned')
      t.equal(subject.answered(), before, 'no request to the provider')

      const batch = [delivery(provider, subject.token()), delivery(other, foreignToken), delivery(provider, subject.token())]
      const results = await sender.send(batch)
      t.strictSame(jobIds(results), jobIds(batch))
      t.strictSame(outcomes(results), ['sent', 'drop', 'sent'])
      t.equal(subject.answered(), before + 2, 'only the sender’s own tokens reached the provider')
      const reason = (results[1] as { reason?: string }).reason ?? ''
      t.match(reason, new RegExp(`${other}.*${provider}`), 'the reason names both providers')
      t.notOk(reason.includes(foreignToken), 'never the token')
    })

    t.test('a token the provider no longer knows is pruned, and the reason does not carry it', async (t) => {
      const sender = subject.sender(t)
      const gone = subject.token()
      subject.unregister(gone)
      const [result] = await sender.send([delivery(provider, gone)])
      t.equal(result?.outcome, 'prune')
      t.notOk((result as { reason?: string } | undefined)?.reason?.includes(gone))
    })

    t.test('after close(), every delivery is to be retried; nothing throws or is sent', async (t) => {
      const sender = subject.sender(t)
      t.strictSame(outcomes(await sender.send([delivery(provider, subject.token())])), ['sent'])
      await sender.close()
      const before = subject.answered()
      const batch = [delivery(provider, subject.token()), delivery(provider, subject.token())]
      const results = await sender.send(batch)
      t.strictSame(jobIds(results), jobIds(batch))
      t.strictSame(outcomes(results), ['retry', 'retry'])
      t.equal(subject.answered(), before)
      await sender.close()
    })
  })
}
