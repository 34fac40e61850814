import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { HeraldConfig } from './schema.js'

/**
 * What the schema cannot see: that every PEM file the config names parses as
 * what it must be (a public key of the key's algorithm, a certificate chain, a
 * private key matching its certificate). Run by loadConfig, so `herald
 * check-config`, `herald start` and `herald token` refuse the same configs,
 * each problem naming its key, instead of a stack trace from deep inside a
 * listener or the relay. (ACL filters are checked with the broker's topic
 * rules by src/cli/checked-config.ts: src/config imports none of Herald.)
 *
 * A file that does not exist is reported by loadConfig's own checks; here it
 * is skipped.
 */
export function checkFiles (config: HeraldConfig, problems: string[]): void {
  checkJwtKeys(config, problems)
  checkTls(config, problems)
  checkProviders(config, problems)
}

function checkJwtKeys (config: HeraldConfig, problems: string[]): void {
  config.auth.jwt.keys.forEach((key, i) => {
    const at = `auth.jwt.keys[${i}]`
    if (key.alg === 'HS256') {
      // with both secret and secretFile set, that is the problem loadConfig reports
      if (key.secretFile !== null && key.secret === null) {
        const text = read(key.secretFile, `${at}.secretFile`, problems)
        // the verifier trims the file's content (its final newline is no part of the secret)
        if (text !== undefined && Buffer.byteLength(text.toString('utf8').trim()) < 32) problems.push(`${at}.secretFile: the secret must be at least 32 bytes`)
      }
      return
    }
    const wanted = keyTypeOf(key.alg)
    if (key.publicKey !== null) checkKeyType(parsePublicKey(Buffer.from(key.publicKey), `${at}.publicKey`, problems), wanted, key.alg, `${at}.publicKey`, problems)
    if (key.publicKeyFile !== null) {
      const pem = read(key.publicKeyFile, `${at}.publicKeyFile`, problems)
      if (pem !== undefined) checkKeyType(parsePublicKey(pem, `${at}.publicKeyFile`, problems), wanted, key.alg, `${at}.publicKeyFile`, problems)
    }
    if (key.privateKeyFile !== null) {
      const pem = read(key.privateKeyFile, `${at}.privateKeyFile`, problems)
      if (pem !== undefined) checkKeyType(parsePrivateKey(pem, `${at}.privateKeyFile`, problems), wanted, key.alg, `${at}.privateKeyFile`, problems)
    }
  })
}

function checkTls (config: HeraldConfig, problems: string[]): void {
  const { certFile, keyFile } = config.tls
  // one without the other is the problem loadConfig reports
  if (certFile === null || keyFile === null) return
  const certPem = read(certFile, 'tls.certFile', problems)
  const keyPem = read(keyFile, 'tls.keyFile', problems)
  const chain = certPem === undefined ? undefined : parseCertificates(certPem, 'tls.certFile', problems)
  const key = keyPem === undefined ? undefined : parsePrivateKey(keyPem, 'tls.keyFile', problems)
  const leaf = chain?.[0]
  // the first certificate of the chain is the server's own: its key must be tls.keyFile
  if (leaf !== undefined && key !== undefined && !leaf.checkPrivateKey(key)) {
    problems.push('tls.keyFile: not the private key of the first certificate in tls.certFile')
  }
}

function checkProviders (config: HeraldConfig, problems: string[]): void {
  const { fcm, apns } = config.push
  if (fcm !== undefined) {
    if (fcm.caFile !== null) checkCaFile(fcm.caFile, 'push.fcm.caFile', problems)
    const account = readServiceAccount(fcm.serviceAccountFile)
    // loadConfig reports a missing file, a non-JSON file and a missing private_key
    if (typeof account?.private_key === 'string') {
      try {
        createPrivateKey(account.private_key)
      } catch (err) {
        problems.push(`push.fcm.serviceAccountFile: private_key is not a PEM private key (${reason(err)})`)
      }
    }
  }
  // push.apns.keyFile (an EC key in PEM) is checked by loadConfig
  if (apns !== undefined && apns.caFile !== null) checkCaFile(apns.caFile, 'push.apns.caFile', problems)
}

