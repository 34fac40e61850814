/**
 * A provider's or SDK's message with the device token taken out, fit for logs
 * and relay reasons: node-apn quotes the request path (`/3/device/<token>`),
 * FCM errors may quote the registration token. The placeholder is `[token]`,
 * bracketed like the relay's other ones (`[redacted]`, `[jwt]`, `[key]`);
 * `<token>` reads as "put your token here", as in Herald's help texts.
 */
export function scrubDeviceToken (text: string, deviceToken: string): string {
  if (deviceToken === '') return text
  const escaped = deviceToken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  // a short token could be part of an ordinary word: only a whole one is replaced
  const pattern = deviceToken.length >= 16 ? escaped : `(?<![\\w:-])${escaped}(?![\\w:-])`
  // case-insensitive: APNs tokens are hex, and a message may print them in either case
  return text.replace(new RegExp(pattern, 'gi'), '[token]')
}
