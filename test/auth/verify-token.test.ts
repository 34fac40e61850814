import { createHmac, generateKeyPairSync } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createTokenVerifier, type TokenVerifier } from '../../src/auth/index.js'
import { loadConfig, type HeraldConfig } from '../../src/config/index.js'
import { HeraldError, type ErrorCode } from '../../src/errors/index.js'
import { makeTempDir, sign, TEST_SECRET } from '../helpers/broker.js'

const OTHER_SECRET = 'another-secret-that-is-also-32-bytes-or-more'
const WRONG_SECRET = 'a-wrong-secret-nobody-configured-32-bytes-plus'

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })

/** Every string that must never show up in an error message. */
const secrets = [TEST_SECRET, OTHER_SECRET, WRONG_SECRET, rsa.privateKey, rsaOther.privateKey, ec.privateKey]

function jwtConfig (jwt: Record<string, unknown>): HeraldConfig['auth']['jwt'] {
  return loadConfig({ env: {}, overrides: { auth: { jwt } } }).auth.jwt
}

function verifierFor (jwt: Record<string, unknown>): TokenVerifier {
  return createTokenVerifier(jwtConfig(jwt))
}

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
const nowSec = (): number => Math.floor(Date.now() / 1000)

/** A compact JWT built by hand, for headers no well-behaved library would produce. */
function handmade (header: Record<string, unknown>, payload: Record<string, unknown>, signature: (input: string) => string): string {
  const input = `${base64url(header)}.${base64url(payload)}`
  return `${input}.${signature(input)}`
}

const hmac = (key: string) => (input: string): string => createHmac('sha256', key).update(input).digest('base64url')

/** Asserts that verifying `token` throws a HeraldError with `code` whose message leaks neither the token nor a secret. */
function refused (t: Test, verifier: TokenVerifier, token: string, code: ErrorCode): void {
  let caught: unknown
  try {
    verifier.verify(token)
  } catch (err) {
    caught = err
  }
  if (!(caught instanceof HeraldError)) {
    t.fail(`expected a HeraldError ${code}, got ${caught === undefined ? 'a principal' : String(caught)}`)
    return
  }
  t.equal(caught.code, code, 'error code')
  const texts = [caught.message, String(caught.stack)]
  if (caught.cause instanceof Error) texts.push(caught.cause.message)
  const signature = token.split('.')[2] ?? ''
  const needles = [...secrets]
  if (token.length > 0) needles.push(token)
  // a short segment (garbage cases) could match ordinary words
  if (signature.length >= 16) needles.push(signature)
  const leaks = needles.filter((needle) => texts.some((text) => text.includes(needle)))
  t.equal(leaks.length, 0, 'the error names neither the token nor a secret')
}

t.test('HS256 with the configured secret', async (t) => {
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] })
  const exp = nowSec() + 600
  const iat = nowSec() - 5
  const principal = verifier.verify(sign({ sub: 'alice', groups: ['team'], role: 'service', acl: { pub: ['x/#'], sub: ['y/#'] }, exp, iat }))
  t.same(principal, {
    kind: 'user',
    sub: 'alice',
    groups: ['team'],
    role: 'service',
    grants: { pub: ['x/#'], sub: ['y/#'] },
    // accepted until exp plus the default 30 s clock tolerance
    expiresAt: (exp + 30) * 1000,
    // what orders a user's tokens for the relay (store/known-principals.ts)
    issuedAt: iat * 1000,
  })
})

t.test('defaults: role device, no groups, no grants', async (t) => {
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] })
  t.match(verifier.verify(sign({ sub: 'bob' })), { kind: 'user', sub: 'bob', groups: [], role: 'device', grants: { pub: [], sub: [] } })
  // no expiry only where tokens without exp are allowed
  const lax = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }], requireExp: false })
  t.match(lax.verify(sign({ sub: 'bob' }, { expiresIn: null })), { kind: 'user', sub: 'bob', groups: [], role: 'device', grants: { pub: [], sub: [] }, expiresAt: null })
})

t.test('HS256 secret read from secretFile', async (t) => {
  const dir = await makeTempDir(t)
  const secretFile = join(dir, 'secret')
  await writeFile(secretFile, TEST_SECRET + '\n')
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secretFile }] })
  t.equal(verifier.verify(sign({ sub: 'alice' })).sub, 'alice')
})

