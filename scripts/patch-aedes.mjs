#!/usr/bin/env node
/**
 * Herald's patch to aedes, applied after every install (package.json
 * `postinstall`) until aedes carries the change itself.
 *
 * aedes' CONNECT handler ends by draining the session's queued messages
 * through a stream pipeline (lib/handlers/connect.js `emptyQueue`), every
 * CONNECT, queued messages or none. Building and tearing down that pipeline
 * (a Transform, an AbortController aborted with a DOMException at its end)
 * was about a seventh of a CONNECT's main-thread time, on bare aedes as on
 * Herald. Herald's session store knows when nothing is queued and returns an
 * empty array then; patched aedes skips the pipeline for it. Any other
 * persistence returns a stream and takes aedes' path unchanged.
 *
 * Never fails an install: when aedes cannot be found or its file is not the
 * one this patch was written against, it says so in one line and leaves it
 * alone. Herald works the same on unpatched aedes, with costlier CONNECTs.
 *
 * usage: node scripts/patch-aedes.mjs [path/to/aedes/lib/handlers/connect.js]
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ORIGINAL = `  client.resume()

  pipeline(
    outgoing,`

const PATCHED = `  client.resume()

  // Herald's patch (scripts/patch-aedes.mjs): an empty array means nothing is queued
  if (Array.isArray(outgoing) && outgoing.length === 0) {
    done()
    return
  }

  pipeline(
    outgoing,`

/** Patches the file in place: 'patched', 'already' (patched before), or 'unknown' (not the code this patch knows). */
function patchConnectHandler (file) {
  const source = readFileSync(file, 'utf8')
  if (source.includes(PATCHED)) return 'already'
  const at = source.indexOf(ORIGINAL)
  if (at === -1 || source.indexOf(ORIGINAL, at + 1) !== -1) return 'unknown'
  writeFileSync(file, source.slice(0, at) + PATCHED + source.slice(at + ORIGINAL.length))
  return 'patched'
}

function connectHandlerOfInstalledAedes () {
  // wherever npm put aedes (nested under Herald or hoisted beside it)
  return fileURLToPath(new URL('./lib/handlers/connect.js', import.meta.resolve('aedes')))
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const file = process.argv[2] ?? connectHandlerOfInstalledAedes()
    const outcome = patchConnectHandler(file)
    if (outcome === 'unknown') console.warn(`herald: aedes' ${file} is not the code scripts/patch-aedes.mjs knows; left unpatched (CONNECTs cost more CPU, nothing else changes)`)
  } catch (err) {
    console.warn(`herald: aedes left unpatched: ${err instanceof Error ? err.message : String(err)}`)
  }
}
