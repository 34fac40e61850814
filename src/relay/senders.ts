import type { Logger } from 'pino'
import type { PushSender } from '../../plugins/push-core/index.js'
import type { HeraldConfig } from '../config/index.js'

/**
 * One sender per configured provider (`push.fcm`, `push.apns`); none when
 * neither is set. A provider's SDK (firebase-admin, @parse/node-apn, and
 * what they pull in) is loaded only when that provider is configured: a
 * broker without them carried them for nothing.
 */
export async function createSenders (config: HeraldConfig['push'], logger: Logger): Promise<PushSender[]> {
  const senders: PushSender[] = []
  if (config.fcm !== undefined) {
    const { createFcmSender } = await import('../../plugins/push-fcm/sender.js')
    senders.push(createFcmSender(config.fcm, logger.child({ provider: 'fcm' })))
  }
  if (config.apns !== undefined) {
    const { createApnsSender } = await import('../../plugins/push-apns/sender.js')
    senders.push(createApnsSender(config.apns, logger.child({ provider: 'apns' })))
  }
  return senders
}