function checkCaFile (file: string, at: string, problems: string[]): void {
  const pem = read(file, at, problems)
  if (pem !== undefined) parseCertificates(pem, at, problems)
}

function keyTypeOf (alg: 'RS256' | 'ES256'): 'rsa' | 'ec' {
  return alg === 'RS256' ? 'rsa' : 'ec'
}

function checkKeyType (key: KeyObject | undefined, wanted: 'rsa' | 'ec', alg: string, at: string, problems: string[]): void {
  if (key === undefined) return
  if (key.asymmetricKeyType !== wanted) {
    problems.push(`${at}: ${alg} needs an ${wanted.toUpperCase()} key, this is ${key.asymmetricKeyType?.toUpperCase() ?? 'another kind of key'}`)
    return
  }
  // ES256 is ECDSA on P-256 only (RFC 7518 section 3.4)
  const curve = key.asymmetricKeyDetails?.namedCurve
  if (wanted === 'ec' && curve !== 'prime256v1') problems.push(`${at}: ES256 needs a P-256 (prime256v1) key, this one is on ${curve ?? 'another curve'}`)
}

function parsePublicKey (pem: Buffer, at: string, problems: string[]): KeyObject | undefined {
  if (!isPem(pem)) {
    problems.push(`${at}: not a PEM public key (no -----BEGIN PUBLIC KEY----- block)`)
    return undefined
  }
  try {
    return createPublicKey(pem)
  } catch (err) {
    problems.push(`${at}: not a PEM public key (${holds(pem, /PUBLIC KEY|CERTIFICATE|PRIVATE KEY/) ?? reason(err)})`)
    return undefined
  }
}

function parsePrivateKey (pem: Buffer, at: string, problems: string[]): KeyObject | undefined {
  if (!isPem(pem)) {
    problems.push(`${at}: not a PEM private key (no -----BEGIN PRIVATE KEY----- block)`)
    return undefined
  }
  try {
    return createPrivateKey(pem)
  } catch (err) {
    problems.push(`${at}: not a PEM private key (${holds(pem, /PRIVATE KEY/) ?? reason(err)})`)
    return undefined
  }
}

/** `it holds a PUBLIC KEY` when no block of the file is of the kind wanted: the wrong file, more often than a broken one. */
function holds (pem: Buffer, wanted: RegExp): string | undefined {
  const labels = [...pem.toString('utf8').matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1] as string)
  if (labels.some((label) => wanted.test(label))) return undefined
  return `it holds ${[...new Set(labels)].map((label) => `a ${label}`).join(', ')}`
}

/** OpenSSL would also take DER; a config names PEM files, and a file without a PEM block is the usual mistake (a .der, a .p12, the wrong file). */
function isPem (data: Buffer): boolean {
  return data.includes('-----BEGIN ')
}

const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/** Every certificate of a PEM file, in order; none is a problem. */
function parseCertificates (pem: Buffer, at: string, problems: string[]): X509Certificate[] | undefined {
  const blocks = pem.toString('utf8').match(certificateBlock) ?? []
  if (blocks.length === 0) {
    problems.push(`${at}: not a PEM certificate (no -----BEGIN CERTIFICATE----- block)`)
    return undefined
  }
  const certificates: X509Certificate[] = []
  for (const [n, block] of blocks.entries()) {
    try {
      certificates.push(new X509Certificate(block))
    } catch (err) {
      problems.push(`${at}: certificate ${n + 1} of ${blocks.length} does not parse (${reason(err)})`)
      return undefined
    }
  }
  return certificates
}

/** The file's bytes, or undefined (a problem when it exists but cannot be read; a missing one is reported elsewhere). */
function read (file: string, at: string, problems: string[]): Buffer | undefined {
  try {
    return readFileSync(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') problems.push(`${at}: cannot read ${file} (${code ?? reason(err)})`)
    return undefined
  }
}

function readServiceAccount (file: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'))
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}

/** OpenSSL's messages carry a code before the words that matter: `error:0480006C:PEM routines::no start line`. */
function reason (err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  return message.replace(/^error:[0-9A-F]+:/, '').replace(/::/, ': ')
}
