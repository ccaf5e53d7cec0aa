"""Limits that keep one bad client from costing more than its connection."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    # Seconds from a request's first byte to the end of its headers.
    header_timeout: float = 10.0
    # Seconds a request body may stall between two pieces.
    body_timeout: float = 30.0
    # Seconds an idle keep-alive connection is kept open.
    idle_timeout: float = 75.0
    # Pipelined requests queued behind the one in progress before reading pauses.
    max_pipelined: int = 32