t.test('RS256 with a publicKey string and with a publicKeyFile', async (t) => {
  const token = sign({ sub: 'alice', role: 'admin' }, { algorithm: 'RS256', secret: rsa.privateKey, kid: 'rsa' })
  const inline = verifierFor({ keys: [{ kid: 'rsa', alg: 'RS256', publicKey: rsa.publicKey }] })
  t.equal(inline.verify(token).role, 'admin')

  const dir = await makeTempDir(t)
  const publicKeyFile = join(dir, 'rsa.pub.pem')
  await writeFile(publicKeyFile, rsa.publicKey)
  const fromFile = verifierFor({ keys: [{ kid: 'rsa', alg: 'RS256', publicKeyFile }] })
  t.equal(fromFile.verify(token).sub, 'alice')
})

t.test('ES256 with a publicKey string and with a publicKeyFile', async (t) => {
  const token = sign({ sub: 'carol' }, { algorithm: 'ES256', secret: ec.privateKey, kid: 'ec' })
  t.equal(verifierFor({ keys: [{ kid: 'ec', alg: 'ES256', publicKey: ec.publicKey }] }).verify(token).sub, 'carol')

  const dir = await makeTempDir(t)
  const publicKeyFile = join(dir, 'ec.pub.pem')
  await writeFile(publicKeyFile, ec.publicKey)
  t.equal(verifierFor({ keys: [{ kid: 'ec', alg: 'ES256', publicKeyFile }] }).verify(token).sub, 'carol')
})

t.test('several keys at once, chosen by kid', async (t) => {
  const verifier = verifierFor({
    keys: [
      { kid: 'hs-old', alg: 'HS256', secret: TEST_SECRET },
      { kid: 'hs-new', alg: 'HS256', secret: OTHER_SECRET },
      { kid: 'rsa', alg: 'RS256', publicKey: rsa.publicKey },
      { kid: 'ec', alg: 'ES256', publicKey: ec.publicKey },
    ],
  })
  t.equal(verifier.verify(sign({ sub: 'a' }, { kid: 'hs-old', secret: TEST_SECRET })).sub, 'a')
  t.equal(verifier.verify(sign({ sub: 'b' }, { kid: 'hs-new', secret: OTHER_SECRET })).sub, 'b')
  t.equal(verifier.verify(sign({ sub: 'c' }, { kid: 'rsa', algorithm: 'RS256', secret: rsa.privateKey })).sub, 'c')
  t.equal(verifier.verify(sign({ sub: 'd' }, { kid: 'ec', algorithm: 'ES256', secret: ec.privateKey })).sub, 'd')

  t.test('the kid picks the key: a token signed with another configured key is refused', async (t) => {
    refused(t, verifier, sign({ sub: 'a' }, { kid: 'hs-new', secret: TEST_SECRET }), 'TOKEN_INVALID')
    refused(t, verifier, sign({ sub: 'a' }, { kid: 'ec', algorithm: 'RS256', secret: rsa.privateKey }), 'TOKEN_INVALID')
  })

  t.test('a token without kid is refused, even when it verifies with one of the keys', async (t) => {
    refused(t, verifier, sign({ sub: 'e' }, { kid: null, secret: OTHER_SECRET }), 'TOKEN_INVALID')
    refused(t, verifier, sign({ sub: 'e' }, { kid: null, secret: TEST_SECRET }), 'TOKEN_INVALID')
    refused(t, verifier, sign({ sub: 'e' }, { kid: null, algorithm: 'RS256', secret: rsa.privateKey }), 'TOKEN_INVALID')
  })
})

t.test('one key: the kid is a hint, as for a JWT library given one key', async (t) => {
  t.test('a key without kid accepts a token with any kid, or none', async (t) => {
    const rsNoKid = verifierFor({ keys: [{ alg: 'RS256', publicKey: rsa.publicKey }] })
    t.equal(rsNoKid.verify(sign({ sub: 'a' }, { kid: 'idp-key-2026', algorithm: 'RS256', secret: rsa.privateKey })).sub, 'a')
    t.equal(rsNoKid.verify(sign({ sub: 'b' }, { kid: null, algorithm: 'RS256', secret: rsa.privateKey })).sub, 'b')
    // the signature still decides
    refused(t, rsNoKid, sign({ sub: 'c' }, { kid: 'idp-key-2026', algorithm: 'RS256', secret: rsaOther.privateKey }), 'TOKEN_INVALID')
    const hsNoKid = verifierFor({ keys: [{ alg: 'HS256', secret: TEST_SECRET }] })
    t.equal(hsNoKid.verify(sign({ sub: 'd' }, { kid: 'whatever' })).sub, 'd')
  })
  t.test('a key with a kid accepts a token without kid, refuses one naming another kid', async (t) => {
    const rsKid = verifierFor({ keys: [{ kid: 'rsa', alg: 'RS256', publicKey: rsa.publicKey }] })
    t.equal(rsKid.verify(sign({ sub: 'a' }, { kid: null, algorithm: 'RS256', secret: rsa.privateKey })).sub, 'a')
    refused(t, rsKid, sign({ sub: 'a' }, { kid: 'retired', algorithm: 'RS256', secret: rsa.privateKey }), 'TOKEN_INVALID')
  })
})

