"""Logging setup and Prometheus metrics."""
