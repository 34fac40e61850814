import type { Logger } from 'pino'
import type { PushSender } from '../../plugins/push-core/index.js'
import { createApnsSender } from '../../plugins/push-apns/sender.js'
import { createFcmSender } from '../../plugins/push-fcm/sender.js'
import type { HeraldConfig } from '../config/index.js'

/** One sender per configured provider (`push.fcm`, `push.apns`); none when neither is set. */
export function createSenders (config: HeraldConfig['push'], logger: Logger): PushSender[] {
  const senders: PushSender[] = []
  if (config.fcm !== undefined) senders.push(createFcmSender(config.fcm, logger.child({ provider: 'fcm' })))
  if (config.apns !== undefined) senders.push(createApnsSender(config.apns, logger.child({ provider: 'apns' })))
  return senders
}