t.test('time claims', async (t) => {
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }], clockToleranceSec: 30 })

  t.test('expired beyond the clock tolerance', async (t) => {
    refused(t, verifier, sign({ sub: 'alice', exp: nowSec() - 120 }), 'TOKEN_EXPIRED')
  })
  t.test('expired within the clock tolerance is accepted', async (t) => {
    t.equal(verifier.verify(sign({ sub: 'alice', exp: nowSec() - 5 })).sub, 'alice')
  })
  t.test('not yet valid beyond the clock tolerance', async (t) => {
    refused(t, verifier, sign({ sub: 'alice' }, { notBefore: 120 }), 'TOKEN_INVALID')
  })
  t.test('not yet valid within the clock tolerance is accepted', async (t) => {
    t.equal(verifier.verify(sign({ sub: 'alice' }, { notBefore: 5 })).sub, 'alice')
  })
  t.test('a tolerance of 0 refuses a token expired a moment ago', async (t) => {
    const strict = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }], clockToleranceSec: 0 })
    refused(t, strict, sign({ sub: 'alice', exp: nowSec() - 2 }), 'TOKEN_EXPIRED')
  })
  t.test('iat beyond the clock tolerance in the future is refused', async (t) => {
    refused(t, verifier, sign({ sub: 'alice', iat: nowSec() + 86400 }, { expiresIn: '1h' }), 'TOKEN_INVALID')
    refused(t, verifier, sign({ sub: 'alice', iat: nowSec() + 120, exp: nowSec() + 3600 }), 'TOKEN_INVALID')
  })
  t.test('iat within the clock tolerance in the future is accepted', async (t) => {
    t.equal(verifier.verify(sign({ sub: 'alice', iat: nowSec() + 5, exp: nowSec() + 3600 })).sub, 'alice')
  })
  t.test('an iat that is not a number is refused', async (t) => {
    // jsonwebtoken will not sign that
    refused(t, verifier, handmade({ alg: 'HS256', typ: 'JWT', kid: 'test' }, { sub: 'alice', iat: 'yesterday', exp: nowSec() + 3600 }, hmac(TEST_SECRET)), 'TOKEN_INVALID')
  })
})

