import { HeraldError } from '../errors/index.js'

export interface TopicLimits {
  readonly maxTopicLength: number
  readonly maxTopicLevels: number
}

/** Checks a topic to publish to (MQTT 3.1.1 section 4.7.3); throws TOPIC_INVALID. */
export function assertPublishTopic (topic: string, limits: TopicLimits): void {
  assertCommon(topic, limits)
  // [MQTT-3.3.2-2] no wildcards in a PUBLISH topic
  if (topic.includes('+') || topic.includes('#')) throw new HeraldError('TOPIC_INVALID', 'a publish topic may not contain + or #')
}

/** Checks a subscription filter (MQTT 3.1.1 section 4.7.1); throws TOPIC_INVALID. */
export function assertTopicFilter (filter: string, limits: TopicLimits): void {
  assertCommon(filter, limits)
  const levels = filter.split('/')
  levels.forEach((level, i) => {
    // [MQTT-4.7.1-2] `#` alone in the last level; [MQTT-4.7.1-3] `+` alone in its level
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) throw new HeraldError('TOPIC_INVALID', '# must be the whole last level')
    if (level.includes('+') && level !== '+') throw new HeraldError('TOPIC_INVALID', '+ must be a whole level')
  })
}

function assertCommon (topic: string, limits: TopicLimits): void {
  // [MQTT-4.7.3-1] at least one character
  if (topic.length === 0) throw new HeraldError('TOPIC_INVALID', 'the topic is empty')
  if (topic.length > limits.maxTopicLength) throw new HeraldError('TOPIC_INVALID', 'the topic is longer than limits.maxTopicLength')
  // [MQTT-4.7.3-2] no NUL
  if (topic.includes('\u0000')) throw new HeraldError('TOPIC_INVALID', 'the topic contains NUL')
  if (levelCount(topic) > limits.maxTopicLevels) throw new HeraldError('TOPIC_INVALID', 'the topic has more levels than limits.maxTopicLevels')
}

/** `topic.split('/').length`, without the array: this runs for every PUBLISH. */
function levelCount (topic: string): number {
  let levels = 1
  for (let at = topic.indexOf('/'); at >= 0; at = topic.indexOf('/', at + 1)) levels++
  return levels
}
