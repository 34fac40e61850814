import Type, { type Static } from 'typebox'

/**
 * The configuration schema: types, defaults and documentation in one place.
 * `config/default.json` holds the same defaults for people to read;
 * a test checks the two agree.
 */

const Port = Type.Integer({ minimum: 0, maximum: 65535, description: '0 picks a free port' })
const NullableString = (description: string) => Type.Union([Type.String({ minLength: 1 }), Type.Null()], { default: null, description })

/** `!filter` denies; any other entry allows. `%u` stands for the principal's `sub`. */
const Grants = Type.Object({
  pub: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  sub: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
}, { additionalProperties: false, default: {} })

const JwtKey = Type.Object({
  kid: NullableString('key id; tokens carrying a `kid` header are verified with the key of that id'),
  alg: Type.Union([Type.Literal('HS256'), Type.Literal('RS256'), Type.Literal('ES256')]),
  secret: NullableString('HS256 shared secret (at least 32 bytes)'),
  secretFile: NullableString('file holding the HS256 secret'),
  publicKey: NullableString('PEM public key for RS256/ES256'),
  publicKeyFile: NullableString('file holding the PEM public key'),
  privateKeyFile: NullableString('PEM private key, only used by `herald token` to sign'),
}, { additionalProperties: false })

const AclRule = Type.Object({
  principal: Type.String({ pattern: '^(authenticated|anonymous|(user|group|role):.+)$', description: 'who the rule applies to' }),
  pub: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  sub: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
}, { additionalProperties: false })

