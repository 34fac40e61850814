import { randomBytes } from 'node:crypto'

/** Bucket names: one topic level of the events topic, so no `/`, `+`, `#`. */
export const BUCKET_NAME_PATTERN = '^[A-Za-z0-9_-]{1,64}$'
/** Object ids, given or generated; safe in a URL path segment as they are. */
export const OBJECT_ID_PATTERN = '^[A-Za-z0-9_-]{1,128}$'

const bucketName = new RegExp(BUCKET_NAME_PATTERN)
const objectId = new RegExp(OBJECT_ID_PATTERN)

export const isBucketName = (name: string): boolean => bucketName.test(name)
export const isObjectId = (id: string): boolean => objectId.test(id)

// Crockford's base32: ids sort in creation order (to the millisecond) and read well
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/**
 * A ULID-shaped id: 10 characters of millisecond time, 16 of randomness. Listing
 * is in id order, so generated ids list roughly in creation order.
 */
export function generateObjectId (now = Date.now()): string {
  let time = ''
  let rest = now
  for (let i = 0; i < 10; i++) {
    time = (ALPHABET[rest % 32] as string) + time
    rest = Math.floor(rest / 32)
  }
  let random = ''
  for (const byte of randomBytes(16)) random += ALPHABET[byte % 32] as string
  return time + random
}
