#!/usr/bin/env node
// The published entry point runs the compiled CLI (npm install builds dist/ via `prepare`).
import { runCli } from '../dist/src/cli/index.js'

process.exitCode = await runCli(process.argv.slice(2))
