import { connectStorm } from './connect-storm.js'
import { fanIn } from './fan-in.js'
import { fanOut } from './fan-out.js'
import { httpPublish } from './http-publish.js'
import { latency } from './latency.js'
import { relay } from './relay.js'
import { scale } from './scale.js'
import type { Phase } from './types.js'

/**
 * The phase registry: `npm run bench` runs these in this order (or those
 * named by --phases). A new phase is one module exporting a `Phase` and one
 * line here. A phase that needs something running before the broker starts
 * (the relay phase's fake APNs/FCM servers, with Herald pointed at them)
 * implements `prepare()`: its `heraldConfig` is merged into Herald's config
 * file for that run and its `cleanup()` runs after the broker has stopped;
 * `applies()` limits it to the brokers that have the feature.
 */
export const phaseRegistry: readonly Phase[] = [
  connectStorm,
  fanOut(0),
  fanOut(1),
  fanOut(1, { clean: true, oneUser: false }),
  fanOut(1, { clean: false, oneUser: true }),
  fanIn(0),
  fanIn(1),
  latency,
  httpPublish,
  relay,
  scale,
]
