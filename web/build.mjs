// Builds the admin console into dist/console (run by `npm run build`; the
// console tests run it too when the bundle is older than its sources):
// one script (Preact, htm, uPlot and the pages), one stylesheet and the page,
// so the package serves everything itself and a browser needs no other origin.
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const root = dirname(here)
export const outDir = join(root, 'dist', 'console')

async function newest (dir) {
  let latest = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, (await stat(join(entry.parentPath, entry.name))).mtimeMs)
  }
  return latest
}

/** Is dist/console missing or older than web/? */
export async function stale () {
  try {
    return (await stat(join(outDir, 'index.html'))).mtimeMs < await newest(here)
  } catch {
    return true
  }
}

/** Builds into a temporary folder, then renames each file into place: a server reading dist/console never sees half a file. */
export async function buildConsole () {
  await mkdir(outDir, { recursive: true })
  const tmp = await mkdtemp(join(dirname(outDir), '.console-'))
  try {
    await build({
      entryPoints: { app: join(here, 'src', 'main.js'), app_css: join(here, 'console.css') },
      entryNames: '[name]',
      bundle: true,
      minify: true,
      format: 'esm',
      target: ['chrome110', 'firefox110', 'safari16'],
      outdir: tmp,
      logLevel: 'warning',
      legalComments: 'none',
    })
    await rename(join(tmp, 'app_css.css'), join(tmp, 'app.css'))
    await copyFile(join(here, 'index.html'), join(tmp, 'index.html'))
    // index.html last: its mtime says the bundle is complete
    for (const name of ['app.js', 'app.css', 'index.html']) await rename(join(tmp, name), join(outDir, name))
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!process.argv.includes('--if-stale') || await stale()) await buildConsole()
}
