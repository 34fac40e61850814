import t from 'tap'
import { scrubDeviceToken } from '../../../plugins/push-core/scrub-token.js'

// One scrubber for every sender (it was written twice, with `[token]` in FCM and `<token>` in APNs).

const HEX = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90'

t.test('a device token is replaced wherever it stands, in either case', async (t) => {
  t.equal(scrubDeviceToken(`POST /3/device/${HEX} failed`, HEX), 'POST /3/device/[token] failed')
  t.equal(scrubDeviceToken(`BadDeviceToken ${HEX.toUpperCase()}; again ${HEX}`, HEX), 'BadDeviceToken [token]; again [token]')
  t.equal(scrubDeviceToken(`glued${HEX}glued`, HEX), 'glued[token]glued', 'a long token is replaced inside other text too')
})

t.test('a short token is replaced only as a whole word', async (t) => {
  t.equal(scrubDeviceToken('bad token abc, abcd, xabc, ABC', 'abc'), 'bad token [token], abcd, xabc, [token]')
})

t.test('characters special to regular expressions are taken literally', async (t) => {
  const token = 'fcm:APA91b+/x.y*z?(1)[2]{3}|$^\\end-of-token'
  t.equal(scrubDeviceToken(`token ${token} rejected`, token), 'token [token] rejected')
  t.equal(scrubDeviceToken('aXbXcXdXeXfXgXhXi', 'a.b.c.d.e.f.g.h.i'), 'aXbXcXdXeXfXgXhXi', 'a dot is a dot')
})

t.test('an empty token leaves the text alone', async (t) => {
  t.equal(scrubDeviceToken('nothing to hide', ''), 'nothing to hide')
})
