import Type from 'typebox'
import { roles } from '../../auth/index.js'

/**
 * One entry of an app topic's or app bucket's ACL, as acl/principal-match.ts
 * reads it: `authenticated`, `user:<id>`, `group:<id>` or `role:<role>`.
 */
const AclEntry = Type.String({ pattern: `^(authenticated|user:[^/+#\\u0000]+|group:[^/+#\\u0000]+|role:(${roles.join('|')}))$` })

/** One list of an ACL (who subscribes, publishes, reads or writes), in a request body. */
export const AclList = Type.Array(AclEntry, { maxItems: 256 })

// Until an admin says otherwise, app topics and app buckets alike: any token
// holder reads (subscribes), services and admins write (publish).
export const defaultReaders: readonly string[] = ['authenticated']
export const defaultWriters: readonly string[] = ['role:service', 'role:admin']
