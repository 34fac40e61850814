/** qlobber 8 ships no typings; Herald uses the subscription trie aedes-persistence uses. */
declare module 'qlobber/aedes/qlobber-sub.js' {
  interface QlobberOptions {
    separator?: string
    wildcard_one?: string
    wildcard_some?: string
    match_empty_levels?: boolean
  }
  /** One subscription of one client: per filter, a client has at most one entry (rh, rap, nl: MQTT 5 options, kept as given). */
  interface QlobberSubValue { clientId: string, topic: string, qos: number, rh?: number, rap?: boolean, nl?: boolean }

  class QlobberSub {
    constructor (options?: QlobberOptions)
    add (filter: string, value: QlobberSubValue): this
    /** Removes the client's entry for the filter (only `clientId` and `topic` are read). */
    remove (filter: string, value: { clientId: string, topic: string }): this
    /** Every (filter, client) entry whose filter matches the topic; with `filter`, only the entries of that very filter. */
    match (topic: string, filter?: string): QlobberSubValue[]
    /** how many (filter, client) entries it holds */
    readonly subscriptionsCount: number
    clear (): this
  }
  export default QlobberSub
}
