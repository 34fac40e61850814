import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startFakeApns, type FakeApns } from '../fakes/apns-server.js'
import { GOOGLE_TOKEN_URL, startFakeFcm, type FakeFcm } from '../fakes/fcm-server.js'
import { makeTempDir, type Teardown } from './broker.js'

export const APNS_TOPIC = 'com.example.herald'
const CA_FILE = fileURLToPath(new URL('../fixtures/tls/cert.pem', import.meta.url))

export interface ProviderFakes {
  readonly apns: FakeApns
  readonly fcm: FakeFcm
  /** The `push` config section that points Herald's real SDKs at the fakes. */
  readonly push: Record<string, unknown>
}

/**
 * Local APNs (HTTP/2 + TLS) and FCM (OAuth + v1 API) servers, with fresh
 * credentials for them: a .p8 key and a service account file.
 */
export async function startProviderFakes (t: Teardown): Promise<ProviderFakes> {
  const dir = await makeTempDir(t, 'herald-providers-')

  const apnsKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const keyFile = join(dir, 'AuthKey_KEY1234567.p8')
  await writeFile(keyFile, apnsKey.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const apns = await startFakeApns({ publicKey: apnsKey.publicKey, keyId: 'KEY1234567', teamId: 'TEAM123456', topics: [APNS_TOPIC] })
  t.teardown(async () => await apns.close())

  const fcmKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const clientEmail = 'herald@herald-test.iam.gserviceaccount.com'
  const serviceAccountFile = join(dir, 'service-account.json')
  await writeFile(serviceAccountFile, JSON.stringify({
    type: 'service_account',
    project_id: 'herald-test',
    private_key_id: randomBytes(20).toString('hex'),
    private_key: fcmKey.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: clientEmail,
    client_id: '100000000000000000001',
    token_uri: GOOGLE_TOKEN_URL,
  }))
  const fcm = await startFakeFcm({ projectId: 'herald-test', clientEmail, publicKey: fcmKey.publicKey })
  t.teardown(async () => await fcm.close())

  return {
    apns,
    fcm,
    push: {
      // short retries keep retry tests quick; the schedule itself is unit-tested
      retryBaseMs: 50,
      retryMaxMs: 200,
      fcm: { serviceAccountFile, endpoint: fcm.url, caFile: CA_FILE },
      // localhost, not 127.0.0.1: a TLS server name cannot be an IP address
      apns: { keyFile, keyId: 'KEY1234567', teamId: 'TEAM123456', topic: APNS_TOPIC, host: 'localhost', port: apns.port, caFile: CA_FILE },
    },
  }
}

/** A plausible APNs device token (64 hex digits). */
export function apnsDeviceToken (): string {
  return randomBytes(32).toString('hex')
}

/** A plausible FCM registration token. */
export function fcmDeviceToken (): string {
  return `fcm-${randomBytes(40).toString('base64url')}`
}
