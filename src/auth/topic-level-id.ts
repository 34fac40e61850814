import Type from 'typebox'

// A user or group id becomes one topic level (`users/{uid}/…`, `groups/{gid}/…`), so it
// must not contain level separators, wildcards or NUL, and must not start with `$`
// ([MQTT-4.7.2-1]). Token claims and every HTTP schema that names a user or group
// check this one rule.

/** The rule as a JSON-schema pattern (and RegExp source). */
export const TOPIC_LEVEL_ID_PATTERN = '^[^/+#\\u0000$][^/+#\\u0000]*$'
export const TOPIC_LEVEL_ID_MAX_LENGTH = 128

const topicLevelId = new RegExp(TOPIC_LEVEL_ID_PATTERN)

/** Is this a usable user or group id? */
export function isTopicLevelId (id: string): boolean {
  return id.length <= TOPIC_LEVEL_ID_MAX_LENGTH && topicLevelId.test(id)
}

/** The same rule for request schemas (path parameters, bodies). */
export const TopicLevelId = Type.String({ minLength: 1, maxLength: TOPIC_LEVEL_ID_MAX_LENGTH, pattern: TOPIC_LEVEL_ID_PATTERN })
