/**
 * Every error Herald reports, in one table: a stable code, the HTTP status and
 * MQTT 3.1.1 CONNACK return code it maps to, and a default message.
 * Codes are part of the public API (README "Error codes"); never rename one.
 */

/** CONNACK return codes of MQTT 3.1.1, section 3.2.2.3. */
export const Connack = {
  accepted: 0,
  unacceptableProtocol: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const

export type ConnackCode = (typeof Connack)[keyof typeof Connack]

export interface ErrorSpec {
  readonly status: number
  readonly connack: ConnackCode
  readonly message: string
}

export const errorCodes = {
  INVALID_REQUEST: { status: 400, connack: Connack.notAuthorized, message: 'the request is not valid' },
  INVALID_JSON: { status: 400, connack: Connack.notAuthorized, message: 'the body is not valid JSON' },
  TOKEN_MISSING: { status: 401, connack: Connack.badUsernameOrPassword, message: 'a bearer token is required' },
  TOKEN_INVALID: { status: 401, connack: Connack.badUsernameOrPassword, message: 'the token could not be verified' },
  TOKEN_EXPIRED: { status: 401, connack: Connack.badUsernameOrPassword, message: 'the token has expired' },
  TOKEN_TOO_LARGE: { status: 401, connack: Connack.badUsernameOrPassword, message: 'the token is larger than auth.jwt.maxTokenBytes' },
  NOT_AUTHORIZED: { status: 403, connack: Connack.notAuthorized, message: 'not allowed' },
  CLIENT_ID_INVALID: { status: 400, connack: Connack.identifierRejected, message: 'the client id is not acceptable' },
  CLIENT_ID_TAKEN: { status: 403, connack: Connack.notAuthorized, message: 'the client id belongs to another user' },
  TOO_MANY_CONNECTIONS: { status: 429, connack: Connack.notAuthorized, message: 'too many connections for this user' },
  TOO_MANY_RETAINED: { status: 409, connack: Connack.notAuthorized, message: 'too many retained messages: delete one (an empty retained message) before retaining on a new topic' },
  // 409, not 429: waiting does not help (and HTTP clients retry 429 by themselves); deleting an installation does
  TOO_MANY_INSTALLATIONS: { status: 409, connack: Connack.notAuthorized, message: 'the user has limits.maxInstallationsPerUser installations: delete one (DELETE /v1/installations/{id}) before registering another' },
  TOO_MANY_SUBSCRIPTIONS: { status: 409, connack: Connack.notAuthorized, message: 'the installation has limits.maxSubscriptionsPerClient subscriptions: remove one before adding another' },
  RATE_LIMITED: { status: 429, connack: Connack.serverUnavailable, message: 'too many requests; retry later' },
  TOPIC_INVALID: { status: 400, connack: Connack.notAuthorized, message: 'the topic is not valid' },
  PUBLISH_DENIED: { status: 403, connack: Connack.notAuthorized, message: 'publishing to this topic is not allowed' },
  SUBSCRIBE_DENIED: { status: 403, connack: Connack.notAuthorized, message: 'subscribing to this topic is not allowed' },
  ALREADY_EXISTS: { status: 409, connack: Connack.notAuthorized, message: 'the resource already exists' },
  PRECONDITION_FAILED: { status: 412, connack: Connack.notAuthorized, message: 'the object is not at the version If-Match names' },
  PAYLOAD_TOO_LARGE: { status: 413, connack: Connack.notAuthorized, message: 'the payload is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, connack: Connack.notAuthorized, message: 'the body must be application/json' },
  NOT_FOUND: { status: 404, connack: Connack.notAuthorized, message: 'no such resource' },
  INTERNAL_ERROR: { status: 500, connack: Connack.serverUnavailable, message: 'internal error' },
  SERVER_UNAVAILABLE: { status: 503, connack: Connack.serverUnavailable, message: 'the server is not available' },
  // 503: the node's lease expires within cluster.nodeTimeoutMs (its connections leave the presence), or it answers again
  NODE_UNREACHABLE: { status: 503, connack: Connack.serverUnavailable, message: 'the cluster node holding the client\'s connection did not answer; retry later' },
  // cluster mode: refused at once, before anything waits for Redis; over as soon as Redis answers again
  STORE_UNREACHABLE: { status: 503, connack: Connack.serverUnavailable, message: 'this node cannot reach the store the cluster shares (Redis); retry later' },
  STORAGE_FULL: { status: 503, connack: Connack.serverUnavailable, message: 'the disk is full: the broker cannot store anything until space is freed; retry later' },
  // 501: this deployment cannot do it at all (a LevelDB backup of a cluster, whose store is Redis); retrying does not help
  NOT_SUPPORTED: { status: 501, connack: Connack.serverUnavailable, message: 'this server\'s configuration does not support the operation' },
  CONFIG_INVALID: { status: 500, connack: Connack.serverUnavailable, message: 'the configuration is not valid' },
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof errorCodes
