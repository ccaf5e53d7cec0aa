#!/usr/bin/env node
/**
 * Start the reference Node server (@durable-streams/server) for conformance
 * runs and benchmarks.
 *
 *   node ref_server.mjs PORT [DATA_DIR]
 *
 * Binds to 127.0.0.1 only. With DATA_DIR the server is file-backed (append-only
 * log files + LMDB metadata under DATA_DIR); without it, streams are in memory.
 *
 * Optional environment:
 *   DS_LONG_POLL_TIMEOUT_MS  server long-poll timeout (package default: 30000)
 *   DS_WEBHOOKS=1            allow type=webhook subscriptions (package default: off)
 *
 * Stops cleanly on SIGTERM / SIGINT.
 */
import { mkdirSync } from "node:fs"
import { DurableStreamTestServer } from "@durable-streams/server"

const HOST = "127.0.0.1"

function usage(msg) {
  console.error(`ref_server: ${msg}\nusage: node ref_server.mjs PORT [DATA_DIR]`)
  process.exit(2)
}

const [portArg, dataDirArg] = process.argv.slice(2)
if (portArg === undefined) usage("missing PORT")
const port = Number(portArg)
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad PORT: ${portArg}`)

const dataDir = dataDirArg && dataDirArg.length > 0 ? dataDirArg : undefined
if (dataDir) mkdirSync(dataDir, { recursive: true })

const options = { host: HOST, port }
if (dataDir) options.dataDir = dataDir
if (process.env.DS_LONG_POLL_TIMEOUT_MS) {
  const ms = Number(process.env.DS_LONG_POLL_TIMEOUT_MS)
  if (!Number.isFinite(ms) || ms <= 0) usage("bad DS_LONG_POLL_TIMEOUT_MS")
  options.longPollTimeout = ms
}

if (process.env.DS_WEBHOOKS === "1") options.webhooks = true

const server = new DurableStreamTestServer(options)
const url = await server.start()
console.log(
  `reference durable-streams server listening on ${url} ` +
    `(${dataDir ? `file-backed: ${dataDir}` : "in-memory"})`
)

let stopping = false
async function shutdown(signal) {
  if (stopping) return
  stopping = true
  console.log(`ref_server: ${signal} received, stopping`)
  // stop() waits for open connections to finish; don't hang forever.
  const force = setTimeout(() => process.exit(0), 5000)
  force.unref()
  try {
    await server.stop()
  } catch (err) {
    console.error("ref_server: error during stop:", err)
  }
  process.exit(0)
}
process.on("SIGTERM", () => void shutdown("SIGTERM"))
process.on("SIGINT", () => void shutdown("SIGINT"))
