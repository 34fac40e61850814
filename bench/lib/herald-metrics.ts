import type { RunningBroker } from './brokers.js'

/**
 * The values of Herald's Prometheus samples named `names` (without labels),
 * from the /metrics of whichever process answers (a cluster: one worker's);
 * null for a broker without Herald's HTTP port or a sample it does not have.
 */
export async function heraldSamples (broker: RunningBroker, names: readonly string[]): Promise<Record<string, number | null>> {
  const found: Record<string, number | null> = Object.fromEntries(names.map((name) => [name, null]))
  if (broker.httpPort === undefined) return found
  const text = await (await fetch(`http://${broker.host}:${broker.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
  for (const line of text.split('\n')) {
    // `name value` or, in a cluster, `name{node="…"} value`
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (\S+)$/.exec(line)
    if (match?.[1] !== undefined && match[1] in found) found[match[1]] = Number(match[2])
  }
  return found
}
