"""Benchmark harness: our server against the reference Node server, same run,
same machine, ratios only (see bench/README.md)."""