t.test('token lifetime: auth.jwt.requireExp and auth.jwt.maxTtlSec', async (t) => {
  const key = { kid: 'test', alg: 'HS256', secret: TEST_SECRET }

  t.test('defaults: exp required, at most 30 days', async (t) => {
    const config = jwtConfig({ keys: [key] })
    t.equal(config.requireExp, true)
    t.equal(config.maxTtlSec, 30 * 86400)
    const verifier = createTokenVerifier(config)
    refused(t, verifier, sign({ sub: 'alice' }, { expiresIn: null }), 'TOKEN_INVALID')
    refused(t, verifier, sign({ sub: 'alice', exp: 1e20 }), 'TOKEN_INVALID')
    refused(t, verifier, sign({ sub: 'alice' }, { expiresIn: '31d' }), 'TOKEN_INVALID')
    // what herald start and herald token mint, and what the benchmark uses
    for (const ttl of ['1h', '2h', '24h', '7d', '30d'] as const) {
      t.equal(verifier.verify(sign({ sub: 'alice' }, { expiresIn: ttl })).sub, 'alice', ttl)
    }
  })

  t.test('the lifetime is exp - iat, or what is left of it without iat', async (t) => {
    const verifier = verifierFor({ keys: [key], maxTtlSec: 3600 })
    const now = nowSec()
    t.equal(verifier.verify(sign({ sub: 'alice', iat: now - 60, exp: now + 3540 })).sub, 'alice', 'exactly maxTtlSec')
    refused(t, verifier, sign({ sub: 'alice', iat: now - 60, exp: now + 3541 }), 'TOKEN_INVALID')
    // issued long ago with a long lifetime: refused even though little of it is left
    refused(t, verifier, sign({ sub: 'alice', iat: now - 86400, exp: now + 60 }), 'TOKEN_INVALID')
    // without iat: exp may be maxTtlSec plus the clock tolerance from now
    t.equal(verifier.verify(handmade({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice', exp: now + 3600 + 20 }, hmac(TEST_SECRET))).sub, 'alice')
    refused(t, verifier, handmade({ alg: 'HS256', typ: 'JWT' }, { sub: 'alice', exp: now + 3600 + 120 }, hmac(TEST_SECRET)), 'TOKEN_INVALID')
  })

  t.test('requireExp false accepts tokens without exp; maxTtlSec still bounds those with one', async (t) => {
    const verifier = verifierFor({ keys: [key], requireExp: false })
    t.equal(verifier.verify(sign({ sub: 'alice' }, { expiresIn: null })).expiresAt, null)
    refused(t, verifier, sign({ sub: 'alice', exp: 1e20 }), 'TOKEN_INVALID')
  })

  t.test('maxTtlSec 0: no bound', async (t) => {
    const verifier = verifierFor({ keys: [key], maxTtlSec: 0 })
    t.equal(verifier.verify(sign({ sub: 'alice' }, { expiresIn: '3650d' })).sub, 'alice')
    refused(t, verifier, sign({ sub: 'alice' }, { expiresIn: null }), 'TOKEN_INVALID')
  })
})

t.test('signature and key selection', async (t) => {
  const hsOnly = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] })
  const rsOnly = verifierFor({ keys: [{ kid: 'rsa', alg: 'RS256', publicKey: rsa.publicKey }] })

  t.test('HS256 signed with the wrong secret', async (t) => {
    refused(t, hsOnly, sign({ sub: 'alice' }, { secret: WRONG_SECRET }), 'TOKEN_INVALID')
  })
  t.test('RS256 signed with another RSA key', async (t) => {
    refused(t, rsOnly, sign({ sub: 'alice' }, { algorithm: 'RS256', secret: rsaOther.privateKey, kid: 'rsa' }), 'TOKEN_INVALID')
  })
  t.test('unknown kid', async (t) => {
    refused(t, hsOnly, sign({ sub: 'alice' }, { kid: 'nobody' }), 'TOKEN_INVALID')
  })
  t.test('a tampered payload', async (t) => {
    const [header, , signature] = sign({ sub: 'alice' }).split('.')
    refused(t, hsOnly, `${header}.${base64url({ sub: 'mallory', role: 'admin' })}.${signature}`, 'TOKEN_INVALID')
  })

  t.test('alg none is never accepted', async (t) => {
    const payload = { sub: 'alice', role: 'admin' }
    for (const alg of ['none', 'None', 'NONE']) {
      refused(t, hsOnly, handmade({ alg, typ: 'JWT' }, payload, () => ''), 'TOKEN_INVALID')
      refused(t, hsOnly, handmade({ alg, typ: 'JWT', kid: 'test' }, payload, () => ''), 'TOKEN_INVALID')
    }
    // a known algorithm with the signature stripped
    refused(t, hsOnly, handmade({ alg: 'HS256', typ: 'JWT', kid: 'test' }, payload, () => ''), 'TOKEN_INVALID')
  })

  t.test('HS/RS confusion: HS256 signed with the RSA public key PEM as the HMAC secret', async (t) => {
    const payload = { sub: 'alice', role: 'admin' }
    refused(t, rsOnly, handmade({ alg: 'HS256', typ: 'JWT', kid: 'rsa' }, payload, hmac(rsa.publicKey)), 'TOKEN_INVALID')
    refused(t, rsOnly, handmade({ alg: 'HS256', typ: 'JWT' }, payload, hmac(rsa.publicKey)), 'TOKEN_INVALID')
    // the same forgery labelled RS256 reaches the RSA key, whose signature check fails
    refused(t, rsOnly, handmade({ alg: 'RS256', typ: 'JWT', kid: 'rsa' }, payload, hmac(rsa.publicKey)), 'TOKEN_INVALID')
    // and a library that signs HS256 with the PEM string
    refused(t, rsOnly, sign(payload, { secret: rsa.publicKey, kid: 'rsa' }), 'TOKEN_INVALID')
  })

  t.test('garbage', async (t) => {
    for (const token of ['', 'garbage', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9..', '....', '{"sub":"alice"}']) {
      refused(t, hsOnly, token, 'TOKEN_INVALID')
    }
  })

  t.test('correctly signed, but the header or the payload is not a JSON object', async (t) => {
    const signed = (header: string, payload: string): string => {
      const input = `${Buffer.from(header).toString('base64url')}.${Buffer.from(payload).toString('base64url')}`
      return `${input}.${hmac(TEST_SECRET)(input)}`
    }
    const header = JSON.stringify({ alg: 'HS256', typ: 'JWT' })
    const payload = JSON.stringify({ sub: 'alice', exp: nowSec() + 60 })
    t.equal(hsOnly.verify(signed(header, payload)).sub, 'alice', 'the same construction with JSON objects is accepted')
    for (const [name, token] of [
      ['payload a JSON string', signed(header, '"alice"')],
      ['payload not JSON', signed(header, 'sub=alice')],
      ['payload a JSON array', signed(header, '["alice"]')],
      ['header a JSON array', signed('["HS256"]', payload)],
      ['header not JSON', signed('alg=HS256', payload)],
    ] as const) {
      t.test(name, async (t) => refused(t, hsOnly, token, 'TOKEN_INVALID'))
    }
  })
})

t.test('issuer and audience', async (t) => {
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }], issuer: 'https://id.example', audience: 'herald' })
  t.equal(verifier.verify(sign({ sub: 'alice' }, { issuer: 'https://id.example', audience: 'herald' })).sub, 'alice')
  refused(t, verifier, sign({ sub: 'alice' }, { issuer: 'https://evil.example', audience: 'herald' }), 'TOKEN_INVALID')
  refused(t, verifier, sign({ sub: 'alice' }, { issuer: 'https://id.example', audience: 'someone-else' }), 'TOKEN_INVALID')
  refused(t, verifier, sign({ sub: 'alice' }, { audience: 'herald' }), 'TOKEN_INVALID')
  refused(t, verifier, sign({ sub: 'alice' }, { issuer: 'https://id.example' }), 'TOKEN_INVALID')
})

