import { defineConfig } from "vitest/config"

// Gentle settings for a small (2-core) machine: one worker, no file
// parallelism, and generous timeouts so a slow server fails on assertions
// rather than on vitest's 5s default. Tests that set their own timeout
// (e.g. long-poll tests: longPollTimeoutMs + 1s = 21s) keep it.
export default defineConfig({
  test: {
    include: ["conformance.test.ts"],
    pool: "forks",
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 10_000,
  },
})
