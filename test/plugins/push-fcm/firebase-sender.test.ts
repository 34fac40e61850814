import t from 'tap'
import { RATE_LIMIT_RETRY_AFTER_MS, safeReason, translateFcmError } from '../../../plugins/push-fcm/firebase-sender.js'

const TOKEN = 'dGVzdC10b2tlbg:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx'
const err = (code: string, message = ''): { code: string, message: string } => ({ code, message })

t.test('SDK codes → relay outcomes', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['messaging/registration-token-not-registered', 'Requested entity was not found.', 'prune'],
    ['messaging/invalid-registration-token', '', 'prune'],
    ['messaging/invalid-package-name', '', 'prune'],
    ['messaging/mismatched-credential', 'SenderId mismatch', 'prune'],
    ['messaging/mismatched-credential', "Permission 'cloudmessaging.messages.create' denied", 'retry'],
    ['messaging/invalid-argument', 'The registration token is not a valid FCM registration token', 'prune'],
    ['messaging/invalid-argument', "Invalid value at 'message.data[0].value'", 'drop'],
    ['messaging/invalid-payload', 'data must only contain string values', 'drop'],
    ['messaging/payload-size-limit-exceeded', '', 'drop'],
    ['messaging/invalid-data-payload-key', '', 'drop'],
    ['messaging/invalid-options', '', 'drop'],
    ['messaging/server-unavailable', '', 'retry'],
    ['messaging/internal-error', '', 'retry'],
    ['messaging/unknown-error', 'Raw server response: "<html>"', 'retry'],
    ['messaging/device-message-rate-exceeded', '', 'retry'],
    ['messaging/message-rate-exceeded', '', 'retry'],
    ['messaging/authentication-error', '', 'retry'],
    ['messaging/third-party-auth-error', '', 'retry'],
    ['app/network-error', 'Error while making request: socket hang up. Error code: ECONNRESET', 'retry'],
    ['app/network-timeout', '', 'retry'],
    ['app/invalid-credential', '', 'retry'],
    ['app/app-deleted', '', 'retry'],
    ['ECONNRESET', 'socket hang up', 'retry'],
  ]
  for (const [code, message, outcome] of cases) {
    const r = translateFcmError(err(code, message), TOKEN)
    t.equal(r.outcome, outcome, `${code} ${message}`)
    if (r.outcome !== 'sent') t.match(r.reason, code)
  }
})

t.test('rate limits carry FCM\'s one-minute minimum; others no retryAfterMs', async (t) => {
  const quota = translateFcmError(err('messaging/message-rate-exceeded'), TOKEN)
  t.same(quota, { outcome: 'retry', reason: 'fcm messaging/message-rate-exceeded', retryAfterMs: RATE_LIMIT_RETRY_AFTER_MS })
  t.same(translateFcmError(err('messaging/server-unavailable'), TOKEN), { outcome: 'retry', reason: 'fcm messaging/server-unavailable' })
})

t.test('errors without a code are retried, never thrown', async (t) => {
  t.equal(translateFcmError(undefined, TOKEN).outcome, 'retry')
  t.equal(translateFcmError(new Error('boom'), TOKEN).outcome, 'retry')
  t.equal(translateFcmError('string error', TOKEN).outcome, 'retry')
  t.equal(translateFcmError({ code: 42 }, TOKEN).outcome, 'retry')
})

t.test('reasons never carry the device token, bearer tokens, JWTs or keys', async (t) => {
  const reason = safeReason('messaging/x', `token ${TOKEN} rejected; Authorization: Bearer ya29.secret-access; assertion eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln; -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----`, TOKEN)
  t.notMatch(reason, TOKEN)
  t.notMatch(reason, 'ya29.secret-access')
  t.notMatch(reason, 'eyJhbGci')
  t.notMatch(reason, 'MIIE')
  t.match(reason, /\[token\].*Bearer \[redacted\].*\[jwt\].*\[key\]/)
  // Short tokens are replaced as whole words only, not inside other words.
  t.equal(safeReason('c', 'bad token abc, abcd', 'abc'), 'fcm c: bad token [token], abcd')
})

t.test('the credential boilerplate is cut down to the token endpoint\'s error; long text is truncated', async (t) => {
  const wrapped = 'Credential implementation provided to initializeApp() via the "credential" property failed to fetch a valid Google OAuth2 access token with the following error: "invalid_grant: Invalid JWT Signature.". There are two likely causes: (1) your server time is not properly synced or (2) ...'
  t.equal(safeReason('app/invalid-credential', wrapped, TOKEN), 'fcm app/invalid-credential: access token fetch failed: invalid_grant: Invalid JWT Signature.')
  const long = safeReason('messaging/x', 'y'.repeat(1000), TOKEN)
  t.ok(long.length <= 'fcm messaging/x: '.length + 300)
  t.equal(safeReason('messaging/x', '', TOKEN), 'fcm messaging/x')
})
