import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** dist/bench/lib/paths.js → dist/bench */
export const benchDistDir = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** the repository: dist/bench → ../.. */
export const repoRoot = resolve(benchDistDir, '..', '..')
/** where results and RESULTS.md go: the bench sources, not dist/ */
export const benchSourceDir = join(repoRoot, 'bench')