t.test('claims Herald cannot use', async (t) => {
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] })
  const cases: Array<[string, Record<string, unknown>]> = [
    ['missing sub', { role: 'device' }],
    ['empty sub', { sub: '' }],
    ['numeric sub', { sub: 42 }],
    ['sub with /', { sub: 'alice/bob' }],
    ['sub with +', { sub: 'alice+' }],
    ['sub with #', { sub: '#' }],
    ['sub starting with $', { sub: '$SYS' }],
    ['bad role', { sub: 'alice', role: 'root' }],
    ['groups not an array', { sub: 'alice', groups: 'team' }],
    ['group with /', { sub: 'alice', groups: ['a/b'] }],
    ['acl with an unknown field', { sub: 'alice', acl: { pub: [], admin: true } }],
    ['acl pub not a list', { sub: 'alice', acl: { pub: 'x/#' } }],
  ]
  for (const [name, claims] of cases) {
    t.test(name, async (t) => refused(t, verifier, sign(claims), 'TOKEN_INVALID'))
  }
})

t.test('token size', async (t) => {
  const verifier = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }] })
  const big = sign({ sub: 'alice', pad: 'x'.repeat(9000) })
  t.ok(Buffer.byteLength(big) > 8192)
  refused(t, verifier, big, 'TOKEN_TOO_LARGE')

  const small = verifierFor({ keys: [{ kid: 'test', alg: 'HS256', secret: TEST_SECRET }], maxTokenBytes: 256 })
  const token = sign({ sub: 'alice' })
  t.ok(Buffer.byteLength(token) <= 256)
  t.equal(small.verify(token).sub, 'alice')
  const justOver = sign({ sub: 'alice', pad: 'x'.repeat(256 - token.length) })
  t.ok(Buffer.byteLength(justOver) > 256)
  refused(t, small, justOver, 'TOKEN_TOO_LARGE')
  // the size check comes first: not even a garbage token that large is parsed
  refused(t, small, 'x'.repeat(257), 'TOKEN_TOO_LARGE')
})