export const ConfigSchema = Type.Object({
  dataDir: Type.String({ minLength: 1, default: './data', description: 'LevelDB and generated secrets live here' }),
  storage: Type.Object({
    engine: Type.Union([Type.Literal('leveldb'), Type.Literal('memory')], {
      default: 'leveldb',
      description: '`memory` keeps sessions, installations and the relay outbox in memory only: everything is lost at exit (tests, benchmarks, throwaway brokers)',
    }),
    ackWaitMs: Type.Integer({
      minimum: 0,
      maximum: 10_000,
      default: 20,
      description: 'how long a QoS 1 message whose persistent subscribers are all connected waits for their PUBACKs before it is written to disk; the publisher\'s PUBACK waits as long at most. 0: written at once',
    }),
    fsync: Type.Union([Type.Literal('batch'), Type.Literal('none')], {
      default: 'batch',
      description: '`batch`: every LevelDB write (each group commit, each store\'s batch) is written with sync, so what a PUBACK or a 2xx acknowledges is on the disk, not only in the page cache; `none`: the kernel writes it back when it likes (survives kill -9, not a power cut)',
    }),
  }, { additionalProperties: false, default: {} }),
  cluster: Type.Object({
    redis: Type.Object({
      url: NullableString('redis://[:password@]host:port[/db] or rediss:// (TLS) of the Redis every node shares; null: one process on the embedded store (no cluster)'),
    }, { additionalProperties: false, default: {} }),
    keyPrefix: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$', default: 'herald:', description: 'prefix of every Redis key and channel, so one Redis can serve several deployments' }),
    workers: Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], { default: 1, description: 'worker processes behind the same ports on this machine (node:cluster); `auto`: one per CPU core; more than 1 needs cluster.redis.url' }),
    nodeId: NullableString('this node\'s name in logs, metrics and Redis; null: host name and process id'),
    nodeTimeoutMs: Type.Integer({ minimum: 1000, maximum: 300_000, default: 10_000, description: 'a node that has not renewed its lease in Redis for this long is dead to the others: its connections leave the cluster presence, its relay jobs and pending bucket events are taken over, its clients\' wills are published' }),
    requestTimeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000, description: 'how long an HTTP operation on an installation connected to another node (subscribe, unsubscribe, delete, push to it) waits for that node to act on the connection before it fails with NODE_UNREACHABLE' }),
  }, { additionalProperties: false, default: {} }),
  log: Type.Object({
    level: Type.Union([
      Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'),
      Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent'),
    ], { default: 'info' }),
    format: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], {
      default: 'auto',
      description: '`json`: one pino JSON object per line; `pretty`: pino-pretty\'s coloured lines for a person; `auto`: pretty when stdout is a terminal, JSON otherwise (systemd, containers, pipes)',
    }),
  }, { additionalProperties: false, default: {} }),
  listen: Type.Object({
    host: Type.String({ minLength: 1, default: '0.0.0.0' }),
  }, { additionalProperties: false, default: {} }),
  mqtt: Type.Object({
    port: Type.Integer({ ...Port, default: 1883 }),
    deniedPublish: Type.Union([Type.Literal('disconnect'), Type.Literal('drop')], {
      default: 'disconnect',
      description: 'a PUBLISH the ACL refuses: `disconnect` closes the connection (MQTT 3.1.1 has no negative PUBACK); `drop` acknowledges it, delivers it to nobody, logs and counts it',
    }),
  }, { additionalProperties: false, default: {} }),
  http: Type.Object({
    port: Type.Integer({ ...Port, default: 8080 }),
    wsPath: Type.String({ pattern: '^/', default: '/mqtt' }),
    publicHost: NullableString('host name devices are told to connect to; default: the Host header of the request'),
    bodyLimitBytes: Type.Integer({ minimum: 1024, default: 524288, description: 'largest request body' }),
    rateLimit: Type.Object({
      max: Type.Integer({ minimum: 1, default: 1200, description: 'requests per client IP per window' }),
      windowSec: Type.Integer({ minimum: 1, default: 60 }),
    }, { additionalProperties: false, default: {} }),
    headersTimeoutMs: Type.Integer({
      minimum: 100,
      default: 10000,
      description: 'time a connection has for a request\'s headers, from accept (or from the first byte of the next request on a keep-alive connection); the TLS handshake may take as long again. Closed with 408 beyond it',
    }),
    requestTimeoutMs: Type.Integer({
      minimum: 100,
      default: 30000,
      description: 'time a connection has for a whole request, body included; closed with 408 beyond it. Not the time to answer: a slow handler is not cut off',
    }),
    keepAliveTimeoutMs: Type.Integer({
      minimum: 100,
      default: 72000,
      description: 'an idle keep-alive connection is closed after this; longer than load balancers\' usual idle timeout (60 s), so they never reuse a connection Herald is closing',
    }),
    maxConnectionsPerIp: Type.Integer({
      minimum: 0,
      default: 100,
      description: 'open HTTP connections per client IP; a new one beyond it is closed at once. A WebSocket connection stops counting once upgraded to MQTT. 0: no cap',
    }),
    authFailureLimit: Type.Object({
      max: Type.Integer({ minimum: 1, default: 100, description: 'failed authentications (401) per client IP per window; beyond it the IP gets 429 RATE_LIMITED, its tokens unverified, until the window ends' }),
      windowSec: Type.Integer({ minimum: 1, default: 60 }),
    }, { additionalProperties: false, default: {} }),
  }, { additionalProperties: false, default: {} }),
  tls: Type.Object({
    certFile: NullableString('PEM certificate chain; enables mqtts and https/wss'),
    keyFile: NullableString('PEM private key of certFile'),
    mqttPort: Type.Integer({ ...Port, default: 8883 }),
    httpsPort: Type.Integer({ ...Port, default: 8443 }),
  }, { additionalProperties: false, default: {} }),
  auth: Type.Object({
    jwt: Type.Object({
      keys: Type.Array(JwtKey, { default: [], description: 'empty: `herald start` generates an HS256 secret in dataDir' }),
      issuer: NullableString('required `iss` claim'),
      audience: NullableString('required `aud` claim'),
      clockToleranceSec: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
      maxTokenBytes: Type.Integer({ minimum: 256, maximum: 65536, default: 8192 }),
      requireExp: Type.Boolean({ default: true, description: 'refuse tokens without an `exp` claim' }),
      maxTtlSec: Type.Integer({
        minimum: 0,
        default: 2592000,
        description: 'refuse tokens whose `exp` is more than this after their `iat` (after now, without `iat`); 0: no bound',
      }),
    }, { additionalProperties: false, default: {} }),
    anonymous: Type.Object({
      enabled: Type.Boolean({ default: false }),
      acl: Grants,
    }, { additionalProperties: false, default: {} }),
  }, { additionalProperties: false, default: {} }),
  acl: Type.Object({
    rules: Type.Array(AclRule, { default: [] }),
  }, { additionalProperties: false, default: {} }),
  push: Type.Object({
    defaultTtlSec: Type.Integer({ minimum: 0, maximum: 2419200, default: 86400, description: 'how long a relay job lives when the message has no ttl' }),
    maxAttempts: Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'attempts before a job is dead-lettered' }),
    concurrency: Type.Integer({ minimum: 1, maximum: 10000, default: 200, description: 'deliveries in flight per provider' }),
    retryBaseMs: Type.Integer({ minimum: 1, default: 1000 }),
    retryMaxMs: Type.Integer({ minimum: 1, default: 300000 }),
    // absent: the provider is off
    fcm: Type.Optional(Type.Object({
      serviceAccountFile: Type.String({ minLength: 1, description: 'Firebase service account JSON' }),
      projectId: NullableString('overrides project_id of the service account'),
      endpoint: NullableString('https://host:port that replaces fcm.googleapis.com and oauth2.googleapis.com (tests, on-premise proxies)'),
      caFile: NullableString('CA certificate to trust for endpoint'),
    }, { additionalProperties: false })),
    apns: Type.Optional(Type.Object({
      keyFile: Type.String({ minLength: 1, description: 'APNs auth key (.p8)' }),
      keyId: Type.String({ minLength: 1 }),
      teamId: Type.String({ minLength: 1 }),
      topic: Type.String({ minLength: 1, description: 'bundle id used when an installation names no apnsTopic' }),
      production: Type.Boolean({ default: true, description: 'default environment for tokens that do not say' }),
      host: NullableString('replaces api.push.apple.com and api.sandbox.push.apple.com (tests, proxies)'),
      port: Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Null()], { default: null }),
      caFile: NullableString('CA certificate to trust for host'),
    }, { additionalProperties: false })),
  }, { additionalProperties: false, default: {} }),
  buckets: Type.Object({
    maxObjectBytes: Type.Integer({ minimum: 2, maximum: 16777216, default: 65536, description: 'largest object body (its JSON, UTF-8); requests are also bounded by http.bodyLimitBytes' }),
    eventBodyLimitBytes: Type.Integer({ minimum: 0, maximum: 65536, default: 2048, description: 'change events carry the object body when its JSON is at most this long' }),
    maxListLimit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'largest page of GET .../objects' }),
  }, { additionalProperties: false, default: {} }),
  memory: Type.Object({
    reclaimAfterConnections: Type.Integer({ minimum: 0, default: 2000, description: 'a storm of at least this many new connections (a fleet reconnecting) is followed by one full garbage collection once it is over, so what the storm left behind does not stay resident; 0: never' }),
    reclaimQuietSec: Type.Integer({ minimum: 1, maximum: 300, default: 5, description: 'a storm goes on while every period this long admits at least a twentieth of memory.reclaimAfterConnections; the first period with fewer ends it' }),
  }, { additionalProperties: false, default: {} }),
  limits: Type.Object({
    maxPacketBytes: Type.Integer({ minimum: 64, maximum: 268435455, default: 262144 }),
    maxTopicLength: Type.Integer({ minimum: 1, maximum: 65535, default: 256 }),
    maxTopicLevels: Type.Integer({ minimum: 1, maximum: 100, default: 16 }),
    maxClientIdLength: Type.Integer({ minimum: 1, maximum: 65535, default: 128 }),
    maxConnectionsPerUser: Type.Integer({ minimum: 1, default: 64 }),
    maxRetainedPerUser: Type.Integer({ minimum: 0, default: 1000, description: 'topics under users/{uid}/ holding a retained message, per uid; a retained message on a new topic beyond it is refused (TOO_MANY_RETAINED); 0: no bound' }),
    maxRetainedPerGroup: Type.Integer({ minimum: 0, default: 10000, description: 'topics under groups/{gid}/ holding a retained message, per gid; as maxRetainedPerUser' }),
    maxRetained: Type.Integer({ minimum: 0, default: 1000000, description: 'topics holding a retained message, all together; as maxRetainedPerUser' }),
    maxOutgoingBytes: Type.Integer({ minimum: 1024, default: 1048576, description: 'bytes written to one connection and not yet read by its peer; beyond it messages to that connection are dropped (QoS 0, clean sessions) or left in its queue (persistent sessions, whose connection is closed)' }),
    maxOutgoingMessages: Type.Integer({ minimum: 1, default: 1000, description: 'messages handed to one connection whose write has not completed; beyond it as maxOutgoingBytes' }),
    slowClientTimeoutMs: Type.Integer({ minimum: 100, default: 30000, description: 'a connection whose peer reads nothing for this long while writes wait is closed' }),
    maxQueuedMessagesPerSession: Type.Integer({ minimum: 0, default: 1000, description: 'QoS 1 and 2 messages one persistent session keeps queued; beyond it its oldest are dropped (and counted), so a device coming back gets the newest; 0: no bound' }),
    sessionExpirySec: Type.Integer({ minimum: 0, default: 2592000, description: 'a persistent session not connected for this long is deleted (an installation keeps its subscriptions and loses its queue); 0: never' }),
    sessionExpirySweepSec: Type.Integer({ minimum: 1, default: 3600, description: 'how often expired sessions are looked for (also at start)' }),
    maxSubscriptionsPerClient: Type.Integer({ minimum: 1, default: 100, description: 'subscriptions one MQTT connection may hold; filters beyond it get SUBACK 0x80' }),
    maxInstallationsPerUser: Type.Integer({ minimum: 1, default: 100, description: 'installations one user may have; POST /v1/installations beyond it answers 409 TOO_MANY_INSTALLATIONS' }),
    connectRatePerIp: Type.Object({
      points: Type.Integer({ minimum: 1, default: 60, description: 'CONNECTs allowed per IP per window' }),
      windowSec: Type.Integer({ minimum: 1, default: 10 }),
    }, { additionalProperties: false, default: {} }),
    maxConnectBytes: Type.Union([Type.Integer({ minimum: 64, maximum: 268435455 }), Type.Null()], {
      default: null,
      description: 'largest CONNECT packet, checked from its fixed header before it is buffered; null: derived from auth.jwt.maxTokenBytes, maxClientIdLength and maxTopicLength (10,880 bytes with the defaults); at most maxPacketBytes',
    }),
    maxPendingConnectsPerIp: Type.Integer({ minimum: 0, default: 100, description: 'connections from one address whose CONNECT has not fully arrived; a new one beyond it is closed at once; 0: no cap' }),
    connectTimeoutMs: Type.Integer({ minimum: 100, default: 10000, description: 'time a new connection has to send its whole CONNECT (counted once TLS or the WebSocket upgrade is done; a TLS handshake gets as long again)' }),
  }, { additionalProperties: false, default: {} }),
}, { additionalProperties: false })

export type HeraldConfig = Static<typeof ConfigSchema>
export type JwtKeyConfig = Static<typeof JwtKey>
export type GrantsConfig = Static<typeof Grants>
export type AclRuleConfig = Static<typeof AclRule>
