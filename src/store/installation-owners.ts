import type { ClientIdClaim } from './client-owners.js'

/**
 * How many installation claims each owner holds, kept beside a claim table
 * (LevelDB's map, or a node's Redis mirror) and changed with it: whether a
 * user owns an installation is asked on every CONNECT (known-principals.ts),
 * and counting the table each time would be a scan per CONNECT.
 */
export class InstallationOwners {
  #counts = new Map<string, number>()

  /** Whether `owner` (an owner key, `user:<sub>`) holds the claim of at least one installation. */
  has (owner: string): boolean {
    return this.#counts.has(owner)
  }

  /** One claim changed from `before` to `after` (undefined: none). */
  change (before: ClientIdClaim | undefined, after: ClientIdClaim | undefined): void {
    if (before?.installation === true) this.#add(before.owner, -1)
    if (after?.installation === true) this.#add(after.owner, 1)
  }

  /** Counts `claims` afresh: the table was loaded, or reloaded whole. */
  reset (claims: Iterable<ClientIdClaim>): void {
    this.#counts = new Map()
    for (const claim of claims) this.change(undefined, claim)
  }

  #add (owner: string, delta: number): void {
    const count = (this.#counts.get(owner) ?? 0) + delta
    if (count > 0) this.#counts.set(owner, count)
    else this.#counts.delete(owner)
  }
}
