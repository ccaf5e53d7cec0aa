"""One chunk of a stream as an HTTP answer: headers, body views and ETag.

Shared by catch-up reads and long-poll, which answer with the same shape.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..engine import Stream
from .headers import CACHEABLE, CLOSED, NO_STORE, UP_TO_DATE, content_type, line, next_offset
from .jsonmode import wrap_array

if TYPE_CHECKING:
    from .app import StreamsApp


def cache_control(s: Stream) -> bytes:
    """Public caching for a minute, never past the stream's expiry (a cache
    must not keep serving a stream that is gone)."""
    due = s.deadline()
    if due is None:
        return CACHEABLE
    left = int(due - time.time())
    if left <= 0:
        return NO_STORE
    return b"cache-control: public, max-age=%d, stale-while-revalidate=%d\r\n" % (min(60, left), min(300, left))


def etag(s: Stream, start: int, end: int, closed: bool) -> str:
    return f'"{s.id:x}.{start:x}.{end:x}{".c" if closed else ""}"'


def chunk_response(
    app: StreamsApp, s: Stream, start: int, cacheable: bool = True
) -> tuple[bytes, list[bytes | memoryview], str]:
    """Headers, body and ETag for a read of one chunk from start."""
    views, end = app.engine.read(s, start, app.config.max_read_bytes)
    at_tail = end == s.tail
    closed = at_tail and s.closed
    tag = etag(s, start, end, closed)
    headers = content_type(s) + next_offset(s, end) + line("etag", tag)
    if at_tail:
        headers += UP_TO_DATE
    if closed:
        headers += CLOSED
    # Data is immutable by position; an empty answer at an open tail is not.
    headers += cache_control(s) if cacheable and (views or closed) else NO_STORE
    body: list[bytes | memoryview] = wrap_array(views) if s.is_json else list(views)
    return headers, body, tag
