"""Command line: the daemon (serve, check) and a small client."""
