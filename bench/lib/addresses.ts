/**
 * Loopback source addresses for client sockets. One address gives about
 * 28,000 ephemeral ports (net.ipv4.ip_local_port_range), and bind() searches
 * longer for a free port the fuller an address is; so every phase takes
 * addresses of its own, 127.0.0.2 … 127.0.0.254 in turn, at most `perAddress`
 * connections each. (The runner stops the broker before it closes the client
 * sockets, so TIME_WAIT lands on the broker's side, not on these addresses.)
 */
export class AddressPool {
  #next: number
  readonly perAddress: number

  constructor (perAddress = 5000) {
    this.perAddress = perAddress
    // start anywhere, so that a run right after another does not meet its TIME_WAIT ports
    this.#next = Math.floor(Math.random() * 253)
  }

  /** Addresses enough for `connections` sockets; `of(i)` gives the source address of the i-th. */
  take (connections: number): { readonly addresses: readonly string[], of (i: number): string } {
    const count = Math.max(1, Math.ceil(connections / this.perAddress))
    const addresses: string[] = []
    for (let k = 0; k < count; k++) {
      addresses.push(`127.0.0.${2 + (this.#next % 253)}`)
      this.#next++
    }
    const per = this.perAddress
    return { addresses, of: (i) => addresses[Math.floor(i / per) % addresses.length] as string }
  }
}
