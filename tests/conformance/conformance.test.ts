/**
 * Runs the upstream Durable Streams server conformance suite
 * (@durable-streams/server-conformance-tests) against a running server.
 *
 * The server root URL (e.g. http://127.0.0.1:4437) comes from DS_BASE_URL;
 * tests address streams below it, e.g. `${DS_BASE_URL}/v1/stream/<name>`.
 * Normally invoked via run_conformance.py, which starts the server and sets it.
 *
 * The suite's own CLI cannot be used: when the package is installed under
 * node_modules, vitest's default exclude hides its test file ("no tests found").
 */
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DS_BASE_URL

if (!baseUrl) {
  throw new Error(
    "DS_BASE_URL is not set. Set it to the server root, e.g. " +
      "DS_BASE_URL=http://127.0.0.1:4437 npx vitest run, or use run_conformance.py."
  )
}

runConformanceTests({
  baseUrl: baseUrl.replace(/\/+$/, ""),
  subscriptions: true,
})
