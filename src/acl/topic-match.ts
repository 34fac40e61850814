/**
 * MQTT topic filter arithmetic (MQTT 3.1.1 section 4.7), on topics and filters
 * that are already valid.
 */

/**
 * Does `outer` match every topic that `inner` matches? For a concrete `inner`
 * this is plain matching; for a filter it is containment, which is what an ACL
 * needs to decide a SUBSCRIBE: `users/alice/#` covers `users/alice/+/x`, while
 * `users/+/inbox` is not covered by `users/alice/#`.
 */
export function covers (outer: string, inner: string): boolean {
  // Fast paths for the two shapes nearly every grant has, checked on every publish and delivery
  // without splitting: a concrete topic covers only itself; `prefix/#` covers `prefix` and what starts with `prefix/`.
  if (!hasWildcard(outer)) return outer === inner
  const prefixLength = outer.length - 2
  if (outer.endsWith('/#') && outer.indexOf('+') < 0 && outer.indexOf('#') === prefixLength + 1) return coversPrefix(outer, prefixLength, inner)
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match topics starting with `$`
  if (inner.startsWith('$') && (outer.startsWith('+') || outer.startsWith('#'))) return false
  const o = outer.split('/')
  const i = inner.split('/')
  for (let n = 0; n < o.length; n++) {
    const level = o[n]
    // [MQTT-4.7.1-2] `#` matches the parent level too: `a/#` matches `a`
    if (level === '#') return true
    if (n >= i.length) return false
    const other = i[n]
    if (other === '#') return false
    if (level === '+') continue
    if (other === '+' || level !== other) return false
  }
  return i.length === o.length
}

/** Whether `inner` is the first `prefixLength` characters of `outer`, or starts with them and a `/`; compared in place, without a substring per call. */
function coversPrefix (outer: string, prefixLength: number, inner: string): boolean {
  if (inner.length < prefixLength) return false
  for (let i = 0; i < prefixLength; i++) if (inner.charCodeAt(i) !== outer.charCodeAt(i)) return false
  return inner.length === prefixLength || inner.charCodeAt(prefixLength) === SLASH
}

const SLASH = 0x2f

export function hasWildcard (filter: string): boolean {
  return filter.includes('+') || filter.includes('#')
}
