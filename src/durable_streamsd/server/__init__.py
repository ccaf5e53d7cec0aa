"""Wiring: configuration, startup and shutdown, signals, background tasks."""
