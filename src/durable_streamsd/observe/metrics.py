"""Prometheus metrics, read from counters the engine and HTTP layer already
keep, so collecting them costs nothing on the request path."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, GCCollector, ProcessCollector, start_http_server


def register(registry: CollectorRegistry, readings: dict[str, tuple[str, Callable[[], float]]]) -> None:
    for name, (doc, read) in readings.items():
        Gauge(name, doc, registry=registry).set_function(read)
    # Process CPU, memory and descriptors, and the cyclic collector's work:
    # python_gc_objects_collected_total grows only when something leaves
    # reference cycles behind, which the request path must not do.
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> None:
    start_http_server(port, addr=host, registry=registry)
