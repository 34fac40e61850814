// Composition root for `node dist/src/main.js [args]`: the same CLI as bin/herald.js.
import { runCli } from './cli/index.js'

process.exitCode = await runCli(process.argv.slice(2))
