"""Durable Streams semantics over the engine: validation, status codes,
caching headers, JSON mode, producers, long-poll and SSE."""
