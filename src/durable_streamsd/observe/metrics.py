"""Prometheus metrics, read from counters the engine and HTTP layer already
keep, so collecting them costs nothing on the request path."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def register(registry: CollectorRegistry, readings: dict[str, tuple[str, Callable[[], float]]]) -> None:
    for name, (doc, read) in readings.items():
        Gauge(name, doc, registry=registry).set_function(read)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> None:
    start_http_server(port, addr=host, registry=registry)
